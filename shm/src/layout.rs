//! The guest address map: the one source of truth for every guest address.
//!
//! Guest-physical and guest-virtual addresses are equal in the low region
//! (identity mapping); what differs is which pages are mapped and how.
//!
//! ```text
//!  guest address                                   guest access
//!  0x0000_0000 ┌───────────────────────────────┐
//!              │ null page                     │   unmapped
//!  0x0000_1000 ├───────────────────────────────┤
//!              │ GDT                           │   R
//!  0x0000_2000 ├───────────────────────────────┤
//!              │ IDT                           │   R
//!  0x0000_3000 ├───────────────────────────────┤
//!              │ TSS × MAX_CPUS (128 B each,   │   R
//!              │ with the I/O bitmap)          │
//!  0x0000_5000 ├───────────────────────────────┤
//!              │ boot info                     │   R
//!  0x0001_0000 ├───────────────────────────────┤
//!              │ page tables (host-built)      │   unmapped
//!  0x0020_0000 ├───────────────────────────────┤
//!              │ guest runtime image           │   per ELF segment:
//!              │  .text / .rodata / .data .bss │   RX / R / RW
//!  0x0040_0000 ├───────────────────────────────┤
//!              │ per-CPU area, CPU 0           │   see below
//!              │ per-CPU area, CPU 1 ...       │
//!  align 2 MiB ├───────────────────────────────┤ code_start()
//!              │ JIT code                      │   RX
//!              ├───────────────────────────────┤ extable_start()
//!              │ exception table               │   R
//!              ├───────────────────────────────┤ rodata_start()
//!              │ program read-only data        │   R
//!              │ (.rodata sections)            │
//!              ├───────────────────────────────┤ data_start()
//!              │ program data (.data, .bss)    │   RW
//!              ├───────────────────────────────┤ maps_start()
//!              │ maps: header + storage each,  │   RW
//!              │ page-aligned                  │
//!              ├───────────────────────────────┤ arena_tables_start()
//!              │ arena page tables and page    │   RW
//!              │ states (see arena_area)       │
//!              └───────────────────────────────┘ memory_size()
//!
//!  an arena's pages are not here: they live in their own memslot, mapped
//!  at the host's own address (Note [Arena window] in `vmm::arena`).
//!
//!  per-CPU area (offsets from percpu_area(cpu)):
//!  +0x00000  guard page                          unmapped
//!  +0x01000  stack (32 KiB), grows down          RW   user
//!  +0x09000  guard page                          unmapped
//!  +0x0a000  trap stack (16 KiB)                 RW   user    (trap handler)
//!  +0x0e000  guard page                          unmapped
//!  +0x0f000  kernel stack, IST1 (4 KiB)          RW   kernel  (exception entry)
//!  +0x10000  guard page                          unmapped
//!  +0x11000  fatal stack, IST2 (4 KiB)           RW   kernel  (#DF, NMI, #MC)
//!  +0x12000  per-CPU block (GS base)             RW   user
//!  +0x13000  mailbox                             RW   user
//!  +0x14000  trace buffer (16 KiB)               RW   user
//!  +0x18000  context buffer (ctx_size)           RW   user
//!  +ctx end  guard page                          unmapped
//!  +ctx end  per-CPU data (8 KiB): this CPU's    RW   user
//!   +0x1000  copy of the programs' `.percpu`
//!            sections (Note [Per-CPU data])
//!            (the next CPU's guard page follows)
//! ```
//!
//! Every mapped page is non-executable except the runtime's text and the JIT
//! code; no page is both writable and executable. Pages marked "kernel" are
//! reachable only at CPL 0, which runs nothing but the exception entry stubs
//! (Note [Guest privilege levels]); everything else is user-accessible, since
//! the runtime and BPF programs run at CPL 3.
//!
//! Note [Guest privilege levels]
//! The runtime and BPF programs run at CPL 3, not CPL 0. Some KVM hosts
//! (PVM, as on the machines this project runs on) execute guest CPL 0 code
//! by instruction emulation — around 700 ns an instruction, with no SSE —
//! while CPL 3 code runs natively. Running at CPL 3 costs nothing on hardware
//! KVM either: the guest never needs a privileged instruction on a hot path.
//! `out` to our ports works at CPL 3 because each TSS's I/O permission
//! bitmap grants them (Note [Port permissions] in `crate::ports`). CPL 0 is
//! entered only by CPU exceptions, whose stubs copy the fault into the
//! per-CPU block and return at once to a CPL 3 handler on the trap stack.

