//! Asynchronous transactions: [`atomically_async`] and [`try_atomically_async`] await a
//! `retry` instead of blocking the thread.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::{StmResult, TxError};
use crate::raw::parking::Waiter;
use crate::raw::tx::deregister;
use crate::sync::Arc;
use crate::transaction::{Ended, RetryStep, Transaction, run_with, site_of};

/// A transaction run by polling: each `poll` runs attempts until one commits, aborts, or
/// retries; a retry registers the task's waker on what the attempt read and returns `Pending`.
struct TxFuture<F, T, E> {
    f: F,
    site: usize,
    /// The task's waiter, made at its first `retry` and kept for the next ones.
    waiter: Option<Arc<Waiter>>,
    /// The variables the waiter is registered on while the future is pending.
    registered: Option<Vec<usize>>,
    done: bool,
    _output: PhantomData<fn() -> (T, E)>,
}

// The future never pins `f` (it only calls it through `&mut`), so it may move freely between
// polls whatever `F` is.
impl<F, T, E> Unpin for TxFuture<F, T, E> {}

impl<F, T, E> fmt::Debug for TxFuture<F, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxFuture")
            .field("waiting_on", &self.registered.as_ref().map_or(0, Vec::len))
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<F, T, E> TxFuture<F, T, E> {
    fn deregister(&mut self) {
        if let (Some(addrs), Some(waiter)) = (self.registered.take(), &self.waiter) {
            deregister(&addrs, waiter);
        }
    }
}

impl<F, T, E> Drop for TxFuture<F, T, E> {
    fn drop(&mut self) {
        self.deregister();
    }
}

impl<F, T, E> Future for TxFuture<F, T, E>
where
    F: FnMut(&mut Transaction) -> Result<T, TxError<E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(
            !this.done,
            "stmx: a transaction future was polled after it completed"
        );
        // Woken (or polled early): the registrations of the last retry have done their job.
        this.deregister();
        let mut registered = None;
        let slot = &mut this.waiter;
        let outcome = run_with(this.site, &mut this.f, |tx: &mut Transaction| {
            // Made at the first retry only: most transactions never wait.
            let waiter = slot.get_or_insert_with(Waiter::for_task);
            // The waker first: a commit that sees a registration must find it.
            waiter.set_waker(cx.waker());
            match tx.raw.register_task(waiter) {
                None => RetryStep::Rerun,
                Some(addrs) => {
                    registered = Some(addrs);
                    RetryStep::Pending
                }
            }
        });
        match outcome {
            Ok(v) => {
                this.done = true;
                Poll::Ready(Ok(v))
            }
            Err(Ended::Abort(e)) => {
                this.done = true;
                Poll::Ready(Err(e))
            }
            Err(Ended::Pending) => {
                this.registered = registered;
                Poll::Pending
            }
            Err(Ended::TimedOut) => unreachable!("no deadline"),
        }
    }
}

/// [`atomically`](crate::atomically) for async code: where the transaction would block in
/// [`retry`](crate::retry), the future returns `Pending` and is woken by a commit that changes
/// a variable it read, instead of parking the thread.
///
/// The closure is the same synchronous closure `atomically` takes, so every `TVar`, container
/// and `#[transactional]` accessor works unchanged. It runs when the future is polled; a
/// commit happens entirely inside one `poll`, and `after_commit` hooks run in that poll before
/// it returns `Ready`. The future is runtime-agnostic (only `std::task`) and `Send` when the
/// closure and `T` are, so `tokio::spawn` takes it.
///
/// # Retries
///
/// `f` re-runs after a conflict, and after a `retry` once the task is woken by a change to a
/// variable it read (in any `or_else` alternative). Touch nothing but `TVar`s in it.
///
/// # Cancel safety
///
/// Cancel-safe: dropping the future at any point (for example in `tokio::select!` or under
/// `tokio::time::timeout`) leaves nothing half done, since a commit happens entirely inside
/// one `poll`. It also deregisters the future's waker and leaks nothing. A dropped future
/// has committed either nothing or everything (then its result is lost with it).
///
/// # Panics
///
/// As [`atomically`](crate::atomically): if polled inside a running transaction, or if `f`
/// retries having read no variable. Also if polled again after it completed.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use stm_core::{TVar, atomically_async, guard};
///
/// let ready = Arc::new(TVar::new(false));
/// let waiting = {
///     let ready = Arc::clone(&ready);
///     atomically_async(move |tx| guard(ready.read(tx)?))
/// };
/// let setter = std::thread::spawn(move || ready.write_atomic(true));
/// futures_executor::block_on(waiting); // awaits, without blocking in `retry`
/// setter.join().unwrap();
/// ```
#[track_caller]
pub fn atomically_async<T>(
    mut f: impl FnMut(&mut Transaction) -> StmResult<T>,
) -> impl Future<Output = T> {
    let site = site_of(&f);
    let future = TxFuture {
        f: move |tx: &mut Transaction| f(tx).map_err(TxError::<std::convert::Infallible>::Stm),
        site,
        waiter: None,
        registered: None,
        done: false,
        _output: PhantomData,
    };
    async move {
        match future.await {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }
}

/// [`try_atomically`](crate::try_atomically) for async code: as [`atomically_async`], with a
/// closure that may abort with [`TxError::Abort`].
///
/// # Retries
///
/// As [`atomically_async`].
///
/// # Cancel safety
///
/// As [`atomically_async`]: cancel-safe.
///
/// # Errors
///
/// The abort value of the transaction; nothing was committed.
///
/// # Examples
///
/// ```
/// use stm_core::{TVar, TxError, try_atomically_async};
///
/// let stock = TVar::new(0_u32);
/// let order = try_atomically_async(|tx| {
///     let n = stock.read(tx)?;
///     if n == 0 {
///         return Err(TxError::Abort("sold out"));
///     }
///     Ok(stock.write(tx, n - 1)?)
/// });
/// assert_eq!(futures_executor::block_on(order), Err("sold out"));
/// ```
#[track_caller]
pub fn try_atomically_async<T, E>(
    f: impl FnMut(&mut Transaction) -> Result<T, TxError<E>>,
) -> impl Future<Output = Result<T, E>> {
    TxFuture {
        site: site_of(&f),
        f,
        waiter: None,
        registered: None,
        done: false,
        _output: PhantomData,
    }
}
