//! Loading a whole object into the host kernel, as libbpf's
//! `bpf_object__load` does, from our own loader's view of it.
//!
//! ```text
//!  Object (guest_jit::elf)          host kernel
//!  maps()[i]          ----------->  BPF_MAP_CREATE (map-in-map: after a
//!                                   template inner map; arena: mmapped)
//!  data_sections()[d] ----------->  ARRAY of one value = the section,
//!                                   written, frozen if .rodata*
//!  link(program, placement)         placement answers 0 for everything:
//!    placed_loads[k] ------------>  ld_imm64 src=PSEUDO_MAP_FD imm=fd
//!                                   or src=PSEUDO_MAP_VALUE imm=fd,
//!                                   next imm = offset
//!    kfuncs[j] ------------------>  call src=KFUNC imm=vmlinux BTF id
//!                                   BPF_PROG_LOAD
//! ```
//!
//! Programs are loaded with the object's BTF, fixed up as libbpf does
//! (`btf`), and func_info and line_info for the linked layout: the kernel
//! needs func_info for any program that takes a function's address
//! (`bpf_loop`, `bpf_for_each_map_elem`). Where the kernel refuses the
//! BTF, or a program with it, the program is loaded without (the verifier
//! then treats every subprogram as static), and an error says what
//! happened to the BTF. Maps get no BTF, so maps holding a
//! `bpf_spin_lock` (the kernel finds the lock through the map's BTF) are
//! refused up front with a clear reason, as are `.percpu` globals (the
//! kernel has no per-CPU direct value access).

use crate::arena::ArenaMapping;
use crate::btf::{self, LoadedBtf};
use crate::error::KernelError;
use crate::kfunc;
use crate::map::{KernelMap, UPDATE_ANY, possible_cpus};
use crate::program::{KernelProgram, ProgramType};
use guest_jit::elf::{
    DataKind, DataSection, LinkedProgram, MapInit, MapSpec, MapType, Object, Placed, PlacedLoad,
    ProgramSpec, Variable, arena_globals_offset, map_flags,
};
use guest_jit::insn::Insn;
use guest_jit::insn::opcode::{CALL, CALL_KFUNC, PSEUDO_MAP_FD, PSEUDO_MAP_VALUE};
use std::collections::HashSet;

/// What to load and how.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Load every program as this type instead of the one its section
    /// names (the benchmarks load XDP so that `repeat` is honoured).
    pub program_type: Option<ProgramType>,
    /// Load only these programs, by function or section name (as
    /// [`Object::find_program`]); empty: every program.
    pub programs: Vec<String>,
}

/// An object loaded into the host kernel: its maps, global data maps,
/// arena and programs, all released when it is dropped.
#[derive(Debug)]
pub struct KernelObject {
    /// Programs first: they hold references to the maps anyway.
    programs: Vec<KernelProgram>,
    /// By index in [`Object::maps`].
    maps: Vec<KernelMap>,
    /// By index in [`Object::data_sections`]: the section's map (none for
    /// an empty section or the arena's globals).
    data: Vec<Option<KernelMap>>,
    sections: Vec<DataSection>,
    variables: Vec<Variable>,
    /// The arena's index in `maps` and its mapping, if the object has one.
    arena: Option<(usize, ArenaMapping)>,
}

impl KernelObject {
    /// Creates `object`'s maps and loads its programs into the kernel.
    pub fn load(object: &Object, options: &LoadOptions) -> Result<KernelObject, KernelError> {
        let specs = selected_programs(object, options)?;
        let mut loaded = KernelObject {
            programs: Vec::new(),
            maps: Vec::new(),
            data: Vec::new(),
            sections: object.data_sections().to_vec(),
            variables: object.variables().to_vec(),
            arena: None,
        };
        loaded.create_maps(object)?;
        loaded.create_data_maps(object)?;
        let mut linked = Vec::with_capacity(specs.len());
        for spec in specs {
            let prog_type = match options.program_type {
                Some(t) => t,
                None => ProgramType::from_section(&spec.section).ok_or_else(|| {
                    KernelError::ProgramType {
                        program: spec.name.clone(),
                        section: spec.section.clone(),
                    }
                })?,
            };
            linked.push((spec, prog_type, loaded.link_program(object, spec)?));
        }
        let callbacks: HashSet<&str> = linked
            .iter()
            .flat_map(|(_, _, l)| btf::callbacks(l))
            .collect();
        let btf = match LoadedBtf::load(object, &callbacks) {
            Err(e) if e.is_unavailable() => return Err(e),
            btf => btf,
        };
        for (spec, prog_type, linked) in &linked {
            let program = loaded.load_program(spec, *prog_type, linked, object, &btf)?;
            loaded.programs.push(program);
        }
        loaded.fill_prog_arrays(object)?;
        Ok(loaded)
    }

