//! [`Store`]: a state, its command log, its snapshots.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use serde::de::DeserializeOwned;
use stm_core::{StmResult, Transaction, TxError, atomically, try_atomically};

use crate::backend::{Append, Backend};
use crate::dir::DirBackend;
use crate::error::{Error, ExecuteError, Result};
use crate::format::{self, Kind};

/// The application state a [`Store`] keeps: `TVar`s, containers, a `#[transactional]` struct.
///
/// `image` and `from_image` convert it to and from a serializable snapshot. The image must be
/// complete: `from_image(image(s))` must behave exactly like `s` for every command.
///
/// # Examples
///
/// ```
/// use stm_persist::State;
/// use stmx::{StmResult, TVar, Transaction};
///
/// struct Counter(TVar<u64>);
///
/// impl State for Counter {
///     type Image = u64;
///     fn image(&self, tx: &mut Transaction) -> StmResult<u64> {
///         self.0.read(tx)
///     }
///     fn from_image(n: u64) -> Self {
///         Counter(TVar::new(n))
///     }
/// }
/// ```
pub trait State: Send + Sync + 'static {
    /// The serializable form of the state.
    type Image: Serialize + DeserializeOwned;

    /// Reads the whole state inside a transaction (a consistent snapshot).
    ///
    /// # Errors
    ///
    /// Transaction control flow only (`?` on `TVar` reads).
    fn image(&self, tx: &mut Transaction) -> StmResult<Self::Image>;

    /// Rebuilds the state from an image.
    fn from_image(image: Self::Image) -> Self;
}

/// A named, deterministic change to a [`State`]: what the log records.
///
/// Commands are usually an enum with serde's derives. `apply` runs inside a transaction; it
/// must depend only on the command and the state it reads (no clocks, no randomness, no other
/// variables), because replaying the log re-runs it. It may reject the command with
/// `Err(TxError::Abort(e))`: nothing changes and nothing is logged.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use stm_persist::{Command, State};
/// use stmx::{StmResult, TVar, Transaction, TxError};
///
/// struct Counter(TVar<u64>);
/// # impl State for Counter {
/// #     type Image = u64;
/// #     fn image(&self, tx: &mut Transaction) -> StmResult<u64> { self.0.read(tx) }
/// #     fn from_image(n: u64) -> Self { Counter(TVar::new(n)) }
/// # }
///
/// #[derive(Serialize, Deserialize)]
/// enum Op {
///     Add(u64),
///     Take(u64),
/// }
///
/// impl Command for Op {
///     type State = Counter;
///     type Output = u64;
///     type Error = String;
///     fn apply(&self, c: &Counter, tx: &mut Transaction) -> Result<u64, TxError<String>> {
///         let n = c.0.read(tx)?;
///         let n = match *self {
///             Op::Add(k) => n + k,
///             Op::Take(k) if k <= n => n - k,
///             Op::Take(k) => return Err(TxError::Abort(format!("only {n}, not {k}"))),
///         };
///         c.0.write(tx, n)?;
///         Ok(n)
///     }
/// }
/// assert_eq!(Op::Take(1).name(), "Take");
/// ```
pub trait Command: Serialize + DeserializeOwned + 'static {
    /// The state commands change.
    type State: State;
    /// What `apply` returns to the caller of [`Store::execute`].
    type Output;
    /// Why `apply` may reject a command.
    type Error;

    /// Applies the command to `state` inside `tx`.
    ///
    /// # Errors
    ///
    /// `Err(TxError::Abort(e))` rejects the command; `Err(TxError::Stm(_))` is transaction
    /// control flow (`?` on `TVar` calls, `retry`).
    fn apply(
        &self,
        state: &Self::State,
        tx: &mut Transaction,
    ) -> Result<Self::Output, TxError<Self::Error>>;

    /// The name written into the log record and checked against the allowlist: by default
    /// the enum variant's name (or the struct's name) as serde sees it.
    fn name(&self) -> &'static str {
        format::command_name(self).unwrap_or_else(std::any::type_name::<Self>)
    }
}

/// How a store shares its log.
///
/// # Examples
///
/// ```
/// use stm_persist::Mode;
///
/// assert_ne!(Mode::Exclusive, Mode::Shared);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// This store is the only appender: commands commit in memory, are logged in commit order
    /// and are group-committed (one sync for every record ready at that moment).
    Exclusive,
    /// Several stores (processes, machines) append to the log: each command is appended with
    /// compare-and-append at the next position; a store that loses the race rolls forward and
    /// re-runs its command (SPTM's optimistic protocol).
    Shared,
}

