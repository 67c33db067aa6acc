//! Nested scopes, per-variable rollback, after-rollback hooks, timeouts, `register_delay` and
//! the single-operation views.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use stmx::atomically_timeout;
use stmx::prelude::*;

mod common;
use common::panic_message;

#[test]
fn an_aborted_nested_scope_undoes_only_its_own_writes() {
    let (a, b, c) = (TVar::new(0), TVar::new(0), TVar::new(0));
    let (outer, inner) = atomically(|tx| {
        a.write(tx, 1)?;
        let inner = tx.nested(|tx| -> Result<(), TxError<&str>> {
            a.write(tx, 2)?; // overwrites the enclosing level's write: restored
            b.write(tx, 2)?; // first written here: discarded
            Err(TxError::Abort("no"))
        })?;
        let kept = tx.nested(|tx| -> Result<i32, TxError<()>> {
            c.write(tx, 3)?;
            Ok(7)
        })?;
        Ok(((a.read(tx)?, b.read(tx)?, kept), inner))
    });
    assert_eq!(outer, (1, 0, Ok(7)));
    assert_eq!(inner, Err("no"));
    assert_eq!(
        (a.read_atomic(), b.read_atomic(), c.read_atomic()),
        (1, 0, 3)
    );
}

#[test]
fn nested_scopes_nest_in_each_other_and_in_or_else() {
    let v = TVar::new(0);
    let seen = atomically(|tx| {
        v.write(tx, 1)?;
        let r = tx.or_else(
            |tx| {
                v.write(tx, 2)?;
                let inner = tx.nested(|tx| -> Result<(), TxError<i32>> {
                    v.write(tx, 3)?;
                    let deeper = tx.nested(|tx| -> Result<(), TxError<i32>> {
                        v.write(tx, 4)?;
                        Err(TxError::Abort(4))
                    })?;
                    assert_eq!(deeper, Err(4));
                    assert_eq!(v.read(tx)?, 3);
                    Err(TxError::Abort(3))
                })?;
                assert_eq!(inner, Err(3));
                assert_eq!(v.read(tx)?, 2);
                retry() // the whole alternative goes
            },
            |tx| v.read(tx),
        )?;
        Ok(r)
    });
    assert_eq!(seen, 1);
    assert_eq!(v.read_atomic(), 1);
}

#[test]
fn retry_inside_a_nested_scope_retries_the_whole_transaction() {
    let (flag, done) = (TVar::new(false), TVar::new(0));
    let attempts = AtomicUsize::new(0);
    thread::scope(|s| {
        s.spawn(|| {
            atomically(|tx| {
                attempts.fetch_add(1, Ordering::SeqCst);
                done.write(tx, 1)?;
                let r = tx.nested(|tx| -> Result<(), TxError<()>> {
                    guard(flag.read(tx)?)?;
                    Ok(())
                })?;
                assert_eq!(r, Ok(()));
                Ok(())
            })
        });
        while attempts.load(Ordering::SeqCst) == 0 {
            thread::yield_now();
        }
        assert_eq!(
            done.read_atomic(),
            0,
            "a retry in the scope committed nothing"
        );
        flag.write_atomic(true);
    });
    assert_eq!(done.read_atomic(), 1);
}

#[test]
fn hooks_of_a_rolled_back_scope_are_discarded() {
    let ran = Rc::new(AtomicUsize::new(0));
    let v = TVar::new(0);
    atomically(|tx| {
        let r = tx.nested(|tx| -> Result<(), TxError<()>> {
            v.write(tx, 1)?;
            let ran = Rc::clone(&ran);
            tx.after_commit(move || {
                ran.fetch_add(1, Ordering::SeqCst);
            });
            Err(TxError::Abort(()))
        })?;
        assert!(r.is_err());
        Ok(())
    });
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(v.read_atomic(), 0);
}

