//! A shelf: persistent transactional objects with ids, loaded lazily (md.stm's shelf).
//!
//! The command log ([`Store`](crate::Store)) rebuilds the whole state by replay, so the state
//! must fit in memory and be replayed at start. A [`Shelf`] instead stores every persistent
//! object's committed value under its persistent id (*pid*): opening reads nothing, an object
//! is loaded when a transaction first reads it, and objects nobody holds any more leave memory
//! and are loaded again on demand. State can be far larger than memory, and start is instant.
//!
//! - [`PVar<T>`]: a persistent [`TVar`](stm_core::TVar), with its API inside transactions;
//!   [`PRef<T>`]: a serializable, lazily resolved reference to another object.
//! - [`Shelf::atomically`] returns once everything the transaction wrote is durable, in one
//!   atomic batch, batches in serialization order, concurrent callers sharing one sync. Writes
//!   from a plain [`atomically`](stm_core::atomically) are stored too, in order, without
//!   waiting ([`Shelf::flush`] waits).
//! - [`Backend`]: [`RedbBackend`] (one embedded file, the default) and, with the `postgres`
//!   feature, `PgBackend`.
//!
//! `docs/persistence.md` ("Shelf or command log: which to choose") compares the two models.
//!
//! # Examples
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use stm_persist::shelf::{PVar, Shelf};
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct Account { owner: String, balance: i64 }
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("app.shelf");
//! {
//!     let shelf = Shelf::open(&path)?;
//!     let ann: PVar<Account> = shelf.create(Account { owner: "ann".into(), balance: 100 })?;
//!     let bob = shelf.create_with_id("bob", Account { owner: "bob".into(), balance: 0 })?;
//!     shelf.atomically(|tx| {
//!         let a = ann.read(tx)?; // loads `ann` on first touch
//!         ann.write(tx, Account { balance: a.balance - 10, ..a })?;
//!         bob.modify(tx, |b| Account { balance: b.balance + 10, ..b })
//!     })?; // durable here
//! }
//! let shelf = Shelf::open(&path)?; // reads no object
//! let bob = shelf.fetch::<Account>("bob")?; // a handle; nothing decoded yet
//! assert_eq!(shelf.atomically(|tx| bob.read(tx))?.balance, 10);
//! assert_eq!(shelf.stats().loads, 1);
//! # Ok::<(), stm_persist::shelf::Error>(())
//! ```

mod backend;
mod error;
mod object;
#[cfg(feature = "postgres")]
mod pg;
mod record;
mod sink;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use parking_lot::Mutex;
use stm_core::{StmError, StmResult, Transaction, TxError};

pub use backend::{Backend, Change, RedbBackend};
pub use error::{Error, Result};
pub use object::{PRef, PVar, Persistent};
#[cfg(feature = "postgres")]
pub use pg::PgBackend;
pub use record::FORMAT;

use object::{Obj, Slot};
use sink::Sink;

/// Buckets of eviction counts, by pid hash: a fetch that read the store while an object of its
/// bucket left memory reads again (that object's last change may be newer than what it read).
const EVICTION_BUCKETS: usize = 64;

/// What every handle of one shelf shares.
pub(crate) struct Core {
    pub(crate) sink: Arc<Sink>,
    /// The identity map: at most one object per pid in memory.
    pub(crate) objects: Mutex<HashMap<Box<str>, Weak<Obj>>>,
    evictions: [AtomicU64; EVICTION_BUCKETS],
    pub(crate) loads: AtomicU64,
    store_reads: AtomicU64,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Core {
    fn bucket(pid: &str) -> usize {
        // FNV-1a: stable, cheap, good enough to spread pids over the buckets.
        let hash = pid.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        (hash % EVICTION_BUCKETS as u64) as usize
    }

    pub(crate) fn evicted(&self, pid: &str) {
        self.evictions[Self::bucket(pid)].fetch_add(1, Ordering::Relaxed);
    }
}

/// What the user's handles ([`Shelf`] clones and [`PVar`]s) share: when the last one goes,
/// the writer stores what is queued and stops, and the store closes, before that drop returns,
/// so the shelf can be reopened at once. (Objects themselves, which queued changes and running
/// transactions hold, keep only the [`Core`].)
pub(crate) struct Handle {
    core: Arc<Core>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.core.sink.close();
        if let Some(writer) = self.core.writer.lock().take()
            && writer.thread().id() != std::thread::current().id()
        {
            let _ = writer.join();
        }
    }
}

