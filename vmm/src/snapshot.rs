//! Snapshots: a loaded (and perhaps initialised) sandbox frozen, and new
//! sandboxes cloned from it copy-on-write.
//!
//! Note [Snapshots and clones]
//! A snapshot is a memfd holding a copy of the sandbox's guest memory
//! (only the extents that hold data: the memfd is sparse, as guest memory
//! is), another for its arena if it has one, and the host's record of
//! what is loaded (programs, maps, rings, the arena's geometry), taken
//! while no vCPU runs. A clone maps that memfd privately
//! (`MAP_PRIVATE`): it starts with the snapshot's bytes without copying
//! any, and a page is copied only when the clone first writes it. Its
//! vCPUs start from the boot registers at the dispatch loop, as after a
//! reset, with fresh random seeds and its own clock. What the host shares
//! with the guest by mapping guest memory a second time cannot go through
//! a private mapping (the second mapping would not see the clone's
//! writes): each ring buffer of a clone gets a memfd of its own, with the
//! snapshot's bytes of the ring, mapped shared over the ring's pages.
//! `Sandbox::reset` of a clone maps the snapshot again over its memory
//! (dropping every page it copied: it is the snapshot again, globals and
//! maps included) and its rings' memfds over their pages (rings keep their
//! records, as a reset keeps any sandbox's rings).
//!
//! An arena is cloned the same way, its snapshot memfd mapped privately,
//! at the template's guest addresses but at a host address of the clone's
//! own, which the host API translates (Note [Arena clones] in
//! `crate::arena`); a reset maps the snapshot over it again too.
//!
//! A clone loads nothing more (what it loaded would be gone at its next
//! reset). Not yet: snapshots of clones.

use crate::arena::ArenaImage;
use crate::memory::{self, GuestMemory};
use crate::program::{Loaded, Seeds};
use crate::ringbuf::RingSpec;
use crate::sandbox::{Sandbox, SandboxError};
use shm::layout::Layout;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Why a snapshot could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A run hit its deadline and the sandbox was not reset since.
    #[error("The sandbox is poisoned (a run hit its deadline); reset it before taking a snapshot")]
    Poisoned,
    /// The sandbox is itself a clone.
    #[error("A sandbox cloned from a snapshot cannot be snapshotted again; snapshot the original")]
    Clone,
    /// A vCPU could not be stopped for the copy.
    #[error("A vCPU of the sandbox failed")]
    Vcpu(#[source] crate::sandbox::RunError),
    /// Copying guest memory failed.
    #[error("Failed to copy guest memory into the snapshot")]
    Copy(#[source] std::io::Error),
    /// Copying the arena failed.
    #[error("Failed to copy the arena into the snapshot")]
    CopyArena(#[source] std::io::Error),
}

/// A frozen sandbox to clone from. Cheap to share (`Arc`) between
/// threads; each clone is a [`Sandbox`] of its own.
#[derive(Debug)]
pub struct Snapshot {
    layout: Layout,
    limits: crate::sandbox::Limits,
    poll: Option<std::time::Duration>,
    vcpu_affinity: Option<crate::CpuSet>,
    memfd: File,
    arena: Option<ArenaImage>,
    loaded: Loaded,
    rings: Vec<RingSpec>,
    next_seq: u64,
    bytes: u64,
}

impl Sandbox {
    /// Freezes this sandbox as it is now — guest memory, maps, global data,
    /// loaded programs, rings, arena — into a [`Snapshot`] to clone sandboxes from
    /// (Note [Snapshots and clones]). Waits for running calls to end; costs
    /// a copy of the memory in use (not of the whole address map).
    pub fn snapshot(&self) -> Result<Snapshot, SnapshotError> {
        if self.is_poisoned() {
            return Err(SnapshotError::Poisoned);
        }
        let source = self.memory.memfd().ok_or(SnapshotError::Clone)?;
        let all: Vec<usize> = (0..self.nr_cpus()).collect();
        // No call runs while the memory is copied.
        let idle = self.lock_cpus(&all).map_err(SnapshotError::Vcpu)?;
        // A vCPU waiting in the guest for its next call (polling) leaves
        // it first: the copy is of a guest that runs nothing.
        for vcpu in &idle {
            vcpu.park()
                .map_err(|e| SnapshotError::Vcpu(crate::sandbox::RunError::from(e)))?;
        }
        let size = self.memory.size();
        let memfd = memory::memfd(c"bpfvisor-snapshot").map_err(SnapshotError::Copy)?;
        memfd.set_len(size).map_err(SnapshotError::Copy)?;
        let mut bytes =
            memory::copy_extents(source, 0, &memfd, 0, size).map_err(SnapshotError::Copy)?;
        let arena = match &self.loaded.arena {
            Some(arena) => Some(arena.image().map_err(SnapshotError::CopyArena)?),
            None => None,
        };
        bytes += arena.as_ref().map_or(0, ArenaImage::bytes);
        Ok(Snapshot {
            layout: self.layout,
            limits: self.limits,
            poll: self.poll,
            vcpu_affinity: self.vcpu_affinity,
            memfd,
            arena,
            loaded: self.loaded.for_clone(),
            rings: self.loaded.rings.specs(),
            next_seq: self.next_seq.load(Ordering::SeqCst),
            bytes,
        })
    }
}

impl Snapshot {
    /// A new sandbox in the snapshot's state, sharing its memory
    /// copy-on-write (Note [Snapshots and clones]).
    pub fn sandbox(&self) -> Result<Sandbox, SandboxError> {
        let memory = GuestMemory::copy_on_write(&self.memfd, self.layout.memory_size())
            .map_err(SandboxError::CreateMemory)?;
        let mut sandbox = Sandbox::boot(
            self.layout,
            self.limits,
            crate::sandbox::VcpuPolicy {
                poll: self.poll,
                affinity: self.vcpu_affinity,
            },
            Arc::new(memory),
            self.loaded.for_clone(),
            self.next_seq,
            Seeds::All,
        )?;
        if let Some(image) = &self.arena {
            sandbox
                .adopt_arena(image)
                .map_err(SandboxError::InstallArena)?;
        }
        for spec in &self.rings {
            sandbox
                .adopt_ring(spec.clone(), &self.memfd)
                .map_err(SandboxError::InstallRings)?;
        }
        Ok(sandbox)
    }

    /// The address map of its sandboxes.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Bytes the snapshot holds: the extents with data of guest memory
    /// and of the arena.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}