use core::fmt;

/// Size of a page, the unit of every mapping.
pub const PAGE_SIZE: u64 = 0x1000;
/// Size of a large page, the alignment of the code region.
pub const LARGE_PAGE_SIZE: u64 = 0x20_0000;
/// Most vCPUs a sandbox can have.
pub const MAX_CPUS: usize = 64;

/// Global descriptor table (one page).
pub const GDT_START: u64 = 0x1000;
/// Interrupt descriptor table (256 16-byte gates, one page).
pub const IDT_START: u64 = 0x2000;
/// Task state segments, one per vCPU.
pub const TSS_START: u64 = 0x3000;
/// Distance between two vCPUs' task state segments.
pub const TSS_STRIDE: u64 = 128;
/// Read-only page describing the sandbox to the guest runtime
/// ([`crate::percpu::BootInfo`]).
pub const BOOT_INFO_START: u64 = 0x5000;
/// Host-built page tables; not mapped in the guest.
pub const PAGE_TABLES_START: u64 = 0x1_0000;
/// Room for page tables: 240 tables, enough for every region below.
pub const PAGE_TABLES_SIZE: u64 = RUNTIME_START - PAGE_TABLES_START;
/// Where the guest runtime image is linked (its `--image-base`).
pub const RUNTIME_START: u64 = 0x20_0000;
/// Room for the guest runtime image.
pub const RUNTIME_SIZE: u64 = 0x20_0000;
/// Distance between two exception vector stubs in the runtime image; the host
/// builds the IDT as `bpfvisor_exception_stubs + vector * EXCEPTION_STUB_STRIDE`.
pub const EXCEPTION_STUB_STRIDE: u64 = 16;
/// First per-CPU area.
pub const PERCPU_AREAS_START: u64 = RUNTIME_START + RUNTIME_SIZE;

/// Offsets inside one vCPU's per-CPU area.
pub mod area {
    use super::PAGE_SIZE;

    /// The runtime stack; a guard page lies below it at offset 0.
    pub const STACK_OFFSET: u64 = PAGE_SIZE;
    /// Size of the runtime stack, where BPF programs run.
    pub const STACK_SIZE: u64 = 0x8000;
    /// Stack of the CPL 3 trap handler, above a guard page.
    pub const TRAP_STACK_OFFSET: u64 = STACK_OFFSET + STACK_SIZE + PAGE_SIZE;
    /// Size of the trap stack.
    pub const TRAP_STACK_SIZE: u64 = 0x4000;
    /// Kernel stack for exception entry (IST1), above a guard page.
    pub const KERNEL_STACK_OFFSET: u64 = TRAP_STACK_OFFSET + TRAP_STACK_SIZE + PAGE_SIZE;
    /// Size of the kernel stack.
    pub const KERNEL_STACK_SIZE: u64 = PAGE_SIZE;
    /// Kernel stack for double faults, NMIs and machine checks (IST2), above
    /// a guard page.
    pub const FATAL_STACK_OFFSET: u64 = KERNEL_STACK_OFFSET + KERNEL_STACK_SIZE + PAGE_SIZE;
    /// Size of the fatal stack.
    pub const FATAL_STACK_SIZE: u64 = PAGE_SIZE;
    /// The per-CPU block the vCPU's GS base points at.
    pub const BLOCK_OFFSET: u64 = FATAL_STACK_OFFSET + FATAL_STACK_SIZE;
    /// The mailbox page.
    pub const MAILBOX_OFFSET: u64 = BLOCK_OFFSET + PAGE_SIZE;
    /// The trace buffer `bpf_printk` writes into.
    pub const TRACE_OFFSET: u64 = MAILBOX_OFFSET + PAGE_SIZE;
    /// Size of the trace buffer.
    pub const TRACE_SIZE: u64 = 0x4000;
    /// The context buffer a program's `r1` points at.
    pub const CTX_OFFSET: u64 = TRACE_OFFSET + TRACE_SIZE;
    /// Size of the per-CPU data copy, after the context buffer and a guard
    /// page (Note [Per-CPU data]).
    pub const PERCPU_DATA_SIZE: u64 = 0x2000;

    /// Bytes of one vCPU's area with a context buffer of `ctx_size`.
    pub const fn size(ctx_size: u64) -> u64 {
        CTX_OFFSET + ctx_size + PAGE_SIZE + PERCPU_DATA_SIZE
    }

