//! Map operation costs as a user sees them: the programs of
//! `images/progs/map_bench.bpf.o`, each a `bpf_loop` of `ITERATIONS`
//! iterations doing one map operation, against `baseline`, the same loop
//! without the map call. One operation costs
//! (t_op - t_baseline) / ITERATIONS, per round (both measured in that
//! round), then the median over rounds.
//!
//! bpfvisor's times are the guest's TSC (`RunReport::duration`) over
//! `VM_REPEAT` runs inside one call. When the host kernel can load the same
//! object (with `kernel-bpf`; the `bpf()` syscall permitted), the
//! same programs also run under `BPF_PROG_TEST_RUN`, interleaved with the
//! VM runs, and the table shows the ratio. Syscall programs take no
//! `repeat` in the kernel, so each kernel run is one syscall timed on the
//! host; one syscall is ~1 µs against milliseconds of loop, and the
//! baseline pays it too.
//!
//! `cargo bench -p integration-tests --bench maps`; prints ns per operation
//! (and per loop iteration for the baseline) for both, and their ratio.

use guest_jit::elf::Object;
use std::time::Duration;
use vmm::{HelperSet, Outcome, ProgramInput, Sandbox, SandboxConfig};

const MAP_BENCH: &[u8] = include_bytes!("../../images/progs/map_bench.bpf.o");
/// Loop iterations per run: long enough that a run's fixed cost (one
/// syscall or one VM entry) is noise.
const ITERATIONS: u32 = 100_000;
/// Runs per VM call.
const VM_REPEAT: u64 = 5;
const ROUNDS: usize = 21;
/// The populated keys of map_bench.bpf.c.
const KEYS: u64 = 64;
/// What `setup` returns: four maps of `KEYS` keys.
const SETUP_UPDATES: u64 = 4 * KEYS;

const BASELINE: &str = "baseline";
/// The measured programs and what each iteration does.
const OPERATIONS: [(&str, &str); 8] = [
    ("helper_call", "call bpf_get_numa_node_id"),
    ("lookup_array", "lookup ARRAY"),
    ("lookup_array_helper", "lookup ARRAY, helper (callx)"),
    ("lookup_percpu_array", "lookup PERCPU_ARRAY"),
    ("lookup_hash", "lookup HASH"),
    ("lookup_lru", "lookup LRU_HASH"),
    ("update_array", "update ARRAY"),
    ("update_hash", "update HASH (existing key)"),
];
/// Programs the kernel refuses (callx), left out of its load.
const VM_ONLY: [&str; 1] = ["lookup_array_helper"];

/// The context: `struct bench_args { __u32 n; __u32 pad; __u64 sum; }`.
fn bench_args(n: u32) -> [u8; 16] {
    let mut args = [0; 16];
    args[..4].copy_from_slice(&n.to_le_bytes());
    args
}

fn returned_sum(args: &[u8]) -> u64 {
    u64::from_le_bytes(args[8..16].try_into().expect("16-byte context"))
}

