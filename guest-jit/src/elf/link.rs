//! Linking one program: its entry function and every function it reaches,
//! laid out in one instruction array.
//!
//! ```text
//!  object                                   linked program
//!  syscall: pythagoras [0..8)  ---------->  slot 0   pythagoras   call +k --+
//!  .text:   square     [0..3)  --+          slot 8   sum_of_squares  <------+
//!           sum_of_sq  [3..12) --|--------> slot 17  square
//!           gcd        [12..20)  (not reached: left out)
//! ```
//!
//! Functions are placed in the order they are first reached (breadth
//! first), each once however often it is called. Call and function-address
//! offsets are computed for the new layout after everything is placed.
//!
//! What lies outside the program is resolved through the caller's
//! placement ([`Placed`]): an `ld_imm64` of global data becomes the data's
//! guest address, one of a map the address of its header. A call to an
//! extern function (clang: `call -1`, src 1, relocated against the
//! undefined symbol; libbpf: src 2) becomes a kfunc call whose id indexes
//! [`LinkedProgram::kfuncs`]. When the object's arena has
//! `BPF_F_NO_USER_CONV`, every `cast_user` becomes `wX = wY`, as the
//! kernel's verifier rewrites it (Note [Arena pointers] in
//! [`crate::jit::arena`]).

use std::collections::{HashMap, HashSet, VecDeque};

use super::read::{Place, Reloc, RelocKind, Role};
use super::{DataKind, LoadError, Object, Placed, ProgramSpec};
use crate::btf::{LineTable, SourceLine};
use crate::insn::opcode::{
    ALU_MOV, CALL, CALL_KFUNC, CALL_LOCAL, CLASS_ALU, CLASS_ALU64, LD_IMM64, OFF_ADDR_SPACE_CAST,
    PSEUDO_FUNC, PSEUDO_IMM64, SRC_X,
};
use crate::insn::{INSN_SIZE, Insn, Program};
use crate::verify;

/// A function of a linked program.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FunctionSymbol {
    /// Its name in the object.
    pub name: String,
    /// Slot of its first instruction.
    pub start: usize,
}

/// A program ready to verify and compile: self-contained instructions with
/// their source lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkedProgram {
    /// Entry function name.
    pub name: String,
    /// Section the entry function is in.
    pub section: String,
    /// The entry function at slot 0, then every subprogram it reaches.
    /// Local calls and `ld_imm64` function addresses (`Imm64::Func`) point
    /// at the new slots; `ld_imm64` of global data is
    /// `Imm64::Value(placement(Placed::Data(i)) + offset)`, of a map
    /// `Imm64::Value(placement(Placed::Map(i)))`; kfunc calls are
    /// `Op::CallKfunc { btf_id: k, module: 0 }`, `k` indexing `kfuncs`.
    pub program: Program,
    /// Source line of each slot, from `.BTF.ext` line info (empty without
    /// it).
    pub lines: LineTable,
    /// Each function of `program`, by start slot; the entry is first.
    pub functions: Vec<FunctionSymbol>,
    /// Slots of `ld_imm64`s that load the address of `.percpu` data: the
    /// JIT adds the running CPU's offset after them.
    pub percpu_loads: Vec<usize>,
    /// Names of the kfuncs the program calls; a kfunc call's `btf_id` is
    /// an index into this list (the caller resolves the names).
    pub kfuncs: Vec<String>,
    /// Every `ld_imm64` resolved through `placement`, in slot order, so
    /// that a caller whose maps are not at addresses (the host kernel's,
    /// which takes a map fd and a value offset) can rewrite them.
    pub placed_loads: Vec<PlacedLoad>,
}

/// An `ld_imm64` the linker resolved through the caller's placement: it
/// loads `placement(what) + offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlacedLoad {
    /// Slot of the `ld_imm64`'s first half in [`LinkedProgram::program`].
    pub slot: usize,
    /// What was placed.
    pub what: Placed,
    /// Byte offset into it (0 for a map).
    pub offset: u64,
}

/// How a fixed-up instruction refers to a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RefKind {
    Call,
    FuncAddr,
}

impl RefKind {
    fn describe(self) -> &'static str {
        match self {
            RefKind::Call => "Call",
            RefKind::FuncAddr => "Function address",
        }
    }
}

/// A function of the object: code section index and function index.
type FuncId = (usize, usize);

