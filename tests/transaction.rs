//! `atomically`, `try_atomically`, `or_else`, hooks, panics and misuse.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use stmx::prelude::*;

mod common;
use common::panic_message;

#[test]
fn smoke() {
    let (a, b) = (TVar::new(10), TVar::new(0));
    let total = atomically(|tx| {
        let x = a.read(tx)?;
        a.write(tx, x - 4)?;
        b.modify(tx, |y| y + 4)?;
        Ok(a.read(tx)? + b.read(tx)?)
    });
    assert_eq!(total, 10);
    assert_eq!((a.read_atomic(), b.read_atomic()), (6, 4));
}

#[test]
fn try_atomically_abort_rolls_back_and_runs_no_after_hook() {
    let v = TVar::new(1);
    let ran = Rc::new(RefCell::new(false));
    let ran2 = Rc::clone(&ran);
    let r: Result<(), &str> = try_atomically(|tx| {
        v.write(tx, 2)?;
        let ran = Rc::clone(&ran2);
        tx.after_commit(move || *ran.borrow_mut() = true);
        Err(TxError::Abort("no"))
    });
    assert_eq!(r, Err("no"));
    assert_eq!(v.read_atomic(), 1);
    assert!(!*ran.borrow());
    let ok: Result<i32, &str> = try_atomically(|tx| Ok(v.read(tx)? + 1));
    assert_eq!(ok, Ok(2));
}

#[test]
fn a_panic_commits_nothing_and_leaves_variables_usable() {
    let v = TVar::new(5);
    let err = catch_unwind(AssertUnwindSafe(|| {
        atomically(|tx| -> StmResult<()> {
            v.write(tx, 6)?;
            panic!("boom");
        })
    }))
    .unwrap_err();
    assert_eq!(panic_message(err), "boom");
    assert_eq!(v.read_atomic(), 5);
    atomically(|tx| v.modify(tx, |x| x + 1));
    assert_eq!(v.read_atomic(), 6);
}

#[test]
fn nested_atomically_panics_with_a_helpful_message() {
    let v = TVar::new(0);
    let err = catch_unwind(AssertUnwindSafe(|| {
        atomically(|tx| {
            v.write(tx, 1)?;
            atomically(|tx| v.write(tx, 2));
            Ok(())
        })
    }))
    .unwrap_err();
    let msg = panic_message(err);
    assert!(msg.contains("inside a running transaction"), "{msg}");
    assert!(msg.contains("&mut Transaction"), "{msg}");
    assert_eq!(v.read_atomic(), 0);
    // The thread is still usable, transactions and all.
    atomically(|tx| v.write(tx, 3));
    assert_eq!(v.read_atomic(), 3);
}

#[test]
fn retry_with_nothing_read_panics_instead_of_blocking_forever() {
    let v = TVar::new(0);
    let err = catch_unwind(AssertUnwindSafe(|| {
        atomically(|tx| -> StmResult<()> {
            v.write(tx, 1)?; // writes do not count: they are discarded
            retry()
        })
    }))
    .unwrap_err();
    assert!(panic_message(err).contains("read no TVar"));
    assert_eq!(v.read_atomic(), 0);
}

#[test]
fn or_else_rolls_back_the_first_alternative() {
    let (a, b) = (TVar::new(0), TVar::new(0));
    let r = atomically(|tx| {
        a.write(tx, 1)?; // before the or_else: kept
        tx.or_else(
            |tx| {
                a.write(tx, 100)?; // overwrites an outer write: must be restored
                b.write(tx, 100)?; // new write: must be dropped
                retry()
            },
            |tx| Ok((a.read(tx)?, b.read(tx)?)),
        )
    });
    assert_eq!(r, (1, 0));
    assert_eq!((a.read_atomic(), b.read_atomic()), (1, 0));
}

#[test]
fn or_else_nests() {
    let v = TVar::new(0);
    let r = atomically(|tx| {
        tx.or_else(
            |tx| {
                v.write(tx, 1)?;
                tx.or_else(
                    |tx| {
                        v.write(tx, 2)?;
                        retry()
                    },
                    |tx| {
                        assert_eq!(v.read(tx)?, 1, "inner rollback restores the outer write");
                        v.write(tx, 3)?;
                        retry() // the whole first branch now retries
                    },
                )
            },
            |tx| v.read(tx),
        )
    });
    assert_eq!(r, 0);
    let r = atomically(|tx| {
        tx.or_else(
            |tx| {
                v.write(tx, 1)?;
                tx.or_else(|_| retry(), |tx| v.modify(tx, |x| x + 10))?;
                v.read(tx)
            },
            |_| Ok(-1),
        )
    });
    assert_eq!((r, v.read_atomic()), (11, 11));
    assert_eq!(atomically(|tx| tx.or(|_| retry(), |_| Ok(7))), 7);
}

