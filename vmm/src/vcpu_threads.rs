//! Threads for vCPUs, kept for the next sandbox when one is dropped.
//!
//! Starting a thread costs tens of microseconds on a nested-KVM host, as
//! much as several vCPU ioctls: a sandbox made from a snapshot would pay it
//! once per vCPU. A vCPU's thread instead comes from a process-wide set of
//! idle workers, runs that vCPU until its handle lets it go, and then waits
//! for the next one. A worker idle for [`IDLE_TIMEOUT`] ends, and at most
//! [`MAX_IDLE`] wait at once, so an idle process keeps no threads for long.
//! A worker whose job panics ends with it.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::Duration;

/// How long an idle worker waits for a job before it ends.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most idle workers kept.
pub const MAX_IDLE: usize = 64;
/// Stack of each worker: vCPU threads run no deep code.
const STACK_SIZE: usize = 256 * 1024;

type Job = Box<dyn FnOnce() + Send>;

/// An idle worker: where to send it a job.
struct Idle {
    jobs: Sender<(Job, Sender<()>)>,
    pthread: libc::pthread_t,
}

static IDLE: Mutex<Vec<Idle>> = Mutex::new(Vec::new());

/// A job running on a worker.
#[derive(Debug)]
pub struct Running {
    pthread: libc::pthread_t,
    done: Receiver<()>,
}

impl Running {
    /// The worker's thread, to signal it.
    pub fn pthread(&self) -> libc::pthread_t {
        self.pthread
    }

    /// Waits until the job has returned (or panicked) and everything it
    /// owned is dropped.
    pub fn wait(self) {
        // The worker drops its end after the job: an error is the answer.
        let _ = self.done.recv();
    }
}

/// Runs `job` on an idle worker, or a new one when none is idle.
pub fn run(job: impl FnOnce() + Send + 'static) -> std::io::Result<Running> {
    let mut job: Job = Box::new(job);
    let (mut done_tx, done) = crossbeam_channel::bounded(0);
    while let Some(worker) = pop_idle() {
        match worker.jobs.send((job, done_tx)) {
            Ok(()) => {
                return Ok(Running {
                    pthread: worker.pthread,
                    done,
                });
            }
            // It ended between being listed and now: try the next one.
            Err(crossbeam_channel::SendError(back)) => (job, done_tx) = back,
        }
    }
    let (pthread_tx, pthread_rx) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("bpfvisor-vcpu".into())
        .stack_size(STACK_SIZE)
        .spawn(move || {
            // SAFETY: pthread_self has no preconditions.
            let me = unsafe { libc::pthread_self() };
            let _ = pthread_tx.send(me);
            serve(me, job, done_tx);
        })?;
    let pthread = pthread_rx
        .recv()
        .map_err(|_| std::io::Error::other("a vCPU thread ended before it started"))?;
    Ok(Running { pthread, done })
}

/// `work` running on a worker; [`Pending::join`] gives its result.
#[derive(Debug)]
pub struct Pending<T> {
    running: Option<Running>,
    result: Receiver<T>,
}

impl<T> Pending<T> {
    /// Waits for the result; `None` if `work` panicked.
    pub fn join(mut self) -> Option<T> {
        self.running.take()?.wait();
        self.result.try_recv().ok()
    }
}

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        // What `work` holds (a VM, guest memory) is let go in order: not
        // while its owner goes on to drop its own references.
        if let Some(running) = self.running.take() {
            running.wait();
        }
    }
}

/// Runs `work` on a worker while the caller goes on.
pub fn spawn<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<Pending<T>> {
    let (result_tx, result) = crossbeam_channel::bounded(1);
    let running = run(move || {
        let _ = result_tx.send(work());
    })?;
    Ok(Pending {
        running: Some(running),
        result,
    })
}

fn pop_idle() -> Option<Idle> {
    IDLE.lock().unwrap_or_else(|e| e.into_inner()).pop()
}

/// A worker's life: run the job, then offer itself for the next.
fn serve(me: libc::pthread_t, mut job: Job, mut done: Sender<()>) {
    let (jobs_tx, jobs) = crossbeam_channel::bounded(1);
    loop {
        job();
        // Listed as idle before the job's waiter hears that it is done, so
        // that whoever starts a job right after waiting finds this worker
        // rather than starting a thread: the pool stays as large as the
        // most jobs ever running at once, not that plus the races lost.
        {
            let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() >= MAX_IDLE {
                return;
            }
            idle.push(Idle {
                jobs: jobs_tx.clone(),
                pthread: me,
            });
        }
        drop(done);
        let next = match jobs.recv_timeout(IDLE_TIMEOUT) {
            Ok(next) => next,
            Err(RecvTimeoutError::Timeout) => {
                let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(at) = idle.iter().position(|w| w.pthread == me) {
                    idle.swap_remove(at);
                    return;
                }
                drop(idle);
                // Someone took this worker off the list just now: its job
                // is on the way.
                match jobs.recv() {
                    Ok(next) => next,
                    Err(_) => return,
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        (job, done) = next;
    }
}

/// Idle workers now (for tests).
pub fn idle_workers() -> usize {
    IDLE.lock().unwrap_or_else(|e| e.into_inner()).len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn wait_returns_after_the_job_dropped_what_it_owned() {
        let owned = Arc::new(());
        let held = Arc::clone(&owned);
        let running = run(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(held);
        })
        .unwrap();
        running.wait();
        assert_eq!(Arc::strong_count(&owned), 1);
    }

    #[test]
    fn spawned_work_gives_its_result_or_none_if_it_panicked() {
        assert_eq!(spawn(|| 6 * 7).unwrap().join(), Some(42));
        assert_eq!(
            spawn(|| -> u32 { panic!("work panics") }).unwrap().join(),
            None
        );
        // Dropped unjoined: the drop waits for it.
        let owned = Arc::new(());
        let held = Arc::clone(&owned);
        drop(
            spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                drop(held);
            })
            .unwrap(),
        );
        assert_eq!(Arc::strong_count(&owned), 1);
    }

    #[test]
    fn a_panicking_job_still_ends_its_wait() {
        let running = run(|| panic!("job panics")).unwrap();
        running.wait();
    }

    #[test]
    fn many_jobs_at_once_each_run_once() {
        let ran = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<Running> = (0..16)
            .map(|_| {
                let ran = Arc::clone(&ran);
                run(move || {
                    std::thread::sleep(Duration::from_millis(5));
                    ran.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap()
            })
            .collect();
        for job in jobs {
            job.wait();
        }
        assert_eq!(ran.load(Ordering::SeqCst), 16);
        assert!(idle_workers() <= MAX_IDLE);
    }
}
