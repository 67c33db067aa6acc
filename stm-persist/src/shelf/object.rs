//! Objects in memory: [`Obj`] (one per pid), the per-transaction journal that queues their
//! changes at commit, and the typed handles [`PVar`] and [`PRef`].

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use stm_core::{StmResult, TVar, Transaction};

use super::error::{Error, Result};
use super::sink::Entry;
use super::{Core, Handle, Shelf, fail, record};

/// What a [`PVar`] may hold: a serializable, clonable, shareable value.
///
/// Implemented for every type that qualifies.
///
/// # Examples
///
/// ```
/// use stm_persist::shelf::Persistent;
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Book { title: String, copies: u32 }
///
/// fn storable<T: Persistent>() {}
/// storable::<Book>();
/// storable::<Vec<String>>();
/// ```
pub trait Persistent: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Persistent for T {}

/// A value in memory, of a type known only to the handles that made it.
pub(crate) trait Stored: Any + Send + Sync {
    fn encode(&self, pid: &str) -> Result<Vec<u8>>;
    fn as_any(&self) -> &dyn Any;
    fn type_tag(&self) -> String;
}

impl<T: Persistent> Stored for T {
    fn encode(&self, pid: &str) -> Result<Vec<u8>> {
        record::encode(pid, self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn type_tag(&self) -> String {
        record::type_tag::<T>()
    }
}

/// An object's transactional state.
#[derive(Clone)]
pub(crate) enum Slot {
    /// Unchanged since it was fetched: the record kept in [`Obj::initial`].
    Initial,
    /// Deleted, or created in a transaction that has not committed yet.
    Absent,
    Value(Arc<dyn Stored>),
}

enum Initial {
    /// The stored record, not decoded yet.
    Raw(Vec<u8>),
    Decoded(Arc<dyn Stored>),
    /// The object was created in memory.
    None,
}

/// One persistent object in memory. The shelf's identity map points to it weakly: it lives
/// while a handle, a running transaction or a queued change holds it.
pub(crate) struct Obj {
    pid: Box<str>,
    pub(crate) core: Arc<Core>,
    pub(crate) var: TVar<Slot>,
    initial: Mutex<Initial>,
}

impl Obj {
    pub(crate) fn stored(core: Arc<Core>, pid: &str, record: Vec<u8>) -> Self {
        Obj {
            pid: pid.into(),
            core,
            var: TVar::new(Slot::Initial),
            initial: Mutex::new(Initial::Raw(record)),
        }
    }

    pub(crate) fn absent(core: Arc<Core>, pid: &str) -> Self {
        Obj {
            pid: pid.into(),
            core,
            var: TVar::new(Slot::Absent),
            initial: Mutex::new(Initial::None),
        }
    }

    pub(crate) fn pid(&self) -> &str {
        &self.pid
    }

    /// The fetched value, decoded as a `T` on first use (a *load*).
    fn initial<T: Persistent>(&self) -> Result<Arc<dyn Stored>> {
        let mut initial = self.initial.lock();
        match &*initial {
            Initial::Decoded(v) => Ok(Arc::clone(v)),
            Initial::Raw(bytes) => {
                let value: Arc<dyn Stored> = Arc::new(record::decode::<T>(&self.pid, bytes)?);
                self.core.loads.fetch_add(1, Ordering::Relaxed);
                *initial = Initial::Decoded(Arc::clone(&value));
                Ok(value)
            }
            Initial::None => Err(Error::Format {
                pid: self.pid.to_string(),
                detail: "an object created in memory has no stored record".into(),
            }),
        }
    }

    /// `Ok` if the committed state is a `T` (without decoding it).
    pub(crate) fn check<T: Persistent>(&self) -> Result<()> {
        self.check_slot::<T>(&self.var.read_atomic())
    }

    /// `Ok` if `slot`, this object's state, is a `T` (without decoding it).
    pub(crate) fn check_slot<T: Persistent>(&self, slot: &Slot) -> Result<()> {
        match slot {
            Slot::Absent => Err(Error::NotFound {
                pid: self.pid.to_string(),
            }),
            Slot::Value(v) => self.check_value::<T>(&**v).map(drop),
            Slot::Initial => match &*self.initial.lock() {
                Initial::Raw(bytes) => {
                    record::check_tag::<T>(&self.pid, record::tag(&self.pid, bytes)?)
                }
                Initial::Decoded(v) => self.check_value::<T>(&**v).map(drop),
                Initial::None => Ok(()),
            },
        }
    }

    fn check_value<'v, T: Persistent>(&self, v: &'v dyn Stored) -> Result<&'v T> {
        v.as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| Error::TypeMismatch {
                pid: self.pid.to_string(),
                stored: v.type_tag(),
                expected: record::type_tag::<T>(),
            })
    }

    /// Reads the object as a `T` in `tx`.
    fn read_with<T: Persistent, R>(
        self: &Arc<Self>,
        tx: &mut Transaction,
        f: impl FnOnce(&T) -> R,
    ) -> StmResult<R> {
        note(tx, self, false);
        let value = match self.var.read(tx)? {
            Slot::Value(v) => v,
            Slot::Initial => self.initial::<T>().map_err(fail)?,
            Slot::Absent => {
                return Err(fail(Error::NotFound {
                    pid: self.pid.to_string(),
                }));
            }
        };
        Ok(f(self.check_value::<T>(&*value).map_err(fail)?))
    }

    /// Sets the state in `tx`; queued for storing when `tx` commits.
    pub(crate) fn write(self: &Arc<Self>, tx: &mut Transaction, slot: Slot) -> StmResult<()> {
        note(tx, self, true);
        self.var.write(tx, slot)
    }
}

