//! The heap object behind a `TVar`: lock word, reference count, and value slot.

use std::marker::PhantomData;
use std::ptr::NonNull;

use super::alloc::{self, Pool};
use super::reclaim::{self, Guard, Recycler, Retired};
use super::versioned_lock::{VersionedLock, Word};
use crate::sync::{AtomicPtr, AtomicUsize, Ordering, fence, spin_loop, yield_now};

/// The type-independent head of every raw variable. Transaction logs point at it.
///
/// `#[repr(C)]` and first in [`RawTVar`], so a `*const Header` is also the address of its
/// `RawTVar<T>`; which `T` is recorded next to every pointer that is cast back.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Header {
    pub(crate) lock: VersionedLock,
    refs: AtomicUsize,
}

impl Header {
    /// The variable's identity: its address. Used by the wait registry and `ref_eq`.
    pub(crate) fn addr(&self) -> usize {
        self as *const Header as usize
    }
}

/// One transactional variable.
///
/// # Invariants
///
/// - `value` always points to a live value box (`alloc::box_value::<T>`) holding the last
///   committed value. It changes only
///   while `header.lock` is held; the replaced box is retired through the epoch, never freed
///   directly, so a reader that loaded the pointer while pinned may read through it until it
///   unpins. A published value is never mutated.
/// - The `RawTVar` itself is freed through the epoch too, after the last [`TVarHandle`] is
///   dropped: transaction logs hold bare `*const Header` pointers, which stay valid while the
///   transaction that recorded them is pinned.
#[repr(C)]
pub(crate) struct RawTVar<T> {
    header: Header,
    value: AtomicPtr<T>,
}

impl<T> Drop for RawTVar<T> {
    fn drop(&mut self) {
        let ptr = self.value.load(Ordering::Relaxed);
        // SAFETY: we are the last owner (see `TVarHandle::drop`); `value` points to a live value
        // box by the invariant on `RawTVar`, no longer reachable by anyone.
        unsafe { alloc::free_value(ptr, None) };
    }
}

impl<T> RawTVar<T> {
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    /// Loads the committed value pointer. `Acquire` pairs with [`publish`](Self::publish).
    #[inline]
    pub(crate) fn load_value(&self) -> *mut T {
        self.value.load(Ordering::Acquire)
    }
}

impl<T: Send + Sync + 'static> RawTVar<T> {
    /// Installs `new` as the committed value and retires the old one into `retired`.
    ///
    /// # Safety
    ///
    /// The caller holds `header.lock`, `new` came from `alloc::box_value::<T>` and is handed
    /// over, and `guard` pins the current thread.
    pub(crate) unsafe fn publish(&self, new: *mut T, guard: &Guard, retired: &mut Recycler) {
        debug_assert!(self.header.lock.load().is_locked());
        // Only the lock holder stores, so a plain load + store is enough (no swap).
        let old = self.value.load(Ordering::Relaxed);
        self.value.store(new, Ordering::Release);
        let old = Retired {
            ptr: old.cast(),
            free: Self::drop_pending,
        };
        // SAFETY: `old` was the published box (invariant on `RawTVar`), just unlinked under the
        // lock, so nobody else retires it; `drop_pending` frees a value box of this `T`;
        // `T: Send`.
        unsafe { retired.push(guard, old) };
    }

    /// Type-erased [`publish`](Self::publish), for write logs.
    ///
    /// # Safety
    ///
    /// `header` is the header of a live `RawTVar<T>` (this very `T`), and the duties of
    /// `publish` hold with `new` a value box of this `T`.
    pub(crate) unsafe fn publish_erased(
        header: *const Header,
        new: *mut (),
        guard: &Guard,
        retired: &mut Recycler,
    ) {
        // SAFETY: `Header` is the first field of the `#[repr(C)]` `RawTVar<T>`, and the caller
        // says `header` belongs to a `RawTVar<T>` of this `T`.
        let raw = unsafe { &*header.cast::<RawTVar<T>>() };
        // SAFETY: forwarded duties.
        unsafe { raw.publish(new.cast::<T>(), guard, retired) }
    }

    /// Drops and frees a value box of this `T` (pending, or retired after its grace period),
    /// into `pool` if given.
    ///
    /// # Safety
    ///
    /// `pending` came from `alloc::box_value::<T>`, holds a value, and is not used again.
    pub(crate) unsafe fn drop_pending(pending: *mut (), pool: Option<&mut Pool>) {
        // SAFETY: the caller's duty.
        unsafe { alloc::free_value(pending.cast::<T>(), pool) };
    }
}

/// An owning, reference-counted pointer to a [`RawTVar`]; the engine half of `TVar`.
///
/// Like `Arc`, except that dropping the last handle frees the variable through the epoch, not
/// at once: see the invariants on [`RawTVar`].
pub(crate) struct TVarHandle<T> {
    ptr: NonNull<RawTVar<T>>,
    _owns: PhantomData<RawTVar<T>>,
}

