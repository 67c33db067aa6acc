//! `TStack`: a transactional LIFO stack (STMX's `TSTACK`).

use std::fmt;

use stm_core::{StmResult, TVar, Transaction, retry};

use crate::list::{self, Link, Node};

/// A transactional last-in-first-out stack, unbounded. STMX's `TSTACK`.
///
/// [`pop`](Self::pop) (alias [`take`](Self::take)) waits with [`retry`] while the stack is
/// empty. The stack is one `TVar` holding an immutable shared list, so a push costs one
/// allocation and `len` is O(1); two concurrent pushes conflict, as they must. Cloning gives a
/// second handle to the same stack.
///
/// # Examples
///
/// ```
/// use stm_collections::TStack;
/// use stm_core::atomically;
///
/// let stack = TStack::new();
/// atomically(|tx| {
///     stack.push(tx, 1)?;
///     stack.push(tx, 2)
/// });
/// assert_eq!(atomically(|tx| stack.pop(tx)), 2);
/// assert_eq!(atomically(|tx| stack.len(tx)), 1);
/// ```
pub struct TStack<T> {
    head: TVar<Link<T>>,
}

impl<T> Clone for TStack<T> {
    fn clone(&self) -> Self {
        Self {
            head: self.head.clone(),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> fmt::Debug for TStack<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TStack")
            .field("len", &list::len(&self.head.read_atomic()))
            .finish_non_exhaustive()
    }
}

impl<T: Clone + Send + Sync + 'static> Default for TStack<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + Send + Sync + 'static> TStack<T> {
    /// Creates an empty stack.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TStack; use stm_core::atomically;
    /// let stack = TStack::<u8>::new();
    /// assert!(atomically(|tx| stack.is_empty(tx)));
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            head: TVar::new(None),
        }
    }

    /// Pushes `value` on top; never waits.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TStack; use stm_core::atomically;
    /// let stack = TStack::new();
    /// atomically(|tx| stack.push(tx, 'a'));
    /// assert_eq!(atomically(|tx| stack.peek(tx)), Some('a'));
    /// ```
    pub fn push(&self, tx: &mut Transaction, value: T) -> StmResult<()> {
        let head = self.head.read(tx)?;
        self.head.write(tx, Some(Node::push(value, head)))
    }

    /// The same as [`push`](Self::push), under STMX's name.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TStack; use stm_core::atomically;
    /// let stack = TStack::new();
    /// atomically(|tx| stack.put(tx, 1));
    /// assert_eq!(atomically(|tx| stack.take(tx)), 1);
    /// ```
    pub fn put(&self, tx: &mut Transaction, value: T) -> StmResult<()> {
        self.push(tx, value)
    }

    /// Removes and returns the top value; waits (retries) while the stack is empty.
    ///
    /// # Errors
    ///
    /// [`StmError::Retry`](stm_core::StmError::Retry) while empty, and conflicts: propagate
    /// them with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TStack; use stm_core::atomically;
    /// let stack = TStack::new();
    /// atomically(|tx| { stack.push(tx, 1)?; stack.push(tx, 2) });
    /// assert_eq!(atomically(|tx| stack.pop(tx)), 2);
    /// assert_eq!(atomically(|tx| stack.pop(tx)), 1);
    /// ```
    pub fn pop(&self, tx: &mut Transaction) -> StmResult<T> {
        match self.try_take(tx)? {
            Some(value) => Ok(value),
            None => retry(),
        }
    }

    /// The same as [`pop`](Self::pop), under STMX's name.
    ///
    /// # Errors
    ///
    /// [`StmError::Retry`](stm_core::StmError::Retry) while empty, and conflicts: propagate
    /// them with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TStack; use stm_core::atomically;
    /// let stack = TStack::new();
    /// atomically(|tx| stack.put(tx, 1));
    /// assert_eq!(atomically(|tx| stack.take(tx)), 1);
    /// ```
    pub fn take(&self, tx: &mut Transaction) -> StmResult<T> {
        self.pop(tx)
    }

    /// Removes and returns the top value, or `None` if the stack is empty; never waits.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TStack; use stm_core::atomically;
    /// let stack = TStack::<u8>::new();
    /// assert_eq!(atomically(|tx| stack.try_take(tx)), None);
    /// ```
    pub fn try_take(&self, tx: &mut Transaction) -> StmResult<Option<T>> {
        let Some(top) = self.head.read(tx)? else {
            return Ok(None);
        };
        self.head.write(tx, top.next.clone())?;
        Ok(Some(top.value.clone()))
    }

    /// A copy of the top value, leaving it on the stack; `None` if empty.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TStack; use stm_core::atomically;
    /// let stack = TStack::new();
    /// atomically(|tx| stack.push(tx, 3));
    /// assert_eq!(atomically(|tx| stack.peek(tx)), Some(3));
    /// assert_eq!(atomically(|tx| stack.len(tx)), 1);
    /// ```
    pub fn peek(&self, tx: &mut Transaction) -> StmResult<Option<T>> {
        self.peek_with(tx, T::clone)
    }

    /// What `f` makes of the top value, without popping or cloning it; `None` if the stack is
    /// empty.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TStack; use stm_core::atomically;
    /// let stack = TStack::new();
    /// atomically(|tx| stack.push(tx, vec![1, 2, 3]));
    /// assert_eq!(atomically(|tx| stack.peek_with(tx, |v| v.len())), Some(3));
    /// ```
    pub fn peek_with<R>(
        &self,
        tx: &mut Transaction,
        f: impl FnOnce(&T) -> R,
    ) -> StmResult<Option<R>> {
        self.head
            .read_with(tx, |head| head.as_ref().map(|n| f(&n.value)))
    }

    /// The number of values; O(1).
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TStack; use stm_core::atomically;
    /// let stack = TStack::new();
    /// atomically(|tx| { stack.push(tx, 1)?; stack.push(tx, 1) });
    /// assert_eq!(atomically(|tx| stack.len(tx)), 2);
    /// ```
    pub fn len(&self, tx: &mut Transaction) -> StmResult<usize> {
        self.head.read_with(tx, list::len)
    }

    /// Whether the stack is empty.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TStack; use stm_core::atomically;
    /// assert!(atomically(|tx| TStack::<u8>::new().is_empty(tx)));
    /// ```
    pub fn is_empty(&self, tx: &mut Transaction) -> StmResult<bool> {
        self.head.read_with(tx, Option::is_none)
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
    /// # use stm_collections::TStack; use stm_core::atomically;
    /// let stack = TStack::new();
    /// atomically(|tx| { stack.push(tx, 1)?; stack.clear(tx) });
    /// assert!(atomically(|tx| stack.is_empty(tx)));
    /// ```
    pub fn clear(&self, tx: &mut Transaction) -> StmResult<()> {
        if !self.is_empty(tx)? {
            self.head.write(tx, None)?;
        }
        Ok(())
    }
}
