//! Running one job: its object from the cache, a sandbox of its own (a
//! clone of the object's snapshot from its pool), the run, and the result
//! line (docs/cli.md, `bpfvisor jobs`).

use super::spec::{self, JobSpec, SpecError};
use crate::failure::render_chain;
use crate::run::{per_run, program_index, ringbufs, sandbox_config, trap_json};
use guest_jit::elf::Object;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use vmm::{
    HelperSet, Outcome, PooledSandbox, ProgramId, ProgramInput, ProgramRun, Reuse, Sandbox,
    SandboxPool,
};

/// How a job ended. Declared from best to worst: a job on several vCPUs
/// has the worst of their statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Every run returned.
    Ok,
    /// A CPU exception stopped the program.
    Trap,
    /// The program ran past `timeout_ms` and was stopped.
    Deadline,
    /// The job could not run: a malformed line, an object that cannot be
    /// read or loaded, no such program, no sandbox.
    Error,
}

impl Status {
    /// Every status, in the order of [`Status`].
    pub const ALL: [Status; 4] = [Status::Ok, Status::Trap, Status::Deadline, Status::Error];

    /// The status as the result line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Trap => "trap",
            Status::Deadline => "deadline",
            Status::Error => "error",
        }
    }

    fn of(outcome: &Outcome) -> Status {
        match outcome {
            Outcome::Returned(_) => Status::Ok,
            Outcome::Trapped(_) => Status::Trap,
            Outcome::DeadlineExceeded(_) => Status::Deadline,
        }
    }
}

