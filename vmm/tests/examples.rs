//! Runs every example of `vmm/examples` for real, so that the documented
//! uses of the API stay working: each example is compiled into this test
//! binary as a module, and its `run()` (which checks its own results
//! against the samples' header comments) must succeed when its `main`
//! runs. Without KVM the examples must skip politely: checked by running
//! the same tests again in a mount namespace where `/dev/kvm` is
//! `/dev/null`.

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

use std::process::{Command, ExitCode};

/// Set by `examples_skip_politely_without_kvm` for the run of this binary
/// it makes with `/dev/kvm` hidden.
const KVM_HIDDEN: &str = "BPFVISOR_EXAMPLES_KVM_HIDDEN";

/// Runs an example's `main`, as `cargo run --example` does: it must exit
/// 0 — with KVM, having checked its results (a failure prints its error
/// and every cause); with `/dev/kvm` hidden, having said it skipped.
/// Without KVM otherwise, the test skips loudly, or fails under
/// `BPFVISOR_REQUIRE_KVM=1` (as `integration_tests::kvm_available`).
fn check(example: &str, main: fn() -> ExitCode) {
    if std::env::var_os(KVM_HIDDEN).is_some() {
        assert!(!vmm::kvm::is_available(), "/dev/kvm should be hidden here");
    } else if !vmm::kvm::is_available() {
        let required = std::env::var("BPFVISOR_REQUIRE_KVM").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{example}: /dev/kvm is not usable and BPFVISOR_REQUIRE_KVM=1"
        );
        eprintln!(
            "SKIPPED example {example}: /dev/kvm is not usable (set BPFVISOR_REQUIRE_KVM=1 to fail instead)"
        );
        return;
    }
    assert_eq!(
        main(),
        ExitCode::SUCCESS,
        "example {example} failed (its error is above)"
    );
}

#[test]
fn example_run_program() {
    check("run_program", run_program::main);
}

#[test]
fn example_ring_buffer() {
    check("ring_buffer", ring_buffer::main);
}

#[test]
fn example_arena() {
    check("arena", arena::main);
}

#[test]
fn example_per_cpu() {
    check("per_cpu", per_cpu::main);
}

#[test]
fn example_snapshot_clone() {
    check("snapshot_clone", snapshot_clone::main);
}

#[test]
fn examples_skip_politely_without_kvm() {
    let exe = std::env::current_exe().expect("test binary path");
    let script =
        r#"mount --bind /dev/null /dev/kvm && exec "$0" example_ --nocapture --test-threads 1"#;
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(exe)
        .env(KVM_HIDDEN, "1")
        .output();
    let stdout = output
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let Ok(output) = output.as_ref().map_err(|e| e.to_string()) else {
        return skip_without_namespace();
    };
    if !output.status.success() && !stdout.contains("example_") {
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
