//! The object's BTF in the kernel: the fix-ups libbpf makes to what clang
//! writes before the kernel accepts it, `BPF_BTF_LOAD`, and the func_info
//! and line_info records that tie a linked program to it.
//!
//! ```text
//!  .BTF as clang writes it              as the kernel gets it
//!  DATASEC .bss size=0            --->  size = the ELF section's size
//!    VAR total offset=0                 offset = its ELF symbol's value,
//!    VAR calls offset=0                 entries sorted by offset
//!  DATASEC .ksyms size=0          --->  size = 4 * entries
//!    FUNC bpf_iter_num_new extern       VAR dummy_ksym (int) at 4 * i,
//!                                       the FUNC made global and its
//!                                       unnamed parameters named
//!    VAR some_ksym extern               the VAR global, of type int
//! ```
//!
//! And each function whose address a program takes (a callback) gets
//! static linkage: the verifier takes only static callbacks ("callback
//! function not static"); a global one it would have to verify on its own
//! (libbpf refuses such an object outright). Static, it is verified in
//! the context of the helper that calls it, as bpfvisor's verifier does.
//!
//! The kernel's BTF checker refuses a `DATASEC` of size 0, entries out of
//! order or past their section, a `DATASEC` entry that is not a `VAR`,
//! `VAR`s and `FUNC`s of extern linkage, and `FUNC`s whose prototype has
//! an unnamed parameter; clang leaves all of those for the loader, as
//! libbpf's `btf_fixup_datasec` and `bpf_object__collect_externs` fix them.
//!
//! With the BTF loaded, a program goes to `BPF_PROG_LOAD` with one
//! func_info record per function of the linked program (its first slot,
//! its `FUNC`'s id, found by name) and, when every function's first slot
//! has a source line, line_info records from the linker's line table —
//! the verifier then names C source lines in its log. The kernel needs
//! func_info for any program that takes a function's address (`bpf_loop`,
//! `bpf_for_each_map_elem`, timers).

use crate::error::{KernelError, errno_name};
use crate::program::reason;
use crate::sys;
use guest_jit::btf::{Btf, BtfKind, BtfWriter, Linkage, RawType};
use guest_jit::elf::{LinkedProgram, Object};
use guest_jit::insn::Insn;
use guest_jit::insn::opcode::{LD_IMM64, PSEUDO_FUNC};
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};

/// The `DATASEC` of the functions and variables declared `__ksym`.
const KSYMS_SECTION: &str = ".ksyms";
/// The variable that stands for each extern function in `.ksyms`, and
/// the name its unnamed parameters get (libbpf's).
const DUMMY_KSYM: &str = "dummy_ksym";
/// `BTF_VAR_GLOBAL_ALLOCATED` and `BTF_FUNC_GLOBAL`.
const LINKAGE_GLOBAL: u16 = 1;
/// `BTF_FUNC_STATIC`.
const LINKAGE_STATIC: u16 = 0;
/// Words of a `struct btf_var_secinfo`: type, offset, size.
const SECINFO_WORDS: usize = 3;
/// Words of a `struct btf_param`: name, type.
const PARAM_WORDS: usize = 2;
/// Bytes of each `.ksyms` entry: an `int` (libbpf's).
const KSYM_SIZE: u32 = 4;
/// `line_col` keeps the column in its low 10 bits.
const LINE_COL_BITS: u32 = 10;
/// Bytes of the BTF checker's log kept when it refuses.
const LOG_SIZE: usize = 1 << 16;

/// Applies the fix-ups of the module documentation to a copy of `btf`,
/// `object`'s `.BTF`; `callbacks` names the functions whose address the
/// programs take.
pub(crate) fn fix_up(object: &Object, btf: &Btf, callbacks: &HashSet<&str>) -> BtfWriter {
    let mut writer = BtfWriter::new(btf);
    let count = u32::try_from(writer.type_count()).unwrap_or(u32::MAX);
    for id in 1..=count {
        let Some(ty) = writer.get(id) else { continue };
        let name = writer.string(ty.name_off).unwrap_or_default().to_owned();
        match ty.kind() {
            Some(BtfKind::Datasec) if name == KSYMS_SECTION => fix_ksyms(&mut writer, id),
            Some(BtfKind::Datasec) => fix_datasec(object, &mut writer, id, &name),
            Some(BtfKind::Func) if ty.vlen() == LINKAGE_GLOBAL && callbacks.contains(&*name) => {
                if let Some(func) = writer.get_mut(id) {
                    func.set_vlen(LINKAGE_STATIC);
                }
            }
            _ => {}
        }
    }
    // Extern functions outside `.ksyms` too: the kernel refuses the
    // linkage wherever the FUNC is.
    for id in 1..=count {
        if writer.get(id).is_some_and(is_extern_func) {
            fix_extern_func(&mut writer, id);
        }
    }
    writer
}

