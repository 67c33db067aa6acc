//! `TFifo`: a transactional FIFO queue, unbounded or bounded (STMX's `TFIFO`).

use std::fmt;
use std::sync::Arc;

use stm_core::{StmResult, TVar, Transaction, retry};

use crate::queue::{self, Cursor};

/// A transactional first-in-first-out queue. STMX's `TFIFO`.
///
/// [`TFifo::new`] makes an unbounded queue and [`TFifo::bounded`] one that holds at most `n`
/// values, whose [`put`](Self::put) waits (with [`retry`]) while it is full. [`take`](Self::take)
/// waits while the queue is empty. Cloning gives a second handle to the same queue.
///
/// Producers and consumers use different `TVar`s (the two ends), so a `put` and a `take` do
/// not conflict unless the queue is empty (or, bounded, full). Several producers do conflict
/// with each other, and several consumers with each other: each end is one `TVar`, which is
/// what keeps the order.
///
/// # Examples
///
/// ```
/// use std::thread;
/// use stm_collections::TFifo;
/// use stm_core::atomically;
///
/// let fifo = TFifo::bounded(2);
/// let producer = {
///     let fifo = fifo.clone();
///     thread::spawn(move || {
///         for i in 0..10 {
///             atomically(|tx| fifo.put(tx, i)); // waits while 2 values are queued
///         }
///     })
/// };
/// for i in 0..10 {
///     assert_eq!(atomically(|tx| fifo.take(tx)), i);
/// }
/// producer.join().unwrap();
/// ```
pub struct TFifo<T> {
    inner: Arc<Flavor<T>>,
}

enum Flavor<T> {
    /// A chain of slots; see `queue`.
    Unbounded {
        front: TVar<Cursor<T>>,
        back: TVar<Cursor<T>>,
    },
    /// A ring of `slots.len()` slots. Value number `i` goes in slot `i % len`; `head` counts
    /// the values taken and `tail` those put. A slot is full iff it holds a value put and not
    /// yet taken, so the producer finds the ring full by looking at its next slot, and never
    /// reads `head`.
    Bounded {
        slots: Box<[TVar<Option<T>>]>,
        head: TVar<u64>,
        tail: TVar<u64>,
    },
}

impl<T> Clone for TFifo<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> fmt::Debug for TFifo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `read_atomic` rather than a transaction, so that it works inside one too.
        let (taken, put) = match &*self.inner {
            Flavor::Unbounded { front, back } => (front.read_atomic().seq, back.read_atomic().seq),
            Flavor::Bounded { head, tail, .. } => (head.read_atomic(), tail.read_atomic()),
        };
        f.debug_struct("TFifo")
            .field("len", &put.saturating_sub(taken))
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

impl<T: Clone + Send + Sync + 'static> Default for TFifo<T> {
    fn default() -> Self {
        Self::new()
    }
}

fn slot_index(position: u64, len: usize) -> usize {
    // The remainder is below `len`, a `usize`.
    (position % len as u64) as usize
}