#[test]
fn rollback_restores_the_value_at_the_start_of_the_innermost_scope() {
    let (a, b) = (TVar::new(10), TVar::new(20));
    atomically(|tx| {
        a.write(tx, 11)?;
        b.write(tx, 21)?;
        assert_eq!(a.rollback(tx)?, 10, "top level: the committed value");
        a.write(tx, 12)?;
        let r = tx.nested(|tx| -> Result<(), TxError<()>> {
            a.write(tx, 13)?;
            a.write(tx, 14)?;
            b.write(tx, 22)?;
            assert_eq!(a.rollback(tx)?, 12, "the value when the scope began");
            assert_eq!(b.read(tx)?, 22, "other variables keep their writes");
            assert_eq!(a.rollback(tx)?, 12, "a second rollback changes nothing");
            Ok(())
        })?;
        assert!(r.is_ok());
        assert_eq!(a.read(tx)?, 12);
        Ok(())
    });
    assert_eq!((a.read_atomic(), b.read_atomic()), (12, 22));
}

#[test]
fn rollback_of_a_variable_first_written_in_the_scope_drops_its_write() {
    // Many variables, so that the write set uses its hash index, and boxed values.
    let vars: Vec<TVar<String>> = (0..40).map(|i| TVar::new(format!("v{i}"))).collect();
    atomically(|tx| {
        tx.or_else(
            |tx| {
                for (i, v) in vars.iter().enumerate() {
                    v.write(tx, format!("w{i}"))?;
                }
                assert_eq!(vars[17].rollback(tx)?, "v17");
                vars[30].write(tx, "again".to_string())?;
                assert_eq!(vars[18].read(tx)?, "w18");
                Ok(())
            },
            |_| unreachable!(),
        )
    });
    for (i, v) in vars.iter().enumerate() {
        let want = match i {
            17 => "v17".to_string(),
            30 => "again".to_string(),
            _ => format!("w{i}"),
        };
        assert_eq!(v.read_atomic(), want);
    }
}

#[test]
fn after_rollback_runs_on_abort_retry_conflict_and_panic_but_not_on_commit() {
    let count = Arc::new(AtomicUsize::new(0));
    let hook = |tx: &mut Transaction| {
        let count = Arc::clone(&count);
        tx.after_rollback(move || {
            count.fetch_add(1, Ordering::SeqCst);
        });
    };
    // Commit: never runs.
    atomically(|tx| {
        hook(tx);
        Ok(())
    });
    assert_eq!(count.load(Ordering::SeqCst), 0);
    // Abort.
    let r: Result<(), ()> = try_atomically(|tx| {
        hook(tx);
        Err(TxError::Abort(()))
    });
    assert!(r.is_err());
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // Panic: before the panic propagates.
    let r = catch_unwind(AssertUnwindSafe(|| {
        atomically(|tx| {
            hook(tx);
            if count.load(Ordering::SeqCst) == 1 {
                panic!("boom");
            }
            Ok(())
        })
    }));
    assert_eq!(panic_message(r.unwrap_err()), "boom");
    assert_eq!(count.load(Ordering::SeqCst), 2);
    // Conflict: the first attempt reads `x`, another thread writes it, the commit fails.
    let (x, y) = (TVar::new(0), TVar::new(0));
    let (read, written) = (Barrier::new(2), Barrier::new(2));
    let attempts = AtomicUsize::new(0);
    thread::scope(|s| {
        s.spawn(|| {
            read.wait();
            x.write_atomic(1);
            written.wait();
        });
        atomically(|tx| {
            let n = attempts.fetch_add(1, Ordering::SeqCst);
            let v = x.read(tx)?;
            let count = Arc::clone(&count);
            tx.after_rollback(move || {
                count.fetch_add(10, Ordering::SeqCst);
            });
            if n == 0 {
                read.wait();
                written.wait();
            }
            y.write(tx, v)
        });
    });
    assert!(attempts.load(Ordering::SeqCst) >= 2);
    assert_eq!(count.load(Ordering::SeqCst) % 10, 2);
    assert!(
        count.load(Ordering::SeqCst) >= 12,
        "the conflicted attempt's hook ran"
    );
    assert_eq!(y.read_atomic(), 1);
}

