//! `#[transactional]` structs through the facade: accessors in composed transactions, `retry`
//! on a field, `or_else`, snapshots, the supported struct shapes, and a concurrent transfer.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use stmx::prelude::*;

#[transactional]
#[derive(Debug, Clone)]
pub struct Account {
    pub owner: String,
    balance: i64,
}

/// A function that works on any transaction, composed into larger ones below.
fn transfer(tx: &mut Transaction, from: &Account, to: &Account, amount: i64) -> StmResult<()> {
    let available = from.balance(tx)?;
    guard(available >= amount)?;
    from.set_balance(tx, available - amount)?;
    to.modify_balance(tx, |b| b + amount)
}

#[test]
fn smoke() {
    let a = Account::new("ann".to_string(), 100);
    atomically(|tx| {
        let b = a.balance(tx)?;
        a.set_balance(tx, b - 10)?;
        a.modify_balance(tx, |b| b + 1)?;
        Ok(())
    });
    let snap: AccountSnapshot = a.snapshot_atomic();
    assert_eq!(snap.owner, "ann");
    assert_eq!(snap.balance, 91);
    assert_eq!(a.balance_tvar().read_atomic(), 91);
    assert_eq!(atomically(|tx| a.replace_balance(tx, 5)), 91);
    assert_eq!(atomically(|tx| a.snapshot(tx)).balance, 5);
}

#[test]
fn accessors_compose_into_one_atomic_transaction() {
    let (a, b) = (Account::new("a".into(), 50), Account::new("b".into(), 0));
    atomically(|tx| {
        transfer(tx, &a, &b, 20)?;
        transfer(tx, &b, &a, 5)?;
        a.set_owner(tx, "alice".into())
    });
    assert_eq!(a.snapshot_atomic().balance, 35);
    assert_eq!(b.snapshot_atomic().balance, 15);
    assert_eq!(a.snapshot_atomic().owner, "alice");

    // An aborted transaction leaves no trace in any field.
    let result: Result<(), &str> = try_atomically(|tx| {
        transfer(tx, &a, &b, 30)?;
        a.set_owner(tx, "mallory".into())?;
        Err(TxError::Abort("changed my mind"))
    });
    assert_eq!(result, Err("changed my mind"));
    assert_eq!(
        (
            a.balance_tvar().read_atomic(),
            b.balance_tvar().read_atomic()
        ),
        (35, 15)
    );
    assert_eq!(a.owner_tvar().read_atomic(), "alice");
}

#[test]
fn or_else_rolls_back_the_fields_written_by_an_alternative_that_retried() {
    let (a, b) = (Account::new("a".into(), 10), Account::new("b".into(), 0));
    let took = atomically(|tx| {
        tx.or_else(
            |tx| {
                a.set_owner(tx, "first".into())?;
                transfer(tx, &a, &b, 100).map(|()| "first") // not enough money: retries
            },
            |tx| transfer(tx, &a, &b, 10).map(|()| "second"),
        )
    });
    assert_eq!(took, "second");
    let (sa, sb) = (a.snapshot_atomic(), b.snapshot_atomic());
    assert_eq!((sa.owner.as_str(), sa.balance, sb.balance), ("a", 0, 10));
}

#[test]
fn retry_waits_for_a_field_to_change() {
    let account = Arc::new(Account::new("ann".into(), 0));
    let woken = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (account, woken) = (Arc::clone(&account), Arc::clone(&woken));
        thread::spawn(move || {
            let seen = atomically(|tx| {
                let b = account.balance(tx)?;
                guard(b > 0)?;
                Ok(b)
            });
            woken.store(true, Ordering::SeqCst);
            seen
        })
    };
    thread::sleep(Duration::from_millis(50));
    assert!(
        !woken.load(Ordering::SeqCst),
        "the waiter ran past an unmet guard"
    );
    // Writing another field of the same struct does not satisfy it...
    atomically(|tx| account.set_owner(tx, "bob".into()));
    thread::sleep(Duration::from_millis(50));
    assert!(
        !woken.load(Ordering::SeqCst),
        "the waiter ran past an unmet guard"
    );
    // ...writing the field it waits on does.
    atomically(|tx| account.set_balance(tx, 42));
    assert_eq!(waiter.join().unwrap(), 42);
}