struct Linker<'a> {
    object: &'a Object,
    placement: &'a dyn Fn(Placed) -> Option<u64>,
    program: &'a str,
    out: Vec<Insn>,
    placed: HashMap<FuncId, usize>,
    /// Functions placed or waiting in `queue`.
    scheduled: HashSet<FuncId>,
    queue: VecDeque<FuncId>,
    /// `(slot in out, kind, callee)`, resolved once all are placed.
    fixups: Vec<(usize, RefKind, FuncId)>,
    /// Line entries for [`LineTable::from_entries`].
    lines: Vec<(usize, Option<SourceLine>)>,
    functions: Vec<FunctionSymbol>,
    percpu_loads: Vec<usize>,
    placed_loads: Vec<PlacedLoad>,
    kfuncs: Vec<String>,
    /// Index of each name in `kfuncs`.
    kfunc_index: HashMap<String, usize>,
    /// The object's arena has `BPF_F_NO_USER_CONV`.
    no_user_conv: bool,
}

/// `rX = addr_space_cast(rY, 1, 0)`: ALU64 MOV X, offset 1, imm 1 << 16.
const CAST_USER_CODE: u8 = CLASS_ALU64 | ALU_MOV | SRC_X;
const CAST_USER_IMM: i32 = 1 << 16;

pub(super) fn link(
    object: &Object,
    spec: &ProgramSpec,
    placement: &dyn Fn(Placed) -> Option<u64>,
) -> Result<LinkedProgram, LoadError> {
    let not_ours = || LoadError::ResolveProgram {
        name: spec.name.clone(),
    };
    let valid = object
        .code
        .get(spec.code)
        .and_then(|code| Some((code, code.functions.get(spec.function)?)))
        .is_some_and(|(code, f)| code.name == spec.section && f.name == spec.name);
    if !valid {
        return Err(not_ours());
    }
    let mut linker = Linker {
        object,
        placement,
        program: &spec.name,
        out: Vec::new(),
        placed: HashMap::new(),
        scheduled: HashSet::new(),
        queue: VecDeque::new(),
        fixups: Vec::new(),
        lines: Vec::new(),
        functions: Vec::new(),
        percpu_loads: Vec::new(),
        placed_loads: Vec::new(),
        kfuncs: Vec::new(),
        kfunc_index: HashMap::new(),
        no_user_conv: object
            .arena()
            .is_some_and(|a| object.maps[a].map_flags & super::map_flags::NO_USER_CONV != 0),
    };
    linker.enqueue((spec.code, spec.function));
    while let Some(id) = linker.queue.pop_front() {
        linker.copy(id)?;
    }
    linker.apply_fixups();

    let functions = linker.functions;
    let lines = LineTable::from_entries(linker.lines);
    let ctx = verify::VerifyContext {
        helper_known: &|_| true,
        kfunc_known: &|_| true,
        kfuncs: &[],
        lines: Some(&lines),
        functions: &functions,
    };
    let program =
        verify::decode(&linker.out, &ctx).map_err(|e| LoadError::DecodeProgram(Box::new(e)))?;
    Ok(LinkedProgram {
        name: spec.name.clone(),
        section: spec.section.clone(),
        program,
        lines,
        functions,
        percpu_loads: linker.percpu_loads,
        kfuncs: linker.kfuncs,
        placed_loads: {
            let mut loads = linker.placed_loads;
            loads.sort_by_key(|l| l.slot);
            loads
        },
    })
}

