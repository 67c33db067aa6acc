//! Loom models of the commit protocol: lock, validate, publish, unlock, wake.
//!
//! They drive the real `RawTx` and `TVarHandle` code with loom's atomics, two threads and one or
//! two variables. Run with:
//! `RUSTFLAGS="--cfg stm_loom" cargo test -p stm-core --release --lib loom`.

use loom::thread;

use super::clock;
use super::parking::Waiter;
use super::tvar::TVarHandle;
use super::tx::{RawTx, wake_after_store};

/// `loom::model`, counting executions so a model that stops exploring is noticed.
fn model(f: impl Fn() + Sync + Send + 'static) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&runs);
    loom::model(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    assert!(
        runs.load(Ordering::Relaxed) > 1,
        "the model explored a single interleaving"
    );
    eprintln!("explored {} interleavings", runs.load(Ordering::Relaxed));
}

/// Runs `body` as a transaction attempt until it commits; returns its value.
fn commit_loop<R>(mut body: impl FnMut(&mut RawTx) -> Result<R, super::tx::Conflict>) -> R {
    let mut tx = RawTx::new();
    loop {
        tx.begin();
        if let Ok(r) = body(&mut tx) {
            if tx.commit().is_ok() {
                tx.reset();
                return r;
            }
        }
        tx.reset();
        thread::yield_now();
    }
}

/// Runs `body` in attempts without a read set (`begin_unlogged`, as predicted read-only
/// transactions run) until one completes; the attempt is then committed, as a read-only one is,
/// by doing nothing.
fn read_only_loop<R>(mut body: impl FnMut(&mut RawTx) -> Result<R, super::tx::Conflict>) -> R {
    let mut tx = RawTx::new();
    loop {
        tx.begin_unlogged();
        let outcome = body(&mut tx);
        let void = tx.needs_log();
        tx.reset();
        match outcome {
            Ok(r) if !void => return r,
            _ => thread::yield_now(),
        }
    }
}

/// Reads through the transaction, after a yield: loom's partial-order reduction does not
/// schedule another thread between two plain loads on its own, and the window between two
/// reads is exactly where a torn snapshot would come from.
fn read(tx: &mut RawTx, tv: &TVarHandle<i64>) -> Result<i64, super::tx::Conflict> {
    thread::yield_now();
    tx.read(tv, |v| *v)
}

#[test]
fn loom_two_committers_do_not_lose_updates() {
    model(|| {
        let a = TVarHandle::new(0_i64);
        let a2 = a.clone();
        let t = thread::spawn(move || {
            commit_loop(|tx| {
                let v = read(tx, &a2)?;
                tx.write(&a2, v + 1).unwrap();
                Ok(())
            })
        });
        commit_loop(|tx| {
            let v = read(tx, &a)?;
            tx.write(&a, v + 1).unwrap();
            Ok(())
        });
        t.join().unwrap();
        assert_eq!(a.load_with(|v| *v), 2);
    });
}

#[test]
fn loom_write_skew_is_prevented() {
    model(|| {
        let x = TVarHandle::new(50_i64);
        let y = TVarHandle::new(50_i64);
        let withdraw = |mine: TVarHandle<i64>, other: TVarHandle<i64>| {
            move || {
                commit_loop(|tx| {
                    let (m, o) = (read(tx, &mine)?, read(tx, &other)?);
                    if m + o >= 100 {
                        tx.write(&mine, m - 100).unwrap();
                    }
                    Ok(())
                })
            }
        };
        let t = thread::spawn(withdraw(x.clone(), y.clone()));
        withdraw(y.clone(), x.clone())();
        t.join().unwrap();
        assert!(x.load_with(|v| *v) + y.load_with(|v| *v) >= 0, "write skew");
    });
}

#[test]
fn loom_readers_never_see_a_torn_transfer() {
    model(|| {
        let a = TVarHandle::new(10_i64);
        let b = TVarHandle::new(0_i64);
        let audit = TVarHandle::new(-1_i64);
        let (a2, b2) = (a.clone(), b.clone());
        let t = thread::spawn(move || {
            commit_loop(|tx| {
                // No yields here: the writer should be able to run start to end while the
                // auditor sits between its two reads.
                let (x, y) = (tx.read(&a2, |v| *v)?, tx.read(&b2, |v| *v)?);
                tx.write(&a2, x - 3).unwrap();
                tx.write(&b2, y + 3).unwrap();
                Ok(())
            })
        });
        // The auditor checks the pair on *every* attempt, including ones that will abort, and
        // commits what it saw (a write, so the model branches on its commit too).
        commit_loop(|tx| {
            let (x, y) = (read(tx, &a)?, read(tx, &b)?);
            assert_eq!(x + y, 10, "opacity violated");
            tx.write(&audit, x + y).unwrap();
            Ok(())
        });
        t.join().unwrap();
        assert_eq!(a.load_with(|v| *v) + b.load_with(|v| *v), 10);
        assert_eq!(audit.load_with(|v| *v), 10);
    });
}

#[test]
fn loom_a_commit_racing_with_parking_wakes_the_waiter() {
    model(|| {
        let flag = TVarHandle::new(0_i64);
        let other = TVarHandle::new(0_i64);
        let (flag2, other2) = (flag.clone(), other.clone());
        let t = thread::spawn(move || {
            commit_loop(|tx| {
                let o = read(tx, &other2)?;
                tx.write(&other2, o + 1).unwrap();
                tx.write(&flag2, 1).unwrap();
                Ok(())
            })
        });
        // The consumer: read the flag; while it is 0, block until it changes.
        let waiter = Waiter::for_current_thread();
        let mut tx = RawTx::new();
        loop {
            tx.begin();
            match read(&mut tx, &flag) {
                Ok(1) => break,
                Ok(_) => assert!(tx.wait_for_change(&waiter, None)), // loom: deadlock if never woken
                Err(_) => {
                    tx.reset();
                    thread::yield_now();
                }
            }
        }
        tx.reset();
        t.join().unwrap();
    });
}

/// A thread that adds 10 to `x` by read-modify-write (a plain, recorded read).
fn spawn_add_ten(x: TVarHandle<i64>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        commit_loop(|tx| {
            let v = read(tx, &x)?;
            tx.write(&x, v + 10).unwrap();
            Ok(())
        })
    })
}