/// Options for opening a [`Store`]: the transaction checker's allowlist and the follower.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stm_persist::Options;
///
/// let options = Options::new()
///     .allow(["Deposit", "Withdraw"])
///     .follow(Duration::from_millis(50));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default)]
pub struct Options {
    allow: Option<HashSet<String>>,
    follow: Option<Duration>,
}

impl Options {
    /// No allowlist (the command enum alone decides what decodes), no follower.
    pub fn new() -> Self {
        Self::default()
    }

    /// SPTM's transaction checker: replay accepts only records naming one of `names`. A
    /// record naming anything else stops the open (or roll-forward) with
    /// [`Error::UnknownCommand`], naming the record and its position; nothing past it is
    /// applied.
    pub fn allow<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.allow = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// For shared logs: a background thread keeps this replica current, rolling forward
    /// whenever others append (checking at least every `interval`).
    pub fn follow(mut self, interval: Duration) -> Self {
        self.follow = Some(interval);
        self
    }

    /// Opens an exclusive store in directory `path`: see [`Store::open`].
    ///
    /// # Errors
    ///
    /// As [`Store::open`].
    pub fn open<C: Command>(
        self,
        path: impl AsRef<Path>,
        init: impl FnOnce() -> C::State,
    ) -> Result<Store<C>> {
        self.open_backend(DirBackend::open_exclusive(path)?, Mode::Exclusive, init)
    }

    /// Opens a participant of the shared log in directory `path`: see [`Store::open_shared`].
    ///
    /// # Errors
    ///
    /// As [`Store::open`].
    pub fn open_shared<C: Command>(
        self,
        path: impl AsRef<Path>,
        init: impl FnOnce() -> C::State,
    ) -> Result<Store<C>> {
        self.open_backend(DirBackend::open_shared(path)?, Mode::Shared, init)
    }

    /// Opens a store over any backend. Use [`Mode::Exclusive`] only when no other store
    /// appends to the same log.
    ///
    /// # Errors
    ///
    /// As [`Store::open`].
    pub fn open_backend<C: Command>(
        self,
        backend: impl Backend,
        mode: Mode,
        init: impl FnOnce() -> C::State,
    ) -> Result<Store<C>> {
        let backend: Box<dyn Backend> = Box::new(backend);
        let (start, state) = load_snapshot::<C>(&*backend, init)?;
        let inner = Arc::new(Inner {
            state,
            backend,
            mode,
            allow: self.allow,
            applied: AtomicU64::new(start),
            queue: Mutex::new(Queue {
                next: start + 1,
                records: Vec::new(),
            }),
            flush: Mutex::new(Flush {
                durable: start,
                flushing: false,
                failed: false,
            }),
            flushed: Condvar::new(),
            appender: Mutex::new(()),
            poisoned: AtomicBool::new(false),
            inside: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            follower_error: Mutex::new(None),
            _commands: PhantomData,
        });
        let end = inner.roll_forward()?;
        if mode == Mode::Exclusive {
            inner.queue.lock().next = end;
            inner.flush.lock().durable = end - 1;
        }
        let follower = match (mode, self.follow) {
            (Mode::Shared, Some(interval)) => {
                Some(spawn_follower(Arc::downgrade(&inner), interval))
            }
            _ => None,
        };
        Ok(Store { inner, follower })
    }
}

/// Loads the newest readable snapshot, or `init()` when there is none.
fn load_snapshot<C: Command>(
    backend: &dyn Backend,
    init: impl FnOnce() -> C::State,
) -> Result<(u64, C::State)> {
    let mut damaged = None;
    for seq in backend.snapshots()?.into_iter().rev() {
        let (source, bytes) = backend.load_snapshot(seq)?;
        match format::decode_snapshot::<<C::State as State>::Image>(&bytes, &source) {
            Ok((at, image)) => return Ok((at, C::State::from_image(image))),
            Err(e @ Error::UnsupportedFormat { .. }) => return Err(e),
            // Fall back to an older snapshot; if the log no longer reaches back to it, replay
            // reports that.
            Err(e) => damaged = Some(e),
        }
    }
    match damaged {
        Some(e) if backend.scan(1, &mut |_, _| Ok(false)).is_err() => Err(e),
        _ => Ok((0, init())),
    }
}

