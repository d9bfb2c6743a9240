//! Kfunc calls: a linked program's kfuncs by name, resolved to their BTF
//! ids in the running kernel's BTF (`/sys/kernel/btf/vmlinux`), read with
//! our own BTF parser once per process.

use crate::error::KernelError;
use guest_jit::btf::{Btf, BtfKind};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// Where the kernel exposes its own BTF.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The kernel's functions by name: their BTF ids.
type FuncIds = HashMap<String, u32>;

fn vmlinux_funcs() -> Result<Arc<FuncIds>, KernelError> {
    static FUNCS: OnceLock<Result<Arc<FuncIds>, String>> = OnceLock::new();
    let read = || -> Result<Arc<FuncIds>, String> {
        let bytes = std::fs::read(VMLINUX_BTF).map_err(|e| e.to_string())?;
        let btf = Btf::parse(&bytes).map_err(|e| e.to_string())?;
        let mut ids = FuncIds::new();
        for (i, ty) in btf.types().iter().enumerate() {
            if ty.kind == BtfKind::Func
                && let Some(name) = btf.type_name(ty)
            {
                let id = u32::try_from(i + 1).unwrap_or(u32::MAX);
                ids.entry(name.to_owned()).or_insert(id);
            }
        }
        Ok(Arc::new(ids))
    };
    FUNCS
        .get_or_init(read)
        .clone()
        .map_err(|e| KernelError::ReadKernelBtf {
            path: VMLINUX_BTF,
            source: e.into(),
        })
}

/// The vmlinux BTF id of each of `kfuncs`, in order.
pub(crate) fn resolve(program: &str, kfuncs: &[String]) -> Result<Vec<u32>, KernelError> {
    if kfuncs.is_empty() {
        return Ok(Vec::new());
    }
    let funcs = vmlinux_funcs()?;
    kfuncs
        .iter()
        .map(|name| {
            funcs
                .get(name)
                .copied()
                .ok_or_else(|| KernelError::ResolveKfunc {
                    program: program.to_owned(),
                    kfunc: name.clone(),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_kfuncs_are_found_in_the_running_kernels_btf() {
        if !std::path::Path::new(VMLINUX_BTF).exists() {
            eprintln!("SKIPPED: no {VMLINUX_BTF}");
            return;
        }
        let ids = resolve("p", &["bpf_arena_alloc_pages".to_owned()]);
        let ids = ids.map_err(|e| e.to_string());
        assert!(matches!(ids.as_deref(), Ok([id]) if *id > 0), "{ids:?}");
        let missing = resolve("p", &["no_such_kfunc".to_owned()]).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "Program `p` calls kfunc `no_such_kfunc`, which this kernel does not have"
        );
    }
}
