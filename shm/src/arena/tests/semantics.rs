//! The kernel's semantics, operation by operation, and the expectations of
//! its selftests (`tools/testing/selftests/bpf/progs/verifier_arena*.c`).

use super::{Fixture, GPA, setup_arena};
use crate::arena::geometry::{ALLOCATED_OFF, FREED_OFF};
use crate::arena::state::{ALLOCATED, FREE, FREED, RELEASING, RESERVED};
use crate::arena::*;
use crate::errno;

fn range(first: u32, count: u32) -> PageRange {
    PageRange { first, count }
}

fn zeroing(r: &AllocResult) -> Vec<PageRange> {
    r.needs_zeroing.as_slice().to_vec()
}

#[test]
fn allocations_take_the_lowest_free_pages_and_write_their_ptes() {
    let f = setup_arena(16);
    let a = f.alloc(3, None).unwrap();
    assert_eq!((a.first_page, a.count), (0, 3));
    assert!(a.needs_zeroing.is_empty());
    let b = f.alloc(2, None).unwrap();
    assert_eq!(b.first_page, 3);
    assert_eq!(f.geom.user_addr(b.first_page), super::VM + 3 * 4096);
    for page in 0..5 {
        assert_eq!(
            f.pte(page),
            (GPA + u64::from(page) * 4096) | pte::ARENA_FLAGS
        );
    }
    assert_eq!(f.pte(5), 0);
    assert_eq!(
        &f.bytes()[..6],
        &[ALLOCATED, ALLOCATED, ALLOCATED, ALLOCATED, ALLOCATED, FREE]
    );
    assert_eq!(f.header_u32(ALLOCATED_OFF), 5);
}

#[test]
fn allocations_at_a_page_need_every_page_free() {
    let f = setup_arena(16);
    assert_eq!(f.alloc(4, Some(10)).unwrap().first_page, 10);
    assert_eq!(f.alloc(2, Some(9)), Err(ArenaError::RangeInUse));
    assert_eq!(f.alloc(1, Some(13)), Err(ArenaError::RangeInUse));
    assert_eq!(f.alloc(2, Some(14)).unwrap().first_page, 14);
    assert!(matches!(
        f.alloc(1, Some(16)),
        Err(ArenaError::InvalidArgument(_))
    ));
    assert!(matches!(
        f.alloc(3, Some(14)),
        Err(ArenaError::InvalidArgument(_))
    ));
    assert!(matches!(
        f.alloc(0, None),
        Err(ArenaError::InvalidArgument(_))
    ));
    assert!(matches!(
        f.alloc(17, None),
        Err(ArenaError::InvalidArgument(_))
    ));
    // A run that does not fit below page 10 goes nowhere else.
    assert_eq!(f.alloc(11, None), Err(ArenaError::NoSpace));
    assert_eq!(f.alloc(10, None).unwrap().first_page, 0);
}

#[test]
fn exhaustion_fails_until_pages_are_freed() {
    let f = setup_arena(8);
    assert_eq!(f.alloc(8, None).unwrap().first_page, 0);
    assert_eq!(f.alloc(1, None), Err(ArenaError::NoSpace));
    assert_eq!(f.free(3, 2), 2);
    assert_eq!(f.alloc(3, None), Err(ArenaError::NoSpace));
    assert_eq!(f.alloc(2, None).unwrap().first_page, 3);
    assert_eq!(ArenaError::NoSpace.errno(), errno::ENOSPC);
}