impl<T: Clone + Send + Sync + 'static> TFifo<T> {
    /// Creates an empty, unbounded queue.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TFifo;
    /// let fifo = TFifo::<u8>::new();
    /// assert_eq!(fifo.capacity(), None);
    /// ```
    #[must_use]
    pub fn new() -> Self {
        let end = Cursor::empty();
        Self {
            inner: Arc::new(Flavor::Unbounded {
                front: TVar::new(end.clone()),
                back: TVar::new(end),
            }),
        }
    }

    /// Creates an empty queue that holds at most `capacity` values.
    ///
    /// # Panics
    ///
    /// If `capacity` is 0: such a queue could never pass a value on.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TFifo; use stm_core::atomically;
    /// let fifo = TFifo::bounded(1);
    /// assert_eq!(atomically(|tx| fifo.try_put(tx, 'a')), Ok(()));
    /// assert_eq!(atomically(|tx| fifo.try_put(tx, 'b')), Err('b'));
    /// ```
    #[must_use]
    pub fn bounded(capacity: usize) -> Self {
        assert!(
            capacity > 0,
            "TFifo::bounded: the capacity must be at least 1"
        );
        Self {
            inner: Arc::new(Flavor::Bounded {
                slots: (0..capacity).map(|_| TVar::new(None)).collect(),
                head: TVar::new(0),
                tail: TVar::new(0),
            }),
        }
    }

    /// The most values the queue holds: `Some(n)` for [`bounded`](Self::bounded), `None` for
    /// an unbounded queue.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TFifo;
    /// assert_eq!(TFifo::<u8>::bounded(8).capacity(), Some(8));
    /// ```
    #[must_use]
    pub fn capacity(&self) -> Option<usize> {
        match &*self.inner {
            Flavor::Unbounded { .. } => None,
            Flavor::Bounded { slots, .. } => Some(slots.len()),
        }
    }

    /// Appends `value`; waits (retries) while a bounded queue is full.
    ///
    /// # Errors
    ///
    /// [`StmError::Retry`](stm_core::StmError::Retry) while full, and conflicts: propagate
    /// them with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TFifo; use stm_core::atomically;
    /// let fifo = TFifo::new();
    /// atomically(|tx| { fifo.put(tx, 1)?; fifo.put(tx, 2) });
    /// assert_eq!(atomically(|tx| fifo.take(tx)), 1);
    /// ```
    pub fn put(&self, tx: &mut Transaction, value: T) -> StmResult<()> {
        match self.try_put(tx, value)? {
            Ok(()) => Ok(()),
            Err(_) => retry(),
        }
    }

    /// Appends `value` if there is room; if a bounded queue is full, gives `value` back as
    /// `Err`. An unbounded queue always has room.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TFifo; use stm_core::atomically;
    /// let fifo = TFifo::bounded(1);
    /// assert_eq!(atomically(|tx| fifo.try_put(tx, 1)), Ok(()));
    /// assert_eq!(atomically(|tx| fifo.try_put(tx, 2)), Err(2));
    /// ```
    pub fn try_put(&self, tx: &mut Transaction, value: T) -> StmResult<Result<(), T>> {
        match &*self.inner {
            Flavor::Unbounded { back, .. } => queue::push(tx, back, value).map(Ok),
            Flavor::Bounded { slots, tail, .. } => {
                let position = tail.read(tx)?;
                let slot = &slots[slot_index(position, slots.len())];
                if slot.read_with(tx, Option::is_some)? {
                    return Ok(Err(value));
                }
                slot.write(tx, Some(value))?;
                tail.write(tx, position + 1)?;
                Ok(Ok(()))
            }
        }
    }

    /// Removes and returns the oldest value; waits (retries) while the queue is empty.
    ///
    /// # Errors
    ///
    /// [`StmError::Retry`](stm_core::StmError::Retry) while empty, and conflicts: propagate
    /// them with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TFifo; use stm_core::atomically;
    /// let fifo = TFifo::new();
    /// atomically(|tx| fifo.put(tx, "a"));
    /// assert_eq!(atomically(|tx| fifo.take(tx)), "a");
    /// ```
    pub fn take(&self, tx: &mut Transaction) -> StmResult<T> {
        match self.try_take(tx)? {
            Some(value) => Ok(value),
            None => retry(),
        }
    }

    /// Removes and returns the oldest value, or `None` if the queue is empty; never waits.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TFifo; use stm_core::atomically;
    /// let fifo = TFifo::<u8>::new();
    /// assert_eq!(atomically(|tx| fifo.try_take(tx)), None);
    /// ```
    pub fn try_take(&self, tx: &mut Transaction) -> StmResult<Option<T>> {
        match &*self.inner {
            Flavor::Unbounded { front, .. } => queue::pop(tx, front),
            Flavor::Bounded { slots, head, .. } => {
                let position = head.read(tx)?;
                let slot = &slots[slot_index(position, slots.len())];
                let Some(value) = slot.read(tx)? else {
                    return Ok(None);
                };
                slot.write(tx, None)?;
                head.write(tx, position + 1)?;
                Ok(Some(value))
            }
        }
    }

    /// A copy of the oldest value, leaving it queued; `None` if the queue is empty.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TFifo; use stm_core::atomically;
    /// let fifo = TFifo::new();
    /// atomically(|tx| fifo.put(tx, 9));
    /// assert_eq!(atomically(|tx| fifo.peek(tx)), Some(9));
    /// assert_eq!(atomically(|tx| fifo.len(tx)), 1);
    /// ```
    pub fn peek(&self, tx: &mut Transaction) -> StmResult<Option<T>> {
        self.peek_with(tx, T::clone)
    }

    /// What `f` makes of the oldest value, without taking or cloning it; `None` if the queue
    /// is empty.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TFifo; use stm_core::atomically;
    /// let fifo = TFifo::bounded(4);
    /// atomically(|tx| fifo.put(tx, String::from("first")));
    /// assert_eq!(atomically(|tx| fifo.peek_with(tx, String::len)), Some(5));
    /// ```
    pub fn peek_with<R>(
        &self,
        tx: &mut Transaction,
        f: impl FnOnce(&T) -> R,
    ) -> StmResult<Option<R>> {
        match &*self.inner {
            Flavor::Unbounded { front, .. } => queue::peek_with(tx, front, f),
            Flavor::Bounded { slots, head, .. } => {
                let position = head.read(tx)?;
                slots[slot_index(position, slots.len())].read_with(tx, |v| v.as_ref().map(f))
            }
        }
    }

    /// The number of values queued. It reads both ends, so it conflicts with any `put` or
    /// `take`; keep it out of hot transactions.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TFifo; use stm_core::atomically;
    /// let fifo = TFifo::bounded(4);
    /// atomically(|tx| { fifo.put(tx, 1)?; fifo.put(tx, 2) });
    /// assert_eq!(atomically(|tx| fifo.len(tx)), 2);
    /// ```
    pub fn len(&self, tx: &mut Transaction) -> StmResult<usize> {
        match &*self.inner {
            Flavor::Unbounded { front, back } => queue::len(tx, front, back),
            Flavor::Bounded { head, tail, .. } => {
                let taken = head.read(tx)?;
                let put = tail.read(tx)?;
                Ok(usize::try_from(put - taken).unwrap_or(usize::MAX))
            }
        }
    }

    /// Whether the queue is empty. Reads only the consumer end.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TFifo; use stm_core::atomically;
    /// assert!(atomically(|tx| TFifo::<u8>::new().is_empty(tx)));
    /// ```
    pub fn is_empty(&self, tx: &mut Transaction) -> StmResult<bool> {
        match &*self.inner {
            Flavor::Unbounded { front, .. } => queue::is_empty(tx, front),
            Flavor::Bounded { slots, head, .. } => {
                let position = head.read(tx)?;
                slots[slot_index(position, slots.len())].read_with(tx, Option::is_none)
            }
        }
    }

    /// Takes every queued value at once, oldest first; an empty `Vec` if there is none. Never
    /// blocks (Haskell's `flushTBQueue`). It reads the consumer end and the slots up to the
    /// first empty one, which is where the next `put` goes: taking everything means seeing the
    /// end, so a drain conflicts with a concurrent `put`, as a `take` of an empty queue does.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TFifo; use stm_core::atomically;
    /// let fifo = TFifo::bounded(8);
    /// atomically(|tx| { fifo.put(tx, 1)?; fifo.put(tx, 2)?; fifo.put(tx, 3) });
    /// assert_eq!(atomically(|tx| fifo.drain(tx)), [1, 2, 3]);
    /// assert!(atomically(|tx| fifo.drain(tx)).is_empty());
    /// ```
    pub fn drain(&self, tx: &mut Transaction) -> StmResult<Vec<T>> {
        let mut out = Vec::new();
        match &*self.inner {
            Flavor::Unbounded { front, .. } => {
                let at = front.read(tx)?;
                let mut slot = at.slot.clone();
                while let Some(next) = slot.read_with(tx, |cell| {
                    cell.as_ref().map(|c| {
                        out.push(c.value.clone());
                        c.next.clone()
                    })
                })? {
                    slot = next;
                }
                if !out.is_empty() {
                    front.write(
                        tx,
                        queue::Cursor {
                            seq: at.seq + out.len() as u64,
                            slot,
                        },
                    )?;
                }
            }
            Flavor::Bounded { slots, head, .. } => {
                let first = head.read(tx)?;
                let mut position = first;
                while out.len() < slots.len() {
                    let slot = &slots[slot_index(position, slots.len())];
                    let Some(value) = slot.read(tx)? else {
                        break;
                    };
                    slot.write(tx, None)?;
                    out.push(value);
                    position += 1;
                }
                if position != first {
                    head.write(tx, position)?;
                }
            }
        }
        Ok(out)
    }

    /// Removes every value.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TFifo; use stm_core::atomically;
    /// let fifo = TFifo::new();
    /// atomically(|tx| { fifo.put(tx, 1)?; fifo.clear(tx) });
    /// assert!(atomically(|tx| fifo.is_empty(tx)));
    /// ```
    pub fn clear(&self, tx: &mut Transaction) -> StmResult<()> {
        match &*self.inner {
            Flavor::Unbounded { front, back } => queue::clear(tx, front, back),
            Flavor::Bounded { slots, head, tail } => {
                let (first, end) = (head.read(tx)?, tail.read(tx)?);
                for position in first..end {
                    slots[slot_index(position, slots.len())].write(tx, None)?;
                }
                if first != end {
                    head.write(tx, end)?;
                }
                Ok(())
            }
        }
    }
}
