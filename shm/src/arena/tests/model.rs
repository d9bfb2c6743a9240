//! Random operation sequences against a model: a vector of page states
//! with the kernel's semantics and first-fit placement, spelled out the
//! simplest way.

use super::{Fixture, setup_arena};
use crate::arena::geometry::{ALLOCATED_OFF, FREED_OFF};
use crate::arena::*;
use PageState::*;
use proptest::prelude::*;

/// Pages: not a multiple of 8, so the padding of the last word counts.
const N: u32 = 37;

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        count: u32,
        at: Option<u32>,
    },
    Free {
        first: u32,
        count: u32,
    },
    Reserve {
        first: u32,
        count: u32,
    },
    FaultIn {
        page: u32,
    },
    /// One `take_freed_for_release` call from page 0 into 2 slots; the
    /// ranges are kept for a later `End`.
    Take,
    /// Ends the kept ranges' release: punched (`finish_release`) or not
    /// (`cancel_release`).
    End {
        punched: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let page = 0..N + 2;
    prop_oneof![
        6 => (0..6u32, prop::option::weighted(0.3, page.clone()))
            .prop_map(|(count, at)| Op::Alloc { count, at }),
        4 => (page.clone(), 0..7u32).prop_map(|(first, count)| Op::Free { first, count }),
        1 => (page.clone(), 0..4u32).prop_map(|(first, count)| Op::Reserve { first, count }),
        1 => page.prop_map(|page| Op::FaultIn { page }),
        1 => Just(Op::Take),
        1 => any::<bool>().prop_map(|punched| Op::End { punched }),
    ]
}

struct Model {
    pages: Vec<PageState>,
    releasing: Vec<PageRange>,
}

impl Model {
    fn available(&self, first: u32, count: u32) -> bool {
        (first..first + count).all(|p| self.pages[p as usize].is_available())
    }

    /// The first page allocated and the pages that need zeroing.
    fn alloc(&mut self, count: u32, at: Option<u32>) -> Result<(u32, Vec<u32>), ArenaError> {
        if count == 0 || count > N || at.is_some_and(|p| p > N - count) {
            return Err(ArenaError::InvalidArgument(""));
        }
        let first = match at {
            Some(p) if self.available(p, count) => p,
            Some(_) => return Err(ArenaError::RangeInUse),
            None => (0..=N - count)
                .find(|&p| self.available(p, count))
                .ok_or(ArenaError::NoSpace)?,
        };
        let mut zero = vec![];
        for p in first..first + count {
            if self.pages[p as usize] == Freed {
                zero.push(p);
            }
            self.pages[p as usize] = Allocated;
        }
        Ok((first, zero))
    }

    fn free(&mut self, first: u32, count: u32) -> u32 {
        let mut n = 0;
        for p in first..first.saturating_add(count).min(N) {
            let s = &mut self.pages[p as usize];
            if matches!(s, Allocated | Reserved) {
                *s = Freed;
                n += 1;
            }
        }
        n
    }

    fn reserve(&mut self, first: u32, count: u32) -> Result<(), ArenaError> {
        if count == 0 {
            return Ok(());
        }
        if first + count > N {
            return Err(ArenaError::InvalidArgument(""));
        }
        if !self.available(first, count) {
            return Err(ArenaError::RangeInUse);
        }
        for p in first..first + count {
            self.pages[p as usize] = Reserved;
        }
        Ok(())
    }

    fn fault_in(&mut self, page: u32) -> Result<FaultIn, ArenaError> {
        let s = self
            .pages
            .get_mut(page as usize)
            .ok_or(ArenaError::InvalidArgument(""))?;
        let needs_zeroing = match *s {
            Allocated => return Ok(FaultIn::Present),
            Releasing => return Err(ArenaError::RangeInUse),
            Free => false,
            Freed | Reserved => true,
        };
        *s = Allocated;
        Ok(FaultIn::Allocated { needs_zeroing })
    }

    /// The maximal runs of FREED pages.
    fn freed_runs(&self) -> Vec<PageRange> {
        let mut runs: Vec<PageRange> = vec![];
        for p in 0..N {
            if self.pages[p as usize] != Freed {
                continue;
            }
            match runs.last_mut() {
                Some(r) if r.end() == p => r.count += 1,
                _ => runs.push(PageRange { first: p, count: 1 }),
            }
        }
        runs
    }