/// How long a group commit waits for callers that are still running their transaction.
const GATHER_FOR: Duration = Duration::from_micros(100);

/// Counts a caller in [`Inner::inside`] while it is inside `execute`.
struct Inside<'a>(&'a AtomicUsize);

impl<'a> Inside<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Inside(count)
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The next records to append, in commit order (exclusive mode).
struct Queue {
    /// The position the next committed command gets.
    next: u64,
    records: Vec<Vec<u8>>,
}

/// The group commit's state (exclusive mode).
struct Flush {
    /// Every record at or before this position is durable.
    durable: u64,
    /// A caller is writing a batch.
    flushing: bool,
    failed: bool,
}

struct Inner<C: Command> {
    state: C::State,
    backend: Box<dyn Backend>,
    mode: Mode,
    allow: Option<HashSet<String>>,
    /// The last log position applied to `state` (shared mode; at open, exclusive mode too).
    applied: AtomicU64,
    queue: Mutex<Queue>,
    flush: Mutex<Flush>,
    flushed: Condvar,
    /// One append or roll-forward at a time in this store (shared mode, and snapshots).
    appender: Mutex<()>,
    poisoned: AtomicBool,
    /// Exclusive mode: callers inside `execute`.
    inside: AtomicUsize,
    /// Exclusive mode: how many records `queue` holds (read without its lock).
    queued: AtomicUsize,
    stop: AtomicBool,
    follower_error: Mutex<Option<Error>>,
    _commands: PhantomData<fn() -> C>,
}

/// Why a shared-mode attempt did not commit.
enum Failed<E> {
    Rejected(E),
    Lost,
    Store(Error),
}

/// Re-tags a command's transaction error.
fn rejected<E, F>(e: TxError<E>, wrap: impl FnOnce(E) -> F) -> TxError<F> {
    match e {
        TxError::Abort(e) => TxError::Abort(wrap(e)),
        TxError::Stm(s) => TxError::Stm(s),
    }
}

impl<C: Command> Inner<C> {
    fn check_healthy(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        if let Some(e) = self.follower_error.lock().take() {
            return Err(e);
        }
        Ok(())
    }

    /// Exclusive mode, inside `while_committing`: gives the record the next position.
    fn enqueue(&self, mut record: Vec<u8>) -> u64 {
        let mut q = self.queue.lock();
        let seq = q.next;
        q.next += 1;
        format::set_seq(&mut record, seq);
        q.records.push(record);
        self.queued.store(q.records.len(), Ordering::Release);
        seq
    }

    /// Exclusive mode: returns once record `seq` is durable, writing a batch if nobody is.
    fn wait_durable(&self, seq: u64) -> Result<()> {
        let mut f = self.flush.lock();
        loop {
            if f.durable >= seq {
                return Ok(());
            }
            if f.failed {
                return Err(Error::Poisoned);
            }
            if f.flushing {
                self.flushed.wait(&mut f);
                continue;
            }
            f.flushing = true;
            let (first, batch) = parking_lot::MutexGuard::unlocked(&mut f, || {
                // Group commit: callers inside `execute` without a queued record (running their
                // transaction, or just woken from the last sync and about to return and come
                // back) will queue one in a moment; wait for them, briefly, so that one sync
                // covers them too. A lone caller never waits.
                let deadline = Instant::now() + GATHER_FOR;
                // (An atomic count, not the queue's lock: enqueuers hold the commit sequencer.)
                while self.queued.load(Ordering::Acquire) < self.inside.load(Ordering::Acquire)
                    && Instant::now() < deadline
                {
                    std::thread::yield_now();
                }
                let mut q = self.queue.lock();
                let first = q.next - q.records.len() as u64;
                self.queued.store(0, Ordering::Release);
                (first, std::mem::take(&mut q.records))
            });
            let written = if batch.is_empty() {
                Ok(Append::Appended)
            } else {
                parking_lot::MutexGuard::unlocked(&mut f, || self.backend.append(first, &batch))
            };
            f.flushing = false;
            self.flushed.notify_all();
            match written {
                Ok(Append::Appended) => f.durable = first + batch.len() as u64 - 1,
                Ok(Append::Conflict { next }) => {
                    f.failed = true;
                    self.poisoned.store(true, Ordering::Release);
                    return Err(Error::Backend(format!(
                        "another process appended to an exclusive log (expected position \
                         {first}, found {next})"
                    )));
                }
                Err(e) => {
                    f.failed = true;
                    self.poisoned.store(true, Ordering::Release);
                    return Err(e);
                }
            }
        }
    }

