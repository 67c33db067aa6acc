//! Read-only attempts: a transaction whose code only read before runs without a read set, and
//! everything it then does that needs one (a write, a `retry`, an ordered hook, a version newer
//! than its snapshot) re-runs it with one, losing nothing.
//!
//! One test function: it counts `stats().read_only_misses`, which are process-wide, so no other
//! test may run beside it.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use stmx::{StmError, TVar, TxError, atomically, retry, stats, try_atomically};

/// Runs `f` in a transaction `warm + 1` times as one site (sites are told apart by the call
/// site of `atomically`, here the caller's through `#[track_caller]`), calling `flip` before the
/// last run; returns the last result.
#[track_caller]
fn at_one_site<T>(
    warm: usize,
    flip: impl FnOnce(),
    f: impl Fn(&mut stmx::Transaction) -> stmx::StmResult<T>,
) -> T {
    let mut flip = Some(flip);
    let mut last = None;
    for i in 0..=warm {
        if i == warm {
            (flip.take().expect("once"))();
        }
        last = Some(atomically(&f));
    }
    last.expect("ran")
}

#[test]
fn read_only_attempts_lose_nothing() {
    // A site that only reads runs unlogged: no misses once warm.
    let counter = TVar::new(0_u64);
    let before = stats();
    for _ in 0..1000 {
        assert_eq!(atomically(|tx| counter.read(tx)), 0);
    }
    let d = stats() - before;
    assert_eq!(d.commits, 1000);
    assert_eq!(d.read_only_misses, 0, "a pure reader never misses");
    assert_eq!(d.conflicts, 0);

    // A site that only read, then writes: one miss, and the write lands.
    let write_now = Mutex::new(false);
    let site = |tx: &mut stmx::Transaction| {
        let v = counter.read(tx)?;
        if *write_now.lock().unwrap() {
            counter.write(tx, v + 1)?;
        }
        Ok(v)
    };
    let before = stats();
    let flip = || *write_now.lock().unwrap() = true;
    assert_eq!(at_one_site(3, flip, site), 0);
    assert_eq!(counter.read_atomic(), 1);
    let d = stats() - before;
    assert_eq!((d.read_only_misses, d.conflicts), (1, 0), "{d:?}");
    // Having written, the site keeps a read set: no more misses while it writes.
    let before = stats();
    assert_eq!(at_one_site(99, || {}, site), 100);
    assert_eq!(counter.read_atomic(), 101);
    assert_eq!((stats() - before).read_only_misses, 0);

    // A refused write whose error the closure swallows still lands: the attempt was void.
    let swallow_now = Mutex::new(false);
    let before = stats();
    at_one_site(
        3,
        || *swallow_now.lock().unwrap() = true,
        |tx| {
            let v = counter.read(tx)?;
            if *swallow_now.lock().unwrap() {
                let _ignored = counter.write(tx, 1000);
            }
            Ok(v)
        },
    );
    assert_eq!(counter.read_atomic(), 1000);
    assert_eq!((stats() - before).read_only_misses, 1);

    // Nor does a refused write turn into a user abort: the abort came from a void attempt.
    let abort_now = Mutex::new(false);
    let aborting = || {
        try_atomically(|tx| -> Result<u64, TxError<&str>> {
            let v = counter.read(tx)?;
            if *abort_now.lock().unwrap() {
                counter
                    .write(tx, 7)
                    .map_err(|_: StmError| TxError::Abort("refused"))?;
            }
            Ok(v)
        })
    };
    let before = stats();
    for i in 0..4 {
        if i == 3 {
            *abort_now.lock().unwrap() = true;
        }
        assert_eq!(aborting(), Ok(1000));
    }
    assert_eq!(counter.read_atomic(), 7);
    assert_eq!((stats() - before).read_only_misses, 1);

    // A read-only site that retries waits, and is woken, like any other.
    let flag = TVar::new(true);
    let before = stats();
    thread::scope(|s| {
        let got = at_one_site(
            3,
            || {
                flag.write_atomic(false);
                s.spawn(|| {
                    thread::sleep(Duration::from_millis(50));
                    flag.write_atomic(true);
                });
            },
            |tx| if flag.read(tx)? { Ok(1) } else { retry() },
        );
        assert_eq!(got, 1);
    });
    let d = stats() - before;
    assert_eq!(d.read_only_misses, 1);
    assert!(d.retries >= 1);

    // A read-only site with a `while_committing` hook is serialized like any hooked commit.
    let versions = Arc::new(Mutex::new(Vec::new()));
    at_one_site(
        4,
        || {},
        |tx| {
            let v = counter.read(tx)?;
            let versions = Arc::clone(&versions);
            tx.while_committing(move |cv| versions.lock().unwrap().push(cv));
            Ok(v)
        },
    );
    let versions = versions.lock().unwrap();
    assert_eq!(versions.len(), 5, "every hook ran once");
    assert!(versions.windows(2).all(|w| w[0] < w[1]));

    // A version newer than the snapshot: another thread's commit does not move the clock, so
    // a read-only attempt that meets it re-runs (with a read set) and reads the new value.
    let fresh = TVar::new(0_u64);
    let before = stats();
    for round in 1..=20 {
        thread::scope(|s| {
            s.spawn(|| fresh.write_atomic(round));
        });
        assert_eq!(atomically(|tx| fresh.read(tx)), round);
    }
    let d = stats() - before;
    assert!(d.read_only_misses >= 1, "{d:?}");
    assert_eq!(d.conflicts, 0);
}