/// The entries of `DATASEC` `id`: `[type, offset, size]` each.
fn secinfos(writer: &BtfWriter, id: u32) -> Vec<[u32; SECINFO_WORDS]> {
    let Some(ty) = writer.get(id) else {
        return Vec::new();
    };
    (0..usize::from(ty.vlen()))
        .map(|i| {
            let at = i * SECINFO_WORDS;
            [ty.word(at), ty.word(at + 1), ty.word(at + 2)]
        })
        .collect()
}

fn set_secinfos(writer: &mut BtfWriter, id: u32, entries: &[[u32; SECINFO_WORDS]]) {
    let Some(ty) = writer.get_mut(id) else { return };
    for (i, entry) in entries.iter().enumerate() {
        for (w, &value) in entry.iter().enumerate() {
            ty.set_word(i * SECINFO_WORDS + w, value);
        }
    }
}

/// A data section's `DATASEC` (`.bss`, `.maps`, `license`...): its size
/// from the ELF section, its variables' offsets from their symbols.
fn fix_datasec(object: &Object, writer: &mut BtfWriter, id: u32, name: &str) {
    let offsets: HashMap<&str, u64> = object.section_symbols(name).into_iter().collect();
    let mut entries = secinfos(writer, id);
    for entry in &mut entries {
        let var = writer
            .get(entry[0])
            .filter(|t| t.kind() == Some(BtfKind::Var));
        let offset = var
            .and_then(|var| writer.string(var.name_off))
            .and_then(|name| offsets.get(name));
        if let Some(&offset) = offset {
            entry[1] = u32::try_from(offset).unwrap_or(u32::MAX);
        }
    }
    entries.sort_by_key(|entry| entry[1]);
    set_secinfos(writer, id, &entries);
    let size = object
        .section_size(name)
        .and_then(|s| u32::try_from(s).ok());
    if let (Some(ty), Some(size)) = (writer.get_mut(id), size)
        && ty.size_or_type == 0
    {
        ty.size_or_type = size;
    }
}

/// `.ksyms`, which has no ELF section: an `int` slot per entry, each
/// extern function replaced by the dummy variable, each extern variable
/// made an allocated `int`.
fn fix_ksyms(writer: &mut BtfWriter, id: u32) {
    let mut entries = secinfos(writer, id);
    let int = find_or_add_int(writer);
    let mut dummy = None;
    for (i, entry) in entries.iter_mut().enumerate() {
        match writer.get(entry[0]).and_then(RawType::kind) {
            Some(BtfKind::Func) => {
                let var = *dummy.get_or_insert_with(|| {
                    let name = writer.add_string(DUMMY_KSYM);
                    writer.add_type(RawType::new(
                        BtfKind::Var,
                        name,
                        0,
                        int,
                        u32::from(LINKAGE_GLOBAL).to_le_bytes().to_vec(),
                    ))
                });
                fix_extern_func(writer, entry[0]);
                entry[0] = var;
            }
            Some(BtfKind::Var) => {
                if let Some(var) = writer.get_mut(entry[0]) {
                    var.set_word(0, LINKAGE_GLOBAL.into());
                    var.size_or_type = int;
                }
            }
            _ => {}
        }
        entry[1] = u32::try_from(i)
            .unwrap_or(u32::MAX)
            .saturating_mul(KSYM_SIZE);
        entry[2] = KSYM_SIZE;
    }
    set_secinfos(writer, id, &entries);
    let size = u32::try_from(entries.len())
        .unwrap_or(u32::MAX)
        .saturating_mul(KSYM_SIZE);
    if let Some(ty) = writer.get_mut(id) {
        ty.size_or_type = size;
    }
}

