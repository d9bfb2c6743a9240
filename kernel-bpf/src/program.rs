//! A program in the host kernel: loaded with `BPF_PROG_LOAD` (the
//! verifier's log kept when it refuses), run with `BPF_PROG_TEST_RUN`.

use crate::error::{KernelError, errno_name};
use crate::sys;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// `BPF_F_SLEEPABLE`: libbpf loads `SEC("syscall")` programs sleepable.
const F_SLEEPABLE: u32 = 1 << 4;
/// Bytes of verifier log kept when a load fails: the kernel keeps the
/// log's end when it does not fit, which is where the reason is.
const LOG_SIZE: usize = 1 << 20;
/// `ETH_HLEN`: the least packet a packet program's test run takes.
const ETH_HLEN: usize = 14;
/// The packet a packet program runs on when given less than `ETH_HLEN`
/// bytes: zeros, a minimal Ethernet frame.
const MIN_PACKET_SIZE: usize = 64;
/// Room for a packet program to grow its packet in a test run.
const PACKET_HEADROOM: usize = 4096;

/// The program types this backend loads, as `enum bpf_prog_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgramType {
    /// `BPF_PROG_TYPE_SOCKET_FILTER` (`SEC("socket")`).
    SocketFilter,
    /// `BPF_PROG_TYPE_SCHED_CLS` (`SEC("tc")`, `SEC("classifier")`).
    SchedCls,
    /// `BPF_PROG_TYPE_XDP` (`SEC("xdp")`).
    Xdp,
    /// `BPF_PROG_TYPE_SYSCALL` (`SEC("syscall")`), loaded sleepable as
    /// libbpf does. The kernel runs it once per `BPF_PROG_TEST_RUN`,
    /// ignoring `repeat`, and does not time it.
    Syscall,
}

impl ProgramType {
    /// The kernel's number.
    pub const fn number(self) -> u32 {
        match self {
            ProgramType::SocketFilter => 1,
            ProgramType::SchedCls => 3,
            ProgramType::Xdp => 6,
            ProgramType::Syscall => 31,
        }
    }

    /// The type libbpf gives a program of section `section` (`xdp`,
    /// `xdp.frags`, `socket/foo`...), among those this backend loads.
    pub fn from_section(section: &str) -> Option<ProgramType> {
        let base = section.split(['/', '.']).next().unwrap_or_default();
        match base {
            "syscall" => Some(ProgramType::Syscall),
            "xdp" => Some(ProgramType::Xdp),
            "socket" => Some(ProgramType::SocketFilter),
            "tc" | "classifier" => Some(ProgramType::SchedCls),
            _ => None,
        }
    }

    /// Whether its test run takes a packet (`data_in`) rather than a
    /// context.
    pub const fn takes_packet(self) -> bool {
        !matches!(self, ProgramType::Syscall)
    }
}

/// What one [`KernelProgram::test_run`] gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRunOutput {
    /// The program's return value (the kernel reports 32 bits).
    pub retval: u32,
    /// Time per run: the kernel's own measure for packet programs; for
    /// syscall programs, which the kernel does not time, the host's
    /// wall-clock time of the `BPF_PROG_TEST_RUN` calls (syscall
    /// included) divided by their number.
    pub duration: Duration,
    /// Whether `duration` is the kernel's measure.
    pub timed_by_kernel: bool,
    /// Runs made.
    pub runs: u32,
    /// The context after the run (syscall programs), or the packet after
    /// it (packet programs).
    pub output: Vec<u8>,
}

/// A program loaded into the host kernel; unloaded when dropped (unless
/// something else holds it).
#[derive(Debug)]
pub struct KernelProgram {
    name: String,
    section: String,
    prog_type: ProgramType,
    fd: OwnedFd,
}

impl KernelProgram {
    /// Loads `insns` (linked, fds and BTF ids in place) as `prog_type`,
    /// with `btf` if given.
    pub(crate) fn load(
        name: &str,
        section: &str,
        prog_type: ProgramType,
        insns: &[u8],
        license: &str,
        btf: Option<sys::ProgBtf<'_>>,
    ) -> Result<KernelProgram, KernelError> {
        let license = CString::new(license.replace('\0', "")).unwrap_or_default();
        let attr = sys::ProgLoadAttr {
            prog_type: prog_type.number(),
            prog_flags: if prog_type == ProgramType::Syscall {
                F_SLEEPABLE
            } else {
                0
            },
            prog_name: sys::obj_name(name),
            ..sys::ProgLoadAttr::default()
        };
        let load = |log: Option<&mut [u8]>| {
            sys::prog_load(
                &attr,
                sys::ProgLoad {
                    insns,
                    license: &license,
                    log,
                    btf,
                },
            )
        };
        let fd = match load(None) {
            Ok(fd) => fd,
            Err(_) => {
                // Again with the verifier's log, to say why. A refusal
                // with a log is the verifier's (which uses EPERM and
                // EACCES too); without one, bpf() itself refused.
                let mut log = vec![0u8; LOG_SIZE];
                match load(Some(&mut log)) {
                    Ok(fd) => fd,
                    Err(source) => {
                        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                        let log = String::from_utf8_lossy(&log[..end]).into_owned();
                        let refused =
                            |source: std::io::Error, log: String| KernelError::LoadProgram {
                                program: name.to_owned(),
                                reason: reason(&log)
                                    .map_or_else(|| errno_name(&source), str::to_owned),
                                log,
                                source,
                            };
                        return Err(if log.trim().is_empty() {
                            KernelError::bpf(source, |e| refused(e, String::new()))
                        } else {
                            refused(source, log)
                        });
                    }
                }
            }
        };
        Ok(KernelProgram {
            name: name.to_owned(),
            section: section.to_owned(),
            prog_type,
            fd,
        })
    }