    fn create_maps(&mut self, object: &Object) -> Result<(), KernelError> {
        for (i, spec) in object.maps().iter().enumerate() {
            if spec.spin_lock_offset.is_some() {
                return Err(KernelError::Unsupported(format!(
                    "Map `{}` holds a bpf_spin_lock, which the kernel finds through map BTF; the kernel engine loads no BTF",
                    spec.name
                )));
            }
            let map = match &spec.inner {
                Some(inner) => {
                    let template = KernelMap::create(inner, None)?;
                    KernelMap::create(spec, Some(template.fd()))?
                }
                None if spec.map_type.is_map_in_map() => {
                    return Err(KernelError::Unsupported(format!(
                        "Map-in-map `{}` has no inner map definition",
                        spec.name
                    )));
                }
                None => KernelMap::create(spec, None)?,
            };
            if spec.map_type == MapType::Arena {
                let segv = spec.map_flags & map_flags::SEGV_ON_FAULT != 0;
                let mapping = ArenaMapping::new(
                    &spec.name,
                    map.fd(),
                    spec.max_entries,
                    spec.map_extra,
                    segv,
                )?;
                self.arena = Some((i, mapping));
            }
            self.maps.push(map);
        }
        // Maps of maps: their initial inner maps, by name.
        for (spec, map) in object.maps().iter().zip(&self.maps) {
            for (index, init) in &spec.values {
                let MapInit::Map(name) = init else { continue };
                let inner = self.find_object_map(name)?;
                let fd = std::os::fd::AsRawFd::as_raw_fd(&inner.fd()) as u32;
                map.update(&index.to_le_bytes(), &fd.to_le_bytes(), UPDATE_ANY)?;
            }
        }
        Ok(())
    }

    fn create_data_maps(&mut self, object: &Object) -> Result<(), KernelError> {
        for section in object.data_sections() {
            let map = match section.kind {
                _ if section.bytes.is_empty() => None,
                DataKind::Arena => {
                    self.write_arena_globals(section)?;
                    None
                }
                _ => Some(create_data_map(section)?),
            };
            self.data.push(map);
        }
        Ok(())
    }

    /// Copies the `__arena` globals' initial bytes to the arena's end, as
    /// libbpf does.
    fn write_arena_globals(&self, section: &DataSection) -> Result<(), KernelError> {
        let (mapping, offset) = self.arena_globals(section)?;
        if !mapping.write(offset, &section.bytes) {
            return Err(KernelError::Unsupported(format!(
                "Cannot write the __arena globals of `{}` into the arena (BPF_F_SEGV_ON_FAULT arenas are not written from user space)",
                section.name
            )));
        }
        Ok(())
    }

    /// The arena mapping and the offset of `section`'s globals in it.
    fn arena_globals(&self, section: &DataSection) -> Result<(&ArenaMapping, usize), KernelError> {
        let no_arena = || {
            KernelError::Unsupported(format!(
                "Section `{}` holds __arena globals but there is no arena to put them in",
                section.name
            ))
        };
        let (_, mapping) = self.arena.as_ref().ok_or_else(no_arena)?;
        let pages = u32::try_from(mapping.len() as u64 / guest_jit::elf::ARENA_PAGE_SIZE)
            .map_err(|_| no_arena())?;
        let offset = arena_globals_offset(pages, section.bytes.len() as u64)
            .and_then(|o| usize::try_from(o).ok())
            .ok_or_else(no_arena)?;
        Ok((mapping, offset))
    }

