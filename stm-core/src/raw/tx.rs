//! The logs of one running transaction and the TL2 commit protocol over them.
//!
//! This module owns every raw pointer a transaction holds. The safe layer in `transaction.rs`
//! drives it: `begin`, then `read`/`write` (and nesting marks for `or_else`), then `commit`,
//! `wait_for_change` or `reset`.

use std::any::TypeId;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::marker::PhantomData;
use std::mem::MaybeUninit;

use super::alloc::{self, Pool, Words};
use super::clock::{self, Clock};
use super::parking::{self, WaitRegistry, Waiter};
use super::reclaim::{self, Guard, Recycler};
use super::tvar::{Header, RawTVar, TVarHandle, same_version};
use super::versioned_lock::Word;
use crate::sync::{Arc, spin_loop, yield_now};

/// The transaction saw a concurrent commit and must restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Conflict;

/// Reads of the running transaction, and nothing else, for as long as `'a`: what
/// [`TVar::read_through`] lends its closure, so that it can walk a structure of variables (a
/// tree, a list) through the handles inside the values it reads, without cloning a handle.
///
/// A `Reader` cannot write, roll back, retry or commit, and the transaction cannot end while it
/// exists, so every value it reads stays valid for `'a`: [`read_ref`](Reader::read_ref) hands
/// out references for all of `'a`. Reads through a `Reader` belong to the transaction like any
/// other (they are validated, and a `retry` waits on them).
///
/// [`TVar::read_through`]: crate::TVar::read_through
///
/// # Examples
///
/// ```
/// use stm_core::{TVar, atomically};
///
/// struct Node { value: u32, next: Option<TVar<Node>> }
/// let list = TVar::new(Node { value: 1, next: Some(TVar::new(Node { value: 2, next: None })) });
/// // Sum the list without cloning a single handle.
/// let sum = atomically(|tx| {
///     list.read_through(tx, |mut node, reader| {
///         let mut sum = node.value;
///         while let Some(next) = &node.next {
///             node = reader.read_ref(next)?;
///             sum += node.value;
///         }
///         Ok(sum)
///     })
/// });
/// assert_eq!(sum, 3);
/// ```
pub struct Reader<'a>(&'a mut RawTx);

impl std::fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

impl<'a> Reader<'a> {
    /// [`RawTx::read`] on the lent transaction.
    #[inline]
    pub(crate) fn read_raw<T, R>(
        &mut self,
        tv: &TVarHandle<T>,
        f: impl FnOnce(&T) -> R,
    ) -> Result<R, Conflict>
    where
        T: Send + Sync + 'static,
    {
        self.0.read(tv, f)
    }

    /// The value of `tv` as the transaction sees it, for all of `'a`.
    #[inline]
    pub(crate) fn read_ref_raw<T>(&mut self, tv: &'a TVarHandle<T>) -> Result<&'a T, Conflict>
    where
        T: Send + Sync + 'static,
    {
        let ptr = self.0.read_ptr_inlined(tv)?;
        // SAFETY: `read_ptr_inlined` (as `read_ptr`) returns the pending value, the pinned
        // committed value or a copy in the attempt's arena; each stays allocated and unmodified
        // until the attempt ends, which cannot happen while this `Reader` borrows the
        // transaction (`'a`). The handle `tv` is borrowed for `'a` too, so the variable cannot
        // die (which would drop its value) first.
        Ok(unsafe { &*ptr })
    }
}

/// Copies of inline values handed out by [`Reader::read_ref`], valid until the attempt ends.
///
/// # Invariants
///
/// `chunks` are `Box<[Slot16; ARENA_CHUNK]>` allocations owned by the arena; the first `used`
/// slots (across chunks, in order) are initialized. Slots are written through raw pointers
/// only, never through a reference to a whole chunk, so references handed out to earlier slots
/// stay valid while later ones are written. `clear` (at the end of an attempt) makes them all
/// free again. Chunks are kept for later attempts: an arena holds as many as the largest walk
/// of inline values through one `Reader` needed (16 bytes per value). Trimming them in
/// `clear` measured 45% slower on read-only transactions of 100 boxed values (the end of every
/// attempt runs it), so they stay until the thread's transaction is dropped.
#[derive(Debug, Default)]
struct Arena {
    chunks: Vec<*mut Slot16>,
    used: usize,
}

/// One arena slot: two words, aligned for any inline type (`u128` included).
#[derive(Debug, Clone, Copy)]
#[repr(align(16))]
struct Slot16(#[allow(dead_code, reason = "read through pointers")] Words);

const ARENA_CHUNK: usize = 64;

impl Arena {
    /// Stores `words`; returns where, valid until [`clear`](Self::clear).
    fn push(&mut self, words: Words) -> *const Words {
        let (chunk, slot) = (self.used / ARENA_CHUNK, self.used % ARENA_CHUNK);
        if chunk == self.chunks.len() {
            let fresh: Box<[Slot16; ARENA_CHUNK]> = Box::new([Slot16([0; 2]); ARENA_CHUNK]);
            self.chunks.push(Box::into_raw(fresh).cast::<Slot16>());
        }
        // SAFETY: `chunks[chunk]` is a live chunk of `ARENA_CHUNK` slots (invariant) and
        // `slot < ARENA_CHUNK`; the slot is past `used`, so nobody holds a reference to it.
        let at = unsafe { self.chunks[chunk].add(slot) };
        // SAFETY: as above; written through the raw pointer only.
        unsafe { at.write(Slot16(words)) };
        self.used += 1;
        at.cast::<Words>()
    }

    fn clear(&mut self) {
        self.used = 0;
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        for chunk in self.chunks.drain(..) {
            // SAFETY: made by `Box::into_raw` of a `Box<[Slot16; ARENA_CHUNK]>` (invariant),
            // freed once, here, when nobody can hold references into it (the log is dropped).
            drop(unsafe { Box::from_raw(chunk.cast::<[Slot16; ARENA_CHUNK]>()) });
        }
    }
}

/// How many times a reader spins on a locked variable before it starts yielding.
const READ_SPINS: u32 = 128;
/// How many times a reader then yields to the holder before giving up on this attempt. A
/// commit holds its locks for a short, bounded time, unless its thread is preempted or its
/// allocator blocks. Measured on two threads updating random cells of a `MegaRef` (whose
/// world every commit locks): giving up after the spins alone restarted 0.45-0.64% of the
/// updates; with these yields, under 0.001%.
const READ_YIELDS: u32 = 64;
/// How many times a committer spins on a taken lock before abandoning the commit (or, for a
/// commute's lock, before it starts yielding to the holder).
const LOCK_SPINS: u32 = 64;
/// Write sets up to this size are searched linearly; larger ones get a hash index.
const LINEAR_MAX: usize = 8;
/// Logs that grew past this many entries are shrunk back after the transaction.
const KEEP_CAPACITY: usize = 1 << 14;

#[derive(Debug, Clone, Copy)]
struct ReadEntry {
    header: *const Header,
    version: u64,
}

/// `publish` / `drop_pending` of the entry's `T`: see [`RawTVar::publish_erased`].
type PublishFn = unsafe fn(*const Header, *mut (), Words, &Guard, &mut Recycler);
type DropFn = unsafe fn(*mut (), Option<&mut Pool>);

#[derive(Debug)]
struct WriteEntry {
    header: *const Header,
    /// A value box (`alloc::box_value`) for the `T` of `header`'s variable, moved into the
    /// variable by `publish`; null if that `T` is inline.
    pending: *mut (),
    /// The value's words if `T` is inline (`alloc::to_words`); unused otherwise.
    words: Words,
    publish: PublishFn,
    drop_pending: DropFn,
    /// The word `try_lock` replaced, while the commit holds the lock.
    locked_from: Word,
}

/// A value overwritten inside an `or_else` alternative, to put back if it retries.
#[derive(Debug)]
struct Undo {
    index: usize,
    pending: *mut (),
    words: Words,
    drop_pending: DropFn,
    /// The entry's `locked_from` then: [`Word::COMMUTED`] if it was a commute's placeholder.
    marker: Word,
}

/// A [`commute`](RawTx::commute) of one variable, applied at commit to its latest committed
/// value (in call order with the other commutes of that variable).
struct Commute {
    header: *const Header,
    op: Box<dyn CommuteOp>,
}

/// A variable's commutes `commutes[..upto]` folded over its committed value at `base`
/// (`RawTx::fold_commutes_memo`), valid while no commute was removed (`cut`).
struct FoldMemo {
    header: *const Header,
    base: *const (),
    cut: u64,
    upto: usize,
    value: Box<dyn std::any::Any + Send + Sync>,
}

impl std::fmt::Debug for FoldMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FoldMemo")
            .field("header", &self.header)
            .field("upto", &self.upto)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Commute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commute")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// A commute's function, with its value type erased for the commit. The function sees the
/// variable's committed value (`base`) and the value so far (`current`: `base` for the
/// variable's first commute, else the result of the one before) and returns the new value, or
/// `None` to refuse: the transaction then conflicts ([`RawTx::commute_checked`]). A plain
/// `commute` ignores `base` and never refuses.
trait CommuteOp {
    /// Sets `entry`'s value to `f(base, current)`, with `base` the variable's committed value
    /// and `current` that value if `first`, else the entry's value (an earlier commute's
    /// result). Returns `false`, leaving the entry as it was, if `f` refuses.
    ///
    /// # Safety
    ///
    /// `entry` is the write entry of this commute's variable, whose lock the caller holds while
    /// pinned. If `first`, the entry holds no value; otherwise it holds a value of the
    /// variable's `T`.
    unsafe fn apply(&self, entry: &mut WriteEntry, first: bool, pool: &mut Pool) -> bool;

    /// The `TypeId` of the variable's `T`.
    fn value_type(&self) -> TypeId;

    /// Writes `f(base, input)` to `output` and returns `true`, or returns `false` (writing
    /// nothing) if `f` refuses.
    ///
    /// # Safety
    ///
    /// `base` and `input` point to live values, and `output` to storage for one, of the type
    /// `value_type` names.
    unsafe fn call(&self, base: *const (), input: *const (), output: *mut ()) -> bool;
}

/// `op`'s function applied to `value`, over the committed value `base`; `None` if it
/// refuses. Panics if `op` is not a commute of a `T`.
fn call_commute<T: 'static>(op: &dyn CommuteOp, base: &T, value: &T) -> Option<T> {
    assert!(
        op.value_type() == TypeId::of::<T>(),
        "a commute of a variable has the variable's type"
    );
    let mut out = MaybeUninit::<T>::uninit();
    // SAFETY: `op` is a commute of a `T` (checked above), `base` and `value` are live `T`s and
    // `out` is storage for one; `call` initializes `out` when it returns `true`. If it refuses
    // or panics, `out` is dropped uninitialized, which drops nothing.
    unsafe {
        op.call(
            std::ptr::from_ref(base).cast(),
            std::ptr::from_ref(value).cast(),
            out.as_mut_ptr().cast(),
        )
        .then(|| out.assume_init())
    }
}

/// The function of a `commute` of a `TVar<T>`, in the same box as its entry: a closure that
/// captures nothing makes no allocation.
struct TypedCommute<T, F> {
    f: F,
    _value: PhantomData<fn(&T, &T) -> Option<T>>,
}

impl<T, F> CommuteOp for TypedCommute<T, F>
where
    T: Send + Sync + 'static,
    F: Fn(&T, &T) -> Option<T> + Send + Sync + 'static,
{
    unsafe fn apply(&self, entry: &mut WriteEntry, first: bool, pool: &mut Pool) -> bool {
        let inline = alloc::is_inline::<T>();
        // SAFETY: `Header` is the first field of the `#[repr(C)]` `RawTVar<T>`, and the entry
        // is this commute's variable, a `RawTVar<T>`.
        let raw = unsafe { &*entry.header.cast::<RawTVar<T>>() };
        let new = if inline {
            // SAFETY: we hold the lock (the caller's duty): the words are the committed value,
            // whole, of an inline `T`.
            let base = unsafe { alloc::from_words::<T>(raw.load_words()) };
            if first {
                (self.f)(&base, &base)
            } else {
                // SAFETY: the entry holds an inline `T`'s words (the caller's duty).
                (self.f)(&base, &unsafe { alloc::from_words::<T>(entry.words) })
            }
        } else {
            // SAFETY: we hold the lock and are pinned (the caller's duty): the committed box is
            // live and unchanged (invariant on `RawTVar`).
            let base = unsafe { &*raw.load_value() };
            if first {
                (self.f)(base, base)
            } else {
                // SAFETY: the entry holds a box of this `T` (the caller's duty), which it owns.
                (self.f)(base, unsafe { &*entry.pending.cast::<T>() })
            }
        };
        let Some(new) = new else {
            return false;
        };
        if inline {
            // SAFETY: `T` is inline.
            entry.words = unsafe { alloc::to_words(new) };
        } else if first {
            entry.pending = alloc::box_value(Some(pool), new).cast::<()>();
        } else {
            // SAFETY: the entry owns this `T`'s box; assigning drops the old value in place.
            unsafe { *entry.pending.cast::<T>() = new };
        }
        true
    }

    fn value_type(&self) -> TypeId {
        TypeId::of::<T>()
    }

    unsafe fn call(&self, base: *const (), input: *const (), output: *mut ()) -> bool {
        // SAFETY: all three point to `T`s, live or to be written (the caller's duty).
        let new = unsafe { (self.f)(&*base.cast::<T>(), &*input.cast::<T>()) };
        let Some(new) = new else {
            return false;
        };
        // SAFETY: as above.
        unsafe { output.cast::<T>().write(new) };
        true
    }
}

/// Where a nested alternative began: see [`RawTx::begin_nested`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    writes: usize,
    undo: usize,
    commutes: usize,
    outer_nest: usize,
    outer_nest_undo: usize,
    outer_nest_commutes: usize,
}