#[test]
fn loom_a_commute_racing_a_write_loses_neither() {
    model(|| {
        let x = TVarHandle::new(0_i64);
        let t = spawn_add_ten(x.clone());
        commit_loop(|tx| {
            // The commute reads nothing, so without this the attempt has no scheduling point
            // between its start and its commit, and loom explored 8 interleavings.
            thread::yield_now();
            tx.commute(&x, |v| v + 1).unwrap();
            Ok(())
        });
        t.join().unwrap();
        assert_eq!(x.load_with(|v| *v), 11, "a lost update");
    });
}

/// Two transactions commuting two variables in opposite orders: a commit waits for a commute's
/// lock instead of giving up, so both commit only because commits lock in address order (in
/// write-set order, each may hold one lock and wait for the other's forever).
#[test]
fn loom_commutes_in_opposite_orders_both_commit() {
    model(|| {
        let x = TVarHandle::new(0_i64);
        let y = TVarHandle::new(0_i64);
        let (x2, y2) = (x.clone(), y.clone());
        let t = thread::spawn(move || {
            commit_loop(|tx| {
                tx.commute(&y2, |v| v + 1).unwrap();
                tx.commute(&x2, |v| v + 1).unwrap();
                Ok(())
            })
        });
        commit_loop(|tx| {
            thread::yield_now();
            tx.commute(&x, |v| v + 1).unwrap();
            tx.commute(&y, |v| v + 1).unwrap();
            Ok(())
        });
        t.join().unwrap();
        assert_eq!((x.load_with(|v| *v), y.load_with(|v| *v)), (2, 2));
    });
}