#[test]
fn the_tvar_accessor_works_with_generic_code() {
    fn bump<T: Clone + Send + Sync + 'static>(
        tx: &mut Transaction,
        v: &TVar<T>,
        f: impl FnOnce(T) -> T,
    ) -> StmResult<()> {
        v.modify(tx, f)
    }
    let a = Account::new("ann".into(), 1);
    atomically(|tx| bump(tx, a.balance_tvar(), |b| b * 10));
    atomically(|tx| bump(tx, a.owner_tvar(), |o| o + "!"));
    let snap = a.snapshot_atomic();
    assert_eq!((snap.owner.as_str(), snap.balance), ("ann!", 10));
}

#[test]
fn derives_apply_to_the_struct_and_its_snapshot() {
    let a = Account::new("ann".into(), 7);
    let shown = format!("{a:?}");
    assert!(
        shown.contains("Account") && shown.contains("ann") && shown.contains('7'),
        "{shown}"
    );
    let snap = a.snapshot_atomic();
    let copy = snap.clone();
    assert_eq!(
        format!("{copy:?}"),
        r#"AccountSnapshot { owner: "ann", balance: 7 }"#
    );
    // From<snapshot> builds an independent struct...
    let b = Account::from(snap);
    atomically(|tx| b.set_balance(tx, 0));
    assert_eq!(a.snapshot_atomic().balance, 7);
    // ...while a derived Clone is a second handle to the same fields.
    let handle = a.clone();
    atomically(|tx| handle.set_balance(tx, 8));
    assert_eq!(a.snapshot_atomic().balance, 8);
}

/// Fields with docs, attributes, a plain field and a `where` clause on a generic struct.
#[transactional(snapshot_derive(PartialEq, Eq))]
#[derive(Debug)]
struct Tagged<T, const N: usize>
where
    T: Clone + Send + Sync + 'static,
{
    /// Never changes, so it is not a `TVar`.
    #[transactional(plain)]
    pub id: u64,
    #[allow(dead_code, reason = "an attribute on a field is kept")]
    pub items: Vec<T>,
    pub(crate) counts: [u32; N],
}

#[test]
fn generic_structs_with_plain_fields_and_where_clauses() {
    let t: Tagged<String, 2> = Tagged::new(9, vec!["x".into()], [0, 0]);
    atomically(|tx| {
        t.modify_items(tx, |mut v| {
            v.push("y".into());
            v
        })?;
        t.modify_counts(tx, |[a, b]| [a + 1, b + 2])
    });
    assert_eq!(t.id, 9);
    assert_eq!(
        t.snapshot_atomic(),
        TaggedSnapshot {
            id: 9,
            items: vec!["x".to_string(), "y".to_string()],
            counts: [1, 2]
        }
    );
}

#[transactional(snapshot_derive(PartialEq, Debug))]
#[derive(Default)]
struct Settings {
    verbose: bool,
    name: String,
}

#[test]
fn derive_default_gives_default_fields() {
    let s = Settings::default();
    assert_eq!(
        s.snapshot_atomic(),
        SettingsSnapshot {
            verbose: false,
            name: String::new()
        }
    );
    assert_eq!(SettingsSnapshot::default(), s.snapshot_atomic());
}

