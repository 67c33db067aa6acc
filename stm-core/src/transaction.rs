//! [`Transaction`], [`atomically`] and the run loop: conflicts, backoff, `retry`, hooks.

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

use crate::error::{StmError, StmResult, TxError};
use crate::raw::parking::Waiter;
use crate::raw::tx::{Mark, RawTx};
use crate::stats::Counters;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sync::{Arc, spin_loop, yield_now};

type BeforeHook = Box<dyn FnOnce(&mut Transaction) -> StmResult<()>>;
type AfterHook = Box<dyn FnOnce()>;
type CommittingHook = Box<dyn FnOnce(CommitVersion)>;

const NESTED_MSG: &str = "stmx: atomically (or write_atomic) called inside a running transaction; \
     pass the `&mut Transaction` to the inner code instead of starting a nested transaction";
const EMPTY_RETRY_MSG: &str = "stmx: retry called by a transaction that has read no TVar; \
     it would block forever (retry waits for a change to a variable the transaction read)";
const HOOK_RETRY_MSG: &str = "stmx: retry called in a before_commit hook; \
     hooks run once the transaction has decided to commit and cannot block";

/// After this many conflicts in a row, a transaction runs alone among writers.
const SERIAL_AFTER: u32 = 12;

/// The position of a commit in the process-wide commit order, as passed to
/// [`Transaction::while_committing`] hooks.
///
/// Only commits that carry such a hook take a version. Versions are unique and increase with
/// the serialization order of those commits; they start again when the process restarts, so
/// they order hooked commits within one process run, nothing more.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use stm_core::{CommitVersion, atomically};
///
/// let seen: Arc<Mutex<Option<CommitVersion>>> = Arc::default();
/// let slot = Arc::clone(&seen);
/// atomically(move |tx| {
///     let slot = Arc::clone(&slot);
///     tx.while_committing(move |v| *slot.lock().unwrap() = Some(v));
///     Ok(())
/// });
/// assert!(seen.lock().unwrap().unwrap().get() > 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitVersion(u64);

impl CommitVersion {
    /// The version as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// The state of one running transaction: its read and write logs and its hooks.
///
/// You never create one: [`atomically`] hands `&mut Transaction` to its closure, and functions
/// that take `&mut Transaction` compose into larger transactions. Each thread reuses one
/// `Transaction` (its logs keep their capacity) and a pool of value blocks, so once warm a
/// transaction that writes values of up to 128 bytes does not call the allocator at all.
///
/// # Examples
///
/// ```
/// use stm_core::{StmResult, TVar, Transaction, atomically};
///
/// fn transfer(tx: &mut Transaction, from: &TVar<i64>, to: &TVar<i64>, n: i64) -> StmResult<()> {
///     from.modify(tx, |v| v - n)?;
///     to.modify(tx, |v| v + n)
/// }
/// let (a, b, c) = (TVar::new(10), TVar::new(0), TVar::new(0));
/// atomically(|tx| {
///     transfer(tx, &a, &b, 4)?; // two transfers, one atomic step
///     transfer(tx, &b, &c, 1)
/// });
/// assert_eq!((a.read_atomic(), b.read_atomic(), c.read_atomic()), (6, 3, 1));
/// ```
pub struct Transaction {
    pub(crate) raw: RawTx,
    before: Vec<Option<BeforeHook>>,
    after: Vec<AfterHook>,
    committing: Vec<CommittingHook>,
    /// `after_rollback` hooks of the scopes still open in this attempt.
    rollback: Vec<AfterHook>,
    /// `after_rollback` hooks of scopes that rolled back: they run when the attempt ends,
    /// whether it commits or not.
    rolled_back: Vec<AfterHook>,
    waiter: Option<Arc<Waiter>>,
    counters: Arc<Counters>,
    hints: Hints,
    /// Set when a hook is registered, cleared with the hook lists (`clear_hooks`): while it is
    /// `false`, every hook list is empty, so the run loop tests this one flag instead of five
    /// lists. It may stay set over lists emptied otherwise (a `retry` drops the hooks).
    hooked: bool,
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("before_commit_hooks", &self.before.len())
            .field("after_commit_hooks", &self.after.len())
            .field("while_committing_hooks", &self.committing.len())
            .field(
                "after_rollback_hooks",
                &(self.rollback.len() + self.rolled_back.len()),
            )
            .finish_non_exhaustive()
    }
}

/// Where a nested scope (an `or_else` alternative, a `nested` block) began.
#[derive(Clone, Copy)]
struct NestMark {
    raw: Mark,
    before: usize,
    after: usize,
    committing: usize,
    rollback: usize,
}