#[test]
fn after_rollback_runs_before_a_retry_waits_and_outside_the_transaction() {
    let flag = TVar::new(false);
    let hook_ran = Arc::new(AtomicBool::new(false));
    let counter = TVar::new(0);
    thread::scope(|s| {
        s.spawn(|| {
            atomically(|tx| {
                if !flag.read(tx)? {
                    let (hook_ran, counter) = (Arc::clone(&hook_ran), counter.clone());
                    tx.after_rollback(move || {
                        // Outside the transaction: it may run one of its own.
                        atomically(|tx| counter.modify(tx, |c| c + 1));
                        hook_ran.store(true, Ordering::SeqCst);
                    });
                    return retry();
                }
                Ok(())
            })
        });
        // The hook runs before the waiter sleeps: waiting for it cannot deadlock.
        while !hook_ran.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        flag.write_atomic(true);
    });
    assert!(counter.read_atomic() >= 1);
}

#[test]
fn a_rolled_back_scopes_hook_runs_when_the_attempt_commits() {
    let ran = Arc::new(AtomicUsize::new(0));
    let (inner, committed) = (Arc::clone(&ran), Arc::clone(&ran));
    let v = TVar::new(0);
    atomically(|tx| {
        let (inner, committed) = (Arc::clone(&inner), Arc::clone(&committed));
        tx.or_else(
            move |tx| {
                let inner = Arc::clone(&inner);
                tx.after_rollback(move || {
                    inner.fetch_add(1, Ordering::SeqCst);
                });
                retry()
            },
            |tx| v.write(tx, 1),
        )?;
        let r = tx.nested(move |tx| -> Result<(), TxError<()>> {
            let committed = Arc::clone(&committed);
            tx.after_rollback(move || {
                committed.fetch_add(100, Ordering::SeqCst);
            });
            Err(TxError::Abort(()))
        })?;
        assert!(r.is_err());
        Ok(())
    });
    assert_eq!(ran.load(Ordering::SeqCst), 101);
    assert_eq!(v.read_atomic(), 1);
}

#[test]
fn atomically_timeout_gives_up_only_while_blocked() {
    let ready = TVar::new(false);
    let start = Instant::now();
    let r = atomically_timeout(Duration::from_millis(30), |tx| guard(ready.read(tx)?));
    assert_eq!(r, None);
    assert!(
        start.elapsed() >= Duration::from_millis(30),
        "not before the deadline"
    );
    // A commit well before a generous deadline wakes it in time.
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            atomically_timeout(Duration::from_secs(60), |tx| {
                guard(ready.read(tx)?)?;
                Ok(42)
            })
        });
        thread::sleep(Duration::from_millis(20));
        ready.write_atomic(true);
        assert_eq!(waiter.join().unwrap(), Some(42));
    });
    // A transaction that does not block is never cut short.
    assert_eq!(
        atomically_timeout(Duration::ZERO, |tx| ready.read(tx)),
        Some(true)
    );
}

#[test]
fn single_operation_views_return_what_they_say_and_wake_waiters() {
    let v = TVar::new(1_u64);
    assert_eq!(v.swap_atomic(2), 1);
    assert_eq!(v.modify_atomic(|n| n * 10), 20);
    assert!(!v.compare_and_set_atomic(&2, 3));
    assert!(v.compare_and_set_atomic(&20, 3));
    assert_eq!(v.read_atomic(), 3);
    let s = TVar::new(String::from("a"));
    assert_eq!(s.swap_atomic("b".into()), "a");
    assert!(s.compare_and_set_atomic(&"b".to_string(), "c".into()));
    assert_eq!(s.modify_atomic(|x| format!("{x}!")), "c!");
    // Each wakes a transaction blocked on the variable.
    for step in 0..3 {
        let gate = TVar::new(0_u32);
        thread::scope(|sc| {
            let waiter = sc.spawn(|| atomically(|tx| guard(gate.read(tx)? == 1)));
            thread::sleep(Duration::from_millis(5));
            match step {
                0 => drop(gate.swap_atomic(1)),
                1 => drop(gate.modify_atomic(|g| g + 1)),
                _ => assert!(gate.compare_and_set_atomic(&0, 1)),
            }
            waiter.join().unwrap();
        });
    }
}