#[transactional]
#[derive(Debug)]
struct Point(pub i32, i32, #[transactional(plain)] &'static str);

#[test]
fn tuple_structs_get_numbered_accessors() {
    let p = Point::new(1, 2, "origin");
    atomically(|tx| {
        let x = p.get_0(tx)?;
        p.set_1(tx, x + 10)?;
        p.modify_0(tx, |x| x - 1)
    });
    assert_eq!(atomically(|tx| p.replace_1(tx, 0)), 11);
    assert_eq!(p.tvar_0().read_atomic(), 0);
    let PointSnapshot(x, y, name) = p.snapshot_atomic();
    assert_eq!((x, y, name), (0, 0, "origin"));
    assert_eq!(p.2, "origin");
}

/// Raw identifiers: the getter keeps the raw name, the other accessors drop the `r#`.
#[transactional]
struct Keywords {
    r#type: u8,
}

#[test]
fn raw_identifier_fields() {
    let k = Keywords::new(1);
    atomically(|tx| k.set_type(tx, 2));
    assert_eq!(atomically(|tx| k.r#type(tx)), 2);
    assert_eq!(k.type_tvar().read_atomic(), 2);
}

/// A crate that re-exports stmx names it with `crate = path`.
mod reexport {
    pub(crate) use stmx as runtime;
}

#[transactional(crate = crate::reexport::runtime)]
struct Elsewhere {
    n: u32,
}

#[test]
fn the_runtime_can_be_named_explicitly() {
    let e = Elsewhere::new(1);
    atomically(|tx| e.modify_n(tx, |n| n + 1));
    assert_eq!(e.snapshot_atomic().n, 2);
}

mod visibility {
    use stmx::prelude::*;

    #[transactional]
    pub struct Private {
        pub open: u32,
        pub(crate) crate_wide: u32,
        hidden: u32,
    }

    impl Private {
        /// The module itself reaches the private field's accessors.
        pub(crate) fn hidden_plus_one(&self) -> u32 {
            atomically(|tx| self.hidden(tx)) + 1
        }
    }
}

#[test]
fn accessors_keep_the_fields_visibility() {
    let p = visibility::Private::new(1, 2, 3);
    let (open, crate_wide) = atomically(|tx| Ok((p.open(tx)?, p.crate_wide(tx)?)));
    assert_eq!((open, crate_wide, p.hidden_plus_one()), (1, 2, 4));
    // `p.hidden(tx)` does not compile here: see stm-macros/tests/ui/private_accessor.rs.
}

#[test]
fn a_transactional_struct_is_send_and_sync() {
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<Account>();
    is_send_sync::<AccountSnapshot>();
    is_send_sync::<Tagged<String, 3>>();
}

/// Two threads move money back and forth between two `#[transactional]` accounts while an
/// auditor checks, inside every one of its transactions, that the total is unchanged.
#[test]
fn concurrent_transfers_between_transactional_structs_conserve_the_sum() {
    const TRANSFERS: u64 = if cfg!(debug_assertions) {
        20_000
    } else {
        100_000
    };
    let a = Arc::new(Account::new("a".into(), 1_000));
    let b = Arc::new(Account::new("b".into(), 1_000));
    let done = Arc::new(AtomicBool::new(false));
    let audits = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(3));

    let auditor = {
        let (a, b, done, audits, start) = (
            a.clone(),
            b.clone(),
            done.clone(),
            audits.clone(),
            start.clone(),
        );
        thread::spawn(move || {
            start.wait();
            while !done.load(Ordering::Relaxed) || audits.load(Ordering::Relaxed) == 0 {
                atomically(|tx| {
                    let (sa, sb) = (a.snapshot(tx)?, b.snapshot(tx)?);
                    assert_eq!(
                        sa.balance + sb.balance,
                        2_000,
                        "the auditor saw money appear"
                    );
                    Ok(())
                });
                audits.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let movers: Vec<_> = [(a.clone(), b.clone()), (b.clone(), a.clone())]
        .into_iter()
        .map(|(from, to)| {
            let start = start.clone();
            thread::spawn(move || {
                start.wait();
                let mut moved = 0;
                for i in 0..TRANSFERS {
                    let amount = (i % 7) as i64 + 1;
                    // Retry-free: when `from` is short, move what is there.
                    atomically(|tx| {
                        let amount = amount.min(from.balance(tx)?);
                        from.modify_balance(tx, |v| v - amount)?;
                        to.modify_balance(tx, |v| v + amount)
                    });
                    moved += 1;
                }
                moved
            })
        })
        .collect();
    let moved: u64 = movers.into_iter().map(|t| t.join().unwrap()).sum();
    done.store(true, Ordering::Relaxed);
    auditor.join().unwrap();

    assert_eq!(moved, 2 * TRANSFERS);
    let (sa, sb) = (a.snapshot_atomic(), b.snapshot_atomic());
    assert_eq!(sa.balance + sb.balance, 2_000);
    assert!(sa.balance >= 0 && sb.balance >= 0);
    assert!(audits.load(Ordering::Relaxed) > 0);
}