/// How a shelf is doing: counters since it was opened.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
/// let n = shelf.create(1_u8)?;
/// let stats = shelf.stats();
/// assert_eq!((stats.loads, stats.resident), (0, 1));
/// assert!(stats.syncs >= 1);
/// # drop(n);
/// # Ok::<(), stm_persist::shelf::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShelfStats {
    /// Objects decoded from their stored record (first reads of fetched objects).
    pub loads: u64,
    /// Lookups in the store (fetches of objects not in memory).
    pub store_reads: u64,
    /// Objects in memory now.
    pub resident: usize,
    /// Committed transactions whose changes were stored.
    pub batches: u64,
    /// Batches of the store written (each one durable write; group commit makes this smaller
    /// than `batches`).
    pub syncs: u64,
}

/// A shelf of persistent transactional objects. Cheap to clone; the store closes when the last
/// clone and the last [`PVar`] are gone, after storing every change.
///
/// See [the module](self) for the model.
///
/// # Examples
///
/// ```
/// use stm_persist::shelf::Shelf;
///
/// let dir = tempfile::tempdir().unwrap();
/// let shelf = Shelf::open(dir.path().join("app.shelf"))?;
/// let total = shelf.create_with_id("total", 0_u64)?;
/// shelf.atomically(|tx| total.modify(tx, |t| t + 5))?;
/// assert_eq!(total.read_atomic()?, 5);
/// # Ok::<(), stm_persist::shelf::Error>(())
/// ```
#[derive(Clone)]
pub struct Shelf {
    handle: Arc<Handle>,
}

