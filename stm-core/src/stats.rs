//! Cumulative counters: commits, conflict restarts, retry waits, read-only misses.

use std::ops::Sub;

use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

/// Cumulative counts of transaction outcomes in this process, from [`stats`].
///
/// Counts start at process start and never decrease. Subtract two snapshots to measure a
/// stretch of work.
///
/// # Examples
///
/// ```
/// use stm_core::{TVar, atomically, stats};
///
/// let before = stats();
/// let v = TVar::new(0);
/// atomically(|tx| v.write(tx, 1));
/// let delta = stats() - before;
/// assert!(delta.commits >= 1);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Transactions committed, read-only ones and `write_atomic` included.
    pub commits: u64,
    /// Attempts restarted because of a conflicting commit.
    pub conflicts: u64,
    /// Times a transaction blocked in [`retry`](crate::retry) waiting for a change.
    pub retries: u64,
    /// Attempts re-run because they ran without a read set, as read-only ones do where the same
    /// code only read before, and then needed one: they wrote, retried, registered a
    /// `while_committing` hook or met a version newer than their snapshot. Not conflicts; see
    /// "Read-only attempts" in `docs/design.md`.
    pub read_only_misses: u64,
}

impl Sub for Stats {
    type Output = Stats;

    fn sub(self, earlier: Stats) -> Stats {
        Stats {
            commits: self.commits.saturating_sub(earlier.commits),
            conflicts: self.conflicts.saturating_sub(earlier.conflicts),
            retries: self.retries.saturating_sub(earlier.retries),
            read_only_misses: self
                .read_only_misses
                .saturating_sub(earlier.read_only_misses),
        }
    }
}

/// Returns the cumulative [`Stats`] of every thread, summed now.
///
/// Cheap for the transactions being counted: each thread bumps its own counters without atomic
/// read-modify-writes; this function takes a lock and sums them.
///
/// # Examples
///
/// ```
/// use stm_core::{TVar, atomically, stats};
///
/// let v = TVar::new(1);
/// atomically(|tx| v.read(tx));
/// assert!(stats().commits >= 1);
/// ```
pub fn stats() -> Stats {
    let registry = registry().lock();
    registry.live.iter().fold(registry.retired, |sum, c| Stats {
        commits: sum.commits + c.commits.load(Ordering::Relaxed),
        conflicts: sum.conflicts + c.conflicts.load(Ordering::Relaxed),
        retries: sum.retries + c.retries.load(Ordering::Relaxed),
        read_only_misses: sum.read_only_misses + c.read_only_misses.load(Ordering::Relaxed),
    })
}

/// The number of waits registered now: one per pair of a blocked transaction (a thread in
/// `retry`, or a pending [`atomically_async`](crate::atomically_async) future) and a variable
/// it waits on. Not cumulative. For tests and monitoring: a dropped future or a woken thread
/// leaves none behind.
///
/// # Examples
///
/// ```
/// use stm_core::waiting;
///
/// let now = waiting(); // other threads may be waiting
/// # let _ = now;
/// ```
pub fn waiting() -> usize {
    crate::raw::parking::global().registrations()
}

/// One thread's counters. Only the owning thread writes them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    commits: AtomicU64,
    conflicts: AtomicU64,
    retries: AtomicU64,
    read_only_misses: AtomicU64,
}

#[inline]
fn bump(counter: &AtomicU64) {
    // Single writer: a load and a store, no read-modify-write.
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

impl Counters {
    /// Counters for a new thread-owned transaction, included in [`stats`] until retired.
    pub(crate) fn register() -> Arc<Counters> {
        let counters = Arc::new(Counters::default());
        registry().lock().live.push(Arc::clone(&counters));
        counters
    }

    /// Folds these counters into the retired totals and stops listing them.
    pub(crate) fn retire(this: &Arc<Counters>) {
        let mut registry = registry().lock();
        if let Some(i) = registry.live.iter().position(|c| Arc::ptr_eq(c, this)) {
            registry.live.swap_remove(i);
        }
        registry.retired.commits += this.commits.load(Ordering::Relaxed);
        registry.retired.conflicts += this.conflicts.load(Ordering::Relaxed);
        registry.retired.retries += this.retries.load(Ordering::Relaxed);
        registry.retired.read_only_misses += this.read_only_misses.load(Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn commit(&self) {
        bump(&self.commits);
    }

    pub(crate) fn conflict(&self) {
        bump(&self.conflicts);
    }

    pub(crate) fn retry(&self) {
        bump(&self.retries);
    }

    pub(crate) fn read_only_miss(&self) {
        bump(&self.read_only_misses);
    }
}

#[derive(Debug, Default)]
struct Registry {
    live: Vec<Arc<Counters>>,
    retired: Stats,
}

#[cfg(not(stm_loom))]
fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
        live: Vec::new(),
        retired: Stats {
            commits: 0,
            conflicts: 0,
            retries: 0,
            read_only_misses: 0,
        },
    });
    &REGISTRY
}

#[cfg(stm_loom)]
fn registry() -> &'static Mutex<Registry> {
    loom::lazy_static! {
        static ref REGISTRY: Mutex<Registry> = Mutex::new(Registry::default());
    }
    &REGISTRY
}
