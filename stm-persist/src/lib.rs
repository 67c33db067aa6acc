//! Durable, replayable, shareable transactional state for stmx, after SPTM and
//! cl-prevalence: the log records *commands*, not data.
//!
//! Every change to the state is a named, deterministic [`Command`] with serializable
//! arguments. [`Store::execute`] runs it in a transaction and returns once its record is
//! durable; replaying the log, in commit order, over the newest snapshot rebuilds exactly the
//! state every process saw. `docs/persistence.md` has the full model, the guarantees and the
//! on-disk format.
//!
//! - [`Store::open`]: one process owns the directory; commands are logged in commit order
//!   (through [`Transaction::while_committing`](stm_core::Transaction::while_committing)) and
//!   group-committed.
//! - [`Store::open_shared`]: several processes share the log with compare-and-append (SPTM's
//!   optimistic protocol); [`Store::sync`] and [`Options::follow`] roll forward.
//! - [`Store::read`]: read-only transactions, never waiting for the disk.
//! - [`Store::snapshot`], [`Store::record`], and the transaction checker [`Options::allow`].
//! - [`Backend`]: [`DirBackend`] (local directory) and, with the `postgres` feature,
//!   `PgBackend`.
//!
//! The other model, md.stm's shelf, is the module [`shelf`]: persistent objects stored by id
//! and loaded lazily, for state larger than memory.
//!
//! # Examples
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use stm_persist::{Command, State, Store};
//! use stmx::{StmResult, TVar, Transaction, TxError};
//!
//! struct Bank(Vec<TVar<i64>>);
//!
//! impl State for Bank {
//!     type Image = Vec<i64>;
//!     fn image(&self, tx: &mut Transaction) -> StmResult<Vec<i64>> {
//!         self.0.iter().map(|a| a.read(tx)).collect()
//!     }
//!     fn from_image(balances: Vec<i64>) -> Self {
//!         Bank(balances.into_iter().map(TVar::new).collect())
//!     }
//! }
//!
//! #[derive(Serialize, Deserialize)]
//! enum Op {
//!     Transfer { from: usize, to: usize, amount: i64 },
//! }
//!
//! impl Command for Op {
//!     type State = Bank;
//!     type Output = ();
//!     type Error = String;
//!     fn apply(&self, bank: &Bank, tx: &mut Transaction) -> Result<(), TxError<String>> {
//!         let Op::Transfer { from, to, amount } = *self;
//!         let balance = bank.0[from].read(tx)?;
//!         if balance < amount {
//!             return Err(TxError::Abort(format!("account {from} has only {balance}")));
//!         }
//!         bank.0[from].write(tx, balance - amount)?;
//!         bank.0[to].modify(tx, |b| b + amount)?;
//!         Ok(())
//!     }
//! }
//!
//! let dir = tempfile::tempdir().unwrap();
//! let open = || Store::<Op>::open(dir.path(), || Bank::from_image(vec![100, 0]));
//! {
//!     let bank = open()?;
//!     bank.execute(Op::Transfer { from: 0, to: 1, amount: 30 }).unwrap();
//!     assert!(bank.execute(Op::Transfer { from: 1, to: 0, amount: 99 }).is_err());
//!     bank.snapshot()?;
//!     bank.execute(Op::Transfer { from: 1, to: 0, amount: 5 }).unwrap();
//! }
//! let bank = open()?; // the snapshot, then the one record after it
//! assert_eq!(bank.read(|b, tx| b.image(tx)), [75, 25]);
//! # Ok::<(), stm_persist::Error>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod backend;
mod dir;
mod error;
mod exclusive;
mod format;
mod frame;
mod gather;
#[cfg(feature = "postgres")]
mod pg;
mod replay;
mod shared;
pub mod shelf;
mod store;

pub use backend::{Append, Backend};
pub use dir::DirBackend;
pub use error::{Error, ExecuteError, Result};
pub use format::FORMAT_VERSION;
#[cfg(feature = "postgres")]
pub use pg::PgBackend;
pub use store::{Command, Mode, Options, State, Store};

/// Entry points for the fuzz targets in `stm-persist/fuzz`: the decoders exactly as the store
/// uses them. Not part of the API.
#[doc(hidden)]
pub mod fuzz {
    use serde::de::DeserializeOwned;

    pub use crate::dir::{SegmentEnd, check_segment};
    use crate::error::Result;

    /// Decodes a log record found at `position` as a command of type `C`: its name and value.
    ///
    /// # Errors
    ///
    /// What the store reports for such a record.
    pub fn decode_record<C: DeserializeOwned>(bytes: &[u8], position: u64) -> Result<(String, C)> {
        let view = crate::format::view_record(bytes, position)?;
        let cmd = crate::format::decode_body(&view)?;
        Ok((view.name.to_string(), cmd))
    }

    /// Decodes a snapshot file as an image of type `I`: the position it covers and the image.
    ///
    /// # Errors
    ///
    /// What the store reports for such a snapshot.
    pub fn decode_snapshot<I: DeserializeOwned>(bytes: &[u8]) -> Result<(u64, I)> {
        crate::format::decode_snapshot(bytes, "snapshot")
    }
}
