//! The heap object behind a `TVar`: lock word, reference count, and value slot.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::ptr::NonNull;

use super::alloc::{self, Pool, Words};
use super::parking;
use super::reclaim::{self, Dying, Guard, Recycler, Retired};
use super::versioned_lock::{VersionedLock, Word};
use crate::sync::{
    AtomicPtr, AtomicU16, AtomicU32, AtomicUsize, Ordering, fence, spin_loop, yield_now,
};

/// The type-independent head of every raw variable. Transaction logs point at it.
///
/// `#[repr(C)]` and first in [`RawTVar`], so a `*const Header` is also the address of its
/// `RawTVar<T>`; which `T` is recorded next to every pointer that is cast back.
///
/// `refs` counts the handles, plus one per value slot that, replaced, waits for its grace
/// period (see `RawTVar::publish`). `flags` are the variable's (see [`RawTVar`]); they live
/// here, next to the 32-bit count, so that the header takes 16 bytes and a variable's first
/// value slot starts 24 bytes after its lock word.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Header {
    pub(crate) lock: VersionedLock,
    refs: AtomicU32,
    /// Per slot: [`SLOT_FREE`] while the slot holds no value (its last one was dropped after
    /// its grace period), so that the next commit may move its value in (see the invariants
    /// of [`RawTVar`]). `flags[0]` is [`INLINE`] for inline variables, set once.
    flags: [AtomicU16; 2],
    /// Under loom, the variable's place in creation order (see [`Header::lock_key`]).
    #[cfg(stm_loom)]
    serial: usize,
}

impl Header {
    /// The variable's identity: its address. Used by the wait registry and `ref_eq`.
    pub(crate) fn addr(&self) -> usize {
        self as *const Header as usize
    }

    /// The key a commit with commutes locks its write set in order of
    /// (`RawTx::lock_in_address_order`): the address. Under loom, the creation order instead:
    /// a model must behave the same in every execution, and addresses can change order.
    pub(crate) fn lock_key(&self) -> usize {
        #[cfg(stm_loom)]
        return self.serial;
        #[cfg(not(stm_loom))]
        self.addr()
    }
}

