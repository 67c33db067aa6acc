//! The PostgreSQL backend: four participants with separate stores share one log in a table.
//!
//! Needs a server: `STMX_PG_URL` (libpq-style parameters; `.ci/pg-start` starts one and
//! prints them). Without one, each test prints a notice and passes.
#![cfg(feature = "postgres")]

mod common;

use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use stm_persist::{Append, Backend, Mode, Options, PgBackend, Store};

/// A connection string, or `None` (with a printed notice) when no server is reachable.
fn server() -> Option<String> {
    let Ok(url) = std::env::var("STMX_PG_URL") else {
        eprintln!("NOTICE: STMX_PG_URL is not set; skipping the PostgreSQL tests");
        return None;
    };
    match PgBackend::connect(&url, "stmx_probe") {
        Ok(_) => Some(url),
        Err(e) => {
            eprintln!("NOTICE: no PostgreSQL server at {url:?} ({e}); skipping");
            None
        }
    }
}

/// A log name no earlier run used.
fn fresh_log(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{test}-{}-{nanos}", std::process::id())
}

fn open(url: &str, log: &str, options: Options) -> Store<Op> {
    let backend = PgBackend::connect(url, log).unwrap();
    options
        .open_backend(backend, Mode::Shared, Bank::new)
        .unwrap()
}

#[test]
fn appends_are_compare_and_append() {
    let Some(url) = server() else { return };
    let log = PgBackend::connect(&url, &fresh_log("cas")).unwrap();
    assert_eq!(log.next_position().unwrap(), 1);
    assert_eq!(
        log.append(1, &[b"a".to_vec(), b"b".to_vec()]).unwrap(),
        Append::Appended
    );
    assert_eq!(
        log.append(2, &[b"x".to_vec()]).unwrap(),
        Append::Conflict { next: 3 }
    );
    assert_eq!(
        log.append(4, &[b"gap".to_vec()]).unwrap(),
        Append::Conflict { next: 3 }
    );
    let mut seen = Vec::new();
    log.scan(1, &mut |pos, bytes| {
        seen.push((pos, bytes.to_vec()));
        Ok(true)
    })
    .unwrap();
    assert_eq!(seen, [(1, b"a".to_vec()), (2, b"b".to_vec())]);
}

#[test]
fn four_participants_converge_through_postgres() {
    let Some(url) = server() else { return };
    let log = fresh_log("bank");
    let per_participant = if cfg!(debug_assertions) { 250 } else { 1_000 };
    let (url2, log2) = (url.clone(), log.clone());
    let (stores, converged) = run_participants(4, per_participant, move || {
        open(&url2, &log2, Options::new())
    });
    // A snapshot, then replay from scratch in a new participant.
    stores[0].snapshot().unwrap();
    let fresh = open(&url, &log, Options::new());
    assert_eq!(fresh.state().balances(), converged);
}

#[test]
fn a_follower_wakes_on_notify() {
    let Some(url) = server() else { return };
    let log = fresh_log("follow");
    let writer = open(&url, &log, Options::new());
    let replica = open(&url, &log, Options::new().follow(Duration::from_secs(5)));
    writer.execute(Op::Deposit { to: 0, amount: 3 }).unwrap();
    let deadline = Instant::now() + Duration::from_secs(4);
    while replica.position() < 1 {
        assert!(
            Instant::now() < deadline,
            "no wake-up within the poll interval"
        );
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(replica.state().balances()[0], INITIAL + 3);
}
