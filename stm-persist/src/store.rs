//! [`Store`]: a state, its command log, its snapshots.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use stm_core::{StmResult, Transaction, TxError, atomically};

use crate::backend::Backend;
use crate::dir::DirBackend;
use crate::error::{ExecuteError, Result};
use crate::exclusive::Exclusive;
use crate::format::{self, Kind};
use crate::replay::Replica;
use crate::shared::{self, Shared};

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
///
/// let c = Counter::from_image(41);
/// assert_eq!(stmx::atomically(|tx| c.image(tx)), 41);
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
/// `Err(TxError::Abort(e))`: nothing changes and nothing is logged. It may wait with
/// [`retry`](stm_core::retry) (or `guard`): `execute` then blocks until the state changes,
/// in both store flavours, as any transaction would.
///
/// Commands and their outputs are `Send`: in a shared store, the caller that leads a group
/// commit checks and applies the commands of the other callers in its batch.
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
pub trait Command: Serialize + DeserializeOwned + Send + 'static {
    /// The state commands change.
    type State: State;
    /// What `apply` returns to the caller of [`Store::execute`].
    type Output: Send;
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
    /// Several stores (processes, machines) append to the log with compare-and-append at the
    /// next position (SPTM's optimistic protocol). A command is checked on the state after
    /// the log's last record, appended, then applied: memory is always a prefix of the log.
    /// Concurrent callers of one store share one append and one sync; a store that loses the
    /// race rolls forward and checks its commands again.
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
    /// [`Error::UnknownCommand`](crate::Error::UnknownCommand), naming the record and its position; nothing past it is
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
        let replica = Replica::load(Box::new(backend), self.allow, init)?;
        let (flavor, follower) = match mode {
            Mode::Exclusive => (Flavor::Exclusive(Arc::new(Exclusive::open(replica)?)), None),
            Mode::Shared => {
                let shared = Arc::new(Shared::open(replica)?);
                let follower = self
                    .follow
                    .map(|interval| shared::spawn_follower(Arc::downgrade(&shared), interval));
                (Flavor::Shared(shared), follower)
            }
        };
        Ok(Store { flavor, follower })
    }
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
    flavor: Flavor<C>,
    follower: Option<JoinHandle<()>>,
}

/// What a store does differently by how it shares its log; each flavour owns only its own
/// fields, around the [`Replica`] both use.
enum Flavor<C: Command> {
    Exclusive(Arc<Exclusive<C>>),
    Shared(Arc<Shared<C>>),
}

impl<C: Command> fmt::Debug for Store<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("mode", &self.mode())
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}

impl<C: Command> Store<C> {
    /// Opens (or creates) the store in directory `path`, owned by this store alone: loads the
    /// newest valid snapshot (or `init()` if there is none), replays the log after it, cutting
    /// a torn tail, and is ready.
    ///
    /// A damaged newest snapshot is passed over for the older one the store keeps, whose log
    /// it also keeps; if that cannot be done, the damage is the error, naming the file.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`](crate::Error::Locked) if another store has the directory open; I/O
    /// errors; [`Error::Corrupt`](crate::Error::Corrupt),
    /// [`Error::UnsupportedFormat`](crate::Error::UnsupportedFormat),
    /// [`Error::UnknownCommand`](crate::Error::UnknownCommand) or
    /// [`Error::Replay`](crate::Error::Replay) for a log this program cannot replay.
    pub fn open(path: impl AsRef<Path>, init: impl FnOnce() -> C::State) -> Result<Self> {
        Options::new().open(path, init)
    }

    /// Opens one participant of a log shared by several stores or processes on this machine.
    /// See [`Mode::Shared`].
    ///
    /// # Errors
    ///
    /// As [`open`](Store::open); [`Error::Locked`](crate::Error::Locked) if an exclusive
    /// store has it open.
    pub fn open_shared(path: impl AsRef<Path>, init: impl FnOnce() -> C::State) -> Result<Self> {
        Options::new().open_shared(path, init)
    }

    fn replica(&self) -> &Replica<C> {
        match &self.flavor {
            Flavor::Exclusive(e) => &e.replica,
            Flavor::Shared(s) => &s.replica,
        }
    }

