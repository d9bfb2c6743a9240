//! The `bpf()` system call: the `union bpf_attr` variants this crate uses,
//! each as its own `#[repr(C)]` struct laid out as in
//! `include/uapi/linux/bpf.h`, and one safe function per command.
//!
//! The kernel copies `size` bytes of the attribute and treats the rest of
//! its union as zeros, so each struct stops at the last field we use; every
//! field we do not set is zero, as the kernel's `CHECK_ATTR` requires of
//! fields past a command's last one.

use std::ffi::{CStr, c_void};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `enum bpf_cmd` values.
mod cmd {
    pub const MAP_CREATE: libc::c_long = 0;
    pub const MAP_LOOKUP_ELEM: libc::c_long = 1;
    pub const MAP_UPDATE_ELEM: libc::c_long = 2;
    pub const MAP_DELETE_ELEM: libc::c_long = 3;
    pub const MAP_GET_NEXT_KEY: libc::c_long = 4;
    pub const PROG_LOAD: libc::c_long = 5;
    pub const PROG_TEST_RUN: libc::c_long = 10;
    pub const BTF_LOAD: libc::c_long = 18;
    pub const MAP_FREEZE: libc::c_long = 22;
}

/// `BPF_OBJ_NAME_LEN`: map and program names, NUL included.
pub const OBJ_NAME_LEN: usize = 16;

/// `BPF_MAP_CREATE`'s part of `union bpf_attr`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MapCreateAttr {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub inner_map_fd: u32,
    pub numa_node: u32,
    pub map_name: [u8; OBJ_NAME_LEN],
    pub map_ifindex: u32,
    pub btf_fd: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub btf_vmlinux_value_type_id: u32,
    pub map_extra: u64,
}

/// The map element commands' part (`BPF_MAP_*_ELEM`, `GET_NEXT_KEY`,
/// `FREEZE`); `value` is `next_key` for `GET_NEXT_KEY`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `BPF_PROG_LOAD`'s part, up to `log_true_size`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct ProgLoadAttr {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; OBJ_NAME_LEN],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
    pub prog_btf_fd: u32,
    pub func_info_rec_size: u32,
    pub func_info: u64,
    pub func_info_cnt: u32,
    pub line_info_rec_size: u32,
    pub line_info: u64,
    pub line_info_cnt: u32,
    pub attach_btf_id: u32,
    pub attach_prog_fd: u32,
    pub core_relo_cnt: u32,
    pub fd_array: u64,
    pub core_relos: u64,
    pub core_relo_rec_size: u32,
    pub log_true_size: u32,
}

/// `BPF_BTF_LOAD`'s part, up to `btf_log_true_size`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct BtfLoadAttr {
    btf: u64,
    btf_log_buf: u64,
    btf_size: u32,
    btf_log_size: u32,
    btf_log_level: u32,
    btf_log_true_size: u32,
}

/// `BPF_PROG_TEST_RUN`'s part.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

const _: () = {
    assert!(size_of::<MapCreateAttr>() == 72);
    assert!(size_of::<MapElemAttr>() == 32);
    assert!(size_of::<ProgLoadAttr>() == 144);
    assert!(size_of::<TestRunAttr>() == 80);
    assert!(size_of::<BtfLoadAttr>() == 32);
};

/// Calls `bpf(cmd, attr, sizeof attr)`; the return value or the error.
///
/// # Safety
/// Every pointer stored in `attr` must be valid for what `cmd` does with
/// it (reads or writes of the sizes stored beside it) for the call.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised `repr(C)` value of the size
    // passed; the pointers in it are valid (the caller's contract).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<c_void>(),
            size_of::<T>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Takes a file descriptor the kernel returned.
fn owned_fd(rc: libc::c_long) -> io::Result<OwnedFd> {
    let fd = i32::try_from(rc).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned `fd`, open and owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    // Open descriptors are never negative.
    fd.as_raw_fd() as u32
}

fn address<T>(p: *const T) -> u64 {
    p as usize as u64
}

/// `BPF_MAP_CREATE`: a new map's fd.
pub fn map_create(attr: &MapCreateAttr) -> io::Result<OwnedFd> {
    let mut attr = *attr;
    // SAFETY: the attribute holds no pointers.
    owned_fd(unsafe { bpf(cmd::MAP_CREATE, &mut attr)? })
}

