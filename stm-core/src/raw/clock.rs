//! The global version clock (TL2's `GV`).

use crate::sync::{AtomicU64, Mutex, Ordering};

/// A monotonically increasing commit counter.
///
/// A transaction reads it when it starts (its *read version* `rv`); a writer increments it once
/// per commit, after locking its write set, to get its *write version* `wv`. Aligned to its own
/// cache line pair so that committers bumping it do not slow down unrelated data.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Clock {
    now: AtomicU64,
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

    /// The version of the latest commit that has started publishing.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.now.load(Ordering::Acquire)
    }

    /// Advances the clock and returns the new value: the caller's write version.
    #[inline]
    pub(crate) fn tick(&self) -> u64 {
        self.now.fetch_add(1, Ordering::AcqRel) + 1
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

/// Serializes the commits that carry `while_committing` hooks: such a commit takes its write
/// version, validates and runs its hooks while holding this mutex, so hooks run one at a time
/// in write-version order.
#[cfg(not(stm_loom))]
pub(crate) fn sequencer() -> &'static Mutex<()> {
    static SEQUENCER: Mutex<()> = parking_lot::const_mutex(());
    &SEQUENCER
}

/// The commit sequencer, re-created for each loom execution.
#[cfg(stm_loom)]
pub(crate) fn sequencer() -> &'static Mutex<()> {
    loom::lazy_static! {
        static ref SEQUENCER: Mutex<()> = Mutex::new(());
    }
    &SEQUENCER
}
