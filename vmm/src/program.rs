//! BPF programs in a sandbox: loading (verify, JIT, place code, data and
//! exception table) and running them with a context buffer.
//!
//! Code is placed one program after another in the JIT code region; each
//! program's exception-table entries are appended to the table, which stays
//! sorted because code only grows upwards. Global data sections are placed
//! in the read-only and read-write data regions before linking, so that
//! `ld_imm64` of a global becomes a plain guest address.

use crate::clock::ClockSync;
use crate::helpers::HelperSet;
use crate::memory::{GuestMemory, MemoryError};
use crate::runtime::{RuntimeError, RuntimeImage};
use crate::sandbox::{Call, Outcome, RunError, RunReport, Sandbox, SandboxConfig, clone_run_error};
use crate::trap::Trap;
use guest_jit::btf::LineTable;
use guest_jit::elf::{
    DataKind, DataSection, FunctionSymbol, LinkedProgram, Object, Placed, ProgramSpec,
    arena_globals_offset,
};
use guest_jit::insn::Program;
use guest_jit::interp::MAY_GOTO_BUDGET;
use guest_jit::jit::{self, JitConfig, JitError, JitOutput};
use guest_jit::verify::{VerifyContext, VerifyError, verify};
use shm::extable::ExTableEntry;
use shm::layout::{BOOT_INFO_START, Layout, LayoutError, PAGE_SIZE, area};
use shm::mailbox::REQUEST_CALL;
use shm::percpu::PRNG_STATE_OFFSET;
use shm::trace::{TRACE_HEADER_SIZE, TraceHeader, read_trace};
use std::time::Duration;

/// Code is placed at this alignment, so every program starts on a fresh
/// cache line.
const CODE_ALIGN: u64 = 64;

