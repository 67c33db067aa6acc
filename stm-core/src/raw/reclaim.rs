//! Deferred freeing of replaced values (crossbeam-epoch tells when, the retiring thread frees
//! them into its pool), and the burial of variables whose last handle was dropped.
//!
//! Under loom, crossbeam-epoch's own atomics are invisible to the model, so a guard is a token
//! and retired objects are leaked: the models are small and short.

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

/// A variable whose handle count reached zero: `kill` takes its lock for good and drops its
/// value, and returns its memory, to be freed after a grace period; or `None` if a committer
/// holds the lock right now (try again).
#[derive(Debug)]
pub(crate) struct Dying {
    pub(crate) ptr: *mut (),
    pub(crate) kill: unsafe fn(*mut ()) -> Option<Retired>,
}

/// What one thread has to bury: variables whose count reached zero, met while a burial was
/// already running on this thread (so destructors that drop more last handles never nest
/// stack frames: a chain of a million links is a loop), and the memory of those killed.
#[cfg(not(stm_loom))]
struct Burial {
    running: bool,
    /// Set while this thread runs `while_committing` hooks, which run with the commit's locks
    /// held: a variable the thread itself locked cannot be killed then.
    holding_locks: bool,
    queue: Vec<Dying>,
    /// Killed while `holding_locks` found their lock taken; retried once the locks are gone.
    blocked: Vec<Dying>,
    /// The memory of killed variables, handed to the epoch in batches.
    memory: Vec<Retired>,
}

#[cfg(not(stm_loom))]
thread_local! {
    static BURIAL: std::cell::RefCell<Burial> = const {
        std::cell::RefCell::new(Burial {
            running: false,
            holding_locks: false,
            queue: Vec::new(),
            blocked: Vec::new(),
            memory: Vec::new(),
        })
    };
}

/// Buries a variable whose last handle was just dropped: kills it now (its value is dropped
/// by this thread, at once) and frees its memory after a grace period. Chains of variables
/// (a value holding the last handle of the next variable) die in one loop, and their memory
/// shares one grace period.
///
/// # Safety
///
/// `dying.ptr` is a variable whose handle count just reached zero (with an `Acquire` fence
/// after the last decrement), buried once, and `dying.kill` is its `T`'s kill function.
pub(crate) unsafe fn bury(dying: Dying) {
    #[cfg(not(stm_loom))]
    {
        let mut dying = Some(dying);
        let start = BURIAL.try_with(|b| {
            let mut b = b.borrow_mut();
            b.queue.push(dying.take().expect("pushed once"));
            !std::mem::replace(&mut b.running, true)
        });
        match start {
            Ok(true) => run_burial(),
            Ok(false) => {} // the running loop (further up this thread's stack) takes it
            Err(_) => {
                // SAFETY: forwarded from this call's caller.
                unsafe { bury_orphan(dying.expect("not pushed")) }
            }
        }
    }
    #[cfg(stm_loom)]
    {
        // Loom threads share std thread-locals; kill at once (models are small), spinning on
        // a lock a committer holds, and leak the memory like everything retired under loom.
        let mut spins = 0_u32;
        // SAFETY: forwarded from the caller.
        while unsafe { (dying.kill)(dying.ptr) }.is_none() {
            super::tvar::backoff_spin(&mut spins);
        }
    }
}

/// A variable met while its thread's locals are being destroyed (the thread exits).
#[cfg(not(stm_loom))]
struct Orphan(Dying);

// SAFETY: a variable with no handles left may be killed on any thread: its `T` is
// `Send + Sync` (required by `TVar::new`).
#[cfg(not(stm_loom))]
unsafe impl Send for Orphan {}

/// Variables whose last handle was dropped on an exiting thread, waiting to be killed.
#[cfg(not(stm_loom))]
static ORPHANS: parking_lot::Mutex<Vec<Orphan>> = parking_lot::Mutex::new(Vec::new());
/// Set while a thread drains [`ORPHANS`].
#[cfg(not(stm_loom))]
static DRAINING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// [`bury`] without thread-locals: the variable joins a process-wide queue, and the first
/// caller to find nobody draining it kills everything in it in a loop, so deaths (a chain of
/// variables dropped at thread exit) never nest stack frames. Nothing is deferred to the
/// epoch as a burial: its collector could run it on a thread in the same state, which would
/// defer it again, and so on down the stack (the crash this replaced).
///
/// # Safety
///
/// As for [`bury`].
#[cfg(not(stm_loom))]
unsafe fn bury_orphan(dying: Dying) {
    ORPHANS.lock().push(Orphan(dying));
    loop {
        if DRAINING.swap(true, Ordering::Acquire) {
            return; // a drain is running (further up this stack, or on another thread)
        }
        let mut memory = Vec::new();
        loop {
            let next = ORPHANS.lock().pop();
            let Some(Orphan(dying)) = next else {
                break;
            };
            let mut spins = 0_u32;
            // An exiting thread holds no commit locks, so a lock held now is another thread's,
            // released soon.
            let killed = loop {
                // SAFETY: queued under `bury`'s contract and popped once; a failed attempt
                // changes nothing and is retried.
                if let Some(killed) = unsafe { (dying.kill)(dying.ptr) } {
                    break killed;
                }
                super::tvar::backoff_spin(&mut spins);
            };
            memory.push(killed);
        }
        DRAINING.store(false, Ordering::Release);
        if !memory.is_empty() {
            // SAFETY: as in `run_burial`.
            unsafe { defer_all(&pin(), memory) };
        }
        // An orphan pushed after our last pop, while we still held the flag, is ours to kill.
        if ORPHANS.lock().is_empty() {
            return;
        }
    }
}