#[test]
fn free_clears_allocated_pages_and_skips_the_others() {
    let f = setup_arena(32);
    f.alloc(2, Some(1)).unwrap();
    f.alloc(1, Some(5)).unwrap();
    f.alloc(1, Some(30)).unwrap();
    reserve(&f.geom, &f.states(), 7, 1).unwrap();
    assert_eq!(f.free(5, 1), 1);
    // 0 FREE, 1-2 ALLOCATED, 5 FREED, 7 RESERVED: the allocated and the
    // reserved pages are freed, the rest is left as it is.
    assert_eq!(f.free(0, 8), 3);
    let b = f.bytes();
    assert_eq!(
        &b[..8],
        &[FREE, FREED, FREED, FREE, FREE, FREED, FREE, FREED]
    );
    assert!((0..8).all(|p| f.pte(p) == 0));
    assert_eq!(f.header_u32(ALLOCATED_OFF), 1);
    assert_eq!(f.header_u32(FREED_OFF), 4);
    // Clipped at the end; nothing past it, nothing from past it.
    assert_eq!(f.free(29, u32::MAX), 1);
    assert_eq!(f.free(32, 1), 0);
    assert_eq!(f.free(u32::MAX, u32::MAX), 0);
    assert_eq!(f.free(3, 0), 0);
    // A freed page is the next one handed out (first fit), as
    // big_alloc1 expects.
    assert_eq!(f.alloc(1, None).unwrap().first_page, 0);
    assert_eq!(f.alloc(1, None).unwrap().first_page, 1);
}

#[test]
fn reserved_pages_are_never_allocated() {
    // basic_reserve1/2, reserve_twice, reserve_invalid_region,
    // request_partially_reserved.
    let f = setup_arena(2);
    assert_eq!(f.alloc(1, None).unwrap().first_page, 0);
    reserve(&f.geom, &f.states(), 1, 1).unwrap();
    assert_eq!(f.alloc(1, Some(1)), Err(ArenaError::RangeInUse));
    assert_eq!(f.alloc(1, None), Err(ArenaError::NoSpace));
    let err = reserve(&f.geom, &f.states(), 1, 1).unwrap_err();
    assert_eq!((err, err.errno()), (ArenaError::RangeInUse, errno::EBUSY));
    assert_eq!(
        reserve(&f.geom, &f.states(), 0, 1),
        Err(ArenaError::RangeInUse)
    );
    for (first, count) in [(0, 3), (1, 2), (0, 4096), (0, u32::MAX), (u32::MAX, 1)] {
        let err = reserve(&f.geom, &f.states(), first, count).unwrap_err();
        assert_eq!(err.errno(), errno::EINVAL, "{first} {count}");
    }
    assert_eq!(reserve(&f.geom, &f.states(), 5, 0), Ok(()));

    let f = setup_arena(16);
    reserve(&f.geom, &f.states(), 3, 4).unwrap();
    assert_eq!(f.alloc(5, Some(0)), Err(ArenaError::RangeInUse));
    assert_eq!(f.alloc(4, None).unwrap().first_page, 7);
    assert_eq!(f.pte(3), 0);
    assert_eq!(
        &f.bytes()[2..8],
        &[FREE, RESERVED, RESERVED, RESERVED, RESERVED, ALLOCATED]
    );
}

#[test]
fn freeing_reserved_and_allocated_pages_together_makes_them_allocatable() {
    // free_reserved.
    let f = setup_arena(8);
    f.alloc(2, Some(2)).unwrap();
    reserve(&f.geom, &f.states(), 4, 2).unwrap();
    assert_eq!(f.free(3, 2), 2);
    let a = f.alloc(2, Some(3)).unwrap();
    assert_eq!(a.first_page, 3);
    // Both may hold old data until released.
    assert_eq!(zeroing(&a), [range(3, 2)]);
}

#[test]
fn freed_pages_are_reused_and_listed_for_zeroing() {
    let f = setup_arena(16);
    f.alloc(8, None).unwrap();
    f.free(2, 1);
    f.release();
    f.free(1, 1);
    f.free(3, 1);
    // 1 FREED, 2 FREE (released), 3 FREED.
    let a = f.alloc(3, Some(1)).unwrap();
    assert_eq!(zeroing(&a), [range(1, 1), range(3, 1)]);
    assert_eq!(a.needs_zeroing.pages(), 2);
    assert_eq!(f.header_u32(FREED_OFF), 0);
    // A run of FREED pages next to FREE ones, found anywhere.
    f.free(5, 3);
    let b = f.alloc(6, None).unwrap();
    assert_eq!((b.first_page, zeroing(&b)), (5, vec![range(5, 3)]));
    // Released pages need no zeroing.
    f.free(0, 16);
    assert_eq!(f.release(), [range(0, 11)]);
    let c = f.alloc(16, None).unwrap();
    assert!(c.needs_zeroing.is_empty());
}

