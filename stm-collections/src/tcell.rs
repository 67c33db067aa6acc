//! `TCell`: a transactional slot that is empty or holds one value (STMX's `TCELL`).

use std::fmt;

use stm_core::{StmResult, TVar, Transaction, retry};

/// A transactional cell: empty, or full with one value. STMX's `TCELL`.
///
/// [`take`](Self::take) waits (with [`retry`]) while the cell is empty and [`put`](Self::put)
/// while it is full, so a `TCell` is a one-slot channel between threads. Cloning gives a
/// second handle to the same cell.
///
/// # Examples
///
/// ```
/// use std::thread;
/// use stm_collections::TCell;
/// use stm_core::atomically;
///
/// let cell = TCell::new();
/// let consumer = {
///     let cell = cell.clone();
///     thread::spawn(move || atomically(|tx| cell.take(tx))) // waits for a value
/// };
/// atomically(|tx| cell.put(tx, "hello"));
/// assert_eq!(consumer.join().unwrap(), "hello");
/// assert!(atomically(|tx| cell.is_empty(tx)));
/// ```
pub struct TCell<T> {
    slot: TVar<Option<T>>,
}

impl<T> Clone for TCell<T> {
    fn clone(&self) -> Self {
        Self {
            slot: self.slot.clone(),
        }
    }
}

impl<T: fmt::Debug + Clone + Send + Sync + 'static> fmt::Debug for TCell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TCell")
            .field(&self.slot.read_atomic())
            .finish()
    }
}

impl<T: Clone + Send + Sync + 'static> Default for TCell<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + Send + Sync + 'static> TCell<T> {
    /// Creates an empty cell.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TCell; use stm_core::atomically;
    /// let cell = TCell::<u8>::new();
    /// assert!(atomically(|tx| cell.is_empty(tx)));
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            slot: TVar::new(None),
        }
    }

    /// Creates a full cell holding `value`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TCell; use stm_core::atomically;
    /// let cell = TCell::with_value(5);
    /// assert!(atomically(|tx| cell.is_full(tx)));
    /// ```
    #[must_use]
    pub fn with_value(value: T) -> Self {
        Self {
            slot: TVar::new(Some(value)),
        }
    }

    /// Whether the cell is empty.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TCell; use stm_core::atomically;
    /// assert!(atomically(|tx| TCell::<u8>::new().is_empty(tx)));
    /// ```
    pub fn is_empty(&self, tx: &mut Transaction) -> StmResult<bool> {
        self.slot.read_with(tx, Option::is_none)
    }

    /// Whether the cell holds a value.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TCell; use stm_core::atomically;
    /// assert!(atomically(|tx| TCell::with_value(1).is_full(tx)));
    /// ```
    pub fn is_full(&self, tx: &mut Transaction) -> StmResult<bool> {
        self.slot.read_with(tx, Option::is_some)
    }

    /// Removes and returns the value; waits (retries) while the cell is empty.
    ///
    /// # Errors
    ///
    /// [`StmError::Retry`](stm_core::StmError::Retry) while empty, and conflicts: propagate
    /// them with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TCell; use stm_core::atomically;
    /// let cell = TCell::with_value(7);
    /// assert_eq!(atomically(|tx| cell.take(tx)), 7);
    /// ```
    pub fn take(&self, tx: &mut Transaction) -> StmResult<T> {
        match self.try_take(tx)? {
            Some(value) => Ok(value),
            None => retry(),
        }
    }

    /// Stores `value`; waits (retries) while the cell is full.
    ///
    /// # Errors
    ///
    /// [`StmError::Retry`](stm_core::StmError::Retry) while full, and conflicts: propagate
    /// them with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TCell; use stm_core::atomically;
    /// let cell = TCell::new();
    /// atomically(|tx| cell.put(tx, 7));
    /// assert_eq!(atomically(|tx| cell.peek(tx)), Some(7));
    /// ```
    pub fn put(&self, tx: &mut Transaction, value: T) -> StmResult<()> {
        match self.try_put(tx, value)? {
            Ok(()) => Ok(()),
            Err(_) => retry(),
        }
    }

    /// Removes and returns the value, or `None` if the cell is empty; never waits.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TCell; use stm_core::atomically;
    /// let cell = TCell::with_value(7);
    /// assert_eq!(atomically(|tx| cell.try_take(tx)), Some(7));
    /// assert_eq!(atomically(|tx| cell.try_take(tx)), None);
    /// ```
    pub fn try_take(&self, tx: &mut Transaction) -> StmResult<Option<T>> {
        let Some(value) = self.slot.read(tx)? else {
            return Ok(None);
        };
        self.slot.write(tx, None)?;
        Ok(Some(value))
    }

    /// Stores `value` if the cell is empty; if it is full, gives `value` back as `Err`.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TCell; use stm_core::atomically;
    /// let cell = TCell::new();
    /// assert_eq!(atomically(|tx| cell.try_put(tx, 1)), Ok(()));
    /// assert_eq!(atomically(|tx| cell.try_put(tx, 2)), Err(2));
    /// ```
    pub fn try_put(&self, tx: &mut Transaction, value: T) -> StmResult<Result<(), T>> {
        if self.is_full(tx)? {
            return Ok(Err(value));
        }
        self.slot.write(tx, Some(value))?;
        Ok(Ok(()))
    }

    /// A copy of the value, leaving it in the cell; `None` if empty.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TCell; use stm_core::atomically;
    /// let cell = TCell::with_value("x");
    /// assert_eq!(atomically(|tx| cell.peek(tx)), Some("x"));
    /// assert!(atomically(|tx| cell.is_full(tx)));
    /// ```
    pub fn peek(&self, tx: &mut Transaction) -> StmResult<Option<T>> {
        self.peek_with(tx, T::clone)
    }

    /// What `f` makes of the value, without taking or cloning it; `None` if the cell is empty.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TCell; use stm_core::atomically;
    /// let cell = TCell::with_value(vec![0_u8; 4096]);
    /// assert_eq!(atomically(|tx| cell.peek_with(tx, Vec::len)), Some(4096));
    /// ```
    pub fn peek_with<R>(
        &self,
        tx: &mut Transaction,
        f: impl FnOnce(&T) -> R,
    ) -> StmResult<Option<R>> {
        self.slot.read_with(tx, |value| value.as_ref().map(f))
    }

    /// Empties the cell, dropping its value if it has one.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TCell; use stm_core::atomically;
    /// let cell = TCell::with_value(1);
    /// atomically(|tx| cell.clear(tx));
    /// assert!(atomically(|tx| cell.is_empty(tx)));
    /// ```
    pub fn clear(&self, tx: &mut Transaction) -> StmResult<()> {
        if self.is_full(tx)? {
            self.slot.write(tx, None)?;
        }
        Ok(())
    }
}