    /// Links `spec` for the kernel: every map and data section placed
    /// (at 0: the placed loads are rewritten to fds in `load_program`).
    fn link_program(
        &self,
        object: &Object,
        spec: &ProgramSpec,
    ) -> Result<LinkedProgram, KernelError> {
        let placement = |what: Placed| match what {
            Placed::Map(m) => self.maps.get(m).map(|_| 0),
            Placed::Data(d) => {
                let section = self.sections.get(d)?;
                let placed = self.data.get(d)?.is_some() || section.kind == DataKind::Arena;
                placed.then_some(0)
            }
        };
        let linked = object
            .link(spec, &placement)
            .map_err(|e| KernelError::Link {
                program: spec.name.clone(),
                source: Box::new(e),
            })?;
        if !linked.percpu_loads.is_empty() {
            return Err(KernelError::Unsupported(format!(
                "Program `{}` uses .percpu globals, which the kernel has no direct access to",
                spec.name
            )));
        }
        Ok(linked)
    }

    /// Loads `linked` with its maps' fds, its kfuncs' ids and, where the
    /// kernel takes them, `btf`'s records.
    fn load_program(
        &self,
        spec: &ProgramSpec,
        prog_type: ProgramType,
        linked: &LinkedProgram,
        object: &Object,
        btf: &Result<Option<LoadedBtf>, KernelError>,
    ) -> Result<KernelProgram, KernelError> {
        let mut insns = linked.program.insns().to_vec();
        for load in &linked.placed_loads {
            self.rewrite_load(&mut insns, load)?;
        }
        let ids = kfunc::resolve(&spec.name, &linked.kfuncs)?;
        for insn in &mut insns {
            if insn.code == CALL && insn.src() == CALL_KFUNC {
                let id = usize::try_from(insn.imm)
                    .ok()
                    .and_then(|k| ids.get(k))
                    .copied()
                    .unwrap_or_default();
                insn.imm = id as i32;
                insn.off = 0;
            }
        }
        let bytes = Insn::slice_to_bytes(&insns);
        let load = |btf| {
            let license = object.license().unwrap_or_default();
            KernelProgram::load(&spec.name, &spec.section, prog_type, &bytes, license, btf)
        };
        let records = match btf {
            Ok(Some(btf)) => btf.records(linked, &insns).map(|r| (btf, r)),
            Ok(None) => Err("the object has no BTF (clang -g writes it)".to_owned()),
            Err(refused) => Err(refused.to_string()),
        };
        let refused_with_btf = match &records {
            Ok((btf, records)) => match load(Some(btf.prog_btf(records))) {
                Err(e) if !e.is_unavailable() => e,
                loaded => return loaded,
            },
            Err(why) => {
                return load(None).map_err(|e| explain_without_btf(e, why));
            }
        };
        // What loaded before programs had BTF still loads: without it,
        // the verifier checks global functions in their callers' context.
        // If that fails too, the refusal with BTF comes first.
        load(None).map_err(|without| both_refused(refused_with_btf, &without))
    }

    /// Makes the `ld_imm64` at `load.slot` refer to its map by fd.
    fn rewrite_load(&self, insns: &mut [Insn], load: &PlacedLoad) -> Result<(), KernelError> {
        let fd_of = |map: &KernelMap| std::os::fd::AsRawFd::as_raw_fd(&map.fd());
        let (src, fd, offset) = match load.what {
            Placed::Map(m) => {
                let map = self.maps.get(m).ok_or_else(|| unplaced("map", m))?;
                (PSEUDO_MAP_FD, fd_of(map), 0)
            }
            Placed::Data(d) => {
                let section = self.sections.get(d).ok_or_else(|| unplaced("section", d))?;
                if section.kind == DataKind::Arena {
                    let (m, _) = self.arena.as_ref().ok_or_else(|| unplaced("arena", d))?;
                    let (_, base) = self.arena_globals(section)?;
                    let offset = base as u64 + load.offset;
                    (PSEUDO_MAP_VALUE, fd_of(&self.maps[*m]), offset)
                } else {
                    let map = self.data.get(d).and_then(Option::as_ref);
                    let map = map.ok_or_else(|| unplaced("section", d))?;
                    (PSEUDO_MAP_VALUE, fd_of(map), load.offset)
                }
            }
        };
        let offset = i32::try_from(offset).map_err(|_| {
            KernelError::Unsupported(format!(
                "A global at offset {offset:#x} is beyond what an ld_imm64 of a map value reaches"
            ))
        })?;
        if let Some([first, second]) = insns.get_mut(load.slot..load.slot + 2) {
            first.regs = (src << 4) | first.dst();
            first.imm = fd;
            second.imm = offset;
        }
        Ok(())
    }

