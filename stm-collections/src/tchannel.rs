//! `TChannel` and `TPort`: a transactional multicast channel (STMX's `TCHANNEL`, `TPORT`).

use std::fmt;

use stm_core::{StmResult, TVar, Transaction, retry};

use crate::queue::{self, Cursor};

/// The sending end of a multicast channel: every [`TPort`] receives every value put after it
/// was created. STMX's `TCHANNEL`.
///
/// The channel is unbounded, so [`put`](Self::put) never waits. It keeps no values itself:
/// a value stays only while some port has still to take it, and with no ports, `put` keeps
/// nothing. Cloning gives a second handle to the same channel.
///
/// # Examples
///
/// ```
/// use stm_collections::{TChannel, TPort};
/// use stm_core::atomically;
///
/// let channel = TChannel::new();
/// let (a, b) = (TPort::new(&channel), channel.subscribe());
/// atomically(|tx| channel.put(tx, "news"));
/// // Each port sees the value.
/// assert_eq!(atomically(|tx| a.take(tx)), "news");
/// assert_eq!(atomically(|tx| b.take(tx)), "news");
/// ```
pub struct TChannel<T> {
    back: TVar<Cursor<T>>,
}

impl<T> Clone for TChannel<T> {
    fn clone(&self) -> Self {
        Self {
            back: self.back.clone(),
        }
    }
}

impl<T> fmt::Debug for TChannel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TChannel").finish_non_exhaustive()
    }
}

impl<T: Clone + Send + Sync + 'static> Default for TChannel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + Send + Sync + 'static> TChannel<T> {
    /// Creates a channel with no ports.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TChannel; use stm_core::atomically;
    /// let channel = TChannel::new();
    /// atomically(|tx| channel.put(tx, 1)); // no port: the value is dropped
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            back: TVar::new(Cursor::empty()),
        }
    }

    /// Sends `value` to every port that exists when the transaction commits; never waits.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TChannel; use stm_core::atomically;
    /// let channel = TChannel::new();
    /// let port = channel.subscribe();
    /// atomically(|tx| channel.put(tx, 1));
    /// assert_eq!(atomically(|tx| port.take(tx)), 1);
    /// ```
    pub fn put(&self, tx: &mut Transaction, value: T) -> StmResult<()> {
        queue::push(tx, &self.back, value)
    }

    /// The same as [`put`](Self::put): a channel is unbounded, so this always returns
    /// `Ok(())`. It exists so code can treat channels and bounded queues alike.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TChannel; use stm_core::atomically;
    /// let channel = TChannel::new();
    /// assert_eq!(atomically(|tx| channel.try_put(tx, 1)), Ok(()));
    /// ```
    pub fn try_put(&self, tx: &mut Transaction, value: T) -> StmResult<Result<(), T>> {
        self.put(tx, value).map(Ok)
    }

    /// A new port that receives the values put after this call; the same as
    /// [`TPort::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TChannel; use stm_core::atomically;
    /// let channel = TChannel::new();
    /// atomically(|tx| channel.put(tx, 1)); // before the port: not received
    /// let port = channel.subscribe();
    /// atomically(|tx| channel.put(tx, 2));
    /// assert_eq!(atomically(|tx| port.take(tx)), 2);
    /// ```
    #[must_use]
    pub fn subscribe(&self) -> TPort<T> {
        TPort::new(self)
    }

    /// A new port that receives the values put after this transaction, for subscribing as
    /// part of a larger transaction.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TChannel; use stm_core::atomically;
    /// let channel = TChannel::new();
    /// let port = atomically(|tx| {
    ///     channel.put(tx, 1)?; // put in the same transaction, before subscribing: not received
    ///     channel.subscribe_in(tx)
    /// });
    /// assert!(atomically(|tx| port.is_empty(tx)));
    /// ```
    pub fn subscribe_in(&self, tx: &mut Transaction) -> StmResult<TPort<T>> {
        let at = self.back.read(tx)?;
        Ok(TPort {
            front: TVar::new(at),
            back: self.back.clone(),
        })
    }
}

/// A receiving end of a [`TChannel`]: it takes, in order, every value put on the channel after
/// the port was created. STMX's `TPORT`.
///
/// Ports consume independently: taking from one port does not affect another. Cloning a port
/// gives a second handle to the *same* port, so threads that share a port share its values,
/// each value going to one of them; make a port per consumer with [`TPort::new`] for each to
/// see every value.
///
/// # Examples
///
/// ```
/// use stm_collections::{TChannel, TPort};
/// use stm_core::atomically;
///
/// let channel = TChannel::new();
/// let port = TPort::new(&channel);
/// let shared = port.clone(); // the same port
/// atomically(|tx| { channel.put(tx, 1)?; channel.put(tx, 2) });
/// assert_eq!(atomically(|tx| port.take(tx)), 1);
/// assert_eq!(atomically(|tx| shared.take(tx)), 2);
/// ```
pub struct TPort<T> {
    front: TVar<Cursor<T>>,
    /// The channel's end, for `len`.
    back: TVar<Cursor<T>>,
}