fn is_extern_func(ty: &RawType) -> bool {
    ty.kind() == Some(BtfKind::Func) && ty.vlen() > LINKAGE_GLOBAL
}

/// Makes `FUNC` `id` global and names its prototype's unnamed
/// parameters.
fn fix_extern_func(writer: &mut BtfWriter, id: u32) {
    let Some(func) = writer.get_mut(id) else {
        return;
    };
    func.set_vlen(LINKAGE_GLOBAL);
    let proto = func.size_or_type;
    let name = writer.add_string(DUMMY_KSYM);
    let Some(proto) = writer
        .get_mut(proto)
        .filter(|t| t.kind() == Some(BtfKind::FuncProto))
    else {
        return;
    };
    for i in 0..usize::from(proto.vlen()) {
        let (name_word, type_word) = (i * PARAM_WORDS, i * PARAM_WORDS + 1);
        // A `void` type is the `...` of a variadic function: no name.
        if proto.word(name_word) == 0 && proto.word(type_word) != 0 {
            proto.set_word(name_word, name);
        }
    }
}

/// A 32-bit `INT`'s id, added as `int` when the object has none.
fn find_or_add_int(writer: &mut BtfWriter) -> u32 {
    let count = u32::try_from(writer.type_count()).unwrap_or(u32::MAX);
    let found = (1..=count).find(|&id| {
        writer.get(id).is_some_and(|t| {
            // INT data: encoding, bit offset, and the bits in the low byte.
            t.kind() == Some(BtfKind::Int) && t.size_or_type == 4 && t.word(0) & 0xff == 32
        })
    });
    found.unwrap_or_else(|| {
        let name = writer.add_string("int");
        // BTF_INT_SIGNED, 32 bits.
        let encoding = (1u32 << 24) | 32;
        writer.add_type(RawType::new(
            BtfKind::Int,
            name,
            0,
            4,
            encoding.to_le_bytes().to_vec(),
        ))
    })
}

/// The functions whose address `linked` takes (`ld_imm64` of a
/// function: callbacks), by name.
pub(crate) fn callbacks(linked: &LinkedProgram) -> Vec<&str> {
    let insns = linked.program.insns();
    let mut names = Vec::new();
    for (slot, insn) in insns.iter().enumerate() {
        if insn.code != LD_IMM64 || insn.src() != PSEUDO_FUNC {
            continue;
        }
        let target = i64::try_from(slot).unwrap_or(i64::MAX) + 1 + i64::from(insn.imm);
        let function = linked
            .functions
            .iter()
            .find(|f| i64::try_from(f.start).is_ok_and(|start| start == target));
        if let Some(function) = function {
            names.push(function.name.as_str());
        }
    }
    names
}

/// An object's BTF, loaded into the kernel.
#[derive(Debug)]
pub(crate) struct LoadedBtf {
    fd: OwnedFd,
    /// The BTF as loaded, for the string offsets of line info.
    writer: BtfWriter,
    /// The object's own functions (static or global) by name: their
    /// `FUNC` ids.
    funcs: HashMap<String, u32>,
}

/// func_info and line_info records of one program.
#[derive(Debug)]
pub(crate) struct ProgramRecords {
    func_info: Vec<u8>,
    line_info: Vec<u8>,
}

impl LoadedBtf {
    /// Fixes up and loads `object`'s BTF, `callbacks` being the functions
    /// whose address its programs take; `None` when it has none.
    pub(crate) fn load(
        object: &Object,
        callbacks: &HashSet<&str>,
    ) -> Result<Option<LoadedBtf>, KernelError> {
        let Some(btf) = object.btf() else {
            return Ok(None);
        };
        let writer = fix_up(object, btf, callbacks);
        let bytes = writer.to_bytes();
        let fd = match sys::btf_load(&bytes, None) {
            Ok(fd) => fd,
            // Again with the checker's log, to say why.
            Err(_) => {
                let mut log = vec![0u8; LOG_SIZE];
                match sys::btf_load(&bytes, Some(&mut log)) {
                    Ok(fd) => fd,
                    Err(source) => return Err(refused_btf(source, &log)),
                }
            }
        };
        Ok(Some(LoadedBtf {
            fd,
            writer,
            funcs: defined_funcs(btf),
        }))
    }