/// Why a program could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The sandbox is a clone of a snapshot.
    #[error(
        "A sandbox cloned from a snapshot cannot load more: load everything before taking the snapshot"
    )]
    IntoClone,
    /// A map would exceed a limit of the sandbox (`SandboxConfig::limits`).
    #[error("Map `{name}`: its {what} would be {value}, above the sandbox's limit of {limit}")]
    Limit {
        /// The map.
        name: String,
        /// What.
        what: &'static str,
        /// How much it would be.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// The object has no program by that name.
    #[error("Failed to select a program")]
    SelectProgram(#[source] Box<guest_jit::elf::LoadError>),
    /// Linking the program (relocations, subprograms) failed.
    #[error("Failed to link program `{name}`")]
    Link {
        /// The program.
        name: String,
        /// Why.
        #[source]
        source: Box<guest_jit::elf::LoadError>,
    },
    /// The verifier refused the program.
    #[error("Program `{name}` was refused by the verifier")]
    Verify {
        /// The program.
        name: String,
        /// Why.
        #[source]
        source: VerifyError,
    },
    /// The JIT could not compile the program.
    #[error("Failed to compile program `{name}`")]
    Compile {
        /// The program.
        name: String,
        /// Why.
        #[source]
        source: JitError,
    },
    /// A region of the sandbox is too small for what is loaded.
    #[error("`{name}` needs {needed:#x} bytes of {region}, but only {free:#x} are free")]
    Fit {
        /// The program, data section or map.
        name: String,
        /// Which region.
        region: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes left.
        free: u64,
    },
    /// A map could not be created.
    #[error("Failed to create map `{name}`")]
    CreateMap {
        /// The map.
        name: String,
        /// Why.
        #[source]
        source: crate::maps::CreateMapError,
    },
    /// Guest memory could not be written.
    #[error("Failed to write `{name}` into guest memory")]
    WriteMemory {
        /// The program.
        name: String,
        /// Why.
        #[source]
        source: MemoryError,
    },
}

/// A program given as bare instructions (no object, no line info), named
/// `name`, ready for [`Sandbox::load_program`].
pub fn unlinked(name: &str, program: Program) -> LinkedProgram {
    LinkedProgram {
        name: name.to_owned(),
        section: String::new(),
        program,
        lines: LineTable::new(),
        functions: vec![FunctionSymbol {
            name: name.to_owned(),
            start: 0,
        }],
        percpu_loads: Vec::new(),
        kfuncs: Vec::new(),
        placed_loads: Vec::new(),
    }
}

/// The guest address of what a program links against: `data[i]` for data
/// section `i`, `maps[i]` for the header of map `i` (`None`: not placed,
/// and linking fails naming it).
fn placed(data: &[u64], maps: &[u64], what: Placed) -> Option<u64> {
    match what {
        Placed::Data(i) => data.get(i).copied(),
        Placed::Map(i) => maps.get(i).copied(),
    }
}

/// Identifies a program loaded in a [`Sandbox`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProgramId(usize);

/// A program in the sandbox's code region, with what is needed to explain
/// its traps and show its code.
#[derive(Debug)]
pub struct LoadedProgram {
    linked: LinkedProgram,
    entry: u64,
    jit: JitOutput,
}

impl LoadedProgram {
    /// Verifies `linked` and compiles it for guest address `entry` of a
    /// sandbox laid out as `layout`, with the helpers of `helpers` as
    /// `runtime` provides them, and the arena window's upper half
    /// `arena_upper` (0 without an arena; Note [Arena pointers] in the
    /// JIT). Writes nothing: [`Sandbox::load_program`] places the result.
    pub fn compile(
        linked: LinkedProgram,
        entry: u64,
        layout: &Layout,
        runtime: &RuntimeImage,
        helpers: HelperSet,
        arena_upper: u32,
    ) -> Result<LoadedProgram, LoadError> {
        let resolve = |id| helpers.address(runtime, id);
        verify(
            &linked.program,
            &VerifyContext {
                // bpf_tail_call is the JIT's own, not a runtime function.
                helper_known: &|id| {
                    resolve(id).is_some()
                        || (helpers == HelperSet::Standard && id == jit::tail_call::HELPER_ID)
                },
                kfunc_known: &|i| {
                    let name = usize::try_from(i).ok().and_then(|i| linked.kfuncs.get(i));
                    name.and_then(|name| runtime.symbol(name)).is_some()
                },
                kfuncs: &linked.kfuncs,
                lines: Some(&linked.lines),
                functions: &linked.functions,
            },
        )
        .map_err(|source| LoadError::Verify {
            name: linked.name.clone(),
            source,
        })?;
        let jit = jit::compile(
            &linked.program,
            &JitConfig {
                code_addr: entry,
                helper_addr: &resolve,
                kfunc_addr: &|i| {
                    let name = usize::try_from(i).ok().and_then(|i| linked.kfuncs.get(i));
                    name.and_then(|name| runtime.symbol(name))
                },
                percpu_loads: &linked.percpu_loads,
                arena_upper,
                may_goto_budget: MAY_GOTO_BUDGET,
                map_headers: match helpers {
                    HelperSet::Standard => {
                        layout.maps_start()..layout.maps_start() + layout.maps_size()
                    }
                    HelperSet::Conformance => 0..0,
                },
            },
        )
        .map_err(|source| LoadError::Compile {
            name: linked.name.clone(),
            source,
        })?;
        Ok(LoadedProgram { linked, entry, jit })
    }

    /// The program's function name.
    pub fn name(&self) -> &str {
        &self.linked.name
    }

    /// The ELF section it came from (`syscall`, `xdp`, ...).
    pub fn section(&self) -> &str {
        &self.linked.section
    }

    /// Guest address of its first instruction.
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// The linked BPF program: the entry function and its subprograms.
    pub fn linked(&self) -> &LinkedProgram {
        &self.linked
    }

    /// The BPF instructions that were compiled.
    pub fn program(&self) -> &Program {
        &self.linked.program
    }

    /// The machine code and its tables.
    pub fn jit(&self) -> &JitOutput {
        &self.jit
    }

    /// x86 disassembly interleaved with the BPF instructions.
    pub fn disassemble(&self) -> String {
        jit::disassemble(&self.linked.program, &self.jit, self.entry)
    }

    /// Where in the program `rip` lies, if it lies in its code.
    pub fn site(&self, rip: u64) -> Option<TrapSite> {
        let offset = u32::try_from(rip.checked_sub(self.entry)?).ok()?;
        let slot = self.jit.insn_at(offset)?;
        let op = self.linked.program.op(slot)?;
        let function = self
            .linked
            .functions
            .iter()
            .rev()
            .find(|f| f.start <= slot)
            .map(|f| f.name.clone());
        let line = self.linked.lines.get(slot).map(|l| SourceLine {
            file: l.file.clone(),
            line: l.line,
            column: l.column,
            text: l.text.clone(),
        });
        Some(TrapSite {
            slot,
            insn: op.to_string(),
            function,
            line,
        })
    }
}

/// A place in a BPF program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrapSite {
    /// Instruction slot in the linked program.
    pub slot: usize,
    /// The instruction, disassembled.
    pub insn: String,
    /// The function it belongs to.
    pub function: Option<String>,
    /// Its C source line, when the object has BTF line info.
    pub line: Option<SourceLine>,
}

