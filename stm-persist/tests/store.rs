//! The exclusive store: durability, replay, rejection, snapshots, group commit under
//! contention, torn tails, damage, format versions, the transaction checker.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use common::*;
use stm_persist::{Error, ExecuteError, Options, Store};

fn open(dir: &Path) -> Store<Op> {
    Store::open(dir, Bank::new).expect("open")
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    out.sort();
    out
}

#[test]
fn executed_commands_survive_a_restart_and_rejected_ones_leave_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bank = open(dir.path());
        assert_eq!(
            bank.execute(Op::Transfer {
                from: 0,
                to: 1,
                amount: 400
            })
            .unwrap(),
            600
        );
        let err = bank
            .execute(Op::Transfer {
                from: 0,
                to: 1,
                amount: 601,
            })
            .unwrap_err();
        assert!(
            matches!(&err, ExecuteError::Rejected(m) if m.contains("only 600")),
            "{err}"
        );
        bank.execute(Op::Deposit { to: 3, amount: 5 }).unwrap();
        assert_eq!(bank.position(), 2, "the rejected command took no position");
    }
    let bank = open(dir.path());
    assert_eq!(bank.position(), 2);
    assert_eq!(bank.state().balances()[..4], [600, 1_400, 1_000, 1_005]);
}

#[test]
fn a_second_owner_is_refused_while_the_first_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let _bank = open(dir.path());
    let err = Store::<Op>::open(dir.path(), Bank::new).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    let err = Store::<Op>::open_shared(dir.path(), Bank::new).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
}

