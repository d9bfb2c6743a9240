//! Every instruction form the JIT compiles, with every register
//! combination, as one-instruction programs; shared by the golden test and
//! the table checks.

// Each test binary uses only part of this module.
#![allow(dead_code)]

pub mod random;

use guest_jit::insn::{
    AluOp, AtomicOp, CastKind, Imm64, Insn, JmpCond, Op, Program, Reg, Size, Source, SwapBits,
    SwapKind, Width,
};
use guest_jit::jit::{JitConfig, JitOutput, compile};

/// Guest address the test programs are compiled for.
pub const CODE_ADDR: u64 = 0x60_0000;
/// `arena_upper` of the test configuration: nonzero, so that `cast_user`
/// shows its whole sequence.
pub const ARENA_UPPER: u32 = 0x7f12;
/// Slot of the instruction under test: slot 0 is a `mov %r0, 0` that
/// carries the entry prologue.
pub const SLOT: usize = 1;

/// Helper `id` is at `0x20_0000 + 16 * id` for ids up to 1000.
pub fn helper_addr(id: u32) -> Option<u64> {
    (id <= 1000).then(|| 0x20_0000 + 16 * u64::from(id))
}

/// Kfunc `index` is at `0x30_0000 + 16 * index` for indices 0 to 99.
pub fn kfunc_addr(index: i32) -> Option<u64> {
    let index = u64::try_from(index).ok().filter(|&i| i < 100)?;
    Some(0x30_0000 + 16 * index)
}

/// One instruction to compile, and the golden file it belongs to.
#[derive(Clone, Debug)]
pub struct Case {
    /// Golden file name, without extension.
    pub group: String,
    /// The instruction, at [`SLOT`].
    pub op: Op,
    /// Whether the instruction is a `.percpu` `ld_imm64`.
    pub percpu: bool,
}

impl Case {
    /// `mov %r0, 0`, the instruction, then two `exit`s: jumps target the
    /// first, calls and `func` loads the second.
    pub fn program(&self) -> Program {
        let mut insns = Vec::new();
        mov_imm(Reg::R0, 0).encode_into(&mut insns);
        self.op.encode_into(&mut insns);
        Op::Exit.encode_into(&mut insns);
        Op::Exit.encode_into(&mut insns);
        Program::decode(&insns).expect("cases are built decodable")
    }

    /// Compiles [`Case::program`] with the test configuration.
    pub fn compile(&self) -> JitOutput {
        self.compile_at(CODE_ADDR)
    }

    /// Compiles [`Case::program`] for `code_addr`.
    pub fn compile_at(&self, code_addr: u64) -> JitOutput {
        let percpu = [SLOT];
        let config = JitConfig {
            code_addr,
            helper_addr: &helper_addr,
            kfunc_addr: &kfunc_addr,
            percpu_loads: if self.percpu { &percpu } else { &[] },
            arena_upper: ARENA_UPPER,
            may_goto_budget: guest_jit::interp::MAY_GOTO_BUDGET,
            map_headers: 0..0,
        };
        match compile(&self.program(), &config) {
            Ok(output) => output,
            Err(err) => panic!("{:?}: {err}", self.op),
        }
    }
}

fn mov_imm(dst: Reg, imm: i32) -> Op {
    Op::Alu {
        width: Width::W64,
        op: AluOp::Mov,
        dst,
        src: Source::Imm(imm),
    }
}

fn regs() -> impl Iterator<Item = Reg> + Clone {
    (0..=10).filter_map(Reg::new)
}

/// Whether `op` is an instruction the decoder accepts (no write to r10,
/// fields in range): what a verified program can contain.
fn valid(op: &Op) -> bool {
    let mut insns: Vec<Insn> = Vec::new();
    op.encode_into(&mut insns);
    Program::decode(&insns).is_ok_and(|p| p.op(0) == Some(op))
}

/// Lower-case name of a value's variant (`Sdiv` → `sdiv`).
fn name(value: &impl std::fmt::Debug) -> String {
    let name = format!("{value:?}").to_lowercase();
    // Variants with fields print them; keep the variant name only.
    name.split([' ', '(', '{'])
        .next()
        .unwrap_or_default()
        .to_string()
}

fn width_bits(width: Width) -> &'static str {
    match width {
        Width::W32 => "32",
        Width::W64 => "64",
    }
}