/// A line of C source, from BTF line info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLine {
    /// Source file name as the compiler recorded it.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, 0 if unknown.
    pub column: u32,
    /// The text of the line.
    pub text: String,
}

impl std::fmt::Display for TrapSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "instruction {}", self.slot)?;
        if let Some(function) = &self.function {
            write!(f, " in {function}")?;
        }
        write!(f, ": {}", self.insn)?;
        if let Some(line) = &self.line {
            write!(f, "\n  --> {}:{}", line.file, line.line)?;
            if line.column != 0 {
                write!(f, ":{}", line.column)?;
            }
            write!(f, "\n   | {}", line.text.trim())?;
        }
        Ok(())
    }
}

/// What to run a program with.
#[derive(Debug, Clone, Copy)]
pub struct ProgramInput<'a> {
    /// Bytes copied into the vCPU's context buffer; r1 points at the copy,
    /// r2 holds its length.
    pub data: &'a [u8],
    /// Times to run the program inside the guest without leaving it.
    pub repeat: u64,
    /// Wall-clock budget for all the runs; `None` waits forever (or for
    /// the sandbox's `Limits::max_run_time`).
    pub timeout: Option<Duration>,
}

impl<'a> ProgramInput<'a> {
    /// One run with `data` as its context and no deadline of its own.
    pub fn new(data: &'a [u8]) -> ProgramInput<'a> {
        ProgramInput {
            data,
            repeat: 1,
            timeout: None,
        }
    }

    /// The same input with a wall-clock budget for all the runs.
    pub fn with_timeout(self, timeout: Duration) -> ProgramInput<'a> {
        ProgramInput {
            timeout: Some(timeout),
            ..self
        }
    }

    /// The same input run `repeat` times inside the guest (0 counts as 1).
    pub fn with_repeat(self, repeat: u64) -> ProgramInput<'a> {
        ProgramInput { repeat, ..self }
    }
}

/// What a program run produced.
#[derive(Debug, Clone)]
pub struct ProgramRun {
    /// How it ended, and its cost.
    pub report: RunReport,
    /// The context buffer after the last run.
    pub data_out: Vec<u8>,
    /// Where the program trapped, when it trapped in its own code.
    pub trap_site: Option<TrapSite>,
    /// `bpf_printk` lines of all the runs, oldest first (invalid UTF-8
    /// replaced).
    pub trace: Vec<String>,
    /// Lines lost because the trace buffer was full.
    pub trace_dropped: u64,
}

impl Sandbox {
    /// Loads `object`: creates its maps and the internal maps of its global
    /// data, places the data, loads every program, then fills the maps'
    /// initial slots (`PROG_ARRAY` programs, inner maps), as libbpf loads a
    /// skeleton. Returns the programs' ids in the order of
    /// [`Object::programs`].
    pub fn load_object(
        &mut self,
        object: &Object,
        helpers: HelperSet,
    ) -> Result<Vec<ProgramId>, LoadError> {
        self.check_not_clone()?;
        let maps = self.create_object_maps(object)?;
        let placement = self.place_data(object)?;
        self.create_data_maps(object, &placement)?;
        let headers: Vec<u64> = maps
            .iter()
            .filter_map(|&id| self.map(id).map(|m| m.info().header()))
            .collect();
        let ids = object
            .programs()
            .iter()
            .map(|spec| {
                let linked = object
                    .link(spec, &|what| placed(&placement, &headers, what))
                    .map_err(|source| LoadError::Link {
                        name: spec.name.clone(),
                        source: Box::new(source),
                    })?;
                self.load_program(linked, helpers)
            })
            .collect::<Result<Vec<ProgramId>, LoadError>>()?;
        let entries: Vec<(String, u64)> = ids
            .iter()
            .filter_map(|&id| self.program(id))
            .map(|p| (p.name().to_owned(), p.entry()))
            .collect();
        self.fill_initial_values(object, &maps, &entries)?;
        Ok(ids)
    }