impl Transaction {
    fn new() -> Self {
        Self {
            raw: RawTx::new(),
            before: Vec::new(),
            after: Vec::new(),
            committing: Vec::new(),
            rollback: Vec::new(),
            rolled_back: Vec::new(),
            waiter: None,
            counters: Counters::register(),
            hints: Hints::default(),
            hooked: false,
        }
    }

    /// Drops everything of the current attempt: logs, pending values, hooks.
    #[inline]
    fn clear(&mut self) {
        self.raw.reset();
        if self.hooked {
            self.clear_hooks();
        }
    }

    #[cold]
    #[inline(never)]
    fn clear_hooks(&mut self) {
        self.before.clear();
        self.after.clear();
        self.committing.clear();
        self.rollback.clear();
        self.rolled_back.clear();
        self.hooked = false;
    }

    /// The `after_rollback` hooks to run now that the attempt ends without committing: those
    /// of scopes rolled back earlier, then those of the scopes still open, each in
    /// registration order.
    fn take_rollback_hooks(&mut self) -> Vec<AfterHook> {
        let mut hooks = std::mem::take(&mut self.rolled_back);
        hooks.append(&mut self.rollback);
        hooks
    }

    fn begin_nested(&mut self) -> NestMark {
        NestMark {
            raw: self.raw.begin_nested(),
            before: self.before.len(),
            after: self.after.len(),
            committing: self.committing.len(),
            rollback: self.rollback.len(),
        }
    }

    fn rollback_nested(&mut self, mark: NestMark) {
        self.raw.rollback_nested(mark.raw);
        self.before.truncate(mark.before);
        self.after.truncate(mark.after);
        self.committing.truncate(mark.committing);
        // The scope rolled back: its rollback hooks will run when the attempt ends.
        let rolled_back = self.rollback.drain(mark.rollback..);
        self.rolled_back.extend(rolled_back);
    }

    /// Runs `f` as a nested scope of this transaction, with partial rollback (Haskell's
    /// `catchSTM`, ScalaSTM's nesting).
    ///
    /// If `f` returns `Err(TxError::Abort(e))`, only the writes and hooks made inside `f` are
    /// rolled back and the transaction goes on with `Ok(Err(e))`. Its reads stay: the
    /// enclosing transaction depends on them. `Ok(v)` keeps its writes and gives `Ok(Ok(v))`.
    /// [`retry`](crate::retry) and conflicts propagate unchanged (a `retry` inside `f` retries
    /// the whole transaction, as `catchSTM` does). Scopes nest in each other and in `or_else`
    /// alternatives. A panic is not caught.
    ///
    /// # Errors
    ///
    /// `Err(StmError)` when `f` retried or conflicted: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, TxError, atomically};
    ///
    /// let (stock, log) = (TVar::new(1_u32), TVar::new(Vec::new()));
    /// let outcome = atomically(|tx| {
    ///     log.modify(tx, |mut l| { l.push("order"); l })?;
    ///     tx.nested(|tx| {
    ///         let n = stock.read(tx)?;
    ///         stock.write(tx, n.saturating_sub(2))?; // undone below
    ///         if n < 2 {
    ///             return Err(TxError::Abort("not enough stock"));
    ///         }
    ///         Ok(n - 2)
    ///     })
    /// });
    /// assert_eq!(outcome, Err("not enough stock"));
    /// assert_eq!(stock.read_atomic(), 1); // the scope's write was rolled back
    /// assert_eq!(log.read_atomic(), ["order"]); // the transaction's own write committed
    /// ```
    pub fn nested<T, E>(
        &mut self,
        f: impl FnOnce(&mut Transaction) -> Result<T, TxError<E>>,
    ) -> StmResult<Result<T, E>> {
        let mark = self.begin_nested();
        match f(self) {
            Ok(v) => {
                self.raw.end_nested(mark.raw);
                Ok(Ok(v))
            }
            Err(TxError::Abort(e)) => {
                self.rollback_nested(mark);
                Ok(Err(e))
            }
            Err(TxError::Stm(e)) => {
                self.raw.end_nested(mark.raw);
                Err(e)
            }
        }
    }

    /// Registers `f` to run after this attempt ends without committing: a conflict restart,
    /// a [`retry`](crate::retry) (before the thread waits), an abort, or a panic (then before
    /// the panic propagates). ScalaSTM's `afterRollback`.
    ///
    /// Hooks run outside any transaction (they may call [`atomically`]), in registration
    /// order. A hook registered in a [`nested`](Self::nested) scope or an
    /// [`or_else`](Self::or_else) alternative that rolled back runs once the attempt that
    /// contains the scope ends, whether that attempt commits or not (never inside the
    /// transaction). A hook whose scope is part of a commit never runs. A hook that panics
    /// while a panic unwinds is caught and ignored (two panics would abort the process).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use stm_core::{TVar, TxError, try_atomically};
    ///
    /// let released = Arc::new(AtomicUsize::new(0));
    /// let seat = TVar::new(Some(12));
    /// let r: Result<(), &str> = try_atomically(|tx| {
    ///     seat.write(tx, None)?;
    ///     let released = Arc::clone(&released);
    ///     tx.after_rollback(move || { released.fetch_add(1, Ordering::SeqCst); });
    ///     Err(TxError::Abort("card declined"))
    /// });
    /// assert!(r.is_err());
    /// assert_eq!(released.load(Ordering::SeqCst), 1);
    /// assert_eq!(seat.read_atomic(), Some(12));
    /// ```
    pub fn after_rollback(&mut self, f: impl FnOnce() + 'static) {
        self.hooked = true;
        self.rollback.push(Box::new(f));
    }