    /// The records of `linked`, whose instructions as loaded are
    /// `insns`; `Err` says why there are none (a function without a
    /// `FUNC` type).
    pub(crate) fn records(
        &self,
        linked: &LinkedProgram,
        insns: &[Insn],
    ) -> Result<ProgramRecords, String> {
        program_records(&self.writer, &self.funcs, linked, insns)
    }

    /// What `BPF_PROG_LOAD` takes of it for a program with `records`.
    pub(crate) fn prog_btf<'a>(&'a self, records: &'a ProgramRecords) -> sys::ProgBtf<'a> {
        sys::ProgBtf {
            fd: self.fd.as_fd(),
            func_info: &records.func_info,
            line_info: &records.line_info,
        }
    }
}

/// func_info: each function of `linked` by first slot, with its `FUNC`
/// id from `funcs`; line_info: see [`line_info`].
fn program_records(
    btf: &BtfWriter,
    funcs: &HashMap<String, u32>,
    linked: &LinkedProgram,
    insns: &[Insn],
) -> Result<ProgramRecords, String> {
    let mut functions: Vec<_> = linked.functions.iter().collect();
    functions.sort_by_key(|f| f.start);
    let mut func_info = Vec::with_capacity(functions.len() * sys::FUNC_INFO_REC_SIZE);
    for function in &functions {
        let id = funcs.get(&function.name).ok_or_else(|| {
            format!(
                "the object's BTF has no FUNC for function `{}`",
                function.name
            )
        })?;
        func_info.extend(slot_u32(function.start).to_le_bytes());
        func_info.extend(id.to_le_bytes());
    }
    let starts: Vec<usize> = functions.iter().map(|f| f.start).collect();
    Ok(ProgramRecords {
        func_info,
        line_info: line_info(btf, linked, insns, &starts),
    })
}

/// Line info from the linker's line table, its strings' offsets in
/// `btf`; none at all when the kernel would refuse it: it wants a record
/// at every function's first slot (`starts`), and none on the second half
/// of an `ld_imm64`.
fn line_info(btf: &BtfWriter, linked: &LinkedProgram, insns: &[Insn], starts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut covered = HashSet::new();
    for (slot, line) in linked.lines.iter() {
        let Some(line) = line else { continue };
        // Opcode 0: the second half of an ld_imm64.
        if insns.get(slot).is_none_or(|insn| insn.code == 0) {
            continue;
        }
        let (Some(file), Some(text)) = (btf.find_string(&line.file), btf.find_string(&line.text))
        else {
            return Vec::new();
        };
        let column = line.column & ((1 << LINE_COL_BITS) - 1);
        out.extend(slot_u32(slot).to_le_bytes());
        out.extend(file.to_le_bytes());
        out.extend(text.to_le_bytes());
        out.extend(((line.line << LINE_COL_BITS) | column).to_le_bytes());
        covered.insert(slot);
    }
    if starts.iter().all(|start| covered.contains(start)) {
        out
    } else {
        Vec::new()
    }
}

fn slot_u32(slot: usize) -> u32 {
    // A program the kernel takes has fewer than 2^32 instructions; one
    // that has more is refused by its insn_cnt anyway.
    u32::try_from(slot).unwrap_or(u32::MAX)
}

/// The functions `btf` defines (not extern), by name.
fn defined_funcs(btf: &Btf) -> HashMap<String, u32> {
    let mut funcs = HashMap::new();
    for (i, ty) in btf.types().iter().enumerate() {
        let defined = matches!(btf.linkage(ty), Some(Linkage::Static | Linkage::Global));
        if ty.kind == BtfKind::Func
            && defined
            && let Some(name) = btf.type_name(ty)
        {
            let id = u32::try_from(i + 1).unwrap_or(u32::MAX);
            funcs.entry(name.to_owned()).or_insert(id);
        }
    }
    funcs
}

