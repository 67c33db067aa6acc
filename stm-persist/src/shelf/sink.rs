//! The write path: committed batches queue here in serialization order, and one writer thread
//! stores everything queued as one batch of the backend (group commit).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Condvar, Mutex};

use super::backend::{Backend, Change};
use super::error::{Error, Result};
use super::object::Obj;
use crate::gather::gather;

/// One object's committed change: its new record, or `None` for a delete. It keeps the object
/// in memory until stored, so that a fetch never reads an older record from the store.
pub(crate) struct Entry {
    pub(crate) obj: Arc<Obj>,
    pub(crate) body: Option<Vec<u8>>,
}

struct Queued {
    seq: u64,
    entries: Vec<Entry>,
}

#[derive(Default)]
struct State {
    queue: Vec<Queued>,
    /// The sequence number the next batch gets (batches are numbered from 1).
    next_seq: u64,
    /// Every batch up to this one is durable.
    durable: u64,
    failed: Option<Error>,
    closing: bool,
}

/// The queue between committing transactions and the writer thread.
pub(crate) struct Sink {
    pub(crate) backend: Box<dyn Backend>,
    state: Mutex<State>,
    queued: Condvar,
    stored: Condvar,
    pub(crate) batches: AtomicU64,
    pub(crate) syncs: AtomicU64,
    /// Callers inside `Shelf::atomically` (running their transaction or waiting for it to be
    /// durable), and batches queued: the writer waits briefly until every caller inside has
    /// queued, so that one sync covers them all. (`waiting` counts the batches queued.)
    pub(crate) inside: AtomicUsize,
    waiting: AtomicUsize,
}

thread_local! {
    /// The sequence number of the batch this thread's last commit queued, per sink.
    static LAST_SEQ: RefCell<Vec<(usize, u64)>> = const { RefCell::new(Vec::new()) };
}

impl Sink {
    pub(crate) fn new(backend: Box<dyn Backend>) -> Self {
        Sink {
            backend,
            state: Mutex::new(State {
                next_seq: 1,
                ..State::default()
            }),
            queued: Condvar::new(),
            stored: Condvar::new(),
            batches: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            inside: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    fn key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Queues one transaction's changes. Called from its `while_committing` hook, so batches
    /// queue in serialization order; short, never blocks on I/O.
    pub(crate) fn enqueue(&self, entries: Vec<Entry>) {
        let seq = {
            let mut state = self.state.lock();
            let seq = state.next_seq;
            state.next_seq += 1;
            state.queue.push(Queued { seq, entries });
            self.waiting.store(state.queue.len(), Ordering::Release);
            seq
        };
        self.queued.notify_one();
        let key = self.key();
        LAST_SEQ.with_borrow_mut(|last| match last.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = seq,
            None => last.push((key, seq)),
        });
    }

    /// Forgets (and returns) the batch this thread last queued here.
    pub(crate) fn take_last_seq(&self) -> Option<u64> {
        let key = self.key();
        LAST_SEQ.with_borrow_mut(|last| {
            let i = last.iter().position(|(k, _)| *k == key)?;
            Some(last.swap_remove(i).1)
        })
    }

    /// Waits until batch `seq` (and every batch before it) is durable.
    pub(crate) fn wait_durable(&self, seq: u64) -> Result<()> {
        let mut state = self.state.lock();
        loop {
            if state.durable >= seq {
                return Ok(());
            }
            if let Some(e) = &state.failed {
                return Err(e.clone());
            }
            self.stored.wait(&mut state);
        }
    }

    /// Waits until every batch queued so far is durable.
    pub(crate) fn flush(&self) -> Result<()> {
        let last = self.state.lock().next_seq - 1;
        self.wait_durable(last)
    }

    /// `Err` once a write has failed.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.state.lock().failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Tells the writer to store what is queued and stop.
    pub(crate) fn close(&self) {
        self.state.lock().closing = true;
        self.queued.notify_one();
    }

    /// The writer thread's loop: takes everything queued, stores it as one batch (the last
    /// change of each object wins), wakes the waiters, then releases the objects.
    pub(crate) fn run_writer(&self) {
        loop {
            let taken = {
                let mut state = self.state.lock();
                while state.queue.is_empty() && !state.closing {
                    self.queued.wait(&mut state);
                }
                if state.queue.is_empty() {
                    return;
                }
                drop(state);
                gather(&self.waiting, &self.inside);
                let mut state = self.state.lock();
                self.waiting.store(0, Ordering::Release);
                std::mem::take(&mut state.queue)
            };
            let last = taken.last().expect("not empty").seq;
            let result = if self.check().is_ok() {
                // A backend that panics fails the shelf like one that returns an error, so
                // that its waiters are told instead of waiting for a writer that is gone.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.store(&taken)))
                    .unwrap_or_else(|panic| {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        Err(Error::Store(format!("the backend panicked: {what}")))
                    })
            } else {
                Ok(()) // a failed shelf stores nothing more
            };
            if let Err(e) = &result {
                // Before the objects go: a fetch must not read the store's older state.
                self.state.lock().failed.get_or_insert_with(|| e.clone());
            }
            // Release the objects (their changes are in the store now) before waking anyone,
            // so that a caller who drops its last handles after `atomically` returns closes
            // the shelf on its own thread. Dropping an object locks the object map.
            drop(taken);
            {
                let mut state = self.state.lock();
                if result.is_ok() && state.failed.is_none() {
                    state.durable = last;
                }
            }
            self.stored.notify_all();
        }
    }

    fn store(&self, taken: &[Queued]) -> Result<()> {
        let mut changes: Vec<Change<'_>> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for entry in taken.iter().flat_map(|q| &q.entries) {
            let change = (entry.obj.pid(), entry.body.as_deref());
            match index.get(change.0) {
                Some(&i) => changes[i] = change,
                None => {
                    index.insert(change.0, changes.len());
                    changes.push(change);
                }
            }
        }
        self.backend.store(&changes)?;
        self.batches
            .fetch_add(taken.len() as u64, Ordering::Relaxed);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