    /// Runs `first`; if it retries, rolls back its writes and hooks and runs `second` instead.
    ///
    /// If both retry, the retry propagates, and the transaction blocks until a variable read by
    /// either alternative changes. Conflicts and panics propagate from either. Alternatives
    /// nest: `second` may itself be an `or_else`.
    ///
    /// # Retries
    ///
    /// Both closures may run several times, as the whole transaction may be re-run.
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, atomically, retry};
    ///
    /// let (fast, slow) = (TVar::new(None), TVar::new(Some(7)));
    /// let got = atomically(|tx| {
    ///     tx.or_else(
    ///         |tx| match fast.read(tx)? { Some(v) => Ok(v), None => retry() },
    ///         |tx| match slow.read(tx)? { Some(v) => Ok(v), None => retry() },
    ///     )
    /// });
    /// assert_eq!(got, 7);
    /// ```
    pub fn or_else<T>(
        &mut self,
        mut first: impl FnMut(&mut Transaction) -> StmResult<T>,
        mut second: impl FnMut(&mut Transaction) -> StmResult<T>,
    ) -> StmResult<T> {
        let mark = self.begin_nested();
        match first(self) {
            Err(StmError::Retry) => {
                self.rollback_nested(mark);
                // The second alternative is a scope of its own too (for `TVar::rollback`).
                let mark = self.begin_nested();
                let out = second(self);
                self.raw.end_nested(mark.raw);
                out
            }
            other => {
                self.raw.end_nested(mark.raw);
                other
            }
        }
    }

    /// The same as [`or_else`](Self::or_else), under the name the `stm` crate uses.
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{atomically, retry};
    ///
    /// let v = atomically(|tx| tx.or(|_| retry(), |_| Ok(2)));
    /// assert_eq!(v, 2);
    /// ```
    pub fn or<T>(
        &mut self,
        first: impl FnMut(&mut Transaction) -> StmResult<T>,
        second: impl FnMut(&mut Transaction) -> StmResult<T>,
    ) -> StmResult<T> {
        self.or_else(first, second)
    }

    /// Registers `f` to run just before the transaction tries to commit.
    ///
    /// Hooks run in registration order, after the transaction's closure returned `Ok`, inside
    /// the transaction: they may read and write variables and register more hooks. If the
    /// commit then conflicts, the whole transaction re-runs, registering its hooks again. A
    /// hook that returns an error (`Err(StmError::Conflict)`) restarts the transaction; a panic
    /// in a hook commits nothing. Hooks registered inside an `or_else` alternative that retried
    /// are discarded with it.
    ///
    /// # Panics
    ///
    /// The transaction panics if a hook returns `Err(StmError::Retry)`: a hook cannot block.
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, atomically};
    ///
    /// let (items, count) = (TVar::new(vec![1, 2]), TVar::new(0));
    /// atomically(|tx| {
    ///     items.modify(tx, |mut v| { v.push(3); v })?;
    ///     let (items, count) = (items.clone(), count.clone());
    ///     tx.before_commit(move |tx| {
    ///         let n = items.read_with(tx, |v| v.len())?;
    ///         count.write(tx, n) // keep the derived count in step
    ///     });
    ///     Ok(())
    /// });
    /// assert_eq!(count.read_atomic(), 3);
    /// ```
    pub fn before_commit(&mut self, f: impl FnOnce(&mut Transaction) -> StmResult<()> + 'static) {
        self.hooked = true;
        self.before.push(Some(Box::new(f)));
    }

    /// Registers `f` to run after the transaction commits.
    ///
    /// Hooks run in registration order, outside any transaction (they may call
    /// [`atomically`]), before `atomically` returns, once per successful commit, read-only
    /// commits included. They never run for an attempt that conflicted, retried, aborted or
    /// panicked, and hooks registered inside an `or_else` alternative that retried are
    /// discarded. If a hook panics, the transaction stays committed, later hooks do not run and
    /// the panic reaches the caller of `atomically`.
    ///
    /// This is the place for I/O and other effects that must not be repeated.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use stm_core::{TVar, atomically};
    ///
    /// let (log, events) = mpsc::channel();
    /// let counter = TVar::new(0);
    /// atomically(|tx| {
    ///     let n = counter.read(tx)? + 1;
    ///     counter.write(tx, n)?;
    ///     let log = log.clone();
    ///     tx.after_commit(move || log.send(n).unwrap());
    ///     Ok(())
    /// });
    /// assert_eq!(events.recv().unwrap(), 1);
    /// ```
    pub fn after_commit(&mut self, f: impl FnOnce() + 'static) {
        self.hooked = true;
        self.after.push(Box::new(f));
    }

    /// Registers `f` to run *while* the transaction commits, with its [`CommitVersion`]: after
    /// its reads are validated and its writes locked (the commit can no longer fail), before its
    /// writes become visible.
    ///
    /// This is the hook for logging transactions in commit order (the mechanism `stm-persist`
    /// is built on). Its guarantees:
    ///
    /// - **One at a time, in serialization order.** The `while_committing` hooks of all
    ///   transactions in the process run one after another, in the order of their commit
    ///   versions, and that order is the serialization order: if transaction B read what A
    ///   wrote, overwrote it, or overwrote something A read, then A's hooks ran before B's. So
    ///   a log appended from this hook, replayed in order, reproduces the live state.
    /// - **Only for the attempt that commits**, exactly once per hook. Attempts that conflict,
    ///   retry or abort never run it; hooks registered inside an `or_else` alternative that
    ///   retried are discarded.
    /// - A transaction with such a hook commits through the writer path even if it wrote
    ///   nothing, so it gets a commit version of its own; a read-only transaction with a hook is
    ///   serialized at that version, which is how a consistent snapshot learns exactly which
    ///   logged transactions it contains.
    ///
    /// The hook runs while the transaction holds the locks of everything it wrote and while
    /// every other hooked commit in the process waits, so it must be short and must not block:
    /// push to a queue, assign a sequence number, no I/O. It cannot touch `TVar`s (it gets no
    /// transaction). If it panics, the transaction commits nothing (its locks are released) and
    /// the panic propagates to the caller of `atomically`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use stm_core::{TVar, atomically};
    ///
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let balance = TVar::new(0);
    /// for n in 1..=3 {
    ///     atomically(|tx| {
    ///         balance.modify(tx, |b| b + n)?;
    ///         let log = Arc::clone(&log);
    ///         tx.while_committing(move |version| log.lock().unwrap().push((version, n)));
    ///         Ok(())
    ///     });
    /// }
    /// let log = log.lock().unwrap();
    /// assert_eq!(log.iter().map(|&(_, n)| n).collect::<Vec<_>>(), [1, 2, 3]);
    /// assert!(log.windows(2).all(|w| w[0].0 < w[1].0)); // versions increase
    /// ```
    pub fn while_committing(&mut self, f: impl FnOnce(CommitVersion) + 'static) {
        self.hooked = true;
        self.committing.push(Box::new(f));
    }

    fn run_before_commit(&mut self) -> StmResult<()> {
        let mut i = 0;
        while i < self.before.len() {
            let hook = self.before[i]
                .take()
                .expect("each before_commit hook runs once");
            i += 1;
            match hook(self) {
                Err(StmError::Retry) => panic!("{HOOK_RETRY_MSG}"),
                other => other?,
            }
        }
        Ok(())
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    fn waiter(&mut self) -> Arc<Waiter> {
        Arc::clone(self.waiter.get_or_insert_with(Waiter::for_current_thread))
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        Counters::retire(&self.counters);
    }
}