#[test]
fn loom_reading_a_commuted_variable_is_validated() {
    model(|| {
        let x = TVarHandle::new(0_i64);
        let seen = TVarHandle::new(-1_i64);
        let t = spawn_add_ten(x.clone());
        // Commute, then read what was commuted (the commute applied to the snapshot), and
        // record it: the read ties the transaction to that snapshot, so it is serializable.
        commit_loop(|tx| {
            tx.commute(&x, |v| v + 1).unwrap();
            let v = read(tx, &x)?;
            tx.write(&seen, v).unwrap();
            Ok(())
        });
        t.join().unwrap();
        let (x, seen) = (x.load_with(|v| *v), seen.load_with(|v| *v));
        assert_eq!(x, 11);
        assert!(seen == 1 || seen == 11, "saw {seen}: not a serial order");
    });
}

/// A checked commute that accepts only the committed value its transaction saw: racing a
/// write, it either commits before the write or refuses at commit (releasing its locks, so
/// that the writer goes on) and commits on the next attempt. No interleaving loses either, and
/// some do refuse (counted across the model's executions).
#[test]
fn loom_a_checked_commute_refuses_a_write_since_its_snapshot() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static REFUSALS: AtomicUsize = AtomicUsize::new(0);
    model(|| {
        let x = TVarHandle::new(0_i64);
        let t = spawn_add_ten(x.clone());
        commit_loop(|tx| {
            let seen = tx.read_committed_unrecorded(&x, |v| *v)?;
            thread::yield_now(); // a point where the write may come in between
            tx.commute_checked(&x, move |base, current| {
                if *base != seen {
                    REFUSALS.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                Some(current + 1)
            })
            .unwrap();
            Ok(())
        });
        t.join().unwrap();
        assert_eq!(x.load_with(|v| *v), 11, "a lost update");
    });
    assert!(
        REFUSALS.load(Ordering::Relaxed) > 0,
        "no interleaving refused"
    );
}

/// A task's waker that unparks the (loom) thread polling the task.
struct UnparkWaker(loom::thread::Thread);

impl std::task::Wake for UnparkWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }
}

#[test]
fn loom_a_commit_racing_a_task_registration_wakes_the_task() {
    model(|| {
        let flag = TVarHandle::new(0_i64);
        let flag2 = flag.clone();
        let t = thread::spawn(move || {
            commit_loop(|tx| {
                tx.write(&flag2, 1).unwrap();
                Ok(())
            })
        });
        // The task: read the flag; while it is 0, register its waker and "return Pending"
        // (park until the waker runs), then deregister and poll again, as `TxFuture` does.
        let waker = std::task::Waker::from(std::sync::Arc::new(UnparkWaker(thread::current())));
        let waiter = Waiter::for_task();
        let mut tx = RawTx::new();
        loop {
            tx.begin();
            match read(&mut tx, &flag) {
                Ok(1) => break,
                Ok(_) => {
                    waiter.set_waker(&waker);
                    if let Some(addrs) = tx.register_task(&waiter) {
                        thread::park(); // loom reports a deadlock if the waker never runs
                        super::tx::deregister(&addrs, &waiter);
                    }
                }
                Err(_) => {
                    tx.reset();
                    thread::yield_now();
                }
            }
        }
        tx.reset();
        t.join().unwrap();
        assert_eq!(
            super::parking::global().registrations(),
            0,
            "nothing left registered"
        );
    });
}