impl<T> Clone for TPort<T> {
    fn clone(&self) -> Self {
        Self {
            front: self.front.clone(),
            back: self.back.clone(),
        }
    }
}

impl<T> fmt::Debug for TPort<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TPort").finish_non_exhaustive()
    }
}

impl<T: Clone + Send + Sync + 'static> TPort<T> {
    /// A new port on `channel`, receiving the values put after this call.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::{TChannel, TPort}; use stm_core::atomically;
    /// let channel = TChannel::new();
    /// let port = TPort::new(&channel);
    /// atomically(|tx| channel.put(tx, 'x'));
    /// assert_eq!(atomically(|tx| port.try_take(tx)), Some('x'));
    /// ```
    #[must_use]
    pub fn new(channel: &TChannel<T>) -> Self {
        Self {
            front: TVar::new(channel.back.read_atomic()),
            back: channel.back.clone(),
        }
    }

    /// Removes and returns the port's next value; waits (retries) while there is none.
    ///
    /// # Errors
    ///
    /// [`StmError::Retry`](stm_core::StmError::Retry) while empty, and conflicts: propagate
    /// them with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TChannel; use stm_core::atomically;
    /// let channel = TChannel::new();
    /// let port = channel.subscribe();
    /// atomically(|tx| channel.put(tx, 5));
    /// assert_eq!(atomically(|tx| port.take(tx)), 5);
    /// ```
    pub fn take(&self, tx: &mut Transaction) -> StmResult<T> {
        match self.try_take(tx)? {
            Some(value) => Ok(value),
            None => retry(),
        }
    }

    /// Removes and returns the port's next value, or `None` if there is none; never waits.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TChannel; use stm_core::atomically;
    /// let port = TChannel::<u8>::new().subscribe();
    /// assert_eq!(atomically(|tx| port.try_take(tx)), None);
    /// ```
    pub fn try_take(&self, tx: &mut Transaction) -> StmResult<Option<T>> {
        queue::pop(tx, &self.front)
    }

    /// A copy of the port's next value, leaving it there; `None` if there is none.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TChannel; use stm_core::atomically;
    /// let channel = TChannel::new();
    /// let port = channel.subscribe();
    /// atomically(|tx| channel.put(tx, 5));
    /// assert_eq!(atomically(|tx| port.peek(tx)), Some(5));
    /// assert_eq!(atomically(|tx| port.take(tx)), 5);
    /// ```
    pub fn peek(&self, tx: &mut Transaction) -> StmResult<Option<T>> {
        self.peek_with(tx, T::clone)
    }

    /// What `f` makes of the next value, without taking or cloning it; `None` if there is none.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TChannel; use stm_core::atomically;
    /// let channel = TChannel::new();
    /// let port = channel.subscribe();
    /// atomically(|tx| channel.put(tx, vec![0_u8; 1024]));
    /// assert_eq!(atomically(|tx| port.peek_with(tx, Vec::len)), Some(1024));
    /// ```
    pub fn peek_with<R>(
        &self,
        tx: &mut Transaction,
        f: impl FnOnce(&T) -> R,
    ) -> StmResult<Option<R>> {
        queue::peek_with(tx, &self.front, f)
    }

    /// Whether the port has no value to take.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TChannel; use stm_core::atomically;
    /// let port = TChannel::<u8>::new().subscribe();
    /// assert!(atomically(|tx| port.is_empty(tx)));
    /// ```
    pub fn is_empty(&self, tx: &mut Transaction) -> StmResult<bool> {
        queue::is_empty(tx, &self.front)
    }

    /// The number of values the port has yet to take. Reads the channel's end too, so it
    /// conflicts with every `put`.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TChannel; use stm_core::atomically;
    /// let channel = TChannel::new();
    /// let port = channel.subscribe();
    /// atomically(|tx| { channel.put(tx, 1)?; channel.put(tx, 2) });
    /// assert_eq!(atomically(|tx| port.len(tx)), 2);
    /// ```
    pub fn len(&self, tx: &mut Transaction) -> StmResult<usize> {
        queue::len(tx, &self.front, &self.back)
    }

    /// Skips every value the port has yet to take; other ports keep theirs.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TChannel; use stm_core::atomically;
    /// let channel = TChannel::new();
    /// let (a, b) = (channel.subscribe(), channel.subscribe());
    /// atomically(|tx| channel.put(tx, 1));
    /// atomically(|tx| a.clear(tx));
    /// assert!(atomically(|tx| a.is_empty(tx)));
    /// assert_eq!(atomically(|tx| b.take(tx)), 1);
    /// ```
    pub fn clear(&self, tx: &mut Transaction) -> StmResult<()> {
        queue::clear(tx, &self.front, &self.back)
    }
}
