//! The heap object behind a `TVar`: lock word, reference count, and value slot.

use std::marker::PhantomData;
use std::ptr::NonNull;

use super::alloc::{self, Pool, Words};
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

/// One transactional variable: 64 bytes, on a cache line of its own, so that a transaction
/// touching a variable misses on one line (two for boxed values), and variables never share a
/// line with their neighbours.
///
/// # Invariants
///
/// - **Boxed** (`!alloc::is_inline::<T>()`): `value` always points to a live value box
///   (`alloc::box_value::<T>`) holding the last committed value. It changes only while
///   `header.lock` is held; the replaced box is retired through the epoch, never freed
///   directly, so a reader that loaded the pointer while pinned may read through it until it
///   unpins. A published value is never mutated. `extra` is unused.
/// - **Inline** (`alloc::is_inline::<T>()`): the address of `value` (no provenance) and `extra`
///   are the two words of the last committed value (`alloc::to_words`). They change only while
///   `header.lock` is held, each by a `Release` store, so a reader that loads both between two
///   loads of the lock word showing the same unlocked version has the words of that version's
///   value, whole.
/// - `drop_value` frees what `value` owns when the variable is dropped: the box, or nothing.
/// - The `RawTVar` itself is freed through the epoch too, after the last [`TVarHandle`] is
///   dropped: transaction logs hold bare `*const Header` pointers, which stay valid while the
///   transaction that recorded them is pinned.
#[repr(C, align(64))]
pub(crate) struct RawTVar<T> {
    header: Header,
    value: AtomicPtr<T>,
    extra: AtomicUsize,
    drop_value: unsafe fn(*mut T),
}

impl<T> Drop for RawTVar<T> {
    fn drop(&mut self) {
        let ptr = self.value.load(Ordering::Relaxed);
        // SAFETY: we are the last owner (see `TVarHandle::drop`); `drop_value` matches what
        // `value` holds (invariant on `RawTVar`), no longer reachable by anyone.
        unsafe { (self.drop_value)(ptr) };
    }
}

/// `drop_value` of boxed variables.
///
/// # Safety
///
/// `ptr` is a live value box of this `T`, not used again.
unsafe fn free_box<T>(ptr: *mut T) {
    // SAFETY: the caller's duty.
    unsafe { alloc::free_value(ptr, None) };
}

/// `drop_value` of inline variables: their words own nothing.
///
/// # Safety
///
/// None needed; `unsafe` only to share `free_box`'s type.
unsafe fn own_nothing<T>(_: *mut T) {}

impl<T> RawTVar<T> {
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    /// Loads the committed value pointer (boxed variables). `Acquire` pairs with
    /// [`publish`](Self::publish).
    #[inline]
    pub(crate) fn load_value(&self) -> *mut T {
        self.value.load(Ordering::Acquire)
    }

    /// Loads the committed words (inline variables). `Acquire` pairs with the `Release` stores
    /// of [`store_words`](Self::store_words): a reader that sees a newer word then sees the
    /// lock word locked or changed.
    #[inline]
    pub(crate) fn load_words(&self) -> Words {
        [
            self.value.load(Ordering::Acquire).addr(),
            self.extra.load(Ordering::Acquire),
        ]
    }

    /// Loads with `load` (the pointer or the words) between two loads of the lock word that show
    /// the same unlocked version, waiting out committers: what it returns is that version's.
    fn load_stable<V>(&self, load: impl Fn(&Self) -> V) -> V {
        let mut spins = 0_u32;
        loop {
            let pre = self.header.lock.load();
            if pre.is_locked() {
                backoff_spin(&mut spins);
                continue;
            }
            let value = load(self);
            if same_version(pre, self.header.lock.load()) {
                return value;
            }
        }
    }

