//! `TVar::commute`: applied at commit to the latest value, in order, visible to later reads
//! (which then conflict as `modify` would), undone with scopes, panic-safe.

use std::panic::{AssertUnwindSafe, catch_unwind};

use proptest::prelude::*;
use stmx::prelude::*;

mod common;
use common::{attempts, panic_message};

#[test]
fn commutes_apply_in_order_and_later_reads_see_them() {
    let v = TVar::new(3_i64);
    let seen = atomically(|tx| {
        v.commute(tx, |x| x * 2)?;
        v.commute(tx, |x| x + 1)?;
        v.read(tx)
    });
    assert_eq!(seen, 7);
    assert_eq!(v.read_atomic(), 7);
    // Without a read, at commit: the same order.
    atomically(|tx| {
        v.commute(tx, |x| x * 2)?;
        v.commute(tx, |x| x + 1)
    });
    assert_eq!(v.read_atomic(), 15);
    // Boxed values too.
    let s = TVar::new(String::from("a"));
    atomically(|tx| {
        s.commute(tx, |x| format!("{x}b"))?;
        s.commute(tx, |x| format!("{x}c"))
    });
    assert_eq!(s.read_atomic(), "abc");
}

#[test]
fn a_write_replaces_earlier_commutes_and_later_commutes_apply_to_it() {
    let v = TVar::new(1);
    atomically(|tx| {
        v.commute(tx, |x| x + 100)?;
        v.write(tx, 5)?;
        v.commute(tx, |x| x * 3)
    });
    assert_eq!(v.read_atomic(), 15);
}

#[test]
fn a_commute_only_transaction_does_not_conflict_with_a_concurrent_write() {
    let v = TVar::new(0);
    let n = attempts(|tx| v.commute(tx, |x| x + 1), || v.write_atomic(10));
    assert_eq!(n, 1, "commute does not read");
    assert_eq!(v.read_atomic(), 11, "applied to the latest value");
    // Two commuters never conflict with each other either.
    let n = attempts(
        |tx| v.commute(tx, |x| x + 1),
        || atomically(|tx| v.commute(tx, |x| x * 2)),
    );
    assert_eq!(n, 1);
    assert_eq!(v.read_atomic(), 23);
}

#[test]
fn reading_what_was_commuted_conflicts_like_modify() {
    let v = TVar::new(0);
    let n = attempts(
        |tx| {
            v.commute(tx, |x| x + 1)?;
            v.read(tx).map(drop)
        },
        || v.write_atomic(10),
    );
    assert_eq!(n, 2, "the read is validated");
    assert_eq!(v.read_atomic(), 11);
}

#[test]
fn commutes_roll_back_with_their_scope_and_with_rollback() {
    let v = TVar::new(0);
    atomically(|tx| {
        v.commute(tx, |x| x + 1)?;
        let r = tx.nested(|tx| -> Result<(), TxError<()>> {
            v.commute(tx, |x| x + 100)?;
            assert_eq!(v.read(tx)?, 101);
            Err(TxError::Abort(()))
        })?;
        assert!(r.is_err());
        tx.or_else(
            |tx| {
                v.commute(tx, |x| x + 1_000)?;
                retry()
            },
            |tx| v.commute(tx, |x| x + 10),
        )?;
        let r = tx.nested(|tx| -> Result<(), TxError<()>> {
            v.commute(tx, |x| x + 10_000)?;
            v.rollback(tx)?; // drops this scope's commute only
            Ok(())
        })?;
        assert!(r.is_ok());
        Ok(())
    });
    assert_eq!(v.read_atomic(), 11);
}

