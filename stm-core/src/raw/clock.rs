//! The global version clock: a lazily advanced counter that commits read but do not write.
//!
//! TL2 increments one global counter per writing commit; on two cores that single cache line,
//! written by every commit, halves the throughput of transactions on disjoint data. This clock
//! is TL2's *GV5* with reader-driven advance:
//!
//! - a transaction starts at `rv = now()`;
//! - a writer, once it holds every lock of its write set, takes
//!   `wv = max(now(), newest version it overwrites) + 1` *without storing it*, so writers on
//!   disjoint data touch no shared line;
//! - a reader that meets a version above its snapshot moves the clock up to that version
//!   ([`Clock::observe`], a `fetch_max` only when the clock lags), then revalidates; unless it
//!   is the attempt's first read, which is taken as it is and moves nothing.
//!
//! The clock therefore moves only when a transaction actually meets a version from the
//! "future", and every version is at most one above what the clock said when its writer had
//! locked everything. `docs/design.md` ("The clock") has the proof sketch: the one property TL2
//! needs, *a snapshot `rv >= wv` starts after the writer of `wv` locked its whole write set*,
//! holds because the clock can only pass `wv - 1` after that writer read it.
//!
//! # Memory ordering
//!
//! The argument chains a writer's lock CAS, its clock load, a third thread's `fetch_max` and a
//! reader's clock load and lock loads through *coherence* (the writer's load reads a value
//! older than the advance), not through a release/acquire pair. In the C++20 model that takes
//! sequentially consistent accesses at both ends: lock CAS, clock loads, `fetch_max` and lock
//! word loads are all `SeqCst` (on x86-64 and AArch64 a `SeqCst` load is the same instruction
//! as an `Acquire` load). loom models `SeqCst` *accesses* only as `AcqRel` (tokio-rs/loom#180)
//! but does model `SeqCst` *fences*, so loom builds add a fence at each end ([`sc_fence`]);
//! both forms are valid proofs of the same order in C++20.

use crate::sync::{AtomicU64, Mutex, Ordering};

/// The global version clock.
///
/// # Invariants
///
/// - The value never decreases (it changes only through `fetch_max`).
/// - Every version a commit publishes is at most one above a value this clock held after the
///   committer locked its write set ([`write_version`](Self::write_version)).
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Clock {
    now: AtomicU64,
}

/// In loom builds, a `SeqCst` fence standing in for the `SeqCst` accesses loom cannot model
/// (see the module docs); nothing otherwise.
#[inline(always)]
pub(crate) fn sc_fence() {
    #[cfg(stm_loom)]
    crate::sync::fence(Ordering::SeqCst);
}

impl Clock {
    #[cfg(not(stm_loom))]
    pub(crate) const fn new() -> Self {
        Self {
            now: AtomicU64::new(0),
        }
    }

    #[cfg(stm_loom)]
    pub(crate) fn new() -> Self {
        Self {
            now: AtomicU64::new(0),
        }
    }

    /// A snapshot version: every commit whose version is at most this had locked its whole
    /// write set before this load.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        let now = self.now.load(Ordering::SeqCst);
        sc_fence();
        now
    }

    /// A snapshot version of at least `seen`, a version the caller read from a lock word:
    /// advances the clock to `seen` if it lags behind (the only store to the clock).
    #[inline]
    pub(crate) fn observe(&self, seen: u64) -> u64 {
        let now = self.now.load(Ordering::SeqCst);
        let now = if now >= seen {
            now
        } else {
            self.now.fetch_max(seen, Ordering::SeqCst).max(seen)
        };
        sc_fence();
        now
    }

    /// The write version of a commit that holds every lock of its write set; `floor` is the
    /// newest version among the words it locked, so each variable's versions strictly increase.
    /// Stores nothing: commits on disjoint data share no cache line here.
    #[inline]
    pub(crate) fn write_version(&self, floor: u64) -> u64 {
        sc_fence();
        self.now.load(Ordering::SeqCst).max(floor) + 1
    }
}

/// The process-wide clock every transaction uses.
#[cfg(not(stm_loom))]
#[inline]
pub(crate) fn global() -> &'static Clock {
    static CLOCK: Clock = Clock::new();
    &CLOCK
}

/// The process-wide clock, re-created for each loom execution.
#[cfg(stm_loom)]
pub(crate) fn global() -> &'static Clock {
    loom::lazy_static! {
        static ref CLOCK: Clock = Clock::new();
    }
    &CLOCK
}

/// Serializes the commits that carry `while_committing` hooks and numbers them: such a commit
/// validates, takes the next number and runs its hooks while holding this mutex, so hooks run
/// one at a time, in the order of their numbers. Commits without hooks never touch it.
#[cfg(not(stm_loom))]
pub(crate) fn sequencer() -> &'static Mutex<u64> {
    static SEQUENCER: Mutex<u64> = parking_lot::const_mutex(0);
    &SEQUENCER
}

/// The commit sequencer, re-created for each loom execution.
#[cfg(stm_loom)]
pub(crate) fn sequencer() -> &'static Mutex<u64> {
    loom::lazy_static! {
        static ref SEQUENCER: Mutex<u64> = Mutex::new(0);
    }
    &SEQUENCER
}
