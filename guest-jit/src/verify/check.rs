//! The checks, in three passes: each instruction on its own, then the
//! functions the calls delimit, then the call graph.

use std::collections::BTreeSet;

use super::error::{Location, VerifyError};
use super::{FunctionInfo, STACK_FRAME_SIZE, VerifyContext, VerifyInfo};
use crate::insn::{Imm64, Op, Program, Reg, Size};
use crate::interp::MAX_CALL_FRAMES;

/// Names at most this many functions of a call chain in a message.
const CHAIN_NAMES_SHOWN: usize = MAX_CALL_FRAMES + 2;

/// The program's functions: sorted start slots and their names.
struct Functions<'a> {
    starts: Vec<usize>,
    len: usize,
    ctx: &'a VerifyContext<'a>,
}

impl Functions<'_> {
    /// Index of the function holding `slot`.
    fn of(&self, slot: usize) -> usize {
        self.starts
            .partition_point(|&s| s <= slot)
            .saturating_sub(1)
    }

    fn range(&self, i: usize) -> (usize, usize) {
        let end = self.starts.get(i + 1).copied().unwrap_or(self.len);
        (self.starts[i], end)
    }

    fn name(&self, i: usize) -> Option<&str> {
        let start = self.starts[i];
        self.ctx
            .functions
            .iter()
            .find(|f| f.start == start)
            .map(|f| f.name.as_str())
    }

    /// `function `f`` or `the function at slot 12`, for sentences.
    fn describe(&self, i: usize) -> String {
        match self.name(i) {
            Some(name) => format!("function `{name}`"),
            None => format!("the function at slot {}", self.starts[i]),
        }
    }

    /// `f` or `slot 12`, for call chains.
    fn short(&self, i: usize) -> String {
        match self.name(i) {
            Some(name) => name.to_owned(),
            None => format!("slot {}", self.starts[i]),
        }
    }
}

/// The slot `off` after the one following `pc`, as a signed number.
fn target_of(pc: usize, off: i64) -> i64 {
    i64::try_from(pc)
        .unwrap_or(i64::MAX)
        .saturating_add(1)
        .saturating_add(off)
}

/// The base register and size of a memory access, with its offset.
fn memory_access(op: &Op) -> Option<(Reg, i16, Size)> {
    match *op {
        Op::Load { size, src, off, .. }
        | Op::LoadSx { size, src, off, .. }
        | Op::LoadAcquire { size, src, off, .. } => Some((src, off, size)),
        Op::Store { size, dst, off, .. } | Op::StoreRelease { size, dst, off, .. } => {
            Some((dst, off, size))
        }
        Op::Atomic {
            width, dst, off, ..
        } => Some((
            dst,
            off,
            match width {
                crate::insn::Width::W32 => Size::W,
                crate::insn::Width::W64 => Size::DW,
            },
        )),
        _ => None,
    }
}