    /// Applies the records after `applied`, in order; returns the position after the last.
    fn roll_forward(&self) -> Result<u64> {
        let from = self.applied.load(Ordering::Acquire) + 1;
        self.backend.scan(from, &mut |pos, bytes| {
            self.apply_record(pos, bytes)?;
            self.applied.store(pos, Ordering::Release);
            Ok(true)
        })
    }

    /// Replays one record: the transaction checker, decoding, then `apply`.
    fn apply_record(&self, pos: u64, bytes: &[u8]) -> Result<()> {
        let view = format::view_record(bytes, pos)?;
        if let Some(allow) = &self.allow
            && !allow.contains(view.name)
        {
            return Err(Error::UnknownCommand {
                position: pos,
                name: view.name.to_string(),
            });
        }
        let cmd: C = format::decode_body(&view).map_err(|e| match e {
            Error::Corrupt { detail, .. } if self.allow.is_none() => Error::UnknownCommand {
                position: pos,
                name: format!("{} ({detail})", view.name),
            },
            e => e,
        })?;
        let failure = |detail: &str| Error::Replay {
            position: pos,
            name: view.name.to_string(),
            detail: detail.to_string(),
        };
        // A logged command committed once; replayed on the same state it must commit again,
        // without blocking: a retry here would wait forever.
        let outcome = try_atomically(|tx| {
            tx.or_else(
                |tx| match cmd.apply(&self.state, tx) {
                    Ok(_) => Ok(Ok(())),
                    Err(TxError::Abort(_)) => Ok(Err("apply rejected it")),
                    Err(TxError::Stm(e)) => Err(e),
                },
                |_| Ok(Err("apply called retry")),
            )?
            .map_err(TxError::Abort)
        });
        outcome.map_err(failure)
    }

    /// Shared mode: SPTM's optimistic append. Holds `appender`.
    fn execute_shared(
        &self,
        cmd: &C,
        record: &mut Vec<u8>,
    ) -> Result<C::Output, ExecuteError<C::Error>> {
        let _one = self.appender.lock();
        loop {
            self.roll_forward()?;
            let n = self.applied.load(Ordering::Acquire) + 1;
            format::set_seq(record, n);
            let landed = Cell::new(false);
            let attempt = try_atomically(|tx| {
                let out = cmd
                    .apply(&self.state, tx)
                    .map_err(|e| rejected(e, Failed::Rejected))?;
                // No other writer of the state runs while we hold `appender`, so this attempt
                // commits unless the command itself conflicts with outside code; a re-run must
                // not append twice.
                if !landed.get() {
                    match self.backend.append(n, std::slice::from_ref(&*record)) {
                        Ok(Append::Appended) => landed.set(true),
                        Ok(Append::Conflict { .. }) => return Err(TxError::Abort(Failed::Lost)),
                        Err(e) => return Err(TxError::Abort(Failed::Store(e))),
                    }
                }
                Ok(out)
            });
            match attempt {
                Ok(out) => {
                    self.applied.store(n, Ordering::Release);
                    return Ok(out);
                }
                Err(Failed::Lost) => continue,
                Err(Failed::Rejected(e)) => return Err(ExecuteError::Rejected(e)),
                Err(Failed::Store(e)) => return Err(ExecuteError::Store(e)),
            }
        }
    }
}

fn spawn_follower<C: Command>(inner: Weak<Inner<C>>, interval: Duration) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("stmx-persist-follower".into())
        .spawn(move || {
            while let Some(inner) = inner.upgrade() {
                if inner.stop.load(Ordering::Acquire) {
                    break;
                }
                let next = inner.applied.load(Ordering::Acquire) + 1;
                let result = inner
                    .backend
                    .wait_for_append(next, interval)
                    .and_then(|()| {
                        let _one = inner.appender.lock();
                        inner.roll_forward()
                    });
                if let Err(e) = result {
                    *inner.follower_error.lock() = Some(e);
                    std::thread::sleep(interval);
                }
            }
        })
        .expect("spawning the follower thread")
}