/// Under loom, the serial number of the next variable (a plain atomic: not part of a model).
#[cfg(stm_loom)]
static NEXT_SERIAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One transactional variable. A variable of a small plain value owns a cache line (see
/// [`layout`]): a transaction touching it misses on one line, and neighbours never share it.
/// The first value of a boxed variable lives in the variable itself (`slot`), so `TVar::new`
/// makes one allocation. A variable of a value of up to [`SECOND_SLOT_MAX`] bytes has a second
/// slot right after the struct, in the same allocation (see [`layout`]).
///
/// # Invariants
///
/// - **Boxed** (`!alloc::is_inline::<T>()`): `slot` is `initial`. `value` always points to a
///   live value holding the last committed value: one of the slots or a value box
///   (`alloc::box_value::<T>`). It changes only while `header.lock` is held; the replaced value
///   is retired through the epoch, never freed directly, so a reader that loaded the pointer
///   while pinned may read through it until it unpins. A published value is never mutated.
/// - **The slots** of a boxed variable: slot 0 is `slot`, slot 1 (if [`has_second_slot`]) the
///   `T` at [`second_offset`] from the variable's address. Each is in one of three states:
///   *current* (`value` points to it; the first value starts in slot 0), *in grace*
///   (replaced, retired; the variable's memory is held by one count in `refs` per slot in
///   grace until `drop_slot` drops the value after its grace period), or *free*
///   (`header.flags[i] == SLOT_FREE`: it holds no value, and no reader can reach it, since its
///   grace period passed while `value` pointed elsewhere; slot 1 starts free). Only
///   `drop_slot` makes a slot free (`Release`, after the drop), and only a commit holding the
///   lock fills it again (`Acquire` load of its flag, then a bitwise move of the new value out
///   of its unshared box), so the states follow each other in this order and a value in a
///   slot is never overwritten while readable. The two slots go through their states independently
///   (each has its own flag word, so `drop_slot` of one and a commit filling the other never
///   write the same atomic). A variable whose values are written once in a while thus keeps
///   its value next to its lock word: a write goes to whichever slot is free, and readers miss
///   one line (or two neighbours) instead of two apart.
/// - `header.flags[0]` is `INLINE` for inline variables, set at creation and never changed; they
///   never use the slots' states (`header.flags[1]` stays 0).
/// - **Inline** (`alloc::is_inline::<T>()`): `slot` is `extra`. The address of `value` (no
///   provenance) and `extra` are the two words of the last committed value
///   (`alloc::to_words`). They change only while `header.lock` is held, each by a `Release`
///   store, so a reader that loads both between two loads of the lock word showing the same
///   unlocked version has the words of that version's value, whole.
/// - When the variable dies, `drop_boxed` drops what `value` owns (the box, or the value of the
///   slot it points to); inline values own nothing. No slot is in grace then (each would hold a
///   count).
/// - **Death.** When the count in `refs` reaches zero the variable is *killed* ([`kill`]): its
///   lock is taken for good (`VersionedLock::try_kill`) and its current value dropped at once.
///   That is sound because a variable's *current* value is only ever dereferenced through a
///   live handle (every read borrows one for its whole duration), and a killed variable is never
///   published to again. Its memory, though, is freed through the epoch: transaction logs hold
///   bare `*const Header` pointers, valid while the transaction that recorded them is pinned,
///   and they only ever load the lock word.
#[repr(C)]
pub(crate) struct RawTVar<T> {
    header: Header,
    value: AtomicPtr<T>,
    slot: Slot<T>,
}

/// `Header::flags[0]`: the variable is inline (never changes).
const INLINE: u16 = 1;
/// `Header::flags[i]`: a boxed variable's slot `i` is free.
const SLOT_FREE: u16 = 2;

/// The largest value (in bytes) whose variables get a second slot. A value written now and
/// then alternates between the two slots instead of between the slot and a box elsewhere
/// (measured: half the node reads of a `TMap` went to a box); larger values would make every
/// variable of them grow by too much for what a slot saves.
pub(crate) const SECOND_SLOT_MAX: usize = 64;

/// True if a `RawTVar<T>`'s allocation holds a second slot (used by boxed variables only: an
/// inline one never publishes through a slot, and its cache line has room for the slot anyway).
/// Computed from `size_of` only, so every place that frees a variable agrees.
#[inline(always)]
const fn has_second_slot<T>() -> bool {
    size_of::<T>() != 0 && size_of::<T>() <= SECOND_SLOT_MAX
}

/// The offset of the second slot from the start of a `RawTVar<T>` (meaningful if
/// [`has_second_slot`]). The struct's size is a multiple of its alignment, which is at least
/// `T`'s (the union holds a `T`), so the slot follows it directly, aligned.
#[inline(always)]
const fn second_offset<T>() -> usize {
    size_of::<RawTVar<T>>()
}

/// The last field of a variable: the second word of an inline value, or the first value of a
/// boxed one. Sharing the space keeps the struct of a value up to 40 bytes within 64 bytes
/// (a second slot follows it for values up to [`SECOND_SLOT_MAX`] bytes).
#[repr(C)]
union Slot<T> {
    extra: ManuallyDrop<AtomicUsize>,
    initial: ManuallyDrop<UnsafeCell<MaybeUninit<T>>>,
}

/// The memory layout of a `RawTVar<T>`: the struct, then a second slot for values of up to
/// [`SECOND_SLOT_MAX`] bytes. Variables of small values without drop glue (counters,
/// balances, flags: what threads tend to share and write) each get a cache line of their own,
/// so that writers of neighbouring variables do not invalidate each other's lines (measured:
/// two-thread transfers between 1,024 accounts 8% to 20% faster). Other variables keep the
/// allocator's natural alignment: an aligned allocation (`memalign`) costs several times a plain
/// one, and structures that create a variable per element (queues, trees) create many.
/// Computed from `size_of` and `needs_drop` only, so every place that frees a variable agrees.
fn layout<T>() -> std::alloc::Layout {
    let mut natural = std::alloc::Layout::new::<RawTVar<T>>();
    if has_second_slot::<T>() {
        let (extended, offset) = natural
            .extend(std::alloc::Layout::new::<T>())
            .expect("a variable with two slots fits in memory");
        debug_assert_eq!(offset, second_offset::<T>());
        natural = extended.pad_to_align();
    }
    if size_of::<T>() <= size_of::<Words>() && !std::mem::needs_drop::<T>() {
        natural
            .align_to(64)
            .expect("64 is a valid alignment")
            .pad_to_align()
    } else {
        natural
    }
}

/// Drops the value of a dead boxed variable.
///
/// # Safety
///
/// The variable is dead (its lock taken for good) and its value is not used again.
unsafe fn drop_boxed<T>(raw: &RawTVar<T>) {
    let ptr = raw.value.load(Ordering::Relaxed);
    if raw.slot_index(ptr).is_some() {
        // SAFETY: the slot holds the current value (invariant on `RawTVar`), dropped
        // once, here; the memory goes with the variable.
        unsafe { std::ptr::drop_in_place(ptr) };
    } else {
        // SAFETY: a value box of this `T` (invariant), freed once, here.
        unsafe { alloc::free_value(ptr, None) };
    }
}

/// Kills the variable at `ptr`: takes its lock for good, drops its value, wakes its waiters,
/// and returns its memory for the epoch; `None` if a committer holds the lock now.
///
/// # Safety
///
/// `ptr` is a `RawTVar<T>` whose handle count reached zero, killed once.
unsafe fn kill<T>(ptr: *mut ()) -> Option<Retired> {
    /// Frees a dead variable's memory; its value was dropped by `kill`.
    unsafe fn free_memory<T>(ptr: *mut (), _: Option<&mut Pool>) {
        // SAFETY: allocated by `alloc_var(layout::<T>())` in `TVarHandle::new`; `RawTVar`
        // owns nothing else at this point (its value was dropped by `kill`).
        unsafe { alloc::free_var(ptr.cast(), layout::<T>()) };
    }
    // SAFETY: the memory stays allocated until the returned `Retired` is freed (the caller's
    // duty says the count is zero, so nobody else kills or frees it).
    let raw = unsafe { &*ptr.cast::<RawTVar<T>>() };
    let replaced = raw.header.lock.try_kill()?;
    // SAFETY: the count is zero, so nobody dereferences the current value again (invariant on
    // `RawTVar`), and nobody can publish another: the lock is ours for good.
    if raw.header.flags[0].load(Ordering::Relaxed) & INLINE == 0 {
        // (Inline values own nothing: their words are plain integers.)
        // SAFETY: as above.
        unsafe { drop_boxed(raw) };
    }
    if replaced.has_waiters() {
        // Nothing will ever change this variable again: let its waiters re-run.
        parking::global().wake(raw.header.addr());
    }
    Some(Retired {
        ptr,
        free: free_memory::<T>,
    })
}

/// Drops one count of the variable at `ptr`, burying it if that was the last.
///
/// # Safety
///
/// The caller owns one count of a live `RawTVar<T>` and gives it up.
unsafe fn release<T>(ptr: NonNull<RawTVar<T>>) {
    // SAFETY: the caller's count keeps the variable allocated until this decrement.
    if unsafe { ptr.as_ref() }
        .header
        .refs
        .fetch_sub(1, Ordering::Release)
        != 1
    {
        return;
    }
    // Pairs with the `Release` decrements of the other owners: their uses happen before the
    // kill.
    fence(Ordering::Acquire);
    // SAFETY: the count reached zero, just now, here; `kill::<T>` is this variable's.
    unsafe {
        reclaim::bury(Dying {
            ptr: ptr.as_ptr().cast(),
            kill: kill::<T>,
        });
    }
}

impl<T> RawTVar<T> {
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    /// The address of value slot `i` (meaningful for boxed variables; slot 1 only if
    /// [`has_second_slot`]).
    ///
    /// Slot 1 lies past the struct, in the same allocation: its address is derived from
    /// `self`'s, like the struct's fields from a `*const Header` (a pointer to the start of
    /// the allocation serves the whole of it).
    #[inline]
    fn slot_ptr(&self, i: usize) -> *mut T {
        if i == 0 {
            std::ptr::addr_of!(self.slot).cast::<T>().cast_mut()
        } else {
            std::ptr::from_ref(self)
                .cast::<u8>()
                .wrapping_add(second_offset::<T>())
                .cast::<T>()
                .cast_mut()
        }
    }

    /// Which slot `ptr` is, if it is one (a boxed variable's value pointer).
    #[inline]
    fn slot_index(&self, ptr: *mut T) -> Option<usize> {
        if ptr == self.slot_ptr(0) {
            Some(0)
        } else if has_second_slot::<T>() && ptr == self.slot_ptr(1) {
            Some(1)
        } else {
            None
        }
    }

    /// The second word of an inline value.
    ///
    /// # Safety
    ///
    /// `T` is inline, so `slot` is `extra` (invariant on `RawTVar`).
    #[inline]
    unsafe fn extra(&self) -> &AtomicUsize {
        // SAFETY: the caller's duty says `extra` is the field in use.
        unsafe { &self.slot.extra }
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
        let first = self.value.load(Ordering::Acquire).addr();
        if size_of::<T>() <= size_of::<usize>() {
            // The value fits in the first word; the second holds nothing of it.
            return [first, 0];
        }
        // SAFETY: only inline variables load words (callers check `is_inline`).
        [first, unsafe { self.extra() }.load(Ordering::Acquire)]
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
        // SAFETY: words are only stored into inline variables (the caller's duty).
        unsafe { self.extra() }.store(words[1], Ordering::Release);
    }
}

impl<T> RawTVar<T> {
    /// Takes the lock, waiting (with backoff) while a committer holds it; returns the word it
    /// replaced. For single-variable commits outside transactions, which hold no other lock.
    fn lock_waiting(&self) -> Word {
        let mut spins = 0_u32;
        loop {
            match self.header.lock.try_lock() {
                Some(prev) => return prev,
                None => backoff_spin(&mut spins),
            }
        }
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
        let new = match self.claim_free_slot() {
            Some(slot) => {
                // SAFETY: `new` is a value box of this `T`, handed over and not shared yet; the
                // slot is free memory for a `T`, claimed by us under the lock. The value is
                // moved bit for bit, and the box is freed without dropping it
                // (`ManuallyDrop<T>` has `T`'s size class).
                unsafe {
                    std::ptr::copy_nonoverlapping(new, slot, 1);
                    alloc::free_value(new.cast::<ManuallyDrop<T>>(), Some(retired.pool()));
                }
                slot
            }
            None => new,
        };
        self.value.store(new, Ordering::Release);
        let old = match self.slot_index(old) {
            Some(i) => {
                // The slot is part of the variable: its memory must outlive the slot's
                // grace period, so the retired slot holds a count of its own.
                if self.header.refs.fetch_add(1, Ordering::Relaxed) == 0 {
                    // No handle is left: the variable died while this commit held its lock
                    // (its last handle went on another thread, or in one of this commit's
                    // `while_committing` hooks), and its burial waits for the lock. Nobody
                    // dereferences the value of a variable without a handle, so the slot's
                    // value is dropped now; the burial drops `new`.
                    self.header.refs.store(0, Ordering::Relaxed);
                    // SAFETY: the slot held the published value, now unlinked and unreachable.
                    unsafe { std::ptr::drop_in_place(old) };
                    return;
                }
                Retired {
                    ptr: std::ptr::from_ref(self).cast_mut().cast(),
                    free: if i == 0 {
                        Self::drop_slot::<0>
                    } else {
                        Self::drop_slot::<1>
                    },
                }
            }
            None => Retired {
                ptr: old.cast(),
                free: Self::drop_pending,
            },
        };
        // SAFETY: `old` was the published value (invariant on `RawTVar`), just unlinked under
        // the lock, so nobody else retires it; `drop_pending` frees a value box of this `T`,
        // `drop_slot::<i>` slot `i`; `T: Send`.
        unsafe { retired.push(guard, old) };
    }

    /// A free slot, taken out of the free state, if there is one: slot 0 first, the nearer to
    /// the lock word. The caller holds the lock and fills the slot before it unlocks.
    #[inline]
    fn claim_free_slot(&self) -> Option<*mut T> {
        let slots = if has_second_slot::<T>() { 2 } else { 1 };
        for i in 0..slots {
            // `Acquire` pairs with `drop_slot`'s `Release`: the slot's last value was dropped
            // before we write over it. A free slot is not current (`value` points elsewhere),
            // and only the lock holder leaves the free state, so a plain store claims it.
            if self.header.flags[i].load(Ordering::Acquire) == SLOT_FREE {
                self.header.flags[i].store(0, Ordering::Relaxed);
                return Some(self.slot_ptr(i));
            }
        }
        None
    }

    /// Drops the value of replaced slot `I` after its grace period, marks the slot free, then
    /// gives up the count the slot held.
    ///
    /// # Safety
    ///
    /// `raw` is this `RawTVar<T>`, whose slot `I` was replaced by `publish` (which took the
    /// count) and whose grace period has passed; called once.
    unsafe fn drop_slot<const I: usize>(raw: *mut (), _: Option<&mut Pool>) {
        let raw = raw.cast::<RawTVar<T>>();
        // SAFETY: the slot's count keeps the variable allocated; the slot holds the value it
        // was retired with, unreachable since its grace period passed; dropped once, here.
        unsafe { std::ptr::drop_in_place((*raw).slot_ptr(I)) };
        // The slot may take a value again; `Release` orders the drop before the next commit's
        // write into it. (On a dead variable nobody looks.)
        // SAFETY: still allocated (the slot's count, given up just below).
        unsafe { (*raw).header.flags[I].store(SLOT_FREE, Ordering::Release) };
        // SAFETY: the count taken by `publish` for the slot, given up once.
        unsafe { release(NonNull::new_unchecked(raw)) };
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
    /// `T` is inline, or `pending` is null, and then nothing is freed).
    pub(crate) unsafe fn drop_pending(pending: *mut (), pool: Option<&mut Pool>) {
        if alloc::is_inline::<T>() || pending.is_null() {
            // Inline values own nothing (their write entries hold words and a null box), and
            // a commute's entry holds no box until its commit computes one.
            return;
        }
        // SAFETY: the caller's duty.
        unsafe { alloc::free_value(pending.cast::<T>(), pool) };
    }
}

/// An owning, reference-counted pointer to a [`RawTVar`]; the engine half of `TVar`.
///
/// Like `Arc`: dropping the last handle drops the value at once; the variable's memory is freed
/// through the epoch (see *Death* on [`RawTVar`]).
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
    /// One allocation: the variable, with its first value inside (or inline).
    pub(crate) fn new(value: T) -> Self {
        let inline = alloc::is_inline::<T>();
        let layout = layout::<T>();
        let memory = alloc::alloc_var(layout).cast::<RawTVar<T>>();
        // SAFETY: fresh memory, sized and aligned for a `RawTVar<T>` (`layout` only adds
        // alignment), written once here and owned by the handle made below.
        unsafe {
            memory.write(RawTVar {
                header: Header {
                    lock: VersionedLock::new(0),
                    refs: AtomicU32::new(1),
                    flags: [
                        AtomicU16::new(if inline { INLINE } else { 0 }),
                        // A boxed variable's second slot starts free: its first write lands
                        // there.
                        AtomicU16::new(if !inline && has_second_slot::<T>() {
                            SLOT_FREE
                        } else {
                            0
                        }),
                    ],
                    #[cfg(stm_loom)]
                    serial: NEXT_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                },
                value: AtomicPtr::new(std::ptr::null_mut()),
                slot: if inline {
                    Slot {
                        extra: ManuallyDrop::new(AtomicUsize::new(0)),
                    }
                } else {
                    Slot {
                        initial: ManuallyDrop::new(UnsafeCell::new(MaybeUninit::uninit())),
                    }
                },
            });
        }
        // SAFETY: initialized just above; the handle below owns it from here.
        let raw = unsafe { &*memory };
        if inline {
            // SAFETY: `T` is inline.
            let words = unsafe { alloc::to_words(value) };
            raw.value.store(
                std::ptr::without_provenance_mut(words[0]),
                Ordering::Relaxed,
            );
            // SAFETY: `T` is inline, so `slot` was made as `extra` just above.
            unsafe { raw.extra() }.store(words[1], Ordering::Relaxed);
        } else {
            let slot = raw.slot_ptr(0);
            // SAFETY: the slot is ours alone (the variable is not shared yet), sized and
            // aligned for a `T` (the union's `initial` field, made just above).
            unsafe { slot.write(value) };
            raw.value.store(slot, Ordering::Relaxed);
        }
        // Handing the handle to another thread publishes these stores (`Send` happens-before).
        Self {
            ptr: NonNull::from(raw),
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
        // Pinned before locking: an outermost pin may run deferred work, which must never find
        // this thread holding a lock.
        let guard = (!inline).then(reclaim::pin);
        let prev = raw.lock_waiting();
        let wv = clock.write_version(prev.version());
        match &guard {
            // SAFETY: we hold the lock (taken above); the words are a `T`'s.
            None => unsafe { raw.store_words(words) },
            // SAFETY: we hold the lock (taken above), `new` is a fresh box, `guard` pins us.
            Some(guard) => unsafe { raw.publish(new, guard, retired) },
        }
        // SAFETY: we hold the lock, and the caller wakes waiters if `prev` says so.
        unsafe { raw.header.lock.unlock(wv) };
        prev
    }

    /// Commits a change decided from the current value, alone: lock (waiting for it), run `f`
    /// on the committed value, and if it returns a new value publish it under a new version;
    /// otherwise release the lock unchanged. Returns the replaced word (for waking waiters)
    /// if a value was published, and what `f` returned.
    ///
    /// `f` runs while the variable is locked, so it must be short and must not read this
    /// variable (a read would wait for the lock forever). If `f` panics, the lock is released
    /// unchanged and the panic propagates.
    pub(crate) fn update<R>(
        &self,
        clock: &super::clock::Clock,
        retired: &mut Recycler,
        f: impl FnOnce(&T) -> (Option<T>, R),
    ) -> (Option<Word>, R) {
        /// Gives the lock back unchanged unless disarmed: the panic path of `f`.
        struct Restore<'a>(&'a VersionedLock, Option<Word>);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                if let Some(prev) = self.1 {
                    // SAFETY: armed only while this thread holds the lock that `try_lock`
                    // returned `prev` for.
                    unsafe { self.0.restore(prev) };
                }
            }
        }

        let raw = self.raw();
        let inline = alloc::is_inline::<T>();
        // Pinned before locking, as in `store` (boxed values only); also keeps the current
        // boxed value alive while `f` looks at it.
        let guard = (!inline).then(reclaim::pin);
        let prev = raw.lock_waiting();
        let mut restore = Restore(&raw.header.lock, Some(prev));
        let (new, out) = if inline {
            // SAFETY: we hold the lock, so the words are the committed value, whole; `T` is
            // inline.
            f(&unsafe { alloc::from_words::<T>(raw.load_words()) })
        } else {
            // SAFETY: we hold the lock and `guard` pins us (boxed `T`): the committed box is
            // live and nobody replaces it until we unlock (invariant on `RawTVar`).
            f(unsafe { &*raw.load_value() })
        };
        restore.1 = None;
        let Some(value) = new else {
            // SAFETY: we hold the lock that `try_lock` returned `prev` for.
            unsafe { raw.header.lock.restore(prev) };
            return (None, out);
        };
        let wv = clock.write_version(prev.version());
        match &guard {
            // SAFETY: we hold the lock; `T` is inline, so the words are a `T`'s.
            None => unsafe { raw.store_words(alloc::to_words(value)) },
            Some(guard) => {
                let new = alloc::box_value(Some(retired.pool()), value);
                // SAFETY: we hold the lock, `new` is a fresh box, `guard` pins us.
                unsafe { raw.publish(new, guard, retired) };
            }
        }
        // SAFETY: we hold the lock, and the caller wakes waiters if `prev` says so.
        unsafe { raw.header.lock.unlock(wv) };
        (Some(prev), out)
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
        // Like `Arc`: an overflowing count would free the variable while in use. The count is
        // 32 bits wide: more than 2^31 handles of one variable abort the process.
        if old > i32::MAX as u32 {
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
        // SAFETY: the handle owns one count and gives it up, once.
        unsafe { release(self.ptr) };
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

#[cfg(all(test, not(stm_loom)))]
mod tests {
    use super::*;
    use crate::raw::clock;

    /// Lets the grace periods of everything `retired` holds pass, until slot `i` is free.
    fn wait_until_free<T>(raw: &RawTVar<T>, i: usize, retired: &mut Recycler) {
        let mut rounds = 0;
        while raw.header.flags[i].load(Ordering::Acquire) != SLOT_FREE {
            rounds += 1;
            assert!(rounds < 10_000, "the slot's grace period never ended");
            let guard = reclaim::pin();
            retired.flush(&guard);
            guard.flush();
            drop(guard);
            retired.reclaim();
            std::thread::yield_now();
        }
    }

    /// The points to check in the slots' life: the first write goes to the second slot; a
    /// replaced slot waits out its grace period (the write meanwhile goes to a box), then the
    /// next commit moves its value into it, and the box it came in goes back to the pool.
    #[test]
    fn a_free_slot_takes_the_next_value_and_a_slot_in_grace_does_not() {
        let handle = TVarHandle::new(vec![0_u64; 3]);
        let raw = handle.raw();
        let mut retired = Recycler::default();
        let value_at = |raw: &RawTVar<Vec<u64>>| raw.slot_index(raw.load_value());
        assert_eq!(value_at(raw), Some(0), "the first value is in slot 0");
        handle.store(vec![1; 3], clock::global(), &mut retired);
        assert_eq!(value_at(raw), Some(1), "the second slot starts free");
        handle.store(vec![2; 3], clock::global(), &mut retired);
        assert_eq!(value_at(raw), None, "a slot in grace takes no value");
        assert_eq!(handle.load_with(Clone::clone), vec![2; 3]);
        wait_until_free(raw, 0, &mut retired);
        handle.store(vec![3; 3], clock::global(), &mut retired);
        assert_eq!(value_at(raw), Some(0), "a free slot takes the value");
        assert_eq!(handle.load_with(Clone::clone), vec![3; 3]);
        wait_until_free(raw, 1, &mut retired);
        handle.store(vec![4; 3], clock::global(), &mut retired);
        assert_eq!(
            value_at(raw),
            Some(1),
            "writes alternate between free slots"
        );
        assert_eq!(handle.load_with(Clone::clone), vec![4; 3]);
        handle.store(vec![5; 3], clock::global(), &mut retired);
        assert_ne!(value_at(raw), Some(1));
        assert_eq!(handle.load_with(Clone::clone), vec![5; 3]);
    }

    /// A variable of a value larger than `SECOND_SLOT_MAX` has one slot: its first write goes
    /// to a box, and the slot takes a value again once free.
    #[test]
    fn a_large_value_has_one_slot() {
        let handle = TVarHandle::new([String::new(), String::new(), String::new()]);
        assert!(size_of::<[String; 3]>() > SECOND_SLOT_MAX);
        let raw = handle.raw();
        let mut retired = Recycler::default();
        let big = |s: &str| [s.to_owned(), s.to_owned(), s.to_owned()];
        handle.store(big("a"), clock::global(), &mut retired);
        assert_eq!(raw.slot_index(raw.load_value()), None);
        wait_until_free(raw, 0, &mut retired);
        handle.store(big("b"), clock::global(), &mut retired);
        assert_eq!(raw.slot_index(raw.load_value()), Some(0));
        assert_eq!(handle.load_with(Clone::clone), big("b"));
    }
}
