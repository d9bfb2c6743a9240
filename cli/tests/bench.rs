//! `bpfvisor bench` through the real binary: a short run of some rows,
//! its table, JSON and chart; bad arguments.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;
use common::bpfvisor;

use integration_tests::kvm_available;
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
        assert!(
            text.lines().any(|l| l.contains(row) && l.contains('s')),
            "{row}:\n{text}"
        );
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