#[test]
fn a_panicking_comparison_leaves_the_variable_usable() {
    #[derive(Clone)]
    struct Touchy(u8);
    impl PartialEq for Touchy {
        fn eq(&self, _: &Self) -> bool {
            panic!("no comparisons today")
        }
    }
    let v = TVar::new(Touchy(1));
    let r = catch_unwind(AssertUnwindSafe(|| {
        v.compare_and_set_atomic(&Touchy(1), Touchy(2))
    }));
    assert_eq!(panic_message(r.unwrap_err()), "no comparisons today");
    assert_eq!(v.read_atomic().0, 1);
    v.write_atomic(Touchy(3));
    assert_eq!(atomically(|tx| v.read(tx)).0, 3);
}

#[test]
fn views_panic_inside_a_transaction() {
    let v = TVar::new(0);
    for op in 0..3 {
        let r = catch_unwind(AssertUnwindSafe(|| {
            atomically(|_| {
                match op {
                    0 => drop(v.swap_atomic(1)),
                    1 => drop(v.modify_atomic(|x| x + 1)),
                    _ => drop(v.compare_and_set_atomic(&0, 1)),
                }
                Ok(())
            })
        }));
        assert!(panic_message(r.unwrap_err()).contains("inside"), "op {op}");
    }
    assert_eq!(v.read_atomic(), 0);
}

#[test]
fn rollback_keeps_inner_scopes_undo_entries_pointing_at_their_variables() {
    let (a, b, c) = (TVar::new(0), TVar::new(0), TVar::new(0));
    let r = atomically(|tx| {
        c.write(tx, 5)?; // the alternative's scope starts after a write of its own
        tx.or_else(
            |tx| {
                a.write(tx, 1)?;
                b.write(tx, 1)?;
                let inner = tx.nested(|tx| -> Result<(), TxError<()>> {
                    b.write(tx, 2)?; // an undo entry for `b`, kept when the scope ends
                    Ok(())
                })?;
                assert!(inner.is_ok());
                assert_eq!(a.rollback(tx)?, 0); // removes `a`'s entry, before `b`'s
                assert_eq!(b.read(tx)?, 2);
                c.write(tx, 3)?;
                retry() // rolls back `b` through its undo entry
            },
            |tx| Ok((a.read(tx)?, b.read(tx)?, c.read(tx)?)),
        )
    });
    assert_eq!(r, (0, 0, 5));
}

#[test]
fn a_panic_inside_a_nested_scope_leaves_the_next_transaction_at_the_top_level() {
    let (a, b) = (TVar::new(0), TVar::new(0));
    let r = catch_unwind(AssertUnwindSafe(|| {
        atomically(|tx| {
            a.write(tx, 1)?;
            let _: Result<(), ()> = tx.nested(|_| panic!("inside the scope"))?;
            Ok(())
        })
    }));
    assert_eq!(panic_message(r.unwrap_err()), "inside the scope");
    // The thread's next transaction has no open scope: a rollback undoes every write of the
    // attempt, not only those since a scope that the panic left behind.
    let rolled = atomically(|tx| {
        b.write(tx, 5)?;
        b.write(tx, 6)?;
        b.rollback(tx)
    });
    assert_eq!(rolled, 0);
    assert_eq!((a.read_atomic(), b.read_atomic()), (0, 0));
}