impl Linker<'_> {
    /// Schedules a function to be copied; its slot is known once it is.
    fn enqueue(&mut self, id: FuncId) {
        if self.scheduled.insert(id) {
            self.queue.push_back(id);
        }
    }

    /// Copies a function to the end of the output and resolves what its
    /// instructions refer to.
    fn copy(&mut self, id: FuncId) -> Result<(), LoadError> {
        let object = self.object;
        let code = &object.code[id.0];
        let function = &code.functions[id.1];
        let base = self.out.len();
        self.placed.insert(id, base);
        self.functions.push(FunctionSymbol {
            name: function.name.clone(),
            start: base,
        });
        let range = function.start..function.end;
        // Checked at parse: functions lie inside their section.
        let insns = code.insns.get(range.clone()).unwrap_or_default();
        self.out.extend_from_slice(insns);
        self.lines.push((base, None));
        let first = code.lines.partition_point(|l| l.slot < range.start);
        for info in code.lines[first..]
            .iter()
            .take_while(|l| l.slot < range.end)
        {
            self.lines
                .push((base + info.slot - range.start, Some(info.line.clone())));
        }
        let mut i = 0;
        while let Some(&insn) = insns.get(i) {
            let pc = range.start + i;
            match code.relocs.get(&pc) {
                Some(&reloc) => self.relocate(id.0, pc, base + i, reloc)?,
                None => self.local_ref(id.0, pc, base + i, insn)?,
            }
            if self.no_user_conv
                && insn.code == CAST_USER_CODE
                && insn.off == OFF_ADDR_SPACE_CAST
                && insn.imm == CAST_USER_IMM
            {
                // The kernel's verifier (BPF_F_NO_USER_CONV): `wX = wY`.
                let mov = &mut self.out[base + i];
                mov.code = CLASS_ALU | ALU_MOV | SRC_X;
                mov.off = 0;
                mov.imm = 0;
            }
            i += if insn.code == LD_IMM64 { 2 } else { 1 };
        }
        Ok(())
    }

    /// A call or function address without a relocation: relative to the
    /// instruction, inside its own section.
    fn local_ref(&mut self, c: usize, pc: usize, new: usize, insn: Insn) -> Result<(), LoadError> {
        let kind = match (insn.code, insn.src()) {
            (CALL, CALL_LOCAL) => RefKind::Call,
            (LD_IMM64, PSEUDO_FUNC) => RefKind::FuncAddr,
            _ => return Ok(()),
        };
        let target = pc as i128 + 1 + i128::from(insn.imm);
        self.refer(c, pc, new, kind, c, target)
    }

    /// Resolves a function reference to `target` (a slot of section
    /// `target_code`, possibly out of range) and records the fixup.
    fn refer(
        &mut self,
        c: usize,
        pc: usize,
        new: usize,
        kind: RefKind,
        target_code: usize,
        target: i128,
    ) -> Result<(), LoadError> {
        let code = &self.object.code[target_code];
        let function = usize::try_from(target)
            .ok()
            .and_then(|slot| code.function_at(slot));
        let Some(function) = function else {
            return Err(LoadError::ResolveCall {
                what: kind.describe(),
                section: self.object.code[c].name.clone(),
                offset: byte_offset(pc),
                target_section: code.name.clone(),
                target: i64::try_from(target).unwrap_or(i64::MAX),
            });
        };
        let callee = (target_code, function);
        self.enqueue(callee);
        self.fixups.push((new, kind, callee));
        Ok(())
    }

    /// Applies a relocation of the instruction at `pc` of section `c`,
    /// copied to `new`.
    fn relocate(&mut self, c: usize, pc: usize, new: usize, reloc: Reloc) -> Result<(), LoadError> {
        let object = self.object;
        let code = &object.code[c];
        let symbol = &object.symbols[reloc.symbol];
        let imm = code.insns[pc].imm;
        let offset = byte_offset(pc);
        let section = || code.name.clone();
        let target = match symbol.place {
            Place::Undefined if reloc.kind == RelocKind::Call => {
                return self.kfunc_call(c, pc, new);
            }
            Place::Undefined => {
                return Err(LoadError::UseExtern {
                    program: self.program.to_owned(),
                    symbol: symbol.name.clone(),
                    section: section(),
                    offset,
                });
            }
            Place::Special => None,
            Place::Section(s) => Some((s, &object.sections[s])),
        };
        let unplaceable = |target_section: &str| LoadError::ResolveGlobal {
            section: section(),
            offset,
            symbol: symbol.name.clone(),
            target_section: target_section.to_owned(),
        };
        let Some((s, target)) = target else {
            return Err(unplaceable("(absolute)"));
        };
        let value = i128::from(symbol.value);
        match (reloc.kind, target.role) {
            (RelocKind::Ld64, Role::Maps) => {
                let at = value
                    + if symbol.is_section {
                        i128::from(imm)
                    } else {
                        0
                    };
                let map = u64::try_from(at)
                    .ok()
                    .and_then(|at| object.map_starts.get(&(s, at)).copied());
                let Some(map) = map else {
                    return Err(LoadError::ResolveMap {
                        section: section(),
                        offset,
                        symbol: symbol.name.clone(),
                        target_section: target.name.clone(),
                        at,
                    });
                };
                let address =
                    (self.placement)(Placed::Map(map)).ok_or_else(|| LoadError::PlaceMap {
                        program: self.program.to_owned(),
                        map: object.maps[map].name.clone(),
                        section: section(),
                        offset,
                    })?;
                self.set_imm64(new, address);
                self.placed_loads.push(PlacedLoad {
                    slot: new,
                    what: Placed::Map(map),
                    offset: 0,
                });
                Ok(())
            }
            (RelocKind::Ld64, Role::Data(d)) => {
                let data = &object.data[d];
                // clang puts the offset into the section in imm for section
                // symbols, and 0 there for named ones (libbpf adds both).
                let at = value + i128::from(imm);
                let size = data.bytes.len() as u64;
                let at = u64::try_from(at)
                    .ok()
                    .filter(|&at| at <= size)
                    .ok_or_else(|| LoadError::CheckGlobalOffset {
                        section: section(),
                        offset,
                        target_section: data.name.clone(),
                        at,
                        size,
                    })?;
                let base =
                    (self.placement)(Placed::Data(d)).ok_or_else(|| LoadError::PlaceData {
                        program: self.program.to_owned(),
                        data: data.name.clone(),
                        section: section(),
                        offset,
                    })?;
                self.set_imm64(new, base.wrapping_add(at));
                self.placed_loads.push(PlacedLoad {
                    slot: new,
                    what: Placed::Data(d),
                    offset: at,
                });
                if data.kind == DataKind::PerCpu {
                    self.percpu_loads.push(new);
                }
                Ok(())
            }
            (RelocKind::Ld64, Role::Code(tc)) => {
                // The byte offset of the function in its section.
                let byte = value + i128::from(imm);
                let slot = if byte % INSN_SIZE as i128 == 0 {
                    byte / INSN_SIZE as i128
                } else {
                    -1
                };
                self.refer(c, pc, new, RefKind::FuncAddr, tc, slot)
            }
            (RelocKind::Call, Role::Code(tc)) => {
                // libbpf: symbol offset in slots, plus imm + 1 (imm is -1
                // for a named function, the slot offset - 1 for a section
                // symbol).
                let slot = if value % INSN_SIZE as i128 == 0 {
                    value / INSN_SIZE as i128 + i128::from(imm) + 1
                } else {
                    -1
                };
                self.refer(c, pc, new, RefKind::Call, tc, slot)
            }
            (_, _) => Err(unplaceable(&target.name)),
        }
    }

    /// Makes the `ld_imm64` at `slot` of the output load `value`.
    fn set_imm64(&mut self, slot: usize, value: u64) {
        if let [first, second, ..] = &mut self.out[slot..] {
            first.imm = value as i32;
            first.regs = (PSEUDO_IMM64 << 4) | first.dst();
            second.imm = (value >> 32) as i32;
        }
    }

    /// Turns the call at `pc` of section `c` (copied to `new`), relocated
    /// against an undefined symbol, into a kfunc call.
    fn kfunc_call(&mut self, c: usize, pc: usize, new: usize) -> Result<(), LoadError> {
        let object = self.object;
        let code = &object.code[c];
        let insn = code.insns[pc];
        let reloc = code.relocs.get(&pc).copied();
        let symbol = reloc.map_or("", |r| object.symbols[r.symbol].name.as_str());
        let offset = byte_offset(pc);
        // clang writes `call -1` with src 1 (a pseudo call it cannot
        // resolve); libbpf-processed code has src 2 already.
        let declared = object.btf.is_none() || object.kfunc_declarations.contains(symbol);
        if !matches!(insn.src(), CALL_LOCAL | CALL_KFUNC) || symbol.is_empty() || !declared {
            return Err(LoadError::DeclareKfunc {
                program: self.program.to_owned(),
                symbol: symbol.to_owned(),
                section: code.name.clone(),
                offset,
            });
        }
        let next = self.kfuncs.len();
        let index = *self.kfunc_index.entry(symbol.to_owned()).or_insert(next);
        if index == next {
            self.kfuncs.push(symbol.to_owned());
        }
        let call = &mut self.out[new];
        call.regs = CALL_KFUNC << 4;
        call.off = 0;
        // A program has fewer kfuncs than instructions: the index fits.
        call.imm = i32::try_from(index).unwrap_or(i32::MAX);
        Ok(())
    }

    /// Points every call and function address at its callee's new slot.
    fn apply_fixups(&mut self) {
        for &(slot, kind, callee) in &self.fixups {
            let Some(&start) = self.placed.get(&callee) else {
                continue;
            };
            let rel = start as i64 - (slot as i64 + 1);
            // A linked program is at most as long as the object's code,
            // which came from a slice: the offset fits in i32 unless the
            // object is over 16 GiB.
            let rel = i32::try_from(rel).unwrap_or(i32::MAX);
            match kind {
                RefKind::Call => {
                    let call = &mut self.out[slot];
                    call.imm = rel;
                    call.regs = (CALL_LOCAL << 4) | call.dst();
                }
                RefKind::FuncAddr => {
                    if let [first, second, ..] = &mut self.out[slot..] {
                        first.imm = rel;
                        first.regs = (PSEUDO_FUNC << 4) | first.dst();
                        second.imm = 0;
                    }
                }
            }
        }
    }
}

