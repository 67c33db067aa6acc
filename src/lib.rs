//! stmx: software transactional memory for Rust, in the spirit of Common Lisp's STMX.
//!
//! Wrap shared state in [`TVar`]s and change it in [`atomically`] blocks that either commit as a
//! whole or leave no trace. Blocks compose: a function that takes `&mut Transaction` can be
//! called inside any larger transaction. [`retry`] blocks until something read changes,
//! [`Transaction::or_else`] tries alternatives, and hooks run code before or after commit.
//!
//! This crate is the facade: it re-exports [`stm_core`] (the TL2 engine). The guide is
//! `docs/guide.md`; the engine's design is `docs/design.md`.
//!
//! # Examples
//!
//! ```
//! use stmx::prelude::*;
//!
//! let (alice, bob) = (TVar::new(100_i64), TVar::new(0_i64));
//! atomically(|tx| {
//!     let a = alice.read(tx)?;
//!     guard(a >= 30)?; // block until alice can pay
//!     alice.write(tx, a - 30)?;
//!     bob.modify(tx, |b| b + 30)
//! });
//! assert_eq!((alice.read_atomic(), bob.read_atomic()), (70, 30));
//! ```
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]
#![forbid(unsafe_code)]

pub use stm_core::*;

/// The names most transactional code needs: `use stmx::prelude::*;`.
///
/// # Examples
///
/// ```
/// use stmx::prelude::*;
///
/// fn bump(tx: &mut Transaction, v: &TVar<u32>) -> StmResult<()> {
///     v.modify(tx, |n| n + 1)
/// }
/// let v = TVar::new(0);
/// atomically(|tx| bump(tx, &v));
/// assert_eq!(v.read_atomic(), 1);
/// ```
pub mod prelude {
    pub use stm_core::{
        StmError, StmResult, TVar, Transaction, TxError, atomically, guard, optionally, retry,
        try_atomically, unwrap_or_retry,
    };
}

/// The README's example, compiled and run as a doc test so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
