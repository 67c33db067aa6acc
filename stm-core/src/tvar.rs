//! [`TVar`]: a transactional variable.

use std::fmt;

use crate::error::{StmError, StmResult};
use crate::raw::clock;
use crate::raw::tvar::TVarHandle;
use crate::raw::tx::wake_after_store;
use crate::raw::tx::{RawTx, Reader};
use crate::transaction::{self, Transaction};

/// A transactional variable: shared state that transactions read and write atomically.
///
/// Cloning a `TVar` gives a second handle to the *same* variable (like `Arc`); the variable
/// lives until the last handle is dropped, which drops its current value at once. Values are
/// never mutated in place: a write installs a new value at commit, and the replaced one is
/// dropped once no running transaction can still be reading it (epoch-based reclamation).
///
/// `TVar<T>` is `Send` and `Sync` when `T` is, and values must be `Send + Sync + 'static`: a
/// committed value may be read from any thread and dropped on any thread.
///
/// ```compile_fail
/// let v = stm_core::TVar::new(std::rc::Rc::new(1)); // `Rc` is neither Send nor Sync
/// ```
///
/// A `Transaction` belongs to the thread that runs it:
///
/// ```compile_fail
/// fn is_send<T: Send>() {}
/// is_send::<stm_core::Transaction>();
/// ```
///
/// # Differences from `Mutex<T>`
///
/// A transaction reads and writes any number of `TVar`s as one atomic step, never deadlocks,
/// and can block with [`retry`](crate::retry) until some of them change. Readers take no lock.
/// The price: a write puts the new value in a fresh box (for values of up to 128 bytes, a
/// block from the thread's pool, not the allocator), and a transaction may run more than once.
///
/// # Examples
///
/// ```
/// use stm_core::{TVar, atomically};
///
/// let counter = TVar::new(0_u64);
/// let handle = counter.clone(); // the same variable
/// atomically(|tx| handle.modify(tx, |n| n + 1));
/// assert_eq!(counter.read_atomic(), 1);
/// ```
pub struct TVar<T> {
    handle: TVarHandle<T>,
}

impl<T> Clone for TVar<T> {
    fn clone(&self) -> Self {
        Self {
            handle: self.handle.clone(),
        }
    }
}

impl<T: fmt::Debug + Send + Sync + 'static> fmt::Debug for TVar<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.handle.load_with(|v| format!("{v:?}"));
        f.debug_struct("TVar")
            .field("value", &format_args!("{value}"))
            .finish()
    }
}

impl<T: Default + Send + Sync + 'static> Default for TVar<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: Send + Sync + 'static> TVar<T> {
    /// Creates a variable holding `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::TVar;
    ///
    /// let name = TVar::new(String::from("stmx"));
    /// assert_eq!(name.read_atomic(), "stmx");
    /// ```
    pub fn new(value: T) -> Self {
        Self {
            handle: TVarHandle::new(value),
        }
    }