/// The calling thread's transaction state: one thread-local, so entering and leaving a
/// transaction each cost a single thread-local access.
struct Slot {
    /// The thread's reusable transaction, while none is running.
    cached: Cell<Option<Box<Transaction>>>,
    /// Whether a transaction is running on this thread.
    active: Cell<bool>,
}

thread_local! {
    static SLOT: Slot = const {
        Slot {
            cached: Cell::new(None),
            active: Cell::new(false),
        }
    };
}

/// True while the calling thread runs a transaction (its closure or its before-commit hooks).
pub(crate) fn in_transaction() -> bool {
    SLOT.try_with(|s| s.active.get()).unwrap_or(false)
}

/// Panics with the nested-transaction message if a transaction runs on this thread.
pub(crate) fn assert_not_in_transaction() {
    if in_transaction() {
        panic!("{NESTED_MSG}");
    }
}

/// The thread's transaction for the duration of one `atomically`, given back on drop (also
/// when unwinding from a panic, so the thread stays usable).
struct Session {
    tx: Option<Box<Transaction>>,
}

impl Session {
    #[inline]
    fn enter() -> Self {
        // One thread-local access both checks and sets the flag and takes the transaction.
        let taken = SLOT.try_with(|s| {
            if s.active.replace(true) {
                panic!("{NESTED_MSG}");
            }
            s.cached.take()
        });
        Self {
            tx: Some(
                taken
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| Box::new(Transaction::new())),
            ),
        }
    }
}