impl fmt::Debug for Shelf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shelf")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Shelf {
    /// Opens (or creates) the shelf file at `path`, with the embedded [`RedbBackend`].
    /// Opening reads no object.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if it is open elsewhere, [`Error::Store`] if it cannot be opened.
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let shelf = stm_persist::shelf::Shelf::open(dir.path().join("data/app.shelf"))?;
    /// # drop(shelf);
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Shelf> {
        Ok(Shelf::with_backend(RedbBackend::open(path)?))
    }

    /// A shelf over any [`Backend`]. Starts the shelf's writer thread.
    ///
    /// # Panics
    ///
    /// If the writer thread cannot be started.
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_persist::shelf::{RedbBackend, Shelf};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let shelf = Shelf::with_backend(RedbBackend::open(dir.path().join("s"))?);
    /// # drop(shelf);
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn with_backend(backend: impl Backend) -> Shelf {
        let sink = Arc::new(Sink::new(Box::new(backend)));
        let writer = {
            let sink = Arc::clone(&sink);
            std::thread::Builder::new()
                .name("stmx-shelf-writer".into())
                .spawn(move || sink.run_writer())
                .expect("stmx::shelf: cannot start the writer thread")
        };
        let core = Arc::new(Core {
            sink,
            objects: Mutex::new(HashMap::new()),
            evictions: std::array::from_fn(|_| AtomicU64::new(0)),
            loads: AtomicU64::new(0),
            store_reads: AtomicU64::new(0),
            writer: Mutex::new(Some(writer)),
        });
        Shelf {
            handle: Arc::new(Handle { core }),
        }
    }

    fn core(&self) -> &Arc<Core> {
        &self.handle.core
    }

    fn var<T: Persistent>(&self, obj: Arc<Obj>) -> PVar<T> {
        PVar::from_obj(obj, Arc::clone(&self.handle))
    }

    /// The object `pid`, from memory or from the store (its record kept, not decoded), or
    /// `None` if it exists in neither. With `absent`, a pid found nowhere gets an absent object.
    fn lookup(&self, pid: &str, absent: bool) -> Result<Option<Arc<Obj>>> {
        let bucket = &self.core().evictions[Core::bucket(pid)];
        loop {
            let evictions = {
                let objects = self.core().objects.lock();
                if let Some(obj) = objects.get(pid).and_then(Weak::upgrade) {
                    return Ok(Some(obj));
                }
                bucket.load(Ordering::Relaxed)
            };
            self.core().sink.check()?;
            let record = self.core().sink.backend.load(pid)?;
            self.core().store_reads.fetch_add(1, Ordering::Relaxed);
            if let Some(record) = &record {
                record::tag(pid, record)?;
            }
            let mut objects = self.core().objects.lock();
            if let Some(obj) = objects.get(pid).and_then(Weak::upgrade) {
                return Ok(Some(obj));
            }
            if bucket.load(Ordering::Relaxed) != evictions {
                continue;
            }
            let obj = match record {
                Some(record) => Obj::stored(Arc::clone(self.core()), pid, record),
                None if absent => Obj::absent(Arc::clone(self.core()), pid),
                None => return Ok(None),
            };
            let obj = Arc::new(obj);
            objects.insert(pid.into(), Arc::downgrade(&obj));
            return Ok(Some(obj));
        }
    }

    /// A new, absent object under a fresh pid.
    fn fresh<T: Persistent>(&self) -> PVar<T> {
        let pid = new_pid();
        let obj = Arc::new(Obj::absent(Arc::clone(self.core()), &pid));
        self.core()
            .objects
            .lock()
            .insert(pid.into(), Arc::downgrade(&obj));
        self.var(obj)
    }

    /// Creates an object holding `value` under a new, unique pid, and returns once it is
    /// durable.
    ///
    /// # Errors
    ///
    /// As [`atomically`](Self::atomically).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// let a = shelf.create(1_u32)?;
    /// let b = shelf.create(1_u32)?;
    /// assert_ne!(a.pid(), b.pid());
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn create<T: Persistent>(&self, value: T) -> Result<PVar<T>> {
        let var = self.fresh::<T>();
        self.atomically(|tx| var.write(tx, value.clone()))?;
        Ok(var)
    }

    /// Creates an object holding `value` under a new pid inside a transaction: it exists (and
    /// is stored) if the transaction commits.
    ///
    /// # Errors
    ///
    /// `Err(StmError::Conflict)` as [`PVar::write`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// let vars = shelf.atomically(|tx| (0..100_u32).map(|i| shelf.create_in(tx, i)).collect::<Result<Vec<_>, _>>())?;
    /// assert_eq!(vars.len(), 100);
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn create_in<T: Persistent>(&self, tx: &mut Transaction, value: T) -> StmResult<PVar<T>> {
        let var = self.fresh::<T>();
        var.write(tx, value)?;
        Ok(var)
    }

    /// Creates an object holding `value` under `pid`, and returns once it is durable.
    ///
    /// # Errors
    ///
    /// [`Error::Exists`] if an object has that pid; otherwise as
    /// [`atomically`](Self::atomically).
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_persist::shelf::Error;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// shelf.create_with_id("bob", 0_i64)?;
    /// assert!(matches!(shelf.create_with_id("bob", 1_i64), Err(Error::Exists { .. })));
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn create_with_id<T: Persistent>(&self, pid: &str, value: T) -> Result<PVar<T>> {
        self.atomically(|tx| self.create_with_id_in(tx, pid, value.clone()))
    }

    /// Creates an object holding `value` under `pid` inside a transaction: it exists (and is
    /// stored) if the transaction commits.
    ///
    /// # Errors
    ///
    /// `Err(StmError::Conflict)`; [`Error::Exists`] (if an object has that pid) and store
    /// errors as a failed load (see [`PVar`]'s *Panics*).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// shelf.atomically(|tx| {
    ///     for i in 0..10_u32 {
    ///         shelf.create_with_id_in(tx, &format!("item-{i}"), i)?;
    ///     }
    ///     Ok(())
    /// })?;
    /// assert_eq!(shelf.fetch::<u32>("item-7")?.read_atomic()?, 7);
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn create_with_id_in<T: Persistent>(
        &self,
        tx: &mut Transaction,
        pid: &str,
        value: T,
    ) -> StmResult<PVar<T>> {
        let obj = self
            .lookup(pid, true)
            .map_err(fail)?
            .expect("absent allowed");
        if !matches!(obj.var.read(tx)?, Slot::Absent) {
            return Err(fail(Error::Exists { pid: pid.into() }));
        }
        let var = self.var(obj);
        var.write(tx, value)?;
        Ok(var)
    }

    /// A handle to the object `pid`. Nothing is decoded until a transaction reads it; if the
    /// object is not in memory, its record is looked up in the store (to report a missing pid
    /// or another type here rather than at first read).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::TypeMismatch`] (the object is not a `T`),
    /// [`Error::Format`] (its record is damaged or of an unknown format), [`Error::Store`].
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_persist::shelf::Error;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// shelf.create_with_id("bob", 0_i64)?;
    /// let bob = shelf.fetch::<i64>("bob")?;
    /// assert!(matches!(shelf.fetch::<String>("bob"), Err(Error::TypeMismatch { .. })));
    /// assert!(matches!(shelf.fetch::<i64>("eve"), Err(Error::NotFound { .. })));
    /// # drop(bob);
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn fetch<T: Persistent>(&self, pid: &str) -> Result<PVar<T>> {
        let obj = self
            .lookup(pid, false)?
            .ok_or_else(|| Error::NotFound { pid: pid.into() })?;
        obj.check::<T>()?;
        Ok(self.var(obj))
    }

    /// [`fetch`](Self::fetch) inside a transaction: sees the transaction's own creations and
    /// deletions.
    ///
    /// # Errors
    ///
    /// `Err(StmError::Conflict)`; the errors of `fetch` as a failed load (see [`PVar`]'s
    /// *Panics*).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// shelf.create_with_id("bob", 3_i64)?;
    /// let n = shelf.atomically(|tx| shelf.fetch_in::<i64>(tx, "bob")?.read(tx))?;
    /// assert_eq!(n, 3);
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn fetch_in<T: Persistent>(&self, tx: &mut Transaction, pid: &str) -> StmResult<PVar<T>> {
        let not_found = || fail(Error::NotFound { pid: pid.into() });
        let obj = self
            .lookup(pid, false)
            .map_err(fail)?
            .ok_or_else(not_found)?;
        let slot = obj.var.read(tx)?;
        obj.check_slot::<T>(&slot).map_err(fail)?;
        Ok(self.var(obj))
    }

    /// Deletes the object `pid` in a transaction (nothing if there is none): stored when the
    /// transaction commits. Handles to it see [`Error::NotFound`] on their next read.
    ///
    /// # Errors
    ///
    /// `Err(StmError::Conflict)` as [`PVar::write`].
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_persist::shelf::Error;
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// shelf.create_with_id("bob", 0_i64)?;
    /// shelf.atomically(|tx| shelf.delete(tx, "bob"))?;
    /// assert!(matches!(shelf.fetch::<i64>("bob"), Err(Error::NotFound { .. })));
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn delete(&self, tx: &mut Transaction, pid: &str) -> StmResult<()> {
        match self.lookup(pid, false).map_err(fail)? {
            Some(obj) => obj.write(tx, Slot::Absent),
            None => Ok(()),
        }
    }

    /// Runs `f` as a transaction ([`stm_core::atomically`]) and returns once every persistent
    /// object it wrote is durably stored.
    ///
    /// The transaction's changes to this shelf's objects are stored as one atomic batch,
    /// batches in serialization order; concurrent callers share one durable write (group
    /// commit). A transaction that wrote no object returns at once.
    ///
    /// # Retries
    ///
    /// `f` re-runs after a conflict, and blocks in [`retry`](stm_core::retry) until a variable
    /// it read changes, as in `atomically`.
    ///
    /// # Errors
    ///
    /// An object could not be loaded or serialized ([`Error::NotFound`],
    /// [`Error::TypeMismatch`], [`Error::Format`], [`Error::Encode`]): nothing was committed.
    /// The store failed ([`Error::Store`]): the transaction committed in memory but is not
    /// durable, and the shelf refuses further work; reopen it.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// let (a, b) = (shelf.create(10_i64)?, shelf.create(0_i64)?);
    /// shelf.atomically(|tx| {
    ///     let x = a.read(tx)?;
    ///     stmx::guard(x >= 4)?;
    ///     a.write(tx, x - 4)?;
    ///     b.modify(tx, |y| y + 4)
    /// })?;
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn atomically<T>(&self, mut f: impl FnMut(&mut Transaction) -> StmResult<T>) -> Result<T> {
        self.try_atomically(|tx| f(tx).map_err(TxError::from))
    }

    /// [`atomically`](Self::atomically) for a transaction that may abort with an error of its
    /// own ([`TxError::Abort`]): returns it, or a shelf error converted with `From`.
    ///
    /// # Retries
    ///
    /// As [`atomically`](Self::atomically).
    ///
    /// # Errors
    ///
    /// The transaction's abort, or the errors of [`atomically`](Self::atomically).
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_persist::shelf::Error;
    /// use stmx::TxError;
    ///
    /// enum Refused { Poor(i64), Shelf(Error) }
    /// impl From<Error> for Refused {
    ///     fn from(e: Error) -> Self { Refused::Shelf(e) }
    /// }
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// let a = shelf.create(3_i64)?;
    /// let r = shelf.try_atomically(|tx| {
    ///     let x = a.read(tx)?;
    ///     if x < 10 {
    ///         return Err(TxError::Abort(Refused::Poor(x)));
    ///     }
    ///     Ok(a.write(tx, x - 10)?)
    /// });
    /// match r {
    ///     Err(Refused::Poor(x)) => assert_eq!(x, 3),
    ///     Err(Refused::Shelf(e)) => panic!("{e}"),
    ///     Ok(()) => unreachable!(),
    /// }
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn try_atomically<T, E: From<Error>>(
        &self,
        f: impl FnMut(&mut Transaction) -> std::result::Result<T, TxError<E>>,
    ) -> std::result::Result<T, E> {
        let sink = &self.core().sink;
        sink.check()?;
        let _inside = crate::gather::Inside::enter(&sink.inside);
        sink.take_last_seq();
        let value = run(f)?;
        if let Some(seq) = sink.take_last_seq() {
            sink.wait_durable(seq)?;
        }
        Ok(value)
    }

    /// Waits until every change committed so far (by any thread, through `atomically` of
    /// either kind) is durable.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if a write failed.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// let n = shelf.create(0_u64)?;
    /// for _ in 0..10 {
    ///     stmx::atomically(|tx| n.modify(tx, |n| n + 1)); // queued, not waited for
    /// }
    /// shelf.flush()?; // all ten are durable
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn flush(&self) -> Result<()> {
        self.core().sink.flush()
    }

    /// Counters since the shelf was opened.
    ///
    /// # Examples
    ///
    /// See [`ShelfStats`].
    pub fn stats(&self) -> ShelfStats {
        ShelfStats {
            loads: self.core().loads.load(Ordering::Relaxed),
            store_reads: self.core().store_reads.load(Ordering::Relaxed),
            resident: self.core().objects.lock().len(),
            batches: self.core().sink.batches.load(Ordering::Relaxed),
            syncs: self.core().sink.syncs.load(Ordering::Relaxed),
        }
    }
}