    /// Reads the value as the transaction sees it (its own earlier write, or the snapshot),
    /// cloning it.
    ///
    /// # Errors
    ///
    /// `Err(StmError::Conflict)` if the variable changed in a way that breaks the transaction's
    /// snapshot; propagate it with `?` and the transaction restarts.
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, atomically};
    ///
    /// let v = TVar::new(vec![1, 2, 3]);
    /// let copy = atomically(|tx| v.read(tx));
    /// assert_eq!(copy, [1, 2, 3]);
    /// ```
    pub fn read(&self, tx: &mut Transaction) -> StmResult<T>
    where
        T: Clone,
    {
        self.read_with(tx, T::clone)
    }

    /// Runs `f` on a reference to the value as the transaction sees it, without cloning it.
    ///
    /// # Errors
    ///
    /// As for [`read`](Self::read).
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, atomically};
    ///
    /// let v = TVar::new(vec![1, 2, 3]);
    /// let len = atomically(|tx| v.read_with(tx, |items| items.len()));
    /// assert_eq!(len, 3);
    /// ```
    pub fn read_with<R>(&self, tx: &mut Transaction, f: impl FnOnce(&T) -> R) -> StmResult<R> {
        tx.raw
            .read(&self.handle, f)
            .map_err(|_| crate::StmError::Conflict)
    }

    /// Runs `f` on a reference to the value, lending it a [`Reader`] of the transaction for as
    /// long as that reference: `f` can walk the variables whose handles live inside the value
    /// (a tree's children, a list's next node) without cloning a handle, with
    /// [`Reader::read_ref`], in a plain loop. [`read_with`](Self::read_with) could not: its
    /// closure gets no transaction, so walking on means cloning the next handle out first (an
    /// atomic increment and decrement per step).
    ///
    /// The reads made through the `Reader` belong to the transaction, like any other.
    ///
    /// # Errors
    ///
    /// As for [`read`](Self::read); and whatever `f` returns (propagate the `Reader`'s
    /// conflicts with `?`).
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, atomically};
    ///
    /// struct Node { key: u32, left: Option<TVar<Node>>, right: Option<TVar<Node>> }
    /// let leaf = |key| TVar::new(Node { key, left: None, right: None });
    /// let root = TVar::new(Node { key: 5, left: Some(leaf(2)), right: Some(leaf(8)) });
    ///
    /// let contains = |key: u32| atomically(|tx| {
    ///     root.read_through(tx, |mut node, reader| loop {
    ///         let next = match key.cmp(&node.key) {
    ///             std::cmp::Ordering::Equal => return Ok(true),
    ///             std::cmp::Ordering::Less => &node.left,
    ///             std::cmp::Ordering::Greater => &node.right,
    ///         };
    ///         match next {
    ///             Some(child) => node = reader.read_ref(child)?,
    ///             None => return Ok(false),
    ///         }
    ///     })
    /// });
    /// assert!(contains(8));
    /// assert!(!contains(7));
    /// ```
    ///
    /// The references cannot outlive the call (they would outlive the transaction's pin):
    ///
    /// ```compile_fail
    /// use stm_core::{TVar, atomically};
    ///
    /// let v = TVar::new(String::from("x"));
    /// let escaped: &String = atomically(|tx| v.read_through(tx, |s, _| Ok(s)));
    /// ```
    pub fn read_through<R>(
        &self,
        tx: &mut Transaction,
        f: impl for<'a> FnOnce(&'a T, &mut Reader<'a>) -> StmResult<R>,
    ) -> StmResult<R> {
        tx.raw
            .read_nested(&self.handle, f)
            .map_err(|_| crate::StmError::Conflict)?
    }

    /// Runs `f` on a reference to the value together with the transaction, so that `f` can go
    /// on with it (read and write other variables, or this one) without cloning the value
    /// first: for example, write through a `TVar` handle held inside the value without cloning
    /// the handle. [`read_with`](Self::read_with) lends no transaction, and
    /// [`read_through`](Self::read_through) lends one that can only read.
    ///
    /// `f` sees the value as it was when `read_then` read it, even if it then writes this
    /// variable. If the transaction has already written or commuted this variable, the value
    /// is cloned for `f`, since a later write in `f` could replace it in place.
    ///
    /// # Errors
    ///
    /// As for [`read`](Self::read); and whatever `f` returns (propagate with `?`).
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, atomically};
    ///
    /// // The current slot of a log: append to it without cloning its handle.
    /// let current = TVar::new(TVar::new(Vec::<u32>::new()));
    /// atomically(|tx| current.read_then(tx, |slot, tx| slot.modify(tx, |mut v| { v.push(7); v })));
    /// let slot = current.read_atomic();
    /// assert_eq!(slot.read_atomic(), [7]);
    /// ```
    ///
    /// The reference cannot outlive the call:
    ///
    /// ```compile_fail
    /// use stm_core::{TVar, atomically};
    ///
    /// let v = TVar::new(String::from("x"));
    /// let escaped: &String = atomically(|tx| v.read_then(tx, |s, _| Ok(s)));
    /// ```
    pub fn read_then<R>(
        &self,
        tx: &mut Transaction,
        f: impl FnOnce(&T, &mut Transaction) -> StmResult<R>,
    ) -> StmResult<R>
    where
        T: Clone,
    {
        match RawTx::lend(tx, |tx: &mut Transaction| &mut tx.raw, &self.handle, f) {
            Ok(Ok(out)) => out,
            Ok(Err(f)) => {
                let value = self.read(tx)?;
                f(&value, tx)
            }
            Err(_) => Err(crate::StmError::Conflict),
        }
    }

    /// Sets the value; others see it when the transaction commits.
    ///
    /// # Errors
    ///
    /// Never fails today; returns `StmResult` so that it composes with `?` like the other
    /// operations (and like the `stm` crate's `write`).
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, atomically};
    ///
    /// let v = TVar::new(1);
    /// atomically(|tx| v.write(tx, 2));
    /// assert_eq!(v.read_atomic(), 2);
    /// ```
    pub fn write(&self, tx: &mut Transaction, value: T) -> StmResult<()> {
        tx.raw
            .write(&self.handle, value)
            .map_err(|_| StmError::Conflict)
    }

    /// Replaces the value with `f(value)`.
    ///
    /// # Errors
    ///
    /// As for [`read`](Self::read).
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, atomically};
    ///
    /// let v = TVar::new(20);
    /// atomically(|tx| v.modify(tx, |n| n * 2 + 2));
    /// assert_eq!(v.read_atomic(), 42);
    /// ```
    pub fn modify(&self, tx: &mut Transaction, f: impl FnOnce(T) -> T) -> StmResult<()>
    where
        T: Clone,
    {
        let value = self.read(tx)?;
        self.write(tx, f(value))
    }

    /// Sets the value and returns the previous one.
    ///
    /// # Errors
    ///
    /// As for [`read`](Self::read).
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, atomically};
    ///
    /// let v = TVar::new("old");
    /// let prev = atomically(|tx| v.replace(tx, "new"));
    /// assert_eq!((prev, v.read_atomic()), ("old", "new"));
    /// ```
    pub fn replace(&self, tx: &mut Transaction, value: T) -> StmResult<T>
    where
        T: Clone,
    {
        let old = self.read(tx)?;
        self.write(tx, value)?;
        Ok(old)
    }

    /// Returns a clone of the latest committed value, outside any transaction.
    ///
    /// Consistent for this one variable, and linearizable: it never returns a value older than
    /// one already observed by a read that finished before it. Allowed inside a transaction too,
    /// where it ignores the transaction's own writes and snapshot.
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::TVar;
    ///
    /// let v = TVar::new(5);
    /// assert_eq!(v.read_atomic(), 5);
    /// ```
    pub fn read_atomic(&self) -> T
    where
        T: Clone,
    {
        self.handle.load_with(T::clone)
    }

    /// Sets the value in a transaction of its own, waking transactions blocked on it.
    ///
    /// # Panics
    ///
    /// If called inside a running transaction: use [`write`](Self::write) there.
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::TVar;
    ///
    /// let v = TVar::new(0);
    /// v.write_atomic(9);
    /// assert_eq!(v.read_atomic(), 9);
    /// ```
    pub fn write_atomic(&self, value: T) {
        transaction::assert_not_in_transaction();
        transaction::yield_to_starving();
        let replaced = transaction::with_idle_transaction(|tx| {
            let replaced = self.handle.store(value, clock::global(), tx.raw.retired());
            tx.counters().commit();
            replaced
        });
        wake_after_store(self.handle.raw().header(), replaced);
    }

    /// Clojure's `commute`: at commit, `f` is applied to the variable's latest committed value,
    /// so transactions that only commute a variable never conflict on it.
    ///
    /// Several commutes of one variable in one transaction apply in order. A later
    /// [`read`](Self::read) of the variable in the same transaction sees them applied, and
    /// that read is validated like any other: a transaction that reads what it commuted
    /// conflicts as if it had used [`modify`](Self::modify), so transactions stay serializable.
    /// A [`write`](Self::write) after a commute replaces it; a commute after a write (or a
    /// read) applies `f` to the transaction's value at once. Use it for counters, sums, sets
    /// where the order of updates does not matter to anyone who does not read them.
    ///
    /// `f` must be pure: it may run more than once (inside the transaction for a read, and at
    /// commit, where it runs while the commit holds its locks, so it must be short). A panic in
    /// `f` at commit time commits nothing and propagates, like any panic.
    ///
    /// # Errors
    ///
    /// `Err(StmError::Conflict)` as [`write`](Self::write).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::thread;
    /// use stm_core::{TVar, atomically};
    ///
    /// let hits = TVar::new(0_u64);
    /// thread::scope(|s| {
    ///     for _ in 0..4 {
    ///         s.spawn(|| {
    ///             for _ in 0..1000 {
    ///                 atomically(|tx| hits.commute(tx, |n| n + 1)); // never conflicts on `hits`
    ///             }
    ///         });
    ///     }
    /// });
    /// assert_eq!(hits.read_atomic(), 4000);
    /// ```
    pub fn commute(
        &self,
        tx: &mut Transaction,
        f: impl Fn(&T) -> T + Send + Sync + 'static,
    ) -> StmResult<()> {
        tx.raw
            .commute(&self.handle, f)
            .map_err(|_| StmError::Conflict)
    }

    /// A [`commute`](Self::commute) that may refuse: at commit, `f(base, current)` gets the
    /// variable's latest committed value (`base`) and its value so far (`current`: `base`, or
    /// what this transaction's earlier commutes of it made) and returns the new value, or
    /// `None` to make the commit fail with a conflict (nothing is published; the transaction
    /// runs again). A read of the variable later in the same transaction applies it over the
    /// snapshot's value, and a refusal there is a conflict too. If the transaction already
    /// wrote the variable, `f` applies at once to that value, over the snapshot's value, whose
    /// read is then recorded.
    ///
    /// A building block for containers that decide at commit, from what was committed since
    /// their snapshot, whether their change still commutes (`MegaRef` checks that no commit
    /// since its snapshot changed a related path). `f` must be pure and short, as for
    /// `commute`.
    ///
    /// # Errors
    ///
    /// `Err(StmError::Conflict)` as [`write`](Self::write).
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, atomically};
    ///
    /// // Append to a log, unless an append committed since this attempt's snapshot: then the
    /// // attempt conflicts, and the next one starts from a newer snapshot. (Taken before the
    /// // transaction, `seen` could refuse on every attempt.)
    /// let log = TVar::new(vec![1]);
    /// atomically(|tx| {
    ///     let seen = log.read_committed_with_unrecorded(tx, Vec::len)?;
    ///     log.commute_checked(tx, move |base, current| {
    ///         (base.len() == seen).then(|| [current.as_slice(), &[2]].concat())
    ///     })
    /// });
    /// assert_eq!(log.read_atomic(), [1, 2]);
    /// ```
    #[doc(hidden)]
    pub fn commute_checked(
        &self,
        tx: &mut Transaction,
        f: impl Fn(&T, &T) -> Option<T> + Send + Sync + 'static,
    ) -> StmResult<()> {
        tx.raw
            .commute_checked(&self.handle, f)
            .map_err(|_| StmError::Conflict)
    }

    /// Applies `f` to the value as [`read_with`](Self::read_with) does, recording the read for
    /// opacity only: the transaction never sees a state in which the variable has changed
    /// since (its snapshot moves only while the variable keeps the version read), and a
    /// [`retry`](crate::retry) waits on it, but the commit does not validate it, so a commit to
    /// the variable after the read does not make the transaction conflict.
    ///
    /// A building block for containers that check at commit by other means what this read
    /// decided (`MegaRef`'s writers, with [`commute_checked`](Self::commute_checked)). Used for
    /// a value that decides anything by itself, it gives up serializability.
    ///
    /// # Errors
    ///
    /// `Err(StmError::Conflict)` as [`read`](Self::read).
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, atomically};
    ///
    /// let guard = TVar::new(0_u64);
    /// assert_eq!(atomically(|tx| guard.read_with_opacity_only(tx, |&g| g)), 0);
    /// ```
    #[doc(hidden)]
    pub fn read_with_opacity_only<R>(
        &self,
        tx: &mut Transaction,
        f: impl FnOnce(&T) -> R,
    ) -> StmResult<R> {
        tx.raw
            .read_opacity_only(&self.handle, f)
            .map_err(|_| StmError::Conflict)
    }

    /// Applies `f` to the variable's committed value in the transaction's snapshot, ignoring
    /// what the transaction wrote or commuted, *without recording the read* (see
    /// [`read_with_unrecorded`](Self::read_with_unrecorded)).
    ///
    /// # Errors
    ///
    /// `Err(StmError::Conflict)` as [`read`](Self::read).
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, atomically};
    ///
    /// let count = TVar::new(1);
    /// let before = atomically(|tx| {
    ///     count.commute(tx, |n| n + 1)?;
    ///     count.read_committed_with_unrecorded(tx, |&n| n)
    /// });
    /// assert_eq!((before, count.read_atomic()), (1, 2));
    /// ```
    #[doc(hidden)]
    pub fn read_committed_with_unrecorded<R>(
        &self,
        tx: &mut Transaction,
        f: impl FnOnce(&T) -> R,
    ) -> StmResult<R> {
        tx.raw
            .read_committed_unrecorded(&self.handle, f)
            .map_err(|_| StmError::Conflict)
    }

    /// Applies `f` to the value as the transaction sees it (its own write, its commutes applied
    /// to the snapshot, or the snapshot) *without recording the read*: no later commit to
    /// this variable makes the transaction conflict. The value is still consistent with the
    /// transaction's snapshot.
    ///
    /// This is a building block for containers that detect their conflicts through other
    /// variables read in the same transaction (`MegaRef` reads the world through guard
    /// variables per path). Using it for a value that decides anything by itself gives up
    /// serializability.
    ///
    /// # Errors
    ///
    /// `Err(StmError::Conflict)` as [`read`](Self::read).
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, atomically};
    ///
    /// let world = TVar::new(vec![1, 2, 3]);
    /// let len = atomically(|tx| world.read_with_unrecorded(tx, Vec::len));
    /// assert_eq!(len, 3);
    /// ```
    #[doc(hidden)]
    pub fn read_with_unrecorded<R>(
        &self,
        tx: &mut Transaction,
        f: impl FnOnce(&T) -> R,
    ) -> StmResult<R> {
        tx.raw
            .read_unrecorded(&self.handle, f)
            .map_err(|_| StmError::Conflict)
    }

    /// Discards the writes to this variable made in the innermost open scope (a
    /// [`nested`](Transaction::nested) scope, an [`or_else`](Transaction::or_else)
    /// alternative, or else the transaction) and returns its value as it was when that scope
    /// began (md.stm's `rollback(cursor)`). Other variables keep their writes.
    ///
    /// # Errors
    ///
    /// `Err(StmError::Conflict)` as [`read`](Self::read).
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, atomically};
    ///
    /// let (draft, saved) = (TVar::new(1), TVar::new(1));
    /// atomically(|tx| {
    ///     draft.write(tx, 2)?;
    ///     saved.write(tx, 2)?;
    ///     assert_eq!(draft.rollback(tx)?, 1); // back to the value the transaction saw first
    ///     Ok(())
    /// });
    /// assert_eq!((draft.read_atomic(), saved.read_atomic()), (1, 2));
    /// ```
    pub fn rollback(&self, tx: &mut Transaction) -> StmResult<T>
    where
        T: Clone,
    {
        tx.raw.rollback_var(self.handle.raw().header());
        self.read(tx)
    }

    /// Sets the value in a transaction of its own and returns the value it replaced, waking
    /// transactions blocked on the variable (ScalaSTM's `Ref.View.swap`).
    ///
    /// Cheaper than the equivalent `atomically(|tx| v.replace(tx, value))`: it locks the
    /// variable once and does not run the transaction machinery. `T::clone` runs while the
    /// variable is locked.
    ///
    /// # Panics
    ///
    /// If called inside a running transaction: use [`replace`](Self::replace) there.
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::TVar;
    ///
    /// let v = TVar::new(String::from("old"));
    /// assert_eq!(v.swap_atomic(String::from("new")), "old");
    /// assert_eq!(v.read_atomic(), "new");
    /// ```
    pub fn swap_atomic(&self, value: T) -> T
    where
        T: Clone,
    {
        self.update_atomic(|old| (Some(value), old.clone()))
    }

    /// Replaces the value with `f(&value)` in a transaction of its own and returns the new
    /// value, waking transactions blocked on the variable (ScalaSTM's
    /// `Ref.View.transformAndGet`).
    ///
    /// # Retries
    ///
    /// `f` runs again if the transaction conflicts with a concurrent commit, so it must have no
    /// effects besides its result.
    ///
    /// # Panics
    ///
    /// If called inside a running transaction: use [`modify`](Self::modify) there.
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::TVar;
    ///
    /// let hits = TVar::new(41_u64);
    /// assert_eq!(hits.modify_atomic(|n| n + 1), 42);
    /// ```
    #[track_caller]
    pub fn modify_atomic(&self, mut f: impl FnMut(&T) -> T) -> T
    where
        T: Clone,
    {
        transaction::atomically(|tx| {
            let new = self.read_with(tx, &mut f)?;
            self.write(tx, new.clone())?;
            Ok(new)
        })
    }

    /// Sets the value to `new` if it equals `expected`, in a transaction of its own; returns
    /// whether it did. A successful set wakes transactions blocked on the variable.
    ///
    /// The comparison runs while the variable is locked (`PartialEq` must not read it).
    ///
    /// # Panics
    ///
    /// If called inside a running transaction.
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::TVar;
    ///
    /// let state = TVar::new("idle");
    /// assert!(state.compare_and_set_atomic(&"idle", "busy"));
    /// assert!(!state.compare_and_set_atomic(&"idle", "busy"));
    /// assert_eq!(state.read_atomic(), "busy");
    /// ```
    pub fn compare_and_set_atomic(&self, expected: &T, new: T) -> bool
    where
        T: PartialEq,
    {
        self.update_atomic(|current| {
            if current == expected {
                (Some(new), true)
            } else {
                (None, false)
            }
        })
    }

    /// One locked read-decide-publish step outside transactions (see `TVarHandle::update`).
    fn update_atomic<R>(&self, f: impl FnOnce(&T) -> (Option<T>, R)) -> R {
        transaction::assert_not_in_transaction();
        transaction::yield_to_starving();
        let (replaced, out) = transaction::with_idle_transaction(|tx| {
            let done = self.handle.update(clock::global(), tx.raw.retired(), f);
            tx.counters().commit();
            done
        });
        if let Some(replaced) = replaced {
            wake_after_store(self.handle.raw().header(), replaced);
        }
        out
    }

    /// True if `a` and `b` are handles to the same variable.
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::TVar;
    ///
    /// let a = TVar::new(1);
    /// let (b, c) = (a.clone(), TVar::new(1));
    /// assert!(TVar::ref_eq(&a, &b));
    /// assert!(!TVar::ref_eq(&a, &c));
    /// ```
    pub fn ref_eq(a: &TVar<T>, b: &TVar<T>) -> bool {
        TVarHandle::ptr_eq(&a.handle, &b.handle)
    }
}