/// A transactional state made durable by a log of the commands that changed it.
///
/// See the [crate documentation](crate) for the model and guarantees.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use stm_persist::{Command, State, Store};
/// use stmx::{StmResult, TVar, Transaction, TxError};
///
/// struct Counter(TVar<u64>);
///
/// impl State for Counter {
///     type Image = u64;
///     fn image(&self, tx: &mut Transaction) -> StmResult<u64> { self.0.read(tx) }
///     fn from_image(n: u64) -> Self { Counter(TVar::new(n)) }
/// }
///
/// #[derive(Serialize, Deserialize)]
/// struct Add(u64);
///
/// impl Command for Add {
///     type State = Counter;
///     type Output = u64;
///     type Error = std::convert::Infallible;
///     fn apply(&self, c: &Counter, tx: &mut Transaction) -> Result<u64, TxError<Self::Error>> {
///         Ok(c.0.modify(tx, |n| n + self.0).and_then(|()| c.0.read(tx))?)
///     }
/// }
///
/// let dir = tempfile::tempdir().unwrap();
/// {
///     let store = Store::<Add>::open(dir.path(), || Counter(TVar::new(0)))?;
///     assert_eq!(store.execute(Add(2)).unwrap(), 2); // durable when it returns
///     store.execute(Add(3)).unwrap();
/// }
/// let store = Store::<Add>::open(dir.path(), || Counter(TVar::new(0)))?;
/// assert_eq!(store.read(|c, tx| c.0.read(tx)), 5); // replayed from the log
/// # Ok::<(), stm_persist::Error>(())
/// ```
pub struct Store<C: Command> {
    inner: Arc<Inner<C>>,
    follower: Option<JoinHandle<()>>,
}

impl<C: Command> fmt::Debug for Store<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("mode", &self.inner.mode)
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}

impl<C: Command> Store<C> {
    /// Opens (or creates) the store in directory `path`, owned by this store alone: loads the
    /// newest valid snapshot (or `init()` if there is none), replays the log after it, cutting
    /// a torn tail, and is ready.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if another store has the directory open; I/O errors;
    /// [`Error::Corrupt`], [`Error::UnsupportedFormat`], [`Error::UnknownCommand`] or
    /// [`Error::Replay`] for a log this program cannot replay.
    pub fn open(path: impl AsRef<Path>, init: impl FnOnce() -> C::State) -> Result<Self> {
        Options::new().open(path, init)
    }

    /// Opens one participant of a log shared by several stores or processes on this machine.
    /// See [`Mode::Shared`].
    ///
    /// # Errors
    ///
    /// As [`open`](Store::open); [`Error::Locked`] if an exclusive store has it open.
    pub fn open_shared(path: impl AsRef<Path>, init: impl FnOnce() -> C::State) -> Result<Self> {
        Options::new().open_shared(path, init)
    }

    /// The state, to read or combine with other transactional code. Change it only through
    /// [`execute`](Store::execute) and [`record`](Store::record): other writes are not logged
    /// and are lost on restart.
    pub fn state(&self) -> &C::State {
        &self.inner.state
    }

    /// Runs `f` as a read-only transaction over the state: nothing is logged, nothing waits
    /// for the disk. It may see commands that committed but whose `execute` has not returned
    /// yet (they are being written).
    pub fn read<R>(&self, mut f: impl FnMut(&C::State, &mut Transaction) -> StmResult<R>) -> R {
        atomically(|tx| f(&self.inner.state, tx))
    }

    /// Runs `cmd` in a transaction and returns once its log record is durable.
    ///
    /// Exclusive stores log records in commit order and group-commit them: concurrent callers
    /// share one sync. Shared stores append with compare-and-append, rolling forward and
    /// re-running the command when another participant appended first.
    ///
    /// # Errors
    ///
    /// [`ExecuteError::Rejected`] if `apply` rejected the command (nothing logged);
    /// [`ExecuteError::Store`] for a store failure. After a failed write, an exclusive store
    /// is [`Error::Poisoned`]: its memory may hold a command the log lacks.
    pub fn execute(&self, cmd: C) -> Result<C::Output, ExecuteError<C::Error>> {
        self.execute_as(Kind::Command, cmd)
    }