#[test]
fn the_release_cycle_moves_freed_pages_to_free_through_releasing() {
    let f = setup_arena(64);
    f.alloc(64, None).unwrap();
    for first in [1, 2, 10, 12, 40, 63] {
        f.free(first, 1);
    }
    f.free(20, 9);
    assert_eq!(freed_hint(&f.states()).unwrap(), 15);
    let mut buf = [PageRange::default(); 3];
    let batch = take_freed_for_release(&f.geom, &f.states(), 0, &mut buf).unwrap();
    assert_eq!(
        batch,
        ReleaseBatch {
            ranges: 3,
            resume: Some(20)
        }
    );
    assert_eq!(buf, [range(1, 2), range(10, 1), range(12, 1)]);
    assert_eq!(f.bytes()[1], RELEASING);
    // Pages being released are skipped by allocations, refused at an
    // address and by the host's fault-in.
    assert_eq!(f.alloc(1, Some(1)), Err(ArenaError::RangeInUse));
    assert_eq!(
        fault_in(&f.geom, &f.states(), &f.ptes(), 1),
        Err(ArenaError::RangeInUse)
    );
    let a = f.alloc(2, None).unwrap();
    assert_eq!(a.first_page, 20);
    // A failed punch puts them back to FREED, a successful one to FREE.
    assert_eq!(cancel_release(&f.geom, &f.states(), &buf[..1]).unwrap(), 2);
    assert_eq!(finish_release(&f.geom, &f.states(), &buf[1..]).unwrap(), 2);
    assert_eq!(finish_release(&f.geom, &f.states(), &buf[1..]).unwrap(), 0);
    assert_eq!(
        &f.bytes()[..13],
        &[1, FREED, FREED, 1, 1, 1, 1, 1, 1, 1, FREE, 1, FREE]
    );
    assert_eq!(
        f.release(),
        [range(1, 2), range(22, 7), range(40, 1), range(63, 1)]
    );
    assert_eq!(freed_hint(&f.states()).unwrap(), 0);
    // The cursor went back down: the lowest released page is next.
    assert_eq!(f.alloc(1, None).unwrap().first_page, 1);
    assert!(f.release().is_empty());
    let empty: &mut [PageRange] = &mut [];
    assert!(matches!(
        take_freed_for_release(&f.geom, &f.states(), 0, empty),
        Err(ArenaError::InvalidArgument(_))
    ));
}

#[test]
fn a_release_scans_a_bounded_number_of_pages_per_call() {
    let f = setup_arena(3 * free::RELEASE_SCAN_PAGES);
    let n = f.geom.npages();
    f.alloc(n, None).unwrap();
    f.free(n - 1, 1);
    let mut buf = [PageRange::default(); 4];
    let mut from = Some(0);
    let mut calls = 0;
    while let Some(at) = from {
        let batch = take_freed_for_release(&f.geom, &f.states(), at, &mut buf).unwrap();
        from = batch.resume;
        calls += 1;
        if from.is_none() {
            assert_eq!(&buf[..batch.ranges], &[range(n - 1, 1)]);
        } else {
            assert_eq!(batch.ranges, 0);
        }
    }
    assert_eq!(calls, 3);
}

#[test]
fn the_host_faults_in_pages_as_user_space_does() {
    let f = setup_arena(8);
    let fault = |p| fault_in(&f.geom, &f.states(), &f.ptes(), p);
    assert_eq!(is_allocated(&f.geom, &f.states(), 2), Ok(false));
    assert_eq!(
        fault(2),
        Ok(FaultIn::Allocated {
            needs_zeroing: false
        })
    );
    assert_eq!(f.pte(2), (GPA + 2 * 4096) | pte::ARENA_FLAGS);
    assert_eq!(is_allocated(&f.geom, &f.states(), 2), Ok(true));
    assert_eq!(fault(2), Ok(FaultIn::Present));
    // The guest cannot allocate it any more.
    assert_eq!(f.alloc(1, Some(2)), Err(ArenaError::RangeInUse));
    f.free(2, 1);
    assert_eq!(
        fault(2),
        Ok(FaultIn::Allocated {
            needs_zeroing: true
        })
    );
    reserve(&f.geom, &f.states(), 5, 1).unwrap();
    assert_eq!(
        fault(5),
        Ok(FaultIn::Allocated {
            needs_zeroing: true
        })
    );
    assert_eq!(f.header_u32(ALLOCATED_OFF), 2);
    assert!(matches!(fault(8), Err(ArenaError::InvalidArgument(_))));
    assert!(matches!(
        is_allocated(&f.geom, &f.states(), 8),
        Err(ArenaError::InvalidArgument(_))
    ));
    // A byte that is no state reads as allocated.
    f.poke(7, 0x99);
    assert_eq!(is_allocated(&f.geom, &f.states(), 7), Ok(true));
    assert_eq!(fault(7), Ok(FaultIn::Present));
}