    /// The state, to read or combine with other transactional code. Change it only through
    /// [`execute`](Store::execute) and [`record`](Store::record): other writes are not logged
    /// and are lost on restart.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_persist::{Command, State, Store};
    /// # use stmx::{StmResult, TVar, Transaction, TxError};
    /// # struct Counter(TVar<u64>);
    /// # impl State for Counter {
    /// #     type Image = u64;
    /// #     fn image(&self, tx: &mut Transaction) -> StmResult<u64> { self.0.read(tx) }
    /// #     fn from_image(n: u64) -> Self { Counter(TVar::new(n)) }
    /// # }
    /// # #[derive(serde::Serialize, serde::Deserialize)]
    /// # struct Add(u64);
    /// # impl Command for Add {
    /// #     type State = Counter; type Output = (); type Error = ();
    /// #     fn apply(&self, c: &Counter, tx: &mut Transaction) -> Result<(), TxError<()>> {
    /// #         Ok(c.0.modify(tx, |n| n + self.0)?)
    /// #     }
    /// # }
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::<Add>::open(dir.path(), || Counter(TVar::new(0)))?;
    /// store.execute(Add(4)).unwrap();
    /// assert_eq!(store.state().0.read_atomic(), 4);
    /// # Ok::<(), stm_persist::Error>(())
    /// ```
    pub fn state(&self) -> &C::State {
        &self.replica().state
    }

    /// Runs `f` as a transaction over the state that must not write it: nothing is logged,
    /// nothing waits for the disk. In an exclusive store it may see commands that committed
    /// but whose `execute` has not returned yet (their records are being written).
    ///
    /// # Retries
    ///
    /// `f` may call [`retry`](stm_core::retry): `read` then blocks until a variable `f` read
    /// changes, as [`atomically`] does.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_persist::{Command, State, Store};
    /// # use stmx::{StmResult, TVar, Transaction, TxError};
    /// # struct Counter(TVar<u64>);
    /// # impl State for Counter {
    /// #     type Image = u64;
    /// #     fn image(&self, tx: &mut Transaction) -> StmResult<u64> { self.0.read(tx) }
    /// #     fn from_image(n: u64) -> Self { Counter(TVar::new(n)) }
    /// # }
    /// # #[derive(serde::Serialize, serde::Deserialize)]
    /// # struct Add(u64);
    /// # impl Command for Add {
    /// #     type State = Counter; type Output = (); type Error = ();
    /// #     fn apply(&self, c: &Counter, tx: &mut Transaction) -> Result<(), TxError<()>> {
    /// #         Ok(c.0.modify(tx, |n| n + self.0)?)
    /// #     }
    /// # }
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::<Add>::open(dir.path(), || Counter(TVar::new(0)))?;
    /// store.execute(Add(2)).unwrap();
    /// let doubled = store.read(|c, tx| Ok(c.0.read(tx)? * 2));
    /// assert_eq!(doubled, 4);
    /// # Ok::<(), stm_persist::Error>(())
    /// ```
    pub fn read<R>(&self, mut f: impl FnMut(&C::State, &mut Transaction) -> StmResult<R>) -> R {
        let state = &self.replica().state;
        atomically(|tx| f(state, tx))
    }