#[test]
fn concurrent_callers_are_logged_in_commit_order_so_replay_matches_the_live_state() {
    let dir = tempfile::tempdir().unwrap();
    let threads = 4;
    let per_thread = if cfg!(debug_assertions) { 300 } else { 1_500 };
    let live = {
        let bank = Arc::new(open(dir.path()));
        let workers: Vec<_> = (0..threads as u64)
            .map(|t| {
                let bank = Arc::clone(&bank);
                thread::spawn(move || {
                    let mut seed = 0x5EED ^ ((t + 1) << 20);
                    for _ in 0..per_thread {
                        let _ = bank.execute(random_transfer(&mut seed));
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        let live = bank.state().balances();
        assert_eq!(live.iter().sum::<i64>(), INITIAL * ACCOUNTS as i64);
        live
    };
    let replayed = open(dir.path());
    assert_eq!(
        replayed.state().balances(),
        live,
        "replay reproduces the live state"
    );
}

#[test]
fn a_snapshot_covers_the_log_before_it_and_drops_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = vec![INITIAL; ACCOUNTS];
    let mut seed = 7;
    {
        let bank = open(dir.path());
        for round in 0..3 {
            for _ in 0..50 {
                let op = random_transfer(&mut seed);
                assert_eq!(
                    bank.execute(op.clone()).is_ok(),
                    apply_model(&mut model, &op)
                );
            }
            assert_eq!(bank.snapshot().unwrap(), bank.position());
            assert!(
                segments(dir.path()).len() <= 2,
                "round {round}: old segments dropped"
            );
        }
        for _ in 0..10 {
            let op = random_transfer(&mut seed);
            assert_eq!(
                bank.execute(op.clone()).is_ok(),
                apply_model(&mut model, &op)
            );
        }
    }
    let bank = open(dir.path());
    assert_eq!(bank.state().balances(), model);
}

#[test]
fn a_snapshot_taken_while_writers_run_is_consistent() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bank = Arc::new(open(dir.path()));
        let writer = {
            let bank = Arc::clone(&bank);
            thread::spawn(move || {
                let mut seed = 99;
                for _ in 0..400 {
                    let _ = bank.execute(random_transfer(&mut seed));
                }
            })
        };
        for _ in 0..5 {
            bank.snapshot().unwrap();
        }
        writer.join().unwrap();
    }
    // The newest snapshot plus the records after it: the sum holds and the state is whole.
    let bank = open(dir.path());
    assert_eq!(
        bank.state().balances().iter().sum::<i64>(),
        INITIAL * ACCOUNTS as i64
    );
}

/// Writes `n` deposits (of 1 to account 0) and returns the log's only segment.
fn log_with_deposits(dir: &Path, n: usize) -> PathBuf {
    let bank = open(dir);
    for _ in 0..n {
        bank.execute(Op::Deposit { to: 0, amount: 1 }).unwrap();
    }
    let segs = segments(dir);
    assert_eq!(segs.len(), 1);
    segs[0].clone()
}

#[test]
fn a_torn_tail_is_cut_at_any_byte_and_everything_before_it_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let seg = log_with_deposits(dir.path(), 3);
    let whole = fs::read(&seg).unwrap();
    let two = {
        let d = tempfile::tempdir().unwrap();
        let s = log_with_deposits(d.path(), 2);
        fs::read(s).unwrap().len()
    };
    for cut in two..whole.len() {
        fs::write(&seg, &whole[..cut]).unwrap();
        let bank = open(dir.path());
        assert_eq!(bank.state().balances()[0], INITIAL + 2, "cut at {cut}");
        assert_eq!(bank.position(), 2);
        drop(bank);
        assert_eq!(
            fs::read(&seg).unwrap().len(),
            two,
            "the torn bytes were cut"
        );
    }
    // Appends after a cut land where the torn record was.
    fs::write(&seg, &whole[..whole.len() - 3]).unwrap();
    open(dir.path())
        .execute(Op::Deposit { to: 0, amount: 10 })
        .unwrap();
    assert_eq!(open(dir.path()).state().balances()[0], INITIAL + 12);
}

#[test]
fn damage_before_the_tail_is_an_error_not_a_silent_cut() {
    let dir = tempfile::tempdir().unwrap();
    let seg = log_with_deposits(dir.path(), 3);
    let mut bytes = fs::read(&seg).unwrap();
    bytes[20 + 8 + 3] ^= 0x40; // inside the first record's payload
    fs::write(&seg, &bytes).unwrap();
    let err = Store::<Op>::open(dir.path(), Bank::new).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[test]
fn an_unknown_format_version_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let seg = log_with_deposits(dir.path(), 1);
    let mut bytes = fs::read(&seg).unwrap();
    bytes[8] = 99; // the segment header's version
    fs::write(&seg, &bytes).unwrap();
    let err = Store::<Op>::open(dir.path(), Bank::new).unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnsupportedFormat {
                found: 99,
                supported: 2,
                ..
            }
        ),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    {
        let bank = open(dir.path());
        bank.execute(Op::Deposit { to: 0, amount: 1 }).unwrap();
        bank.snapshot().unwrap();
    }
    let snap = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "snap"))
        .unwrap();
    let mut bytes = fs::read(&snap).unwrap();
    bytes[8] = 7;
    fs::write(&snap, &bytes).unwrap();
    let err = Store::<Op>::open(dir.path(), Bank::new).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedFormat { found: 7, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("snapshot"), "{err}");
}

#[test]
fn the_transaction_checker_rejects_an_unknown_command_and_applies_nothing_past_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bank = open(dir.path());
        bank.execute(Op::Transfer {
            from: 0,
            to: 1,
            amount: 1,
        })
        .unwrap();
        bank.execute(Op::Deposit { to: 0, amount: 1 }).unwrap();
        bank.execute(Op::Transfer {
            from: 0,
            to: 1,
            amount: 1,
        })
        .unwrap();
    }
    let err = Options::new()
        .allow(["Transfer"])
        .open::<Op>(dir.path(), Bank::new)
        .unwrap_err();
    match &err {
        Error::UnknownCommand { position, name } => {
            assert_eq!((*position, name.as_str()), (2, "Deposit"))
        }
        other => panic!("wrong error: {other}"),
    }
    assert!(
        err.to_string()
            .contains("log record 2 names the command `Deposit`"),
        "{err}"
    );
    // With both allowed, everything replays.
    let bank = Options::new()
        .allow(["Transfer", "Deposit"])
        .open::<Op>(dir.path(), Bank::new)
        .unwrap();
    assert_eq!(bank.state().balances()[..2], [999, 1_002]);
}

