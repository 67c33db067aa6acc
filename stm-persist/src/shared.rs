//! The shared flavour: several stores (processes, machines) append to one log with
//! compare-and-append, SPTM's optimistic protocol, and this store's memory is always a prefix
//! of that log.
//!
//! `execute` never does I/O inside a transaction and never holds a lock across one that can
//! block:
//!
//! 1. **Dry run**, outside any lock: `apply` in a transaction that is then abandoned. A
//!    rejection returns at once (nothing logged); a `retry` waits, as in any transaction, until
//!    the state changes (this store's own commands, or others' once this replica rolls
//!    forward).
//! 2. **Join the next batch**: the command goes into a queue. Whoever holds the appender lock
//!    (the *leader*, the first caller to find it free) takes every queued command at once.
//! 3. **Leader, under the appender lock**: roll forward; check the batch in one transaction
//!    that never commits and never blocks (each command runs after the ones before it, inside
//!    `or_else`, so a command that would now reject or wait is set aside without undoing the
//!    others); compare-and-append the records of the accepted commands at the next positions,
//!    in one append and one sync; on a conflict, roll forward and check again. Then apply the
//!    appended commands through the replay path, in log order, and hand each caller its
//!    output. A command set aside goes back to step 1 in its caller's thread.
//!
//! Only the holder of the appender lock changes the state (roll forward, apply), so the check
//! under the lock sees exactly the state the commands are appended after, and replay on any
//! replica repeats it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use stm_core::{TxError, retry, try_atomically};

use crate::backend::Append;
use crate::error::{Error, ExecuteError, Result};
use crate::format::{self, Kind};
use crate::replay::Replica;
use crate::store::{Command, State};

pub(crate) struct Shared<C: Command> {
    pub(crate) replica: Replica<C>,
    /// The one applier and appender of this store: held to roll forward, append and apply.
    appender: Mutex<()>,
    /// Commands that passed their dry run and wait for the next batch.
    pending: Mutex<Vec<Arc<Ticket<C>>>>,
    /// Set when the store is dropped: the follower stops.
    stop: AtomicBool,
    /// The follower's last failure, reported by the next call.
    follower_error: Mutex<Option<Error>>,
}

/// One command waiting in a batch, and what became of it.
struct Ticket<C: Command> {
    /// The command; its caller takes it back if it is set aside.
    cmd: Mutex<Option<C>>,
    record: Mutex<Vec<u8>>,
    outcome: Mutex<Option<Outcome<C::Output>>>,
    decided: Condvar,
}

enum Outcome<T> {
    /// Appended, applied: `apply`'s output.
    Done(T),
    /// It would now reject or wait: the caller runs it again from its dry run.
    Again,
    /// The append failed.
    Failed(Error),
}

impl<C: Command> Ticket<C> {
    fn decide(&self, outcome: Outcome<C::Output>) {
        *self.outcome.lock() = Some(outcome);
        self.decided.notify_all();
    }
}

impl<C: Command> Shared<C> {
    /// Rolls forward over the loaded snapshot.
    pub(crate) fn open(replica: Replica<C>) -> Result<Self> {
        let snapshot = replica.applied();
        let end = replica.backend.next_position()?;
        if end <= snapshot {
            // The snapshot covers records this log does not have; other participants may
            // append there, so this store cannot simply continue after it.
            return Err(Error::corrupt(
                format!("log record {end}"),
                format!(
                    "the newest snapshot covers the log up to {snapshot}, but the log ends \
                     before it"
                ),
            ));
        }
        replica.roll_forward()?;
        Ok(Self {
            replica,
            appender: Mutex::new(()),
            pending: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            follower_error: Mutex::new(None),
        })
    }