/// Byte offset of a slot in its section, as `llvm-readelf -r` shows it.
fn byte_offset(slot: usize) -> u64 {
    (slot as u64).saturating_mul(INSN_SIZE as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::arena::tests::setup_sample;
    use crate::insn::{AluOp, CastKind, Op, Source, Width};

    /// Links segv_alloc with its `cast_kern` turned into a `cast_user`,
    /// with or without `BPF_F_NO_USER_CONV` on the arena: the op at the
    /// cast's slot.
    fn cast_user_with(no_user_conv: bool) -> Op {
        let mut object = setup_sample("arena_segv.bpf.o");
        let code = object
            .code
            .iter_mut()
            .find(|c| c.name == "syscall")
            .unwrap();
        let at = code
            .insns
            .iter()
            .position(|i| i.off == OFF_ADDR_SPACE_CAST && i.code == CAST_USER_CODE)
            .unwrap();
        code.insns[at].imm = CAST_USER_IMM;
        if no_user_conv {
            object.maps[0].map_flags |= crate::elf::map_flags::NO_USER_CONV;
        }
        let spec = object.find_program(Some("segv_alloc")).unwrap().clone();
        let linked = object.link(&spec, &|_| Some(0x1000)).unwrap();
        *linked.program.op(at).unwrap()
    }

    #[test]
    fn no_user_conv_makes_cast_user_a_32_bit_move() {
        assert!(matches!(
            cast_user_with(false),
            Op::AddrSpaceCast {
                kind: CastKind::ToUser,
                ..
            }
        ));
        assert!(matches!(
            cast_user_with(true),
            Op::Alu {
                width: Width::W32,
                op: AluOp::Mov,
                src: Source::Reg(_),
                ..
            }
        ));
    }

    #[test]
    fn placed_loads_record_every_placed_ld_imm64() {
        let object = setup_sample("globals.bpf.o");
        let spec = object.find_program(Some("globals")).unwrap().clone();
        let base = |what: Placed| match what {
            Placed::Data(d) => 0x10_0000 * (d as u64 + 1),
            Placed::Map(m) => 0x100_0000 * (m as u64 + 1),
        };
        let linked = object.link(&spec, &|what| Some(base(what))).unwrap();
        let name = |load: &PlacedLoad| match load.what {
            Placed::Data(d) => object.data_sections()[d].name.clone(),
            Placed::Map(m) => object.maps()[m].name.clone(),
        };
        let loaded: Vec<(String, u64)> = linked
            .placed_loads
            .iter()
            .map(|l| (name(l), l.offset))
            .collect();
        // Each global the program loads, at its offset in its section:
        // clang folded the `const` weights; `.rodata` holds the knob
        // `scale` and then bpf_printk's format string.
        let expected = [
            (".data.table", 0),
            (".data", 0),
            (".bss", 0),
            (".rodata", 0),
            (".rodata", 4),
        ];
        let expected: Vec<(String, u64)> =
            expected.iter().map(|&(s, o)| (s.to_owned(), o)).collect();
        assert_eq!(loaded, expected);
        let insns = linked.program.insns();
        for load in &linked.placed_loads {
            // Each slot is an ld_imm64 loading placement + offset.
            let (lo, hi) = (insns[load.slot], insns[load.slot + 1]);
            assert_eq!(lo.code, LD_IMM64);
            let value = (lo.imm as u32 as u64) | ((hi.imm as u32 as u64) << 32);
            assert_eq!(value, base(load.what) + load.offset, "{load:?}");
        }
        // Every ld_imm64 that is not a function address was placed.
        let all = (0..insns.len())
            .filter(|&i| insns[i].code == LD_IMM64 && insns[i].src() != PSEUDO_FUNC)
            .count();
        assert_eq!(all, linked.placed_loads.len());
        assert!(
            linked
                .placed_loads
                .windows(2)
                .all(|w| w[0].slot < w[1].slot)
        );

        let maps = setup_sample("maps.bpf.o");
        let spec = maps.find_program(Some("count")).unwrap().clone();
        let linked = maps.link(&spec, &|what| Some(base(what))).unwrap();
        assert_eq!(
            linked.placed_loads,
            [PlacedLoad {
                slot: linked.placed_loads[0].slot,
                what: Placed::Map(0),
                offset: 0
            }]
        );
    }
}