impl Drop for Obj {
    fn drop(&mut self) {
        let mut objects = self.core.objects.lock();
        if let Some(weak) = objects.get(&*self.pid)
            && std::ptr::eq(weak.as_ptr(), self)
        {
            objects.remove(&*self.pid);
            self.core.evicted(&self.pid);
        }
    }
}

/// What one transaction attempt did with one shelf's objects.
struct Journal {
    core: *const Core,
    touched: RefCell<Vec<Arc<Obj>>>,
    written: RefCell<Vec<Arc<Obj>>>,
}

thread_local! {
    /// The journals of the attempt running on this thread, one per shelf it touched.
    static JOURNALS: RefCell<Vec<Rc<Journal>>> = const { RefCell::new(Vec::new()) };
}

/// Owns a journal from the attempt's before-commit hook: dropping it (the hook ran, or the
/// attempt ended without committing, or the `or_else` branch that created it was rolled back)
/// takes the journal off this thread.
struct Armed(Rc<Journal>);

impl Drop for Armed {
    fn drop(&mut self) {
        JOURNALS.with_borrow_mut(|journals| journals.retain(|j| !Rc::ptr_eq(j, &self.0)));
    }
}

/// Records that `tx` touched (or wrote) `obj`. The first touch of a shelf in an attempt
/// registers the before-commit hook that turns the journal into a queued batch.
fn note(tx: &mut Transaction, obj: &Arc<Obj>, wrote: bool) {
    let core = Arc::as_ptr(&obj.core);
    let journal = JOURNALS.with_borrow(|js| js.iter().find(|j| j.core == core).cloned());
    let journal = journal.unwrap_or_else(|| {
        let journal = Rc::new(Journal {
            core,
            touched: RefCell::new(Vec::new()),
            written: RefCell::new(Vec::new()),
        });
        JOURNALS.with_borrow_mut(|js| js.push(Rc::clone(&journal)));
        let armed = Armed(Rc::clone(&journal));
        tx.before_commit(move |tx| seal(armed, tx));
        journal
    });
    let mut list = if wrote {
        journal.written.borrow_mut()
    } else {
        journal.touched.borrow_mut()
    };
    if !list.last().is_some_and(|last| Arc::ptr_eq(last, obj)) {
        list.push(Arc::clone(obj));
    }
}

/// The before-commit hook: encodes what the attempt wrote (as it now stands in the attempt,
/// so writes rolled back by `or_else` store the committed value again, which changes nothing),
/// queues it from a `while_committing` hook, in serialization order, and keeps every object
/// touched alive until the commit is over.
fn seal(armed: Armed, tx: &mut Transaction) -> StmResult<()> {
    let touched = armed.0.touched.take();
    let mut written = armed.0.written.take();
    drop(armed);
    written.sort_by_key(Arc::as_ptr);
    written.dedup_by(|a, b| Arc::ptr_eq(a, b));
    let mut entries = Vec::with_capacity(written.len());
    for obj in written {
        let body = match obj.var.read(tx)? {
            Slot::Value(v) => Some(v.encode(obj.pid()).map_err(fail)?),
            Slot::Absent => None,
            Slot::Initial => continue,
        };
        entries.push(Entry { obj, body });
    }
    if !touched.is_empty() {
        tx.after_commit(move || drop(touched));
    }
    if let Some(first) = entries.first() {
        let sink = Arc::clone(&first.obj.core.sink);
        tx.while_committing(move |_| sink.enqueue(entries));
    }
    Ok(())
}