pub(super) fn verify(program: &Program, ctx: &VerifyContext) -> Result<VerifyInfo, VerifyError> {
    let len = program.len();
    if len == 0 {
        return Err(VerifyError::CheckEmpty);
    }
    let at = |slot| Location::of(program, slot, ctx);

    // Pass 1: each instruction on its own.
    let mut starts = BTreeSet::from([0]);
    starts.extend(
        ctx.functions
            .iter()
            .map(|f| f.start)
            .filter(|&s| program.op(s).is_some()),
    );
    let mut jumps = Vec::new();
    let mut calls = Vec::new();
    let mut stack = Vec::new();
    for (pc, op) in program.iter() {
        let is_call = match *op {
            Op::CallHelper { id } if !(ctx.helper_known)(id) => {
                return Err(VerifyError::FindHelper { id, at: at(pc) });
            }
            Op::CallKfunc { btf_id, module } if module != 0 || !(ctx.kfunc_known)(btf_id) => {
                // Only the kernel's own BTF (module 0) indexes `kfuncs`.
                let name = usize::try_from(btf_id)
                    .ok()
                    .filter(|_| module == 0)
                    .and_then(|i| ctx.kfuncs.get(i))
                    .cloned();
                return Err(VerifyError::FindKfunc {
                    index: btf_id,
                    module,
                    name,
                    at: at(pc),
                });
            }
            Op::LdImm64 { value, .. } => match value {
                Imm64::Value(_) => false,
                Imm64::Func { .. } => true,
                _ => return Err(VerifyError::ResolveLdImm64 { at: at(pc) }),
            },
            Op::CallLocal { .. } => true,
            _ => false,
        };
        if let Some(off) = op.branch_offset() {
            let target = target_of(pc, off);
            let slot = usize::try_from(target).ok().filter(|&t| t < len);
            match (slot, is_call) {
                (None, false) => {
                    return Err(VerifyError::JumpOutside {
                        target,
                        len,
                        at: at(pc),
                    });
                }
                (None, true) => {
                    return Err(VerifyError::CallOutside {
                        target,
                        len,
                        at: at(pc),
                    });
                }
                (Some(t), false) if program.op(t).is_none() => {
                    return Err(VerifyError::JumpIntoLdImm64 {
                        target: t,
                        at: at(pc),
                    });
                }
                (Some(t), true) if program.op(t).is_none() => {
                    return Err(VerifyError::CallIntoLdImm64 {
                        target: t,
                        at: at(pc),
                    });
                }
                (Some(t), false) => jumps.push((pc, t)),
                (Some(t), true) => {
                    starts.insert(t);
                    calls.push((pc, t));
                }
            }
        }
        if let Some((Reg::R10, off, size)) = memory_access(op) {
            let bottom = -i32::try_from(STACK_FRAME_SIZE).unwrap_or(i32::MAX);
            let (lo, hi) = (i32::from(off), i32::from(off) + size.bytes() as i32);
            if lo < bottom || hi > 0 {
                return Err(VerifyError::AccessStack {
                    off,
                    size: size.bytes(),
                    at: at(pc),
                });
            }
            stack.push((pc, lo.unsigned_abs()));
        }
    }

    // Pass 2: functions, as the calls and the loader delimit them.
    let functions = Functions {
        starts: starts.into_iter().collect(),
        len,
        ctx,
    };
    for &(pc, target) in &jumps {
        let (from, to) = (functions.of(pc), functions.of(target));
        if from != to {
            return Err(VerifyError::JumpAcrossFunctions {
                target,
                from: functions.describe(from),
                to: functions.describe(to),
                at: at(pc),
            });
        }
    }
    let mut infos = Vec::with_capacity(functions.starts.len());
    for i in 0..functions.starts.len() {
        let (start, end) = functions.range(i);
        let last = (start..end).rev().find(|&pc| program.op(pc).is_some());
        let last = last.unwrap_or(start);
        if !matches!(
            program.op(last),
            Some(Op::Exit | Op::Ja { .. } | Op::Gotol { .. })
        ) {
            return Err(VerifyError::FallThrough {
                function: functions.describe(i),
                at: at(last),
            });
        }
        infos.push(FunctionInfo {
            name: functions.name(i).map(str::to_owned),
            start,
            end,
            stack_depth: 0,
            frames: 1,
        });
    }
    for &(pc, depth) in &stack {
        let info = &mut infos[functions.of(pc)];
        info.stack_depth = info.stack_depth.max(depth);
    }

    // Pass 3: the call graph.
    let edges = call_edges(&functions, &calls);
    let best = longest_chains(&functions, &edges, &mut infos, at)?;
    let max_frames = infos[0].frames;
    if max_frames > MAX_CALL_FRAMES {
        let mut chain = vec![0];
        while let Some((_, callee)) = best[*chain.last().unwrap_or(&0)] {
            chain.push(callee);
        }
        let mut names: Vec<String> = chain
            .iter()
            .take(CHAIN_NAMES_SHOWN)
            .map(|&f| functions.short(f))
            .collect();
        if chain.len() > CHAIN_NAMES_SHOWN {
            names.push("...".to_owned());
        }
        // The call that needs frame MAX_CALL_FRAMES + 1.
        let caller = chain.get(MAX_CALL_FRAMES - 1).copied().unwrap_or(0);
        let slot = best[caller].map_or(0, |(slot, _)| slot);
        return Err(VerifyError::NestCalls {
            chain: names.join(" -> "),
            frames: max_frames,
            at: at(slot),
        });
    }
    Ok(VerifyInfo {
        functions: infos,
        max_frames,
    })
}

/// For each function, its calls: `(slot of the call, callee)`.
fn call_edges(functions: &Functions, calls: &[(usize, usize)]) -> Vec<Vec<(usize, usize)>> {
    let mut edges = vec![Vec::new(); functions.starts.len()];
    for &(pc, target) in calls {
        // Every call target was made a function start in pass 1.
        if let Ok(callee) = functions.starts.binary_search(&target) {
            edges[functions.of(pc)].push((pc, callee));
        }
    }
    edges
}

/// Fills in each function's `frames` (the longest chain of calls from it)
/// by depth-first search, refusing cycles; returns, per function, the call
/// that starts its longest chain. Iterative, so that a long chain in a
/// hostile program cannot overflow the host's stack.
fn longest_chains(
    functions: &Functions,
    edges: &[Vec<(usize, usize)>],
    infos: &mut [FunctionInfo],
    at: impl Fn(usize) -> Box<Location>,
) -> Result<Vec<Option<(usize, usize)>>, VerifyError> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum State {
        New,
        OnPath,
        Done,
    }
    let n = edges.len();
    let mut state = vec![State::New; n];
    let mut best = vec![None; n];
    for root in 0..n {
        if state[root] != State::New {
            continue;
        }
        state[root] = State::OnPath;
        let mut path = vec![(root, 0usize)];
        while let Some(&(node, next)) = path.last() {
            if let Some(&(slot, callee)) = edges[node].get(next) {
                if let Some(top) = path.last_mut() {
                    top.1 += 1;
                }
                match state[callee] {
                    State::New => {
                        state[callee] = State::OnPath;
                        path.push((callee, 0));
                    }
                    State::OnPath => {
                        let from = path.iter().position(|&(f, _)| f == callee).unwrap_or(0);
                        let mut cycle: Vec<String> = path[from..]
                            .iter()
                            .map(|&(f, _)| functions.short(f))
                            .collect();
                        cycle.push(functions.short(callee));
                        return Err(VerifyError::CallRecursively {
                            cycle: cycle.join(" -> "),
                            at: at(slot),
                        });
                    }
                    State::Done => {}
                }
            } else {
                for &(slot, callee) in &edges[node] {
                    let frames = infos[callee].frames.saturating_add(1);
                    if frames > infos[node].frames {
                        infos[node].frames = frames;
                        best[node] = Some((slot, callee));
                    }
                }
                state[node] = State::Done;
                path.pop();
            }
        }
    }
    Ok(best)
}
