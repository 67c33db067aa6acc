//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses some of them

use std::thread;

use stmx::{StmResult, Transaction, atomically};

/// The message of a caught panic (`&str` or `String` payloads).
pub(crate) fn panic_message(err: Box<dyn std::any::Any + Send>) -> String {
    err.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Runs `mine` in a transaction. On the first attempt, after `mine` and before the commit,
/// `theirs` runs to completion on another (new) thread. Returns the number of attempts: 1 when
/// `theirs` did not conflict with `mine`.
pub(crate) fn attempts(
    mut mine: impl FnMut(&mut Transaction) -> StmResult<()>,
    theirs: impl Fn() + Sync,
) -> u32 {
    let mut attempts = 0;
    atomically(|tx| {
        attempts += 1;
        mine(tx)?;
        if attempts == 1 {
            thread::scope(|s| {
                s.spawn(&theirs);
            });
        }
        Ok(())
    });
    attempts
}
