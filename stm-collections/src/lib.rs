//! Transactional containers for stmx, after STMX's: [`TCell`], [`TStack`], [`TFifo`],
//! [`TChannel`] with [`TPort`], [`THashMap`], [`TMap`] and [`TSet`]; and, after Haskell's
//! `stm`, [`TArray`] and [`TSem`]; and [`MegaRef`], a whole world in one reference with
//! conflicts at path granularity (after Christophe Grand's megaref).
//!
//! # Composing
//!
//! Every method takes the transaction, so container operations compose with each other and
//! with any transactional code: moving an item from one container to another is one atomic
//! block, and a transaction that reads several containers sees them all at one instant.
//!
//! # Blocking
//!
//! `take` on an empty container and `put` on a full one wait with
//! [`retry`](stm_core::retry): the thread sleeps until a variable the transaction read changes,
//! without spinning for long. Inside [`Transaction::or_else`](stm_core::Transaction::or_else)
//! the retry moves on to the alternative instead, so "take from whichever queue has a value"
//! is `tx.or_else(|tx| a.take(tx), |tx| b.take(tx))`. The `try_` methods never wait.
//!
//! # Handles
//!
//! Each container is a handle: `clone` gives a second handle to the same container, as
//! `TVar::clone` does. Containers are `Send + Sync` when their contents are. Values are
//! cloned out (they must be `Clone + Send + Sync + 'static`, like any `TVar` value); wrap
//! large ones in `Arc`.
//!
//! # Examples
//!
//! ```
//! use stm_collections::{TFifo, TMap};
//! use stm_core::atomically;
//!
//! let jobs = TFifo::new();
//! let done = TMap::new();
//! atomically(|tx| jobs.put(tx, (1, "build")));
//! // Take a job and record it, atomically: a crash in between cannot lose it.
//! atomically(|tx| {
//!     let (id, name) = jobs.take(tx)?;
//!     done.insert(tx, id, name)
//! });
//! assert_eq!(atomically(|tx| done.get(tx, &1)), Some("build"));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod counter;
mod list;
mod megaref;
mod queue;
mod tarray;
mod tcell;
mod tchannel;
mod tfifo;
mod thash_map;
mod tmap;
mod tsem;
mod tset;
mod tstack;

pub use megaref::{MegaRef, World};
pub use tarray::TArray;
pub use tcell::TCell;
pub use tchannel::{TChannel, TPort};
pub use tfifo::TFifo;
pub use thash_map::{DefaultHashBuilder, THashMap};
pub use tmap::TMap;
pub use tsem::TSem;
pub use tset::TSet;
pub use tstack::TStack;