    /// Offset of the per-CPU data copy from the start of the context
    /// buffer (past it and its guard page).
    pub const fn percpu_data_from_ctx(ctx_size: u64) -> u64 {
        ctx_size + PAGE_SIZE
    }
}

// Note [Per-CPU data]
// Every vCPU's area ends with its copy of the programs' `.percpu` sections,
// at the same offset in every area, so CPU `c`'s copy is CPU 0's plus
// `c * percpu_area_size()`. That distance is the vCPU's `this_cpu_off`:
// the JIT turns the address of a `.percpu` variable (CPU 0's copy) into the
// running vCPU's with `add dst, gs:[this_cpu_off]`, and the `.percpu`
// section's internal PERCPU_ARRAY map has `percpu_block` equal to the area
// size, so the host and the per-CPU map helpers find the same copies.

/// Offsets inside the arena tables region: the guest page tables of the
/// arena window (a 4 GiB-aligned 4 GiB range) and the arena's state region
/// (`crate::arena`'s header and page states). Sized for the largest arena
/// (2^20 pages); guest memory is sparse, so what no arena uses costs
/// nothing. User-RW: the runtime's kfuncs write PTEs and states at CPL 3
/// (docs/arena-experiments.md).
///
/// ```text
///  +0x000000  PDPT of the window's 512 GiB slot (one entry used per GiB)
///  +0x001000  4 PDs, one per GiB of the window
///  +0x005000  state region: ArenaHeader (64 B) + one u8 per page
///  +0x106000  leaf PTs: 2048 contiguous pages, PTE of window page i at
///             +0x106000 + 8 * i
///  +0x906000  end
/// ```
pub mod arena_area {
    use super::PAGE_SIZE;

    /// The window's page-directory-pointer table.
    pub const PDPT_OFFSET: u64 = 0;
    /// The window's 4 page directories.
    pub const PD_OFFSET: u64 = PAGE_SIZE;
    /// Page directories: one per GiB of the 4 GiB window.
    pub const PD_COUNT: u64 = 4;
    /// The arena's state region (`crate::arena::ArenaHeader`, then states).
    pub const STATES_OFFSET: u64 = PD_OFFSET + PD_COUNT * PAGE_SIZE;
    /// Room for the state region: 64-byte header and 2^20 state bytes.
    pub const STATES_SIZE: u64 = 0x10_1000;
    /// The leaf page tables of the whole window, contiguous.
    pub const PTS_OFFSET: u64 = STATES_OFFSET + STATES_SIZE;
    /// 2048 leaf tables: 8 bytes for each of the window's 2^20 pages.
    pub const PTS_SIZE: u64 = PD_COUNT * 512 * PAGE_SIZE;
    /// Size of the region.
    pub const SIZE: u64 = PTS_OFFSET + PTS_SIZE;
}

/// Note [Ring window]
/// Ring buffers need their data pages twice in a row (Note [Ring buffer
/// layout] in `crate::ringbuf`), which an identity mapping cannot give;
/// so each ring is mapped again at a guest-virtual address of its own in
/// the ring window, from [`RING_WINDOW_START`] (256 GiB, far above any
/// guest memory) on: the ring whose map header is at offset `o` of the
/// maps region starts at `RING_WINDOW_START + 2 * o`
/// ([`Layout::ring_address`]). A ring takes at most twice its footprint
/// in the maps region there, so rings never overlap, and an unmapped gap
/// follows each. The pages behind the window are the maps region's: the
/// window is virtual only. It is mapped when a ring is created and never
/// changed after: on shadow-paging hosts the host may add a mapping to
/// tables a vCPU already used, but not change one (the vCPU could keep
/// using a stale copy).
pub const RING_WINDOW_START: u64 = 0x40_0000_0000;

/// What a sandbox's address map is computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutConfig {
    /// Number of vCPUs, 1..=[`MAX_CPUS`].
    pub nr_cpus: usize,
    /// Bytes of JIT code the sandbox can hold; a multiple of [`PAGE_SIZE`].
    pub code_size: u64,
    /// Bytes of exception table; a multiple of [`PAGE_SIZE`].
    pub extable_size: u64,
    /// Bytes for programs' read-only globals; a multiple of [`PAGE_SIZE`],
    /// may be 0.
    pub rodata_size: u64,
    /// Bytes for programs' writable globals; a multiple of [`PAGE_SIZE`],
    /// may be 0.
    pub data_size: u64,
    /// Bytes for maps (headers and storage); a multiple of [`PAGE_SIZE`],
    /// may be 0.
    pub maps_size: u64,
    /// Bytes of context buffer per vCPU; a multiple of [`PAGE_SIZE`].
    pub ctx_size: u64,
}