const WIDTHS: [Width; 2] = [Width::W32, Width::W64];
const SIZES: [Size; 4] = [Size::B, Size::H, Size::W, Size::DW];
const ALU_OPS: [AluOp; 14] = [
    AluOp::Add,
    AluOp::Sub,
    AluOp::Mul,
    AluOp::Div,
    AluOp::Sdiv,
    AluOp::Or,
    AluOp::And,
    AluOp::Lsh,
    AluOp::Rsh,
    AluOp::Mod,
    AluOp::Smod,
    AluOp::Xor,
    AluOp::Mov,
    AluOp::Arsh,
];
const CONDS: [JmpCond; 11] = [
    JmpCond::Eq,
    JmpCond::Gt,
    JmpCond::Ge,
    JmpCond::Set,
    JmpCond::Ne,
    JmpCond::Sgt,
    JmpCond::Sge,
    JmpCond::Lt,
    JmpCond::Le,
    JmpCond::Slt,
    JmpCond::Sle,
];
const ATOMIC_OPS: [AtomicOp; 10] = [
    AtomicOp::Add,
    AtomicOp::Or,
    AtomicOp::And,
    AtomicOp::Xor,
    AtomicOp::FetchAdd,
    AtomicOp::FetchOr,
    AtomicOp::FetchAnd,
    AtomicOp::FetchXor,
    AtomicOp::Xchg,
    AtomicOp::Cmpxchg,
];

/// Immediates that exercise an ALU operation's special cases.
fn alu_imms(op: AluOp) -> &'static [i32] {
    match op {
        AluOp::Mov => &[0, 1, -1, i32::MAX, i32::MIN],
        AluOp::Div | AluOp::Mod => &[0, 7, -1],
        AluOp::Sdiv | AluOp::Smod => &[0, 7, -1, -7],
        AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => &[0, 1, 31, 33, 63, 64],
        _ => &[1, -2, 0x1234_5678],
    }
}

/// Every case, grouped by golden file.
pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |group: String, op: Op| {
        if valid(&op) {
            cases.push(Case {
                group,
                op,
                percpu: false,
            });
        }
    };
    for width in WIDTHS {
        for op in ALU_OPS {
            let group = format!("alu{}_{}", width_bits(width), name(&op));
            for dst in regs() {
                for src in regs() {
                    let src = Source::Reg(src);
                    add(
                        group.clone(),
                        Op::Alu {
                            width,
                            op,
                            dst,
                            src,
                        },
                    );
                }
                for &imm in alu_imms(op) {
                    let src = Source::Imm(imm);
                    add(
                        group.clone(),
                        Op::Alu {
                            width,
                            op,
                            dst,
                            src,
                        },
                    );
                }
            }
        }
        for dst in regs() {
            add("neg".into(), Op::Neg { width, dst });
        }
    }
    for (width, from) in [
        (Width::W32, Size::B),
        (Width::W32, Size::H),
        (Width::W64, Size::B),
        (Width::W64, Size::H),
        (Width::W64, Size::W),
    ] {
        for dst in regs() {
            for src in regs() {
                let op = Op::Movsx {
                    width,
                    dst,
                    src,
                    from,
                };
                add("movsx".into(), op);
            }
        }
    }
    for kind in [SwapKind::ToLe, SwapKind::ToBe, SwapKind::Bswap] {
        for bits in [SwapBits::B16, SwapBits::B32, SwapBits::B64] {
            for dst in regs() {
                add("byte_swap".into(), Op::ByteSwap { dst, kind, bits });
            }
        }
    }
    for kind in [CastKind::ToKern, CastKind::ToUser] {
        for dst in regs() {
            for src in regs() {
                add(
                    "addr_space_cast".into(),
                    Op::AddrSpaceCast { dst, src, kind },
                );
            }
        }
    }
    ld_imm64_cases(&mut add);
    memory_cases(&mut add);
    jump_cases(&mut add);
    // Per-CPU loads need their own configuration.
    for dst in regs().filter(|&r| r != Reg::R10) {
        cases.push(Case {
            group: "ld_imm64_percpu".into(),
            op: Op::LdImm64 {
                dst,
                value: Imm64::Value(0x40_1000),
            },
            percpu: true,
        });
    }
    cases
}