// SAFETY: a handle gives shared access to `T` from any thread (`&T` via reads: `Sync`) and may
// move or drop `T` on another thread (the last handle, or a commit, drops it: `Send`).
unsafe impl<T: Send + Sync> Send for TVarHandle<T> {}
// SAFETY: as above; all mutation goes through the lock word and atomics.
unsafe impl<T: Send + Sync> Sync for TVarHandle<T> {}

impl<T: Send + Sync + 'static> TVarHandle<T> {
    pub(crate) fn new(value: T) -> Self {
        let raw = Box::new(RawTVar {
            header: Header {
                lock: VersionedLock::new(0),
                refs: AtomicUsize::new(1),
            },
            value: AtomicPtr::new(alloc::box_value(None, value)),
        });
        Self {
            ptr: NonNull::from(Box::leak(raw)),
            _owns: PhantomData,
        }
    }

    /// Clones the last committed value, outside any transaction.
    ///
    /// Linearizable: it waits out a commit that holds this variable's lock, so a value seen by an
    /// earlier `load_clone` of another variable is never newer than what this one returns.
    pub(crate) fn load_with<R>(&self, mut f: impl FnMut(&T) -> R) -> R {
        let raw = self.raw();
        let guard = reclaim::pin();
        let mut spins = 0_u32;
        loop {
            let pre = raw.header.lock.load();
            if pre.is_locked() {
                backoff_spin(&mut spins);
                continue;
            }
            let ptr = raw.load_value();
            // SAFETY: `ptr` was loaded while `guard` pins this thread, so it stays allocated
            // (invariant on `RawTVar`); published values are immutable.
            let out = f(unsafe { &*ptr });
            if same_version(pre, raw.header.lock.load()) {
                drop(guard);
                return out;
            }
        }
    }

    /// Commits `value` alone: lock (waiting for it), take a write version, publish, unlock.
    /// Returns the replaced word, whose `WAITER_BIT` tells whether waiters must be woken.
    pub(crate) fn store(
        &self,
        value: T,
        clock: &super::clock::Clock,
        retired: &mut Recycler,
    ) -> Word {
        let raw = self.raw();
        let new = alloc::box_value(Some(retired.pool()), value);
        let mut spins = 0_u32;
        let prev = loop {
            match raw.header.lock.try_lock() {
                Some(prev) => break prev,
                None => backoff_spin(&mut spins),
            }
        };
        let wv = clock.write_version(prev.version());
        let guard = reclaim::pin();
        // SAFETY: we hold the lock (taken above), `new` is a fresh box, `guard` pins us.
        unsafe { raw.publish(new, &guard, retired) };
        // SAFETY: we hold the lock, and the caller wakes waiters if `prev` says so.
        unsafe { raw.header.lock.unlock(wv) };
        prev
    }
}

impl<T> TVarHandle<T> {
    #[inline]
    pub(crate) fn raw(&self) -> &RawTVar<T> {
        // SAFETY: the handle keeps the `RawTVar` alive (refs > 0) for as long as `&self` lives.
        unsafe { self.ptr.as_ref() }
    }

    pub(crate) fn ptr_eq(a: &Self, b: &Self) -> bool {
        a.ptr == b.ptr
    }
}

impl<T> Clone for TVarHandle<T> {
    fn clone(&self) -> Self {
        let old = self.raw().header.refs.fetch_add(1, Ordering::Relaxed);
        // Like `Arc`: an overflowing count would free the variable while in use.
        if old > isize::MAX as usize {
            std::process::abort();
        }
        Self {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }
}

impl<T> Drop for TVarHandle<T> {
    fn drop(&mut self) {
        if self.raw().header.refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Pairs with the `Release` decrements of the other handles: their uses happen before
        // the free.
        fence(Ordering::Acquire);
        // SAFETY: the count reached zero, so no handle (and no new transaction read) can reach
        // the variable; transactions that recorded it are pinned and keep it alive until they
        // unpin. It came from `Box::leak` in `new` and is retired once, and `new` required
        // `T: Send + Sync`, so dropping it on another thread is sound.
        unsafe { reclaim::retire(self.ptr.as_ptr()) };
    }
}

/// True if `post` shows the same unlocked version as `pre` (the waiter flag may differ).
#[inline]
pub(crate) fn same_version(pre: Word, post: Word) -> bool {
    !post.is_locked() && post.version() == pre.version()
}

/// Spins, then yields: for waiting out a lock holder, who may have been preempted.
pub(crate) fn backoff_spin(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        spin_loop();
    } else {
        yield_now();
    }
}