#[test]
fn loom_write_atomic_wakes_a_waiter_on_either_variable() {
    model(|| {
        let a = TVarHandle::new(0_i64);
        let b = TVarHandle::new(0_i64);
        let b2 = b.clone();
        let t = thread::spawn(move || {
            let mut retired = super::reclaim::Recycler::default();
            let replaced = b2.store(1, clock::global(), &mut retired);
            wake_after_store(b2.raw().header(), replaced);
        });
        let waiter = Waiter::for_current_thread();
        let mut tx = RawTx::new();
        loop {
            tx.begin();
            match (read(&mut tx, &a), read(&mut tx, &b)) {
                (Ok(_), Ok(1)) => break,
                (Ok(_), Ok(_)) => assert!(tx.wait_for_change(&waiter, None)),
                _ => {
                    tx.reset();
                    thread::yield_now();
                }
            }
        }
        tx.reset();
        t.join().unwrap();
    });
}

/// Two transactions that each read one variable and write the other (`y = x + 1`,
/// `x = y + 1`): the order their ordered hooks log them in, replayed sequentially, must give
/// the live result. Logging in any order other than the serialization order breaks this.
#[test]
fn loom_ordered_hooks_run_in_serialization_order() {
    use crate::sync::{Arc, Mutex};
    model(|| {
        let x = TVarHandle::new(0_i64);
        let y = TVarHandle::new(0_i64);
        let log = Arc::new(Mutex::new(Vec::new()));
        let step =
            |from: TVarHandle<i64>, to: TVarHandle<i64>, name: char, log: Arc<Mutex<Vec<char>>>| {
                move || {
                    let mut tx = RawTx::new();
                    loop {
                        tx.begin();
                        if let Ok(v) = read(&mut tx, &from) {
                            tx.write(&to, v + 1).unwrap();
                            let mut push = |_wv: u64| log.lock().push(name);
                            if tx.commit_ordered(Some(&mut push)).is_ok() {
                                tx.reset();
                                return;
                            }
                        }
                        tx.reset();
                        thread::yield_now();
                    }
                }
            };
        let t = thread::spawn(step(x.clone(), y.clone(), 'a', Arc::clone(&log)));
        step(y.clone(), x.clone(), 'b', Arc::clone(&log))();
        t.join().unwrap();
        let (mut rx, mut ry) = (0_i64, 0_i64);
        for &name in log.lock().iter() {
            match name {
                'a' => ry = rx + 1,
                _ => rx = ry + 1,
            }
        }
        assert_eq!((x.load_with(|v| *v), y.load_with(|v| *v)), (rx, ry));
    });
}

/// The lazy clock: a writer of `x` and `y` takes its version from the clock without storing
/// it; meanwhile this thread commits `z` (also without moving the clock), then reads `z`, meets
/// a version above its snapshot and moves the clock past both versions. It must then see `x`
/// and `y` both old or both new: the clock passed the first writer's version only after that
/// writer had locked both. Weaken the `SeqCst` ends of that argument (the lock and clock
/// accesses, and `clock::sc_fence` in loom builds) to `Acquire`/`Release`, and loom finds the
/// torn read.
#[test]
fn loom_a_clock_moved_by_a_reader_never_splits_a_commit() {
    model(|| {
        let x = TVarHandle::new(0_i64);
        let y = TVarHandle::new(0_i64);
        let z = TVarHandle::new(0_i64);
        let (x2, y2) = (x.clone(), y.clone());
        let both = thread::spawn(move || {
            commit_loop(|tx| {
                tx.write(&x2, 1).unwrap();
                tx.write(&y2, 1).unwrap();
                Ok(())
            })
        });
        commit_loop(|tx| {
            tx.write(&z, 1).unwrap();
            Ok(())
        });
        commit_loop(|tx| {
            // No yield before `x`: a yield lets the writer run to the end first.
            tx.read(&z, |v| *v)?;
            let a = tx.read(&x, |v| *v)?;
            let b = read(tx, &y)?;
            assert_eq!(a, b, "a reader saw half of a commit");
            Ok(())
        });
        both.join().unwrap();
    });
}