/// A multiplicative hasher for addresses (the std one is DoS-resistant and slow).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = ((n as u64) >> 4)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
}

/// Marks the branch it is called in as unlikely, for code layout (`std::hint::cold_path`,
/// stable only since Rust 1.95, done the way the standard library did before it).
#[cold]
#[inline(always)]
fn cold_path_hint() {}

/// Empties a commit's write set when dropped: its entries own nothing that needs dropping
/// once published (`WriteEntry` has no drop glue), so forgetting them is the end of a commit,
/// and on a panic it leaks the boxes not yet published instead of dropping published ones.
struct ForgetOnDrop<'a>(&'a mut Vec<WriteEntry>);

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.clear();
    }
}

/// Wakes the waiters of the variables a commit published, after it released every lock, so
/// that they find the new values.
#[cold]
#[inline(never)]
fn wake_written(registry: &WaitRegistry, writes: &[WriteEntry]) {
    for entry in writes {
        if !entry.locked_from.is_dead() && entry.locked_from.has_waiters() {
            registry.wake(entry.header as usize);
        }
    }
}

/// Drops the values a commit wrote to variables that died before it locked them, after it
/// released every lock: their destructors may let more variables die, which must not meet our
/// locks. The published entries leave `writes` first, and `drain` takes each remaining one
/// out before dropping its value, so each is dropped once even if a destructor panics.
#[cold]
#[inline(never)]
fn drop_dead_writes(writes: &mut Vec<WriteEntry>, pool: &mut Pool) {
    writes.retain(|entry| entry.locked_from.is_dead());
    for entry in writes.drain(..) {
        // SAFETY: the entry owns its pending value, never published (invariants on `RawTx`),
        // and it left the write set, so it is dropped once.
        unsafe { (entry.drop_pending)(entry.pending, Some(&mut *pool)) };
    }
}

/// The read set, write set and epoch guard of one transaction attempt.
///
/// # Invariants
///
/// - `guard` is `Some` whenever `reads`, `opacity_reads`, `writes` or `undo` is non-empty.
///   Every `header` in them was recorded from a live `TVarHandle` while that guard was pinned,
///   and variables are freed through the epoch (see `RawTVar`), so the pointers stay valid
///   until the guard is dropped; the guard is dropped only after the logs are cleared
///   (`reset`, `wait_for_change`).
/// - `guard` is `Some` before any committed value *box* is loaded: a logged attempt pins in
///   `begin`; an unlogged one, whose logs stay empty, pins at its first read of a boxed
///   variable (`read_committed_as`), before it loads the pointer. An unlogged attempt that
///   reads only inline variables never pins: it dereferences nothing but the variables its
///   caller's handles keep alive, and keeps no pointer past the read.
/// - Each `WriteEntry`'s `pending`, `words`, `publish` and `drop_pending` were made for the `T`
///   of its header's `RawTVar<T>`: if that `T` is inline (`alloc::is_inline`), `pending` is
///   null and `words` came from `alloc::to_words::<T>`; otherwise `pending` is a value box
///   owned by the entry (or by an `Undo`) until it is published or dropped, exactly once.
///   Headers in `writes` are unique.
/// - `index` is either empty or maps the address of every entry of `writes` to its position.
/// - `rv_bound` is `Word::readable_bound(rv)`; `unlogged_limit` is `0` while `log_reads`, and
///   `rv_bound + 1` otherwise (a read that passes it may skip the write set and the read set).
/// - `extras` is `true` whenever `undo`, `opacity_reads`, `commutes` or the arena is non-empty,
///   `fold_memo` is `Some`, or `nest`, `nest_undo` or `nest_commutes` is non-zero.
/// - Undo entries' indexes are below the `nest` mark that was current when they were pushed, so
///   they stay in bounds until that nesting level is left. Undo entries below `nest_undo`
///   point below `nest`; `rollback_var` relies on this when it removes an entry.
#[derive(Debug)]
pub(crate) struct RawTx {
    guard: Option<Guard>,
    clock: &'static Clock,
    registry: &'static WaitRegistry,
    rv: u64,
    /// `Word::readable_bound(rv)`, kept with `rv` for the read fast path.
    rv_bound: u64,
    /// `rv_bound + 1` while reads are unlogged, `0` while they are logged: the first test of
    /// a read of an inline value, which then needs no test of `log_reads`.
    unlogged_limit: u64,
    /// Whether reads are recorded in `reads`. An attempt that runs without (see
    /// [`begin_unlogged`](Self::begin_unlogged)) can only commit read-only.
    log_reads: bool,
    /// Set when an unlogged attempt met something that needs a read set (a write, a version
    /// newer than its snapshot): the attempt is void and must re-run with a logged read set.
    needs_log: bool,
    reads: Vec<ReadEntry>,
    writes: Vec<WriteEntry>,
    index: HashMap<usize, usize, BuildHasherDefault<AddrHasher>>,
    undo: Vec<Undo>,
    /// Writes below this index belong to enclosing alternatives: overwriting them needs an undo.
    nest: usize,
    /// Undo entries from this index on belong to the innermost open scope.
    nest_undo: usize,
    /// Commutes waiting for the commit, in call order. A commute whose variable has no write
    /// entry adds a placeholder entry marked [`Word::COMMUTED`]; the commit computes its value.
    commutes: Vec<Commute>,
    /// Commutes from this index on belong to the innermost open scope.
    nest_commutes: usize,
    /// The last fold of a commuted variable's commutes for a read that records nothing, so
    /// that a transaction reading a variable it keeps commuting (a `MegaRef` world) folds
    /// each commute once, not once per read.
    fold_memo: Option<FoldMemo>,
    /// Bumped whenever commutes are removed (scope rollback, `rollback_var`, the end of the
    /// attempt): a memo made before no longer describes a prefix of `commutes`.
    commutes_cut: u64,
    /// Commit scratch: per write entry, 0, or 1 for a commute's placeholder, 2 once computed.
    commute_state: Vec<u8>,
    /// Commit scratch of a transaction with commutes: write-set indices in address order, the
    /// order it locks them in.
    lock_order: Vec<usize>,
    /// Reused scratch space: the addresses a `retry` waits on.
    scratch: Vec<(usize, u64)>,
    /// Copies of inline values lent out by `Reader::read_ref`, until the attempt ends.
    arena: Arena,
    /// Values replaced by this thread's commits, on their way through the epoch back into this
    /// thread's pool of value blocks.
    retired: Recycler,
    /// Reads recorded for opacity only ([`read_opacity_only`](Self::read_opacity_only)):
    /// validated when the snapshot moves and waited on by `retry`, not validated at commit.
    opacity_reads: Vec<ReadEntry>,
    /// Set when the attempt uses a rarely used part of the log (`undo`, `opacity_reads`,
    /// `commutes`, `fold_memo`, `arena`, a nested scope), cleared by `reset`: while it is
    /// `false` those parts are empty, so `reset` tests this one flag instead of each of them.
    extras: bool,
}

