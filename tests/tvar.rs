//! `TVar` operations, reclamation, and misuse.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread;

use stmx::prelude::*;

mod common;
use common::panic_message;

#[test]
fn smoke() {
    let v = TVar::new(1_u64);
    assert_eq!(atomically(|tx| v.read(tx)), 1);
    atomically(|tx| v.write(tx, 2));
    assert_eq!(v.read_atomic(), 2);
}

#[test]
fn operations_see_the_transactions_own_writes() {
    let v = TVar::new(10_i32);
    let seen = atomically(|tx| {
        v.write(tx, 11)?;
        let a = v.read(tx)?;
        v.modify(tx, |x| x * 2)?;
        let b = v.read_with(tx, |x| *x + 1)?;
        let old = v.replace(tx, 5)?;
        Ok((a, b, old, v.read(tx)?))
    });
    assert_eq!(seen, (11, 23, 22, 5));
    assert_eq!(v.read_atomic(), 5);
}

#[test]
fn read_with_does_not_clone() {
    struct NoClone(u32);
    let v = TVar::new(NoClone(7));
    assert_eq!(atomically(|tx| v.read_with(tx, |n| n.0)), 7);
}

#[test]
fn clones_are_handles_to_the_same_variable() {
    let a = TVar::new(String::from("x"));
    let b = a.clone();
    let c = TVar::new(String::from("x"));
    assert!(TVar::ref_eq(&a, &b));
    assert!(!TVar::ref_eq(&a, &c));
    b.write_atomic("y".into());
    assert_eq!(a.read_atomic(), "y");
    assert_eq!(c.read_atomic(), "x");
}

#[test]
fn debug_and_default() {
    let v: TVar<Vec<u8>> = TVar::default();
    assert_eq!(format!("{v:?}"), "TVar { value: [] }");
}

#[test]
fn read_atomic_is_allowed_inside_a_transaction() {
    let v = TVar::new(3);
    let (inner, outer) = atomically(|tx| {
        v.write(tx, 4)?;
        Ok((v.read(tx)?, v.read_atomic()))
    });
    assert_eq!(
        (inner, outer),
        (4, 3),
        "read_atomic sees the committed value"
    );
}

#[test]
fn write_atomic_inside_a_transaction_panics_and_the_thread_stays_usable() {
    let v = TVar::new(0);
    let err = catch_unwind(AssertUnwindSafe(|| {
        atomically(|tx| {
            v.write(tx, 1)?;
            v.write_atomic(2);
            Ok(())
        })
    }))
    .unwrap_err();
    let msg = panic_message(err);
    assert!(msg.contains("&mut Transaction"), "unhelpful message: {msg}");
    assert_eq!(
        v.read_atomic(),
        0,
        "the panicking transaction committed nothing"
    );
    atomically(|tx| v.write(tx, 3));
    v.write_atomic(4);
    assert_eq!(v.read_atomic(), 4);
}