/// The same torn-transfer race for values kept in boxes (not inline): the published pointer,
/// not two words, carries the value.
#[test]
fn loom_boxed_values_are_never_torn() {
    model(|| {
        let a = TVarHandle::new(vec![10_i64]);
        let b = TVarHandle::new(vec![0_i64]);
        let (a2, b2) = (a.clone(), b.clone());
        let t = thread::spawn(move || {
            commit_loop(|tx| {
                let (x, y) = (tx.read(&a2, |v| v[0])?, tx.read(&b2, |v| v[0])?);
                tx.write(&a2, vec![x - 3]).unwrap();
                tx.write(&b2, vec![y + 3]).unwrap();
                Ok(())
            })
        });
        commit_loop(|tx| {
            thread::yield_now();
            let x = tx.read(&a, |v| v[0])?;
            thread::yield_now();
            let y = tx.read(&b, |v| v[0])?;
            assert_eq!(x + y, 10, "opacity violated");
            Ok(())
        });
        t.join().unwrap();
        assert_eq!(a.load_with(|v| v[0]) + b.load_with(|v| v[0]), 10);
    });
}

/// A variable's last two handles: one dropped by a transaction that wrote through it before
/// committing, the other by this thread. Whoever drops last kills the variable: the kill waits
/// for the commit's lock, or the commit finds the variable dead and skips its write. Either
/// way each value is dropped exactly once (the written one by the kill if it was published, by
/// the commit if skipped), and nothing deadlocks. Letting the kill ignore a held lock (and so
/// race the commit's publication) fails this model.
#[test]
fn loom_a_variable_dies_while_a_commit_holds_its_lock() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct Counted(usize, std::sync::Arc<[AtomicUsize; 2]>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.1[self.0].fetch_add(1, Ordering::SeqCst);
        }
    }
    model(|| {
        let drops = std::sync::Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let a = TVarHandle::new(Counted(0, std::sync::Arc::clone(&drops)));
        let mut mine = Some((a.clone(), Counted(1, std::sync::Arc::clone(&drops))));
        let t = thread::spawn(move || {
            let mut tx = RawTx::new();
            tx.begin();
            let (handle, value) = mine.take().expect("taken once");
            tx.write(&handle, value).unwrap();
            drop(handle);
            let _ = tx.commit();
            tx.reset();
        });
        thread::yield_now();
        drop(a);
        t.join().unwrap();
        let (first, written) = (
            drops[0].load(Ordering::SeqCst),
            drops[1].load(Ordering::SeqCst),
        );
        // Under loom the replaced first value is retired and leaked, and its count keeps the
        // variable alive: then neither is dropped. Otherwise both are, once.
        assert!(
            (first, written) == (1, 1) || (first, written) == (0, 0),
            "first value dropped {first} times, written value {written} times"
        );
    });
}

/// The torn-transfer race with an auditor that keeps no read set: every read is checked against
/// the snapshot alone, and meeting a newer version voids the attempt instead of extending the
/// snapshot. Letting such an attempt extend its snapshot without revalidating (it has nothing to
/// revalidate) fails this model.
#[test]
fn loom_unlogged_readers_never_see_a_torn_transfer() {
    model(|| {
        let a = TVarHandle::new(10_i64);
        let b = TVarHandle::new(0_i64);
        let (a2, b2) = (a.clone(), b.clone());
        let t = thread::spawn(move || {
            commit_loop(|tx| {
                let (x, y) = (tx.read(&a2, |v| *v)?, tx.read(&b2, |v| *v)?);
                tx.write(&a2, x - 3)?;
                tx.write(&b2, y + 3)?;
                Ok(())
            })
        });
        let sum = read_only_loop(|tx| {
            let x = read(tx, &a)?;
            let y = read(tx, &b)?;
            assert_eq!(x + y, 10, "opacity violated without a read set");
            Ok(x + y)
        });
        assert_eq!(sum, 10);
        t.join().unwrap();
    });
}
