//! The guest runtime image: its segments and the entry points the host needs.
//!
//! `build.rs` builds `images/guest-rt` and embeds the ELF; this module parses
//! it once per process and checks it fits the address map.

use object::read::elf::ElfFile64;
use object::{Object, ObjectSegment, ObjectSymbol, SegmentFlags};
use shm::layout::{Access, EXCEPTION_STUB_STRIDE, PAGE_SIZE, RUNTIME_SIZE, RUNTIME_START};
use std::collections::BTreeMap;
use std::sync::OnceLock;

static RUNTIME_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/guest-rt.elf"));

/// Number of CPU exception vectors the runtime has stubs for.
pub const EXCEPTION_VECTORS: u64 = 32;

/// Why the runtime image is unusable. Only a broken build can cause these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The embedded file is not a 64-bit little-endian ELF.
    #[error("Guest runtime image is not a valid ELF file: {0}")]
    ParseElf(String),
    /// A symbol the host needs is missing.
    #[error("Guest runtime image has no symbol `{0}`")]
    MissingSymbol(&'static str),
    /// A segment lies outside the runtime's window of the address map.
    #[error(
        "Guest runtime segment at {addr:#x} (+{size:#x}) is outside {RUNTIME_START:#x}..+{RUNTIME_SIZE:#x}"
    )]
    SegmentOutOfWindow {
        /// Segment virtual address.
        addr: u64,
        /// Segment memory size.
        size: u64,
    },
    /// A segment is writable and executable.
    #[error("Guest runtime segment at {0:#x} is writable and executable")]
    WritableCode(u64),
    /// Two segments with different permissions share a page.
    #[error("Guest runtime segments with different permissions share the page at {0:#x}")]
    SharedPage(u64),
    /// The exception stubs are not laid out as the IDT builder assumes.
    #[error("Guest runtime exception stubs span {0:#x} bytes, expected {expected:#x}", expected = EXCEPTION_VECTORS * EXCEPTION_STUB_STRIDE)]
    StubLayout(u64),
}

/// A loadable segment of the runtime.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Guest virtual (= physical) address of its first byte.
    pub addr: u64,
    /// Bytes present in the file; the rest up to `mem_size` is zero.
    pub data: &'static [u8],
    /// Bytes it occupies in memory.
    pub mem_size: u64,
    /// How the guest may access its pages.
    pub access: Access,
}

impl Segment {
    /// First page.
    pub fn page_start(&self) -> u64 {
        self.addr & !(PAGE_SIZE - 1)
    }

    /// One past the last page.
    pub fn page_end(&self) -> u64 {
        (self.addr + self.mem_size).next_multiple_of(PAGE_SIZE)
    }
}

/// The parsed runtime image.
#[derive(Debug, Clone)]
pub struct RuntimeImage {
    /// Loadable segments in address order.
    pub segments: Vec<Segment>,
    /// Where every vCPU starts (`bpfvisor_dispatch_entry`).
    pub dispatch_entry: u64,
    /// Where the host sends a stopped vCPU (`bpfvisor_abort_entry`).
    pub abort_entry: u64,
    /// The first exception vector stub (`bpfvisor_exception_stubs`).
    pub exception_stubs: u64,
    /// Every global symbol in the runtime's text, by name: helpers are found
    /// here by their kernel names (`bpf_trace_printk`).
    code_symbols: BTreeMap<String, u64>,
}