impl RawTx {
    pub(crate) fn new() -> Self {
        Self {
            guard: None,
            clock: clock::global(),
            registry: parking::global(),
            rv: 0,
            rv_bound: 0,
            unlogged_limit: 0,
            log_reads: true,
            needs_log: false,
            reads: Vec::new(),
            opacity_reads: Vec::new(),
            writes: Vec::new(),
            index: HashMap::default(),
            undo: Vec::new(),
            nest: 0,
            nest_undo: 0,
            commutes: Vec::new(),
            fold_memo: None,
            commutes_cut: 0,
            nest_commutes: 0,
            commute_state: Vec::new(),
            lock_order: Vec::new(),
            scratch: Vec::new(),
            arena: Arena::default(),
            retired: Recycler::default(),
            extras: false,
        }
    }

    /// The thread's buffer of replaced values (for commits made outside `commit`).
    pub(crate) fn retired(&mut self) -> &mut Recycler {
        &mut self.retired
    }

    /// Starts an attempt: pins the epoch (a logged attempt) and takes the read version.
    #[inline]
    pub(crate) fn begin(&mut self) {
        self.begin_with(true);
    }

    /// Starts an attempt that records no read set, for a transaction expected to only read.
    ///
    /// TL2 lets a read-only transaction commit without validation, since each read was checked
    /// against the snapshot when it was made; the read set is needed only to validate a
    /// writer's commit, to move the snapshot forward, and to know what a `retry` waits for.
    /// Such an attempt skips the log; if it needs one after all (it writes, or meets a version
    /// newer than its snapshot), the operation fails with [`Conflict`] and
    /// [`needs_log`](Self::needs_log) says that the attempt must re-run logged. It pins the
    /// epoch only when it first reads a boxed value, so a read-only transaction of plain
    /// values (`u64`, `bool`, ...) costs no atomic read-modify-write at all.
    #[inline]
    pub(crate) fn begin_unlogged(&mut self) {
        self.begin_with(false);
    }

    #[inline]
    fn begin_with(&mut self, log_reads: bool) {
        debug_assert!(
            self.reads.is_empty()
                && self.writes.is_empty()
                && !self.extras
                && self.opacity_reads.is_empty()
                && self.undo.is_empty()
                && self.commutes.is_empty()
                && self.fold_memo.is_none()
                && (self.nest, self.nest_undo, self.nest_commutes) == (0, 0, 0),
            "an attempt begins with an empty log at the top level"
        );
        self.retired.reclaim();
        if log_reads {
            self.guard = Some(reclaim::pin());
        }
        self.log_reads = log_reads;
        self.needs_log = false;
        self.rv = self.clock.now();
        self.rv_bound = Word::readable_bound(self.rv);
        self.unlogged_limit = if log_reads { 0 } else { self.rv_bound + 1 };
    }

    /// Whether this attempt records its reads (see [`begin_unlogged`](Self::begin_unlogged)).
    #[inline]
    pub(crate) fn logs_reads(&self) -> bool {
        self.log_reads
    }

    /// Marks this unlogged attempt void: the caller needs its read set.
    #[inline]
    pub(crate) fn require_log(&mut self) {
        debug_assert!(!self.log_reads);
        self.needs_log = true;
    }

    /// True if this unlogged attempt is void: something it did needed a read set. Whatever
    /// the attempt returned, it must re-run with [`begin`](Self::begin).
    #[inline]
    pub(crate) fn needs_log(&self) -> bool {
        self.needs_log
    }

    #[inline]
    pub(crate) fn has_reads(&self) -> bool {
        !(self.reads.is_empty() && self.opacity_reads.is_empty())
    }

    #[inline]
    pub(crate) fn has_writes(&self) -> bool {
        !self.writes.is_empty()
    }

    #[inline]
    fn find(&self, header: *const Header) -> Option<usize> {
        if self.index.is_empty() {
            self.writes.iter().position(|e| e.header == header)
        } else {
            self.index.get(&(header as usize)).copied()
        }
    }

    /// Runs `f` on the value of `tv` as this transaction sees it: its own pending write, or the
    /// committed value if that is consistent with every earlier read (opacity).
    #[inline(always)]
    pub(crate) fn read<T, R>(
        &mut self,
        tv: &TVarHandle<T>,
        f: impl FnOnce(&T) -> R,
    ) -> Result<R, Conflict>
    where
        T: Send + Sync + 'static,
    {
        let raw = tv.raw();
        let header: *const Header = raw.header();
        let inline = alloc::is_inline::<T>();
        if inline {
            // Unlogged (a read-only attempt: no writes, nothing to record), unlocked and within
            // the snapshot, all in one test, which a logged attempt fails at once. read100 is
            // bound by its loads: this measured 59 -> 47 ns against a test of `log_reads` first,
            // and logged reads +1 ns. (Reusing this load of the word in the logged path below
            // moved the code and lost most of the gain.)
            let lock = &raw.header().lock;
            let pre = lock.load();
            if pre.readable_below(self.unlogged_limit) {
                let words = raw.load_words();
                if lock.load() == pre {
                    // SAFETY: the words were loaded between two loads of one unlocked version,
                    // so they are that version's value, whole (invariant on `RawTVar`).
                    return Ok(f(&unsafe { alloc::from_words::<T>(words) }));
                }
            }
        }
        if self.log_reads {
            // Read-only transactions run unlogged and read most: their path falls through (a
            // tight loop of reads measured 75 -> 60 ns per 100 reads; logged reads +1%).
            cold_path_hint();
        } else {
            // An unlogged attempt has no writes and records nothing: one test per read.
            return self.with_committed::<T, R, false>(raw, f);
        }
        if !self.writes.is_empty()
            && let Some(i) = self.find(header)
        {
            if self.writes[i].locked_from == Word::COMMUTED {
                self.resolve_commuted(tv, i)?;
            }
            let entry = &self.writes[i];
            if inline {
                // SAFETY: an inline entry's words came from `to_words::<T>` of this `T`
                // (invariants on `RawTx`).
                return Ok(f(&unsafe { alloc::from_words::<T>(entry.words) }));
            }
            // SAFETY: the entry for `tv`'s header holds a live value box of this `T`
            // (invariants on `RawTx`); we hand out a shared borrow that ends with `f`.
            return Ok(f(unsafe { &*entry.pending.cast::<T>() }));
        }
        // Written out rather than through `with_committed`: two calls of it merged into one
        // body and undid the layout above (read100 58 -> 100 ns, measured).
        if inline {
            let words = self.read_committed(raw, RawTVar::load_words)?;
            // SAFETY: the words were loaded between two loads of one unlocked version, so they
            // are that version's value, whole (invariant on `RawTVar`).
            return Ok(f(&unsafe { alloc::from_words::<T>(words) }));
        }
        let ptr = self.read_committed(raw, RawTVar::load_value)?;
        // SAFETY: `ptr` is the committed value at a version consistent with our snapshot,
        // loaded while `self.guard` pins us: it stays allocated and unmodified until we unpin
        // (invariant on `RawTVar`).
        Ok(f(unsafe { &*ptr }))
    }

    /// Runs `f` on the committed value of `raw` at a version consistent with the snapshot,
    /// recording the read if `RECORD` (and the attempt keeps a read set): an inline value
    /// from its words, a boxed one in place.
    #[inline(always)]
    fn with_committed<T, R, const RECORD: bool>(
        &mut self,
        raw: &RawTVar<T>,
        f: impl FnOnce(&T) -> R,
    ) -> Result<R, Conflict>
    where
        T: Send + Sync + 'static,
    {
        if alloc::is_inline::<T>() {
            let words = self.read_committed_as::<T, _, RECORD>(raw, RawTVar::load_words)?;
            // SAFETY: the words were loaded between two loads of one unlocked version, so they
            // are that version's value, whole (invariant on `RawTVar`).
            return Ok(f(&unsafe { alloc::from_words::<T>(words) }));
        }
        let ptr = self.read_committed_as::<T, _, RECORD>(raw, RawTVar::load_value)?;
        // SAFETY: `ptr` is the committed value at a version consistent with our snapshot,
        // loaded while pinned (`read_committed_as` pins an unlogged attempt first): it stays
        // allocated and unmodified until the attempt unpins (invariant on `RawTVar`).
        Ok(f(unsafe { &*ptr }))
    }

    /// [`read`](Self::read), lending `f` a [`Reader`] of this transaction for as long as the
    /// value it is given.
    #[inline]
    pub(crate) fn read_nested<T, R>(
        &mut self,
        tv: &TVarHandle<T>,
        f: impl for<'a> FnOnce(&'a T, &mut Reader<'a>) -> R,
    ) -> Result<R, Conflict>
    where
        T: Send + Sync + 'static,
    {
        let ptr = self.read_ptr(tv)?;
        // SAFETY: as in `Reader::read_ref_raw`: the value stays valid until the attempt ends,
        // which cannot happen during `f` (it only gets a `Reader`), and `tv` outlives the call.
        let value = unsafe { &*ptr };
        Ok(f(value, &mut Reader(self)))
    }

