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
//! 3. **Leader, under the appender lock**, in one
//!    [`Backend::append_after`](crate::Backend::append_after): catch up (apply what other
//!    participants appended); check the batch in one transaction that never commits and never
//!    blocks (each command runs after the ones before it, inside `or_else`, so a command that
//!    would now reject or wait is set aside without undoing the others); append the records of
//!    the accepted commands at the next positions, in one write and one sync. The directory
//!    backend does all of it under its file lock, so it never loses the race; the default for
//!    other backends is SPTM's loop (compare-and-append; on a conflict, catch up and check
//!    again). Then apply the appended commands through the replay path, in log order, and hand
//!    each caller its output. A command set aside goes back to step 1 in its caller's thread.
//!    A caller leads only until its own command is decided, then hands the lead on.
//!
//! Only the holder of the appender lock changes the state (roll forward, apply), so the check
//! under the lock sees exactly the state the commands are appended after, and replay on any
//! replica repeats it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use stm_core::{Transaction, TxError, retry, try_atomically};

use crate::error::{Error, ExecuteError, Result};
use crate::format::{self, Kind};
use crate::gather::{Away, Inside, gather};
use crate::replay::Replica;
use crate::store::{Command, State};

pub(crate) struct Shared<C: Command> {
    pub(crate) replica: Replica<C>,
    /// The one applier and appender of this store: held to roll forward, append and apply.
    appender: Mutex<()>,
    /// Commands that passed their dry run and wait for the next batch.
    pending: Mutex<Vec<Arc<Ticket<C>>>>,
    /// How many `pending` holds (read without its lock).
    queued: AtomicUsize,
    /// Callers inside `execute`, except while their command waits in a `retry`.
    active: AtomicUsize,
    /// Set when the store is dropped: the follower stops.
    stop: AtomicBool,
    /// The follower's last failure, reported by the next call.
    follower_error: Mutex<Option<Error>>,
}

/// One command waiting in a batch, and what became of it.
struct Ticket<C: Command> {
    /// The command. Locked by its caller for the dry run and by the leader for the check and
    /// the apply; never by both (the ticket is queued only between dry runs).
    cmd: Mutex<C>,
    /// The encoded command; each append copies it and writes in its position.
    record: Vec<u8>,
    outcome: Mutex<Option<Outcome<C::Output>>>,
    decided: Condvar,
}

/// How a dry run ended (always by aborting: it never commits).
enum DryRun<E> {
    Fits,
    Rejected(E),
    /// It called `retry` (only when not allowed to block).
    Waits,
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

/// If the leader unwinds (a command panicked in the check or in its apply), decides every
/// ticket of the batch still undecided as failed, so that no caller waits forever. What was
/// applied stays applied; a record appended but not applied is applied by the next roll
/// forward, so memory stays a prefix of the log.
struct FailOnUnwind<'a, C: Command>(&'a [Arc<Ticket<C>>]);