impl RuntimeImage {
    /// The embedded runtime, parsed on first use.
    pub fn embedded() -> Result<&'static RuntimeImage, RuntimeError> {
        static IMAGE: OnceLock<Result<RuntimeImage, RuntimeError>> = OnceLock::new();
        IMAGE
            .get_or_init(|| RuntimeImage::parse(RUNTIME_ELF))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Parses and checks a runtime ELF image.
    pub fn parse(bytes: &'static [u8]) -> Result<RuntimeImage, RuntimeError> {
        let elf = ElfFile64::<object::Endianness>::parse(bytes)
            .map_err(|e| RuntimeError::ParseElf(e.to_string()))?;
        let symbol = |name: &'static str| {
            elf.symbols()
                .find(|s| s.name() == Ok(name))
                .map(|s| s.address())
                .ok_or(RuntimeError::MissingSymbol(name))
        };
        let mut segments = Vec::new();
        for seg in elf.segments() {
            let SegmentFlags::Elf { p_flags, .. } = seg.flags() else {
                continue;
            };
            let data = seg
                .data()
                .map_err(|e| RuntimeError::ParseElf(e.to_string()))?;
            let (addr, mem_size) = (seg.address(), seg.size());
            let in_window = addr >= RUNTIME_START
                && addr
                    .checked_add(mem_size)
                    .is_some_and(|end| end <= RUNTIME_START + RUNTIME_SIZE)
                && data.len() as u64 <= mem_size;
            if !in_window {
                return Err(RuntimeError::SegmentOutOfWindow {
                    addr,
                    size: mem_size,
                });
            }
            let access = segment_access(p_flags.0).ok_or(RuntimeError::WritableCode(addr))?;
            if mem_size > 0 {
                segments.push(Segment {
                    addr,
                    data,
                    mem_size,
                    access,
                });
            }
        }
        segments.sort_by_key(|s| s.addr);
        for pair in segments.windows(2) {
            if pair[0].page_end() > pair[1].page_start() && pair[0].access != pair[1].access {
                return Err(RuntimeError::SharedPage(pair[1].page_start()));
            }
        }
        let exception_stubs = symbol("bpfvisor_exception_stubs")?;
        let stubs_end = symbol("bpfvisor_exception_stubs_end")?;
        let span = stubs_end.wrapping_sub(exception_stubs);
        if span != EXCEPTION_VECTORS * EXCEPTION_STUB_STRIDE {
            return Err(RuntimeError::StubLayout(span));
        }
        let text = |addr: u64| {
            segments.iter().any(|s| {
                s.access == Access::ReadExec && addr >= s.addr && addr < s.addr + s.mem_size
            })
        };
        let code_symbols = elf
            .symbols()
            .filter(|s| s.is_global() && text(s.address()))
            .filter_map(|s| Some((s.name().ok()?.to_owned(), s.address())))
            .collect();
        Ok(RuntimeImage {
            segments,
            dispatch_entry: symbol("bpfvisor_dispatch_entry")?,
            abort_entry: symbol("bpfvisor_abort_entry")?,
            exception_stubs,
            code_symbols,
        })
    }

    /// Address of the global code symbol `name` (a helper, an entry point).
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.code_symbols.get(name).copied()
    }

    /// Address of the stub for exception `vector`.
    pub fn exception_stub(&self, vector: u64) -> u64 {
        self.exception_stubs + vector * EXCEPTION_STUB_STRIDE
    }
}

/// Maps ELF `p_flags` to a guest access, or `None` for writable code.
fn segment_access(p_flags: u32) -> Option<Access> {
    const PF_X: u32 = 1;
    const PF_W: u32 = 2;
    match (p_flags & PF_W != 0, p_flags & PF_X != 0) {
        (true, true) => None,
        (true, false) => Some(Access::ReadWrite),
        (false, true) => Some(Access::ReadExec),
        (false, false) => Some(Access::Read),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_uses_no_instruction_that_depends_on_guest_cpuid() {
        // vCPUs get no CPUID (Note [Guest CPUID] in crate::vcpu).
        let image = RuntimeImage::embedded().unwrap();
        let mut decoded = 0;
        for text in image
            .segments
            .iter()
            .filter(|s| s.access == Access::ReadExec)
        {
            let found = guest_jit::jit::beyond_baseline(text.data, text.addr);
            assert!(found.is_empty(), "{}", found.join("\n"));
            decoded += text.data.len();
        }
        assert!(decoded > 4096, "only {decoded} bytes of runtime code");
    }

    #[test]
    fn embedded_runtime_parses_with_code_and_entry_points() {
        let image = RuntimeImage::embedded().unwrap();
        let text = image
            .segments
            .iter()
            .find(|s| s.access == Access::ReadExec)
            .unwrap();
        for addr in [
            image.dispatch_entry,
            image.abort_entry,
            image.exception_stub(31),
            image.symbol("bpfvisor_conformance_unwind").unwrap(),
        ] {
            assert!(
                addr >= text.addr && addr < text.addr + text.mem_size,
                "{addr:#x}"
            );
        }
    }

    #[test]
    fn garbage_is_refused() {
        static GARBAGE: [u8; 16] = [0x7f; 16];
        assert!(matches!(
            RuntimeImage::parse(&GARBAGE),
            Err(RuntimeError::ParseElf(_))
        ));
    }

    #[test]
    fn writable_code_is_refused() {
        assert_eq!(segment_access(0b111), None);
        assert_eq!(segment_access(0b101), Some(Access::ReadExec));
        assert_eq!(segment_access(0b110), Some(Access::ReadWrite));
    }
}
