//! Tests over whole arenas: the kernel's semantics (and its selftests'
//! expectations), a property test against a model, threads standing in
//! for vCPUs and the host, and garbage in the regions.

mod concurrent;
mod corrupt;
mod model;
mod semantics;

use super::*;
use crate::maps::StorageView;
use crate::maps::memory::GUEST_SPIN_TRIES;
use std::sync::atomic::{AtomicU64, Ordering};

/// Guest-physical address of the fixtures' page 0.
pub(crate) const GPA: u64 = 0x1_0000_0000;
/// Virtual address of the fixtures' page 0.
pub(crate) const VM: u64 = 0x7f48_0000_0000;
/// Guest address the fixtures' PTE array pretends to be at.
pub(crate) const PTES_ADDR: u64 = 0x20_0000;

/// An arena's two regions, initialised.
pub(crate) struct Fixture {
    pub geom: ArenaGeometry,
    pub states: Vec<AtomicU64>,
    pub ptes: Vec<AtomicU64>,
}

impl Fixture {
    /// The state region as the host sees it (short lock waits).
    pub fn states(&self) -> StorageView<'_> {
        StorageView::from_atomic(&self.states, 0x10_0000)
    }

    /// The PTE array.
    pub fn ptes(&self) -> StorageView<'_> {
        StorageView::from_atomic(&self.ptes, PTES_ADDR)
    }

    /// The state region as a vCPU sees it: waits for a preempted holder.
    pub fn vcpu_states(&self) -> StorageView<'_> {
        self.states().with_spin_tries(GUEST_SPIN_TRIES)
    }

    /// Every page's state byte.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.geom.npages() as usize];
        crate::maps::MapMemory::read(&self.states(), geometry::HEADER_SIZE, &mut out).unwrap();
        out
    }

    /// Sets page `page`'s state byte to `b`, as a program could.
    pub fn poke(&self, page: u32, b: u8) {
        crate::maps::MapMemory::write(&self.states(), geometry::HEADER_SIZE + page as usize, &[b])
            .unwrap();
    }

    /// The PTE of page `page`.
    pub fn pte(&self, page: u32) -> u64 {
        self.ptes[page as usize].load(Ordering::Relaxed)
    }

    /// A header field at `off`.
    pub fn header_u32(&self, off: usize) -> u32 {
        crate::maps::MapMemory::load_u32(&self.states(), off).unwrap()
    }

    /// `alloc` through the host's views.
    pub fn alloc(&self, count: u32, at: Option<u32>) -> Result<AllocResult, ArenaError> {
        alloc(&self.geom, &self.states(), &self.ptes(), count, at)
    }

    /// `free` through the host's views.
    pub fn free(&self, first: u32, count: u32) -> u32 {
        free(&self.geom, &self.states(), &self.ptes(), first, count).unwrap()
    }

    /// A whole release pass, as the host runs it at the end of an
    /// invocation, with a small buffer so that batches are exercised;
    /// returns the ranges "punched".
    pub fn release(&self) -> Vec<PageRange> {
        let mut punched = vec![];
        let mut from = Some(0);
        let mut buf = [PageRange::default(); 3];
        while let Some(at) = from {
            let batch = take_freed_for_release(&self.geom, &self.states(), at, &mut buf).unwrap();
            let taken = &buf[..batch.ranges];
            punched.extend_from_slice(taken);
            let total: u32 = taken.iter().map(|r| r.count).sum();
            assert_eq!(
                finish_release(&self.geom, &self.states(), taken).unwrap(),
                total
            );
            from = batch.resume;
        }
        punched
    }
}

/// An arena of `npages` pages, initialised.
pub(crate) fn setup_arena(npages: u32) -> Fixture {
    let geom = ArenaGeometry::new(npages, GPA, VM).unwrap();
    let words = |bytes: usize| (0..bytes / 8).map(|_| AtomicU64::new(0)).collect();
    let f = Fixture {
        geom,
        states: words(geom.states_size()),
        ptes: words(geom.ptes_size()),
    };
    init(&geom, &f.states(), PTES_ADDR).unwrap();
    f
}
