//! Costs of the arena's page bookkeeping (`shm::arena`) on a 4 GiB arena
//! (2^20 pages), on the host, through the same bounds-checked
//! `StorageView`s the guest uses: the common cases (first-fit allocation
//! and free of single pages, guided by the hint) and the worst cases
//! (a search over the whole state array, a release pass over it).
//!
//! `cargo bench -p shm --bench arena`; prints the median over `ROUNDS`
//! rounds of each measurement, per operation or per page. The guest
//! runtime is built with LTO, which inlines `StorageView`'s accesses
//! into the scans; `CARGO_PROFILE_BENCH_LTO=true cargo bench -p shm
//! --bench arena` measures that build (the host's is without LTO).

use shm::arena::{self, ArenaGeometry, PageRange};
use shm::maps::{MapMemory, StorageView};
use std::hint::black_box;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

const NPAGES: u32 = arena::geometry::MAX_PAGES;
const ROUNDS: usize = 11;
/// Single-page operations timed per round.
const SINGLES: u32 = 100_000;

struct Arena {
    geom: ArenaGeometry,
    states: Vec<AtomicU64>,
    ptes: Vec<AtomicU64>,
}

impl Arena {
    fn new() -> Arena {
        let geom = ArenaGeometry::new(NPAGES, 0x1_0000_0000, 0x7f48_0000_0000).expect("geometry");
        let words = |bytes: usize| (0..bytes / 8).map(|_| AtomicU64::new(0)).collect();
        let a = Arena {
            geom,
            states: words(geom.states_size()),
            ptes: words(geom.ptes_size()),
        };
        arena::init(&geom, &a.states(), 0x20_0000).expect("init");
        a
    }

    fn states(&self) -> StorageView<'_> {
        StorageView::from_atomic(&self.states, 0x10_0000)
    }

    fn ptes(&self) -> StorageView<'_> {
        StorageView::from_atomic(&self.ptes, 0x20_0000)
    }

    fn alloc(&self, count: u32, at: Option<u32>) -> Result<arena::AllocResult, arena::ArenaError> {
        arena::alloc(&self.geom, &self.states(), &self.ptes(), count, at)
    }

    fn free(&self, first: u32, count: u32) -> u32 {
        arena::free(&self.geom, &self.states(), &self.ptes(), first, count).expect("free")
    }

    /// A whole release pass; returns the pages released.
    fn release(&self) -> u32 {
        let mut buf = [PageRange::default(); 64];
        let (mut from, mut total) = (Some(0), 0);
        while let Some(at) = from {
            let batch = arena::take_freed_for_release(&self.geom, &self.states(), at, &mut buf)
                .expect("take");
            total += arena::finish_release(&self.geom, &self.states(), &buf[..batch.ranges])
                .expect("finish");
            from = batch.resume;
        }
        total
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Runs `setup` then times `run` (which returns how many units it did),
/// `ROUNDS` times; the median ns per unit.
fn measure(setup: impl Fn() -> Arena, run: impl Fn(&Arena) -> u32) -> f64 {
    let samples = (0..ROUNDS)
        .map(|_| {
            let a = setup();
            let start = Instant::now();
            let units = black_box(run(&a));
            start.elapsed().as_nanos() as f64 / f64::from(units.max(1))
        })
        .collect();
    median(samples)
}

/// An arena whose pages `0..n` are allocated, in one call.
fn filled(n: u32) -> Arena {
    let a = Arena::new();
    a.alloc(n, Some(0)).expect("fill");
    a
}

/// An arena of every other page allocated.
fn checkerboard() -> Arena {
    let a = filled(NPAGES);
    for p in (0..NPAGES).step_by(2) {
        a.free(p, 1);
    }
    a.release();
    a
}

fn main() {
    let rows: [(&str, &str, f64); 9] = [
        (
            "alloc 1 page, empty arena, in a row",
            "op",
            measure(Arena::new, |a| {
                (0..SINGLES).filter(|_| a.alloc(1, None).is_ok()).count() as u32
            }),
        ),
        (
            "free 1 page, in a row",
            "op",
            measure(
                || filled(SINGLES),
                |a| (0..SINGLES).map(|p| a.free(p, 1)).sum(),
            ),
        ),
        (
            "alloc 1 page into a freed gap (hint moved back)",
            "op",
            measure(
                || filled(NPAGES),
                |a| {
                    (0..SINGLES)
                        .map(|i| {
                            a.free(i * 8, 1);
                            u32::from(a.alloc(1, None).is_ok())
                        })
                        .sum()
                },
            ),
        ),
        (
            "alloc 1 page, only the last free, hint garbage (2 passes)",
            "op",
            measure(
                || {
                    let a = filled(NPAGES - 1);
                    a.states().store_u32(44, NPAGES).expect("hint");
                    a
                },
                |a| u32::from(a.alloc(1, None).is_ok()),
            ),
        ),
        (
            "alloc 2 pages on a checkerboard: fails after a full scan",
            "op",
            measure(checkerboard, |a| u32::from(a.alloc(2, None).is_err())),
        ),
        (
            "alloc 2^20 pages at once",
            "page",
            measure(Arena::new, |a| a.alloc(NPAGES, None).map_or(0, |r| r.count)),
        ),
        (
            "free 2^20 allocated pages at once",
            "page",
            measure(|| filled(NPAGES), |a| a.free(0, NPAGES)),
        ),
        (
            "release pass, 2^20 FREED pages (take + finish)",
            "page",
            measure(
                || {
                    let a = filled(NPAGES);
                    a.free(0, NPAGES);
                    a
                },
                Arena::release,
            ),
        ),
        (
            "release pass, nothing FREED (whole scan)",
            "op",
            measure(Arena::new, |a| {
                black_box(a.release());
                1
            }),
        ),
    ];
    println!("arena bookkeeping, {NPAGES} pages, median of {ROUNDS} rounds");
    for (what, unit, ns) in rows {
        println!("{what:<60} {ns:>12.1} ns/{unit}");
    }
}
