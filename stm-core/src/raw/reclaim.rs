//! Deferred freeing of replaced values and dropped variables (crossbeam-epoch).
//!
//! Under loom, crossbeam-epoch's own atomics are invisible to the model, so a guard is a token
//! and retired objects are leaked: the models are small and short.

#[cfg(not(stm_loom))]
use std::cell::Cell;
use std::collections::VecDeque;

use super::alloc::Pool;
use crate::sync::{Arc, AtomicU64, Ordering};

#[cfg(not(stm_loom))]
pub(crate) use crossbeam_epoch::{Guard, pin};

/// A stand-in for `crossbeam_epoch::Guard` inside loom models.
#[cfg(stm_loom)]
#[derive(Debug)]
pub(crate) struct Guard(());

/// Pins the current thread (a no-op token under loom).
#[cfg(stm_loom)]
pub(crate) fn pin() -> Guard {
    Guard(())
}

/// Frees the box behind `ptr` once no thread that was pinned when this was called is pinned.
///
/// # Safety
///
/// `ptr` came from `Box::into_raw`, is retired once, and is no longer reachable for threads that
/// pin after this call (the caller unlinked it first). Readers that loaded it while pinned may
/// keep using it until they unpin. `T` may be dropped on another thread: dropping it there must
/// be sound (`T: Send`; every `RawTVar<T>` is built with `T: Send + Sync`).
pub(crate) unsafe fn retire<T>(ptr: *mut T) {
    /// Frees a `Box<T>` made by `Box::into_raw`.
    unsafe fn free<T>(ptr: *mut (), _: Option<&mut Pool>) {
        // SAFETY: `ptr` is the `Box<T>` handed to `retire`, freed once (the caller's duty).
        drop(unsafe { Box::from_raw(ptr.cast::<T>()) });
    }
    let item = Retired {
        ptr: ptr.cast(),
        free: free::<T>,
    };
    #[cfg(not(stm_loom))]
    {
        // Inside a deferred destructor (a value holding the last handle of a variable is being
        // freed): queue it. Pinning here could start a collection that runs more destructors
        // that pin again, recursing once per level of nesting: deep enough, at thread exit
        // (when every pin registers afresh and collects), to overflow the stack.
        let queued = BUSY.with(Cell::get)
            && LATER
                .try_with(|later| {
                    later.borrow_mut().push(Retired {
                        ptr: item.ptr,
                        free: item.free,
                    })
                })
                .is_ok();
        if !queued {
            // SAFETY: the caller's duties make `item` an unlinked, once-retired box that may
            // be freed on another thread.
            unsafe { defer_all(&pin(), vec![item]) };
        }
    }
    #[cfg(stm_loom)]
    {
        // Leaked on purpose, like everything retired under loom (see the module docs).
        let _ = item;
    }
}