    /// Runs `f` on the value of `tv` and the context `ctx` (which holds this transaction:
    /// `raw(ctx)`), so that `f` can go on with the transaction (reads, writes, `tv` included)
    /// while it holds the value: the pinned committed value, or an arena copy of an inline one,
    /// both valid until the attempt ends whatever the attempt does meanwhile. If the
    /// transaction has its own value for `tv` (written or commuted), a later write could
    /// replace that value in place: then `f` is handed back (`Ok(Err(f))`) for the caller to
    /// run on a copy.
    pub(crate) fn lend<C, T, R, F>(
        ctx: &mut C,
        raw: impl Fn(&mut C) -> &mut RawTx,
        tv: &TVarHandle<T>,
        f: F,
    ) -> Result<Result<R, F>, Conflict>
    where
        T: Send + Sync + 'static,
        F: FnOnce(&T, &mut C) -> R,
    {
        let tx = raw(ctx);
        if !tx.writes.is_empty() && tx.find(tv.raw().header()).is_some() {
            return Ok(Err(f));
        }
        let ptr = tx.read_ptr(tv)?;
        // SAFETY: with no entry of its own for `tv`, `read_ptr` returned the committed value,
        // loaded while pinned (it stays allocated and unchanged until the attempt unpins), or a
        // copy in the attempt's arena (cleared only when the attempt ends). Nothing `f` can do
        // with the transaction ends the attempt (that happens after the user's closure
        // returns), and the reference cannot escape `f` (its lifetime is `f`'s argument's).
        let value = unsafe { &*ptr };
        Ok(Ok(f(value, ctx)))
    }

    /// [`read_ptr`](Self::read_ptr) with its most common case inlined into the caller: a boxed
    /// value read by an unlogged attempt (a read-only walk down a tree). Inlining all of
    /// `read_ptr` measured 1,052 -> 710 instructions per `TMap` lookup but moved the code of
    /// plain reads (read100 58 -> 104 ns); this keeps the first without the second.
    #[inline(always)]
    fn read_ptr_inlined<T>(&mut self, tv: &TVarHandle<T>) -> Result<*const T, Conflict>
    where
        T: Send + Sync + 'static,
    {
        if !self.log_reads && !alloc::is_inline::<T>() {
            return Ok(self.read_committed_as::<T, _, false>(tv.raw(), RawTVar::load_value)?);
        }
        self.read_ptr(tv)
    }

    /// A pointer to the value of `tv` as this transaction sees it, valid until the attempt ends
    /// unless the transaction writes `tv` again (callers lend only a `Reader` meanwhile): the
    /// pending value, the pinned committed value, or for an inline value a copy in the arena.
    /// (`read` finds the value the same way but hands inline values over from the stack; a
    /// shared helper measured 45% slower on boxed reads, so the two stay separate.)
    fn read_ptr<T>(&mut self, tv: &TVarHandle<T>) -> Result<*const T, Conflict>
    where
        T: Send + Sync + 'static,
    {
        let raw = tv.raw();
        let header: *const Header = raw.header();
        let inline = alloc::is_inline::<T>();
        if self.log_reads {
            cold_path_hint(); // for code layout, as in `read`
        } else if !inline {
            // Unlogged: no write set to search, nothing to record (as in `read`).
            return Ok(self.read_committed_as::<T, _, false>(raw, RawTVar::load_value)?);
        }
        let words = if !self.writes.is_empty()
            && let Some(i) = self.find(header)
        {
            if self.writes[i].locked_from == Word::COMMUTED {
                self.resolve_commuted(tv, i)?;
            }
            let entry = &self.writes[i];
            if !inline {
                return Ok(entry.pending.cast::<T>());
            }
            entry.words
        } else if inline {
            self.read_committed(raw, RawTVar::load_words)?
        } else {
            return Ok(self.read_committed(raw, RawTVar::load_value)?);
        };
        // An inline value is words, not a `T` in memory: lend a copy that lives as long.
        self.extras = true;
        Ok(self.arena.push(words).cast::<T>())
    }

