//! `bpfvisor jobs` through the real binary: a generated file of 1,000 jobs
//! mixing programs that return (with known values, trace lines, data and
//! ring buffer records), traps, deadlines and malformed lines, each result
//! checked; the same results with one worker and with four; standard
//! input; exit codes.
#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;
use common::{bpfvisor, sample};

use integration_tests::kvm_available;
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// What a job's result must say.
#[derive(Debug, Clone)]
enum Expect {
    /// Returned `retval`, with these trace lines, `data_out` and rings.
    Ok {
        retval: u64,
        trace: Vec<&'static str>,
        data_out: String,
        ringbufs: Value,
        cpus: usize,
    },
    /// Trapped, the error naming this source line; these rings.
    Trap { line: &'static str, ringbufs: Value },
    /// Stopped at its deadline.
    Deadline,
    /// Not run, for this reason.
    Error(String),
}

/// A job line and what its result must say.
#[derive(Debug, Clone)]
struct Job {
    line: String,
    /// The result's `id`: the job's, or the line number.
    id: Value,
    expect: Expect,
}

/// How many primes are below `limit` (the `sieve` program's answer).
fn primes_below(limit: u32) -> u64 {
    (2..limit)
        .filter(|&n| (2..n).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .count() as u64
}

fn records(items: &[&[u8]]) -> Value {
    items
        .iter()
        .map(|r| json!({ "len": r.len(), "hex": hex::encode(r) }))
        .collect()
}

const HELLO_TRACE: &str = "Hello from bpfvisor, answer=42";

/// Job `i` of the mix: kinds in turn, a deadline every 50th, a malformed
/// line every 8th of the rest (cycling through the ways to be malformed).
fn job(i: usize, line_number: usize) -> Job {
    let id = json!(format!("job-{i}"));
    let ok = |retval, trace: &[&'static str], data_out: String| Expect::Ok {
        retval,
        trace: trace.to_vec(),
        data_out,
        ringbufs: json!({}),
        cpus: 1,
    };
    let line = |fields: Value| {
        let mut fields = fields;
        fields["id"] = id.clone();
        fields.to_string()
    };
    if i % 50 == 49 {
        return Job {
            line: line(json!({ "object": sample("spin"), "timeout_ms": 20 })),
            id,
            expect: Expect::Deadline,
        };
    }
    match i % 8 {
        0 => Job {
            line: line(json!({ "object": sample("hello") })),
            id,
            expect: ok(42, &[HELLO_TRACE], String::new()),
        },
        1 => {
            // Each job has a fresh sandbox: the counter starts at 0 every
            // time, whatever other jobs on the same key did.
            let key = ((i / 8) % 16) as u32;
            let repeat = 1 + (i / 8) % 3;
            let data = hex::encode(key.to_le_bytes());
            Job {
                line: line(json!({
                    "object": sample("maps"), "program": "count",
                    "data": data, "repeat": repeat,
                })),
                id,
                expect: ok(repeat as u64, &[], data),
            }
        }
        2 => {
            let limit = 10 + ((i / 8) % 9) as u32 * 70;
            let mut data = limit.to_le_bytes().to_vec();
            data.extend([0; 4]);
            let mut out = limit.to_le_bytes().to_vec();
            out.extend((primes_below(limit) as u32).to_le_bytes());
            Job {
                line: line(json!({
                    "object": sample("compute"), "program": "sieve",
                    "data": hex::encode(&data),
                })),
                id,
                expect: ok(primes_below(limit), &[], hex::encode(out)),
            }
        }
        3 => Job {
            line: line(json!({ "object": sample("ringbuf_hello"), "program": "hello" })),
            id,
            expect: Expect::Ok {
                retval: 3,
                trace: Vec::new(),
                data_out: String::new(),
                ringbufs: json!({
                    "events": records(&[b"hello", b"ring", b"buffer"]),
                    "logs": [],
                }),
                cpus: 1,
            },
        },
        4 => Job {
            line: line(json!({ "object": sample("null_read"), "timeout_ms": 5000 })),
            id,
            expect: Expect::Trap {
                line: "null_read.bpf.c:10:9",
                ringbufs: json!({}),
            },
        },
        5 => Job {
            line: line(json!({ "object": sample("ringbuf_hello"), "program": "trap" })),
            id,
            expect: Expect::Trap {
                line: "ringbuf_hello.bpf.c",
                ringbufs: json!({ "events": records(&[b"before the trap"]), "logs": [] }),
            },
        },
        6 => Job {
            line: line(json!({ "object": sample("hello"), "cpus": 2, "data": "0a0b" })),
            id,
            expect: Expect::Ok {
                retval: 42,
                trace: vec![HELLO_TRACE],
                data_out: "0a0b".into(),
                ringbufs: json!({}),
                cpus: 2,
            },
        },
        _ => malformed(i, line_number, &id),
    }
}

/// The `(i / 8)`th way for a line to be no job.
fn malformed(i: usize, line_number: usize, id: &Value) -> Job {
    let hello = sample("hello");
    let with_id = |fields: Value| {
        let mut fields = fields;
        fields["id"] = id.clone();
        fields.to_string()
    };
    let (line, id, error) = match (i / 8) % 8 {
        0 => (
            format!("{{\"id\": \"job-{i}\", \"object\": "),
            json!(line_number),
            format!("Line {line_number} is not valid JSON: EOF while parsing a value"),
        ),
        1 => (
            json!({ "object": hello }).to_string(),
            json!(line_number),
            "Missing field `id`".into(),
        ),
        2 => (
            with_id(json!({ "program": "hello" })),
            id.clone(),
            "Missing field `object`".into(),
        ),
        3 => (
            with_id(json!({ "object": hello, "data": "12 3z" })),
            id.clone(),
            "Field `data` is not a hex string: Invalid character 'z'".into(),
        ),
        4 => (
            with_id(json!({ "object": hello, "program": "nope" })),
            id.clone(),
            format!(
                "Cannot load {hello}: Failed to select a program: \
                 No program or section is named `nope`; the object has: hello (syscall)"
            ),
        ),
        5 => {
            let missing = sample("missing");
            (
                with_id(json!({ "object": missing })),
                id.clone(),
                format!("Cannot read {missing}: No such file or directory"),
            )
        }
        6 => {
            let source = format!("{}/hello.bpf.c", common::PROGS);
            (
                with_id(json!({ "object": source })),
                id.clone(),
                format!("Cannot load {source}: Not an ELF file"),
            )
        }
        _ => (
            with_id(json!({ "object": hello, "cpus": 0 })),
            id.clone(),
            "Field `cpus` must be an integer from 1 to 64, not 0".into(),
        ),
    };
    Job {
        line,
        id,
        expect: Expect::Error(error),
    }
}

/// `count` jobs as a file's text (a blank line after every 100th, which
/// is no job but counts in line numbers), and each job.
fn generate(count: usize) -> (String, Vec<Job>) {
    let mut text = String::new();
    let mut jobs = Vec::new();
    let mut line_number = 0;
    for i in 0..count {
        line_number += 1;
        let job = job(i, line_number);
        text.push_str(&job.line);
        text.push('\n');
        jobs.push(job);
        if i % 100 == 99 {
            text.push_str("  \n");
            line_number += 1;
        }
    }
    (text, jobs)
}

/// Checks one result line against its job; `line` is the job's line
/// number.
fn check(job: &Job, result: &Value) {
    let what = format!("{}\n=> {result}", job.line);
    assert_eq!(result["id"], job.id, "{what}");
    assert!(result["job_ns"].is_u64(), "{what}");
    match &job.expect {
        Expect::Ok {
            retval,
            trace,
            data_out,
            ringbufs,
            cpus,
        } => {
            assert_eq!(result["status"], "ok", "{what}");
            assert_eq!(result["retval"], json!(retval), "{what}");
            assert_eq!(result["error"], Value::Null, "{what}");
            assert_eq!(result["trap"], Value::Null, "{what}");
            assert_eq!(result["trace"], json!(trace), "{what}");
            assert_eq!(result["data_out"], json!(data_out), "{what}");
            assert_eq!(result["ringbufs"], *ringbufs, "{what}");
            assert!(result["duration_ns"].is_u64(), "{what}");
            assert_eq!(result["exits"], 1, "{what}");
            if *cpus > 1 {
                let results = result["results"].as_array().unwrap();
                assert_eq!(results.len(), *cpus, "{what}");
                for (cpu, run) in results.iter().enumerate() {
                    assert_eq!(run["cpu"], cpu, "{what}");
                    assert_eq!(run["status"], "ok", "{what}");
                    assert_eq!(run["retval"], json!(retval), "{what}");
                    assert_eq!(run["trace"], json!(trace), "{what}");
                }
            } else {
                assert!(result.get("results").is_none(), "{what}");
            }
        }
        Expect::Trap { line, ringbufs } => {
            assert_eq!(result["status"], "trap", "{what}");
            assert_eq!(result["retval"], Value::Null, "{what}");
            let error = result["error"].as_str().unwrap();
            assert!(error.contains("trapped: Page fault reading 0x0"), "{what}");
            assert!(error.contains(line), "{what}");
            assert_eq!(result["trap"]["kind"], "page fault", "{what}");
            assert_eq!(result["ringbufs"], *ringbufs, "{what}");
        }
        Expect::Deadline => {
            assert_eq!(result["status"], "deadline", "{what}");
            assert_eq!(result["retval"], Value::Null, "{what}");
            assert_eq!(
                result["error"], "spin ran past its deadline of 20ms and was stopped",
                "{what}"
            );
            assert_eq!(result["runs"], 0, "{what}");
        }
        Expect::Error(error) => {
            assert_eq!(result["status"], "error", "{what}");
            assert_eq!(result["retval"], Value::Null, "{what}");
            assert_eq!(result["duration_ns"], Value::Null, "{what}");
            assert_eq!(result["trace"], json!([]), "{what}");
            assert_eq!(result["ringbufs"], json!({}), "{what}");
            let message = result["error"].as_str().unwrap();
            assert!(
                message.starts_with(error.as_str()),
                "{what}\nwanted: {error}"
            );
        }
    }
}

fn status_counts(jobs: &[Job]) -> [usize; 4] {
    let mut counts = [0; 4];
    for job in jobs {
        let i = match job.expect {
            Expect::Ok { .. } => 0,
            Expect::Trap { .. } => 1,
            Expect::Deadline => 2,
            Expect::Error(_) => 3,
        };
        counts[i] += 1;
    }
    counts
}

/// Writes a jobs file in the temporary directory (the caller removes it).
fn write_jobs(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("bpfvisor-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn results(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A result without what changes from run to run: times, cycles, exits.
fn stable(result: &Value) -> Value {
    let mut result = result.clone();
    for (key, value) in result.as_object_mut().unwrap().iter_mut() {
        if matches!(
            key.as_str(),
            "duration_ns" | "job_ns" | "wall_ns" | "cycles" | "exits"
        ) {
            *value = Value::Null;
        }
    }
    if let Some(results) = result.get_mut("results").and_then(Value::as_array_mut) {
        for run in results {
            run["duration_ns"] = Value::Null;
            run["cycles"] = Value::Null;
            run["exits"] = Value::Null;
        }
    }
    result
}

#[test]
fn a_thousand_jobs_each_get_their_own_result() {
    if !kvm_available("a_thousand_jobs_each_get_their_own_result") {
        return;
    }
    let (text, jobs) = generate(1000);
    let counts = status_counts(&jobs);
    assert!(counts.iter().all(|&n| n >= 20), "{counts:?}");
    let path = write_jobs("thousand.jsonl", &text);
    let path = path.to_str().unwrap();
    let out = bpfvisor(&["jobs", path, "--parallel", "4"]);
    std::fs::remove_file(path).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    let four = results(&out);
    assert_eq!(four.len(), jobs.len(), "{stderr}");
    // In input order: line numbers go up, blank lines skipped.
    let mut line = 0;
    for (i, (job, result)) in jobs.iter().zip(&four).enumerate() {
        line += 1;
        assert_eq!(result["line"], line, "{}", job.line);
        check(job, result);
        if i % 100 == 99 {
            line += 1;
        }
    }
    // Every object parsed once: hello, maps, compute, ringbuf_hello,
    // null_read, spin and the C source that is not one (the missing
    // file is never read).
    let summary = format!(
        ": {} ok, {} trap, {} deadline, {} error; 7 objects parsed\n",
        counts[0], counts[1], counts[2], counts[3]
    );
    assert!(stderr.starts_with("jobs: 1000 in "), "{stderr}");
    assert!(stderr.ends_with(&summary), "{stderr}\nwanted: {summary}");

    // One worker gives the same results. (The first 160 jobs, which have
    // every kind, keep the test short: one worker takes 4 times as long.)
    let (text, jobs) = generate(160);
    let path = write_jobs("quarter.jsonl", &text);
    let out = bpfvisor(&["jobs", path.to_str().unwrap(), "--parallel", "1"]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(7));
    let one = results(&out);
    assert_eq!(one.len(), jobs.len());
    assert!(status_counts(&jobs).iter().all(|&n| n >= 3));
    for (a, b) in one.iter().zip(&four) {
        assert_eq!(stable(a), stable(b));
    }

    // Fresh sandboxes instead of pooled clones: the same results too.
    let path = write_jobs("fresh.jsonl", &text);
    let out = bpfvisor(&[
        "jobs",
        path.to_str().unwrap(),
        "--parallel",
        "2",
        "--no-pool",
    ]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(7));
    let fresh = results(&out);
    assert_eq!(fresh.len(), jobs.len());
    for (a, b) in fresh.iter().zip(&four) {
        assert_eq!(stable(a), stable(b));
    }
}

/// Runs `bpfvisor jobs ARGS` with `input` on its standard input.
fn jobs_from_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bpfvisor"))
        .arg("jobs")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn jobs_from_standard_input_all_returning_exit_0() {
    if !kvm_available("jobs_from_standard_input_all_returning_exit_0") {
        return;
    }
    // Kinds 0 to 3 of the mix: all return.
    let jobs: Vec<Job> = (0..40).filter(|i| i % 8 < 4).map(|i| job(i, 0)).collect();
    let text: String = jobs.iter().map(|j| format!("{}\n", j.line)).collect();
    let out = jobs_from_stdin(&["-", "--parallel", "2"], &text);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let results = results(&out);
    assert_eq!(results.len(), jobs.len());
    for (job, result) in jobs.iter().zip(&results) {
        check(job, result);
    }
    assert!(
        stderr.ends_with(": 20 ok, 0 trap, 0 deadline, 0 error; 4 objects parsed\n"),
        "{stderr}"
    );

    // --unordered: the same results, in some order.
    let out = jobs_from_stdin(&["-", "--unordered"], &text);
    assert_eq!(out.status.code(), Some(0));
    let mut unordered = self::results(&out);
    unordered.sort_by_key(|r| r["line"].as_u64());
    assert_eq!(
        unordered.iter().map(stable).collect::<Vec<_>>(),
        results.iter().map(stable).collect::<Vec<_>>()
    );
}

#[test]
fn an_empty_input_runs_nothing_and_an_unreadable_file_is_a_host_failure() {
    if !kvm_available("an_empty_input_runs_nothing_and_an_unreadable_file_is_a_host_failure") {
        return;
    }
    let out = jobs_from_stdin(&["-"], "\n\n");
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.ends_with(": 0 ok, 0 trap, 0 deadline, 0 error; 0 objects parsed\n"),
        "{stderr}"
    );

    let missing = format!("{}/no-such-jobs.jsonl", common::PROGS);
    let out = bpfvisor(&["jobs", &missing]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: Cannot read {missing}: No such file or directory (os error 2)\n")
    );

    let out = bpfvisor(&["jobs", "-", "--parallel", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn jobs_with_an_arena_each_start_from_the_loaded_object() {
    if !kvm_available("jobs_with_an_arena_each_start_from_the_loaded_object") {
        return;
    }
    // Pooled clones of the loaded arena_list (the default): each build
    // starts from an empty list, so every one returns 3 with the same
    // pages and head (clones keep their snapshot's arena addresses), and
    // every sum finds nothing a build before it left.
    let object = sample("arena_list");
    let text: String = (0..20)
        .map(|i| {
            let (program, n) = if i % 2 == 0 {
                ("list_build", "03")
            } else {
                ("list_sum", "00")
            };
            let data = format!("{n}{}", "00".repeat(23));
            format!(
                "{}\n",
                json!({"id": i, "object": object, "program": program, "data": data})
            )
        })
        .collect();
    let out = jobs_from_stdin(&["-", "--parallel", "2"], &text);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let results = results(&out);
    assert_eq!(results.len(), 20, "{stderr}");
    let first_build = results[0]["data_out"].as_str().unwrap().to_owned();
    // n = 3, pages = 16, head somewhere in the arena.
    assert!(first_build.starts_with("0300000010000000"), "{first_build}");
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["status"], "ok", "{result}");
        if i % 2 == 0 {
            assert_eq!(result["retval"], 3, "{result}");
            assert_eq!(result["data_out"], first_build.as_str(), "{result}");
        } else {
            assert_eq!(result["retval"], 0, "{result}");
        }
    }
}