thread_local! {
    /// How many shelf transactions this thread is inside (0 or 1: transactions do not nest).
    static INSIDE: Cell<u32> = const { Cell::new(0) };
    /// The error that made the running shelf transaction's attempt fail.
    static STASH: RefCell<Option<Error>> = const { RefCell::new(None) };
}

/// Turns a failure inside a transaction into control flow: under [`Shelf::atomically`], the
/// error is kept and the attempt restarts, and the next attempt aborts with it; under a plain
/// `atomically`, which has no error to return, it panics.
pub(crate) fn fail(e: Error) -> StmError {
    if INSIDE.get() == 0 {
        panic!(
            "stmx::shelf: {e}. (This happened in a plain `atomically`, which cannot return it; \
             run the transaction with `Shelf::atomically` or `Shelf::try_atomically` to get it \
             as an `Err`.)"
        );
    }
    STASH.set(Some(e));
    StmError::Conflict
}

struct Inside;

impl Inside {
    fn enter() -> Self {
        INSIDE.set(INSIDE.get() + 1);
        Inside
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        INSIDE.set(INSIDE.get() - 1);
        STASH.set(None);
    }
}

/// Runs a transaction in which [`fail`] aborts with its error.
pub(crate) fn run<T, E: From<Error>>(
    mut f: impl FnMut(&mut Transaction) -> std::result::Result<T, TxError<E>>,
) -> std::result::Result<T, E> {
    let _inside = Inside::enter();
    stm_core::try_atomically(|tx| {
        if let Some(e) = STASH.take() {
            return Err(TxError::Abort(E::from(e)));
        }
        f(tx)
    })
}

/// A new pid: the time in nanoseconds and 64 random bits, in hex (32 characters).
fn new_pid() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let random = std::collections::hash_map::RandomState::new()
        .hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{nanos:016x}{random:016x}")
}
