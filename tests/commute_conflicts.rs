//! Threads that only commute never restart (one test: `stats()` is process-wide).

use std::thread;

use stmx::prelude::*;

#[test]
fn threads_that_only_commute_lose_nothing_and_never_conflict() {
    let counter = TVar::new(0_u64);
    let per_thread = if cfg!(debug_assertions) {
        2_000
    } else {
        20_000
    };
    for threads in [2, 8] {
        let before = stmx::stats();
        atomically(|tx| counter.write(tx, 0));
        thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..per_thread {
                        atomically(|tx| counter.commute(tx, |n| n + 1));
                    }
                });
            }
        });
        let delta = stmx::stats() - before;
        assert_eq!(
            counter.read_atomic(),
            threads * per_thread,
            "no lost increment"
        );
        assert_eq!(
            delta.conflicts, 0,
            "{threads} threads: commuting never conflicts"
        );
    }
    // Two counters commuted in opposite orders: each commit waits for the other's lock
    // rather than give up, which is safe only because commits lock in address order.
    let (a, b) = (TVar::new(0_u64), TVar::new(0_u64));
    let before = stmx::stats();
    thread::scope(|s| {
        for forward in [true, false] {
            let (first, second) = if forward { (&a, &b) } else { (&b, &a) };
            s.spawn(move || {
                for _ in 0..per_thread {
                    atomically(|tx| {
                        first.commute(tx, |n| n + 1)?;
                        second.commute(tx, |n| n + 1)
                    });
                }
            });
        }
    });
    let delta = stmx::stats() - before;
    assert_eq!(
        (a.read_atomic(), b.read_atomic()),
        (2 * per_thread, 2 * per_thread)
    );
    assert_eq!(
        delta.conflicts, 0,
        "two counters in opposite orders: no conflict"
    );
}
