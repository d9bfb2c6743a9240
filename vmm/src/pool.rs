//! Warm sandboxes cloned from one snapshot, handed out and taken back.
//!
//! A serverless host keeps a pool per function: `get` hands out a sandbox
//! that is ready to run (a warm one if there is one, else a new clone),
//! and dropping the [`PooledSandbox`] gives it back. A sandbox comes back
//! to the pool only in its snapshot's state: by default every returned
//! sandbox is reset to the snapshot (no state leaks from one borrower to
//! the next); [`Reuse::KeepState`] keeps what the last borrower left, and
//! resets only sandboxes that were poisoned. A sandbox whose reset fails
//! is dropped, never handed out again: the pool never hands out a poisoned
//! sandbox.

use crate::sandbox::{Sandbox, SandboxError};
use crate::snapshot::Snapshot;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What happens to a sandbox given back to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reuse {
    /// Reset to the snapshot, so each borrower starts from the same state.
    #[default]
    ResetToSnapshot,
    /// Kept as the last borrower left it (maps, globals), unless it was
    /// poisoned, which is reset.
    KeepState,
}

/// Counters of a pool's life, for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Sandboxes handed out warm.
    pub warm_hits: u64,
    /// Sandboxes cloned because none was warm.
    pub cold_clones: u64,
    /// Sandboxes reset when given back.
    pub resets: u64,
    /// Sandboxes dropped because their reset failed.
    pub discarded: u64,
}

#[derive(Debug, Default)]
struct State {
    warm: Vec<Sandbox>,
    stats: PoolStats,
}

/// Warm clones of one snapshot. `Sync`: share it between request threads.
#[derive(Debug)]
pub struct SandboxPool {
    snapshot: Arc<Snapshot>,
    keep: usize,
    reuse: Reuse,
    state: Mutex<State>,
    /// Signalled when a warm sandbox is taken, for a [`Refiller`].
    taken: Condvar,
}

impl SandboxPool {
    /// A pool of clones of `snapshot` that keeps up to `keep` warm ones,
    /// starting with `warm` (at most `keep`) made now.
    pub fn new(
        snapshot: Arc<Snapshot>,
        warm: usize,
        keep: usize,
        reuse: Reuse,
    ) -> Result<SandboxPool, SandboxError> {
        let pool = SandboxPool {
            snapshot,
            keep,
            reuse,
            state: Mutex::default(),
            taken: Condvar::new(),
        };
        pool.fill(warm.min(keep))?;
        Ok(pool)
    }

    /// Clones sandboxes until `count` are warm (a refill thread's job).
    pub fn fill(&self, count: usize) -> Result<(), SandboxError> {
        let count = count.min(self.keep);
        while self.lock().warm.len() < count {
            let sandbox = self.snapshot.sandbox()?;
            self.lock().warm.push(sandbox);
        }
        Ok(())
    }

    /// A sandbox in the snapshot's state (or, with [`Reuse::KeepState`],
    /// as its last borrower left it), never poisoned.
    pub fn get(&self) -> Result<PooledSandbox<'_>, SandboxError> {
        let warm = {
            let mut state = self.lock();
            let sandbox = state.warm.pop();
            self.taken.notify_all();
            if sandbox.is_some() {
                state.stats.warm_hits += 1;
            } else {
                state.stats.cold_clones += 1;
            }
            sandbox
        };
        let sandbox = match warm {
            Some(sandbox) => sandbox,
            None => self.snapshot.sandbox()?,
        };
        Ok(PooledSandbox {
            pool: self,
            sandbox: Some(sandbox),
        })
    }

    /// Keeps the pool full from a thread of its own, so that `get` finds
    /// a warm sandbox instead of paying for a clone: the thread clones
    /// whenever fewer than `keep` are warm, until the [`Refiller`] is
    /// dropped. A clone that fails is retried after a pause.
    pub fn refill_in_background(self: &Arc<Self>) -> std::io::Result<Refiller> {
        let stop = Arc::new(AtomicBool::new(false));
        let (pool, stopped) = (Arc::clone(self), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("bpfvisor-pool".into())
            .spawn(move || pool.refill_until(&stopped))?;
        Ok(Refiller {
            pool: Arc::clone(self),
            stop,
            thread: Some(thread),
        })
    }

    fn refill_until(&self, stop: &AtomicBool) {
        while !stop.load(Ordering::Acquire) {
            {
                let state = self.lock();
                if state.warm.len() >= self.keep {
                    // Woken by a `get`, or by the Refiller's drop; the
                    // timeout only bounds a missed wakeup.
                    let _ = self.taken.wait_timeout(state, Duration::from_millis(100));
                    continue;
                }
            }
            match self.snapshot.sandbox() {
                Ok(sandbox) => {
                    let mut state = self.lock();
                    if state.warm.len() < self.keep {
                        state.warm.push(sandbox);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Warm sandboxes now.
    pub fn warm(&self) -> usize {
        self.lock().warm.len()
    }

    /// What the pool has done so far.
    pub fn stats(&self) -> PoolStats {
        self.lock().stats
    }

    /// The snapshot its sandboxes come from.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `sandbox` back: reset as the policy says, kept if there is
    /// room, dropped otherwise.
    fn give_back(&self, mut sandbox: Sandbox) {
        if self.lock().warm.len() >= self.keep {
            return;
        }
        if self.reuse == Reuse::ResetToSnapshot || sandbox.is_poisoned() {
            let ok = sandbox.reset().is_ok() && !sandbox.is_poisoned();
            let mut state = self.lock();
            state.stats.resets += 1;
            if !ok {
                state.stats.discarded += 1;
                return;
            }
        }
        let mut state = self.lock();
        if state.warm.len() < self.keep {
            state.warm.push(sandbox);
        }
    }
}

/// The thread [`SandboxPool::refill_in_background`] started; stops it
/// (and waits for it) when dropped.
#[derive(Debug)]
pub struct Refiller {
    pool: Arc<SandboxPool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Refiller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        {
            // Under the lock, so the thread is either before its check of
            // `stop` or waiting, and sees the notification.
            let _state = self.pool.lock();
            self.pool.taken.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A sandbox borrowed from a [`SandboxPool`]; dereferences to the
/// [`Sandbox`], goes back to the pool when dropped.
#[derive(Debug)]
pub struct PooledSandbox<'p> {
    pool: &'p SandboxPool,
    sandbox: Option<Sandbox>,
}

impl PooledSandbox<'_> {
    /// Keeps the sandbox out of the pool for good.
    pub fn detach(mut self) -> Sandbox {
        self.sandbox
            .take()
            .expect("a pooled sandbox is present until dropped")
    }
}

impl Deref for PooledSandbox<'_> {
    type Target = Sandbox;

    fn deref(&self) -> &Sandbox {
        self.sandbox
            .as_ref()
            .expect("a pooled sandbox is present until dropped")
    }
}

impl DerefMut for PooledSandbox<'_> {
    fn deref_mut(&mut self) -> &mut Sandbox {
        self.sandbox
            .as_mut()
            .expect("a pooled sandbox is present until dropped")
    }
}

impl Drop for PooledSandbox<'_> {
    fn drop(&mut self) {
        if let Some(sandbox) = self.sandbox.take() {
            self.pool.give_back(sandbox);
        }
    }
}