    /// Runs `cmd` in a transaction and returns once its log record is durable.
    ///
    /// Exclusive stores commit the command in memory, log records in commit order and
    /// group-commit them: concurrent callers share one sync. Shared stores check the command
    /// on the state after the log's last record, compare-and-append it (with the commands of
    /// concurrent callers, in one append and one sync), then apply it; when another participant
    /// appended first they roll forward and check again. See [`Mode`].
    ///
    /// # Retries
    ///
    /// If `apply` calls [`retry`](stm_core::retry), `execute` blocks until a variable it read
    /// changes, then runs it again; nothing is logged meanwhile. In a shared store the state
    /// changes through this store's own commands and through what it rolls forward: open it
    /// with [`Options::follow`] to see other participants' commands without calling
    /// [`sync`](Store::sync).
    ///
    /// # Errors
    ///
    /// [`ExecuteError::Rejected`] if `apply` rejected the command (nothing logged);
    /// [`ExecuteError::Store`] for a store failure. After a failed write, an exclusive store
    /// is [`Error::Poisoned`](crate::Error::Poisoned): its memory may hold a command the log
    /// lacks. A shared store's memory never runs ahead of the log, so it stays usable.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_persist::{Command, ExecuteError, State, Store};
    /// # use stmx::{StmResult, TVar, Transaction, TxError};
    /// # struct Counter(TVar<u64>);
    /// # impl State for Counter {
    /// #     type Image = u64;
    /// #     fn image(&self, tx: &mut Transaction) -> StmResult<u64> { self.0.read(tx) }
    /// #     fn from_image(n: u64) -> Self { Counter(TVar::new(n)) }
    /// # }
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Take(u64);
    ///
    /// impl Command for Take {
    ///     type State = Counter;
    ///     type Output = u64;
    ///     type Error = String;
    ///     fn apply(&self, c: &Counter, tx: &mut Transaction) -> Result<u64, TxError<String>> {
    ///         let n = c.0.read(tx)?;
    ///         if n < self.0 {
    ///             return Err(TxError::Abort(format!("only {n} left")));
    ///         }
    ///         c.0.write(tx, n - self.0)?;
    ///         Ok(n - self.0)
    ///     }
    /// }
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::<Take>::open(dir.path(), || Counter(TVar::new(10)))?;
    /// assert_eq!(store.execute(Take(3)).unwrap(), 7);
    /// assert!(matches!(store.execute(Take(8)), Err(ExecuteError::Rejected(_))));
    /// # Ok::<(), stm_persist::Error>(())
    /// ```
    pub fn execute(&self, cmd: C) -> Result<C::Output, ExecuteError<C::Error>> {
        match &self.flavor {
            Flavor::Exclusive(e) => e.execute(Kind::Command, cmd),
            Flavor::Shared(s) => s.execute(Kind::Command, cmd),
        }
    }

    /// SPTM's `record-transaction`, for commands that commute with every other command (an
    /// append to a results list, a counter increment): the same as
    /// [`execute`](Store::execute) without the output; the record is marked as commuting.
    ///
    /// # Retries
    ///
    /// As [`execute`](Store::execute).
    ///
    /// # Errors
    ///
    /// As [`execute`](Store::execute).
    pub fn record(&self, cmd: C) -> Result<(), ExecuteError<C::Error>> {
        match &self.flavor {
            Flavor::Exclusive(e) => e.execute(Kind::Recorded, cmd).map(drop),
            Flavor::Shared(s) => s.execute(Kind::Recorded, cmd).map(drop),
        }
    }

    /// Writes a consistent snapshot of the state while writers continue, then compacts: the
    /// store keeps this snapshot and the one before it, with the log after the older one, so
    /// that a damaged newest snapshot can always fall back. Returns the log position the
    /// snapshot covers. A snapshot never covers a record that is not durable.
    ///
    /// # Errors
    ///
    /// I/O or backend errors; the store stays usable.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_persist::{Command, State, Store};
    /// # use stmx::{StmResult, TVar, Transaction, TxError};
    /// # struct Counter(TVar<u64>);
    /// # impl State for Counter {
    /// #     type Image = u64;
    /// #     fn image(&self, tx: &mut Transaction) -> StmResult<u64> { self.0.read(tx) }
    /// #     fn from_image(n: u64) -> Self { Counter(TVar::new(n)) }
    /// # }
    /// # #[derive(serde::Serialize, serde::Deserialize)]
    /// # struct Add(u64);
    /// # impl Command for Add {
    /// #     type State = Counter; type Output = (); type Error = ();
    /// #     fn apply(&self, c: &Counter, tx: &mut Transaction) -> Result<(), TxError<()>> {
    /// #         Ok(c.0.modify(tx, |n| n + self.0)?)
    /// #     }
    /// # }
    /// let dir = tempfile::tempdir().unwrap();
    /// let open = || Store::<Add>::open(dir.path(), || Counter(TVar::new(0)));
    /// {
    ///     let store = open()?;
    ///     store.execute(Add(1)).unwrap();
    ///     store.execute(Add(2)).unwrap();
    ///     assert_eq!(store.snapshot()?, 2); // covers records 1 and 2
    /// }
    /// assert_eq!(open()?.state().0.read_atomic(), 3);
    /// # Ok::<(), stm_persist::Error>(())
    /// ```
    pub fn snapshot(&self) -> Result<u64> {
        let (seq, image) = match &self.flavor {
            Flavor::Exclusive(e) => e.image()?,
            Flavor::Shared(s) => s.image()?,
        };
        let backend = &self.replica().backend;
        let bytes = format::encode_snapshot(seq, &image)?;
        let older = backend
            .snapshots()?
            .into_iter()
            .filter(|&s| s < seq)
            .max()
            .unwrap_or(0);
        backend.save_snapshot(seq, &bytes)?;
        backend.compact(older)?;
        Ok(seq)
    }

