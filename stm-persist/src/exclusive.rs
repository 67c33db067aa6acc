//! The exclusive flavour: this store is the log's only appender. Commands commit in memory,
//! their records are queued in commit order from inside the commit
//! ([`Transaction::while_committing`](stm_core::Transaction::while_committing)), and queued
//! records are group-committed: one append and one sync for every record ready at that moment.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::{Condvar, Mutex, MutexGuard};
use stm_core::{Transaction, atomically, try_atomically};

use crate::backend::Append;
use crate::error::{Error, ExecuteError, Result};
use crate::format::{self, Kind};
use crate::gather::{Inside, gather};
use crate::replay::Replica;
use crate::store::{Command, State};

pub(crate) struct Exclusive<C: Command> {
    pub(crate) replica: Replica<C>,
    queue: Mutex<Queue>,
    flush: Mutex<Flush>,
    flushed: Condvar,
    /// A write failed after its commands committed in memory: memory is ahead of the log.
    poisoned: AtomicBool,
    /// Callers inside `execute`.
    inside: AtomicUsize,
    /// How many records `queue` holds (read without its lock).
    queued: AtomicUsize,
}

/// The next records to append, in commit order.
struct Queue {
    /// The position the next committed command gets.
    next: u64,
    records: Vec<Vec<u8>>,
}

/// The group commit's state.
struct Flush {
    /// Every record at or before this position is durable.
    durable: u64,
    /// A caller is writing a batch.
    flushing: bool,
}

impl<C: Command> Exclusive<C> {
    /// Replays the log over the loaded snapshot and makes the log continue after it.
    pub(crate) fn open(replica: Replica<C>) -> Result<Self> {
        let end = replica.roll_forward()?;
        // A snapshot may cover records the log lacks (see `Backend::skip_to`): continue after
        // the snapshot, never under it.
        replica.backend.skip_to(end)?;
        let last = end - 1;
        Ok(Self {
            replica,
            queue: Mutex::new(Queue {
                next: end,
                records: Vec::new(),
            }),
            flush: Mutex::new(Flush {
                durable: last,
                flushing: false,
            }),
            flushed: Condvar::new(),
            poisoned: AtomicBool::new(false),
            inside: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
        })
    }

    fn check_healthy(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// The position of the last command committed in memory.
    pub(crate) fn position(&self) -> u64 {
        self.queue.lock().next - 1
    }

    pub(crate) fn execute(
        self: &Arc<Self>,
        kind: Kind,
        cmd: C,
    ) -> Result<C::Output, ExecuteError<C::Error>> {
        self.check_healthy()?;
        let record = format::encode_record(kind, cmd.name(), &cmd)?;
        // The record until the commit queues it, then the position it got.
        let slot = Rc::new((Cell::new(Some(record)), Cell::new(0)));
        let _inside = Inside::enter(&self.inside);
        let out = try_atomically(|tx| {
            let out = cmd.apply(&self.replica.state, tx)?;
            let (slot, this) = (Rc::clone(&slot), Arc::clone(self));
            tx.while_committing(move |_| {
                let bytes = slot.0.take().expect("one record per commit");
                slot.1.set(this.enqueue(bytes));
            });
            Ok(out)
        })
        .map_err(ExecuteError::Rejected)?;
        self.wait_durable(slot.1.get())?;
        Ok(out)
    }

    /// Inside `while_committing`: gives the record the next position.
    fn enqueue(&self, mut record: Vec<u8>) -> u64 {
        let mut q = self.queue.lock();
        let seq = q.next;
        q.next += 1;
        format::set_seq(&mut record, seq);
        q.records.push(record);
        self.queued.store(q.records.len(), Ordering::Release);
        seq
    }

    /// Takes a consistent image and the position it covers, once every record up to that
    /// position is durable: a snapshot never covers a record the log could still lose.
    pub(crate) fn image(self: &Arc<Self>) -> Result<(u64, <C::State as State>::Image)> {
        // The image's transaction takes a place in the commit order, so it contains exactly
        // the commands numbered up to `seq`.
        let seq = Rc::new(Cell::new(0));
        let image = atomically(|tx: &mut Transaction| {
            let image = self.replica.state.image(tx)?;
            let (at, this) = (Rc::clone(&seq), Arc::clone(self));
            tx.while_committing(move |_| at.set(this.queue.lock().next - 1));
            Ok(image)
        });
        let seq = seq.get();
        self.wait_durable(seq)?;
        Ok((seq, image))
    }

    /// Returns once every command committed so far is durable; its position.
    pub(crate) fn sync(&self) -> Result<u64> {
        let seq = self.position();
        self.wait_durable(seq)?;
        Ok(seq)
    }

    /// Returns once record `seq` is durable, writing a batch if nobody is.
    fn wait_durable(&self, seq: u64) -> Result<()> {
        let mut f = self.flush.lock();
        loop {
            if f.durable >= seq {
                return Ok(());
            }
            self.check_healthy()?;
            if f.flushing {
                self.flushed.wait(&mut f);
                continue;
            }
            f.flushing = true;
            let written = MutexGuard::unlocked(&mut f, || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.write_batch()))
            });
            f.flushing = false;
            self.flushed.notify_all();
            // A backend that panicked may or may not have written the batch: like a failed
            // write, the store is poisoned, and the waiters are told instead of waiting forever
            // for a writer that is gone.
            let written = written.unwrap_or_else(|panic| {
                self.poisoned.store(true, Ordering::Release);
                std::panic::resume_unwind(panic)
            });
            match written {
                Ok(durable) => f.durable = durable,
                Err(e) => {
                    self.poisoned.store(true, Ordering::Release);
                    return Err(e);
                }
            }
        }
    }

    /// Appends every queued record (one write, one sync); returns the last durable position.
    fn write_batch(&self) -> Result<u64> {
        // Callers inside `execute` without a queued record (running their transaction, or
        // just woken from the last sync and about to return and come back) will queue one in
        // a moment.
        gather(&self.queued, &self.inside);
        let (first, batch) = {
            let mut q = self.queue.lock();
            self.queued.store(0, Ordering::Release);
            (
                q.next - q.records.len() as u64,
                std::mem::take(&mut q.records),
            )
        };
        if batch.is_empty() {
            return Ok(first - 1);
        }
        match self.replica.backend.append(first, &batch)? {
            Append::Appended => Ok(first + batch.len() as u64 - 1),
            Append::Conflict { next } => Err(Error::NotExclusive {
                expected: first,
                found: next,
            }),
        }
    }
}
