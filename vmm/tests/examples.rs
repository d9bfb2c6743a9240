//! Runs every example of `vmm/examples` for real, so that the documented
//! uses of the API stay working: each example is compiled into this test
//! binary as a module, and its `run()` (which checks its own results
//! against the samples' header comments) must succeed. Without KVM the
//! examples must skip politely: checked by running their `main` in a mount
//! namespace where `/dev/kvm` is `/dev/null`.

#[path = "../examples/arena.rs"]
mod arena;
#[path = "../examples/per_cpu.rs"]
mod per_cpu;
#[path = "../examples/ring_buffer.rs"]
mod ring_buffer;
#[path = "../examples/run_program.rs"]
mod run_program;
#[path = "../examples/snapshot_clone.rs"]
mod snapshot_clone;

use std::error::Error;
use std::process::{Command, ExitCode};

/// Whether KVM tests can run here. Without `/dev/kvm` they print a loud
/// skip message and pass, unless `BPFVISOR_REQUIRE_KVM=1` (as in CI),
/// where they fail (as `integration_tests::kvm_available`).
fn kvm_available(test: &str) -> bool {
    if vmm::kvm::is_available() {
        return true;
    }
    let required = std::env::var("BPFVISOR_REQUIRE_KVM").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: /dev/kvm is not usable and BPFVISOR_REQUIRE_KVM=1"
    );
    eprintln!(
        "SKIPPED {test}: /dev/kvm is not usable (set BPFVISOR_REQUIRE_KVM=1 to fail instead)"
    );
    false
}

/// Runs an example's `run`, failing with its error and every cause.
fn check(example: &str, run: fn() -> Result<(), Box<dyn Error>>) {
    if !kvm_available(example) {
        return;
    }
    if let Err(e) = run() {
        let mut message = format!("example {example} failed: {e}");
        let mut source = e.source();
        while let Some(cause) = source {
            message.push_str(&format!("\n  caused by: {cause}"));
            source = cause.source();
        }
        panic!("{message}");
    }
}

#[test]
fn example_run_program() {
    check("run_program", run_program::run);
}

#[test]
fn example_ring_buffer() {
    check("ring_buffer", ring_buffer::run);
}

#[test]
fn example_arena() {
    check("arena", arena::run);
}

#[test]
fn example_per_cpu() {
    check("per_cpu", per_cpu::run);
}

#[test]
fn example_snapshot_clone() {
    check("snapshot_clone", snapshot_clone::run);
}

/// An example's `main`.
type Main = fn() -> ExitCode;

/// Every example's `main`, as `cargo run --example` runs it. Only run by
/// the test below, with `/dev/kvm` hidden.
#[test]
#[ignore = "run by examples_skip_politely_without_kvm with /dev/kvm hidden"]
fn mains_without_kvm() {
    assert!(!vmm::kvm::is_available(), "/dev/kvm should be hidden here");
    let mains: [(&str, Main); 5] = [
        ("run_program", run_program::main),
        ("ring_buffer", ring_buffer::main),
        ("arena", arena::main),
        ("per_cpu", per_cpu::main),
        ("snapshot_clone", snapshot_clone::main),
    ];
    for (name, main) in mains {
        assert_eq!(main(), ExitCode::SUCCESS, "{name} without KVM");
    }
}

#[test]
fn examples_skip_politely_without_kvm() {
    let exe = std::env::current_exe().expect("test binary path");
    let script = r#"mount --bind /dev/null /dev/kvm && exec "$0" --exact mains_without_kvm --ignored --nocapture --test-threads 1"#;
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(exe)
        .output();
    let stdout = output
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let Ok(output) = output.as_ref().map_err(|e| e.to_string()) else {
        return skip_without_namespace();
    };
    if !output.status.success() && !stdout.contains("mains_without_kvm") {
        return skip_without_namespace();
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout
            .matches("Skipped: /dev/kvm is not usable here, and bpfvisor needs KVM.\n")
            .count(),
        5,
        "{stdout}"
    );
}

/// When this machine cannot make a mount namespace (not root, no
/// `unshare`): skips, or fails under `BPFVISOR_REQUIRE_KVM=1`, where CI
/// expects every KVM check to run.
fn skip_without_namespace() {
    let required = std::env::var("BPFVISOR_REQUIRE_KVM").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "cannot hide /dev/kvm in a mount namespace (needs root and unshare)"
    );
    eprintln!("SKIPPED examples_skip_politely_without_kvm: no mount namespace");
}