impl Drop for Session {
    #[inline]
    fn drop(&mut self) {
        if let Some(mut tx) = self.tx.take() {
            if tx.hooked && !(tx.rollback.is_empty() && tx.rolled_back.is_empty()) {
                // Left over only when a panic ends the attempt: its rollback hooks run now,
                // before the panic propagates, outside the transaction.
                return give_back_unwinding(tx);
            }
            tx.clear();
            // If the thread-local is gone (thread exit), the transaction is simply dropped.
            let _ = SLOT.try_with(move |s| {
                s.active.set(false);
                s.cached.set(Some(tx));
            });
        }
    }
}

/// Gives the transaction of an attempt that a panic ended back to the thread, then runs its
/// rollback hooks (from [`Session`]'s `Drop`).
#[cold]
#[inline(never)]
fn give_back_unwinding(mut tx: Box<Transaction>) {
    let hooks = tx.take_rollback_hooks();
    tx.clear();
    let _ = SLOT.try_with(move |s| {
        s.active.set(false);
        s.cached.set(Some(tx));
    });
    for hook in hooks {
        if std::thread::panicking() {
            // A second panic while unwinding would abort the process.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook));
        } else {
            hook();
        }
    }
}

/// Runs `f` with the calling thread's idle transaction (for work outside `atomically`, such as
/// `write_atomic`), or with a temporary one while thread-locals are being destroyed.
pub(crate) fn with_idle_transaction<R>(f: impl FnOnce(&mut Transaction) -> R) -> R {
    let mut f = Some(f);
    let result = SLOT.try_with(|s| {
        let mut tx = s
            .cached
            .take()
            .unwrap_or_else(|| Box::new(Transaction::new()));
        let r = (f.take().expect("called once"))(&mut tx);
        s.cached.set(Some(tx));
        r
    });
    match result {
        Ok(r) => r,
        Err(_) => (f.take().expect("not called yet"))(&mut Transaction::new()),
    }
}

/// Hands the calling thread's buffered replaced values to the epoch, lets the epoch collect,
/// then frees the values whose grace period has passed.
pub(crate) fn collect_retired() {
    with_idle_transaction(|tx| {
        tx.raw.retired().flush(&crate::raw::reclaim::pin());
        crate::raw::reclaim::flush_burials();
        crate::raw::reclaim::collect();
        tx.raw.retired().reclaim();
    });
}

/// Writers that see this non-zero wait until a starving transaction has committed.
static SERIAL_WANTED: AtomicUsize = AtomicUsize::new(0);
static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// Held by a transaction that lost [`SERIAL_AFTER`] conflicts in a row: while it is held, other
/// writers wait before committing, so the holder's next attempt commits.
struct SerialToken(
    #[allow(dead_code, reason = "held for its Drop")] parking_lot::MutexGuard<'static, ()>,
);

impl SerialToken {
    fn acquire() -> Self {
        let guard = SERIAL.lock();
        SERIAL_WANTED.fetch_add(1, Ordering::SeqCst);
        Self(guard)
    }
}

