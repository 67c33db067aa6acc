//! `register_delay`: its variable becomes `true`, and 10,000 pending delays share one thread.
//!
//! A test binary of its own with one test: it counts the process's threads, which other tests
//! running in parallel would change.

use std::time::Duration;

use stmx::prelude::*;

fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|n| n.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

#[test]
fn register_delay_sets_its_variable_and_ten_thousand_share_one_thread() {
    let soon = register_delay(Duration::from_millis(10));
    let before = threads();
    let delays: Vec<TVar<bool>> = (0..10_000)
        .map(|i| register_delay(Duration::from_secs(3_600 + i)))
        .collect();
    let after = threads();
    assert!(
        after <= before + 1,
        "{before} threads before, {after} after"
    );
    atomically(|tx| guard(soon.read(tx)?));
    assert!(!delays[0].read_atomic());
    assert!(register_delay(Duration::ZERO).read_atomic());
    // A timeout as one alternative of an `or_else`.
    let never: TVar<Option<u8>> = TVar::new(None);
    let delay = register_delay(Duration::from_millis(15));
    let got = atomically(|tx| {
        tx.or_else(
            |tx| unwrap_or_retry(never.read(tx)?).map(Some),
            |tx| {
                guard(delay.read(tx)?)?;
                Ok(None)
            },
        )
    });
    assert_eq!(got, None);
}