impl Default for LayoutConfig {
    fn default() -> Self {
        LayoutConfig {
            nr_cpus: 1,
            code_size: 0x10_0000,
            extable_size: 0x4_0000,
            rodata_size: 0,
            data_size: 0,
            maps_size: 0,
            ctx_size: 0x1_0000,
        }
    }
}

/// Why a [`LayoutConfig`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// `nr_cpus` is 0 or above [`MAX_CPUS`].
    CpuCount(usize),
    /// A size is zero, not page-aligned, or above 1 GiB.
    Size(&'static str, u64),
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::CpuCount(n) => write!(f, "CPU count {n} is not in 1..={MAX_CPUS}"),
            LayoutError::Size(what, n) => write!(
                f,
                "{what} {n:#x} must be a non-zero multiple of {PAGE_SIZE:#x} up to 1 GiB"
            ),
        }
    }
}

/// How the guest may access a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read only, not executable.
    Read,
    /// Read and write, not executable.
    ReadWrite,
    /// Read and execute, never writable.
    ReadExec,
}

/// A mapped region of the low, identity-mapped address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// What it is, for messages.
    pub name: &'static str,
    /// First guest address (page-aligned).
    pub start: u64,
    /// Length in bytes (page-aligned).
    pub size: u64,
    /// How the guest may access it.
    pub access: Access,
    /// Whether CPL 3 code may access it (Note [Guest privilege levels]).
    pub user: bool,
}

impl Region {
    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.start + self.size
    }

    /// Whether `addr` lies inside the region.
    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.start && addr < self.end()
    }
}

/// The address map of one sandbox, computed from its [`LayoutConfig`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    config: LayoutConfig,
    area_size: u64,
}

const MAX_REGION_SIZE: u64 = 1 << 30;

const fn align_up(value: u64, align: u64) -> u64 {
    (value + align - 1) & !(align - 1)
}

fn check_size(what: &'static str, size: u64) -> Result<(), LayoutError> {
    if size == 0 || !size.is_multiple_of(PAGE_SIZE) || size > MAX_REGION_SIZE {
        return Err(LayoutError::Size(what, size));
    }
    Ok(())
}

impl Layout {
    /// Computes the address map, or says which part of `config` is invalid.
    pub fn new(config: LayoutConfig) -> Result<Layout, LayoutError> {
        if config.nr_cpus == 0 || config.nr_cpus > MAX_CPUS {
            return Err(LayoutError::CpuCount(config.nr_cpus));
        }
        check_size("code size", config.code_size)?;
        check_size("exception table size", config.extable_size)?;
        check_size("context size", config.ctx_size)?;
        if config.rodata_size != 0 {
            check_size("read-only data size", config.rodata_size)?;
        }
        if config.data_size != 0 {
            check_size("data size", config.data_size)?;
        }
        if config.maps_size != 0 {
            check_size("maps size", config.maps_size)?;
        }
        Ok(Layout {
            config,
            area_size: area::size(config.ctx_size),
        })
    }

    /// The configuration this map was computed from.
    pub fn config(&self) -> LayoutConfig {
        self.config
    }

    /// Number of vCPUs.
    pub fn nr_cpus(&self) -> usize {
        self.config.nr_cpus
    }

    /// Size of one vCPU's per-CPU area.
    pub fn percpu_area_size(&self) -> u64 {
        self.area_size
    }

    /// Start of `cpu`'s per-CPU area (its low guard page).
    pub fn percpu_area(&self, cpu: usize) -> u64 {
        PERCPU_AREAS_START + cpu as u64 * self.area_size
    }

    /// Guest address of `cpu`'s task state segment.
    pub fn tss(&self, cpu: usize) -> u64 {
        TSS_START + cpu as u64 * TSS_STRIDE
    }

    /// Initial stack pointer of `cpu` (one past the top of its stack).
    pub fn stack_top(&self, cpu: usize) -> u64 {
        self.percpu_area(cpu) + area::STACK_OFFSET + area::STACK_SIZE
    }

