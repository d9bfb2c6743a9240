//! `bpfvisor bench` through the real binary: a short run of some rows,
//! its table, JSON and chart; bad arguments.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;
use common::bpfvisor;

use integration_tests::{bpf_available, kvm_available};
use serde_json::Value;

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_short_run_prints_the_table_and_writes_json_and_svg() {
    if !kvm_available("a_short_run_prints_the_table_and_writes_json_and_svg") {
        return;
    }
    let out = std::env::temp_dir().join(format!("bpfvisor-bench-{}", std::process::id()));
    let output = bpfvisor(&[
        "bench",
        "--rounds",
        "1",
        "--batch",
        "1ms",
        "--rows",
        "call,start",
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}\n{}", stderr(&output));
    for row in [
        "call, exit path",
        "call, polling",
        "start, fresh",
        "start, clone",
    ] {
        // The row's line has its VM time: a number and a unit after the
        // name.
        let timed = |line: &str| {
            line.split_once(row).is_some_and(|(_, rest)| {
                rest.split_whitespace().next().is_some_and(|cell| {
                    cell.starts_with(|c: char| c.is_ascii_digit())
                        && ["ns", "µs", "ms", "s"].iter().any(|u| cell.ends_with(u))
                })
            })
        };
        assert!(text.lines().any(timed), "{row}:\n{text}");
    }
    assert!(
        !text.contains("ringbuf"),
        "only the rows asked for:\n{text}"
    );
    let json: Value =
        serde_json::from_slice(&std::fs::read(out.join("bench.json")).unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{json}");
    for row in rows {
        let vm = &row["cells"]["vm"];
        let median = vm["median_ns"].as_u64().unwrap_or(0);
        assert!(median > 0, "{row}");
        assert!(
            vm["min_ns"].as_u64().unwrap() <= median && median <= vm["max_ns"].as_u64().unwrap()
        );
    }
    assert!(json["machine"]["cpus"].as_u64().unwrap() >= 1);
    let svg = std::fs::read_to_string(out.join("bench.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );
    assert!(svg.contains("start, clone"), "{svg}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// Runs `bpfvisor bench` briefly with `args` into a fresh directory;
/// returns its stdout and JSON.
fn short_run(args: &[&str]) -> (String, Value) {
    let out = std::env::temp_dir().join(format!(
        "bpfvisor-bench-{}-{}",
        std::process::id(),
        args.join("-").replace(['/', ','], "_")
    ));
    let mut all = vec!["bench", "--rounds", "1", "--batch", "1ms", "--out"];
    all.push(out.to_str().unwrap());
    all.extend(args);
    let output = bpfvisor(&all);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}\n{}", stderr(&output));
    let json = serde_json::from_slice(&std::fs::read(out.join("bench.json")).unwrap()).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
    (text, json)
}

#[test]
fn the_kernel_runs_every_program_row_it_can_and_agrees_with_the_vm() {
    let test = "the_kernel_runs_every_program_row_it_can_and_agrees_with_the_vm";
    if !kvm_available(test) || !bpf_available(test) {
        return;
    }
    // A checksum that differs between the columns fails the run, so
    // success means the kernel computed what the VM did.
    let (text, json) = short_run(&[
        "--rows",
        "compute,maps,per-cpu,arena",
        "--engines",
        "vm,kernel",
    ]);
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "{text}");
    for row in rows {
        let (vm, kernel) = (&row["cells"]["vm"], &row["cells"]["kernel"]);
        assert!(vm["median_ns"].as_u64().unwrap_or(0) > 0, "{row}");
        match kernel["median_ns"].as_u64() {
            Some(ns) => {
                assert!(ns > 0, "{row}");
                assert_eq!(kernel["result"], vm["result"], "{row}");
                assert!(vm["ratio_to_kernel"].as_f64().unwrap() > 0.0, "{row}");
            }
            // This host kernel refuses arena maps even to root.
            None if row["name"] == "arena_list" => {
                let why = kernel["unsupported"].as_str().unwrap_or_default();
                assert!(why.contains("ARENA"), "{row}");
            }
            None => panic!("the kernel did not run {}: {row}", row["name"]),
        }
    }
}

#[test]
fn without_kvm_the_vm_column_says_why_and_the_rest_still_runs() {
    // /dev/kvm hidden in a private mount namespace (as tests/tests/
    // kvm_missing.rs does): the VM cells are a `-` with the reason, not
    // failures, and the run succeeds.
    let script = r#"mount --bind /dev/null /dev/kvm && exec "$0" bench --rows hash --engines vm,native --rounds 1 --batch 1ms --out "$1""#;
    let out = std::env::temp_dir().join(format!("bpfvisor-bench-nokvm-{}", std::process::id()));
    let output = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(env!("CARGO_BIN_EXE_bpfvisor"))
        .arg(&out)
        .output();
    let required = std::env::var("BPFVISOR_REQUIRE_KVM").is_ok_and(|v| v == "1");
    let output = match output {
        Ok(output) if output.status.success() || stdout(&output).contains("bpfvisor bench") => {
            output
        }
        other => {
            // No mount namespace here (not root, no unshare).
            assert!(!required, "cannot hide /dev/kvm: {other:?}");
            eprintln!("SKIPPED without_kvm_the_vm_column_says_why: no mount namespace");
            return;
        }
    };
    let text = stdout(&output);
    assert!(output.status.success(), "{text}\n{}", stderr(&output));
    assert!(text.contains("vm: /dev/kvm is not usable"), "{text}");
    let hash = text.lines().find(|l| l.contains(" hash ")).unwrap();
    assert!(hash.contains("-[1]") && hash.contains("µs"), "{hash}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    for (args, says) in [
        (&["bench", "--batch", "1ns"][..], "between 100us and 60s"),
        (&["bench", "--batch", "soon"][..], "invalid value"),
        (&["bench", "--rounds", "0"][..], "invalid value"),
        (&["bench", "--engines", "vm,luajit"][..], "luajit"),
    ] {
        let output = bpfvisor(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).contains(says),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let output = bpfvisor(&["bench", "--rows", "no-such-row"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no row matches no-such-row"),
        "{}",
        stderr(&output)
    );
}