/// Reads that record nothing (`MegaRef`'s reads of its world) fold a commuted variable's
/// commutes once and remember the result; the memory must follow the commutes as scopes and
/// `rollback` remove some of them.
#[test]
fn unrecorded_reads_of_a_commuted_variable_follow_scopes_and_rollback() {
    let push = |n: u64| move |v: &Vec<u64>| [v.as_slice(), &[n]].concat();
    let v = TVar::new(vec![0_u64]);
    atomically(|tx| {
        let seen = |tx: &mut Transaction| v.read_with_unrecorded(tx, Clone::clone);
        v.commute(tx, push(1))?;
        assert_eq!(seen(tx)?, [0, 1]);
        assert_eq!(seen(tx)?, [0, 1], "a second read folds nothing again");
        let r = tx.nested(|tx| -> Result<(), TxError<()>> {
            v.commute(tx, push(2))?;
            assert_eq!(seen(tx)?, [0, 1, 2]);
            Err(TxError::Abort(()))
        })?;
        assert!(r.is_err());
        // A commute takes the place of the rolled-back one before anything reads.
        v.commute(tx, push(3))?;
        assert_eq!(seen(tx)?, [0, 1, 3], "the scope's commute is gone");
        let r = tx.nested(|tx| -> Result<(), TxError<()>> {
            v.commute(tx, push(4))?;
            assert_eq!(seen(tx)?, [0, 1, 3, 4]);
            v.rollback(tx)?;
            Ok(())
        })?;
        assert!(r.is_ok());
        assert_eq!(seen(tx)?, [0, 1, 3]);
        Ok(())
    });
    assert_eq!(v.read_atomic(), [0, 1, 3]);
}

#[test]
fn a_panicking_commute_at_commit_commits_nothing() {
    let (v, other) = (TVar::new(1), TVar::new(0));
    let r = catch_unwind(AssertUnwindSafe(|| {
        atomically(|tx| {
            other.write(tx, 5)?;
            v.commute(tx, |_| panic!("bad commute"))
        })
    }));
    assert_eq!(panic_message(r.unwrap_err()), "bad commute");
    assert_eq!((v.read_atomic(), other.read_atomic()), (1, 0));
    atomically(|tx| v.commute(tx, |x| x + 1));
    assert_eq!(v.read_atomic(), 2, "the variable stays usable");
}

/// A checked commute that refuses at commit makes the commit a conflict: nothing of the
/// attempt is published, and the next attempt, over the new value, commits.
#[test]
fn a_checked_commute_that_refuses_at_commit_is_a_conflict() {
    let (v, other) = (TVar::new(0_u32), TVar::new(0_u32));
    let n = attempts(
        |tx| {
            other.modify(tx, |x| x + 1)?;
            let seen = v.read_committed_with_unrecorded(tx, |&x| x)?;
            v.commute_checked(tx, move |base, current| {
                (*base == seen).then(|| current + 1)
            })
        },
        || atomically(|tx| v.write(tx, 10)),
    );
    assert_eq!(n, 2, "the refusal restarts the transaction");
    // One increment of `other`: the refused attempt published nothing.
    assert_eq!((v.read_atomic(), other.read_atomic()), (11, 1));
}

/// A later read of a variable folds its checked commutes over the snapshot's value: if that
/// moved past what the commute accepts, the read is a conflict.
#[test]
fn a_checked_commute_refusing_at_a_later_read_is_a_conflict() {
    let v = TVar::new(0_u32);
    let mut first = true;
    let mut reads = Vec::new();
    let result = atomically(|tx| {
        let seen = v.read_committed_with_unrecorded(tx, |&x| x)?;
        v.commute_checked(tx, move |base, current| {
            (*base == seen).then(|| current + 1)
        })?;
        if std::mem::take(&mut first) {
            std::thread::scope(|s| {
                s.spawn(|| atomically(|tx| v.write(tx, 10)));
            });
        }
        let now = v.read(tx)?; // meets the newer version: the snapshot moves, the check fails
        reads.push(now);
        Ok(now)
    });
    assert_eq!(result, 11);
    assert_eq!(reads, [11], "the first attempt's read conflicted");
}

