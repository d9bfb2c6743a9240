//! `bpfvisor check` and argument handling, through the real binary.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;
use common::bpfvisor;

use integration_tests::kvm_available;

#[test]
fn check_boots_a_sandbox_and_pings_every_vcpu() {
    if !kvm_available("check_boots_a_sandbox_and_pings_every_vcpu") {
        return;
    }
    let out = bpfvisor(&["check", "--cpus", "3"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("sandbox with 3 vCPU(s) created in "),
        "{stdout}"
    );
    for cpu in 0..3 {
        assert!(
            stdout.contains(&format!("vCPU {cpu}: answered in ")),
            "{stdout}"
        );
    }
    assert!(stdout.ends_with("ok\n"), "{stdout}");
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &["check", "--cpus", "0"][..],
        &["check", "--cpus", "65"],
        &["check", "--cpus", "x"],
        &["frobnicate"],
        &[],
    ] {
        let out = bpfvisor(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("error:") || stderr.contains("Usage: bpfvisor"),
            "{args:?}: {stderr}"
        );
    }
}