impl<'a> Reader<'a> {
    /// The value of `tv` as the transaction sees it, borrowed for as long as this reader: for
    /// walking on through the handles inside it. `tv` must live that long too (it is usually a
    /// handle inside a value this reader returned).
    ///
    /// # Errors
    ///
    /// As for [`TVar::read`].
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, atomically};
    ///
    /// let inner = TVar::new(String::from("deep"));
    /// let outer = TVar::new(inner);
    /// let len = atomically(|tx| outer.read_through(tx, |inner, r| Ok(r.read_ref(inner)?.len())));
    /// assert_eq!(len, 4);
    /// ```
    #[inline]
    pub fn read_ref<T>(&mut self, tv: &'a TVar<T>) -> StmResult<&'a T>
    where
        T: Send + Sync + 'static,
    {
        self.read_ref_raw(&tv.handle)
            .map_err(|_| crate::StmError::Conflict)
    }

    /// Reads the value of `tv`, cloning it, like [`TVar::read`].
    ///
    /// # Errors
    ///
    /// As for [`TVar::read`].
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, atomically};
    ///
    /// let inner = TVar::new(7);
    /// let outer = TVar::new(inner);
    /// assert_eq!(atomically(|tx| outer.read_through(tx, |inner, r| r.read(inner))), 7);
    /// ```
    pub fn read<T>(&mut self, tv: &TVar<T>) -> StmResult<T>
    where
        T: Clone + Send + Sync + 'static,
    {
        self.read_with(tv, T::clone)
    }

    /// Runs `f` on a reference to the value of `tv`, like [`TVar::read_with`].
    ///
    /// # Errors
    ///
    /// As for [`TVar::read`].
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, atomically};
    ///
    /// let inner = TVar::new(vec![1, 2, 3]);
    /// let outer = TVar::new(inner);
    /// let len = atomically(|tx| outer.read_through(tx, |inner, r| r.read_with(inner, Vec::len)));
    /// assert_eq!(len, 3);
    /// ```
    pub fn read_with<T, R>(&mut self, tv: &TVar<T>, f: impl FnOnce(&T) -> R) -> StmResult<R>
    where
        T: Send + Sync + 'static,
    {
        self.read_raw(&tv.handle, f)
            .map_err(|_| crate::StmError::Conflict)
    }
}