    /// Puts each loaded program named in a `PROG_ARRAY`'s initial values
    /// in its slot (programs not loaded leave theirs empty).
    fn fill_prog_arrays(&self, object: &Object) -> Result<(), KernelError> {
        for (spec, map) in object.maps().iter().zip(&self.maps) {
            for (index, init) in &spec.values {
                let MapInit::Program(name) = init else {
                    continue;
                };
                if let Some(program) = self.programs.iter().find(|p| p.name() == name) {
                    let fd = std::os::fd::AsRawFd::as_raw_fd(&program.fd()) as u32;
                    map.update(&index.to_le_bytes(), &fd.to_le_bytes(), UPDATE_ANY)?;
                }
            }
        }
        Ok(())
    }

    fn find_object_map(&self, name: &str) -> Result<&KernelMap, KernelError> {
        self.maps
            .iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| KernelError::NotFound {
                what: "map",
                name: name.to_owned(),
            })
    }

    /// The loaded programs, in the object's order.
    pub fn programs(&self) -> &[KernelProgram] {
        &self.programs
    }

    /// The program whose function name, or else section name, is `name`.
    pub fn program(&self, name: &str) -> Result<&KernelProgram, KernelError> {
        self.programs
            .iter()
            .find(|p| p.name() == name)
            .or_else(|| self.programs.iter().find(|p| p.section() == name))
            .ok_or_else(|| KernelError::NotFound {
                what: "loaded program",
                name: name.to_owned(),
            })
    }

    /// The map `name`: one the object defines, or a global data section's
    /// (by section name, `.bss`, as libbpf names them).
    pub fn map(&self, name: &str) -> Result<&KernelMap, KernelError> {
        self.find_object_map(name).or_else(|_| {
            self.sections
                .iter()
                .zip(&self.data)
                .find(|(s, m)| s.map_name() == name && m.is_some())
                .and_then(|(_, m)| m.as_ref())
                .ok_or_else(|| KernelError::NotFound {
                    what: "map",
                    name: name.to_owned(),
                })
        })
    }

    /// The maps the object defines, in its order.
    pub fn maps(&self) -> &[KernelMap] {
        &self.maps
    }

    /// The current bytes of global data section `name` (`.bss`, ...).
    pub fn read_section(&self, name: &str) -> Result<Vec<u8>, KernelError> {
        let index = self
            .sections
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| KernelError::NotFound {
                what: "global data section",
                name: name.to_owned(),
            })?;
        self.read_data(index)
    }

    fn read_data(&self, index: usize) -> Result<Vec<u8>, KernelError> {
        let section = &self.sections[index];
        if section.bytes.is_empty() {
            return Ok(Vec::new());
        }
        if section.kind == DataKind::Arena {
            let (mapping, offset) = self.arena_globals(section)?;
            return mapping.read(offset, section.bytes.len()).ok_or_else(|| {
                KernelError::Unsupported(format!(
                    "Cannot read the __arena globals of `{}` (BPF_F_SEGV_ON_FAULT arenas are not read from user space)",
                    section.name
                ))
            });
        }
        let map = self.data[index]
            .as_ref()
            .ok_or_else(|| KernelError::NotFound {
                what: "global data map",
                name: section.name.clone(),
            })?;
        let value = map.lookup(&0u32.to_le_bytes())?.unwrap_or_default();
        // A per-CPU section: CPU 0's copy.
        Ok(value.get(..section.bytes.len()).unwrap_or(&value).to_vec())
    }

    /// The current bytes of global variable `name` (CPU 0's copy for a
    /// `.percpu` one).
    pub fn read_global(&self, name: &str) -> Result<Vec<u8>, KernelError> {
        let var = self
            .variables
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| KernelError::NotFound {
                what: "global variable",
                name: name.to_owned(),
            })?;
        let bytes = self.read_data(var.data)?;
        // Checked at parse: the variable lies inside its section.
        let start = usize::try_from(var.offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(var.size).unwrap_or(usize::MAX));
        Ok(bytes.get(start..end).unwrap_or_default().to_vec())
    }

    /// A consumer of `RINGBUF` map `name`, reading the kernel's ring
    /// through our own consumer (Note [Kernel ring mapping] in vmm).
    pub fn ring_buffer(&self, name: &str) -> Result<vmm::RingBufConsumer, KernelError> {
        let map = self.find_object_map(name)?;
        if map.map_type() != MapType::RingBuf {
            return Err(KernelError::Unsupported(format!(
                "Map `{name}` is a {} map, not a RINGBUF",
                map.map_type().name()
            )));
        }
        let ring = |source| KernelError::RingBuf {
            name: name.to_owned(),
            source,
        };
        let fd = map
            .try_clone_fd()
            .map_err(|e| ring(vmm::RingBufError::Io(e)))?;
        vmm::RingBufConsumer::for_kernel_map(name, fd, map.max_entries()).map_err(ring)
    }
}