    /// Loads `object` ([`Sandbox::load_object`]: every program, since any
    /// may be a tail-call target) and returns the id of the program named
    /// by function or section name (`None`: the object's only program).
    pub fn load_object_program(
        &mut self,
        object: &Object,
        name: Option<&str>,
        helpers: HelperSet,
    ) -> Result<ProgramId, LoadError> {
        self.check_not_clone()?;
        let spec = object
            .find_program(name)
            .map_err(|e| LoadError::SelectProgram(Box::new(e)))?;
        let index = object
            .programs()
            .iter()
            .position(|p| std::ptr::eq(p, spec))
            .unwrap_or_default();
        let ids = self.load_object(object, helpers)?;
        ids.get(index).copied().ok_or_else(|| {
            LoadError::SelectProgram(Box::new(guest_jit::elf::LoadError::FindProgram {
                name: spec.name.clone(),
                available: String::new(),
            }))
        })
    }

    /// Copies the object's data sections into the data regions; returns the
    /// guest address of each, in the order of [`Object::data_sections`].
    fn place_data(&mut self, object: &Object) -> Result<Vec<u64>, LoadError> {
        let arena = self.loaded.arena.as_ref();
        let plan = plan_data(
            &self.layout,
            &mut self.loaded.data_usage,
            object.data_sections(),
            arena.map(|a| (a.geometry().npages(), a.geometry().user_vm_start())),
        )?;
        for (section, &addr) in object.data_sections().iter().zip(&plan) {
            if let (DataKind::Arena, Some(arena)) = (section.kind, arena) {
                let offset = addr - arena.geometry().user_vm_start();
                arena
                    .place_globals(&self.memory, offset, &section.bytes)
                    .map_err(|source| LoadError::CreateMap {
                        name: section.name.clone(),
                        source: source.into(),
                    })?;
                continue;
            }
            // The initial image of a `.percpu` section goes to every
            // vCPU's copy.
            let copies = if section.kind == DataKind::PerCpu {
                self.layout.nr_cpus()
            } else {
                1
            };
            for cpu in 0..copies {
                self.memory
                    .write(addr + self.layout.this_cpu_off(cpu), &section.bytes)
                    .map_err(|source| LoadError::WriteMemory {
                        name: section.name.clone(),
                        source,
                    })?;
            }
        }
        Ok(plan)
    }

    /// Verifies, compiles and places a linked program.
    pub fn load_program(
        &mut self,
        linked: LinkedProgram,
        helpers: HelperSet,
    ) -> Result<ProgramId, LoadError> {
        self.check_not_clone()?;
        let code_offset = self.loaded.code_used.next_multiple_of(CODE_ALIGN);
        let entry = self.layout.code_start() + code_offset;
        let arena_upper = self.loaded.arena.as_ref().map_or(0, |a| a.upper());
        let program = LoadedProgram::compile(
            linked,
            entry,
            &self.layout,
            self.runtime,
            helpers,
            arena_upper,
        )?;
        self.place_code(program.name(), code_offset, &program.jit)?;
        self.loaded.programs.push(std::sync::Arc::new(program));
        Ok(ProgramId(self.loaded.programs.len() - 1))
    }

    /// Writes the code at `code_offset` and appends its exception-table
    /// entries, then publishes the new table length to the guest.
    fn place_code(
        &mut self,
        name: &str,
        code_offset: u64,
        output: &JitOutput,
    ) -> Result<(), LoadError> {
        let fit = |region, needed: u64, used: u64, size: u64| {
            if used.saturating_add(needed) > size {
                Err(LoadError::Fit {
                    name: name.to_owned(),
                    region,
                    needed,
                    free: size.saturating_sub(used),
                })
            } else {
                Ok(())
            }
        };
        let code_len = output.code.len() as u64;
        fit("JIT code", code_len, code_offset, self.layout.code_size())?;
        let entry_size = size_of::<ExTableEntry>() as u64;
        let extable_bytes = output.extable.len() as u64 * entry_size;
        let extable_used = self.loaded.extable_len * entry_size;
        fit(
            "exception table",
            extable_bytes,
            extable_used,
            self.layout.extable_size(),
        )?;
        let write_err = |source| LoadError::WriteMemory {
            name: name.to_owned(),
            source,
        };
        let code_addr = self.layout.code_start() + code_offset;
        self.memory
            .write(code_addr, &output.code)
            .map_err(write_err)?;
        // Fill the rest of the last page with int3, so that a stray jump
        // past the code traps at once.
        let end = code_addr + code_len;
        let page_end = end.next_multiple_of(PAGE_SIZE);
        let fill = vec![0xcc; (page_end - end) as usize];
        self.memory.write(end, &fill).map_err(write_err)?;
        let base = u32::try_from(code_offset).map_err(|_| LoadError::Fit {
            name: name.to_owned(),
            region: "JIT code",
            needed: code_len,
            free: 0,
        })?;
        let mut addr = self.layout.extable_start() + extable_used;
        for entry in &output.extable {
            let rebased = ExTableEntry {
                offset: entry.offset.saturating_add(base),
                ..*entry
            };
            self.memory.write_pod(addr, &rebased).map_err(write_err)?;
            addr += entry_size;
        }
        self.loaded.code_used = code_offset + code_len;
        self.loaded.extable_len += output.extable.len() as u64;
        self.publish_boot_state().map_err(write_err)
    }

