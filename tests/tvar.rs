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
