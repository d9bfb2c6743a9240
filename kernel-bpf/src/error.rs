//! Why loading into, or running in, the host kernel failed.

use std::io;

/// An error of the kernel backend. bpf() refused for lack of privilege is
/// [`KernelError::Permission`] whatever the step, so that callers can tell
/// "cannot run here" from "the kernel refused this object".
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// bpf() is refused to this process.
    #[error(
        "The kernel engine needs root (CAP_BPF + CAP_PERFMON): bpf() returned {}",
        errno_name(.0)
    )]
    Permission(#[source] io::Error),
    /// The kernel has no bpf() system call.
    #[error("The kernel engine needs a kernel with bpf(): bpf() returned ENOSYS")]
    NoBpf(#[source] io::Error),
    /// A map could not be created.
    #[error("Cannot create {kind} map `{name}` in the kernel")]
    CreateMap {
        /// The map (or global data section).
        name: String,
        /// Its type's name.
        kind: &'static str,
        /// What bpf() said.
        #[source]
        source: io::Error,
    },
    /// The object uses something this backend does not load.
    #[error("{0}")]
    Unsupported(String),
    /// A global data section's initial bytes could not be written, or its
    /// map frozen.
    #[error("Cannot initialise global data map `{name}`")]
    InitData {
        /// The section.
        name: String,
        /// What bpf() said.
        #[source]
        source: io::Error,
    },
    /// The arena could not be mapped into this process.
    #[error("Cannot map arena `{name}` into the process")]
    MapArena {
        /// The arena map.
        name: String,
        /// What mmap said.
        #[source]
        source: io::Error,
    },
    /// The program could not be linked.
    #[error("Cannot link program `{program}`")]
    Link {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: Box<guest_jit::elf::LoadError>,
    },
    /// The kernel's BTF could not be read, which kfunc calls need.
    #[error("Cannot read the kernel's BTF ({path}) to resolve kfuncs")]
    ReadKernelBtf {
        /// Where it was read.
        path: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A kfunc the program calls is not in the kernel's BTF.
    #[error("Program `{program}` calls kfunc `{kfunc}`, which this kernel does not have")]
    ResolveKfunc {
        /// The program.
        program: String,
        /// The kfunc.
        kfunc: String,
    },
    /// The program's section says no program type this backend knows.
    #[error(
        "Program `{program}` is in section `{section}`, which names no program type the kernel engine knows (syscall, xdp, socket, tc)"
    )]
    ProgramType {
        /// The program.
        program: String,
        /// Its section.
        section: String,
    },
    /// The verifier (or another check of BPF_PROG_LOAD) refused the
    /// program.
    #[error("The kernel refused program `{program}`: {reason}")]
    LoadProgram {
        /// The program.
        program: String,
        /// The verifier's last meaningful line, or the errno's name.
        reason: String,
        /// The whole verifier log (may be empty).
        log: String,
        /// What bpf() said.
        #[source]
        source: io::Error,
    },
    /// The kernel refused the object's BTF (`BPF_BTF_LOAD`), even after
    /// the loader's fix-ups.
    #[error("The kernel refused the object's BTF: {reason}")]
    LoadBtf {
        /// The checker's last line, or the errno's name.
        reason: String,
        /// The whole log (may be empty).
        log: String,
        /// What bpf() said.
        #[source]
        source: io::Error,
    },
    /// `BPF_PROG_TEST_RUN` of a syscall program refused with `EINVAL`:
    /// the kernel refuses a context shorter than the program reads (it
    /// does not say how much it reads).
    #[error(
        "Cannot run program `{program}` with BPF_PROG_TEST_RUN: the kernel refuses a context shorter than what the program reads, and it was given {given} bytes (pass a longer context: --data)"
    )]
    ContextTooShort {
        /// The program.
        program: String,
        /// Bytes of context given.
        given: usize,
        /// What bpf() said.
        #[source]
        source: io::Error,
    },
    /// `BPF_PROG_TEST_RUN` failed.
    #[error("Cannot run program `{program}` with BPF_PROG_TEST_RUN")]
    TestRun {
        /// The program.
        program: String,
        /// What bpf() said.
        #[source]
        source: io::Error,
    },
    /// A map operation failed.
    #[error("Cannot {op} map `{map}`")]
    MapAccess {
        /// The map.
        map: String,
        /// `look up`, `update`, ...
        op: &'static str,
        /// What bpf() said.
        #[source]
        source: io::Error,
    },
    /// A key or value of the wrong size for the map.
    #[error("Map `{map}` takes {what}s of {expected} bytes, not {given}")]
    SizeMismatch {
        /// The map.
        map: String,
        /// `key` or `value`.
        what: &'static str,
        /// The map's size.
        expected: usize,
        /// The size given.
        given: usize,
    },
    /// No map, global variable or program of that name.
    #[error("The object has no {what} named `{name}`")]
    NotFound {
        /// `map`, `global variable`, `program`, ...
        what: &'static str,
        /// The name asked for.
        name: String,
    },
    /// A ring buffer's consumer could not be set up.
    #[error("Cannot consume ring buffer `{name}`")]
    RingBuf {
        /// The map.
        name: String,
        /// Why.
        #[source]
        source: vmm::RingBufError,
    },
}

impl KernelError {
    /// `error` for bpf(), unless it is the "not allowed here" kind, which
    /// becomes [`KernelError::Permission`] or [`KernelError::NoBpf`].
    /// (`EACCES` is not that kind: the verifier refuses with it.)
    pub(crate) fn bpf(error: io::Error, otherwise: impl FnOnce(io::Error) -> KernelError) -> Self {
        match error.raw_os_error() {
            Some(libc::EPERM) => KernelError::Permission(error),
            Some(libc::ENOSYS) => KernelError::NoBpf(error),
            _ => otherwise(error),
        }
    }

    /// Whether bpf() is not usable by this process at all (no privilege,
    /// or no bpf()), as opposed to refusing what was asked.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, KernelError::Permission(_) | KernelError::NoBpf(_))
    }
}

/// The kernel's `ENOTSUPP` (524), which it returns from bpf() for
/// operations a map or program type lacks; not a libc errno.
const ENOTSUPP: i32 = 524;

/// `EPERM`, `EACCES`, ...: the errno's symbolic name where we know it,
/// else what the C library says of it.
pub(crate) fn errno_name(e: &io::Error) -> String {
    let name = match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::EACCES) => "EACCES",
        Some(libc::ENOSYS) => "ENOSYS",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::E2BIG) => "E2BIG",
        Some(libc::ENOSPC) => "ENOSPC",
        Some(libc::ENOMEM) => "ENOMEM",
        Some(libc::EFAULT) => "EFAULT",
        Some(libc::EOPNOTSUPP) => "EOPNOTSUPP",
        Some(ENOTSUPP) => "ENOTSUPP",
        _ => return e.to_string(),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_for_lack_of_privilege_say_what_is_needed() {
        let e = KernelError::bpf(
            io::Error::from_raw_os_error(libc::EPERM),
            |_| unreachable!(),
        );
        assert!(e.is_unavailable());
        assert_eq!(
            e.to_string(),
            "The kernel engine needs root (CAP_BPF + CAP_PERFMON): bpf() returned EPERM"
        );
        let other = KernelError::bpf(io::Error::from_raw_os_error(libc::EINVAL), |source| {
            KernelError::TestRun {
                program: "p".into(),
                source,
            }
        });
        assert!(!other.is_unavailable());
    }
}