    /// Function name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Section name.
    pub fn section(&self) -> &str {
        &self.section
    }

    /// The type it was loaded as.
    pub fn program_type(&self) -> ProgramType {
        self.prog_type
    }

    /// The program's fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Runs the program `repeat` times (at least once) with
    /// `BPF_PROG_TEST_RUN`. A syscall program gets `input` as its context
    /// (each run sees the context the previous one left); a packet
    /// program gets it as its packet, 64 zero bytes when it is shorter
    /// than an Ethernet header.
    pub fn test_run(&self, input: &[u8], repeat: u32) -> Result<TestRunOutput, KernelError> {
        let repeat = repeat.max(1);
        let failed = |e| {
            KernelError::bpf(e, |source| KernelError::TestRun {
                program: self.name.clone(),
                source,
            })
        };
        if !self.prog_type.takes_packet() {
            // The kernel's EINVALs of a syscall program's run with nothing
            // but a context: longer than 64 KiB, or shorter than the
            // verifier saw the program read (max_ctx_offset, which the
            // kernel does not report).
            let failed = |e: std::io::Error| match e.raw_os_error() {
                Some(libc::EINVAL) if input.len() <= usize::from(u16::MAX) => {
                    KernelError::ContextTooShort {
                        program: self.name.clone(),
                        given: input.len(),
                        source: e,
                    }
                }
                _ => failed(e),
            };
            let mut ctx = input.to_vec();
            let start = Instant::now();
            let mut result = None;
            for _ in 0..repeat {
                let run = sys::TestRun {
                    ctx_in: (!ctx.is_empty()).then_some(ctx.as_mut_slice()),
                    ..sys::TestRun::default()
                };
                result = Some(sys::prog_test_run(self.fd(), run).map_err(failed)?);
            }
            let elapsed = start.elapsed();
            return Ok(TestRunOutput {
                retval: result.map_or(0, |r| r.retval),
                duration: elapsed / repeat,
                timed_by_kernel: false,
                runs: repeat,
                output: ctx,
            });
        }
        let packet = if input.len() < ETH_HLEN {
            vec![0; MIN_PACKET_SIZE]
        } else {
            input.to_vec()
        };
        let mut out = vec![0; packet.len() + PACKET_HEADROOM];
        let run = sys::TestRun {
            data_in: &packet,
            data_out: Some(&mut out),
            repeat,
            ..sys::TestRun::default()
        };
        let result = sys::prog_test_run(self.fd(), run).map_err(failed)?;
        out.truncate(result.data_size_out as usize);
        Ok(TestRunOutput {
            retval: result.retval,
            duration: Duration::from_nanos(u64::from(result.duration_ns)),
            timed_by_kernel: true,
            runs: repeat,
            output: out,
        })
    }
}

/// The line of a verifier log that says why it refused: the last one that
/// is not the closing statistics, nor the states an "infinite loop
/// detected" shows after itself.
pub(crate) fn reason(log: &str) -> Option<&str> {
    log.lines().rev().map(str::trim).find(|line| {
        !line.is_empty()
            && !line.starts_with("processed ")
            && !line.starts_with("cur state:")
            && !line.starts_with("old state:")
            && !line.starts_with("verification time")
            && !line.starts_with("stack depth")
            && !line.starts_with("-- END PROG LOAD LOG --")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_name_program_types_as_libbpf_does() {
        assert_eq!(
            ProgramType::from_section("syscall"),
            Some(ProgramType::Syscall)
        );
        assert_eq!(ProgramType::from_section("xdp"), Some(ProgramType::Xdp));
        assert_eq!(
            ProgramType::from_section("xdp.frags"),
            Some(ProgramType::Xdp)
        );
        assert_eq!(
            ProgramType::from_section("socket/filter"),
            Some(ProgramType::SocketFilter)
        );
        assert_eq!(ProgramType::from_section("tc"), Some(ProgramType::SchedCls));
        assert_eq!(ProgramType::from_section("kprobe/do_sys_open"), None);
        assert_eq!(ProgramType::from_section("xdpx"), None);
    }

    #[test]
    fn the_reason_is_the_last_line_before_the_statistics() {
        let log = "0: R1=ctx() R10=fp0\n0: (b7) r0 = 0\n1: (61) r2 = *(u32 *)(r3 +0)\nR3 !read_ok\nprocessed 2 insns (limit 1000000) max_states_per_insn 0\n\n";
        assert_eq!(reason(log), Some("R3 !read_ok"));
        assert_eq!(reason(""), None);
        let log = "37: (a6) if w1 < 0x6 goto pc-14\ninfinite loop detected at insn 34\ncur state: R0=scalar()\nold state: R0=scalar()\nprocessed 262 insns\n";
        assert_eq!(reason(log), Some("infinite loop detected at insn 34"));
    }
}