#[test]
fn optionally_and_helpers() {
    let slot = TVar::new(None::<u32>);
    assert_eq!(
        atomically(|tx| optionally(tx, |tx| unwrap_or_retry(slot.read(tx)?))),
        None
    );
    slot.write_atomic(Some(4));
    assert_eq!(
        atomically(|tx| optionally(tx, |tx| unwrap_or_retry(slot.read(tx)?))),
        Some(4)
    );
    assert_eq!(
        atomically(|tx| optionally(tx, |tx| guard(slot.read(tx)?.is_none()))),
        None
    );
    let err: StmResult<()> = guard(false);
    assert_eq!(err, Err(StmError::Retry));
    assert_eq!(guard(true), Ok(()));
}

#[test]
fn both_alternatives_retry_then_wait_on_the_union_of_their_reads() {
    let (a, b) = (TVar::new(None::<u32>), TVar::new(None::<u32>));
    let runs = Arc::new(AtomicUsize::new(0));
    let (a2, b2, runs2) = (a.clone(), b.clone(), Arc::clone(&runs));
    let consumer = thread::spawn(move || {
        atomically(|tx| {
            runs2.fetch_add(1, Ordering::SeqCst);
            tx.or_else(
                |tx| unwrap_or_retry(a2.read(tx)?),
                |tx| unwrap_or_retry(b2.read(tx)?),
            )
        })
    });
    thread::sleep(Duration::from_millis(100));
    assert!(!consumer.is_finished());
    // A change to the variable read only by the *second* alternative wakes the consumer.
    b.write_atomic(Some(9));
    assert_eq!(consumer.join().unwrap(), 9);
    assert!(
        runs.load(Ordering::SeqCst) <= 3,
        "the blocked consumer spun"
    );
}

#[test]
fn before_commit_hooks_run_in_order_and_may_write() {
    let log = TVar::new(Vec::<u32>::new());
    let (l1, l2) = (log.clone(), log.clone());
    atomically(|tx| {
        log.modify(tx, |mut v| {
            v.push(0);
            v
        })?;
        let (l1, l2) = (l1.clone(), l2.clone());
        tx.before_commit(move |tx| {
            let l3 = l1.clone();
            // A hook may register another: it runs after the ones already registered.
            tx.before_commit(move |tx| {
                l3.modify(tx, |mut v| {
                    v.push(3);
                    v
                })
            });
            l1.modify(tx, |mut v| {
                v.push(1);
                v
            })
        });
        tx.before_commit(move |tx| {
            l2.modify(tx, |mut v| {
                v.push(2);
                v
            })
        });
        Ok(())
    });
    assert_eq!(log.read_atomic(), [0, 1, 2, 3]);
}

#[test]
fn retry_in_a_before_commit_hook_panics() {
    let v = TVar::new(0);
    let err = catch_unwind(AssertUnwindSafe(|| {
        atomically(|tx| {
            v.write(tx, 1)?;
            tx.before_commit(|_| retry());
            Ok(())
        })
    }))
    .unwrap_err();
    assert!(panic_message(err).contains("before_commit"));
    assert_eq!(v.read_atomic(), 0);
}

#[test]
fn a_panic_in_a_before_commit_hook_commits_nothing() {
    let v = TVar::new(0);
    let w = v.clone();
    let r = catch_unwind(AssertUnwindSafe(|| {
        atomically(|tx| {
            v.write(tx, 1)?;
            let w = w.clone();
            tx.before_commit(move |tx| {
                w.write(tx, 2)?;
                panic!("hook failed")
            });
            Ok(())
        })
    }));
    assert!(r.is_err());
    assert_eq!(v.read_atomic(), 0);
}

#[test]
fn after_commit_hooks_run_in_order_outside_the_transaction() {
    let v = TVar::new(0);
    let order = Rc::new(RefCell::new(Vec::new()));
    let (o1, o2, v2) = (Rc::clone(&order), Rc::clone(&order), v.clone());
    let r = atomically(|tx| {
        let (o1, o2, v2) = (Rc::clone(&o1), Rc::clone(&o2), v2.clone());
        tx.after_commit(move || o1.borrow_mut().push(1));
        tx.after_commit(move || {
            // Outside any transaction: a new one may start here.
            let seen = atomically(|tx| v2.read(tx));
            o2.borrow_mut().push(seen + 10);
        });
        v.write(tx, 5)?;
        Ok("done")
    });
    assert_eq!(r, "done");
    assert_eq!(
        *order.borrow(),
        [1, 15],
        "hooks ran in order, after the commit"
    );
    // Read-only transactions run their hooks too.
    let hit = Rc::new(RefCell::new(0));
    let h = Rc::clone(&hit);
    atomically(|tx| {
        let h = Rc::clone(&h);
        tx.after_commit(move || *h.borrow_mut() += 1);
        v.read(tx)
    });
    assert_eq!(*hit.borrow(), 1);
}