fn ld_imm64_cases(add: &mut impl FnMut(String, Op)) {
    const VALUES: [u64; 8] = [
        0,
        1,
        0x8000_0000,
        0xffff_ffff,
        0x1_0000_0000,
        0xffff_ffff_8000_0000,
        u64::MAX,
        0x1234_5678_9abc_def0,
    ];
    for dst in regs() {
        for value in VALUES {
            let value = Imm64::Value(value);
            add("ld_imm64".into(), Op::LdImm64 { dst, value });
        }
        // From the slot after the first: slots 2 and 3, then the second
        // exit at 4.
        let value = Imm64::Func { off: 2 };
        add("ld_imm64".into(), Op::LdImm64 { dst, value });
    }
}

fn memory_cases(add: &mut impl FnMut(String, Op)) {
    const OFF: i16 = -8;
    for size in SIZES {
        let bits = size.bits();
        for dst in regs() {
            for src in regs() {
                let (d, s) = (dst, src);
                let load = Op::Load {
                    size,
                    dst: d,
                    src: s,
                    off: OFF,
                };
                add(format!("load{bits}"), load);
                let sx = Op::LoadSx {
                    size,
                    dst: d,
                    src: s,
                    off: OFF,
                };
                add("load_sx".into(), sx);
                let acquire = Op::LoadAcquire {
                    size,
                    dst: d,
                    src: s,
                    off: OFF,
                };
                add("load_acquire".into(), acquire);
                let store = Op::Store {
                    size,
                    dst: d,
                    off: OFF,
                    src: Source::Reg(s),
                };
                add(format!("store{bits}"), store);
                let release = Op::StoreRelease {
                    size,
                    dst: d,
                    off: OFF,
                    src: s,
                };
                add("store_release".into(), release);
            }
            for imm in [-1, 0x1234_5678] {
                let src = Source::Imm(imm);
                add(
                    format!("store{bits}"),
                    Op::Store {
                        size,
                        dst,
                        off: OFF,
                        src,
                    },
                );
            }
        }
        // Where the displacement switches between one and four bytes.
        for off in [0, 127, -128, 128, -129, i16::MAX, i16::MIN] {
            let (dst, src) = (Reg::R0, Reg::R1);
            add(
                "mem_offsets".into(),
                Op::Load {
                    size,
                    dst,
                    src,
                    off,
                },
            );
            let src = Source::Reg(Reg::R0);
            add(
                "mem_offsets".into(),
                Op::Store {
                    size,
                    dst: Reg::R1,
                    off,
                    src,
                },
            );
        }
    }
    for width in WIDTHS {
        for op in ATOMIC_OPS {
            let group = format!("atomic{}_{}", width_bits(width), name(&op));
            for dst in regs() {
                for src in regs() {
                    let atomic = Op::Atomic {
                        width,
                        op,
                        dst,
                        off: OFF,
                        src,
                    };
                    add(group.clone(), atomic);
                }
            }
        }
    }
}

fn jump_cases(add: &mut impl FnMut(String, Op)) {
    for width in WIDTHS {
        for cond in CONDS {
            let group = format!("jmp{}_{}", width_bits(width), name(&cond));
            for dst in regs() {
                for src in regs() {
                    let src = Source::Reg(src);
                    let jmp = Op::Jmp {
                        width,
                        cond,
                        dst,
                        src,
                        off: 0,
                    };
                    add(group.clone(), jmp);
                }
                for imm in [0, -1, i32::MAX] {
                    let src = Source::Imm(imm);
                    let jmp = Op::Jmp {
                        width,
                        cond,
                        dst,
                        src,
                        off: 0,
                    };
                    add(group.clone(), jmp);
                }
            }
        }
    }
    for op in [
        Op::Ja { off: 0 },
        Op::Ja { off: 1 },
        Op::Ja { off: -1 },
        Op::Gotol { off: 1 },
        Op::MayGoto { off: 0 },
        Op::CallHelper { id: 1 },
        Op::CallHelper { id: 1000 },
        Op::CallLocal { off: 1 },
        Op::CallKfunc {
            btf_id: 0,
            module: 0,
        },
        Op::CallKfunc {
            btf_id: 99,
            module: 0,
        },
        Op::Exit,
    ] {
        add("control".into(), op);
    }
    // Helpers the JIT emits inline (their operands are fixed registers).
    for id in [8, 12] {
        add("inline_helpers".into(), Op::CallHelper { id });
    }
    for dst in regs() {
        add("callx".into(), Op::Callx { dst });
    }
}
