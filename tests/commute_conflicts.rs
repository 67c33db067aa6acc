//! Threads that only commute one counter never restart (one test: `stats()` is process-wide).

use std::thread;

use stmx::prelude::*;

#[test]
fn eight_threads_commuting_one_counter_lose_nothing_and_never_conflict() {
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
}
