//! Transactional containers for stmx (`TCell`, `TStack`, `TFifo`, `TChannel`, `THashMap`, `TMap`).
//!
//! Not built yet: this crate is a placeholder until its own issue lands. It re-exports nothing.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