    /// Top of `cpu`'s trap stack, where the CPL 3 trap handler runs.
    pub fn trap_stack_top(&self, cpu: usize) -> u64 {
        self.percpu_area(cpu) + area::TRAP_STACK_OFFSET + area::TRAP_STACK_SIZE
    }

    /// Top of `cpu`'s kernel stack (IST1).
    pub fn kernel_stack_top(&self, cpu: usize) -> u64 {
        self.percpu_area(cpu) + area::KERNEL_STACK_OFFSET + area::KERNEL_STACK_SIZE
    }

    /// Top of `cpu`'s fatal-exception stack (IST2).
    pub fn fatal_stack_top(&self, cpu: usize) -> u64 {
        self.percpu_area(cpu) + area::FATAL_STACK_OFFSET + area::FATAL_STACK_SIZE
    }

    /// `cpu`'s per-CPU block: its GS base.
    pub fn percpu_block(&self, cpu: usize) -> u64 {
        self.percpu_area(cpu) + area::BLOCK_OFFSET
    }

    /// `cpu`'s mailbox.
    pub fn mailbox(&self, cpu: usize) -> u64 {
        self.percpu_area(cpu) + area::MAILBOX_OFFSET
    }

    /// `cpu`'s trace buffer.
    pub fn trace_buffer(&self, cpu: usize) -> u64 {
        self.percpu_area(cpu) + area::TRACE_OFFSET
    }

    /// `cpu`'s context buffer.
    pub fn ctx_buffer(&self, cpu: usize) -> u64 {
        self.percpu_area(cpu) + area::CTX_OFFSET
    }

    /// Size of each context buffer.
    pub fn ctx_size(&self) -> u64 {
        self.config.ctx_size
    }

    /// `cpu`'s copy of the per-CPU data (Note [Per-CPU data]), of
    /// [`area::PERCPU_DATA_SIZE`] bytes.
    pub fn percpu_data(&self, cpu: usize) -> u64 {
        self.ctx_buffer(cpu) + area::percpu_data_from_ctx(self.config.ctx_size)
    }

    /// What `cpu` adds to the address of CPU 0's per-CPU data to reach its
    /// own: its `this_cpu_off`.
    pub fn this_cpu_off(&self, cpu: usize) -> u64 {
        cpu as u64 * self.area_size
    }

    /// One past the last per-CPU area.
    pub fn percpu_areas_end(&self) -> u64 {
        self.percpu_area(self.config.nr_cpus)
    }

    /// Start of the JIT code region.
    pub fn code_start(&self) -> u64 {
        align_up(self.percpu_areas_end(), LARGE_PAGE_SIZE)
    }

    /// Size of the JIT code region.
    pub fn code_size(&self) -> u64 {
        self.config.code_size
    }

    /// Start of the exception table the JIT writes.
    pub fn extable_start(&self) -> u64 {
        self.code_start() + self.config.code_size
    }

    /// Size of the exception table region.
    pub fn extable_size(&self) -> u64 {
        self.config.extable_size
    }

    /// Start of the region for programs' read-only globals.
    pub fn rodata_start(&self) -> u64 {
        self.extable_start() + self.config.extable_size
    }

    /// Size of the read-only globals region.
    pub fn rodata_size(&self) -> u64 {
        self.config.rodata_size
    }

    /// Start of the region for programs' writable globals.
    pub fn data_start(&self) -> u64 {
        self.rodata_start() + self.config.rodata_size
    }

    /// Size of the writable globals region.
    pub fn data_size(&self) -> u64 {
        self.config.data_size
    }

    /// Start of the maps region.
    pub fn maps_start(&self) -> u64 {
        self.data_start() + self.config.data_size
    }

    /// Size of the maps region.
    pub fn maps_size(&self) -> u64 {
        self.config.maps_size
    }

    /// Where the ring buffer whose map header is at guest address `header`
    /// (in the maps region) starts in the ring window (Note [Ring
    /// window]); `None` outside the maps region.
    pub fn ring_address(&self, header: u64) -> Option<u64> {
        let offset = header.checked_sub(self.maps_start())?;
        (offset < self.maps_size()).then(|| RING_WINDOW_START + 2 * offset)
    }

    /// Start of the arena tables region ([`arena_area`]).
    pub fn arena_tables_start(&self) -> u64 {
        self.maps_start() + self.config.maps_size
    }

    /// Size of the arena tables region.
    pub fn arena_tables_size(&self) -> u64 {
        arena_area::SIZE
    }