    /// Loads the committed value of `raw` with `load` (its pointer or its words) at a version
    /// consistent with the snapshot, and records the read. The common case (unlocked, within
    /// the snapshot, unchanged around the load) is inlined into the caller.
    #[inline(always)]
    fn read_committed<T: 'static, V>(
        &mut self,
        raw: &RawTVar<T>,
        load: impl Fn(&RawTVar<T>) -> V,
    ) -> Result<V, Conflict> {
        self.read_committed_as::<T, V, true>(raw, load)
    }

    /// [`read_committed`](Self::read_committed), recording the read only if `RECORD`.
    #[inline(always)]
    fn read_committed_as<T: 'static, V, const RECORD: bool>(
        &mut self,
        raw: &RawTVar<T>,
        load: impl Fn(&RawTVar<T>) -> V,
    ) -> Result<V, Conflict> {
        if !alloc::is_inline::<T>() && self.guard.is_none() {
            // The pointer we are about to load must outlive the read (invariants above).
            self.pin_late();
        }
        let lock = &raw.header().lock;
        let pre = lock.load();
        if pre.readable_at(self.rv_bound) || (RECORD && self.first_read_takes_any(pre)) {
            let value = load(raw);
            // The whole word: a waiter flag set meanwhile sends us the slow way, which is
            // rare and still right.
            if lock.load() == pre {
                if RECORD {
                    self.record_read(raw.header(), pre.version());
                }
                return Ok(value);
            }
        }
        self.read_committed_slow::<T, V, RECORD>(raw, load)
    }

    /// [`read`](Self::read), recording the read for opacity only: the snapshot moves only if
    /// the variable still has the version read (so the attempt never sees a state in which
    /// it changed), and a `retry` waits on it, but the commit does not validate it: a commit
    /// to it after the read does not make this transaction conflict. A variable this
    /// transaction wrote or commuted is read as by [`read`](Self::read).
    ///
    /// For containers that validate the same thing at commit by other means (`MegaRef`'s
    /// writers check the world's changes with [`commute_checked`](Self::commute_checked)).
    pub(crate) fn read_opacity_only<T, R>(
        &mut self,
        tv: &TVarHandle<T>,
        f: impl FnOnce(&T) -> R,
    ) -> Result<R, Conflict>
    where
        T: Send + Sync + 'static,
    {
        if !self.log_reads || (!self.writes.is_empty() && self.find(tv.raw().header()).is_some()) {
            return self.read(tv, f);
        }
        let recorded = self.reads.len();
        let value = self.read(tv, f)?;
        // The read recorded itself last (an extension inside it records nothing).
        if self.reads.len() > recorded
            && let Some(entry) = self.reads.pop()
        {
            self.extras = true;
            self.opacity_reads.push(entry);
        }
        Ok(value)
    }

    /// The committed value of `tv` in this transaction's snapshot, whatever the transaction
    /// wrote or commuted, handed to `f` without recording the read (see
    /// [`read_unrecorded`](Self::read_unrecorded) for when that is sound).
    pub(crate) fn read_committed_unrecorded<T, R>(
        &mut self,
        tv: &TVarHandle<T>,
        f: impl FnOnce(&T) -> R,
    ) -> Result<R, Conflict>
    where
        T: Send + Sync + 'static,
    {
        self.with_committed::<T, R, false>(tv.raw(), f)
    }

    /// The value of `tv` as this transaction sees it (its own write, its commutes applied to
    /// the snapshot, or the snapshot), handed to `f`, *without* recording the read: no later
    /// commit to `tv` makes this transaction conflict. The value is still consistent with the
    /// snapshot (a newer version extends the snapshot, validating the reads that were
    /// recorded). For containers that make their conflicts through other variables read
    /// alongside (`MegaRef`'s guards), never for a read whose value decides anything alone.
    pub(crate) fn read_unrecorded<T, R>(
        &mut self,
        tv: &TVarHandle<T>,
        f: impl FnOnce(&T) -> R,
    ) -> Result<R, Conflict>
    where
        T: Send + Sync + 'static,
    {
        let raw = tv.raw();
        let header: *const Header = raw.header();
        let inline = alloc::is_inline::<T>();
        let mut commuted = false;
        if !self.writes.is_empty()
            && let Some(i) = self.find(header)
        {
            if self.writes[i].locked_from != Word::COMMUTED {
                return self.read(tv, f);
            }
            commuted = true;
        }
        if !commuted {
            return self.with_committed::<T, R, false>(raw, f);
        }
        if inline {
            let words = self.read_committed_as::<T, _, false>(raw, RawTVar::load_words)?;
            // SAFETY: the words were loaded between two loads of one unlocked version, so they
            // are that version's value, whole (invariant on `RawTVar`).
            let value = unsafe { alloc::from_words::<T>(words) };
            return Ok(f(&self.fold_commutes(header, &value)?));
        }
        let ptr = self.read_committed_as::<T, _, false>(raw, RawTVar::load_value)?;
        // SAFETY: the committed value at a version consistent with our snapshot, pinned
        // (invariant on `RawTVar`).
        let value = unsafe { &*ptr };
        Ok(f(self.fold_commutes_memo(header, ptr, value)?))
    }

    /// [`fold_commutes`](Self::fold_commutes) of `start`, the committed value at `base`,
    /// remembered: if the last fold was of the same variable from the same committed value and
    /// no commute was removed since, only the commutes added since are applied to it.
    ///
    /// `base` identifies the committed value: the attempt is pinned, so its box (or slot) holds
    /// that value until the attempt ends.
    fn fold_commutes_memo<T: Send + Sync + 'static>(
        &mut self,
        header: *const Header,
        base: *const T,
        start: &T,
    ) -> Result<&T, Conflict> {
        let fresh = !self.fold_memo.as_ref().is_some_and(|m| {
            m.header == header
                && m.base == base.cast()
                && m.cut == self.commutes_cut
                && m.upto <= self.commutes.len()
        });
        if fresh {
            self.fold_memo = None;
            let value = self.fold_commutes(header, start)?;
            self.extras = true;
            self.fold_memo = Some(FoldMemo {
                header,
                base: base.cast(),
                cut: self.commutes_cut,
                upto: self.commutes.len(),
                value: Box::new(value),
            });
        } else {
            let mut refused = false;
            let memo = self.fold_memo.as_mut().expect("checked above");
            let value = memo
                .value
                .downcast_mut::<T>()
                .expect("a memo of a variable has the variable's type");
            for c in self.commutes[memo.upto..]
                .iter()
                .filter(|c| c.header == header)
            {
                match call_commute(&*c.op, start, value) {
                    Some(next) => *value = next,
                    None => {
                        refused = true;
                        break;
                    }
                }
            }
            memo.upto = self.commutes.len();
            if refused {
                self.fold_memo = None;
                return Err(Conflict);
            }
        }
        Ok(self
            .fold_memo
            .as_ref()
            .and_then(|m| m.value.downcast_ref::<T>())
            .expect("just made"))
    }

    /// `start` (the variable's committed value in the snapshot) with this transaction's
    /// commutes of `header`'s variable applied, in order; a conflict if one refuses.
    fn fold_commutes<T: Send + Sync + 'static>(
        &self,
        header: *const Header,
        start: &T,
    ) -> Result<T, Conflict> {
        let mut value: Option<T> = None;
        for c in self.commutes.iter().filter(|c| c.header == header) {
            let next = call_commute(&*c.op, start, value.as_ref().unwrap_or(start));
            value = Some(next.ok_or(Conflict)?);
        }
        Ok(value.expect("a placeholder has a commute"))
    }

    /// Pins an unlogged attempt at its first read of a boxed value (see the invariants).
    #[cold]
    #[inline(never)]
    fn pin_late(&mut self) {
        self.guard = Some(reclaim::pin());
    }

    /// Appends a read of `header` at `version` to the read set, if this attempt keeps one.
    #[inline(always)]
    fn record_read(&mut self, header: &Header, version: u64) {
        if self.log_reads {
            self.reads.push(ReadEntry { header, version });
        }
    }

    /// Whether a read that met the unlocked word `pre`, newer than the snapshot, may take it
    /// as it is: the first read of a logged attempt, with nothing to revalidate (`design.md`,
    /// *The clock*, R3'). Tested inline, so that a transaction that reads what the previous
    /// commit wrote (a counter's increments) does not take the slow path every time; a `false`
    /// here only sends the read to [`read_committed_slow`](Self::read_committed_slow), which
    /// tests the same rule exactly.
    #[inline(always)]
    fn first_read_takes_any(&self, pre: Word) -> bool {
        !pre.is_locked() && self.log_reads && self.reads.is_empty() && !self.extras
    }

    /// [`read_committed`](Self::read_committed) when the variable is locked, newer than the
    /// snapshot, or changed under the load: spin, extend, or give up.
    #[cold]
    #[inline(never)]
    fn read_committed_slow<T: 'static, V, const RECORD: bool>(
        &mut self,
        raw: &RawTVar<T>,
        load: impl Fn(&RawTVar<T>) -> V,
    ) -> Result<V, Conflict> {
        let lock = &raw.header().lock;
        let mut spins = 0_u32;
        loop {
            let pre = lock.load();
            if pre.is_locked() {
                spins += 1;
                if spins > READ_SPINS + READ_YIELDS {
                    return Err(Conflict);
                }
                if spins > READ_SPINS {
                    yield_now();
                } else {
                    spin_loop();
                }
                continue;
            }
            if pre.version() > self.rv {
                if !self.log_reads {
                    // Without a read set the snapshot cannot move: re-run logged, from a clock
                    // that has caught up with this version.
                    self.clock.observe(pre.version());
                    self.needs_log = true;
                    return Err(Conflict);
                }
                if !(RECORD && self.reads.is_empty() && self.opacity_reads.is_empty()) {
                    // Newer than our snapshot: move the snapshot forward if nothing we read
                    // changed.
                    self.extend(pre.version())?;
                    continue;
                }
                // The attempt's first read: there is nothing to revalidate, and the snapshot
                // need not move to accept it (`design.md`, *The clock*, R3'), so the clock is
                // left alone. A later read newer than `rv` extends and revalidates this one.
            }
            let value = load(raw);
            if same_version(pre, lock.load()) {
                if RECORD {
                    self.record_read(raw.header(), pre.version());
                }
                return Ok(value);
            }
        }
    }

    /// Lazy snapshot extension to at least `seen` (a version met by a read): if every read is
    /// still current after the clock says `now >= seen`, the snapshot holds at `now`.
    fn extend(&mut self, seen: u64) -> Result<(), Conflict> {
        let now = self.clock.observe(seen);
        if self.validate() {
            self.rv = now;
            self.rv_bound = Word::readable_bound(now);
            Ok(())
        } else {
            Err(Conflict)
        }
    }

    /// True if every read variable, those read for opacity only included, still has the
    /// version we read (an extension of the snapshot).
    fn validate(&self) -> bool {
        self.reads.iter().all(|r| self.still_current(r, false))
            && (self.opacity_reads.is_empty() || self.validate_opacity_reads())
    }

    /// A commit's validation, with its write set locked: true if every read variable still has
    /// the version we read, counting a variable this commit locked with the version it had
    /// when locked. Reads recorded for opacity only are not checked. Always run: other writers
    /// take versions without moving the clock, so the write version says nothing about
    /// whether one committed since our snapshot (`clock` module docs).
    #[inline(always)]
    fn reads_current_at_commit(&self) -> bool {
        self.reads.iter().all(|r| self.still_current(r, true))
    }

    #[cold]
    #[inline(never)]
    fn validate_opacity_reads(&self) -> bool {
        self.opacity_reads
            .iter()
            .all(|r| self.still_current(r, false))
    }

    /// Whether the variable of `r` still has the version `r` read; with `own_locks` (the commit,
    /// [`reads_current_at_commit`](Self::reads_current_at_commit)), a variable this commit
    /// locked counts with the version it had when locked.
    #[inline(always)]
    fn still_current(&self, r: &ReadEntry, own_locks: bool) -> bool {
        // SAFETY: recorded while pinned; we are still pinned (invariants on `RawTx`).
        let word = unsafe { &*r.header }.lock.load();
        if !word.is_locked() || word.is_dead() {
            // A dead variable never changes again: its version is its last value's.
            return word.version() == r.version;
        }
        own_locks
            && self
                .find(r.header)
                .is_some_and(|i| self.writes[i].locked_from.version() == r.version)
    }

    /// Buffers `value` as the new value of `tv`, to be published at commit.
    ///
    /// Fails only in an unlogged attempt (see [`begin_unlogged`](Self::begin_unlogged)), which
    /// cannot commit a write: `value` is dropped and the attempt must re-run logged.
    pub(crate) fn write<T: Send + Sync + 'static>(
        &mut self,
        tv: &TVarHandle<T>,
        value: T,
    ) -> Result<(), Conflict> {
        if !self.log_reads {
            self.needs_log = true;
            return Err(Conflict);
        }
        debug_assert!(self.guard.is_some(), "write outside a running transaction");
        let header: *const Header = tv.raw().header();
        let inline = alloc::is_inline::<T>();
        match self.find(header) {
            Some(i) if self.writes[i].locked_from == Word::COMMUTED => {
                // A write replaces what was commuted before it.
                self.set_commuted(i, value);
            }
            Some(i) if i >= self.nest => {
                if inline {
                    // SAFETY: `T` is inline.
                    self.writes[i].words = unsafe { alloc::to_words(value) };
                } else {
                    // SAFETY: the pending box is this `T`'s and owned by the entry
                    // (invariants); assigning drops the old value in place and reuses the box.
                    unsafe { *self.writes[i].pending.cast::<T>() = value };
                }
            }
            Some(i) => {
                // The entry belongs to an enclosing alternative: keep its value for rollback.
                let entry = &mut self.writes[i];
                let (new, words) = if inline {
                    // SAFETY: `T` is inline.
                    (std::ptr::null_mut(), unsafe { alloc::to_words(value) })
                } else {
                    let new = alloc::box_value(Some(self.retired.pool()), value);
                    (new.cast::<()>(), [0; 2])
                };
                let old = std::mem::replace(&mut entry.pending, new);
                let old_words = std::mem::replace(&mut entry.words, words);
                self.undo.push(Undo {
                    index: i,
                    pending: old,
                    words: old_words,
                    drop_pending: entry.drop_pending,
                    marker: Word::UNLOCKED,
                });
            }
            None => {
                let index = self.writes.len();
                let (pending, words) = if inline {
                    // SAFETY: `T` is inline.
                    (std::ptr::null_mut(), unsafe { alloc::to_words(value) })
                } else {
                    let new = alloc::box_value(Some(self.retired.pool()), value);
                    (new.cast::<()>(), [0; 2])
                };
                self.writes.push(WriteEntry {
                    header,
                    pending,
                    words,
                    publish: RawTVar::<T>::publish_erased,
                    drop_pending: RawTVar::<T>::drop_pending,
                    locked_from: Word::UNLOCKED,
                });
                self.index_new_entry(header, index);
            }
        }
        Ok(())
    }

    /// Buffers `f` to be applied to `tv`'s latest committed value at commit (Clojure's
    /// `commute`): the transaction does not read `tv`, so commits that only commute it never
    /// conflict on it. If the transaction already wrote `tv`, `f` applies to that value at once.
    ///
    /// Fails only in an unlogged attempt, as [`write`](Self::write) does.
    #[inline]
    pub(crate) fn commute<T, F>(&mut self, tv: &TVarHandle<T>, f: F) -> Result<(), Conflict>
    where
        T: Send + Sync + 'static,
        F: Fn(&T) -> T + Send + Sync + 'static,
    {
        self.push_commute::<T, _, false>(tv, move |_, v: &T| Some(f(v)))
    }

    /// A commute that may refuse: at commit, `f(base, current)` gets the variable's latest
    /// committed value (`base`) and its value so far (`current`: `base`, or what this
    /// transaction's earlier commutes of it made) and returns the new value, or `None` to make
    /// the commit fail with a conflict (its locks released, nothing published, the transaction
    /// re-run). A read of the variable later in the transaction folds it over the snapshot's
    /// value as `base`, and a refusal there is a conflict too. If the transaction already wrote
    /// the variable, `f` applies to that value at once, over the snapshot's value, whose read
    /// is then recorded (validated at commit).
    ///
    /// For containers that decide at commit, from what committed since their snapshot, whether
    /// a change still commutes with it (`MegaRef`'s writers of one path). Fails only in an
    /// unlogged attempt, as [`write`](Self::write) does.
    pub(crate) fn commute_checked<T, F>(&mut self, tv: &TVarHandle<T>, f: F) -> Result<(), Conflict>
    where
        T: Send + Sync + 'static,
        F: Fn(&T, &T) -> Option<T> + Send + Sync + 'static,
    {
        self.push_commute::<T, _, true>(tv, f)
    }

    fn push_commute<T, F, const CHECKED: bool>(
        &mut self,
        tv: &TVarHandle<T>,
        f: F,
    ) -> Result<(), Conflict>
    where
        T: Send + Sync + 'static,
        F: Fn(&T, &T) -> Option<T> + Send + Sync + 'static,
    {
        if !self.log_reads {
            self.needs_log = true;
            return Err(Conflict);
        }
        debug_assert!(
            self.guard.is_some(),
            "commute outside a running transaction"
        );
        let header: *const Header = tv.raw().header();
        match self.find(header) {
            Some(i) if self.writes[i].locked_from == Word::COMMUTED => {}
            Some(_) => {
                // Written already: the transaction's own value is the one to change.
                let value = if CHECKED {
                    let own = self.read_ptr(tv)?;
                    // SAFETY: `read_ptr` lends the attempt's own value (or an arena copy of
                    // it), valid until the attempt ends or writes `tv` again; neither happens
                    // before `f` returns.
                    self.with_committed::<T, _, true>(tv.raw(), |base| f(base, unsafe { &*own }))?
                } else {
                    self.read(tv, |v| f(v, v))?
                };
                return match value {
                    Some(value) => self.write(tv, value),
                    None => Err(Conflict),
                };
            }
            None => {
                let index = self.writes.len();
                self.writes.push(WriteEntry {
                    header,
                    pending: std::ptr::null_mut(),
                    words: [0; 2],
                    publish: RawTVar::<T>::publish_erased,
                    drop_pending: RawTVar::<T>::drop_pending,
                    locked_from: Word::COMMUTED,
                });
                self.index_new_entry(header, index);
            }
        }
        self.extras = true;
        self.commutes.push(Commute {
            header,
            op: Box::new(TypedCommute {
                f,
                _value: PhantomData,
            }),
        });
        Ok(())
    }

    /// Adds a new last write entry to the hash index (or builds the index once the write set
    /// outgrows linear search).
    #[inline]
    fn index_new_entry(&mut self, header: *const Header, index: usize) {
        if !self.index.is_empty() || self.writes.len() > LINEAR_MAX {
            self.index_new_entry_slow(header, index);
        }
    }

    #[cold]
    #[inline(never)]
    fn index_new_entry_slow(&mut self, header: *const Header, index: usize) {
        if !self.index.is_empty() {
            self.index.insert(header as usize, index);
        } else {
            self.index.extend(
                self.writes
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (e.header as usize, i)),
            );
        }
    }

    /// Turns the commute placeholder at `i` into a plain write of `tv`'s value as this
    /// transaction sees it: the snapshot's value, read (and recorded) like any read, with the
    /// pending commutes applied. From then on the transaction depends on that read, as if it
    /// had used `modify`.
    #[cold]
    #[inline(never)]
    fn resolve_commuted<T: Send + Sync + 'static>(
        &mut self,
        tv: &TVarHandle<T>,
        i: usize,
    ) -> Result<(), Conflict> {
        let raw = tv.raw();
        let header: *const Header = raw.header();
        let value = if alloc::is_inline::<T>() {
            let words = self.read_committed(raw, RawTVar::load_words)?;
            // SAFETY: the words were loaded between two loads of one unlocked version, so they
            // are that version's value, whole (invariant on `RawTVar`).
            self.fold_commutes(header, &unsafe { alloc::from_words::<T>(words) })?
        } else {
            let ptr = self.read_committed(raw, RawTVar::load_value)?;
            // SAFETY: the committed value at a version consistent with our snapshot, pinned
            // (invariant on `RawTVar`).
            self.fold_commutes(header, unsafe { &*ptr })?
        };
        self.set_commuted(i, value);
        Ok(())
    }

    /// Gives the commute placeholder at `i` the plain value `value`, keeping an undo record if
    /// the placeholder belongs to an enclosing scope.
    fn set_commuted<T: Send + Sync + 'static>(&mut self, i: usize, value: T) {
        let (pending, words) = if alloc::is_inline::<T>() {
            // SAFETY: `T` is inline.
            (std::ptr::null_mut(), unsafe { alloc::to_words(value) })
        } else {
            let new = alloc::box_value(Some(self.retired.pool()), value);
            (new.cast::<()>(), [0; 2])
        };
        let entry = &mut self.writes[i];
        debug_assert!(entry.locked_from == Word::COMMUTED && entry.pending.is_null());
        if i < self.nest {
            self.undo.push(Undo {
                index: i,
                pending: std::ptr::null_mut(),
                words: entry.words,
                drop_pending: entry.drop_pending,
                marker: Word::COMMUTED,
            });
        }
        entry.pending = pending;
        entry.words = words;
        entry.locked_from = Word::UNLOCKED;
    }

    /// Opens a nested scope (an `or_else` alternative, a `nested` block): later writes can be
    /// rolled back to here.
    pub(crate) fn begin_nested(&mut self) -> Mark {
        let mark = Mark {
            writes: self.writes.len(),
            undo: self.undo.len(),
            commutes: self.commutes.len(),
            outer_nest: self.nest,
            outer_nest_undo: self.nest_undo,
            outer_nest_commutes: self.nest_commutes,
        };
        // A scope that a panic leaves open is closed by `reset`, which needs the flag for it.
        self.extras = true;
        self.nest = self.writes.len();
        self.nest_undo = self.undo.len();
        self.nest_commutes = self.commutes.len();
        mark
    }

    /// Closes a nested scope that succeeded: its writes become the enclosing level's.
    pub(crate) fn end_nested(&mut self, mark: Mark) {
        self.nest = mark.outer_nest;
        self.nest_undo = mark.outer_nest_undo;
        self.nest_commutes = mark.outer_nest_commutes;
        if self.nest == 0 {
            // Back at the top level: nothing can roll back any more.
            self.drop_undo(0);
        }
    }

    /// Closes a nested scope that retried or aborted: undoes its writes. Its reads stay (a
    /// retry must wait on what every alternative read, the choice of the next alternative
    /// depends on them, and an enclosing transaction that goes on depends on them too).
    pub(crate) fn rollback_nested(&mut self, mark: Mark) {
        while self.undo.len() > mark.undo {
            let undo = self.undo.pop().expect("undo entry");
            let entry = &mut self.writes[undo.index];
            entry.words = undo.words;
            entry.locked_from = undo.marker;
            let newer = std::mem::replace(&mut entry.pending, undo.pending);
            // SAFETY: `newer` is the entry's box, now replaced and owned by nobody else.
            unsafe { (entry.drop_pending)(newer, Some(self.retired.pool())) };
        }
        self.truncate_writes(mark.writes);
        self.commutes.truncate(mark.commutes);
        self.commutes_cut += 1;
        self.nest = mark.outer_nest;
        self.nest_undo = mark.outer_nest_undo;
        self.nest_commutes = mark.outer_nest_commutes;
    }

    /// Discards the writes to `header`'s variable made in the innermost open scope (or, at the
    /// top level, in the whole attempt): afterwards it reads as it did when the scope began.
    pub(crate) fn rollback_var(&mut self, header: *const Header) {
        let Some(i) = self.find(header) else {
            return;
        };
        // The scope's commutes of the variable go too.
        self.commutes_cut += 1;
        let mut k = self.nest_commutes;
        while k < self.commutes.len() {
            if self.commutes[k].header == header {
                self.commutes.remove(k);
            } else {
                k += 1;
            }
        }
        if i < self.nest {
            // Written by an enclosing scope. The first of this scope's undo entries for it holds
            // its value when the scope began; the later ones hold values this scope replaced.
            let mut first = None;
            let mut k = self.nest_undo;
            while k < self.undo.len() {
                if self.undo[k].index != i {
                    k += 1;
                    continue;
                }
                let undo = self.undo.remove(k);
                if first.is_none() {
                    first = Some(undo);
                } else {
                    // SAFETY: the undo entry owned its box, and it is removed from the log.
                    unsafe { (undo.drop_pending)(undo.pending, Some(self.retired.pool())) };
                }
            }
            if let Some(undo) = first {
                let entry = &mut self.writes[i];
                entry.words = undo.words;
                entry.locked_from = undo.marker;
                let newer = std::mem::replace(&mut entry.pending, undo.pending);
                // SAFETY: `newer` is the entry's box, now replaced and owned by nobody else.
                unsafe { (entry.drop_pending)(newer, Some(self.retired.pool())) };
            }
            return;
        }
        // Written first in this scope (or in inner scopes that ended): the entry goes. Undo
        // entries that point at it or past it are all this scope's (older ones point below
        // `nest`): drop those for it, shift the others down with the entries they point at.
        let mut k = self.nest_undo;
        while k < self.undo.len() {
            match self.undo[k].index.cmp(&i) {
                std::cmp::Ordering::Less => k += 1,
                std::cmp::Ordering::Equal => {
                    let undo = self.undo.remove(k);
                    // SAFETY: the undo entry owned its box, and it is removed from the log.
                    unsafe { (undo.drop_pending)(undo.pending, Some(self.retired.pool())) };
                }
                std::cmp::Ordering::Greater => {
                    self.undo[k].index -= 1;
                    k += 1;
                }
            }
        }
        let entry = self.writes.remove(i);
        // SAFETY: the entry owned its pending box, which was never published.
        unsafe { (entry.drop_pending)(entry.pending, Some(self.retired.pool())) };
        if !self.index.is_empty() {
            self.index.clear();
            if self.writes.len() > LINEAR_MAX {
                self.index.extend(
                    self.writes
                        .iter()
                        .enumerate()
                        .map(|(i, e)| (e.header as usize, i)),
                );
            }
        }
    }

    #[inline]
    fn drop_undo(&mut self, keep: usize) {
        for undo in self.undo.drain(keep..) {
            // SAFETY: the undo entry owns its box (invariants on `RawTx`).
            unsafe { (undo.drop_pending)(undo.pending, Some(self.retired.pool())) };
        }
    }

    fn truncate_writes(&mut self, len: usize) {
        for entry in self.writes.drain(len..) {
            if !self.index.is_empty() {
                self.index.remove(&(entry.header as usize));
            }
            // SAFETY: the entry owns its pending box, which was never published.
            unsafe { (entry.drop_pending)(entry.pending, Some(self.retired.pool())) };
        }
        if self.writes.len() <= LINEAR_MAX && !self.index.is_empty() {
            self.index.clear();
        }
    }

    /// Tries to commit. Read-only transactions commit at once: every read was validated against
    /// the snapshot when it was made. Writers lock their write set, take a write version,
    /// validate their reads, publish, unlock, then wake the waiters of what they wrote.
    ///
    /// On `Err`, nothing was published and every lock is released; the logs are kept for
    /// `reset`. On `Ok`, the write set has been moved into the variables.
    #[inline]
    pub(crate) fn commit(&mut self) -> Result<(), Conflict> {
        if !self.commutes.is_empty() {
            return self.commit_ordered(None);
        }
        if self.writes.is_empty() {
            return Ok(());
        }
        let floor = self.lock_write_set()?;
        let wv = self.clock.write_version(floor);
        if !self.reads_current_at_commit() {
            self.unlock_unchanged(self.writes.len());
            return Err(Conflict);
        }
        self.publish_write_set(wv);
        Ok(())
    }

    /// [`commit`](Self::commit), running `ordered` with a sequence number once the commit can
    /// no longer fail, before anything is published.
    ///
    /// With `ordered`, the commit takes the process-wide sequencer (`clock::sequencer`) after
    /// locking its write set and before validating, and releases it after `ordered` returned,
    /// so ordered hooks run one at a time, numbered in that order, which is the serialization
    /// order: if B depends on A (read its writes, overwrote them, or overwrote what A read),
    /// directly or through unhooked commits, A held the sequencer before B could take it (A
    /// validated under it, and B's dependency arose only after A's locks or validation).
    /// Read-only transactions take this path too when `ordered` is given.
    /// If `ordered` panics, the commit publishes nothing, releases every lock and the panic
    /// propagates.
    pub(crate) fn commit_ordered(
        &mut self,
        ordered: Option<&mut dyn FnMut(u64)>,
    ) -> Result<(), Conflict> {
        if self.writes.is_empty() && ordered.is_none() {
            return Ok(());
        }
        let floor = if self.commutes.is_empty() {
            self.lock_write_set()?
        } else {
            self.lock_in_address_order()?
        };
        let mut sequenced = ordered.as_ref().map(|_| clock::sequencer().lock());
        let wv = self.clock.write_version(floor);
        if !self.reads_current_at_commit() {
            drop(sequenced);
            self.unlock_unchanged(self.writes.len());
            return Err(Conflict);
        }
        let hooked = ordered.is_some() || !self.commutes.is_empty();
        if hooked {
            // Commutes and hooks run user code with our locks held: a variable it lets die must
            // not wait for them.
            reclaim::holding_locks();
        }
        if !self.commutes.is_empty() {
            let applied = self.apply_commutes();
            if !matches!(applied, Ok(true)) {
                drop(sequenced);
                self.unlock_unchanged(self.writes.len());
                reclaim::locks_released();
                match applied {
                    Err(panic) => std::panic::resume_unwind(panic),
                    // A checked commute refused: a conflict, like a failed validation.
                    _ => return Err(Conflict),
                }
            }
        }
        if let Some(hook) = ordered {
            let seq = sequenced
                .as_deref_mut()
                .expect("ordered commits hold the sequencer");
            *seq += 1;
            let number = *seq;
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(number)));
            drop(sequenced);
            if let Err(panic) = ran {
                self.unlock_unchanged(self.writes.len());
                reclaim::locks_released();
                std::panic::resume_unwind(panic);
            }
        }
        self.publish_write_set(wv);
        if hooked {
            reclaim::locks_released();
        }
        Ok(())
    }

    /// Locks the write set in its order, for a commit without commutes: returns the highest
    /// version the locks replaced, or gives up with every lock it took restored.
    #[inline]
    fn lock_write_set(&mut self) -> Result<u64, Conflict> {
        let mut floor = 0;
        for i in 0..self.writes.len() {
            let Some(locked_from) = self.try_lock_entry(i) else {
                self.unlock_unchanged(i);
                return Err(Conflict);
            };
            if !locked_from.is_dead() {
                floor = floor.max(locked_from.version());
            }
            self.writes[i].locked_from = locked_from;
        }
        Ok(floor)
    }

    /// The end of a commit that can no longer fail: moves each value into its variable and
    /// unlocks it at `wv`, then (after every lock is released) wakes the waiters and drops
    /// what was written to dead variables, and empties the write set.
    #[inline]
    fn publish_write_set(&mut self, wv: u64) {
        let guard = self
            .guard
            .as_ref()
            .expect("a running transaction is pinned");
        if !self.index.is_empty() {
            self.index.clear();
        }
        // Empties the write set when this function ends, also by a panic: `publish` can run a
        // destructor (of a variable that died while we held its lock), and if that panics the
        // entries are forgotten, leaking the boxes not yet published, rather than left in the
        // log for `reset` to drop again.
        let writes = ForgetOnDrop(&mut self.writes);
        let mut waiters = false;
        let mut dead = false;
        for entry in writes.0.iter() {
            if entry.locked_from.is_dead() {
                dead = true;
                continue;
            }
            // SAFETY: we hold the entry's lock (taken by the commit), its pending box, publish
            // fn and header match (invariants on `RawTx`), and `guard` pins us. The entry's
            // box moves into the variable here; the entry is forgotten below, never used again.
            unsafe {
                (entry.publish)(
                    entry.header,
                    entry.pending,
                    entry.words,
                    guard,
                    &mut self.retired,
                );
            }
            // SAFETY: header still valid (pinned); we hold its lock and wake waiters below.
            unsafe { (*entry.header).lock.unlock(wv) };
            waiters |= entry.locked_from.has_waiters();
        }
        if waiters {
            wake_written(self.registry, writes.0);
        }
        if dead {
            drop_dead_writes(writes.0, self.retired.pool());
        }
    }

    /// Takes the lock of write entry `i`: the word it replaced, or `None` if the commit must
    /// give up (see [`lock_contended`](Self::lock_contended)).
    #[inline]
    fn try_lock_entry(&self, i: usize) -> Option<Word> {
        // SAFETY: recorded while pinned; still pinned (invariants on `RawTx`).
        let lock = &unsafe { &*self.writes[i].header }.lock;
        match lock.try_lock() {
            Some(word) => Some(word),
            None => self.lock_contended(i),
        }
    }

    /// Takes the lock of write entry `i` after a first `try_lock` failed: spins a little, and
    /// gives up (`None`: the commit conflicts) unless the variable turns out dead (then its
    /// word is returned: nobody can read this write) or the entry is a commute's placeholder,
    /// which waits until the lock is free. A commute read nothing, so waiting loses nothing,
    /// and it cannot wait forever: a commit with commutes locks in address order
    /// ([`lock_in_address_order`](Self::lock_in_address_order)), so a commit waiting this way
    /// waits for a lock above all it holds, and no cycle of such waits can close; any other
    /// holder gives up or finishes.
    #[cold]
    #[inline(never)]
    fn lock_contended(&self, i: usize) -> Option<Word> {
        // SAFETY: recorded while pinned; still pinned (invariants on `RawTx`).
        let lock = &unsafe { &*self.writes[i].header }.lock;
        let patient = !self.commutes.is_empty() && self.commute_state[i] == 1;
        let mut spins = 0_u32;
        loop {
            if let Some(word) = lock.try_lock() {
                return Some(word);
            }
            let word = lock.load();
            if word.is_dead() {
                return Some(word);
            }
            if spins < LOCK_SPINS {
                spins += 1;
                spin_loop();
            } else if patient {
                yield_now();
            } else {
                return None;
            }
        }
    }

    /// Locks the write set of a transaction with commutes, in address order (so the waits of
    /// [`lock_contended`](Self::lock_contended) cannot form a cycle), after noting which
    /// entries are placeholders. Returns the highest version the locks replaced, or gives up
    /// with every lock it took restored.
    #[cold]
    #[inline(never)]
    fn lock_in_address_order(&mut self) -> Result<u64, Conflict> {
        self.mark_commutes();
        let mut order = std::mem::take(&mut self.lock_order);
        order.clear();
        order.extend(0..self.writes.len());
        // SAFETY: recorded while pinned; still pinned (invariants on `RawTx`).
        order.sort_unstable_by_key(|&i| unsafe { &*self.writes[i].header }.lock_key());
        let mut floor = 0;
        let mut outcome = Ok(());
        for (k, &i) in order.iter().enumerate() {
            let Some(locked_from) = self.try_lock_entry(i) else {
                for &j in &order[..k] {
                    self.unlock_entry(j);
                }
                outcome = Err(Conflict);
                break;
            };
            if !locked_from.is_dead() {
                floor = floor.max(locked_from.version());
            }
            self.writes[i].locked_from = locked_from;
        }
        self.lock_order = order;
        outcome.map(|()| floor)
    }

    /// Computes the value of every commute placeholder from its variable's committed value
    /// (whose lock the commit holds) and its commutes, in call order. Placeholders of dead
    /// variables are left alone (their entries are dropped unpublished).
    #[cold]
    #[inline(never)]
    fn apply_commutes(&mut self) -> std::thread::Result<bool> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.apply_commutes_inner()))
    }

    /// Notes which write entries are commute placeholders (`locked_from` is about to hold the
    /// lock words).
    #[cold]
    #[inline(never)]
    fn mark_commutes(&mut self) {
        self.commute_state.clear();
        self.commute_state.extend(
            self.writes
                .iter()
                .map(|e| u8::from(e.locked_from == Word::COMMUTED)),
        );
    }

    /// Returns `false` if a checked commute refused (placeholders may be left without a
    /// value: the commit then publishes nothing).
    fn apply_commutes_inner(&mut self) -> bool {
        for c in &self.commutes {
            let Some(i) = self.find(c.header) else {
                continue; // rolled back with its scope's entry
            };
            let state = self.commute_state[i];
            let entry = &mut self.writes[i];
            if state == 0 || entry.locked_from.is_dead() {
                continue; // written plainly after the commute, or nobody can read it
            }
            // SAFETY: `entry` is this commute's variable's (found by header), and in either
            // state we hold its lock (taken above, not dead: skipped just above) and are
            // pinned, as `apply` needs to load the committed value. A placeholder (state 1)
            // holds no value yet; after that (state 2) it holds the value the last commute
            // computed.
            if !unsafe { c.op.apply(entry, state == 1, self.retired.pool()) } {
                return false;
            }
            self.commute_state[i] = 2;
        }
        // Every live placeholder has a commute of its own scope (scopes and `rollback_var`
        // drop a placeholder with the last of its commutes), so it has a value now; publishing
        // one without would hand a null box to its variable. Checked, not assumed: a panic
        // here is caught by the commit, which restores its locks.
        let missing = self
            .writes
            .iter()
            .zip(&self.commute_state)
            .any(|(e, &state)| state == 1 && !e.locked_from.is_dead());
        assert!(
            !missing,
            "stmx: a commute placeholder reached the commit without a value"
        );
        true
    }

    /// Releases the locks of the first `locked` write entries, restoring their words.
    fn unlock_unchanged(&mut self, locked: usize) {
        for i in 0..locked {
            self.unlock_entry(i);
        }
    }

    /// Restores the lock word of write entry `i`, which the commit locked, unless the variable
    /// was dead (that lock was never ours).
    fn unlock_entry(&self, i: usize) {
        let entry = &self.writes[i];
        if entry.locked_from.is_dead() {
            return;
        }
        // SAFETY: pinned, so the header is valid; we took this lock in `commit` and
        // `locked_from` is the word it replaced.
        unsafe { (*entry.header).lock.restore(entry.locked_from) };
    }

    /// Blocks until a variable in the read set may have changed, then resets the logs.
    ///
    /// Registers `waiter` on every variable read and sets its `WAITER_BIT`; if one already
    /// changed (or is being committed), returns at once. The epoch is unpinned before sleeping.
    /// With a `deadline`, gives up when it passes: returns `false` if it did (nothing changed
    /// that it saw), `true` once woken.
    pub(crate) fn wait_for_change(
        &mut self,
        waiter: &Arc<Waiter>,
        deadline: Option<std::time::Instant>,
    ) -> bool {
        self.collect_read_set();
        waiter.reset();
        // The same variable read at two versions: it changed already.
        let mut changed = self.scratch.windows(2).any(|w| w[0].0 == w[1].0);
        #[cfg(not(stm_loom))]
        if !changed {
            changed = self.spin_until_changed();
        }
        let mut registered = 0;
        if !changed {
            (changed, registered) = self.register_read_set(waiter);
        }
        // No header is dereferenced past this point: unpin before sleeping.
        self.reset();
        if !changed {
            changed = waiter.wait(deadline);
        }
        for &(addr, _) in &self.scratch[..registered] {
            self.registry.deregister(addr, waiter);
        }
        changed
    }

    /// The asynchronous half of [`wait_for_change`](Self::wait_for_change), for a task: after
    /// `waiter.set_waker`, registers `waiter` on every variable read and resets the logs.
    /// Returns the addresses registered, to hand to [`deregister`] once the task runs again
    /// (or is dropped), or `None` if a variable already changed (nothing stays registered):
    /// then the transaction should re-run at once.
    pub(crate) fn register_task(&mut self, waiter: &Arc<Waiter>) -> Option<Vec<usize>> {
        self.collect_read_set();
        waiter.reset();
        let mut changed = self.scratch.windows(2).any(|w| w[0].0 == w[1].0);
        let mut registered = 0;
        if !changed {
            (changed, registered) = self.register_read_set(waiter);
        }
        self.reset();
        let addrs: Vec<usize> = self.scratch[..registered].iter().map(|&(a, _)| a).collect();
        if changed {
            deregister(&addrs, waiter);
            return None;
        }
        Some(addrs)
    }

    /// Fills `scratch` with the read set's (address, version) pairs, sorted and deduplicated.
    fn collect_read_set(&mut self) {
        self.scratch.clear();
        self.scratch.extend(
            self.reads
                .iter()
                .chain(&self.opacity_reads)
                .map(|r| (r.header as usize, r.version)),
        );
        // Any order works; loom models need one that does not depend on addresses.
        #[cfg(not(stm_loom))]
        self.scratch.sort_unstable();
        self.scratch.dedup();
    }

    /// Registers `waiter` on each variable of `scratch` and sets its `WAITER_BIT`, stopping at
    /// the first that changed. Returns whether one did, and how many entries were registered.
    fn register_read_set(&self, waiter: &Arc<Waiter>) -> (bool, usize) {
        for (registered, &(addr, version)) in self.scratch.iter().enumerate() {
            self.registry.register(addr, waiter);
            // SAFETY: `addr` is a header recorded while pinned; still pinned.
            if !unsafe { &*(addr as *const Header) }
                .lock
                .try_add_waiter(version)
            {
                return (true, registered + 1);
            }
        }
        (false, self.scratch.len())
    }

    /// Watches the read set (in `scratch`) for a short while before the caller parks, so that a
    /// commit due within microseconds is seen without an OS wake-up (tens of microseconds) on
    /// either side. Returns whether a variable changed or is being committed. Only small read
    /// sets are watched, and only for about `2^SPIN_ROUNDS` pause instructions.
    #[cfg(not(stm_loom))]
    fn spin_until_changed(&self) -> bool {
        const SPIN_ROUNDS: u32 = 9;
        const MAX_WATCHED: usize = 16;
        if self.scratch.len() > MAX_WATCHED {
            return false;
        }
        for round in 0..SPIN_ROUNDS {
            for _ in 0..1_u32 << round {
                spin_loop();
            }
            let changed = self.scratch.iter().any(|&(addr, version)| {
                // SAFETY: `addr` is a header recorded while pinned, and the attempt is still
                // pinned (`reset` has not run), so the header is valid.
                let word = unsafe { &*(addr as *const Header) }.lock.load();
                word.is_locked() || word.version() != version
            });
            if changed {
                return true;
            }
        }
        false
    }

    /// Ends the attempt: drops pending values, clears the logs, unpins.
    #[inline]
    pub(crate) fn reset(&mut self) {
        if self.extras {
            // Before the writes: an undo entry may hold the older value of a write entry.
            self.reset_extras();
        }
        if !self.writes.is_empty() {
            self.truncate_writes(0);
        }
        self.reads.clear();
        self.guard = None;
        if self.reads.capacity() > KEEP_CAPACITY {
            self.reads.shrink_to(KEEP_CAPACITY / 16);
        }
        if self.writes.capacity() > KEEP_CAPACITY {
            self.writes.shrink_to(KEEP_CAPACITY / 16);
            self.index.shrink_to(KEEP_CAPACITY / 16);
        }
    }

    /// The part of [`reset`](Self::reset) for the parts of the log that `extras` covers.
    #[cold]
    #[inline(never)]
    fn reset_extras(&mut self) {
        self.drop_undo(0);
        self.opacity_reads.clear();
        self.arena.clear();
        if !self.commutes.is_empty() {
            self.commutes.clear();
            self.commutes_cut += 1;
        }
        self.fold_memo = None;
        self.nest = 0;
        self.nest_undo = 0;
        self.nest_commutes = 0;
        self.extras = false;
    }
}

impl Drop for RawTx {
    fn drop(&mut self) {
        self.reset();
    }
}

/// Removes `waiter`'s registrations on `addrs` (those a committer has not already taken).
pub(crate) fn deregister(addrs: &[usize], waiter: &Arc<Waiter>) {
    let registry = parking::global();
    for &addr in addrs {
        registry.deregister(addr, waiter);
    }
}

/// Wakes the waiters of a variable written outside a transaction (`write_atomic`).
pub(crate) fn wake_after_store(header: &Header, replaced: Word) {
    if replaced.has_waiters() {
        parking::global().wake(header.addr());
    }
}
