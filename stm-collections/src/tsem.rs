//! `TSem`: a transactional counting semaphore.

use std::fmt;

use stm_core::{StmResult, TVar, Transaction, retry};

/// A counting semaphore whose operations are transactional (Haskell's `TSem`): acquiring a
/// permit and doing what it guards can be one atomic step, and a transaction that holds
/// permits and then aborts gives them back by construction.
///
/// Cloning gives a second handle to the same semaphore.
///
/// # Examples
///
/// ```
/// use stm_collections::TSem;
/// use stm_core::atomically;
///
/// let connections = TSem::new(2);
/// atomically(|tx| connections.acquire(tx));
/// atomically(|tx| connections.acquire(tx));
/// assert!(!atomically(|tx| connections.try_acquire(tx))); // both taken
/// atomically(|tx| connections.release(tx));
/// assert_eq!(atomically(|tx| connections.available(tx)), 1);
/// ```
#[derive(Clone)]
pub struct TSem {
    permits: TVar<usize>,
}

impl fmt::Debug for TSem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TSem")
            .field("available", &self.permits.read_atomic())
            .finish()
    }
}

impl TSem {
    /// A semaphore with `permits` permits available.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TSem; use stm_core::atomically;
    /// assert_eq!(atomically(|tx| TSem::new(3).available(tx)), 3);
    /// ```
    pub fn new(permits: usize) -> Self {
        Self {
            permits: TVar::new(permits),
        }
    }

    /// Takes a permit, waiting while none is available.
    ///
    /// # Retries
    ///
    /// Calls [`retry`] while no permit is available: the transaction blocks until a release
    /// (or, in an `or_else`, moves on to the alternative).
    ///
    /// # Errors
    ///
    /// `Err(StmError::Retry)` as said, or a conflict: propagate them with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TSem; use stm_core::atomically;
    /// let sem = TSem::new(1);
    /// atomically(|tx| sem.acquire(tx));
    /// assert_eq!(atomically(|tx| sem.available(tx)), 0);
    /// ```
    pub fn acquire(&self, tx: &mut Transaction) -> StmResult<()> {
        let n = self.permits.read(tx)?;
        if n == 0 {
            return retry();
        }
        self.permits.write(tx, n - 1)
    }

    /// Takes a permit if one is available; never waits. Returns whether it took one.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TSem; use stm_core::atomically;
    /// let sem = TSem::new(0);
    /// assert!(!atomically(|tx| sem.try_acquire(tx)));
    /// ```
    pub fn try_acquire(&self, tx: &mut Transaction) -> StmResult<bool> {
        let n = self.permits.read(tx)?;
        if n == 0 {
            return Ok(false);
        }
        self.permits.write(tx, n - 1)?;
        Ok(true)
    }

    /// Gives a permit back, waking a transaction waiting in [`acquire`](Self::acquire).
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TSem; use stm_core::atomically;
    /// let sem = TSem::new(0);
    /// atomically(|tx| sem.release(tx));
    /// assert!(atomically(|tx| sem.try_acquire(tx)));
    /// ```
    pub fn release(&self, tx: &mut Transaction) -> StmResult<()> {
        self.release_n(tx, 1)
    }

    /// Gives `n` permits back at once (Haskell's `signalTSemN`).
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Panics
    ///
    /// If the count would overflow `usize`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TSem; use stm_core::atomically;
    /// let sem = TSem::new(1);
    /// atomically(|tx| sem.release_n(tx, 4));
    /// assert_eq!(atomically(|tx| sem.available(tx)), 5);
    /// ```
    pub fn release_n(&self, tx: &mut Transaction, n: usize) -> StmResult<()> {
        if n == 0 {
            return Ok(());
        }
        let available = self.permits.read(tx)?;
        let total = available
            .checked_add(n)
            .unwrap_or_else(|| panic!("TSem: {available} + {n} permits overflow usize"));
        self.permits.write(tx, total)
    }

    /// The number of permits available now.
    ///
    /// # Errors
    ///
    /// Passes on a conflict: propagate it with `?`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use stm_collections::TSem; use stm_core::atomically;
    /// assert_eq!(atomically(|tx| TSem::new(2).available(tx)), 2);
    /// ```
    pub fn available(&self, tx: &mut Transaction) -> StmResult<usize> {
        self.permits.read(tx)
    }
}