    /// Bytes of guest memory the low region needs.
    pub fn memory_size(&self) -> u64 {
        self.arena_tables_start() + arena_area::SIZE
    }

    /// Every mapped region except the runtime image, whose permissions come
    /// from its ELF segments. Calls `f` once per region, in address order.
    pub fn for_each_region(&self, mut f: impl FnMut(Region)) {
        let kernel = |name, start, size, access| Region {
            name,
            start,
            size,
            access,
            user: false,
        };
        let user = |name, start, size, access| Region {
            name,
            start,
            size,
            access,
            user: true,
        };
        f(kernel("GDT", GDT_START, PAGE_SIZE, Access::Read));
        f(kernel("IDT", IDT_START, PAGE_SIZE, Access::Read));
        let tss_size = align_up(MAX_CPUS as u64 * TSS_STRIDE, PAGE_SIZE);
        f(kernel("TSS", TSS_START, tss_size, Access::Read));
        f(user("boot info", BOOT_INFO_START, PAGE_SIZE, Access::Read));
        for cpu in 0..self.config.nr_cpus {
            let base = self.percpu_area(cpu);
            let at = |offset| base + offset;
            f(user(
                "stack",
                at(area::STACK_OFFSET),
                area::STACK_SIZE,
                Access::ReadWrite,
            ));
            f(user(
                "trap stack",
                at(area::TRAP_STACK_OFFSET),
                area::TRAP_STACK_SIZE,
                Access::ReadWrite,
            ));
            f(kernel(
                "kernel stack",
                at(area::KERNEL_STACK_OFFSET),
                area::KERNEL_STACK_SIZE,
                Access::ReadWrite,
            ));
            f(kernel(
                "fatal stack",
                at(area::FATAL_STACK_OFFSET),
                area::FATAL_STACK_SIZE,
                Access::ReadWrite,
            ));
            // The per-CPU block, mailbox, trace and context buffers are
            // contiguous and all read-write.
            let block_size = area::CTX_OFFSET + self.config.ctx_size - area::BLOCK_OFFSET;
            f(user(
                "per-CPU block",
                at(area::BLOCK_OFFSET),
                block_size,
                Access::ReadWrite,
            ));
            f(user(
                "per-CPU data",
                self.percpu_data(cpu),
                area::PERCPU_DATA_SIZE,
                Access::ReadWrite,
            ));
        }
        f(user(
            "JIT code",
            self.code_start(),
            self.config.code_size,
            Access::ReadExec,
        ));
        f(user(
            "exception table",
            self.extable_start(),
            self.config.extable_size,
            Access::Read,
        ));
        if self.config.rodata_size != 0 {
            f(user(
                "read-only data",
                self.rodata_start(),
                self.config.rodata_size,
                Access::Read,
            ));
        }
        if self.config.data_size != 0 {
            f(user(
                "data",
                self.data_start(),
                self.config.data_size,
                Access::ReadWrite,
            ));
        }
        if self.config.maps_size != 0 {
            f(user(
                "maps",
                self.maps_start(),
                self.config.maps_size,
                Access::ReadWrite,
            ));
        }
        f(user(
            "arena tables",
            self.arena_tables_start(),
            arena_area::SIZE,
            Access::ReadWrite,
        ));
    }
}