impl<C: Command> Drop for FailOnUnwind<'_, C> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for t in self.0 {
            let mut outcome = t.outcome.lock();
            if outcome.is_none() {
                *outcome = Some(Outcome::Failed(Error::CommandPanicked));
                t.decided.notify_all();
            }
        }
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
            queued: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
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
        self.serve(None);
        result
    }

    /// Leads batches while commands are queued and nobody else holds the appender lock.
    /// Everyone who releases the lock calls this, so a queued command is never stranded.
    ///
    /// A caller of `execute` (`own` is its ticket) leads only until its own command is
    /// decided, then hands the lead to a caller still queued, so that it can go and queue its
    /// next command.
    fn serve(&self, own: Option<&Ticket<C>>) {
        let decided = || own.is_some_and(|t| t.outcome.lock().is_some());
        while self.queued.load(Ordering::Acquire) > 0 {
            let Some(one) = self.appender.try_lock() else {
                return;
            };
            while !decided() {
                // Active callers that have not queued yet will in a moment.
                gather(&self.queued, &self.active);
                let batch = {
                    let mut pending = self.pending.lock();
                    self.queued.store(0, Ordering::Release);
                    std::mem::take(&mut *pending)
                };
                if batch.is_empty() {
                    break;
                }
                self.commit_batch(&batch);
            }
            drop(one);
            if decided() {
                if let Some(next) = self.pending.lock().first() {
                    // Under its lock, so that a caller between its check and its wait sees it.
                    let _outcome = next.outcome.lock();
                    next.decided.notify_all();
                }
                return;
            }
        }
    }

    pub(crate) fn execute(&self, kind: Kind, cmd: C) -> Result<C::Output, ExecuteError<C::Error>> {
        self.check_follower()?;
        let _active = Inside::enter(&self.active);
        let record = format::encode_record(kind, cmd.name(), &cmd)?;
        let ticket = Arc::new(Ticket {
            cmd: Mutex::new(cmd),
            record,
            outcome: Mutex::new(None),
            decided: Condvar::new(),
        });
        loop {
            self.dry_run(&ticket.cmd.lock())?;
            {
                let mut pending = self.pending.lock();
                pending.push(Arc::clone(&ticket));
                self.queued.store(pending.len(), Ordering::Release);
            }
            self.serve(Some(&ticket));
            let outcome = {
                let mut outcome = ticket.outcome.lock();
                loop {
                    if let Some(o) = outcome.take() {
                        break o;
                    }
                    // Woken undecided: the lead was handed over. The timeout only guards
                    // against a lost wake-up.
                    ticket
                        .decided
                        .wait_for(&mut outcome, Duration::from_millis(1));
                    if outcome.is_none() {
                        parking_lot::MutexGuard::unlocked(&mut outcome, || {
                            self.serve(Some(&ticket));
                        });
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

    /// Step 1: `apply` on the current state, abandoned. Waits while it retries, and meanwhile
    /// does not count as active (a group commit does not wait for it).
    fn dry_run(&self, cmd: &C) -> Result<(), ExecuteError<C::Error>> {
        let attempt = |block: bool| -> Result<(), DryRun<C::Error>> {
            try_atomically(|tx| {
                let ran = |tx: &mut Transaction| match cmd.apply(&self.replica.state, tx) {
                    Ok(_) => Ok(Err(DryRun::Fits)),
                    Err(TxError::Abort(e)) => Ok(Err(DryRun::Rejected(e))),
                    Err(TxError::Stm(e)) => Err(e),
                };
                let outcome = if block {
                    ran(tx)?
                } else {
                    tx.or_else(ran, |_| Ok(Err(DryRun::Waits)))?
                };
                outcome.map_err(TxError::Abort)
            })
        };
        let outcome = match attempt(false) {
            Err(DryRun::Waits) => {
                let _away = Away::leave(&self.active);
                attempt(true)
            }
            outcome => outcome,
        };
        match outcome {
            Err(DryRun::Rejected(e)) => Err(ExecuteError::Rejected(e)),
            Ok(()) | Err(DryRun::Fits | DryRun::Waits) => Ok(()),
        }
    }

    /// Step 3, under the appender lock: catch up, check, append, apply, in one
    /// [`Backend::append_after`](crate::Backend::append_after).
    fn commit_batch(&self, batch: &[Arc<Ticket<C>>]) {
        let _unwinding = FailOnUnwind(batch);
        let replica = &self.replica;
        let mut accepted = Vec::new();
        let landed = replica.backend.append_after(
            replica.applied() + 1,
            &mut |pos, bytes| {
                replica.apply_record(pos, bytes)?;
                replica.set_applied(pos);
                Ok(())
            },
            &mut |next| {
                accepted = self.check(batch);
                let chosen = batch.iter().zip(&accepted).filter(|(_, ok)| **ok);
                Ok(chosen
                    .zip(next..)
                    .map(|((t, _), pos)| {
                        let mut record = t.record.clone();
                        format::set_seq(&mut record, pos);
                        record
                    })
                    .collect())
            },
        );
        let mut chosen = batch.iter().zip(&accepted).filter(|(_, ok)| **ok);
        match landed {
            Ok(Some(first)) => {
                for ((t, _), pos) in chosen.by_ref().zip(first..) {
                    let applied = replica.apply_logged(pos, &t.cmd.lock());
                    replica.set_applied(pos);
                    t.decide(match applied {
                        Ok(out) => Outcome::Done(out),
                        Err(e) => Outcome::Failed(e),
                    });
                }
            }
            Ok(None) => {}
            // Nothing was checked (catching up failed): every caller gets the error.
            Err(e) if accepted.is_empty() => {
                for t in batch {
                    t.decide(Outcome::Failed(e.again()));
                }
            }
            Err(e) => {
                for (t, _) in chosen {
                    t.decide(Outcome::Failed(e.again()));
                }
            }
        }
        // The rest would now reject or wait: their callers run them again.
        for (t, ok) in batch.iter().zip(&accepted) {
            if !ok {
                t.decide(Outcome::Again);
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

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use serde::{Deserialize, Serialize};
    use stm_core::{StmResult, TVar, Transaction, TxError};

    use super::*;
    use crate::DirBackend;

    struct Counter(TVar<u64>);

    impl State for Counter {
        type Image = u64;
        fn image(&self, tx: &mut Transaction) -> StmResult<u64> {
            self.0.read(tx)
        }
        fn from_image(n: u64) -> Self {
            Counter(TVar::new(n))
        }
    }

    /// `Add(n, true)` panics whenever it runs: a command whose dry run passed in its caller's
    /// thread but whose check panics in the leader's.
    #[derive(Serialize, Deserialize)]
    struct Add(u64, bool);

    impl Command for Add {
        type State = Counter;
        type Output = u64;
        type Error = ();
        fn apply(&self, c: &Counter, tx: &mut Transaction) -> Result<u64, TxError<()>> {
            assert!(!self.1, "a command that panics in the leader");
            c.0.modify(tx, |n| n + self.0)?;
            Ok(c.0.read(tx)?)
        }
    }

    fn ticket(cmd: Add) -> Arc<Ticket<Add>> {
        let record = format::encode_record(Kind::Command, cmd.name(), &cmd).unwrap();
        Arc::new(Ticket {
            cmd: Mutex::new(cmd),
            record,
            outcome: Mutex::new(None),
            decided: Condvar::new(),
        })
    }

    #[test]
    fn a_panic_in_the_leader_fails_the_rest_of_its_batch_instead_of_stranding_it() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Box::new(DirBackend::open_shared(dir.path()).unwrap());
        let replica = Replica::<Add>::load(backend, None, || Counter(TVar::new(0))).unwrap();
        let shared = Shared::open(replica).unwrap();
        let batch = [ticket(Add(1, false)), ticket(Add(2, true))];
        let led = catch_unwind(AssertUnwindSafe(|| shared.commit_batch(&batch)));
        assert!(led.is_err(), "the check panicked");
        for t in &batch {
            assert!(
                matches!(
                    *t.outcome.lock(),
                    Some(Outcome::Failed(Error::CommandPanicked))
                ),
                "every caller of the batch is told"
            );
        }
        // The store goes on: nothing was appended, the next batch commits.
        let next = [ticket(Add(5, false))];
        shared.commit_batch(&next);
        assert!(matches!(*next[0].outcome.lock(), Some(Outcome::Done(5))));
    }
}