    /// Tells the guest runtime what the boot image does not hold: how many
    /// exception-table entries are valid, the clock, and each vCPU's random
    /// seed. Called at creation, after every load and after a reset.
    pub(crate) fn publish_boot_state(&self) -> Result<(), MemoryError> {
        self.loaded
            .boot_state(self.clock)
            .write(&self.memory, &self.layout, Seeds::Missing)
    }

    /// A clone's programs and maps are its snapshot's: what it loaded
    /// later would be lost at its next reset, which returns it to the
    /// snapshot (Note [Snapshots and clones]).
    fn check_not_clone(&self) -> Result<(), LoadError> {
        if self.memory.is_copy_on_write() {
            return Err(LoadError::IntoClone);
        }
        Ok(())
    }

    /// The loaded program `id`.
    pub fn program(&self, id: ProgramId) -> Option<&LoadedProgram> {
        self.loaded.programs.get(id.0).map(|p| &**p)
    }

    /// Every loaded program with its id, in load order.
    pub fn programs(&self) -> impl Iterator<Item = (ProgramId, &LoadedProgram)> {
        self.loaded
            .programs
            .iter()
            .enumerate()
            .map(|(i, p)| (ProgramId(i), &**p))
    }

    /// The loaded program whose function or section name is `name`.
    pub fn find_program(&self, name: &str) -> Option<ProgramId> {
        self.programs()
            .find(|(_, p)| p.name() == name || p.section() == name)
            .map(|(id, _)| id)
    }

    /// Runs program `id` on vCPU `cpu`: copies `input.data` into the
    /// vCPU's context buffer, runs, and copies it back.
    pub fn run_program(
        &self,
        id: ProgramId,
        cpu: usize,
        input: &ProgramInput<'_>,
    ) -> Result<ProgramRun, RunError> {
        self.run_program_on(id, &[cpu], input)
            .pop()
            .unwrap_or(Err(RunError::Poisoned))
    }

    /// Runs program `id` on each of `cpus` at the same time, as
    /// [`Sandbox::run_program`] runs it on one: each vCPU gets its own copy
    /// of `input.data` in its context buffer and its own trace, all under
    /// the same deadline. Results in the order of `cpus`.
    pub fn run_program_on(
        &self,
        id: ProgramId,
        cpus: &[usize],
        input: &ProgramInput<'_>,
    ) -> Vec<Result<ProgramRun, RunError>> {
        // An error before the run is every vCPU's (the first gets it
        // whole, the others a copy).
        let all = |e: RunError| {
            let mut runs: Vec<_> = (1..cpus.len()).map(|_| Err(clone_run_error(&e))).collect();
            if !cpus.is_empty() {
                runs.insert(0, Err(e));
            }
            runs
        };
        let Some(program) = self.program(id) else {
            return all(RunError::NoSuchProgram);
        };
        let ctx_size = self.layout.ctx_size();
        let len = input.data.len() as u64;
        if len > ctx_size {
            return all(RunError::ContextTooLarge { len, max: ctx_size });
        }
        let guards = match self.lock_cpus(cpus) {
            Ok(guards) => guards,
            Err(e) => return all(e),
        };
        let mut calls = Vec::with_capacity(cpus.len());
        for &cpu in cpus {
            let ctx = self.layout.ctx_buffer(cpu);
            let written = self.memory.write(ctx, input.data).and_then(|()| {
                self.memory
                    .write_pod(self.layout.trace_buffer(cpu), &TraceHeader::default())
            });
            if let Err(e) = written {
                return all(RunError::Memory(e));
            }
            calls.push(Call {
                entry: program.entry(),
                ctx,
                ctx_len: len,
                repeat: input.repeat.max(1),
                timeout: input.timeout,
            });
        }
        let reports = self.invoke_locked_each(&guards, REQUEST_CALL, &calls);
        let runs = cpus
            .iter()
            .zip(reports)
            .map(|(&cpu, report)| {
                let report = report?;
                let mut data_out = vec![0; input.data.len()];
                self.memory
                    .read(self.layout.ctx_buffer(cpu), &mut data_out)
                    .map_err(RunError::Memory)?;
                let (trace, trace_dropped) = self
                    .read_trace(self.layout.trace_buffer(cpu))
                    .map_err(RunError::Memory)?;
                let trap_site = match report.outcome {
                    Outcome::Trapped(Trap { rip, .. }) => program.site(rip),
                    _ => None,
                };
                Ok(ProgramRun {
                    report,
                    data_out,
                    trap_site,
                    trace,
                    trace_dropped,
                })
            })
            .collect();
        drop(guards);
        runs
    }