/// A read for opacity only does not make the commit conflict, but the attempt's snapshot never
/// moves past a change of it, and `retry` waits on it.
#[test]
fn reads_for_opacity_only_are_checked_when_the_snapshot_moves_not_at_commit() {
    let (guard, other, out) = (TVar::new(0_u32), TVar::new(0_u32), TVar::new(0_u32));
    let n = attempts(
        |tx| {
            guard.read_with_opacity_only(tx, |_| ())?;
            out.write(tx, 1)
        },
        || atomically(|tx| guard.write(tx, 1)),
    );
    assert_eq!(n, 1, "a later commit to the variable is not a conflict");

    let mut first = true;
    let mut seen = Vec::new();
    atomically(|tx| {
        let g = guard.read_with_opacity_only(tx, |&g| g)?;
        if std::mem::take(&mut first) {
            std::thread::scope(|s| {
                s.spawn(|| {
                    atomically(|tx| {
                        guard.modify(tx, |g| g + 1)?;
                        other.modify(tx, |o| o + 1)
                    })
                });
            });
        }
        let o = other.read(tx)?; // newer than the snapshot: it moves only if `guard` did not
        seen.push((g, o));
        out.write(tx, 2)
    });
    assert_eq!(
        seen,
        [(2, 1)],
        "the attempt never saw the old guard with the new other"
    );

    let waiter = std::thread::spawn({
        let guard = guard.clone();
        move || {
            atomically(|tx| {
                if guard.read_with_opacity_only(tx, |&g| g)? < 5 {
                    return retry();
                }
                Ok(())
            })
        }
    });
    while stmx::waiting() == 0 {
        std::thread::yield_now();
    }
    atomically(|tx| guard.write(tx, 5));
    waiter.join().unwrap();
}

#[derive(Debug, Clone)]
enum Op {
    Commute(usize, i64),
    Double(usize),
    Read(usize),
    Modify(usize, i64),
    Write(usize, i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3_usize, -5_i64..5).prop_map(|(i, d)| Op::Commute(i, d)),
        (0..3_usize).prop_map(Op::Double),
        (0..3_usize).prop_map(Op::Read),
        (0..3_usize, -5_i64..5).prop_map(|(i, d)| Op::Modify(i, d)),
        (0..3_usize, -50_i64..50).prop_map(|(i, v)| Op::Write(i, v)),
    ]
}

proptest! {
    #[test]
    fn commute_read_and_modify_match_a_sequential_model(
        txs in prop::collection::vec((prop::collection::vec(op(), 0..8), any::<bool>()), 0..8),
    ) {
        let vars: Vec<TVar<i64>> = (0..3).map(|_| TVar::new(1)).collect();
        let mut model = [1_i64; 3];
        for (ops, abort) in txs {
            let mut scratch = model;
            let mut model_reads = Vec::new();
            for op in &ops {
                match *op {
                    Op::Commute(i, d) | Op::Modify(i, d) => scratch[i] += d,
                    Op::Double(i) => scratch[i] = scratch[i].wrapping_mul(2) % 1_000_000,
                    Op::Read(i) => model_reads.push(scratch[i]),
                    Op::Write(i, v) => scratch[i] = v,
                }
            }
            let mut reads = Vec::new();
            let r: Result<(), ()> = try_atomically(|tx| {
                reads.clear();
                for op in &ops {
                    match *op {
                        Op::Commute(i, d) => vars[i].commute(tx, move |x| x + d)?,
                        Op::Double(i) => vars[i].commute(tx, |x| x.wrapping_mul(2) % 1_000_000)?,
                        Op::Read(i) => reads.push(vars[i].read(tx)?),
                        Op::Modify(i, d) => vars[i].modify(tx, |x| x + d)?,
                        Op::Write(i, v) => vars[i].write(tx, v)?,
                    }
                }
                if abort { Err(TxError::Abort(())) } else { Ok(()) }
            });
            prop_assert_eq!(r.is_err(), abort);
            prop_assert_eq!(&reads, &model_reads);
            if !abort {
                model = scratch;
            }
            let committed: Vec<i64> = vars.iter().map(TVar::read_atomic).collect();
            prop_assert_eq!(committed, model.to_vec());
        }
    }
}
