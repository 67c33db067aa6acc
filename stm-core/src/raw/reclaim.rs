//! Deferred freeing of replaced values and dropped variables (crossbeam-epoch).
//!
//! Under loom, crossbeam-epoch's own atomics are invisible to the model, so a guard is a token
//! and retired objects are leaked: the models are small and short.

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
pub(crate) unsafe fn retire<T>(guard: &Guard, ptr: *mut T) {
    #[cfg(not(stm_loom))]
    // SAFETY: the caller guarantees `ptr` is an unlinked, uniquely retired `Box<T>`; the epoch
    // runs the closure only after every thread pinned now has unpinned; dropping `T` on
    // another thread is sound by the caller's duty.
    unsafe {
        guard.defer_unchecked(move || drop(Box::from_raw(ptr)));
    }
    #[cfg(stm_loom)]
    {
        let _ = (guard, ptr);
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
        {
            struct Batch(Vec<Retired>);
            // SAFETY: every item may be freed on another thread (invariant on `RetireBuffer`).
            unsafe impl Send for Batch {}
            let batch = Batch(batch);
            // SAFETY: the items are unlinked and retired once (invariant); the epoch runs the
            // closure after every thread pinned now has unpinned.
            unsafe {
                guard.defer_unchecked(move || {
                    for item in batch.0 {
                        (item.free)(item.ptr);
                    }
                });
            }
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