    /// The lines in the trace buffer at `addr`, and how many were dropped.
    /// The guest can write anything there: only the buffer's own bytes are
    /// read, whatever its header claims.
    fn read_trace(&self, addr: u64) -> Result<(Vec<String>, u64), MemoryError> {
        let header: TraceHeader = self.memory.read_pod(addr)?;
        let capacity = area::TRACE_SIZE as usize;
        let used = usize::try_from(header.used).map_or(capacity, |u| u.min(capacity));
        let mut bytes = vec![0; (TRACE_HEADER_SIZE + used).min(capacity)];
        self.memory.read(addr, &mut bytes)?;
        let log = read_trace(&bytes);
        let lines = log
            .lines()
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .collect();
        Ok((lines, log.dropped()))
    }
}

/// What has been loaded into a sandbox so far.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Shared with the sandboxes cloned from a snapshot of this one.
    programs: Vec<std::sync::Arc<LoadedProgram>>,
    pub(crate) maps: crate::maps::Maps,
    code_used: u64,
    extable_len: u64,
    data_usage: DataUsage,
    /// The sandbox's arena, once an object with an ARENA map is loaded.
    /// Dropped after the VM (a field of `Sandbox` after `vm`), whose
    /// memslot uses its mapping.
    pub(crate) arena: Option<crate::arena::Arena>,
    /// The sandbox's ring buffers.
    pub(crate) rings: crate::ringbuf::Rings,
}

impl Loaded {
    /// What a sandbox cloned from a snapshot of this one starts with:
    /// everything but the host resources of rings (their eventfds, which
    /// belong to a VM) and the arena (its memslot belongs to a VM too: the
    /// clone adopts the snapshot's image of it, Note [Arena clones]).
    pub(crate) fn for_clone(&self) -> Loaded {
        Loaded {
            programs: self.programs.clone(),
            maps: crate::maps::Maps {
                list: self.maps.list.clone(),
                used: self.maps.used,
            },
            code_used: self.code_used,
            extable_len: self.extable_len,
            data_usage: self.data_usage,
            arena: None,
            rings: self.rings.for_clone(),
        }
    }
}

/// What the runtime learns from the host beside the boot image: how many
/// exception-table entries are valid, the arena's fixup window, the clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BootState {
    extable_len: u64,
    fixup: (u64, u64),
    clock: ClockSync,
}

/// Which vCPUs get a new random seed with a [`BootState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seeds {
    /// Those that have none yet.
    Missing,
    /// Every one: a clone must not repeat its snapshot's (or its
    /// siblings') `bpf_get_prandom_u32` sequence.
    All,
}

impl Loaded {
    /// The boot state for what is loaded, with `clock`.
    pub(crate) fn boot_state(&self, clock: ClockSync) -> BootState {
        BootState {
            extable_len: self.extable_len,
            fixup: self
                .arena
                .as_ref()
                .map_or((0, 0), |arena| arena.fixup_window()),
            clock,
        }
    }
}