impl fmt::Debug for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layout")
            .field("nr_cpus", &self.config.nr_cpus)
            .field("gdt", &format_args!("{GDT_START:#x}"))
            .field("idt", &format_args!("{IDT_START:#x}"))
            .field("tss", &format_args!("{TSS_START:#x}"))
            .field("boot_info", &format_args!("{BOOT_INFO_START:#x}"))
            .field("page_tables", &format_args!("{PAGE_TABLES_START:#x}"))
            .field("runtime", &format_args!("{RUNTIME_START:#x}"))
            .field("percpu_areas", &format_args!("{PERCPU_AREAS_START:#x}"))
            .field("percpu_area_size", &format_args!("{:#x}", self.area_size))
            .field("code", &format_args!("{:#x}", self.code_start()))
            .field("code_size", &format_args!("{:#x}", self.config.code_size))
            .field("extable", &format_args!("{:#x}", self.extable_start()))
            .field(
                "extable_size",
                &format_args!("{:#x}", self.config.extable_size),
            )
            .field("rodata", &format_args!("{:#x}", self.rodata_start()))
            .field(
                "rodata_size",
                &format_args!("{:#x}", self.config.rodata_size),
            )
            .field("data", &format_args!("{:#x}", self.data_start()))
            .field("data_size", &format_args!("{:#x}", self.config.data_size))
            .field("maps", &format_args!("{:#x}", self.maps_start()))
            .field("maps_size", &format_args!("{:#x}", self.config.maps_size))
            .field(
                "arena_tables",
                &format_args!("{:#x}", self.arena_tables_start()),
            )
            .field("memory_size", &format_args!("{:#x}", self.memory_size()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn setup_layout(nr_cpus: usize) -> Layout {
        Layout::new(LayoutConfig {
            nr_cpus,
            rodata_size: 2 * PAGE_SIZE,
            data_size: 3 * PAGE_SIZE,
            maps_size: 5 * PAGE_SIZE,
            ..LayoutConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn regions_are_page_aligned_disjoint_and_ordered() {
        for nr_cpus in [1, 4, MAX_CPUS] {
            let layout = setup_layout(nr_cpus);
            let mut last_end = PAGE_SIZE; // the null page stays unmapped
            layout.for_each_region(|r| {
                assert_eq!(r.start % PAGE_SIZE, 0, "{r:?}");
                assert_eq!(r.size % PAGE_SIZE, 0, "{r:?}");
                assert!(r.start >= last_end, "{r:?} overlaps the previous region");
                assert!(!(r.start < RUNTIME_START + RUNTIME_SIZE && r.end() > RUNTIME_START));
                assert!(!(r.start < RUNTIME_START && r.end() > PAGE_TABLES_START));
                last_end = r.end();
            });
            assert_eq!(last_end, layout.memory_size());
        }
    }

    #[test]
    fn every_stack_has_a_guard_page_below_it() {
        let layout = setup_layout(4);
        let mut mapped = [false; 4096];
        let first = PERCPU_AREAS_START / PAGE_SIZE;
        layout.for_each_region(|r| {
            for page in r.start / PAGE_SIZE..r.end() / PAGE_SIZE {
                if let Some(i) = page.checked_sub(first).filter(|&i| i < 4096) {
                    mapped[i as usize] = true;
                }
            }
        });
        let is_mapped = |addr: u64| mapped[((addr / PAGE_SIZE) - first) as usize];
        for cpu in 0..4 {
            let stack_bottom = layout.stack_top(cpu) - area::STACK_SIZE;
            assert!(is_mapped(stack_bottom));
            assert!(!is_mapped(stack_bottom - PAGE_SIZE));
            let trap_bottom = layout.trap_stack_top(cpu) - area::TRAP_STACK_SIZE;
            assert!(!is_mapped(trap_bottom - PAGE_SIZE));
            let ist_bottom = layout.kernel_stack_top(cpu) - area::KERNEL_STACK_SIZE;
            assert!(!is_mapped(ist_bottom - PAGE_SIZE));
            let fatal_bottom = layout.fatal_stack_top(cpu) - area::FATAL_STACK_SIZE;
            assert!(!is_mapped(fatal_bottom - PAGE_SIZE));
            // Per-CPU data: guarded on both sides, at CPU 0's copy plus
            // this_cpu_off (Note [Per-CPU data]).
            let data = layout.percpu_data(cpu);
            assert!(is_mapped(data) && is_mapped(data + area::PERCPU_DATA_SIZE - 1));
            assert!(!is_mapped(data - PAGE_SIZE));
            assert!(!is_mapped(data + area::PERCPU_DATA_SIZE));
            assert_eq!(data, layout.percpu_data(0) + layout.this_cpu_off(cpu));
        }
    }

    #[test]
    fn tss_array_fits_below_boot_info() {
        assert!(TSS_START + MAX_CPUS as u64 * TSS_STRIDE <= BOOT_INFO_START);
    }

    #[test]
    fn invalid_configs_are_refused() {
        let bad_cpus = LayoutConfig {
            nr_cpus: 65,
            ..LayoutConfig::default()
        };
        assert_eq!(Layout::new(bad_cpus), Err(LayoutError::CpuCount(65)));
        let bad_code = LayoutConfig {
            code_size: 100,
            ..LayoutConfig::default()
        };
        let err = Layout::new(bad_code).unwrap_err();
        assert_eq!(
            err.to_string(),
            "code size 0x64 must be a non-zero multiple of 0x1000 up to 1 GiB"
        );
    }
}