/// Sum over i in 0..n of (i % KEYS) + 1, what every program adds up.
fn expected_sum(n: u32) -> u64 {
    (0..u64::from(n)).map(|i| i % KEYS + 1).sum()
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn ns(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e9
}

/// Nanoseconds per loop iteration of one program, per round.
#[derive(Default)]
struct Samples {
    vm: Vec<f64>,
    kernel: Vec<f64>,
}

fn vm_run(sandbox: &Sandbox, name: &str, n: u32, repeat: u64) -> (u64, Vec<u8>, Duration) {
    let id = sandbox
        .find_program(name)
        .expect("program in map_bench.bpf.o");
    let args = bench_args(n);
    let input = ProgramInput {
        data: &args,
        repeat,
        timeout: Some(Duration::from_secs(60)),
    };
    let run = sandbox.run_program(id, 0, &input).expect("vm run");
    let Outcome::Returned(value) = run.report.outcome else {
        panic!("{name} did not return: {:?}", run.report.outcome);
    };
    (value, run.data_out, run.report.duration)
}

fn main() {
    if !vmm::kvm::is_available() {
        eprintln!("SKIPPED maps bench: /dev/kvm is not usable");
        return;
    }
    let object = Object::parse(MAP_BENCH).expect("map_bench.bpf.o");
    let mut sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    sandbox
        .load_object(&object, HelperSet::Standard)
        .expect("load map_bench.bpf.o");
    let (done, _, _) = vm_run(&sandbox, "setup", 0, 1);
    assert_eq!(done, SETUP_UPDATES, "setup in the VM");

    let kernel = match kernel::open(MAP_BENCH, &VM_ONLY) {
        Ok(kernel) => {
            let setup = kernel.program("setup").expect("setup in the kernel");
            let (done, _) = kernel::run(setup, &mut bench_args(0)).expect("kernel setup");
            assert_eq!(u64::from(done), SETUP_UPDATES, "setup in the kernel");
            Some(kernel)
        }
        Err(why) => {
            eprintln!("host kernel comparison skipped: {why}");
            None
        }
    };
    let programs: Vec<&str> = std::iter::once(BASELINE)
        .chain(OPERATIONS.iter().map(|(prog, _)| *prog))
        .collect();
    let kernel_programs: Vec<Option<&kernel_bpf::KernelProgram>> = programs
        .iter()
        .map(|prog| {
            let kernel = kernel.as_ref().filter(|_| !VM_ONLY.contains(prog))?;
            Some(kernel.program(prog).expect("program in the kernel"))
        })
        .collect();
    let mut samples: Vec<Samples> = programs.iter().map(|_| Samples::default()).collect();
    let per_vm_run = f64::from(ITERATIONS) * VM_REPEAT as f64;
    // Warm-up round, not counted.
    for round in 0..=ROUNDS {
        // Interleaved, so machine noise hits every program and both
        // engines alike.
        for (i, prog) in programs.iter().enumerate() {
            let (value, args, duration) = vm_run(&sandbox, prog, ITERATIONS, VM_REPEAT);
            assert_eq!(value, u64::from(ITERATIONS), "{prog} in the VM");
            assert_eq!(returned_sum(&args), expected_sum(ITERATIONS), "{prog} sum");
            if round > 0 {
                samples[i].vm.push(ns(duration) / per_vm_run);
            }
            if let Some(program) = kernel_programs[i] {
                let mut args = bench_args(ITERATIONS);
                let (value, took) = kernel::run(program, &mut args).expect("kernel run");
                assert_eq!(value, ITERATIONS, "{prog} in the kernel");
                // The kernel may run this on another CPU than setup's,
                // where the per-CPU values are still 0.
                if *prog != "lookup_percpu_array" {
                    assert_eq!(returned_sum(&args), expected_sum(ITERATIONS), "{prog} sum");
                }
                if round > 0 {
                    samples[i].kernel.push(ns(took) / f64::from(ITERATIONS));
                }
            }
        }
    }

    let base = &samples[0];
    // Per round: the operation's iteration minus the baseline's.
    let per_op = |of: &[f64], base: &[f64]| -> Option<f64> {
        (!of.is_empty()).then(|| median(of.iter().zip(base).map(|(o, b)| o - b).collect()))
    };
    let cell = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.1}"));
    let ratio = |vm: Option<f64>, kernel: Option<f64>| match (vm, kernel) {
        (Some(vm), Some(kernel)) if kernel > 0.0 => format!("{:.2}x", vm / kernel),
        _ => "-".to_string(),
    };
    println!(
        "map_bench.bpf.o, {ITERATIONS} iterations per run, median of {ROUNDS} rounds \
         (ns per operation: iteration minus baseline iteration)"
    );
    // Other work on the machine inflates both columns (the guest's TSC
    // keeps counting while its vCPU thread waits for a core).
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average: {}", load.trim());
    }
    println!(
        "{:<34} {:>12} {:>12} {:>16}",
        "operation", "bpfvisor ns", "kernel ns", "bpfvisor/kernel"
    );
    let vm_base = Some(median(base.vm.clone()));
    let kernel_base = (!base.kernel.is_empty()).then(|| median(base.kernel.clone()));
    println!(
        "{:<34} {:>12} {:>12} {:>16}",
        "baseline loop iteration (total)",
        cell(vm_base),
        cell(kernel_base),
        ratio(vm_base, kernel_base)
    );
    let mut results = Vec::new();
    for ((_, label), s) in OPERATIONS.iter().zip(&samples[1..]) {
        let (vm, kernel) = (per_op(&s.vm, &base.vm), per_op(&s.kernel, &base.kernel));
        println!(
            "{:<34} {:>12} {:>12} {:>16}",
            label,
            cell(vm),
            cell(kernel),
            ratio(vm, kernel)
        );
        results.push((vm, kernel));
    }
    // ARRAY lookups inline (the JIT inlines them as the kernel does)
    // against the same lookup through the helper, and HASH lookups (the
    // helper in both). An inline lookup costs about a nanosecond, the
    // noise of the subtraction, so ratios to it are rough.
    let (array, array_helper, hash) = (results[1], results[2], results[4]);
    let difference = array_helper.0.zip(array.0).map(|(h, a)| h - a);
    println!(
        "{:<34} {:>12}",
        "ARRAY lookup: helper - inline, ns",
        cell(difference)
    );
    println!(
        "{:<34} {:>12}",
        "lookup HASH / ARRAY helper",
        ratio(hash.0, array_helper.0)
    );
    println!(
        "{:<34} {:>12} {:>12}",
        "lookup HASH / ARRAY (rough)",
        ratio(hash.0, array.0),
        ratio(hash.1, array.1)
    );
}

/// The host kernel's side, loaded by the project's own loader
/// (`kernel-bpf`: raw bpf() calls).
mod kernel {
    use guest_jit::elf::Object as Elf;
    use kernel_bpf::{KernelObject, KernelProgram, LoadOptions};
    use std::time::Duration;

    /// The object loaded into the kernel, but for the programs in `skip`.
    pub fn open(elf: &'static [u8], skip: &[&str]) -> Result<KernelObject, String> {
        let parsed = Elf::parse(elf).map_err(|e| e.to_string())?;
        let programs = parsed
            .programs()
            .iter()
            .map(|p| p.name.clone())
            .filter(|name| !skip.contains(&name.as_str()))
            .collect();
        let options = LoadOptions {
            program_type: None,
            programs,
        };
        KernelObject::load(&parsed, &options).map_err(|e| e.to_string())
    }

    /// One `BPF_PROG_TEST_RUN` of `program` with context `ctx`, which the
    /// kernel writes back; its return value and the syscall's time.
    pub fn run(program: &KernelProgram, ctx: &mut [u8]) -> Result<(u32, Duration), String> {
        let run = program.test_run(ctx, 1).map_err(|e| e.to_string())?;
        let n = ctx.len().min(run.output.len());
        ctx[..n].copy_from_slice(&run.output[..n]);
        Ok((run.retval, run.duration))
    }
}
