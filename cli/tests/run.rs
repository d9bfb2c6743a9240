//! `bpfvisor run`, `disasm` and `conformance` through the real binary, on
//! the committed sample objects.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;
use common::bpfvisor;

use integration_tests::kvm_available;
use serde_json::Value;
use std::process::{Command, Output};

const SUITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance");

fn sample(name: &str) -> String {
    format!("{}/{name}", common::PROGS)
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn hello_prints_its_trace_line_and_return_value() {
    if !kvm_available("hello_prints_its_trace_line_and_return_value") {
        return;
    }
    let out = bpfvisor(&["run", &sample("hello.bpf.o")]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("trace: Hello from bpfvisor, answer=42\n"),
        "{stdout}"
    );
    assert!(stdout.contains("hello returned 42 (0x2a)\n"), "{stdout}");
}

#[test]
fn json_output_has_the_documented_fields() {
    if !kvm_available("json_output_has_the_documented_fields") {
        return;
    }
    let out = bpfvisor(&[
        "run",
        &sample("hello.bpf.o"),
        "--json",
        "--repeat",
        "10",
        "--data",
        "01 02 03",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["program"], "hello");
    assert_eq!(json["section"], "syscall");
    assert_eq!(json["outcome"], "returned");
    assert_eq!(json["retval"], 42);
    assert_eq!(json["runs"], 10);
    assert!(json["duration_ns"].as_u64().is_some());
    assert_eq!(json["data_out"], "010203");
    let trace = json["trace"].as_array().unwrap();
    assert_eq!(trace.len(), 10);
    assert!(trace.iter().all(|l| l == "Hello from bpfvisor, answer=42"));
    assert_eq!(json["trace_dropped"], 0);
    assert_eq!(json["trap"], Value::Null);
}

#[test]
fn the_full_64_bit_return_value_and_data_come_back() {
    if !kvm_available("the_full_64_bit_return_value_and_data_come_back") {
        return;
    }
    // struct pair { u64 a = 3; u64 b = 4; }: 3*3 + 4*4.
    let pair = "0300000000000000 0400000000000000";
    let out = bpfvisor(&[
        "run",
        &sample("calls.bpf.o"),
        "--prog",
        "pythagoras",
        "--data",
        pair,
        "--json",
    ]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["retval"], 25, "{json}");
    // gcd(12, 18) = 6, through a global subprogram.
    let pair = "0c00000000000000 1200000000000000";
    let out = bpfvisor(&[
        "run",
        &sample("calls.bpf.o"),
        "--prog",
        "common_divisor",
        "--data",
        pair,
        "--json",
    ]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["retval"], 6, "{json}");
    // The sieve writes its count into the data: 6542 primes below 65536.
    let args = "00000100 00000000";
    let out = bpfvisor(&[
        "run",
        &sample("compute.bpf.o"),
        "--prog",
        "sieve",
        "--data",
        args,
        "--json",
    ]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["retval"], 6542, "{json}");
    assert_eq!(json["data_out"], "000001008e190000", "{json}");
}

#[test]
fn a_null_read_reports_a_trap_with_file_and_line() {
    if !kvm_available("a_null_read_reports_a_trap_with_file_and_line") {
        return;
    }
    let out = bpfvisor(&["run", &sample("null_read.bpf.o")]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    assert!(
        stderr.contains("null_read trapped: Page fault reading 0x0 (not mapped)"),
        "{stderr}"
    );
    assert!(stderr.contains("--> null_read.bpf.c:10"), "{stderr}");
    assert!(stderr.contains("| return *p; /* NULL read"), "{stderr}");

    let out = bpfvisor(&["run", &sample("null_read.bpf.o"), "--json"]);
    assert_eq!(out.status.code(), Some(4));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["outcome"], "trapped");
    assert_eq!(json["retval"], Value::Null);
    assert_eq!(json["trap"]["kind"], "page fault");
    assert_eq!(json["trap"]["fault_addr"], "0x0");
    assert_eq!(json["trap"]["site"]["file"], "null_read.bpf.c");
    assert_eq!(json["trap"]["site"]["line"], 10);
    assert_eq!(json["trap"]["site"]["function"], "null_read");
}

#[test]
fn a_program_that_never_returns_is_stopped_at_its_deadline() {
    if !kvm_available("a_program_that_never_returns_is_stopped_at_its_deadline") {
        return;
    }
    let start = std::time::Instant::now();
    let out = bpfvisor(&["run", &sample("spin.bpf.o"), "--timeout", "200ms", "--json"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out).1);
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["outcome"], "deadline_exceeded");
}

#[test]
fn bad_input_gets_a_clear_error_and_its_own_exit_code() {
    // Usage errors (clap): exit 2.
    for args in [
        &["run"][..],
        &["run", "x.o", "--repeat", "0"],
        &["run", "x.o", "--timeout", "soon"],
        &["run", "x.o", "--cpu", "64"],
        &["run", "x.o", "--data", "00", "--data-file", "f"],
        &["conformance", "dir", "--engine", "qemu"],
    ] {
        let out = bpfvisor(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out).1);
    }
    // Host-side problems: exit 1.
    let out = bpfvisor(&["run", "/nonexistent.o"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .starts_with("error: Cannot read /nonexistent.o: "),
        "{}",
        text(&out).1
    );
    let out = bpfvisor(&["run", &sample("hello.bpf.o"), "--data", "0g"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .starts_with("error: --data is not a hex string"),
        "{}",
        text(&out).1
    );
    // Objects that are not BPF, or programs that do not exist: exit 3.
    let out = bpfvisor(&["run", &sample("hello.bpf.c")]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out).1);
    assert!(
        text(&out).1.starts_with("error: Cannot load "),
        "{}",
        text(&out).1
    );
    let out = bpfvisor(&["run", &sample("calls.bpf.o")]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out).1);
    let stderr = text(&out).1;
    for name in ["pythagoras", "common_divisor", "both"] {
        assert!(stderr.contains(name), "{stderr}");
    }
}