    /// Stores the committed words of an inline variable.
    ///
    /// # Safety
    ///
    /// The caller holds `header.lock`, and `words` came from `alloc::to_words::<T>`.
    #[inline]
    unsafe fn store_words(&self, words: Words) {
        debug_assert!(self.header.lock.load().is_locked());
        self.value.store(
            std::ptr::without_provenance_mut(words[0]),
            Ordering::Release,
        );
        self.extra.store(words[1], Ordering::Release);
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

    /// Type-erased publication, for write logs: `words` for an inline `T`, else the box `new`.
    ///
    /// # Safety
    ///
    /// `header` is the header of a live `RawTVar<T>` (this very `T`), the caller holds its lock,
    /// and either `T` is inline and `words` came from `alloc::to_words::<T>`, or the duties of
    /// [`publish`](Self::publish) hold with `new` a value box of this `T`.
    pub(crate) unsafe fn publish_erased(
        header: *const Header,
        new: *mut (),
        words: Words,
        guard: &Guard,
        retired: &mut Recycler,
    ) {
        // SAFETY: `Header` is the first field of the `#[repr(C)]` `RawTVar<T>`, and the caller
        // says `header` belongs to a `RawTVar<T>` of this `T`.
        let raw = unsafe { &*header.cast::<RawTVar<T>>() };
        if alloc::is_inline::<T>() {
            // SAFETY: we hold the lock and the words are a `T`'s (forwarded duties).
            unsafe { raw.store_words(words) }
        } else {
            // SAFETY: forwarded duties.
            unsafe { raw.publish(new.cast::<T>(), guard, retired) }
        }
    }

    /// Drops and frees a value box of this `T` (pending, or retired after its grace period),
    /// into `pool` if given.
    ///
    /// # Safety
    ///
    /// `pending` came from `alloc::box_value::<T>`, holds a value, and is not used again (or
    /// `T` is inline, and then nothing is freed).
    pub(crate) unsafe fn drop_pending(pending: *mut (), pool: Option<&mut Pool>) {
        if alloc::is_inline::<T>() {
            // Inline values own nothing (their write entries hold words and a null box).
            return;
        }
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
    /// One allocation for inline values, two for boxed ones.
    pub(crate) fn new(value: T) -> Self {
        let (value, extra, drop_value): (*mut T, usize, unsafe fn(*mut T)) =
            if alloc::is_inline::<T>() {
                // SAFETY: `T` is inline.
                let words = unsafe { alloc::to_words(value) };
                (
                    std::ptr::without_provenance_mut(words[0]),
                    words[1],
                    own_nothing::<T>,
                )
            } else {
                (alloc::box_value(None, value), 0, free_box::<T>)
            };
        let raw = Box::new(RawTVar {
            header: Header {
                lock: VersionedLock::new(0),
                refs: AtomicUsize::new(1),
            },
            value: AtomicPtr::new(value),
            extra: AtomicUsize::new(extra),
            drop_value,
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
    pub(crate) fn load_with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        let raw = self.raw();
        if alloc::is_inline::<T>() {
            // No pin: the words live in the variable, which `self` keeps alive.
            let words = raw.load_stable(RawTVar::load_words);
            // SAFETY: the words were loaded between two loads of one unlocked version, so they
            // are that version's value, whole (invariant on `RawTVar`).
            return f(&unsafe { alloc::from_words::<T>(words) });
        }
        let guard = reclaim::pin();
        let ptr = raw.load_stable(RawTVar::load_value);
        // SAFETY: `ptr` was the committed value at one version, loaded while `guard` pins this
        // thread, so it stays allocated until `guard` drops (invariant on `RawTVar`); published
        // values are immutable.
        let out = f(unsafe { &*ptr });
        drop(guard);
        out
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
        let inline = alloc::is_inline::<T>();
        let (new, words) = if inline {
            // SAFETY: `T` is inline.
            (std::ptr::null_mut(), unsafe { alloc::to_words(value) })
        } else {
            (alloc::box_value(Some(retired.pool()), value), [0; 2])
        };
        let mut spins = 0_u32;
        let prev = loop {
            match raw.header.lock.try_lock() {
                Some(prev) => break prev,
                None => backoff_spin(&mut spins),
            }
        };
        let wv = clock.write_version(prev.version());
        if inline {
            // SAFETY: we hold the lock (taken above); the words are a `T`'s.
            unsafe { raw.store_words(words) };
        } else {
            let guard = reclaim::pin();
            // SAFETY: we hold the lock (taken above), `new` is a fresh box, `guard` pins us.
            unsafe { raw.publish(new, &guard, retired) };
        }
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