/// A newer program's command enum, with a variant the old one lacks.
mod newer {
    use super::common::Bank;
    use serde::{Deserialize, Serialize};
    use stm_persist::Command;
    use stmx::{Transaction, TxError};

    #[derive(Serialize, Deserialize)]
    pub(crate) enum Op {
        Transfer { from: usize, to: usize, amount: i64 },
        Deposit { to: usize, amount: i64 },
        Freeze { account: usize },
    }

    impl Command for Op {
        type State = Bank;
        type Output = ();
        type Error = String;
        fn apply(&self, _: &Bank, _: &mut Transaction) -> Result<(), TxError<String>> {
            Ok(())
        }
    }
}

#[test]
fn without_an_allowlist_the_command_enum_itself_rejects_unknown_variants() {
    let dir = tempfile::tempdir().unwrap();
    {
        let newer = Store::<newer::Op>::open(dir.path(), Bank::new).unwrap();
        newer
            .execute(newer::Op::Deposit { to: 0, amount: 1 })
            .unwrap();
        newer.execute(newer::Op::Freeze { account: 2 }).unwrap();
    }
    let err = Store::<Op>::open(dir.path(), Bank::new).unwrap_err();
    match &err {
        Error::UnknownCommand { position, name } => {
            assert_eq!(*position, 2);
            assert!(name.starts_with("Freeze"), "{name}");
        }
        other => panic!("wrong error: {other}"),
    }
}

#[test]
fn record_logs_a_commuting_command() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bank = open(dir.path());
        bank.record(Op::Deposit { to: 2, amount: 7 }).unwrap();
    }
    assert_eq!(open(dir.path()).state().balances()[2], INITIAL + 7);
}

#[test]
fn reads_combine_with_other_transactional_code() {
    let dir = tempfile::tempdir().unwrap();
    let bank = open(dir.path());
    bank.execute(Op::Deposit { to: 1, amount: 1 }).unwrap();
    let other = stmx::TVar::new(10_i64);
    let total = stmx::atomically(|tx| Ok(bank.state().0[1].read(tx)? + other.read(tx)?));
    assert_eq!(total, INITIAL + 11);
    assert_eq!(bank.read(|b, tx| b.0[1].read(tx)), INITIAL + 1);
}

/// A command that replays differently from how it ran (here: it waits on replay) is reported
/// as `Error::Replay`, naming the record; replay never blocks.
#[test]
fn a_command_that_waits_on_replay_is_a_replay_error_not_a_hang() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use stm_persist::Command;
    use stmx::{Transaction, TxError};
    static REPLAYING: AtomicBool = AtomicBool::new(false);

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Fickle;

    impl Command for Fickle {
        type State = Bank;
        type Output = ();
        type Error = String;
        fn apply(&self, bank: &Bank, tx: &mut Transaction) -> Result<(), TxError<String>> {
            bank.0[0].modify(tx, |b| b + 1)?;
            // Not deterministic: exactly what a command must not do.
            stmx::guard(!REPLAYING.load(Ordering::SeqCst))?;
            Ok(())
        }
    }

    let dir = tempfile::tempdir().unwrap();
    Store::<Fickle>::open(dir.path(), Bank::new)
        .unwrap()
        .execute(Fickle)
        .unwrap();
    REPLAYING.store(true, Ordering::SeqCst);
    let err = Store::<Fickle>::open(dir.path(), Bank::new).unwrap_err();
    assert!(
        matches!(&err, Error::Replay { position: 1, name, .. } if name == "Fickle"),
        "{err}"
    );
    assert!(err.to_string().contains("retry"), "{err}");
}
