//! Control flow of transactions: [`StmError`], [`TxError`], and the helpers built on them.

use std::fmt;

/// Why a transaction step stopped early. This is control flow, not failure: propagate it with
/// `?` and [`atomically`](crate::atomically) acts on it.
///
/// # Examples
///
/// ```
/// use stm_core::{StmError, StmResult, TVar, atomically, retry};
///
/// let ready = TVar::new(true);
/// let r: StmResult<u32> = retry();
/// assert_eq!(r, Err(StmError::Retry));
/// let v = atomically(|tx| if ready.read(tx)? { Ok(1) } else { retry() });
/// assert_eq!(v, 1);
/// ```
#[must_use]
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StmError {
    /// The transaction asked to block until a variable it read changes ([`retry`]).
    Retry,
    /// The transaction saw a concurrent commit and must restart from the beginning.
    Conflict,
}

impl fmt::Display for StmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StmError::Retry => "the transaction called retry",
            StmError::Conflict => "the transaction conflicted with a concurrent commit",
        })
    }
}

impl std::error::Error for StmError {}

/// The result of a transactional step.
///
/// # Examples
///
/// ```
/// use stm_core::{StmResult, TVar, Transaction, atomically};
///
/// fn take_one(tx: &mut Transaction, stock: &TVar<u32>) -> StmResult<u32> {
///     let n = stock.read(tx)?;
///     stock.write(tx, n - 1)?;
///     Ok(n - 1)
/// }
/// let stock = TVar::new(3);
/// assert_eq!(atomically(|tx| take_one(tx, &stock)), 2);
/// ```
pub type StmResult<T> = Result<T, StmError>;

/// The error type of [`try_atomically`](crate::try_atomically): the transaction's control flow,
/// or a user abort that rolls everything back.
///
/// `From<StmError>` is implemented, so `?` works on `TVar` calls inside `try_atomically`.
///
/// # Examples
///
/// ```
/// use stm_core::{TVar, TxError, try_atomically};
///
/// let balance = TVar::new(10);
/// let r = try_atomically(|tx| {
///     let b = balance.read(tx)?;
///     balance.write(tx, b - 50)?;
///     if b < 50 {
///         return Err(TxError::Abort("insufficient funds"));
///     }
///     Ok(())
/// });
/// assert_eq!(r, Err("insufficient funds"));
/// assert_eq!(balance.read_atomic(), 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxError<E> {
    /// Control flow ([`StmError::Retry`], [`StmError::Conflict`]), handled by the runtime.
    Stm(StmError),
    /// Abort the transaction: roll back every write and return `Err(e)` to the caller.
    Abort(E),
}

impl<E> TxError<E> {
    /// Maps the abort value with `f`, leaving control flow as it is: for code that calls a
    /// function with one error type inside a transaction that aborts with another.
    ///
    /// # Examples
    ///
    /// ```
    /// use stm_core::{TVar, TxError, try_atomically};
    ///
    /// let stock = TVar::new(0_u32);
    /// let take = |tx: &mut stm_core::Transaction| -> Result<u32, TxError<&'static str>> {
    ///     let n = stock.read(tx)?;
    ///     if n == 0 {
    ///         return Err(TxError::Abort("out of stock"));
    ///     }
    ///     Ok(n)
    /// };
    /// let r: Result<u32, String> =
    ///     try_atomically(|tx| take(tx).map_err(|e| e.map_abort(|m| format!("order 7: {m}"))));
    /// assert_eq!(r.unwrap_err(), "order 7: out of stock");
    /// ```
    pub fn map_abort<F>(self, f: impl FnOnce(E) -> F) -> TxError<F> {
        match self {
            TxError::Stm(e) => TxError::Stm(e),
            TxError::Abort(e) => TxError::Abort(f(e)),
        }
    }
}

impl<E> From<StmError> for TxError<E> {
    fn from(e: StmError) -> Self {
        TxError::Stm(e)
    }
}

impl<E: fmt::Display> fmt::Display for TxError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::Stm(e) => e.fmt(f),
            TxError::Abort(e) => write!(f, "transaction aborted: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for TxError<E> {}

/// Blocks the transaction until one of the variables it has read changes, then re-runs it.
///
/// Inside [`Transaction::or_else`](crate::Transaction::or_else), a retry in the first alternative runs the second instead.
///
/// # Panics
///
/// [`atomically`](crate::atomically) panics if a transaction retries having read no variable: it
/// would block forever.
///
/// # Examples
///
/// ```
/// use stm_core::{TVar, atomically, retry};
///
/// let slot = TVar::new(Some(5));
/// let v = atomically(|tx| match slot.read(tx)? {
///     Some(v) => { slot.write(tx, None)?; Ok(v) }
///     None => retry(), // wait for a producer
/// });
/// assert_eq!(v, 5);
/// ```
pub fn retry<T>() -> StmResult<T> {
    Err(StmError::Retry)
}

/// Retries unless `cond` holds.
///
/// # Examples
///
/// ```
/// use stm_core::{TVar, atomically, guard};
///
/// let count = TVar::new(2_u32);
/// atomically(|tx| {
///     let c = count.read(tx)?;
///     guard(c > 0)?; // blocks while the count is zero
///     count.write(tx, c - 1)
/// });
/// assert_eq!(count.read_atomic(), 1);
/// ```
pub fn guard(cond: bool) -> StmResult<()> {
    if cond { Ok(()) } else { retry() }
}

/// Returns the value inside `Some`, or retries on `None`.
///
/// # Examples
///
/// ```
/// use stm_core::{TVar, atomically, unwrap_or_retry};
///
/// let slot = TVar::new(Some("job"));
/// let job = atomically(|tx| {
///     let job = unwrap_or_retry(slot.read(tx)?)?;
///     slot.write(tx, None)?;
///     Ok(job)
/// });
/// assert_eq!(job, "job");
/// ```
pub fn unwrap_or_retry<T>(value: Option<T>) -> StmResult<T> {
    value.ok_or(StmError::Retry)
}