/// `big_alloc1` of verifier_arena_large.c on a 4 GiB arena, page 0
/// holding the program's `__arena` globals.
#[test]
fn kernel_big_alloc1() {
    let f = setup_arena(geometry::MAX_PAGES);
    let n = f.geom.npages();
    f.alloc(1, Some(0)).unwrap();
    let page1 = f.alloc(1, None).unwrap().first_page;
    assert_eq!(page1, 1);
    assert_eq!(f.alloc(1, Some(n - 1)).unwrap().first_page, n - 1);
    assert!(
        f.alloc(1, Some(f.geom.page_index(super::VM + (1 << 32))))
            .is_err()
    );
    f.free(page1, 1);
    assert_eq!(f.alloc(1, None).unwrap().first_page, page1);
}

/// `big_alloc2`: sequential on the first pass, then into the gaps.
#[test]
fn kernel_big_alloc2() {
    const PAGE_CNT: u32 = 100;
    let f = setup_arena(1 << 16);
    f.alloc(1, Some(0)).unwrap();
    let base = f.alloc(1, None).unwrap().first_page;
    f.free(base, 1);
    for i in 0..PAGE_CNT {
        assert_eq!(f.alloc(1, None).unwrap().first_page - base, i);
    }
    for i in (0..PAGE_CNT).step_by(2) {
        f.free(base + i, 1);
    }
    for _ in 0..PAGE_CNT / 2 {
        let idx = f.alloc(1, None).unwrap().first_page - base;
        assert!(idx < PAGE_CNT && idx.is_multiple_of(2), "{idx}");
    }
    for i in (0..PAGE_CNT).step_by(4) {
        f.free(base + i, 2);
    }
    for _ in 0..PAGE_CNT / 4 {
        let idx = f.alloc(2, None).unwrap().first_page - base;
        assert!(idx < PAGE_CNT && idx.is_multiple_of(2), "{idx}");
    }
    assert!(f.alloc(1, None).unwrap().first_page - base >= PAGE_CNT);
}

#[test]
fn errors_have_errnos_and_messages() {
    let cases = [
        (
            ArenaError::InvalidArgument("why"),
            errno::EINVAL,
            "Invalid arena argument: why",
        ),
        (
            ArenaError::NoSpace,
            errno::ENOSPC,
            "No free arena pages in a long enough run",
        ),
        (
            ArenaError::RangeInUse,
            errno::EBUSY,
            "Arena pages are in use",
        ),
        (ArenaError::Busy, errno::EBUSY, "Arena lock stayed taken"),
        (
            ArenaError::Corrupt,
            errno::EFAULT,
            "Arena header is corrupt",
        ),
        (
            ArenaError::OutOfBounds,
            errno::EFAULT,
            "Access outside the arena's regions",
        ),
    ];
    for (e, n, msg) in cases {
        assert_eq!((e.errno(), e.to_string().as_str()), (n, msg));
    }
}

#[test]
fn views_smaller_than_the_geometry_are_refused_up_front() {
    let f: Fixture = setup_arena(16);
    let short = crate::maps::StorageView::from_atomic(&f.ptes[..1], 0);
    assert_eq!(
        alloc(&f.geom, &f.states(), &short, 1, None),
        Err(ArenaError::OutOfBounds)
    );
    let short = crate::maps::StorageView::from_atomic(&f.states[..2], 0);
    assert_eq!(
        free(&f.geom, &short, &f.ptes(), 0, 1),
        Err(ArenaError::OutOfBounds)
    );
    assert_eq!(f.bytes(), vec![FREE; 16]);
}