#[test]
fn variables_dropped_inside_transactions_are_safe() {
    // A transaction that reads a variable and drops the last handle to it before committing.
    let keep = TVar::new(0);
    for _ in 0..1_000 {
        atomically(|tx| {
            let temp = TVar::new(vec![1_u8; 64]);
            let n = temp.read_with(tx, Vec::len)?;
            drop(temp);
            keep.modify(tx, |k| k + n)
        });
    }
    assert_eq!(keep.read_atomic(), 64_000);
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let keep = keep.clone();
            thread::spawn(move || {
                for _ in 0..2_000 {
                    let t = TVar::new(1);
                    atomically(|tx| {
                        let one = t.read(tx)?;
                        keep.modify(tx, |k| k + one)
                    });
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(keep.read_atomic(), 68_000);
}

/// A variable whose last handle is dropped inside the transaction that writes it dies at once;
/// the commit skips the write to it (nobody can read it) instead of waiting for its lock.
#[test]
fn writing_a_variable_that_dies_before_the_commit_commits() {
    let done = TVar::new(0_u32);
    for _ in 0..1_000 {
        atomically(|tx| {
            let temp = TVar::new(String::from("first"));
            temp.write(tx, String::from("second"))?;
            let n = temp.read_with(tx, String::len)?;
            drop(temp); // dies here, written but not committed
            done.modify(tx, |d| d + u32::try_from(n).unwrap())
        });
    }
    assert_eq!(done.read_atomic(), 6_000);
}

/// A `while_committing` hook runs while its commit holds its locks; dropping the last handle of
/// a variable the commit locked must not wait for those locks (that would deadlock).
#[test]
fn a_hook_holding_the_last_handle_of_a_written_variable_does_not_deadlock() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    struct Counted(#[allow(dead_code)] Vec<u8>);
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
        }
    }
    for round in 1..=100 {
        atomically(|tx| {
            let temp = TVar::new(Counted(vec![0_u8; 8]));
            temp.write(tx, Counted(vec![1; 8]))?;
            tx.while_committing(move |_| drop(temp));
            Ok(())
        });
        // The first value and the written one, each dropped exactly once.
        stmx::collect_garbage();
        assert_eq!(DROPS.load(Ordering::SeqCst), 2 * round);
    }
}

/// Nothing can change a variable whose handles are all gone: a transaction blocked in `retry`
/// on it is woken when it dies, so it can find its way to whatever replaced it.
#[test]
fn a_waiter_is_woken_when_the_variable_it_waits_on_dies() {
    use std::sync::{Arc, Mutex, mpsc};
    let slot = Arc::new(Mutex::new(Some(TVar::new(0_u32))));
    let (tx_done, done) = mpsc::channel();
    let waiter = {
        let slot = Arc::clone(&slot);
        thread::spawn(move || {
            let seen = atomically(|tx| {
                let current = slot.lock().unwrap().clone();
                match current {
                    Some(v) if v.read(tx)? == 0 => retry(),
                    Some(v) => v.read(tx),
                    None => Ok(u32::MAX),
                }
            });
            tx_done.send(seen).unwrap();
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    *slot.lock().unwrap() = None; // the last handle: the variable dies
    let seen = done
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the waiter was not woken when its variable died");
    assert_eq!(seen, u32::MAX);
    waiter.join().unwrap();
}

/// `read_through` and `Reader::read_ref` see what `read` sees: the transaction's own pending
/// writes, inline values (lent as copies, more than one arena chunk of them) and boxed ones.
#[test]
fn read_through_sees_pending_writes_and_inline_values() {
    // 300 inline values: more arena chunks than an arena keeps between attempts.
    let small: Vec<TVar<u64>> = (0..300).map(TVar::new).collect();
    let holder = TVar::new(small.clone());
    let name = TVar::new(String::from("old"));
    let outer = TVar::new(name.clone());
    // Three times: later attempts reuse (and trim) the arena of the first.
    for _ in 0..3 {
        read_all(&small, &holder, &name, &outer);
    }
}

fn read_all(
    small: &[TVar<u64>],
    holder: &TVar<Vec<TVar<u64>>>,
    name: &TVar<String>,
    outer: &TVar<TVar<String>>,
) {
    let (sum, seen) = atomically(|tx| {
        small[7].write(tx, 1_000)?;
        name.write(tx, String::from("new"))?;
        let sum = holder.read_through(tx, |vars, reader| {
            let mut refs = Vec::new();
            for v in vars {
                refs.push(reader.read_ref(v)?);
            }
            // Every reference is still valid after later reads.
            Ok(refs.iter().map(|r| **r).sum::<u64>())
        })?;
        let seen = outer.read_through(tx, |name, reader| Ok(reader.read_ref(name)?.clone()))?;
        Ok((sum, seen))
    });
    assert_eq!(sum, (0..300).sum::<u64>() - 7 + 1_000);
    assert_eq!(seen, "new");
}

/// Reads through a `Reader` belong to the transaction: a transaction that waits in `retry`
/// after reading a variable only through `read_ref` is woken when that variable changes.
#[test]
fn a_retry_waits_on_what_a_reader_read() {
    let flag = TVar::new(false);
    let outer = TVar::new(flag.clone());
    let waiter = thread::spawn(move || {
        atomically(|tx| {
            let up = outer.read_through(tx, |flag, reader| Ok(*reader.read_ref(flag)?))?;
            if up { Ok(()) } else { retry() }
        })
    });
    thread::sleep(std::time::Duration::from_millis(20));
    flag.write_atomic(true);
    waiter.join().unwrap();
}

/// `read_then` lends the value along with the transaction: `f` may write the variable itself,
/// and keeps seeing the value as it was read, whether it was the committed value (lent as is)
/// or the transaction's own earlier write (lent as a copy, since a write replaces it in place).
#[test]
fn read_then_lends_the_value_as_it_was_read_across_writes() {
    let v = TVar::new(vec![1_u64, 2]);
    let other = TVar::new(0_usize);
    atomically(|tx| {
        v.read_then(tx, |before, tx| {
            v.write(tx, vec![9])?;
            v.write(tx, vec![8, 8, 8])?;
            other.write(tx, before.len())?;
            assert_eq!(before, &[1, 2], "the committed value, as read");
            assert_eq!(v.read(tx)?, [8, 8, 8]);
            Ok(())
        })
    });
    assert_eq!(v.read_atomic(), [8, 8, 8]);
    assert_eq!(other.read_atomic(), 2);
    atomically(|tx| {
        v.write(tx, vec![5; 4])?;
        v.read_then(tx, |before, tx| {
            v.write(tx, vec![6])?;
            v.write(tx, vec![7; 3])?;
            assert_eq!(before, &[5; 4], "the transaction's own write, as read");
            Ok(())
        })
    });
    assert_eq!(v.read_atomic(), [7; 3]);
    // Inline values are lent as copies too.
    let n = TVar::new(3_u64);
    atomically(|tx| {
        n.read_then(tx, |before, tx| {
            n.write(tx, before + 1)?;
            assert_eq!(*before, 3);
            Ok(())
        })
    });
    assert_eq!(n.read_atomic(), 4);
}