impl Drop for SerialToken {
    fn drop(&mut self) {
        SERIAL_WANTED.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Called by writers before they lock anything: lets a starving transaction go first.
pub(crate) fn yield_to_starving() {
    if SERIAL_WANTED.load(Ordering::SeqCst) != 0 {
        drop(SERIAL.lock());
    }
}

/// Exponential backoff with jitter between conflicting attempts.
fn backoff(conflicts: u32, seed: &mut u64) {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    if conflicts > 6 {
        yield_now();
        return;
    }
    let limit = 1_u64 << (conflicts + 4);
    for _ in 0..(limit / 2 + *seed % limit) {
        spin_loop();
    }
}

/// Identifies the code of a transaction for [`Hints`]: the call site of `atomically` (through
/// `#[track_caller]`) mixed with the name of the closure's type, which tells apart the closures
/// that one wrapper function passes on. Two transactions that still share a site share a hint;
/// that costs at most some read-only misses, never correctness.
#[inline(always)]
#[track_caller]
pub(crate) fn site_of<F>(_: &F) -> usize {
    let caller = std::panic::Location::caller() as *const _ as usize;
    let name = std::any::type_name::<F>().as_ptr() as usize;
    caller ^ name.rotate_left(32)
}

/// How many commits a site runs with a read set after one of its transactions wrote or missed.
const LOGGED_AFTER_WRITE: u32 = 64;
/// Slots in a thread's table of [`Hint`]s (direct-mapped by site).
const HINT_SLOTS: usize = 64;

/// What a thread has learned about the transactions of one site (see [`site_of`]).
#[derive(Debug, Clone, Copy, Default)]
struct Hint {
    site: usize,
    /// Commits left before the site's next transaction may run without a read set.
    logged_for: u32,
}

/// Per-thread predictions of which transactions only read, so that those can run without
/// recording a read set (`RawTx::begin_unlogged`): a site runs unlogged once its last
/// `LOGGED_AFTER_WRITE` commits on this thread were read-only. A wrong guess costs one re-run
/// (a "read-only miss"); a site that writes at all often therefore stays logged.
#[derive(Debug)]
struct Hints([Hint; HINT_SLOTS]);

impl Default for Hints {
    fn default() -> Self {
        Self([Hint::default(); HINT_SLOTS])
    }
}

impl Hints {
    #[inline]
    fn slot(site: usize) -> usize {
        ((site as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize
    }

    /// Whether the next transaction of `site` should run without a read set.
    #[inline]
    fn read_only(&self, site: usize) -> bool {
        let hint = self.0[Self::slot(site)];
        hint.site == site && hint.logged_for == 0
    }

    /// Records how a logged attempt of a transaction of `site` is about to commit: `wrote` if it
    /// writes, carries an ordered hook, or its unlogged attempt missed.
    #[inline]
    fn learn(&mut self, site: usize, wrote: bool) {
        let hint = &mut self.0[Self::slot(site)];
        let logged_for = match (hint.site == site, wrote) {
            (true, true) if hint.logged_for == LOGGED_AFTER_WRITE => return,
            (_, true) => LOGGED_AFTER_WRITE,
            (true, false) => hint.logged_for.saturating_sub(1),
            (false, false) => 0,
        };
        *hint = Hint { site, logged_for };
    }
}

/// How [`run`] ended without a value.
pub(crate) enum Ended<E> {
    /// The transaction aborted with this error.
    Abort(E),
    /// The deadline passed while the transaction was blocked in `retry`.
    TimedOut,
    /// The transaction retried and its task registered to be woken (async only).
    Pending,
}

/// What the run loop does once a transaction retried (its hooks ran, its read set is intact).
pub(crate) enum RetryStep {
    /// Something read may have changed: run again.
    Rerun,
    /// Give up: [`Ended::TimedOut`].
    TimedOut,
    /// Return [`Ended::Pending`]; the caller's waker is registered.
    Pending,
}

/// Runs `after_rollback` hooks outside the transaction that is still this thread's session:
/// the thread counts as not in a transaction while they run, so they may call `atomically`.
fn run_outside(hooks: Vec<AfterHook>) {
    if hooks.is_empty() {
        return;
    }
    /// Marks the thread as in its transaction again, also when a hook panics.
    struct Back;
    impl Drop for Back {
        fn drop(&mut self) {
            let _ = SLOT.try_with(|s| s.active.set(true));
        }
    }
    let _ = SLOT.try_with(|s| s.active.set(false));
    let _back = Back;
    for hook in hooks {
        hook();
    }
}

/// The run loop of [`atomically`], [`try_atomically`] and [`atomically_timeout`], blocking the
/// thread in `retry`; `site` is [`site_of`] the caller's closure. With a `deadline`, a `retry`
/// that is still blocked when it passes ends the run with [`Ended::TimedOut`].
fn run<T, E>(
    site: usize,
    deadline: Option<Instant>,
    f: impl FnMut(&mut Transaction) -> Result<T, TxError<E>>,
) -> Result<T, Ended<E>> {
    run_with(site, f, |tx| {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return RetryStep::TimedOut;
        }
        let waiter = tx.waiter();
        if tx.raw.wait_for_change(&waiter, deadline) {
            RetryStep::Rerun
        } else {
            RetryStep::TimedOut
        }
    })
}

/// The run loop shared by the blocking and the asynchronous transactions: attempts, commits,
/// hooks, backoff and the starvation escape; `on_retry` decides what a `retry` does (block the
/// thread, or register a task's waker).
pub(crate) fn run_with<T, E>(
    site: usize,
    mut f: impl FnMut(&mut Transaction) -> Result<T, TxError<E>>,
    mut on_retry: impl FnMut(&mut Transaction) -> RetryStep,
) -> Result<T, Ended<E>> {
    let mut session = Session::enter();
    let tx = session
        .tx
        .as_deref_mut()
        .expect("session holds a transaction");
    let mut conflicts = 0_u32;
    let mut seed = tx as *const Transaction as u64 | 1;
    let mut serial: Option<SerialToken> = None;
    // Only a first attempt runs unlogged; a re-run for any reason keeps a read set.
    let mut unlogged = tx.hints.read_only(site);
    let mut missed = false;
    loop {
        if unlogged {
            tx.raw.begin_unlogged();
        } else {
            tx.raw.begin();
        }
        let outcome = f(tx).and_then(|v| {
            if tx.hooked && !tx.before.is_empty() {
                tx.run_before_commit()?;
            }
            // Read-only transactions are already committed: every read was checked against the
            // snapshot when it was made.
            if tx.raw.has_writes() || (tx.hooked && !tx.committing.is_empty()) {
                if !tx.raw.logs_reads() {
                    // Ordered hooks serialize a read-only commit by validating its read set.
                    tx.raw.require_log();
                    return Err(StmError::Conflict.into());
                }
                tx.hints.learn(site, true);
                if serial.is_none() {
                    yield_to_starving();
                }
                let committed = if !tx.hooked || tx.committing.is_empty() {
                    tx.raw.commit()
                } else {
                    let mut hooks = std::mem::take(&mut tx.committing);
                    tx.raw.commit_ordered(Some(&mut |wv| {
                        for hook in hooks.drain(..) {
                            hook(CommitVersion(wv));
                        }
                    }))
                };
                committed.map_err(|_| StmError::Conflict)?;
            } else if tx.raw.logs_reads() {
                tx.hints.learn(site, missed);
            }
            Ok(v)
        });
        if unlogged {
            unlogged = false;
            // A void attempt (it needed a read set), or a retry, which must know what to wait
            // for: re-run with a read set, at once (nothing conflicted).
            if tx.raw.needs_log() || matches!(outcome, Err(TxError::Stm(StmError::Retry))) {
                tx.counters.read_only_miss();
                let hooks = tx.take_rollback_hooks();
                tx.clear();
                run_outside(hooks);
                missed = true;
                continue;
            }
        }
        match outcome {
            Ok(v) => {
                tx.counters.commit();
                if !tx.hooked {
                    return Ok(v);
                }
                // Hooks of scopes that are part of this commit never run.
                if !tx.rollback.is_empty() {
                    tx.rollback.clear();
                }
                if tx.after.is_empty() && tx.rolled_back.is_empty() {
                    return Ok(v);
                }
                let rolled_back = std::mem::take(&mut tx.rolled_back);
                let after = std::mem::take(&mut tx.after);
                drop(serial);
                drop(session);
                for hook in rolled_back.into_iter().chain(after) {
                    hook();
                }
                return Ok(v);
            }
            Err(TxError::Abort(e)) => {
                let hooks = tx.take_rollback_hooks();
                drop(serial);
                drop(session);
                for hook in hooks {
                    hook();
                }
                return Err(Ended::Abort(e));
            }
            Err(TxError::Stm(StmError::Retry)) => {
                if !tx.raw.has_reads() {
                    panic!("{EMPTY_RETRY_MSG}");
                }
                tx.counters.retry();
                tx.before.clear();
                tx.after.clear();
                tx.committing.clear();
                // Never sleep (or run hooks) while other writers wait for us.
                serial = None;
                conflicts = 0;
                run_outside(tx.take_rollback_hooks());
                match on_retry(tx) {
                    RetryStep::Rerun => {}
                    RetryStep::TimedOut => return Err(Ended::TimedOut),
                    RetryStep::Pending => return Err(Ended::Pending),
                }
            }
            Err(TxError::Stm(_)) => {
                tx.counters.conflict();
                let hooks = tx.take_rollback_hooks();
                tx.clear();
                if !hooks.is_empty() {
                    // Hooks may commit transactions of their own: not while we make every
                    // other writer wait.
                    serial = None;
                    run_outside(hooks);
                }
                conflicts += 1;
                if conflicts >= SERIAL_AFTER && serial.is_none() {
                    serial = Some(SerialToken::acquire());
                } else {
                    backoff(conflicts, &mut seed);
                }
            }
        }
    }
}

/// [`atomically`] with a time limit on blocking: returns `None` if the transaction is still
/// blocked in [`retry`](crate::retry) when `timeout` has passed since the call (ScalaSTM's
/// `retryFor`, Haskell's `registerDelay` idiom).
///
/// Only waiting counts: conflict restarts never end it early, and a transaction that is
/// running when the time is up goes on; if it then commits, the result is `Some`. A commit of
/// another thread that wakes it in time gives `Some` too. After a `None`, nothing of the
/// transaction was committed.
///
/// # Retries
///
/// As [`atomically`]: `f` re-runs after a conflict, and after a `retry` once a variable it
/// read has changed, until `timeout` has passed.
///
/// # Panics
///
/// As [`atomically`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stm_core::{TVar, atomically_timeout, guard};
///
/// let ready = TVar::new(false);
/// // Nobody sets `ready`: gives up after about 10 ms.
/// assert_eq!(atomically_timeout(Duration::from_millis(10), |tx| guard(ready.read(tx)?)), None);
/// ready.write_atomic(true);
/// assert_eq!(atomically_timeout(Duration::from_secs(5), |tx| guard(ready.read(tx)?)), Some(()));
/// ```
#[track_caller]
pub fn atomically_timeout<T>(
    timeout: Duration,
    mut f: impl FnMut(&mut Transaction) -> StmResult<T>,
) -> Option<T> {
    let deadline = Instant::now().checked_add(timeout);
    let site = site_of(&f);
    match run::<T, std::convert::Infallible>(site, deadline, |tx| f(tx).map_err(TxError::Stm)) {
        Ok(v) => Some(v),
        Err(Ended::Abort(never)) => match never {},
        Err(Ended::TimedOut) => None,
        Err(Ended::Pending) => unreachable!("no task"),
    }
}

/// Runs `f` as a transaction and commits its writes atomically; returns what `f` returned.
///
/// Every read in `f` sees one consistent snapshot (opacity: even an attempt that will abort
/// never sees a half-committed state). When `f` returns `Ok`, its before-commit hooks run, then
/// its writes become visible to all threads at once, then its after-commit hooks run.
///
/// # Retries
///
/// `f` is re-run from the start after a conflict, and after a [`retry`](crate::retry) once a
/// variable it read has changed: touch nothing but `TVar`s in it (no I/O, no locks; use
/// [`Transaction::after_commit`] for effects).
///
/// # Panics
///
/// - If called inside a running transaction (pass the `&mut Transaction` instead).
/// - If `f` retries having read no variable (it would block forever).
/// - If `f` or a hook panics: nothing is committed, every `TVar` stays usable, and the panic
///   propagates.
///
/// # Examples
///
/// ```
/// use stm_core::{TVar, atomically};
///
/// let (a, b) = (TVar::new(10), TVar::new(0));
/// atomically(|tx| {
///     let v = a.read(tx)?;
///     a.write(tx, v - 3)?;
///     b.write(tx, 3)
/// });
/// assert_eq!(a.read_atomic() + b.read_atomic(), 10);
/// ```
#[track_caller]
pub fn atomically<T>(mut f: impl FnMut(&mut Transaction) -> StmResult<T>) -> T {
    let site = site_of(&f);
    match run::<T, std::convert::Infallible>(site, None, |tx| f(tx).map_err(TxError::Stm)) {
        Ok(v) => v,
        Err(Ended::Abort(never)) => match never {},
        Err(Ended::TimedOut | Ended::Pending) => unreachable!("no deadline, no task"),
    }
}

/// Runs `f` as a transaction that may abort: `Err(TxError::Abort(e))` rolls back every write,
/// runs no after-commit hook, and returns `Err(e)`.
///
/// Control flow (`?` on `TVar` calls, [`TxError::Stm`]) behaves as in [`atomically`].
///
/// # Retries
///
/// As for [`atomically`]: `f` may run several times.
///
/// # Panics
///
/// As for [`atomically`].
///
/// # Errors
///
/// Returns `Err(e)` when `f` returns `Err(TxError::Abort(e))`; nothing is committed then.
///
/// # Examples
///
/// ```
/// use stm_core::{TVar, TxError, try_atomically};
///
/// let stock = TVar::new(2_u32);
/// let take = |n: u32| try_atomically(|tx| {
///     let s = stock.read(tx)?;
///     if s < n {
///         return Err(TxError::Abort(format!("only {s} left")));
///     }
///     stock.write(tx, s - n)?;
///     Ok(s - n)
/// });
/// assert_eq!(take(1), Ok(1));
/// assert_eq!(take(5), Err("only 1 left".to_string()));
/// ```
#[track_caller]
pub fn try_atomically<T, E>(
    f: impl FnMut(&mut Transaction) -> Result<T, TxError<E>>,
) -> Result<T, E> {
    match run(site_of(&f), None, f) {
        Ok(v) => Ok(v),
        Err(Ended::Abort(e)) => Err(e),
        Err(Ended::TimedOut | Ended::Pending) => unreachable!("no deadline, no task"),
    }
}

/// Runs `f`; if it retries, rolls back its writes and returns `Ok(None)` instead of blocking.
///
/// This is STMX's `NONBLOCKING`, built on [`Transaction::or_else`].
///
/// # Examples
///
/// ```
/// use stm_core::{TVar, atomically, optionally, unwrap_or_retry};
///
/// let slot: TVar<Option<u32>> = TVar::new(None);
/// let got = atomically(|tx| optionally(tx, |tx| unwrap_or_retry(slot.read(tx)?)));
/// assert_eq!(got, None); // empty: no blocking
/// ```
pub fn optionally<T>(
    tx: &mut Transaction,
    mut f: impl FnMut(&mut Transaction) -> StmResult<T>,
) -> StmResult<Option<T>> {
    tx.or_else(|tx| f(tx).map(Some), |_| Ok(None))
}
