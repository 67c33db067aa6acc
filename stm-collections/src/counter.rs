//! A striped counter: the length of the maps, without one `TVar` that every insert writes.

use std::sync::atomic::{AtomicUsize, Ordering};

use stm_core::{StmResult, TVar, Transaction};

/// How many stripes a counter has. Threads are spread over them round-robin, so up to this many
/// threads insert and remove without ever writing the same stripe.
const STRIPES: usize = 16;

/// A count split over [`STRIPES`] `TVar`s. Each thread adds to its own stripe, so inserts on
/// different threads do not conflict over the count; reading the total reads every stripe, so
/// `len` conflicts with concurrent inserts, which is what a consistent length must do.
pub(crate) struct StripedCounter {
    stripes: Box<[TVar<isize>]>,
}

fn my_stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

impl StripedCounter {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| TVar::new(0)).collect(),
        }
    }

    /// Adds `delta` (which may be negative) to this thread's stripe.
    pub(crate) fn add(&self, tx: &mut Transaction, delta: isize) -> StmResult<()> {
        self.stripes[my_stripe()].modify(tx, |n| n + delta)
    }

    /// The total over all stripes.
    pub(crate) fn sum(&self, tx: &mut Transaction) -> StmResult<usize> {
        let mut total = 0_isize;
        for stripe in self.stripes.iter() {
            total += stripe.read(tx)?;
        }
        debug_assert!(total >= 0, "a striped count went negative: {total}");
        Ok(usize::try_from(total).unwrap_or(0))
    }

    /// Sets the total to zero.
    pub(crate) fn reset(&self, tx: &mut Transaction) -> StmResult<()> {
        for stripe in self.stripes.iter() {
            if stripe.read(tx)? != 0 {
                stripe.write(tx, 0)?;
            }
        }
        Ok(())
    }
}
