//! The unbounded queue behind `TFifo::new` and `TChannel`: a chain of slots.
//!
//! Each slot is a `TVar` that is empty (the end of the queue) or holds a cell with a value and
//! the next slot. The producer end is a cursor on the empty slot at the end; each consumer end
//! is a cursor on the slot before its next value. A producer writes the empty end slot and its
//! own cursor; a consumer reads a slot and writes its own cursor. So producers and consumers
//! conflict only when the queue is empty (the consumer read the slot the producer fills), which
//! is exactly when the consumer must be woken.
//!
//! A cursor holds the slot, not the cell before it: once every cursor has moved past a cell,
//! nothing refers to it and its value is freed.
//!
//! The cell lives in its slot's value itself, not behind an `Arc`: readers borrow it
//! (`read_with`, `read_through`) and clone only the value and the next slot's handle, so a value
//! costs one variable and no allocation of its own.

use stm_core::{StmResult, TVar, Transaction};

/// A slot: `None` at the end of the queue, or the next value and the slot after it.
pub(crate) type Slot<T> = TVar<Option<Cell<T>>>;

pub(crate) struct Cell<T> {
    pub(crate) value: T,
    pub(crate) next: Slot<T>,
}

/// A position in the queue: how many values were put before it, and its slot.
pub(crate) struct Cursor<T> {
    pub(crate) seq: u64,
    pub(crate) slot: Slot<T>,
}

impl<T> Clone for Cursor<T> {
    fn clone(&self) -> Self {
        Self {
            seq: self.seq,
            slot: self.slot.clone(),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Cursor<T> {
    /// A cursor on a new, empty queue.
    pub(crate) fn empty() -> Self {
        Self {
            seq: 0,
            slot: TVar::new(None),
        }
    }
}

/// Appends `value` at `back`, the producer cursor.
pub(crate) fn push<T: Clone + Send + Sync + 'static>(
    tx: &mut Transaction,
    back: &TVar<Cursor<T>>,
    value: T,
) -> StmResult<()> {
    // Borrow the cursor while writing through its slot's handle: no handle clone.
    back.read_then(tx, |end, tx| {
        let next = TVar::new(None);
        end.slot.write(
            tx,
            Some(Cell {
                value,
                next: next.clone(),
            }),
        )?;
        back.write(
            tx,
            Cursor {
                seq: end.seq + 1,
                slot: next,
            },
        )
    })
}

/// What `f` makes of the next value after the consumer cursor `front`, without consuming it;
/// `None` if there is none. Reads through the cursor without cloning its slot's handle.
pub(crate) fn peek_with<T: Clone + Send + Sync + 'static, R>(
    tx: &mut Transaction,
    front: &TVar<Cursor<T>>,
    f: impl FnOnce(&T) -> R,
) -> StmResult<Option<R>> {
    front.read_through(tx, |at, reader| {
        reader.read_with(&at.slot, |cell| cell.as_ref().map(|c| f(&c.value)))
    })
}

/// Takes the next value after the consumer cursor `front`, or `None` if there is none.
pub(crate) fn pop<T: Clone + Send + Sync + 'static>(
    tx: &mut Transaction,
    front: &TVar<Cursor<T>>,
) -> StmResult<Option<T>> {
    // Borrow the cursor and the cell: clone only the value and the next slot's handle.
    let next = front.read_through(tx, |at, reader| {
        reader.read_with(&at.slot, |cell| {
            cell.as_ref()
                .map(|c| (c.value.clone(), at.seq + 1, c.next.clone()))
        })
    })?;
    let Some((value, seq, slot)) = next else {
        return Ok(None);
    };
    front.write(tx, Cursor { seq, slot })?;
    Ok(Some(value))
}

/// Whether nothing follows the consumer cursor `front`.
pub(crate) fn is_empty<T: Clone + Send + Sync + 'static>(
    tx: &mut Transaction,
    front: &TVar<Cursor<T>>,
) -> StmResult<bool> {
    front.read_through(tx, |at, reader| reader.read_with(&at.slot, Option::is_none))
}

/// Moves the consumer cursor `front` to the producer cursor `back`, dropping what is between.
pub(crate) fn clear<T: Clone + Send + Sync + 'static>(
    tx: &mut Transaction,
    front: &TVar<Cursor<T>>,
    back: &TVar<Cursor<T>>,
) -> StmResult<()> {
    if !is_empty(tx, front)? {
        let end = back.read(tx)?;
        front.write(tx, end)?;
    }
    Ok(())
}

/// The number of values between the consumer cursor `front` and the producer cursor `back`.
pub(crate) fn len<T: Clone + Send + Sync + 'static>(
    tx: &mut Transaction,
    front: &TVar<Cursor<T>>,
    back: &TVar<Cursor<T>>,
) -> StmResult<usize> {
    let first = front.read_with(tx, |c| c.seq)?;
    let end = back.read_with(tx, |c| c.seq)?;
    Ok(usize::try_from(end - first).unwrap_or(usize::MAX))
}