/// The programs `options` asks for, in the object's order.
fn selected_programs<'o>(
    object: &'o Object,
    options: &LoadOptions,
) -> Result<Vec<&'o ProgramSpec>, KernelError> {
    if options.programs.is_empty() {
        return Ok(object.programs().iter().collect());
    }
    let mut chosen = Vec::new();
    for name in &options.programs {
        let spec = object
            .find_program(Some(name))
            .map_err(|e| KernelError::Link {
                program: name.clone(),
                source: Box::new(e),
            })?;
        if !chosen.iter().any(|c: &&ProgramSpec| std::ptr::eq(*c, spec)) {
            chosen.push(spec);
        }
    }
    Ok(chosen)
}

/// A global data section's map, holding its initial bytes (frozen for
/// `.rodata*`, so the verifier may read them as constants).
fn create_data_map(section: &DataSection) -> Result<KernelMap, KernelError> {
    let spec: MapSpec = section.map_spec();
    let map = KernelMap::create(&spec, None)?;
    let init = |source| {
        KernelError::bpf(source, |source| KernelError::InitData {
            name: section.name.clone(),
            source,
        })
    };
    let value = if section.kind == DataKind::PerCpu {
        let stride = section.bytes.len().next_multiple_of(8);
        let mut all = vec![0; stride * possible_cpus()];
        for copy in all.chunks_mut(stride) {
            copy[..section.bytes.len()].copy_from_slice(&section.bytes);
        }
        all
    } else {
        section.bytes.clone()
    };
    map.update(&0u32.to_le_bytes(), &value, UPDATE_ANY)?;
    if section.kind == DataKind::ReadOnly {
        map.freeze().map_err(init)?;
    }
    Ok(map)
}

/// A program loaded without BTF and refused: the verifier's reason, and
/// why there was no BTF (its refusal may be the cause: "missing btf
/// func_info").
fn explain_without_btf(error: KernelError, why: &str) -> KernelError {
    match error {
        KernelError::LoadProgram {
            program,
            reason,
            log,
            source,
        } => KernelError::LoadProgram {
            program,
            reason: format!("{reason} (loaded without BTF: {why})"),
            log,
            source,
        },
        e => e,
    }
}

/// A program refused with BTF and without: the refusal with BTF, and the
/// other's reason when it differs.
fn both_refused(with_btf: KernelError, without: &KernelError) -> KernelError {
    match (with_btf, without) {
        (
            KernelError::LoadProgram {
                program,
                reason,
                log,
                source,
            },
            KernelError::LoadProgram { reason: other, .. },
        ) if reason != *other => KernelError::LoadProgram {
            program,
            reason: format!("{reason} (and without BTF: {other})"),
            log,
            source,
        },
        (e, _) => e,
    }
}

/// The error for a placed load of something the loader did not make.
fn unplaced(what: &str, index: usize) -> KernelError {
    KernelError::Unsupported(format!(
        "The program refers to {what} {index}, which is not loaded"
    ))
}