/// Why an object could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The file could not be read.
    #[error("Cannot read {}", .0.display())]
    ReadFile(PathBuf, #[source] std::io::Error),
    /// The file is not a BPF object we can load.
    #[error("Cannot load {}", .0.display())]
    ParseObject(PathBuf, #[source] Box<guest_jit::elf::LoadError>),
}

/// Why a job has no outcome.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The line is not a job.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The object could not be read or parsed.
    #[error(transparent)]
    Object(Arc<ObjectError>),
    /// No such program, or the program was refused.
    #[error("Cannot load {}", .0.display())]
    LoadProgram(PathBuf, #[source] Box<vmm::LoadError>),
    /// No sandbox could be built.
    #[error("Cannot create a sandbox")]
    CreateSandbox(#[source] vmm::SandboxError),
    /// The run could not happen.
    #[error("Cannot run the program")]
    RunProgram(#[source] vmm::RunError),
    /// The ring buffers could not be attached.
    #[error(transparent)]
    RingBufs(#[from] ringbufs::RingBufsError),
    /// The host code running the job panicked (a bug of bpfvisor).
    #[error("The job's worker panicked: {0}")]
    Panicked(String),
}

/// Parsed objects by path, shared by the workers: each path is read and
/// parsed once, by the first job that names it, however many jobs do (the
/// others wait for it). Errors are kept too. And, per object, vCPU count
/// and context size, a pool of sandboxes cloned from a snapshot taken
/// right after the object was loaded.
#[derive(Debug, Default)]
pub struct ObjectCache {
    entries: Mutex<HashMap<PathBuf, Arc<CachedObject>>>,
    parsed: AtomicU64,
    pools: Mutex<HashMap<PoolKey, Arc<CachedPool>>>,
    /// Warm sandboxes each pool keeps: one per worker; 0 for no pools.
    keep: usize,
}

/// Object path, vCPUs, context bytes.
type PoolKey = (PathBuf, usize, u64);

/// A pool and the ids of the object's programs in its sandboxes; `None`
/// when the object could not be loaded or snapshotted, whose jobs get
/// fresh sandboxes (which report the load error).
type CachedPool = OnceLock<Option<(SandboxPool, Vec<ProgramId>)>>;

type CachedObject = OnceLock<Result<Arc<Object>, Arc<ObjectError>>>;

impl ObjectCache {
    /// A cache whose pools keep `keep` warm sandboxes each (0: no pools,
    /// a fresh sandbox for every job).
    pub fn new(keep: usize) -> ObjectCache {
        ObjectCache {
            keep,
            ..ObjectCache::default()
        }
    }

    /// The pool of sandboxes for `object` (at `path`) with `cpus` vCPUs
    /// and room for `data_len` context bytes, made on first use.
    fn pool(&self, path: &Path, object: &Object, cpus: usize, data_len: u64) -> Arc<CachedPool> {
        let config = sandbox_config(object, cpus, data_len);
        let key = (path.to_owned(), cpus, config.ctx_size);
        let slot = {
            let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(pools.entry(key).or_default())
        };
        slot.get_or_init(|| {
            if self.keep == 0 {
                return None;
            }
            let mut template = Sandbox::new(config).ok()?;
            let ids = template.load_object(object, HelperSet::Standard).ok()?;
            let snapshot = Arc::new(template.snapshot().ok()?);
            let pool = SandboxPool::new(snapshot, 0, self.keep, Reuse::ResetToSnapshot).ok()?;
            Some((pool, ids))
        });
        slot
    }

    /// The object at `path`, read and parsed on first use.
    pub fn get(&self, path: &Path) -> Result<Arc<Object>, Arc<ObjectError>> {
        let slot = {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(entries.entry(path.to_owned()).or_default())
        };
        slot.get_or_init(|| {
            let bytes =
                std::fs::read(path).map_err(|e| ObjectError::ReadFile(path.to_owned(), e))?;
            self.parsed.fetch_add(1, Ordering::Relaxed);
            Object::parse(&bytes)
                .map(Arc::new)
                .map_err(|e| Arc::new(ObjectError::ParseObject(path.to_owned(), Box::new(e))))
        })
        .clone()
    }

    /// Objects parsed so far (files that could not be read not counted).
    pub fn parsed(&self) -> u64 {
        self.parsed.load(Ordering::Relaxed)
    }
}

/// A line of the input, numbered from 1.
#[derive(Debug)]
pub struct Line {
    /// Its place among the jobs (non-blank lines), from 0.
    pub seq: u64,
    /// Its line number in the file.
    pub number: u64,
    pub bytes: Vec<u8>,
}

/// A job's result line.
#[derive(Debug)]
pub struct Finished {
    /// The job's [`Line::seq`].
    pub seq: u64,
    pub status: Status,
    /// The JSON result, one line.
    pub json: String,
}

/// What a job that ran produced.
struct Ran {
    name: String,
    section: String,
    /// One per vCPU, in order.
    runs: Vec<ProgramRun>,
    rings: Vec<ringbufs::RingDump>,
}

/// Runs the job of `line`; whatever happens, a result.
pub fn run_line(line: &Line, cache: &ObjectCache, max_records: u64) -> Finished {
    let started = Instant::now();
    let (id, spec) = spec::parse(line.number, &line.bytes);
    let ran = spec.map_err(JobError::from).and_then(|spec| {
        // A panic is a bug, but it is this job's: the others go on.
        catch_unwind(AssertUnwindSafe(|| run_job(&spec, cache, max_records)))
            .unwrap_or_else(|panic| Err(JobError::Panicked(panic_message(panic.as_ref()))))
    });
    let (status, mut fields) = match ran {
        Ok(ran) => ran_json(&ran),
        Err(e) => (Status::Error, error_json(&e)),
    };
    let mut result = Map::new();
    result.insert("id".into(), id);
    result.insert("line".into(), json!(line.number));
    result.insert("status".into(), json!(status.name()));
    result.append(&mut fields);
    result.insert("job_ns".into(), json!(nanos(started.elapsed())));
    Finished {
        seq: line.seq,
        status,
        json: Value::Object(result).to_string(),
    }
}

fn run_job(spec: &JobSpec, cache: &ObjectCache, max_records: u64) -> Result<Ran, JobError> {
    let object = cache.get(&spec.object).map_err(JobError::Object)?;
    let load = |e| JobError::LoadProgram(spec.object.clone(), Box::new(e));
    let index = program_index(&object, spec.program.as_deref()).map_err(load)?;
    let pool = cache.pool(&spec.object, &object, spec.cpus, spec.data.len() as u64);
    let (sandbox, id) = acquire_sandbox(&pool, &object, index, spec.cpus, spec.data.len() as u64)
        .map_err(|e| match e {
        Acquire::Create(e) => JobError::CreateSandbox(e),
        Acquire::Load(e) => load(e),
    })?;
    // Consumers before the run, as a loader attaches them.
    let consumers = ringbufs::attach(&sandbox)?;
    let cpus: Vec<usize> = (0..spec.cpus).collect();
    let input = ProgramInput {
        data: &spec.data,
        repeat: spec.repeat,
        timeout: Some(spec.timeout),
    };
    let runs = sandbox
        .run_program_on(id, &cpus, &input)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(JobError::RunProgram)?;
    let rings = ringbufs::collect(consumers, max_records);
    let (name, section) = sandbox
        .program(id)
        .map(|p| (p.name().to_owned(), p.section().to_owned()))
        .unwrap_or_default();
    Ok(Ran {
        name,
        section,
        runs,
        rings,
    })
}

/// Why no sandbox could be had for a job.
enum Acquire {
    Create(vmm::SandboxError),
    Load(vmm::LoadError),
}

/// A job's sandbox: from its object's pool, or made for it alone.
enum JobSandbox<'p> {
    Pooled(PooledSandbox<'p>),
    Fresh(Sandbox),
}

impl std::ops::Deref for JobSandbox<'_> {
    type Target = Sandbox;

    fn deref(&self) -> &Sandbox {
        match self {
            JobSandbox::Pooled(sandbox) => sandbox,
            JobSandbox::Fresh(sandbox) => sandbox,
        }
    }
}

/// A sandbox of `cpus` vCPUs, for inputs of `data_len` bytes, with
/// `object` loaded, and the id of its program `index`: a clone of the
/// object's snapshot from `pool`, which resets it to the snapshot when the
/// job gives it back, so that nothing a job does (a trap, a deadline that
/// stops a vCPU mid-program, maps it fills) is seen by another; or a fresh
/// one when the object has no pool.
fn acquire_sandbox<'p>(
    pool: &'p CachedPool,
    object: &Object,
    index: usize,
    cpus: usize,
    data_len: u64,
) -> Result<(JobSandbox<'p>, ProgramId), Acquire> {
    if let Some(Some((pool, ids))) = pool.get()
        && let Some(&id) = ids.get(index)
    {
        let sandbox = pool.get().map_err(Acquire::Create)?;
        return Ok((JobSandbox::Pooled(sandbox), id));
    }
    let mut sandbox =
        Sandbox::new(sandbox_config(object, cpus, data_len)).map_err(Acquire::Create)?;
    let ids = sandbox
        .load_object(object, HelperSet::Standard)
        .map_err(Acquire::Load)?;
    let id = ids.get(index).copied().ok_or_else(|| {
        Acquire::Load(vmm::LoadError::SelectProgram(Box::new(
            guest_jit::elf::LoadError::FindAnyProgram,
        )))
    })?;
    Ok((JobSandbox::Fresh(sandbox), id))
}

/// The fields of a job that could not run.
fn error_json(e: &JobError) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("retval".into(), Value::Null);
    fields.insert("duration_ns".into(), Value::Null);
    fields.insert("trace".into(), json!([]));
    fields.insert("ringbufs".into(), json!({}));
    fields.insert("error".into(), json!(render_chain(e)));
    fields
}

/// The status and fields of a job that ran: vCPU 0's run at the top, the
/// worst status of all, the first failure's message.
fn ran_json(ran: &Ran) -> (Status, Map<String, Value>) {
    let status = ran
        .runs
        .iter()
        .map(|run| Status::of(&run.report.outcome))
        .max()
        .unwrap_or(Status::Ok);
    let several = ran.runs.len() > 1;
    let failure = ran.runs.iter().enumerate().find_map(|(cpu, run)| {
        let message = failure_message(&ran.name, run)?;
        Some(if several {
            format!("vCPU {cpu}: {message}")
        } else {
            message
        })
    });
    let trap = ran.runs.iter().find_map(|run| match &run.report.outcome {
        Outcome::Trapped(trap) => Some(trap_json(trap, run)),
        _ => None,
    });
    let mut fields = Map::new();
    let first = ran.runs.first();
    let retval = match first.map(|run| run.report.outcome) {
        Some(Outcome::Returned(value)) if status == Status::Ok => json!(value),
        _ => Value::Null,
    };
    fields.insert("retval".into(), retval);
    fields.insert(
        "duration_ns".into(),
        first.map_or(Value::Null, |run| json!(nanos(per_run(run)))),
    );
    fields.insert(
        "trace".into(),
        first.map_or_else(|| json!([]), |run| json!(run.trace)),
    );
    let (records, summary) = ringbufs::to_json(&ran.rings);
    fields.insert("ringbufs".into(), records.unwrap_or_else(|| json!({})));
    fields.insert("error".into(), failure.map_or(Value::Null, Value::String));
    fields.insert("program".into(), json!(ran.name));
    fields.insert("section".into(), json!(ran.section));
    if let Some(run) = first {
        let report = &run.report;
        fields.insert("runs".into(), json!(report.runs));
        fields.insert("cycles".into(), json!(report.cycles));
        fields.insert("exits".into(), json!(report.exits));
        fields.insert("wall_ns".into(), json!(nanos(report.wall)));
        fields.insert("data_out".into(), json!(hex::encode(&run.data_out)));
        fields.insert("trace_dropped".into(), json!(run.trace_dropped));
    }
    fields.insert("trap".into(), trap.unwrap_or(Value::Null));
    if !ran.rings.is_empty() {
        fields.insert("ringbuf_summary".into(), summary);
    }
    if several {
        let results = ran
            .runs
            .iter()
            .enumerate()
            .map(|(cpu, run)| cpu_json(&ran.name, cpu, run))
            .collect();
        fields.insert("results".into(), Value::Array(results));
    }
    (status, fields)
}

/// One vCPU's run of a job on several.
fn cpu_json(name: &str, cpu: usize, run: &ProgramRun) -> Value {
    let retval = match run.report.outcome {
        Outcome::Returned(value) => json!(value),
        _ => Value::Null,
    };
    json!({
        "cpu": cpu,
        "status": Status::of(&run.report.outcome).name(),
        "retval": retval,
        "duration_ns": nanos(per_run(run)),
        "runs": run.report.runs,
        "cycles": run.report.cycles,
        "exits": run.report.exits,
        "data_out": hex::encode(&run.data_out),
        "trace": run.trace,
        "trace_dropped": run.trace_dropped,
        "error": failure_message(name, run),
    })
}

/// What went wrong in `run`, as `bpfvisor run` says it: the trap with its
/// instruction and C source line, or the deadline.
fn failure_message(name: &str, run: &ProgramRun) -> Option<String> {
    match run.report.outcome {
        Outcome::Returned(_) => None,
        Outcome::Trapped(trap) => Some(match &run.trap_site {
            Some(site) => format!("{name} trapped: {trap}\n  at {site}"),
            None => format!("{name} trapped: {trap}"),
        }),
        Outcome::DeadlineExceeded(limit) => Some(format!(
            "{name} ran past its deadline of {} and was stopped",
            humantime::format_duration(limit)
        )),
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_owned()
    }
}
