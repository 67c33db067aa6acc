//! Shared logs: several stores (as separate processes would) append to one directory with
//! compare-and-append, roll forward, and converge.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;
use stm_persist::{Error, Options, Store};

#[test]
fn four_participants_converge_on_one_bank_and_replay_from_scratch_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let per_participant = if cfg!(debug_assertions) { 250 } else { 1_000 };
    let path = dir.path().to_path_buf();
    let (stores, converged) = run_participants(4, per_participant, move || {
        Store::<Op>::open_shared(&path, Bank::new).unwrap()
    });
    drop(stores);
    let fresh = Store::<Op>::open_shared(dir.path(), Bank::new).unwrap();
    assert_eq!(
        fresh.state().balances(),
        converged,
        "replay from scratch agrees"
    );
}

#[test]
fn a_participant_that_lost_the_race_re_runs_its_command_on_the_new_state() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::<Op>::open_shared(dir.path(), Bank::new).unwrap();
    let b = Store::<Op>::open_shared(dir.path(), Bank::new).unwrap();
    // a drains account 0; b has not seen it, so its withdrawal must be re-run and rejected.
    a.execute(Op::Transfer {
        from: 0,
        to: 1,
        amount: INITIAL,
    })
    .unwrap();
    let err = b
        .execute(Op::Transfer {
            from: 0,
            to: 2,
            amount: 1,
        })
        .unwrap_err();
    assert!(err.to_string().contains("has only 0"), "{err}");
    assert_eq!(b.state().balances()[..3], [0, 2 * INITIAL, INITIAL]);
    a.sync().unwrap();
    assert_eq!(a.state().balances(), b.state().balances());
}

#[test]
fn recorded_commands_are_logged_and_replayed_in_log_order() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::<Op>::open_shared(dir.path(), Bank::new).unwrap();
    let b = Store::<Op>::open_shared(dir.path(), Bank::new).unwrap();
    a.execute(Op::Deposit { to: 0, amount: 5 }).unwrap();
    b.record(Op::Deposit { to: 1, amount: 7 }).unwrap();
    assert_eq!(b.position(), 2);
    assert_eq!(b.state().balances()[..2], [INITIAL + 5, INITIAL + 7]);
    a.sync().unwrap();
    assert_eq!(a.state().balances(), b.state().balances());
}

#[test]
fn a_follower_keeps_a_replica_current() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::<Op>::open_shared(dir.path(), Bank::new).unwrap();
    let replica = Options::new()
        .follow(Duration::from_millis(5))
        .open_shared::<Op>(dir.path(), Bank::new)
        .unwrap();
    for _ in 0..10 {
        writer.execute(Op::Deposit { to: 3, amount: 1 }).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while replica.position() < 10 {
        assert!(Instant::now() < deadline, "the follower did not catch up");
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(replica.state().balances()[3], INITIAL + 10);
}

#[test]
fn a_replica_behind_a_compaction_is_told_to_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::<Op>::open_shared(dir.path(), Bank::new).unwrap();
    let b = Store::<Op>::open_shared(dir.path(), Bank::new).unwrap();
    a.execute(Op::Deposit { to: 0, amount: 1 }).unwrap();
    a.snapshot().unwrap();
    a.execute(Op::Deposit { to: 0, amount: 1 }).unwrap();
    a.snapshot().unwrap();
    let err = b.sync().unwrap_err();
    assert!(matches!(err, Error::Lagging { needed: 1, .. }), "{err}");
    drop(b);
    let b = Store::<Op>::open_shared(dir.path(), Bank::new).unwrap();
    assert_eq!(b.state().balances()[0], INITIAL + 2);
}
