//! The guest machine as it is at boot: everything the host writes into guest
//! memory before any vCPU runs, following `shm::layout`.

use crate::arch::gdt::{build_gdt, build_idt, build_tss};
use crate::arch::paging::{PageTables, PagingError};
use crate::memory::{GuestMemory, MemoryError};
use crate::runtime::RuntimeImage;
use shm::layout::{
    BOOT_INFO_START, GDT_START, IDT_START, Layout, PAGE_SIZE, PAGE_TABLES_START, area,
};
use shm::percpu::{BOOT_INFO_MAGIC, BootInfo, PerCpu};
use std::sync::{Arc, Mutex};

/// Why the boot image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// Guest memory could not be written.
    #[error("Failed to write the boot image into guest memory")]
    WriteMemory(#[source] MemoryError),
    /// The page tables could not be built.
    #[error("Failed to build the guest page tables")]
    BuildPageTables(#[source] PagingError),
}

/// Writes the runtime image, descriptor tables, boot info, per-CPU blocks,
/// empty mailboxes and page tables. Leaves the JIT code region alone.
/// Returns the guest-physical address of the page-table root, for CR3.
pub fn write_boot_image(
    memory: &GuestMemory,
    layout: &Layout,
    runtime: &RuntimeImage,
) -> Result<u64, MachineError> {
    let write =
        |addr: u64, bytes: &[u8]| memory.write(addr, bytes).map_err(MachineError::WriteMemory);
    for segment in &runtime.segments {
        write(segment.addr, segment.data)?;
        let bss = segment.mem_size - segment.data.len() as u64;
        memory
            .zero(segment.addr + segment.data.len() as u64, bss as usize)
            .map_err(MachineError::WriteMemory)?;
    }
    write(GDT_START, &build_gdt(layout))?;
    write(IDT_START, &build_idt(runtime))?;
    for cpu in 0..layout.nr_cpus() {
        write(layout.tss(cpu), &build_tss(layout, cpu))?;
    }
    memory
        .write_pod(BOOT_INFO_START, &boot_info(layout))
        .map_err(MachineError::WriteMemory)?;
    for cpu in 0..layout.nr_cpus() {
        memory
            .write_pod(layout.percpu_block(cpu), &percpu_block(layout, cpu))
            .map_err(MachineError::WriteMemory)?;
        memory
            .zero(layout.mailbox(cpu), PAGE_SIZE as usize)
            .map_err(MachineError::WriteMemory)?;
    }
    let tables = cached_page_tables(layout, runtime).map_err(MachineError::BuildPageTables)?;
    write(PAGE_TABLES_START, tables.bytes())?;
    Ok(tables.root())
}

/// The boot info of `layout`, before anything is loaded (the host fills in
/// the rest: `crate::program::BootState`).
pub(crate) fn boot_info(layout: &Layout) -> BootInfo {
    BootInfo {
        magic: BOOT_INFO_MAGIC,
        nr_cpus: layout.nr_cpus() as u64,
        code_start: layout.code_start(),
        code_size: layout.code_size(),
        extable: layout.extable_start(),
        ..BootInfo::default()
    }
}

/// Page tables depend only on the layout and the (one, embedded) runtime,
/// and building them costs tens of microseconds for large regions: every
/// sandbox of a given shape reuses the first one's. A few shapes are kept.
pub(crate) fn cached_page_tables(
    layout: &Layout,
    runtime: &RuntimeImage,
) -> Result<Arc<PageTables>, PagingError> {
    const SHAPES: usize = 8;
    static CACHE: Mutex<Vec<(Layout, usize, Arc<PageTables>)>> = Mutex::new(Vec::new());
    let key = std::ptr::from_ref(runtime) as usize;
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, _, tables)) = cache.iter().find(|(l, r, _)| l == layout && *r == key) {
        return Ok(Arc::clone(tables));
    }
    let tables = Arc::new(build_page_tables(layout, runtime)?);
    if cache.len() == SHAPES {
        cache.remove(0);
    }
    cache.push((*layout, key, Arc::clone(&tables)));
    Ok(tables)
}

/// The per-CPU block of `cpu`.
fn percpu_block(layout: &Layout, cpu: usize) -> PerCpu {
    PerCpu {
        self_addr: layout.percpu_block(cpu),
        this_cpu_off: layout.this_cpu_off(cpu),
        cpu_id: cpu as u64,
        nr_cpus: layout.nr_cpus() as u64,
        mailbox: layout.mailbox(cpu),
        stack_top: layout.stack_top(cpu),
        trace_buf: layout.trace_buffer(cpu),
        trace_size: area::TRACE_SIZE,
        ctx_buf: layout.ctx_buffer(cpu),
        ctx_size: layout.ctx_size(),
        trap_stack_top: layout.trap_stack_top(cpu),
        trap: Default::default(),
        unwind_rsp: 0,
        tail_call_cnt: 0,
        prng_state: 0,
    }
}

/// Maps every region of the layout and every runtime segment.
pub fn build_page_tables(
    layout: &Layout,
    runtime: &RuntimeImage,
) -> Result<PageTables, PagingError> {
    let mut tables = PageTables::new();
    let mut result = Ok(());
    layout.for_each_region(|region| {
        if result.is_ok() {
            result = tables.identity_map(region.start, region.size, region.access, region.user);
        }
    });
    result?;
    // Segments were checked not to share pages unless their access matches;
    // a page shared by two such segments is mapped once.
    let mut mapped_end = 0;
    for segment in &runtime.segments {
        let start = segment.page_start().max(mapped_end);
        let end = segment.page_end();
        if end > start {
            tables.identity_map(start, end - start, segment.access, true)?;
        }
        mapped_end = mapped_end.max(end);
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shm::layout::{Access, LayoutConfig};

    #[test]
    fn page_tables_protect_what_the_design_says() {
        let layout = Layout::new(LayoutConfig {
            nr_cpus: 2,
            ..LayoutConfig::default()
        })
        .unwrap();
        let runtime = RuntimeImage::embedded().unwrap();
        let pt = build_page_tables(&layout, runtime).unwrap();
        let access = |addr| pt.translate(addr).map(|(_, access, user)| (access, user));
        assert_eq!(access(0), None, "null page");
        assert_eq!(access(GDT_START), Some((Access::Read, false)));
        assert_eq!(access(PAGE_TABLES_START), None, "page tables");
        assert_eq!(
            access(runtime.dispatch_entry),
            Some((Access::ReadExec, true))
        );
        for cpu in 0..2 {
            let top = layout.stack_top(cpu);
            assert_eq!(access(top - 8), Some((Access::ReadWrite, true)));
            assert_eq!(
                access(top - area::STACK_SIZE - 8),
                None,
                "guard below stack"
            );
            assert_eq!(
                access(layout.kernel_stack_top(cpu) - 8),
                Some((Access::ReadWrite, false))
            );
            assert_eq!(access(layout.mailbox(cpu)), Some((Access::ReadWrite, true)));
        }
        assert_eq!(access(layout.code_start()), Some((Access::ReadExec, true)));
        assert_eq!(access(layout.extable_start()), Some((Access::Read, true)));
        assert_eq!(access(layout.memory_size()), None);
    }
}