/// Kills everything queued on this thread, including what those deaths queue, then defers the
/// memory of the dead in one batch.
#[cfg(not(stm_loom))]
fn run_burial() {
    /// Clears `running` even if a destructor panics, so later burials still run.
    struct Running;
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = BURIAL.try_with(|b| b.borrow_mut().running = false);
        }
    }
    let _running = Running;
    loop {
        let next = BURIAL.with(|b| b.borrow_mut().queue.pop());
        let Some(dying) = next else {
            break;
        };
        let mut spins = 0_u32;
        loop {
            // SAFETY: queued by `bury` under its contract; each `Dying` is killed once (a
            // failed attempt changes nothing and is retried or parked).
            if let Some(memory) = unsafe { (dying.kill)(dying.ptr) } {
                BURIAL.with(|b| b.borrow_mut().memory.push(memory));
                break;
            }
            if BURIAL.with(|b| b.borrow().holding_locks) {
                // Perhaps our own commit holds that lock: retry after it released its locks.
                BURIAL.with(|b| b.borrow_mut().blocked.push(dying));
                break;
            }
            // Another thread's commit holds it, briefly.
            super::tvar::backoff_spin(&mut spins);
        }
    }
    let memory = BURIAL.with(|b| {
        let mut b = b.borrow_mut();
        (b.memory.len() >= Burial::MEMORY_BATCH).then(|| std::mem::take(&mut b.memory))
    });
    if let Some(memory) = memory {
        // SAFETY: each item is the memory of a killed variable: unlinked (no handles), retired
        // once, and freeable anywhere; pinned transactions may still hold its header.
        unsafe { defer_all(&pin(), memory) };
    }
}

/// Hands the memory of the variables this thread killed to the epoch now, however few.
pub(crate) fn flush_burials() {
    #[cfg(not(stm_loom))]
    {
        let memory = BURIAL
            .try_with(|b| std::mem::take(&mut b.borrow_mut().memory))
            .unwrap_or_default();
        if !memory.is_empty() {
            // SAFETY: as in `run_burial`.
            unsafe { defer_all(&pin(), memory) };
        }
    }
}

#[cfg(not(stm_loom))]
impl Burial {
    /// Dead variables whose memory is handed to the epoch together: one deferred closure (and
    /// one vector) per batch instead of per death.
    const MEMORY_BATCH: usize = 32;
}

#[cfg(not(stm_loom))]
impl Drop for Burial {
    fn drop(&mut self) {
        // Thread exit: what is left goes to the epoch (freed by whoever collects).
        let memory = std::mem::take(&mut self.memory);
        if !memory.is_empty() {
            // SAFETY: as in `run_burial`.
            unsafe { defer_all(&pin(), memory) };
        }
    }
}

/// Brackets the `while_committing` hooks of a commit, which run while it holds its locks: a
/// variable that dies meanwhile and is locked waits until [`locks_released`].
pub(crate) fn holding_locks() {
    #[cfg(not(stm_loom))]
    let _ = BURIAL.try_with(|b| b.borrow_mut().holding_locks = true);
}

/// The end of [`holding_locks`]: buries what waited for the commit's locks.
pub(crate) fn locks_released() {
    #[cfg(not(stm_loom))]
    {
        let blocked = BURIAL
            .try_with(|b| {
                let mut b = b.borrow_mut();
                b.holding_locks = false;
                std::mem::take(&mut b.blocked)
            })
            .unwrap_or_default();
        for dying in blocked {
            // SAFETY: parked by `run_burial` under `bury`'s contract, not yet killed.
            unsafe { bury(dying) };
        }
    }
}

/// Defers running `items`' free functions to the epoch.
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
            for item in batch.0 {
                // Each item is unlinked, retired once, and its grace period has passed; freed
                // exactly once, here. Destructors that drop last handles bury those variables
                // through this thread's burial loop, without pinning recursively.
                (item.free)(item.ptr, None);
            }
        });
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
    /// `item.ptr` is unlinked (no thread that pins from now on can reach it) and retired once,
    /// `item.free` is its matching free function, and freeing it on another thread is sound
    /// (the invariant on `Recycler`).
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
