//! Every way a sandbox start can fail part-way returns an error: none
//! hangs, none leaks. Most boot steps open a file descriptor (the VM,
//! each vCPU), so allowing one more descriptor per attempt makes each of
//! them fail in turn, on the caller's thread and on the boot workers.
//! Alone in its own binary because it lowers this process's descriptor
//! limit.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use integration_tests::{kvm_available, open_fds};
use std::sync::mpsc;
use std::time::Duration;
use vmm::{Sandbox, SandboxConfig};

/// Longer than any boot takes, even on a loaded nested host.
const BOOT_WATCHDOG: Duration = Duration::from_secs(30);

/// The descriptor limit under which this process can open exactly
/// `extra` more descriptors (new ones take the lowest free numbers).
fn limit_allowing(extra: usize) -> libc::rlim_t {
    let open: Vec<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut free = 0;
    (0..)
        .find(|fd| {
            if open.contains(fd) {
                return false;
            }
            free += 1;
            free > extra
        })
        .unwrap()
}

fn set_fd_limit(limit: libc::rlim_t) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
        let new = libc::rlimit {
            rlim_cur: limit,
            rlim_max: old.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &new), 0);
    }
    old
}

/// Starts a sandbox on another thread, failing the test if it never
/// returns.
fn start_with_watchdog(config: SandboxConfig) -> Result<Sandbox, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Sandbox::new(config).map_err(|e| e.to_string()));
    });
    rx.recv_timeout(BOOT_WATCHDOG)
        .expect("a sandbox start that runs out of descriptors hung")
}

#[test]
fn running_out_of_descriptors_at_any_boot_step_is_an_error_not_a_hang() {
    if !kvm_available("running_out_of_descriptors_at_any_boot_step_is_an_error_not_a_hang") {
        return;
    }
    let config = || SandboxConfig {
        cpus: 3,
        ..SandboxConfig::default()
    };
    // Warm up once so that lazily opened process-wide descriptors exist.
    drop(start_with_watchdog(config()).unwrap());
    let fds_before = open_fds();

    let mut failures = Vec::new();
    let mut started = false;
    for extra in 0..64 {
        let old = set_fd_limit(limit_allowing(extra));
        let result = start_with_watchdog(config());
        set_fd_limit(old.rlim_cur);
        match result {
            Ok(sandbox) => {
                drop(sandbox);
                started = true;
                break;
            }
            Err(error) => failures.push(error),
        }
        assert_eq!(open_fds(), fds_before, "a failed start leaked descriptors");
    }
    assert!(started, "no start succeeded with 64 spare descriptors");
    assert!(
        failures.len() >= 4,
        "the VM and each of the 3 vCPUs failed in turn: {failures:?}"
    );
    assert!(
        failures.iter().any(|e| e.contains("VM")),
        "creating the VM failed at one step: {failures:?}"
    );
    assert_eq!(open_fds(), fds_before);
}
