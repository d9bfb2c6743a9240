//! A map in the host kernel: created from a [`MapSpec`], accessed with
//! the `BPF_MAP_*_ELEM` commands, closed when dropped.

use crate::error::KernelError;
use crate::sys;
use guest_jit::elf::{MapSpec, MapType};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

/// `BPF_ANY`: create or replace.
pub const UPDATE_ANY: u64 = 0;

/// A map of the host kernel.
#[derive(Debug)]
pub struct KernelMap {
    name: String,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    fd: OwnedFd,
}

impl KernelMap {
    /// Creates the map `spec` describes; a map-in-map needs `inner`, a map
    /// of its inner maps' kind (the kernel copies its shape).
    pub(crate) fn create(
        spec: &MapSpec,
        inner: Option<BorrowedFd<'_>>,
    ) -> Result<KernelMap, KernelError> {
        let attr = sys::MapCreateAttr {
            map_type: spec.map_type.number(),
            key_size: spec.key_size,
            value_size: spec.value_size,
            max_entries: spec.max_entries,
            map_flags: spec.map_flags,
            inner_map_fd: inner.map_or(0, |fd| {
                use std::os::fd::AsRawFd;
                fd.as_raw_fd() as u32
            }),
            map_name: sys::obj_name(&spec.name),
            map_extra: spec.map_extra,
            ..sys::MapCreateAttr::default()
        };
        let refused = |source| KernelError::CreateMap {
            name: spec.name.clone(),
            kind: spec.map_type.name(),
            source,
        };
        let fd = sys::map_create(&attr).map_err(|e| {
            // EPERM for a type this process may not make, while it may
            // make an ARRAY (this host's kernel refuses ARENAs so), is
            // about the map, not about the process.
            let only_this_type = e.raw_os_error() == Some(libc::EPERM)
                && spec.map_type != MapType::Array
                && crate::probe().is_ok();
            if only_this_type && spec.map_type == MapType::Arena {
                // Some kernels refuse arenas even to root (this host's
                // does): a property of the host, not of the object.
                KernelError::Unsupported(format!(
                    "Cannot create ARENA map `{}`: this kernel refuses BPF_MAP_TYPE_ARENA maps (EPERM)",
                    spec.name
                ))
            } else if only_this_type {
                refused(e)
            } else {
                KernelError::bpf(e, refused)
            }
        })?;
        Ok(KernelMap {
            name: spec.name.clone(),
            map_type: spec.map_type,
            key_size: spec.key_size,
            value_size: spec.value_size,
            max_entries: spec.max_entries,
            fd,
        })
    }

    /// Its name in the object.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its type.
    pub fn map_type(&self) -> MapType {
        self.map_type
    }

    /// Key size in bytes.
    pub fn key_size(&self) -> usize {
        self.key_size as usize
    }

    /// Value size in bytes, as defined (per CPU for per-CPU maps).
    pub fn value_size(&self) -> usize {
        self.value_size as usize
    }

    /// Capacity (for a ring buffer, its data bytes; for an arena, pages).
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// The map's fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Bytes of the values lookups return and updates take: the value,
    /// or for per-CPU maps one 8-byte-aligned value per possible CPU, as
    /// the kernel copies them.
    pub fn value_len(&self) -> usize {
        if self.map_type.is_percpu() {
            self.value_size.next_multiple_of(8) as usize * possible_cpus()
        } else {
            self.value_size as usize
        }
    }

    fn check(&self, what: &'static str, expected: usize, given: usize) -> Result<(), KernelError> {
        if expected == given {
            Ok(())
        } else {
            Err(KernelError::SizeMismatch {
                map: self.name.clone(),
                what,
                expected,
                given,
            })
        }
    }

    fn access(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> KernelError + '_ {
        move |e| {
            KernelError::bpf(e, |source| KernelError::MapAccess {
                map: self.name.clone(),
                op,
                source,
            })
        }
    }

    /// The value at `key` ([`KernelMap::value_len`] bytes), if any.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KernelError> {
        self.check("key", self.key_size(), key.len())?;
        let mut value = vec![0; self.value_len()];
        let found = sys::map_lookup(self.fd(), key, &mut value).map_err(self.access("look up"))?;
        Ok(found.then_some(value))
    }

    /// Sets `key` to `value` ([`KernelMap::value_len`] bytes); `flags` as
    /// the kernel's (`BPF_ANY` is [`UPDATE_ANY`]).
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), KernelError> {
        self.check("key", self.key_size(), key.len())?;
        self.check("value", self.value_len(), value.len())?;
        sys::map_update(self.fd(), key, value, flags).map_err(self.access("update"))
    }

    /// Deletes `key`; whether it was there.
    pub fn delete(&self, key: &[u8]) -> Result<bool, KernelError> {
        self.check("key", self.key_size(), key.len())?;
        sys::map_delete(self.fd(), key).map_err(self.access("delete from"))
    }

    /// The key after `key` (the first key with `None`); `None` after the
    /// last.
    pub fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, KernelError> {
        if let Some(key) = key {
            self.check("key", self.key_size(), key.len())?;
        }
        let mut next = vec![0; self.key_size()];
        let found = sys::map_next_key(self.fd(), key, &mut next).map_err(self.access("walk"))?;
        Ok(found.then_some(next))
    }

    /// Every key, in the kernel's order; at most `max_entries` of them
    /// (a hash being updated meanwhile could otherwise go round forever).
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, KernelError> {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        while keys.len() < self.max_entries as usize {
            match self.next_key(keys.last().map(Vec::as_slice))? {
                Some(key) => keys.push(key),
                None => break,
            }
        }
        Ok(keys)
    }

    /// Makes the map read-only to user space for good.
    pub(crate) fn freeze(&self) -> Result<(), std::io::Error> {
        sys::map_freeze(self.fd())
    }

    /// A second fd of the map, for whoever must own one (a ring buffer's
    /// consumer).
    pub(crate) fn try_clone_fd(&self) -> std::io::Result<OwnedFd> {
        self.fd.try_clone()
    }
}

/// CPUs the kernel may bring up (`/sys/devices/system/cpu/possible`),
/// which sizes per-CPU values; 1 if it cannot be read.
pub fn possible_cpus() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(|| {
        std::fs::read_to_string("/sys/devices/system/cpu/possible")
            .ok()
            .and_then(|s| parse_cpu_list(&s))
            .unwrap_or(1)
    })
}

/// The number of CPUs in a kernel CPU list (`0-3,5`): one more than the
/// highest, as per-CPU values are indexed by CPU number.
fn parse_cpu_list(list: &str) -> Option<usize> {
    let mut highest = None;
    for part in list.trim().split(',') {
        let last = part.rsplit('-').next()?;
        let n: usize = last.trim().parse().ok()?;
        highest = Some(highest.map_or(n, |h: usize| h.max(n)));
    }
    highest.map(|h| h + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count_up_to_the_highest_cpu() {
        assert_eq!(parse_cpu_list("0-3\n"), Some(4));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-1,4-5"), Some(6));
        assert_eq!(parse_cpu_list("garbage"), None);
    }
}
