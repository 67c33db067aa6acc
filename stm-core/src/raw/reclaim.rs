//! Deferred freeing of replaced values and dropped variables (crossbeam-epoch).
//!
//! Under loom, crossbeam-epoch's own atomics are invisible to the model, so a guard is a token
//! and retired objects are leaked: the models are small and short.

#[cfg(not(stm_loom))]
use std::cell::Cell;

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
    unsafe fn free<T>(ptr: *mut ()) {
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
/// As for [`RetireBuffer`]'s items: unlinked, retired once, freeable on any thread.
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
        unsafe { (item.free)(item.ptr) };
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

/// A replaced value waiting to be freed: a `Box<T>` and the function that frees that `T`.
#[derive(Debug)]
pub(crate) struct Retired {
    pub(crate) ptr: *mut (),
    pub(crate) free: unsafe fn(*mut ()),
}

/// A thread's replaced values, handed to the epoch in batches.
///
/// One `defer` per value would make crossbeam-epoch seal a ~2 KiB bag every 64 values, and that
/// large allocation makes the system allocator consolidate every small freed value: batching
/// cuts both. Deferring later than the unlink is always safe, only a little less prompt.
///
/// # Invariants
///
/// Every item's `ptr` is an unlinked box, retired once, that `free` frees and that may be freed
/// on any thread (the duties of [`push`](Self::push)).
#[derive(Debug, Default)]
pub(crate) struct RetireBuffer {
    items: Vec<Retired>,
}

impl RetireBuffer {
    /// Values per deferred batch; `32 * 16` bytes stays below allocator size classes that
    /// trigger consolidation.
    const BATCH: usize = 32;

    /// Adds `item`, deferring the batch once it is full.
    ///
    /// # Safety
    ///
    /// As for [`retire`]: `item.ptr` is unlinked and retired once, `item.free` is its matching
    /// free function, and freeing it on another thread is sound.
    pub(crate) unsafe fn push(&mut self, guard: &Guard, item: Retired) {
        self.items.push(item);
        if self.items.len() >= Self::BATCH {
            self.flush(guard);
        }
    }

    /// Defers everything buffered so far.
    pub(crate) fn flush(&mut self, guard: &Guard) {
        if self.items.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.items, Vec::with_capacity(Self::BATCH));
        #[cfg(not(stm_loom))]
        // SAFETY: the items are unlinked, retired once and freeable anywhere (invariant on
        // `RetireBuffer`).
        unsafe {
            defer_all(guard, batch);
        }
        #[cfg(stm_loom)]
        {
            // Leaked on purpose, like everything retired under loom (see the module docs).
            let _ = guard;
            for item in batch {
                let _ = (item.ptr, item.free);
            }
        }
    }
}

impl Drop for RetireBuffer {
    fn drop(&mut self) {
        if !self.items.is_empty() {
            self.flush(&pin());
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
