//! The write path does not go through the allocator once a thread's pool of value blocks is
//! warm: committed writes of small values reuse the blocks of the values they replaced.
//!
//! A test binary of its own: it installs a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use stmx::prelude::*;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's duties are forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocator calls per transaction over `n` runs of `step`, after a warm-up.
fn allocations_per_run(n: u64, mut step: impl FnMut()) -> f64 {
    for _ in 0..n {
        step();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..n {
        step();
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64
}

#[test]
fn steady_writes_of_small_values_do_not_allocate() {
    let accounts: Vec<TVar<u64>> = (0..64).map(|_| TVar::new(1_000)).collect();
    let names = TVar::new([0_u64; 8]);
    let mut i = 0_usize;
    let per_tx = allocations_per_run(200_000, || {
        i += 1;
        let (from, to) = (&accounts[i % 64], &accounts[(i * 7 + 3) % 64]);
        atomically(|tx| {
            from.modify(tx, |v| v.wrapping_sub(1))?;
            to.modify(tx, |v| v.wrapping_add(1))?;
            names.modify(tx, |mut n| {
                n[i % 8] += 1;
                n
            })
        });
        if i.is_multiple_of(3) {
            accounts[i % 64].write_atomic(i as u64);
        }
    });
    // Retired values come back to the pool in batches, and the epoch's own bookkeeping
    // allocates a little (a bag per 64 batches): far below one allocation per transaction.
    assert!(
        per_tx < 0.01,
        "{per_tx:.3} allocator calls per transaction (3 writes each)"
    );
}

#[test]
fn large_values_still_work_through_box() {
    let big = TVar::new([7_u8; 4096]);
    atomically(|tx| {
        big.modify(tx, |mut b| {
            b[0] = 1;
            b
        })
    });
    assert_eq!(big.read_atomic()[..2], [1, 7]);
}
