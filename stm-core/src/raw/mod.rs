//! The engine: every `unsafe` block of stmx lives below this module.
//!
//! - [`versioned_lock`]: the per-variable lock word (lock bit, waiter bit, version).
//! - [`clock`]: the global version clock, advanced lazily by readers.
//! - [`alloc`]: value boxes in fixed size classes, recycled per thread.
//! - [`tvar`]: the heap object behind a `TVar`, reference-counted, freed through the epoch.
//! - [`reclaim`]: crossbeam-epoch (or a stand-in under loom) and the per-thread recycler.
//! - [`tx`]: read and write logs, nesting, the commit protocol, blocking on `retry`.
//! - [`parking`]: the registry where `retry` waiters sleep and commits find them.
//!
//! `docs/design.md` describes the protocol and the invariants each `unsafe` block relies on.

pub(crate) mod alloc;
pub(crate) mod clock;
pub(crate) mod parking;
pub(crate) mod reclaim;
pub(crate) mod tvar;
pub(crate) mod tx;
pub(crate) mod versioned_lock;

#[cfg(all(test, stm_loom))]
mod loom_tests;
