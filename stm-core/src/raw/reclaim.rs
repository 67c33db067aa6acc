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

/// Frees what earlier commits retired, as far as other pinned threads allow. Best effort.
pub(crate) fn collect() {
    #[cfg(not(stm_loom))]
    for _ in 0..256 {
        pin().flush();
    }
}
