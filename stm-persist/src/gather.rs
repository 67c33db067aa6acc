//! Group commit's gather, shared by both store flavours: the caller about to write a batch
//! waits, briefly, for the callers that are running their command and will queue a record in
//! a moment, so that one sync covers them too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a group commit waits for callers that are still running their transaction.
pub(crate) const GATHER_FOR: Duration = Duration::from_micros(100);

/// Counts a caller in an `AtomicUsize` for as long as it lives.
pub(crate) struct Inside<'a>(&'a AtomicUsize);

impl<'a> Inside<'a> {
    pub(crate) fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Inside(count)
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes a counted caller out of the count while it lives: a caller whose command waits in a
/// `retry` will not queue a record soon, so a group commit must not wait for it.
pub(crate) struct Away<'a>(&'a AtomicUsize);

impl<'a> Away<'a> {
    pub(crate) fn leave(count: &'a AtomicUsize) -> Self {
        count.fetch_sub(1, Ordering::AcqRel);
        Away(count)
    }
}

impl Drop for Away<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// Waits until `queued` reaches `inside` (every caller inside has queued its record), for at
/// most [`GATHER_FOR`]. A lone caller never waits. Atomic counts, not the queue's lock:
/// enqueuers may hold the commit sequencer.
pub(crate) fn gather(queued: &AtomicUsize, inside: &AtomicUsize) {
    let deadline = Instant::now() + GATHER_FOR;
    while queued.load(Ordering::Acquire) < inside.load(Ordering::Acquire)
        && Instant::now() < deadline
    {
        std::thread::yield_now();
    }
}