fn refused_btf(source: std::io::Error, log: &[u8]) -> KernelError {
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let log = String::from_utf8_lossy(&log[..end]).into_owned();
    let refused = |source: std::io::Error, log: String| KernelError::LoadBtf {
        reason: reason(&log).map_or_else(|| errno_name(&source), str::to_owned),
        log,
        source,
    };
    if log.trim().is_empty() {
        KernelError::bpf(source, |e| refused(e, String::new()))
    } else {
        refused(source, log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_jit::btf::VarSecInfo;

    fn sample(name: &str) -> Object {
        let path = format!(
            "{}/../images/progs/{name}.bpf.o",
            env!("CARGO_MANIFEST_DIR")
        );
        Object::parse(&std::fs::read(path).unwrap()).unwrap()
    }

    /// The fixed-up BTF of sample `name`, parsed back.
    fn fixed(name: &str) -> (Object, Btf) {
        let object = sample(name);
        let bytes = fix_up(&object, object.btf().unwrap(), &HashSet::new()).to_bytes();
        (object, Btf::parse(&bytes).unwrap())
    }

    fn entries(btf: &Btf, section: &str) -> Vec<(String, u32, u32)> {
        let datasec = btf.find_datasec(section).unwrap();
        btf.datasec_entries(datasec)
            .into_iter()
            .map(
                |VarSecInfo {
                     type_id,
                     offset,
                     size,
                 }| {
                    let ty = btf.type_by_id(type_id).unwrap();
                    (btf.type_name(ty).unwrap().to_owned(), offset, size)
                },
            )
            .collect()
    }

    #[test]
    fn datasecs_get_their_sections_sizes_and_symbols_offsets() {
        // ringbuf.bpf.o (bench): clang wrote size 0 and every offset 0.
        let (object, btf) = fixed("bench/ringbuf");
        let size = |name| btf.find_datasec(name).unwrap().size_or_type;
        assert_eq!(size(".bss"), 16);
        assert_eq!(size(".data"), 16);
        assert_eq!(size(".maps"), object.section_size(".maps").unwrap() as u32);
        assert_eq!(size("license"), 4);
        assert_eq!(
            entries(&btf, ".bss"),
            [("produced".into(), 0, 8), ("full".into(), 8, 8)]
        );
        // Sorted by offset: `records` is at 0 though declared after.
        assert_eq!(
            entries(&btf, ".data"),
            [("records".into(), 0, 8), ("commit_flags".into(), 8, 8)]
        );
    }

    #[test]
    fn the_kernel_takes_every_samples_fixed_up_btf() {
        if !integration_tests::bpf_available("the_kernel_takes_every_samples_fixed_up_btf") {
            return;
        }
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../images/progs");
        let mut paths: Vec<_> = ["", "/bench"]
            .iter()
            .flat_map(|sub| std::fs::read_dir(format!("{dir}{sub}")).unwrap())
            .map(|entry| entry.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".bpf.o"))
            .collect();
        paths.sort();
        assert!(paths.len() > 40, "{paths:?}");
        let mut refused = Vec::new();
        for path in &paths {
            let object = Object::parse(&std::fs::read(path).unwrap()).unwrap();
            match LoadedBtf::load(&object, &HashSet::new()) {
                Ok(Some(_)) => {}
                Ok(None) => refused.push(format!("{}: no BTF", path.display())),
                Err(e) => refused.push(format!("{}: {e}", path.display())),
            }
        }
        assert!(refused.is_empty(), "{refused:#?}");
    }

    #[test]
    fn ksyms_become_int_slots_and_extern_funcs_global() {
        let (_, btf) = fixed("loops");
        let ksyms = btf.find_datasec(".ksyms").unwrap();
        assert_eq!(ksyms.size_or_type, 12);
        assert_eq!(
            entries(&btf, ".ksyms"),
            [
                ("dummy_ksym".into(), 0, 4),
                ("dummy_ksym".into(), 4, 4),
                ("dummy_ksym".into(), 8, 4)
            ]
        );
        let dummy = btf
            .types()
            .iter()
            .find(|t| btf.type_name(t) == Some("dummy_ksym"))
            .unwrap();
        assert_eq!(dummy.kind, BtfKind::Var);
        assert_eq!(btf.linkage(dummy), Some(Linkage::Global));
        assert_eq!(btf.type_size(dummy.size_or_type), Ok(4));
        // No FUNC is extern any more, and every kfunc's parameters have
        // names.
        let funcs: Vec<_> = btf
            .types()
            .iter()
            .filter(|t| t.kind == BtfKind::Func)
            .collect();
        assert!(
            funcs
                .iter()
                .all(|f| btf.linkage(f) != Some(Linkage::Extern))
        );
        let new = funcs
            .iter()
            .find(|f| btf.type_name(f) == Some("bpf_iter_num_new"))
            .unwrap();
        let proto = btf.type_by_id(new.size_or_type).unwrap();
        let params = btf.type_data(proto);
        assert_eq!(proto.vlen(), 3);
        for param in params.chunks_exact(8) {
            let name = u32::from_le_bytes(param[..4].try_into().unwrap());
            assert_eq!(btf.string(name), Some("dummy_ksym"));
        }
        // The object's own functions keep their linkage.
        let visit = funcs
            .iter()
            .find(|f| btf.type_name(f) == Some("visit"))
            .unwrap();
        assert_eq!(btf.linkage(visit), Some(Linkage::Static));
    }

    #[test]
    fn func_info_and_line_info_follow_the_linked_layout() {
        let object = sample("callbacks");
        let btf = object.btf().unwrap();
        let id = |name: &str| {
            let i = btf
                .types()
                .iter()
                .position(|t| t.kind == BtfKind::Func && btf.type_name(t) == Some(name))
                .unwrap();
            i as u32 + 1
        };
        let spec = object.find_program(Some("loops")).unwrap();
        let linked = object.link(spec, &|_| Some(0)).unwrap();
        let insns = linked.program.insns();
        // Both callbacks' addresses are taken; the global one is made
        // static, the static one stays so.
        let mut callbacks: Vec<&str> = callbacks(&linked);
        callbacks.sort_unstable();
        assert_eq!(callbacks, ["add_index", "add_twice"]);
        let writer = fix_up(&object, btf, &callbacks.into_iter().collect());
        let fixed = Btf::parse(&writer.to_bytes()).unwrap();
        for name in ["add_index", "add_twice"] {
            let func = fixed.type_by_id(id(name)).unwrap();
            assert_eq!(fixed.linkage(func), Some(Linkage::Static), "{name}");
        }
        let loops = fixed.type_by_id(id("loops")).unwrap();
        assert_eq!(fixed.linkage(loops), Some(Linkage::Global));
        let funcs = defined_funcs(btf);
        let records = program_records(&writer, &funcs, &linked, insns).unwrap();
        let words = |bytes: &[u8]| -> Vec<u32> {
            bytes
                .chunks_exact(4)
                .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
                .collect()
        };
        // The entry and both callbacks, at their slots in the linked
        // program, each with its own FUNC.
        let func_info = words(&records.func_info);
        let expected: Vec<u32> = linked
            .functions
            .iter()
            .flat_map(|f| [f.start as u32, id(&f.name)])
            .collect();
        assert_eq!(func_info.len(), 6);
        assert_eq!(func_info[..2], [0, id("loops")]);
        assert_eq!(func_info, expected);
        // Line info: increasing slots, one at each function's start, none
        // on an ld_imm64's second half, strings from the BTF.
        let lines = words(&records.line_info);
        let lines: Vec<&[u32]> = lines.chunks_exact(4).collect();
        assert!(lines.len() > 3);
        assert!(lines.windows(2).all(|w| w[0][0] < w[1][0]));
        for f in &linked.functions {
            assert!(lines.iter().any(|l| l[0] == f.start as u32), "{f:?}");
        }
        for line in &lines {
            assert_ne!(insns[line[0] as usize].code, 0);
            assert!(writer.string(line[1]).unwrap().ends_with("callbacks.bpf.c"));
            assert!(!writer.string(line[2]).unwrap().is_empty());
        }
        let mut partial = funcs.clone();
        partial.remove("add_twice");
        let e = program_records(&writer, &partial, &linked, insns).unwrap_err();
        assert_eq!(e, "the object's BTF has no FUNC for function `add_twice`");
    }
}