    fn check_follower(&self) -> Result<()> {
        match self.follower_error.lock().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs `f` as this store's one applier, then serves any batch queued meanwhile.
    fn with_appender<R>(&self, f: impl FnOnce() -> R) -> R {
        let result = {
            let _one = self.appender.lock();
            f()
        };
        self.serve();
        result
    }

    /// Leads batches while commands are queued and nobody else holds the appender lock.
    /// Everyone who releases the lock calls this, so a queued command is never stranded.
    fn serve(&self) {
        while !self.pending.lock().is_empty() {
            let Some(_one) = self.appender.try_lock() else {
                return;
            };
            loop {
                let batch = std::mem::take(&mut *self.pending.lock());
                if batch.is_empty() {
                    break;
                }
                self.commit_batch(&batch);
            }
        }
    }

    pub(crate) fn execute(&self, kind: Kind, cmd: C) -> Result<C::Output, ExecuteError<C::Error>> {
        self.check_follower()?;
        let record = format::encode_record(kind, cmd.name(), &cmd)?;
        let ticket = Arc::new(Ticket {
            cmd: Mutex::new(Some(cmd)),
            record: Mutex::new(record),
            outcome: Mutex::new(None),
            decided: Condvar::new(),
        });
        loop {
            {
                let cmd = ticket.cmd.lock();
                self.dry_run(cmd.as_ref().expect("the caller holds its command"))?;
            }
            self.pending.lock().push(Arc::clone(&ticket));
            self.serve();
            let outcome = {
                let mut outcome = ticket.outcome.lock();
                loop {
                    if let Some(o) = outcome.take() {
                        break o;
                    }
                    // The timeout only guards against a lost wake-up; `serve` hands every
                    // queued batch to a leader.
                    let timed_out = ticket
                        .decided
                        .wait_for(&mut outcome, Duration::from_millis(1))
                        .timed_out();
                    if timed_out {
                        parking_lot::MutexGuard::unlocked(&mut outcome, || self.serve());
                    }
                }
            };
            match outcome {
                Outcome::Done(out) => return Ok(out),
                Outcome::Failed(e) => return Err(ExecuteError::Store(e)),
                Outcome::Again => continue,
            }
        }
    }

    /// Step 1: `apply` on the current state, abandoned. Waits while it retries.
    fn dry_run(&self, cmd: &C) -> Result<(), ExecuteError<C::Error>> {
        let outcome: Result<(), Option<C::Error>> = try_atomically(|tx| {
            cmd.apply(&self.replica.state, tx)
                .map_err(|e| e.map_abort(Some))?;
            Err(TxError::Abort(None))
        });
        match outcome {
            Err(Some(e)) => Err(ExecuteError::Rejected(e)),
            Ok(()) | Err(None) => Ok(()),
        }
    }

    /// Step 3, under the appender lock.
    fn commit_batch(&self, batch: &[Arc<Ticket<C>>]) {
        let fail_all = |e: Error| {
            for t in batch {
                t.decide(Outcome::Failed(e.again()));
            }
        };
        if let Err(e) = self.replica.roll_forward() {
            return fail_all(e);
        }
        loop {
            let accepted = self.check(batch);
            let (ok, set_aside): (Vec<_>, Vec<_>) =
                batch.iter().zip(&accepted).partition(|(_, ok)| **ok);
            for (t, _) in set_aside {
                t.decide(Outcome::Again);
            }
            if ok.is_empty() {
                return;
            }
            let first = self.replica.applied() + 1;
            let records: Vec<Vec<u8>> = ok
                .iter()
                .enumerate()
                .map(|(i, (t, _))| {
                    let mut record = t.record.lock();
                    format::set_seq(&mut record, first + i as u64);
                    record.clone()
                })
                .collect();
            match self.replica.backend.append(first, &records) {
                Ok(Append::Appended) => {
                    for (i, ((t, _), record)) in ok.iter().zip(&records).enumerate() {
                        let pos = first + i as u64;
                        let cmd = t.cmd.lock();
                        let cmd = cmd.as_ref().expect("queued with its command");
                        let applied = self.replica.apply_logged(pos, cmd, record);
                        self.replica.set_applied(pos);
                        t.decide(match applied {
                            Ok(out) => Outcome::Done(out),
                            Err(e) => Outcome::Failed(e),
                        });
                    }
                    return;
                }
                Ok(Append::Conflict { .. }) => {
                    // Another participant appended first: catch up and check again.
                    if let Err(e) = self.replica.roll_forward() {
                        for (t, _) in &ok {
                            t.decide(Outcome::Failed(e.again()));
                        }
                        return;
                    }
                }
                Err(e) => {
                    for (t, _) in &ok {
                        t.decide(Outcome::Failed(e.again()));
                    }
                    return;
                }
            }
        }
    }

    /// Which commands of `batch`, run in order on the current state, would commit now. One
    /// transaction that never commits and never blocks.
    fn check(&self, batch: &[Arc<Ticket<C>>]) -> Vec<bool> {
        let verdicts: Result<(), Vec<bool>> = try_atomically(|tx| {
            let mut verdicts = Vec::with_capacity(batch.len());
            for t in batch {
                let cmd = t.cmd.lock();
                let cmd = cmd.as_ref().expect("queued with its command");
                let ok = tx.or_else(
                    |tx| match cmd.apply(&self.replica.state, tx) {
                        Ok(_) => Ok(true),
                        // Undo its writes and set it aside, as for a retry.
                        Err(TxError::Abort(_)) => retry(),
                        Err(TxError::Stm(e)) => Err(e),
                    },
                    |_| Ok(false),
                )?;
                verdicts.push(ok);
            }
            Err(TxError::Abort(verdicts))
        });
        verdicts.err().unwrap_or_default()
    }

    /// A consistent image and the position it covers.
    pub(crate) fn image(&self) -> Result<(u64, <C::State as State>::Image)> {
        self.with_appender(|| {
            self.replica.roll_forward()?;
            let image = stm_core::atomically(|tx| self.replica.state.image(tx));
            Ok((self.replica.applied(), image))
        })
    }

    /// Rolls forward to the end of the log; the position of the last record applied.
    pub(crate) fn sync(&self) -> Result<u64> {
        self.check_follower()?;
        self.with_appender(|| self.replica.roll_forward())?;
        Ok(self.replica.applied())
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The follower: rolls the replica forward whenever others append.
pub(crate) fn spawn_follower<C: Command>(
    shared: std::sync::Weak<Shared<C>>,
    interval: Duration,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("stmx-persist-follower".into())
        .spawn(move || {
            while let Some(shared) = shared.upgrade() {
                if shared.stop.load(Ordering::Acquire) {
                    break;
                }
                let next = shared.replica.applied() + 1;
                let result = shared
                    .replica
                    .backend
                    .wait_for_append(next, interval)
                    .and_then(|()| shared.with_appender(|| shared.replica.roll_forward()));
                if let Err(e) = result {
                    *shared.follower_error.lock() = Some(e);
                    std::thread::sleep(interval);
                }
            }
        })
        .expect("spawning the follower thread")
}