/// A handle to a persistent transactional variable: an object with a persistent id (its
/// *pid*) whose committed value is stored on a [`Shelf`].
///
/// Inside transactions it has the API of a [`TVar`] (`read`, `read_with`, `write`, `modify`,
/// `replace`) and composes with every other transactional value. The object is *loaded*
/// (its record decoded) the first time a transaction reads it; a write needs no load. Handles
/// are cheap to clone and all point to the same object: a shelf keeps one object per pid in
/// memory, and drops it once no handle, transaction or unstored change holds it.
///
/// Writes are stored when the transaction commits: [`Shelf::atomically`] waits until they are
/// durable, plain [`atomically`](stm_core::atomically) queues them without waiting
/// ([`Shelf::flush`] waits).
///
/// # Panics
///
/// A read that cannot load the object (deleted, of another type, unreadable) makes the
/// transaction fail. Under [`Shelf::atomically`] or [`Shelf::try_atomically`] that is an
/// `Err`; a plain `atomically` has no error to return, so there it panics, with the pid and
/// the cause in the message.
///
/// # Examples
///
/// ```
/// use stm_persist::shelf::{PVar, Shelf};
///
/// let dir = tempfile::tempdir().unwrap();
/// let shelf = Shelf::open(dir.path().join("app.shelf"))?;
/// let hits: PVar<u64> = shelf.create_with_id("hits", 0)?;
/// shelf.atomically(|tx| hits.modify(tx, |n| n + 1))?;
/// stmx::atomically(|tx| hits.modify(tx, |n| n + 1)); // stored too, without waiting
/// shelf.flush()?;
/// drop((hits, shelf));
///
/// let shelf = Shelf::open(dir.path().join("app.shelf"))?;
/// let hits = shelf.fetch::<u64>("hits")?;
/// assert_eq!(shelf.atomically(|tx| hits.read(tx))?, 2);
/// # Ok::<(), stm_persist::shelf::Error>(())
/// ```
pub struct PVar<T> {
    obj: Arc<Obj>,
    handle: Arc<Handle>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for PVar<T> {
    fn clone(&self) -> Self {
        PVar {
            obj: Arc::clone(&self.obj),
            handle: Arc::clone(&self.handle),
            _type: PhantomData,
        }
    }
}

impl<T> fmt::Debug for PVar<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PVar")
            .field("pid", &self.obj.pid())
            .finish()
    }
}

impl<T: Persistent> PVar<T> {
    pub(crate) fn from_obj(obj: Arc<Obj>, handle: Arc<Handle>) -> Self {
        PVar {
            obj,
            handle,
            _type: PhantomData,
        }
    }

    /// The object's persistent id.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// let bob = shelf.create_with_id("bob", 10_i64)?;
    /// assert_eq!(bob.pid(), "bob");
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn pid(&self) -> &str {
        self.obj.pid()
    }

    /// Reads the value as the transaction sees it, cloning it; loads the object on its first
    /// read.
    ///
    /// # Errors
    ///
    /// `Err(StmError::Conflict)` as [`TVar::read`]; a failed load also surfaces as a conflict
    /// that [`Shelf::atomically`] turns into its error (see [`PVar`]'s *Panics*).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// let n = shelf.create(5_u32)?;
    /// assert_eq!(shelf.atomically(|tx| n.read(tx))?, 5);
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn read(&self, tx: &mut Transaction) -> StmResult<T> {
        self.obj.read_with(tx, T::clone)
    }

    /// Applies `f` to the value as the transaction sees it, without cloning it.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// let names = shelf.create(vec!["ann".to_string(), "bob".to_string()])?;
    /// assert_eq!(shelf.atomically(|tx| names.read_with(tx, |v| v.len()))?, 2);
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn read_with<R>(&self, tx: &mut Transaction, f: impl FnOnce(&T) -> R) -> StmResult<R> {
        self.obj.read_with(tx, f)
    }

    /// Sets the value; stored when the transaction commits. Writing a deleted object brings
    /// it back.
    ///
    /// # Errors
    ///
    /// `Err(StmError::Conflict)` as [`TVar::write`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// let n = shelf.create(5_u32)?;
    /// shelf.atomically(|tx| n.write(tx, 6))?; // durable when this returns
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn write(&self, tx: &mut Transaction, value: T) -> StmResult<()> {
        self.obj.write(tx, Slot::Value(Arc::new(value)))
    }

    /// Replaces the value with `f(value)`.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// let n = shelf.create(5_u32)?;
    /// shelf.atomically(|tx| n.modify(tx, |n| n * 2))?;
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn modify(&self, tx: &mut Transaction, f: impl FnOnce(T) -> T) -> StmResult<()> {
        let value = self.read(tx)?;
        self.write(tx, f(value))
    }

    /// Sets the value and returns the one it replaced.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// let n = shelf.create(5_u32)?;
    /// assert_eq!(shelf.atomically(|tx| n.replace(tx, 9))?, 5);
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn replace(&self, tx: &mut Transaction, value: T) -> StmResult<T> {
        let old = self.read(tx)?;
        self.write(tx, value)?;
        Ok(old)
    }