impl BootState {
    /// Writes it into the boot-info page and the vCPUs' seeds. Reads
    /// nothing first where it need not: in a clone, a read before a write
    /// is one more page fault.
    pub(crate) fn write(
        &self,
        memory: &GuestMemory,
        layout: &Layout,
        seeds: Seeds,
    ) -> Result<(), MemoryError> {
        let mut info = crate::machine::boot_info(layout);
        info.extable_len = self.extable_len;
        (info.fixup_start, info.fixup_end) = self.fixup;
        info.clock_tsc = self.clock.tsc;
        info.clock_ns = self.clock.ns;
        info.tsc_khz = self.clock.tsc_khz;
        memory.write_pod(BOOT_INFO_START, &info)?;
        for cpu in 0..layout.nr_cpus() {
            let slot = layout.percpu_block(cpu) + PRNG_STATE_OFFSET as u64;
            if seeds == Seeds::All || memory.read_pod::<u64>(slot)? == 0 {
                memory.write_pod(slot, &random_seed())?;
            }
        }
        Ok(())
    }
}

/// A non-zero seed for a vCPU's pseudo-random generator, from the kernel's
/// random pool (a fixed odd constant if that fails: the generator is for
/// programs' sampling decisions, not for secrets).
fn random_seed() -> u64 {
    let mut seed = [0u8; 8];
    // SAFETY: the buffer is valid for 8 bytes of writes.
    let got = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    match u64::from_ne_bytes(seed) {
        0 => 0x9e37_79b9_7f4a_7c15,
        _ if got != 8 => 0x9e37_79b9_7f4a_7c15,
        value => value,
    }
}

/// Compiles the programs of `object` (all, or the one `select` names) as
/// the first load into a sandbox built with `config` would, without
/// building one: no KVM is needed. For showing JIT code at the addresses
/// it would run at.
pub fn compile_offline(
    object: &Object,
    select: Option<&str>,
    config: &SandboxConfig,
    helpers: HelperSet,
) -> Result<Vec<LoadedProgram>, OfflineError> {
    let layout = config.layout().map_err(OfflineError::Config)?;
    let runtime = RuntimeImage::embedded().map_err(OfflineError::Runtime)?;
    let specs: Vec<&ProgramSpec> = match select {
        Some(_) => vec![
            object
                .find_program(select)
                .map_err(|e| Box::new(LoadError::SelectProgram(Box::new(e))))?,
        ],
        None => object.programs().iter().collect(),
    };
    // Maps and data where the first load would put them.
    let headers: Vec<u64> = crate::maps::plan_object_maps(&layout, &mut 0, object)
        .map_err(Box::new)?
        .into_iter()
        .map(|(_, header, _)| header)
        .collect();
    // An arena's window is chosen when it is created; listings use a
    // nominal one.
    let arena = object
        .arena()
        .and_then(|i| object.maps().get(i))
        .map(|spec| {
            let start = OFFLINE_ARENA_WINDOW + (spec.map_extra & 0xffff_ffff);
            (spec.max_entries, start)
        });
    let placement = plan_data(
        &layout,
        &mut DataUsage::default(),
        object.data_sections(),
        arena,
    )
    .map_err(Box::new)?;
    let arena_upper = arena.map_or(0, |_| (OFFLINE_ARENA_WINDOW >> 32) as u32);
    let mut code_used = 0;
    let mut programs = Vec::with_capacity(specs.len());
    for spec in specs {
        let linked = object
            .link(spec, &|what| placed(&placement, &headers, what))
            .map_err(|source| {
                Box::new(LoadError::Link {
                    name: spec.name.clone(),
                    source: Box::new(source),
                })
            })?;
        let entry = layout.code_start() + u64::next_multiple_of(code_used, CODE_ALIGN);
        let program = LoadedProgram::compile(linked, entry, &layout, runtime, helpers, arena_upper)
            .map_err(Box::new)?;
        code_used = program.entry - layout.code_start() + program.jit.code.len() as u64;
        programs.push(program);
    }
    Ok(programs)
}

/// Why [`compile_offline`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The sandbox configuration is invalid.
    #[error("Invalid sandbox configuration: {0}")]
    Config(LayoutError),
    /// The guest runtime image is broken.
    #[error(transparent)]
    Runtime(RuntimeError),
    /// A program was refused.
    #[error(transparent)]
    Load(#[from] Box<LoadError>),
}

/// Bytes used so far in each global data region.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DataUsage {
    /// In the read-only region.
    pub rodata: u64,
    /// In the read-write region.
    pub data: u64,
    /// In each vCPU's per-CPU data (Note [Per-CPU data] in
    /// `shm::layout`).
    pub percpu: u64,
}

/// Where [`compile_offline`] pretends the arena window is.
const OFFLINE_ARENA_WINDOW: u64 = 0x7f00_0000_0000;

