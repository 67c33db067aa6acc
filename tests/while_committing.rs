//! `Transaction::while_committing`: hooks run once, only for the attempt that commits, and in
//! serialization order, so a log written from them replays to the live state.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use stmx::prelude::*;
use stmx::{CommitVersion, TxError, try_atomically};

const VARS: usize = 8;

/// One logged operation. `Copy` reads one variable and writes another, so replaying it in the
/// wrong order against a concurrent writer of its source gives a different result.
#[derive(Debug, Clone, Copy)]
enum Op {
    Transfer { from: usize, to: usize, n: i64 },
    Copy { from: usize, to: usize },
    Double { at: usize },
}

impl Op {
    fn apply_live(self, tx: &mut Transaction, vars: &[TVar<i64>]) -> StmResult<()> {
        match self {
            Op::Transfer { from, to, n } => {
                let f = vars[from].read(tx)?;
                if f >= n {
                    vars[from].write(tx, f - n)?;
                    vars[to].modify(tx, |t| t + n)?;
                }
                Ok(())
            }
            Op::Copy { from, to } => {
                let v = vars[from].read(tx)?;
                vars[to].write(tx, v)
            }
            Op::Double { at } => vars[at].modify(tx, |v| v.wrapping_mul(2) % 1_000_003),
        }
    }

    fn apply_model(self, model: &mut [i64]) {
        match self {
            Op::Transfer { from, to, n } => {
                if model[from] >= n {
                    model[from] -= n;
                    model[to] += n;
                }
            }
            Op::Copy { from, to } => model[to] = model[from],
            Op::Double { at } => model[at] = model[at].wrapping_mul(2) % 1_000_003,
        }
    }
}

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn a_log_written_while_committing_replays_to_the_live_state_under_contention() {
    let threads = 4;
    let ops_per_thread = if cfg!(debug_assertions) {
        3_000
    } else {
        20_000
    };
    let vars: Arc<Vec<TVar<i64>>> = Arc::new((0..VARS).map(|i| TVar::new(i as i64 * 10)).collect());
    let initial: Vec<i64> = vars.iter().map(TVar::read_atomic).collect();
    let log: Arc<Mutex<Vec<(CommitVersion, Op)>>> = Arc::default();
    let start = Arc::new(Barrier::new(threads));
    let workers: Vec<_> = (0..threads as u64)
        .map(|t| {
            let (vars, log, start) = (Arc::clone(&vars), Arc::clone(&log), Arc::clone(&start));
            thread::spawn(move || {
                let mut seed = 0x9E37_79B9 ^ ((t + 1) * 7919);
                start.wait();
                for _ in 0..ops_per_thread {
                    let (a, b) = (
                        next(&mut seed) as usize % VARS,
                        next(&mut seed) as usize % VARS,
                    );
                    let op = match next(&mut seed) % 3 {
                        0 => Op::Transfer {
                            from: a,
                            to: b,
                            n: (next(&mut seed) % 7) as i64,
                        },
                        1 => Op::Copy { from: a, to: b },
                        _ => Op::Double { at: a },
                    };
                    atomically(|tx| {
                        op.apply_live(tx, &vars)?;
                        let log = Arc::clone(&log);
                        tx.while_committing(move |v| log.lock().unwrap().push((v, op)));
                        Ok(())
                    });
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let log = log.lock().unwrap();
    assert_eq!(
        log.len(),
        threads * ops_per_thread as usize,
        "one entry per commit"
    );
    assert!(
        log.windows(2).all(|w| w[0].0 < w[1].0),
        "hooks ran in version order"
    );
    let mut model = initial;
    for &(_, op) in log.iter() {
        op.apply_model(&mut model);
    }
    let live: Vec<i64> = vars.iter().map(TVar::read_atomic).collect();
    assert_eq!(
        live, model,
        "replaying the hook order must reproduce the live state"
    );
}

#[test]
fn hooks_of_attempts_that_do_not_commit_never_run() {
    let v = TVar::new(0);
    let ran: Arc<Mutex<Vec<&str>>> = Arc::default();
    let hook = |name: &'static str| {
        let ran = Arc::clone(&ran);
        move |_: CommitVersion| ran.lock().unwrap().push(name)
    };
    // An aborted transaction.
    let r: Result<(), &str> = try_atomically(|tx| {
        v.write(tx, 1)?;
        tx.while_committing(hook("aborted"));
        Err(TxError::Abort("no"))
    });
    assert_eq!(r, Err("no"));
    // An alternative that retried, then one that committed.
    atomically(|tx| {
        tx.or_else(
            |tx| {
                tx.while_committing(hook("rolled back"));
                v.read(tx)?;
                retry()
            },
            |tx| {
                tx.while_committing(hook("second"));
                v.write(tx, 2)
            },
        )
    });
    assert_eq!(*ran.lock().unwrap(), ["second"]);
    assert_eq!(v.read_atomic(), 2);
}

#[test]
fn a_read_only_transaction_with_a_hook_gets_a_version_between_its_neighbours() {
    let v = TVar::new(0);
    let versions: Arc<Mutex<Vec<CommitVersion>>> = Arc::default();
    for write in [true, false, true] {
        atomically(|tx| {
            if write {
                v.modify(tx, |x| x + 1)?;
            } else {
                v.read(tx)?;
            }
            let versions = Arc::clone(&versions);
            tx.while_committing(move |ver| versions.lock().unwrap().push(ver));
            Ok(())
        });
    }
    let versions = versions.lock().unwrap();
    assert_eq!(versions.len(), 3);
    assert!(versions[0] < versions[1] && versions[1] < versions[2]);
}

#[test]
fn a_panicking_hook_commits_nothing_and_releases_every_lock() {
    let v = TVar::new(1);
    let r = catch_unwind(AssertUnwindSafe(|| {
        atomically(|tx| {
            v.write(tx, 99)?;
            tx.while_committing(|_| panic!("hook failed"));
            Ok(())
        })
    }));
    assert!(r.is_err());
    assert_eq!(v.read_atomic(), 1, "nothing was published");
    // The lock was released: writers and hooked writers still commit.
    atomically(|tx| v.write(tx, 2));
    atomically(|tx| {
        v.write(tx, 3)?;
        tx.while_committing(|_| {});
        Ok(())
    });
    assert_eq!(v.read_atomic(), 3);
}