    /// Reads the committed value in a transaction of its own.
    ///
    /// # Errors
    ///
    /// As [`Shelf::atomically`]: the object cannot be loaded.
    ///
    /// # Panics
    ///
    /// If called inside a running transaction.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// let n = shelf.create(5_u32)?;
    /// assert_eq!(n.read_atomic()?, 5);
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn read_atomic(&self) -> Result<T> {
        super::run(|tx| self.read(tx).map_err(Into::into))
    }

    /// A serializable reference to this object, to store inside other objects.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// let bob = shelf.create_with_id("bob", 10_i64)?;
    /// assert_eq!(bob.pref().pid(), "bob");
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn pref(&self) -> PRef<T> {
        PRef::new(self.pid())
    }

    /// `true` if both handles point to the same object (the same pid on the same shelf).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// let bob = shelf.create_with_id("bob", 10_i64)?;
    /// assert!(stm_persist::shelf::PVar::ref_eq(&bob, &shelf.fetch::<i64>("bob")?));
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn ref_eq(a: &PVar<T>, b: &PVar<T>) -> bool {
        Arc::ptr_eq(&a.obj, &b.obj)
    }
}

/// A serializable, lazy reference to a persistent object: it stores the pid, not the object.
/// An object that holds `PRef`s is stored with the ids of the objects it refers to, and
/// loading it loads none of them; [`get`](PRef::get) or [`resolve`](PRef::resolve) fetches
/// the target on first use (md.stm's lazy references).
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use stm_persist::shelf::{PRef, Shelf};
///
/// #[derive(Clone, Serialize, Deserialize)]
/// struct Loan { book: PRef<String>, member: String }
///
/// let dir = tempfile::tempdir().unwrap();
/// let shelf = Shelf::open(dir.path().join("s"))?;
/// let book = shelf.create_with_id("dune", "Dune".to_string())?;
/// let loan = shelf.create(Loan { book: book.pref(), member: "ann".into() })?;
/// let title = shelf.atomically(|tx| {
///     let book = loan.read(tx)?.book.resolve(tx, &shelf)?;
///     book.read(tx)
/// })?;
/// assert_eq!(title, "Dune");
/// # Ok::<(), stm_persist::shelf::Error>(())
/// ```
pub struct PRef<T> {
    pid: String,
    _type: PhantomData<fn() -> T>,
}

impl<T> PRef<T> {
    /// A reference to the object `pid` (which need not exist yet).
    ///
    /// # Examples
    ///
    /// ```
    /// let r = stm_persist::shelf::PRef::<u64>::new("counter");
    /// assert_eq!(r.pid(), "counter");
    /// ```
    pub fn new(pid: impl Into<String>) -> Self {
        PRef {
            pid: pid.into(),
            _type: PhantomData,
        }
    }

    /// The pid referred to.
    ///
    /// # Examples
    ///
    /// ```
    /// let r = stm_persist::shelf::PRef::<u64>::new("counter");
    /// assert_eq!(r.pid(), "counter");
    /// ```
    pub fn pid(&self) -> &str {
        &self.pid
    }
}

impl<T: Persistent> PRef<T> {
    /// Fetches the target from `shelf`: [`Shelf::fetch`].
    ///
    /// # Errors
    ///
    /// As [`Shelf::fetch`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = stm_persist::shelf::Shelf::open(dir.path().join("s"))?;
    /// let r = shelf.create(7_u8)?.pref();
    /// assert_eq!(r.get(&shelf)?.read_atomic()?, 7);
    /// # Ok::<(), stm_persist::shelf::Error>(())
    /// ```
    pub fn get(&self, shelf: &Shelf) -> Result<PVar<T>> {
        shelf.fetch(&self.pid)
    }

    /// Fetches the target inside a transaction: [`Shelf::fetch_in`].
    ///
    /// # Errors
    ///
    /// As [`Shelf::fetch_in`].
    ///
    /// # Examples
    ///
    /// See [`PRef`].
    pub fn resolve(&self, tx: &mut Transaction, shelf: &Shelf) -> StmResult<PVar<T>> {
        shelf.fetch_in(tx, &self.pid)
    }
}

impl<T> Clone for PRef<T> {
    fn clone(&self) -> Self {
        PRef::new(self.pid.clone())
    }
}

impl<T> fmt::Debug for PRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PRef").field(&self.pid).finish()
    }
}

impl<T> PartialEq for PRef<T> {
    fn eq(&self, other: &Self) -> bool {
        self.pid == other.pid
    }
}

impl<T> Eq for PRef<T> {}

impl<T> Hash for PRef<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.pid.hash(state);
    }
}

impl<T> Serialize for PRef<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.pid.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for PRef<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(deserializer).map(PRef::new)
    }
}