    fn count(&self, s: PageState) -> u32 {
        self.pages.iter().filter(|&&p| p == s).count() as u32
    }
}

/// Same errors, ignoring the reasons' wording.
fn same_err(a: ArenaError, b: ArenaError) -> bool {
    matches!(
        (a, b),
        (
            ArenaError::InvalidArgument(_),
            ArenaError::InvalidArgument(_)
        )
    ) || a == b
}

fn zero_pages(r: &AllocResult) -> Vec<u32> {
    r.needs_zeroing
        .as_slice()
        .iter()
        .flat_map(|z| z.first..z.end())
        .collect()
}

fn check_matches(f: &Fixture, m: &Model) -> Result<(), TestCaseError> {
    let bytes: Vec<PageState> = f.bytes().into_iter().map(PageState::from_byte).collect();
    prop_assert_eq!(&bytes, &m.pages);
    for p in 0..N {
        let want = if m.pages[p as usize] == Allocated {
            f.geom.pte(p)
        } else {
            0
        };
        prop_assert_eq!(f.pte(p), want, "PTE of page {}", p);
    }
    prop_assert_eq!(f.header_u32(ALLOCATED_OFF), m.count(Allocated));
    prop_assert_eq!(f.header_u32(FREED_OFF), m.count(Freed));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every operation gives the model's result and leaves the model's
    /// states, PTEs and counters.
    #[test]
    fn arena_matches_the_model(ops in prop::collection::vec(op(), 1..120)) {
        let f = setup_arena(N);
        let mut m = Model { pages: vec![Free; N as usize], releasing: vec![] };
        for op in ops {
            match op {
                Op::Alloc { count, at } => match (f.alloc(count, at), m.alloc(count, at)) {
                    (Ok(got), Ok((first, zero))) => {
                        prop_assert_eq!((got.first_page, got.count), (first, count));
                        prop_assert_eq!(zero_pages(&got), zero);
                    }
                    (Err(a), Err(b)) => prop_assert!(same_err(a, b), "{:?} vs {:?}", a, b),
                    (got, want) => prop_assert!(false, "{:?} vs {:?}", got, want),
                },
                Op::Free { first, count } => {
                    prop_assert_eq!(f.free(first, count), m.free(first, count));
                }
                Op::Reserve { first, count } => {
                    let got = reserve(&f.geom, &f.states(), first, count);
                    let want = m.reserve(first, count);
                    prop_assert!(got == want || same_err(got.unwrap_err(), want.unwrap_err()));
                }
                Op::FaultIn { page } => {
                    let got = fault_in(&f.geom, &f.states(), &f.ptes(), page);
                    let want = m.fault_in(page);
                    prop_assert!(got == want || same_err(got.unwrap_err(), want.unwrap_err()));
                }
                Op::Take => {
                    let mut buf = [PageRange::default(); 2];
                    let batch = take_freed_for_release(&f.geom, &f.states(), 0, &mut buf).unwrap();
                    let runs = m.freed_runs();
                    let taken = &runs[..runs.len().min(2)];
                    prop_assert_eq!(&buf[..batch.ranges], taken);
                    prop_assert_eq!(batch.resume, runs.get(2).map(|r| r.first));
                    for r in taken {
                        for p in r.first..r.end() {
                            m.pages[p as usize] = Releasing;
                        }
                    }
                    m.releasing.extend_from_slice(taken);
                }
                Op::End { punched } => {
                    let (n, to) = if punched {
                        (finish_release(&f.geom, &f.states(), &m.releasing), Free)
                    } else {
                        (cancel_release(&f.geom, &f.states(), &m.releasing), Freed)
                    };
                    let n = n.unwrap();
                    let mut want = 0;
                    for r in m.releasing.drain(..) {
                        for p in r.first..r.end() {
                            if m.pages[p as usize] == Releasing {
                                m.pages[p as usize] = to;
                                want += 1;
                            }
                        }
                    }
                    prop_assert_eq!(n, want);
                }
            }
            check_matches(&f, &m)?;
        }
    }
}