#[cfg(not(stm_loom))]
thread_local! {
    /// Set while this thread runs deferred destructors; retirements they cause wait in `LATER`.
    static BUSY: Cell<bool> = const { Cell::new(false) };
    static LATER: std::cell::RefCell<Vec<Retired>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Defers freeing `items` to the epoch. Their destructors run through [`run_deferred`].
///
/// # Safety
///
/// As for [`Recycler`]'s items: unlinked, retired once, freeable on any thread.
#[cfg(not(stm_loom))]
unsafe fn defer_all(guard: &Guard, items: Vec<Retired>) {
    struct Batch(Vec<Retired>);
    // SAFETY: every item may be freed on another thread (the caller's duty).
    unsafe impl Send for Batch {}
    let batch = Batch(items);
    // SAFETY: the items are unlinked and retired once (the caller's duty); the epoch runs the
    // closure after every thread pinned now has unpinned.
    unsafe {
        guard.defer_unchecked(move || {
            let batch = batch;
            run_deferred(batch.0);
        });
    }
}

/// Frees `items`. Retirements caused meanwhile (by values that hold the last handle of a
/// variable) are queued and, in the outermost call only, deferred in a loop: the nesting of
/// destructors never becomes nesting of stack frames.
#[cfg(not(stm_loom))]
fn run_deferred(items: Vec<Retired>) {
    /// Clears `BUSY` when the outermost call ends, even by a panicking destructor: a flag left
    /// set would queue this thread's retirements forever.
    struct Outermost;
    impl Drop for Outermost {
        fn drop(&mut self) {
            BUSY.with(|b| b.set(false));
        }
    }
    let outermost = (!BUSY.with(|b| b.replace(true))).then_some(Outermost);
    for item in items {
        // SAFETY: each item is an unlinked box retired once whose grace period has passed
        // (`defer_all`'s contract), freed exactly once, here.
        unsafe { (item.free)(item.ptr, None) };
    }
    if outermost.is_none() {
        return;
    }
    loop {
        let later = LATER
            .try_with(|l| std::mem::take(&mut *l.borrow_mut()))
            .unwrap_or_default();
        if later.is_empty() {
            break;
        }
        // Pinning may collect and run destructors here: with `BUSY` set, what they retire
        // lands in `LATER` for the next turn of this loop.
        // SAFETY: queued by `retire` under its contract.
        unsafe { defer_all(&pin(), later) };
    }
}

/// A replaced value waiting to be freed: a value box and the function that drops and frees it
/// (into a [`Pool`] when the freeing thread has one).
#[derive(Debug)]
pub(crate) struct Retired {
    pub(crate) ptr: *mut (),
    pub(crate) free: unsafe fn(*mut (), Option<&mut Pool>),
}

/// One thread's replaced values, from retirement to reuse of their blocks by the same thread.
///
/// Values are retired in batches of [`BATCH`](Self::BATCH). A full batch waits in `waiting`
/// under a sequence number `n`, and the epoch is given a tiny closure that raises `done` to
/// `n` once every thread pinned at that moment has unpinned. The owning thread, when it starts
/// its next transactions ([`reclaim`](Self::reclaim)), drops the values of every batch up to
/// `done` itself and keeps their blocks in its [`Pool`] for its next writes: values are
/// dropped by the thread that retired them, and neither a cross-thread `free` nor a `malloc`
/// happens on the write path once the pool is warm.
///
/// Raising `done` to `n` also covers every earlier batch: a thread pinned when batch `m < n`
/// was deferred was either still pinned when batch `n` was deferred (and has unpinned since) or
/// had already unpinned. A thread that exits hands its unfinished batches to the epoch.
///
/// # Invariants
///
/// Every item in `current` and `waiting` is an unlinked box, retired once, that its `free`
/// drops and frees, and that may be freed on any thread (the duties of [`push`](Self::push)).
/// Batches in `waiting` have increasing numbers, all below `next`.
#[derive(Debug)]
pub(crate) struct Recycler {
    pool: Pool,
    current: Vec<Retired>,
    waiting: VecDeque<(u64, Vec<Retired>)>,
    spare: Vec<Vec<Retired>>,
    next: u64,
    done: Arc<AtomicU64>,
}

impl Default for Recycler {
    fn default() -> Self {
        Self {
            pool: Pool::default(),
            current: Vec::new(),
            waiting: VecDeque::new(),
            spare: Vec::new(),
            next: 1,
            done: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Recycler {
    /// Values per batch.
    const BATCH: usize = 32;
    /// Emptied batch vectors kept for reuse. The epoch completes batches in groups (a bag of
    /// 64 deferred closures at a time), so about that many are in flight in a steady state.
    const KEEP_SPARE: usize = 256;

    /// The thread's pool of free value blocks.
    #[inline]
    pub(crate) fn pool(&mut self) -> &mut Pool {
        &mut self.pool
    }

    /// Adds `item`, handing the batch to the epoch once it is full.
    ///
    /// # Safety
    ///
    /// As for [`retire`]: `item.ptr` is unlinked and retired once, `item.free` is its matching
    /// free function, and freeing it on another thread is sound.
    #[inline]
    pub(crate) unsafe fn push(&mut self, guard: &Guard, item: Retired) {
        self.current.push(item);
        if self.current.len() >= Self::BATCH {
            self.flush(guard);
        }
    }

    /// Hands the current batch to the epoch.
    pub(crate) fn flush(&mut self, guard: &Guard) {
        if self.current.is_empty() {
            return;
        }
        let fresh = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(Self::BATCH));
        let batch = std::mem::replace(&mut self.current, fresh);
        let number = self.next;
        self.next += 1;
        self.waiting.push_back((number, batch));
        #[cfg(not(stm_loom))]
        {
            let done = Arc::clone(&self.done);
            // `Release` pairs with `reclaim`'s `Acquire`: the owner frees only after every
            // reader the epoch waited for has finished with the values.
            guard.defer(move || done.fetch_max(number, Ordering::Release));
        }
        #[cfg(stm_loom)]
        let _ = guard;
    }

    /// Drops the values of every batch whose grace period has passed, keeping their blocks.
    #[inline]
    pub(crate) fn reclaim(&mut self) {
        let Some(&(oldest, _)) = self.waiting.front() else {
            return;
        };
        let done = self.done.load(Ordering::Acquire);
        if oldest > done {
            return;
        }
        self.reclaim_up_to(done);
    }

    #[cold]
    fn reclaim_up_to(&mut self, done: u64) {
        while self.waiting.front().is_some_and(|&(n, _)| n <= done) {
            let (_, mut batch) = self.waiting.pop_front().expect("checked non-empty");
            for item in batch.drain(..) {
                // SAFETY: the batch's grace period has passed (`done` covers it, see the type
                // docs), and each item is an unlinked box retired once (invariant).
                unsafe { (item.free)(item.ptr, Some(&mut self.pool)) };
            }
            if self.spare.len() < Self::KEEP_SPARE {
                self.spare.push(batch);
            }
        }
    }
}

impl Drop for Recycler {
    fn drop(&mut self) {
        let mut items = std::mem::take(&mut self.current);
        for (_, batch) in self.waiting.drain(..) {
            items.extend(batch);
        }
        if items.is_empty() {
            return;
        }
        #[cfg(not(stm_loom))]
        // SAFETY: the items are unlinked, retired once and freeable anywhere (invariant on
        // `Recycler`); deferring them again only delays them.
        unsafe {
            defer_all(&pin(), items);
        }
        #[cfg(stm_loom)]
        {
            // Leaked on purpose, like everything retired under loom (see the module docs).
            let _ = items;
        }
    }
}

/// Frees what earlier commits retired, as far as other pinned threads allow. Best effort.
pub(crate) fn collect() {
    #[cfg(not(stm_loom))]
    for _ in 0..256 {
        pin().flush();
    }
}