#[test]
fn disasm_shows_source_lines_and_jit_code() {
    let out = bpfvisor(&["disasm", &sample("hello.bpf.o")]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.starts_with("program hello (section syscall), "),
        "{stdout}"
    );
    assert!(stdout.contains("; hello.bpf.c:"), "{stdout}");
    assert!(stdout.contains("call 6"), "{stdout}");
    assert!(stdout.contains("exit"), "{stdout}");

    let out = bpfvisor(&["disasm", &sample("calls.bpf.o"), "--prog", "both", "--jit"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("entry 0x"), "{stdout}");
    let words = stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("; 0: ldxdw %r6, [%r1+8]"), "{stdout}");
    assert!(words.contains("push rbp"), "{stdout}");
    assert!(words.contains("; 4: call local +6"), "{stdout}");
}

#[test]
fn conformance_runs_the_suite_in_both_engines() {
    let out = bpfvisor(&[
        "conformance",
        &format!("{SUITE}/tests"),
        "--engine",
        "interp",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.ends_with("313 passed, 0 failed\n"), "{stdout}");

    let out = bpfvisor(&[
        "conformance",
        &format!("{SUITE}/negative"),
        "--engine",
        "interp",
    ]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(6), "{stdout}");
    // Files whose `-- error` the engine reproduces pass; the rest expect a
    // result from a program the assembler rejects, and are reported.
    assert!(stdout.ends_with("48 passed, 12 failed\n"), "{stdout}");
    assert!(
        stdout.contains("FAIL invalid_label.data: Failed, expected to return 0x11: Assembling the program failed: Invalid label `NOT_A_LABEL` on line 1\n"),
        "{stdout}"
    );

    if !kvm_available("conformance_runs_the_suite_in_both_engines") {
        return;
    }
    let out = bpfvisor(&["conformance", &format!("{SUITE}/tests")]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.ends_with("313 passed, 0 failed\n"), "{stdout}");
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_bpfvisor"))
        // More than a pipe holds (64 KiB): the writer must block.
        .args(["disasm", "--jit", &sample("dynptr.bpf.o")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The read end is closed now; the rest of the listing cannot be written.
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.signal(), Some(libc::SIGPIPE), "{output:?}");
    assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"));
}