#[test]
fn hooks_of_a_rolled_back_alternative_are_discarded() {
    let v = TVar::new(0);
    let ran = Rc::new(RefCell::new(Vec::new()));
    let r2 = Rc::clone(&ran);
    let v2 = v.clone();
    atomically(|tx| {
        let r2 = Rc::clone(&r2);
        let v2 = v2.clone();
        tx.or_else(
            |tx| {
                let r = Rc::clone(&r2);
                tx.after_commit(move || r.borrow_mut().push("first"));
                let v3 = v2.clone();
                tx.before_commit(move |tx| v3.write(tx, 99));
                retry()
            },
            |tx| {
                let r = Rc::clone(&r2);
                tx.after_commit(move || r.borrow_mut().push("second"));
                Ok(())
            },
        )
    });
    assert_eq!(*ran.borrow(), ["second"]);
    assert_eq!(v.read_atomic(), 0);
}

#[test]
fn hooks_rerun_with_the_transaction_after_a_conflict() {
    // One thread keeps bumping `v`; the transaction reads `v` and hooks a write of it. Each
    // attempt registers its hook anew, and exactly one after_commit runs per commit.
    let v = TVar::new(0_u64);
    let copy = TVar::new(0_u64);
    let stop = Arc::new(AtomicUsize::new(0));
    let (v2, stop2) = (v.clone(), Arc::clone(&stop));
    let bumper = thread::spawn(move || {
        while stop2.load(Ordering::Relaxed) == 0 {
            atomically(|tx| v2.modify(tx, |x| x + 1));
        }
    });
    let mut after_runs = 0;
    for _ in 0..200 {
        let ran = Rc::new(RefCell::new(0));
        let r = Rc::clone(&ran);
        atomically(|tx| {
            let x = v.read(tx)?;
            let copy = copy.clone();
            let v = v.clone();
            tx.before_commit(move |tx| {
                assert_eq!(v.read(tx)?, x, "hook sees the transaction's snapshot");
                copy.write(tx, x)
            });
            let r = Rc::clone(&r);
            tx.after_commit(move || *r.borrow_mut() += 1);
            Ok(())
        });
        after_runs += *ran.borrow();
        assert_eq!(*ran.borrow(), 1);
    }
    stop.store(1, Ordering::Relaxed);
    bumper.join().unwrap();
    assert_eq!(after_runs, 200);
}

#[test]
fn retry_blocks_without_spinning_until_a_read_variable_changes() {
    let flag = TVar::new(false);
    let noise = TVar::new(0_u64);
    let runs = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(2));
    let (flag2, noise2, runs2, barrier2) = (
        flag.clone(),
        noise.clone(),
        Arc::clone(&runs),
        Arc::clone(&barrier),
    );
    let waiter = thread::spawn(move || {
        barrier2.wait();
        atomically(|tx| {
            runs2.fetch_add(1, Ordering::SeqCst);
            guard(flag2.read(tx)?)?;
            noise2.read(tx)
        })
    });
    barrier.wait();
    // Commits to a variable the waiter did not read do not wake it.
    let other = TVar::new(0);
    for i in 0..10_000 {
        other.write_atomic(i);
    }
    thread::sleep(Duration::from_millis(200));
    assert!(
        runs.load(Ordering::SeqCst) <= 2,
        "the waiter re-ran {} times",
        runs.load(Ordering::SeqCst)
    );
    assert!(!waiter.is_finished());
    atomically(|tx| {
        noise.write(tx, 42)?;
        flag.write(tx, true)
    });
    assert_eq!(waiter.join().unwrap(), 42);
}

#[test]
fn stats_count_commits_conflicts_and_retries() {
    let before = stmx::stats();
    let v = TVar::new(None::<u8>);
    atomically(|tx| v.read(tx));
    let v2 = v.clone();
    let t = thread::spawn(move || atomically(|tx| unwrap_or_retry(v2.read(tx)?)));
    // Wait until a retry has been counted (ours, or another test's: stats are process-wide).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stmx::stats().retries == before.retries && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    v.write_atomic(Some(1));
    assert_eq!(t.join().unwrap(), 1);
    let d = stmx::stats() - before;
    assert!(d.commits >= 3, "{d:?}");
    assert!(d.retries >= 1, "{d:?}");
}