    /// SPTM's `record-transaction`: for commands that commute with every other command (an
    /// append to a results list, a counter increment). In a shared log the record is appended
    /// at the end without a conflict check or re-run, and applied when this replica rolls
    /// forward to it; in an exclusive store it is the same as [`execute`](Store::execute).
    ///
    /// The command is first tried against the current state: if `apply` rejects it, nothing is
    /// logged.
    ///
    /// # Errors
    ///
    /// As [`execute`](Store::execute).
    pub fn record(&self, cmd: C) -> Result<(), ExecuteError<C::Error>> {
        if self.inner.mode == Mode::Exclusive {
            return self.execute_as(Kind::Recorded, cmd).map(drop);
        }
        let inner = &*self.inner;
        inner.check_healthy()?;
        // Dry run: reject without logging.
        let dry: Result<(), Option<C::Error>> = try_atomically(|tx| {
            cmd.apply(&inner.state, tx).map_err(|e| rejected(e, Some))?;
            Err(TxError::Abort(None))
        });
        if let Err(Some(e)) = dry {
            return Err(ExecuteError::Rejected(e));
        }
        let mut record = format::encode_record(Kind::Recorded, cmd.name(), &cmd)?;
        let _one = inner.appender.lock();
        loop {
            let n = inner.backend.next_position()?;
            format::set_seq(&mut record, n);
            match inner.backend.append(n, std::slice::from_ref(&record))? {
                Append::Appended => break,
                Append::Conflict { .. } => continue,
            }
        }
        inner.roll_forward()?;
        Ok(())
    }

    fn execute_as(&self, kind: Kind, cmd: C) -> Result<C::Output, ExecuteError<C::Error>> {
        let inner = &self.inner;
        inner.check_healthy()?;
        let record = format::encode_record(kind, cmd.name(), &cmd)?;
        if inner.mode == Mode::Shared {
            let mut record = record;
            return inner.execute_shared(&cmd, &mut record);
        }
        // The record until the commit queues it, then the position it got.
        let slot = Rc::new((Cell::new(Some(record)), Cell::new(0)));
        let _inside = Inside::enter(&inner.inside);
        let out = try_atomically(|tx| {
            let out = cmd.apply(&inner.state, tx)?;
            let (slot, inner) = (Rc::clone(&slot), Arc::clone(inner));
            tx.while_committing(move |_| {
                let bytes = slot.0.take().expect("one record per commit");
                slot.1.set(inner.enqueue(bytes));
            });
            Ok(out)
        })
        .map_err(ExecuteError::Rejected)?;
        inner.wait_durable(slot.1.get())?;
        Ok(out)
    }

    /// Writes a consistent snapshot of the state while writers continue, then drops the log
    /// records it covers. Returns the log position it covers.
    ///
    /// # Errors
    ///
    /// I/O or backend errors; the store stays usable.
    pub fn snapshot(&self) -> Result<u64> {
        let inner = &self.inner;
        let (seq, image) = if inner.mode == Mode::Exclusive {
            // The image's transaction takes a place in the commit order, so it contains
            // exactly the commands numbered up to `seq`.
            let seq = Rc::new(Cell::new(0));
            let image = atomically(|tx| {
                let image = inner.state.image(tx)?;
                let (at, inner) = (Rc::clone(&seq), Arc::clone(inner));
                tx.while_committing(move |_| at.set(inner.queue.lock().next - 1));
                Ok(image)
            });
            (seq.get(), image)
        } else {
            let _one = inner.appender.lock();
            let image = atomically(|tx| inner.state.image(tx));
            (inner.applied.load(Ordering::Acquire), image)
        };
        let bytes = format::encode_snapshot(seq, &image)?;
        inner.backend.save_snapshot(seq, &bytes)?;
        inner.backend.compact(seq)?;
        Ok(seq)
    }

    /// Rolls forward: applies every record other participants appended since this replica
    /// last looked. Returns the position of the last record applied. In an exclusive store,
    /// returns the position of the last durable record.
    ///
    /// # Errors
    ///
    /// Backend errors, and the replay errors of [`open`](Store::open).
    pub fn sync(&self) -> Result<u64> {
        let inner = &self.inner;
        if inner.mode == Mode::Exclusive {
            return Ok(inner.flush.lock().durable);
        }
        inner.check_healthy()?;
        let _one = inner.appender.lock();
        inner.roll_forward()?;
        Ok(inner.applied.load(Ordering::Acquire))
    }

    /// The position of the last record this store has applied (shared) or assigned
    /// (exclusive).
    pub fn position(&self) -> u64 {
        match self.inner.mode {
            Mode::Exclusive => self.inner.queue.lock().next - 1,
            Mode::Shared => self.inner.applied.load(Ordering::Acquire),
        }
    }

    /// The mode the store was opened in.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }
}

impl<C: Command> Drop for Store<C> {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        if let Some(follower) = self.follower.take() {
            let _ = follower.join();
        }
    }
}