/// `BPF_MAP_LOOKUP_ELEM` of `key` into `value` (sized by the caller for
/// the map); `Ok(false)` when there is no such element.
pub fn map_lookup(map: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
    let mut attr = MapElemAttr {
        map_fd: fd_u32(map),
        key: address(key.as_ptr()),
        value: address(value.as_mut_ptr()),
        ..MapElemAttr::default()
    };
    // SAFETY: the kernel reads key_size bytes of `key` and writes the
    // map's value size of `value`: the caller sized both for the map.
    match unsafe { bpf(cmd::MAP_LOOKUP_ELEM, &mut attr) } {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `BPF_MAP_UPDATE_ELEM` of `key` to `value` with `flags` (`BPF_ANY`...).
pub fn map_update(map: BorrowedFd<'_>, key: &[u8], value: &[u8], flags: u64) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: fd_u32(map),
        key: address(key.as_ptr()),
        value: address(value.as_ptr()),
        flags,
        ..MapElemAttr::default()
    };
    // SAFETY: the kernel reads the map's key and value sizes from `key`
    // and `value`, which the caller sized for the map.
    unsafe { bpf(cmd::MAP_UPDATE_ELEM, &mut attr) }.map(drop)
}

/// `BPF_MAP_DELETE_ELEM` of `key`; `Ok(false)` when there was none.
pub fn map_delete(map: BorrowedFd<'_>, key: &[u8]) -> io::Result<bool> {
    let mut attr = MapElemAttr {
        map_fd: fd_u32(map),
        key: address(key.as_ptr()),
        ..MapElemAttr::default()
    };
    // SAFETY: the kernel reads the map's key size from `key`, sized by
    // the caller for the map.
    match unsafe { bpf(cmd::MAP_DELETE_ELEM, &mut attr) } {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `BPF_MAP_GET_NEXT_KEY`: the key after `key` (the first with `None`)
/// into `next`; `Ok(false)` after the last.
pub fn map_next_key(map: BorrowedFd<'_>, key: Option<&[u8]>, next: &mut [u8]) -> io::Result<bool> {
    let mut attr = MapElemAttr {
        map_fd: fd_u32(map),
        key: key.map_or(0, |k| address(k.as_ptr())),
        value: address(next.as_mut_ptr()),
        ..MapElemAttr::default()
    };
    // SAFETY: the kernel reads and writes the map's key size at `key` and
    // `next`, sized by the caller for the map (key NULL: the first key).
    match unsafe { bpf(cmd::MAP_GET_NEXT_KEY, &mut attr) } {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `BPF_MAP_FREEZE`: no more writes from user space.
pub fn map_freeze(map: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: fd_u32(map),
        ..MapElemAttr::default()
    };
    // SAFETY: the attribute holds no pointers.
    unsafe { bpf(cmd::MAP_FREEZE, &mut attr) }.map(drop)
}

/// `struct bpf_func_info`: instruction index, `FUNC` type id.
pub const FUNC_INFO_REC_SIZE: usize = 8;
/// `struct bpf_line_info`: instruction index, file name and line text
/// string offsets, line and column.
pub const LINE_INFO_REC_SIZE: usize = 16;

/// What `BPF_PROG_LOAD` needs besides the fixed fields of `attr`.
#[derive(Debug)]
pub struct ProgLoad<'a> {
    /// Raw instructions (`struct bpf_insn`, 8 bytes each).
    pub insns: &'a [u8],
    pub license: &'a CStr,
    /// The verifier's log, if asked for (log level 1 when given).
    pub log: Option<&'a mut [u8]>,
    /// The program's BTF, if it is loaded with some.
    pub btf: Option<ProgBtf<'a>>,
}

/// A program's BTF: the object's loaded BTF and the records that tie
/// the program's functions and instructions to it.
#[derive(Clone, Copy, Debug)]
pub struct ProgBtf<'a> {
    pub fd: BorrowedFd<'a>,
    /// `struct bpf_func_info` records ([`FUNC_INFO_REC_SIZE`] bytes
    /// each), one per function, by instruction.
    pub func_info: &'a [u8],
    /// `struct bpf_line_info` records ([`LINE_INFO_REC_SIZE`] bytes
    /// each), by instruction; may be empty.
    pub line_info: &'a [u8],
}

/// `BPF_PROG_LOAD`: the program's fd.
pub fn prog_load(attr: &ProgLoadAttr, load: ProgLoad<'_>) -> io::Result<OwnedFd> {
    let count =
        |n: usize| u32::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let mut attr = ProgLoadAttr {
        insn_cnt: count(load.insns.len() / 8)?,
        insns: address(load.insns.as_ptr()),
        license: address(load.license.as_ptr()),
        ..*attr
    };
    if let Some(log) = load.log {
        attr.log_level = 1;
        attr.log_size = u32::try_from(log.len()).unwrap_or(u32::MAX >> 2);
        attr.log_buf = address(log.as_mut_ptr());
    }
    if let Some(btf) = load.btf {
        attr.prog_btf_fd = fd_u32(btf.fd);
        attr.func_info_rec_size = FUNC_INFO_REC_SIZE as u32;
        attr.func_info = address(btf.func_info.as_ptr());
        attr.func_info_cnt = count(btf.func_info.len() / FUNC_INFO_REC_SIZE)?;
        if !btf.line_info.is_empty() {
            attr.line_info_rec_size = LINE_INFO_REC_SIZE as u32;
            attr.line_info = address(btf.line_info.as_ptr());
            attr.line_info_cnt = count(btf.line_info.len() / LINE_INFO_REC_SIZE)?;
        }
    }
    // SAFETY: `insns` and `license` are live for the call, insn_cnt
    // instructions and a NUL-terminated string; the log buffer is
    // writable for log_size bytes; func_info and line_info are live
    // slices of at least their counts of records, the kernel only reads
    // them; fd_array and the CO-RE fields are 0.
    owned_fd(unsafe { bpf(cmd::PROG_LOAD, &mut attr)? })
}

/// `BPF_BTF_LOAD` of a `.BTF` section's bytes: the BTF's fd. With `log`,
/// the kernel's checker writes why it refuses there (log level 1).
pub fn btf_load(btf: &[u8], log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let mut attr = BtfLoadAttr {
        btf: address(btf.as_ptr()),
        btf_size: u32::try_from(btf.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        ..BtfLoadAttr::default()
    };
    if let Some(log) = log {
        attr.btf_log_level = 1;
        attr.btf_log_size = u32::try_from(log.len()).unwrap_or(u32::MAX >> 2);
        attr.btf_log_buf = address(log.as_mut_ptr());
    }
    // SAFETY: `btf` is live for the call and btf_size bytes long, only
    // read; the log buffer is writable for btf_log_size bytes.
    owned_fd(unsafe { bpf(cmd::BTF_LOAD, &mut attr)? })
}

/// The input and output buffers of one `BPF_PROG_TEST_RUN`.
#[derive(Debug, Default)]
pub struct TestRun<'a> {
    pub data_in: &'a [u8],
    pub data_out: Option<&'a mut [u8]>,
    /// For `BPF_PROG_TYPE_SYSCALL` the kernel writes the context back
    /// here (`ctx_in`), so it is mutable.
    pub ctx_in: Option<&'a mut [u8]>,
    pub ctx_out: Option<&'a mut [u8]>,
    pub repeat: u32,
}

/// What `BPF_PROG_TEST_RUN` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestRunResult {
    pub retval: u32,
    /// Mean nanoseconds per run (0 where the kernel does not time).
    pub duration_ns: u32,
    pub data_size_out: u32,
    pub ctx_size_out: u32,
}

/// `BPF_PROG_TEST_RUN` of `prog`.
pub fn prog_test_run(prog: BorrowedFd<'_>, run: TestRun<'_>) -> io::Result<TestRunResult> {
    let len = |n: usize| u32::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let mut attr = TestRunAttr {
        prog_fd: fd_u32(prog),
        repeat: run.repeat,
        ..TestRunAttr::default()
    };
    if !run.data_in.is_empty() {
        attr.data_in = address(run.data_in.as_ptr());
        attr.data_size_in = len(run.data_in.len())?;
    }
    if let Some(out) = run.data_out {
        attr.data_out = address(out.as_mut_ptr());
        attr.data_size_out = len(out.len())?;
    }
    if let Some(ctx) = run.ctx_in {
        attr.ctx_in = address(ctx.as_mut_ptr());
        attr.ctx_size_in = len(ctx.len())?;
    }
    if let Some(out) = run.ctx_out {
        attr.ctx_out = address(out.as_mut_ptr());
        attr.ctx_size_out = len(out.len())?;
    }
    // SAFETY: each pointer set is a live buffer of the size beside it:
    // `data_in` read, `data_out`, `ctx_in` and `ctx_out` mutable borrows
    // the kernel may write up to their sizes.
    unsafe { bpf(cmd::PROG_TEST_RUN, &mut attr)? };
    Ok(TestRunResult {
        retval: attr.retval,
        duration_ns: attr.duration,
        data_size_out: attr.data_size_out,
        ctx_size_out: attr.ctx_size_out,
    })
}

/// A kernel object name (`BPF_OBJ_NAME_LEN`): the characters it allows
/// (alphanumerics, `_` and `.`), at most 15 of them, NUL-padded.
pub fn obj_name(name: &str) -> [u8; OBJ_NAME_LEN] {
    let mut out = [0; OBJ_NAME_LEN];
    let allowed = name
        .bytes()
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.');
    for (slot, b) in out[..OBJ_NAME_LEN - 1].iter_mut().zip(allowed) {
        *slot = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_keep_what_the_kernel_allows() {
        assert_eq!(&obj_name(".rodata.str1.1")[..15], b".rodata.str1.1\0");
        assert_eq!(obj_name("a-very-long-name-of-a-map"), *b"averylongnameof\0");
        assert_eq!(obj_name(""), [0; 16]);
    }
}
