//! The transaction engine of stmx: [`TVar`], [`atomically`], [`retry`], [`Transaction::or_else`].
//!
//! Most users depend on the `stmx` facade, which re-exports this crate.
//!
//! # Transactions
//!
//! Shared state lives in [`TVar`]s. A transaction is a closure passed to [`atomically`]: it
//! reads and writes variables through the `&mut Transaction` it is given, and when it returns
//! `Ok`, all its writes become visible to every thread at once. Functions that take
//! `&mut Transaction` compose: call several inside one `atomically` and they form one atomic
//! step. Transactions are serializable and *opaque*: every read, even in an attempt that will
//! be thrown away, sees one consistent snapshot, so an invariant that holds between commits
//! holds inside every transaction.
//!
//! # Conflicts and retry
//!
//! The engine is TL2: a global version clock, a versioned lock word per variable, writes
//! buffered until commit, commit-time locking and read validation. A transaction whose snapshot
//! is overtaken by another commit restarts (a *conflict*: [`StmError::Conflict`], propagated by
//! `?`), after a short randomized backoff; one that keeps losing eventually runs alone among
//! writers, so it cannot starve. Read-only transactions take no lock and do no atomic
//! read-modify-write.
//!
//! [`retry`] is different: the transaction found nothing to do. It blocks, without spinning,
//! until a variable it read is changed by a commit, then runs again. [`Transaction::or_else`]
//! tries an alternative instead of blocking, and [`optionally`] turns a blocking step into one
//! that returns `None`. [`try_atomically`] adds user aborts that roll everything back.
//!
//! # Hooks
//!
//! [`Transaction::before_commit`] runs code inside the transaction just before it commits;
//! [`Transaction::after_commit`] runs code once it has committed, outside any transaction: the
//! place for I/O, which must never happen inside a transaction (it may run many times).
//!
//! # Memory reclamation
//!
//! A write installs a new boxed value; the replaced one is freed through crossbeam-epoch once
//! no transaction that could be reading it is still running. Variables themselves are freed
//! the same way after their last handle is dropped.
//!
//! # Examples
//!
//! ```
//! use std::thread;
//! use stm_core::{TVar, atomically, retry};
//!
//! let mailbox: TVar<Option<String>> = TVar::new(None);
//! let sender = mailbox.clone();
//! let t = thread::spawn(move || atomically(|tx| sender.write(tx, Some("hi".into()))));
//! // Blocks until the other thread has put something in.
//! let msg = atomically(|tx| match mailbox.read(tx)? {
//!     Some(m) => { mailbox.write(tx, None)?; Ok(m) }
//!     None => retry(),
//! });
//! assert_eq!(msg, "hi");
//! t.join().unwrap();
//! ```
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod error;
mod raw;
mod stats;
mod sync;
mod transaction;
mod tvar;

pub use error::{StmError, StmResult, TxError, guard, retry, unwrap_or_retry};
pub use stats::{Stats, stats};
pub use transaction::{Transaction, atomically, optionally, try_atomically};
pub use tvar::TVar;

/// Frees, as far as possible now, the values replaced by earlier commits.
///
/// Replaced values are normally freed lazily, a little at a time, as transactions run; this
/// pushes the calling thread's deferred frees out and collects what no running transaction can
/// still see. Best effort: values that a transaction on another thread may still be reading
/// stay. Useful in tests that count drops, and before measuring memory.
///
/// # Examples
///
/// ```
/// use stm_core::{TVar, collect_garbage};
///
/// let v = TVar::new(vec![0_u8; 1024]);
/// v.write_atomic(Vec::new());
/// collect_garbage(); // the 1 KiB vector is freed now rather than later
/// ```
pub fn collect_garbage() {
    transaction::flush_retired();
    raw::reclaim::collect();
}
