//! Without `/dev/kvm`, KVM tests skip loudly, or fail when
//! `BPFVISOR_REQUIRE_KVM=1`. Checked by re-running this test binary in a
//! private mount namespace where `/dev/kvm` is `/dev/null`.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use integration_tests::kvm_available;
use std::process::{Command, Output};
use vmm::{Sandbox, SandboxConfig};

/// A KVM test like any other; the test below runs it with KVM hidden.
#[test]
fn kvm_probe() {
    if !kvm_available("kvm_probe") {
        return;
    }
    Sandbox::new(SandboxConfig::default()).expect("sandbox");
}

/// Runs `kvm_probe` in this binary with `/dev/kvm` hidden, or `None` when
/// this machine cannot make a mount namespace (not root, no `unshare`).
fn run_probe_without_kvm(require_kvm: bool) -> Option<Output> {
    let exe = std::env::current_exe().expect("test binary path");
    let script = r#"mount --bind /dev/null /dev/kvm && exec "$0" --exact kvm_probe --nocapture --test-threads 1"#;
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(exe);
    command.env_remove("BPFVISOR_REQUIRE_KVM");
    if require_kvm {
        command.env("BPFVISOR_REQUIRE_KVM", "1");
    }
    let output = command.output().ok()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let namespace_failed = !output.status.success() && !stderr.contains("kvm_probe");
    (!namespace_failed).then_some(output)
}

#[test]
fn kvm_tests_skip_without_kvm_and_fail_when_kvm_is_required() {
    let required_here = std::env::var("BPFVISOR_REQUIRE_KVM").is_ok_and(|v| v == "1");
    let Some(skipped) = run_probe_without_kvm(false) else {
        assert!(
            !required_here,
            "cannot hide /dev/kvm in a mount namespace (needs root and unshare)"
        );
        eprintln!(
            "SKIPPED kvm_tests_skip_without_kvm_and_fail_when_kvm_is_required: no mount namespace"
        );
        return;
    };
    let stderr = String::from_utf8_lossy(&skipped.stderr);
    assert!(skipped.status.success(), "{stderr}");
    assert!(
        stderr.contains("SKIPPED kvm_probe: /dev/kvm is not usable"),
        "{stderr}"
    );

    let failed = run_probe_without_kvm(true).expect("namespace worked a moment ago");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{stderr}");
    assert!(
        stderr.contains("kvm_probe: /dev/kvm is not usable and BPFVISOR_REQUIRE_KVM=1"),
        "{stderr}"
    );
}