/// Decides where each of `sections` goes in the data regions of `layout`,
/// after what `usage` says is taken, and records the new usage; `__arena`
/// globals go to the end of the arena, `(pages, user_vm_start)`, where
/// libbpf puts them. Returns the guest address of each section.
pub fn plan_data(
    layout: &Layout,
    usage: &mut DataUsage,
    sections: &[DataSection],
    arena: Option<(u32, u64)>,
) -> Result<Vec<u64>, LoadError> {
    let mut next = *usage;
    let plan = sections
        .iter()
        .map(|section| {
            if section.kind == DataKind::Arena {
                let len = section.bytes.len() as u64;
                let offset = arena.and_then(|(pages, _)| arena_globals_offset(pages, len));
                return match (arena, offset) {
                    (Some((_, start)), Some(offset)) => Ok(start + offset),
                    _ => Err(LoadError::Fit {
                        name: section.name.clone(),
                        region: "arena",
                        needed: len,
                        free: 0,
                    }),
                };
            }
            let read_only = section.kind == DataKind::ReadOnly;
            let (start, size, used, region) = if section.kind == DataKind::PerCpu {
                // CPU 0's copy: the JIT adds this_cpu_off for the others.
                (
                    layout.percpu_data(0),
                    area::PERCPU_DATA_SIZE,
                    &mut next.percpu,
                    "per-CPU data",
                )
            } else if read_only {
                (
                    layout.rodata_start(),
                    layout.rodata_size(),
                    &mut next.rodata,
                    "read-only data",
                )
            } else {
                (
                    layout.data_start(),
                    layout.data_size(),
                    &mut next.data,
                    "data",
                )
            };
            // At least 8-aligned and 8-rounded: each section is also the
            // storage of an array map, which is read in 8-byte words.
            let align = section.align.clamp(8, PAGE_SIZE).next_power_of_two();
            let offset = used.next_multiple_of(align);
            let len = (section.bytes.len() as u64).next_multiple_of(8);
            if offset.saturating_add(len) > size {
                return Err(LoadError::Fit {
                    name: section.name.clone(),
                    region,
                    needed: len,
                    free: size.saturating_sub(offset),
                });
            }
            *used = offset + len;
            Ok(start + offset)
        })
        .collect::<Result<Vec<u64>, LoadError>>()?;
    *usage = next;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shm::layout::LayoutConfig;

    #[test]
    fn program_input_builds_one_field_at_a_time() {
        let input = ProgramInput::new(b"ctx");
        assert_eq!(
            (input.data, input.repeat, input.timeout),
            (&b"ctx"[..], 1, None)
        );
        let input = input.with_repeat(5).with_timeout(Duration::from_millis(7));
        assert_eq!(input.repeat, 5);
        assert_eq!(input.timeout, Some(Duration::from_millis(7)));
        assert_eq!(input.data, b"ctx");
    }

    fn section(name: &str, kind: DataKind, len: usize) -> DataSection {
        DataSection {
            name: name.into(),
            kind,
            bytes: vec![1; len],
            align: 8,
        }
    }

    #[test]
    fn percpu_sections_go_to_cpu0s_per_cpu_data_and_must_fit_it() {
        let layout = Layout::new(LayoutConfig {
            nr_cpus: 3,
            data_size: PAGE_SIZE,
            ..LayoutConfig::default()
        })
        .unwrap();
        let mut usage = DataUsage::default();
        let first = [
            section(".percpu", DataKind::PerCpu, 5),
            section(".data", DataKind::ReadWrite, 16),
        ];
        let plan = plan_data(&layout, &mut usage, &first, None).unwrap();
        assert_eq!(plan, [layout.percpu_data(0), layout.data_start()]);
        // A second object's `.percpu` follows the first's, 8-rounded.
        let second = [section(".percpu", DataKind::PerCpu, 8)];
        let plan = plan_data(&layout, &mut usage, &second, None).unwrap();
        assert_eq!(plan, [layout.percpu_data(0) + 8]);
        let too_big = [section(".percpu", DataKind::PerCpu, 0x2000)];
        let before = usage;
        match plan_data(&layout, &mut usage, &too_big, None) {
            Err(LoadError::Fit { region, free, .. }) => {
                assert_eq!((region, free), ("per-CPU data", 0x2000 - 16));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(usage, before, "a refused plan takes nothing");
    }
}
