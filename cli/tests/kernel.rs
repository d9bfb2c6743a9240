//! `bpfvisor run --engine kernel`: the samples loaded into the host
//! kernel through the real binary, their results checked against the
//! samples' header comments; and the message a user without bpf() gets.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;
use common::{bpfvisor, sample};

use integration_tests::bpf_available;
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

fn output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn hello_returns_42_in_the_kernel() {
    if !bpf_available("hello_returns_42_in_the_kernel") {
        return;
    }
    let out = bpfvisor(&["run", "--engine", "kernel", &sample("hello")]);
    assert_eq!(out.status.code(), Some(0), "{}", output(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("hello returned 42 (0x2a)\nduration: "),
        "{stdout}"
    );
    assert!(stdout.contains("(1 run, timed by the host)"), "{stdout}");
}

#[test]
fn map_counters_count_in_the_kernel() {
    if !bpf_available("map_counters_count_in_the_kernel") {
        return;
    }
    // maps: count increments counters[arg & 15] and returns it; three
    // runs in one load return 3.
    let object = sample("maps");
    let args = ["run", "--engine", "kernel", &object, "--data", "05000000"];
    let out = bpfvisor(&[&args[..], &["--repeat", "3", "--json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", output(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["engine"], "kernel");
    assert_eq!(json["program"], "count");
    assert_eq!(json["retval"], 3);
    assert_eq!(json["runs"], 3);
    assert_eq!(json["data_out"], "05000000");
    // Each run of the binary is a fresh load: 1 again.
    let out = bpfvisor(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("count returned 1 (0x1)\n"),
        "{}",
        output(&out)
    );
    // --set reaches the kernel's .rodata: globals returns x * scale + 300.
    let out = bpfvisor(&[
        "run",
        "--engine",
        "kernel",
        &sample("globals"),
        "--data",
        "02000000",
        "--set",
        "scale=5",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("globals returned 310 (0x136)\n"),
        "{}",
        output(&out)
    );
}

#[test]
fn kernel_refusals_and_vm_only_options_are_errors() {
    if !bpf_available("kernel_refusals_and_vm_only_options_are_errors") {
        return;
    }
    let out = bpfvisor(&["run", "--engine", "kernel", &sample("null_read")]);
    assert_eq!(out.status.code(), Some(3), "{}", output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("The kernel refused program `null_read`: R1 invalid mem access"),
        "{stderr}"
    );
    let out = bpfvisor(&["run", "--engine", "kernel", &sample("hello"), "--all-cpus"]);
    assert_eq!(out.status.code(), Some(1), "{}", output(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: --engine kernel runs one program once (or --repeat times): --all-cpus is for --engine vm\n"
    );
}

#[test]
fn without_privilege_the_kernel_engine_says_it_needs_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIPPED without_privilege_the_kernel_engine_says_it_needs_root: needs root to drop to another user"
        );
        return;
    }
    // As `nobody`, with unprivileged bpf() disabled (or not: CAP_BPF is
    // what it lacks for the program types we load).
    let out = Command::new(env!("CARGO_BIN_EXE_bpfvisor"))
        .args(["run", "--engine", "kernel", &sample("hello")])
        .uid(65534)
        .gid(65534)
        .output();
    // A checkout under a directory `nobody` cannot enter.
    let unreachable = |why: &str| {
        eprintln!(
            "SKIPPED without_privilege_the_kernel_engine_says_it_needs_root: nobody cannot {why}"
        );
    };
    let Ok(out) = out else {
        return unreachable("run the binary");
    };
    if String::from_utf8_lossy(&out.stderr).contains("Cannot read") {
        return unreachable("read the sample");
    }
    assert_eq!(out.status.code(), Some(1), "{}", output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("The kernel engine needs root (CAP_BPF + CAP_PERFMON): bpf() returned EPERM"),
        "{stderr}"
    );
}
