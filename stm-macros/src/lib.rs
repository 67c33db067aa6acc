//! The `#[transactional]` attribute for stmx.
//!
//! Not built yet: this crate is a placeholder until its own issue lands. It exports nothing.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