    /// Brings memory and the log into agreement as of now, and returns the position they
    /// agree at: a shared store rolls forward (applies every record other participants
    /// appended); an exclusive store waits until every command committed so far is durable.
    ///
    /// # Errors
    ///
    /// Backend errors, and the replay errors of [`open`](Store::open);
    /// [`Error::Poisoned`](crate::Error::Poisoned) for an exclusive store whose write failed.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_persist::{Command, State, Store};
    /// # use stmx::{StmResult, TVar, Transaction, TxError};
    /// # struct Counter(TVar<u64>);
    /// # impl State for Counter {
    /// #     type Image = u64;
    /// #     fn image(&self, tx: &mut Transaction) -> StmResult<u64> { self.0.read(tx) }
    /// #     fn from_image(n: u64) -> Self { Counter(TVar::new(n)) }
    /// # }
    /// # #[derive(serde::Serialize, serde::Deserialize)]
    /// # struct Add(u64);
    /// # impl Command for Add {
    /// #     type State = Counter; type Output = (); type Error = ();
    /// #     fn apply(&self, c: &Counter, tx: &mut Transaction) -> Result<(), TxError<()>> {
    /// #         Ok(c.0.modify(tx, |n| n + self.0)?)
    /// #     }
    /// # }
    /// let dir = tempfile::tempdir().unwrap();
    /// let a = Store::<Add>::open_shared(dir.path(), || Counter(TVar::new(0)))?;
    /// let b = Store::<Add>::open_shared(dir.path(), || Counter(TVar::new(0)))?;
    /// a.execute(Add(5)).unwrap();
    /// assert_eq!(b.state().0.read_atomic(), 0); // b has not looked yet
    /// assert_eq!(b.sync()?, 1);
    /// assert_eq!(b.state().0.read_atomic(), 5);
    /// # Ok::<(), stm_persist::Error>(())
    /// ```
    pub fn sync(&self) -> Result<u64> {
        match &self.flavor {
            Flavor::Exclusive(e) => e.sync(),
            Flavor::Shared(s) => s.sync(),
        }
    }

    /// The position of the last command reflected in this store's memory: the last record
    /// applied (shared), or the last command committed (exclusive; its record may still be
    /// being written).
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_persist::{Command, State, Store};
    /// # use stmx::{StmResult, TVar, Transaction, TxError};
    /// # struct Counter(TVar<u64>);
    /// # impl State for Counter {
    /// #     type Image = u64;
    /// #     fn image(&self, tx: &mut Transaction) -> StmResult<u64> { self.0.read(tx) }
    /// #     fn from_image(n: u64) -> Self { Counter(TVar::new(n)) }
    /// # }
    /// # #[derive(serde::Serialize, serde::Deserialize)]
    /// # struct Add(u64);
    /// # impl Command for Add {
    /// #     type State = Counter; type Output = (); type Error = ();
    /// #     fn apply(&self, c: &Counter, tx: &mut Transaction) -> Result<(), TxError<()>> {
    /// #         Ok(c.0.modify(tx, |n| n + self.0)?)
    /// #     }
    /// # }
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::<Add>::open(dir.path(), || Counter(TVar::new(0)))?;
    /// store.execute(Add(1)).unwrap();
    /// assert_eq!(store.position(), 1);
    /// # Ok::<(), stm_persist::Error>(())
    /// ```
    pub fn position(&self) -> u64 {
        match &self.flavor {
            Flavor::Exclusive(e) => e.position(),
            Flavor::Shared(s) => s.replica.applied(),
        }
    }

    /// The mode the store was opened in.
    pub fn mode(&self) -> Mode {
        match self.flavor {
            Flavor::Exclusive(_) => Mode::Exclusive,
            Flavor::Shared(_) => Mode::Shared,
        }
    }
}

impl<C: Command> Drop for Store<C> {
    fn drop(&mut self) {
        if let Flavor::Shared(s) = &self.flavor {
            s.stop();
        }
        if let Some(follower) = self.follower.take() {
            let _ = follower.join();
        }
    }
}
