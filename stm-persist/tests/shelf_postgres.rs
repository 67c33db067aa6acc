//! The shelf over PostgreSQL: objects stored by (shelf, pid) with a version column, one
//! writer per shelf.
//!
//! Needs a server: `STMX_PG_URL` (libpq-style parameters; `.ci/pg-start` starts one and
//! prints them). Without one, each test prints a notice and passes.
#![cfg(feature = "postgres")]

mod common;

use std::time::SystemTime;

use stm_persist::shelf::{Error, PVar, PgBackend, Shelf};

fn server() -> Option<String> {
    let Ok(url) = std::env::var("STMX_PG_URL") else {
        eprintln!("NOTICE: STMX_PG_URL is not set; skipping the PostgreSQL shelf tests");
        return None;
    };
    match postgres::Client::connect(&url, postgres::NoTls) {
        Ok(_) => Some(url),
        Err(e) => {
            eprintln!("NOTICE: no PostgreSQL server at {url:?} ({e}); skipping");
            None
        }
    }
}

/// A shelf name no earlier run used.
fn fresh(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{test}-{}-{nanos}", std::process::id())
}

#[test]
fn objects_survive_reconnecting_and_count_their_versions() {
    let Some(url) = server() else { return };
    let name = fresh("roundtrip");
    {
        let shelf = Shelf::with_backend(PgBackend::connect(&url, &name).unwrap());
        let a = shelf.create_with_id("a", vec![1_u32]).unwrap();
        let b = shelf.create_with_id("b", 0_i64).unwrap();
        for i in 2..=4 {
            shelf
                .atomically(|tx| {
                    a.modify(tx, |mut v| {
                        v.push(i);
                        v
                    })?;
                    b.modify(tx, |n| n - 1)
                })
                .unwrap();
        }
        shelf.create_with_id("gone", 1_u8).unwrap();
        shelf.atomically(|tx| shelf.delete(tx, "gone")).unwrap();
    }
    let shelf = Shelf::with_backend(PgBackend::connect(&url, &name).unwrap());
    assert_eq!(
        shelf.fetch::<Vec<u32>>("a").unwrap().read_atomic().unwrap(),
        [1, 2, 3, 4]
    );
    assert_eq!(shelf.fetch::<i64>("b").unwrap().read_atomic().unwrap(), -3);
    assert!(matches!(
        shelf.fetch::<u8>("gone"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        shelf.fetch::<String>("a"),
        Err(Error::TypeMismatch { .. })
    ));
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let version: i64 = client
        .query_one(
            "SELECT version FROM stmx_shelf WHERE shelf = $1 AND pid = 'a'",
            &[&name],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, 4, "created, then changed three times");
}

#[test]
fn a_second_writer_of_the_same_shelf_is_refused() {
    let Some(url) = server() else { return };
    let name = fresh("locked");
    let first = PgBackend::connect(&url, &name).unwrap();
    assert!(matches!(
        PgBackend::connect(&url, &name),
        Err(Error::Locked(_))
    ));
    assert!(
        PgBackend::connect(&url, &fresh("other")).is_ok(),
        "other shelves are free"
    );
    drop(first);
    PgBackend::connect(&url, &name).expect("free again once the writer is gone");
}

#[test]
fn concurrent_transfers_conserve_the_total_in_the_database() {
    let Some(url) = server() else { return };
    let name = fresh("transfers");
    const ACCOUNTS: usize = 8;
    let live: Vec<i64> = {
        let shelf = Shelf::with_backend(PgBackend::connect(&url, &name).unwrap());
        let accounts: Vec<PVar<i64>> = (0..ACCOUNTS)
            .map(|i| shelf.create_with_id(&format!("acct-{i}"), 100).unwrap())
            .collect();
        std::thread::scope(|s| {
            for t in 0..8_usize {
                let (shelf, accounts) = (&shelf, &accounts);
                s.spawn(move || {
                    for k in 0..50 {
                        let from = (t + k) % ACCOUNTS;
                        let to = (t * 3 + k * 5 + 1) % ACCOUNTS;
                        shelf
                            .atomically(|tx| {
                                let f = accounts[from].read(tx)?;
                                if from == to || f < 7 {
                                    return Ok(());
                                }
                                accounts[from].write(tx, f - 7)?;
                                accounts[to].modify(tx, |b| b + 7)
                            })
                            .unwrap();
                    }
                });
            }
        });
        accounts.iter().map(|a| a.read_atomic().unwrap()).collect()
    };
    assert_eq!(live.iter().sum::<i64>(), 100 * ACCOUNTS as i64);
    let shelf = Shelf::with_backend(PgBackend::connect(&url, &name).unwrap());
    assert_eq!(common::shelf_balances(&shelf, ACCOUNTS), live);
}
