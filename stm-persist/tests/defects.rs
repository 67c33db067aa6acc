//! Regression tests for the defects of stm-persist v1: each failed on that code.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use common::*;

use stm_persist::{Append, Backend, DirBackend, Error, ExecuteError, Mode, Options, Store};

fn file_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && !n.contains(".tmp"))
        })
        .collect();
    files.sort();
    files
}

/// Defect 1: a command that waits (`guard`) while another thread deposits through the same
/// store. v1's shared store ran the command under its append lock, so the deposit, which
/// needs that lock, never came: a deadlock.
fn a_waiting_command_is_woken_by_a_deposit(open: impl Fn(&Path) -> Store<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let (done_tx, done) = mpsc::channel();
    // Not a scoped thread: on a deadlock the test must fail, not hang.
    let waiter = Arc::clone(&store);
    let waiting = thread::spawn(move || {
        let left = waiter.execute(Op::WithdrawWhenAble {
            from: 0,
            amount: INITIAL + 50,
        });
        let _ = done_tx.send(left.unwrap());
    });
    // The withdrawal is short by 50: it must wait, not fail and not return.
    assert!(done.recv_timeout(Duration::from_millis(200)).is_err());
    let (deposited_tx, deposited) = mpsc::channel();
    let depositor = Arc::clone(&store);
    let depositing = thread::spawn(move || {
        let _ = deposited_tx.send(depositor.execute(Op::Deposit { to: 0, amount: 80 }).is_ok());
    });
    assert!(
        deposited
            .recv_timeout(Duration::from_secs(20))
            .expect("the deposit could not run while a command waited (deadlock)"),
        "the deposit failed"
    );
    let left = done
        .recv_timeout(Duration::from_secs(20))
        .expect("the waiting command was not woken by the deposit");
    assert_eq!(left, 30);
    assert_eq!(store.state().balances()[0], 30);
    waiting.join().unwrap();
    depositing.join().unwrap();
    drop(store);
    assert_eq!(
        open(dir.path()).state().balances()[0],
        30,
        "both logged, in order"
    );
}

#[test]
fn retry_in_a_command_waits_for_the_state_to_change_in_a_shared_store() {
    a_waiting_command_is_woken_by_a_deposit(|p| Store::open_shared(p, Bank::new).unwrap());
}

#[test]
fn retry_in_a_command_waits_for_the_state_to_change_in_an_exclusive_store() {
    a_waiting_command_is_woken_by_a_deposit(|p| Store::open(p, Bank::new).unwrap());
}

#[test]
fn a_shared_waiting_command_sees_another_participants_deposit_through_the_follower() {
    let dir = tempfile::tempdir().unwrap();
    let waiter = stm_persist::Options::new()
        .follow(Duration::from_millis(5))
        .open_shared::<Op>(dir.path(), Bank::new)
        .unwrap();
    let other = Store::<Op>::open_shared(dir.path(), Bank::new).unwrap();
    thread::scope(|s| {
        let w = s.spawn(|| {
            waiter.execute(Op::WithdrawWhenAble {
                from: 1,
                amount: INITIAL + 1,
            })
        });
        thread::sleep(Duration::from_millis(50));
        other.execute(Op::Deposit { to: 1, amount: 1 }).unwrap();
        assert_eq!(w.join().unwrap().unwrap(), 0);
    });
    other.sync().unwrap();
    assert_eq!(other.state().balances(), waiter.state().balances());
}

/// Defect 3: one damaged byte in a frame's length field made open take every later record for
/// a torn tail and cut them all.
#[test]
fn a_damaged_length_field_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    drop(with_deposits(dir.path(), 0, 40));
    let seg = dir.path().join("log-00000000000000000001.seg");
    let mut bytes = fs::read(&seg).unwrap();
    let len = bytes.len();
    bytes[20 + 2] ^= 0x01; // the third byte of the first frame's length
    fs::write(&seg, &bytes).unwrap();
    let err = Store::<Op>::open(dir.path(), Bank::new).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains("log-00000000000000000001.seg"),
        "{err}"
    );
    assert_eq!(fs::read(&seg).unwrap().len(), len, "nothing was cut");
}

/// Deposits 1 into account `to`, `n` times, each durable.
fn deposit(bank: &Store<Op>, to: usize, n: usize) {
    for _ in 0..n {
        bank.execute(Op::Deposit { to, amount: 1 }).unwrap();
    }
}

/// An exclusive store in `dir` after `n` deposits into account `to`.
fn with_deposits(dir: &Path, to: usize, n: usize) -> Store<Op> {
    let bank = Store::<Op>::open(dir, Bank::new).unwrap();
    deposit(&bank, to, n);
    bank
}

/// Four rounds of ten deposits, each followed by a snapshot; the snapshot files left.
fn deposits_and_snapshots(dir: &Path) -> Vec<PathBuf> {
    let bank = Store::<Op>::open(dir, Bank::new).unwrap();
    for _ in 0..4 {
        deposit(&bank, 2, 10);
        bank.snapshot().unwrap();
    }
    file_named(dir, "snap-")
}

/// Flips a bit in the last byte of a file.
fn damage(path: &PathBuf) {
    let mut bytes = fs::read(path).unwrap();
    *bytes.last_mut().unwrap() ^= 0x10;
    fs::write(path, &bytes).unwrap();
}

/// Defect 4: compaction deleted the log an older snapshot needed, so a damaged newest
/// snapshot made the store unopenable with a misleading `Lagging`.
#[test]
fn a_damaged_newest_snapshot_falls_back_on_the_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = deposits_and_snapshots(dir.path());
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    damage(snaps.last().unwrap());
    let bank = Store::<Op>::open(dir.path(), Bank::new).unwrap();
    assert_eq!(bank.state().balances()[2], INITIAL + 40);
    bank.execute(Op::Deposit { to: 2, amount: 1 }).unwrap();
}

#[test]
fn when_no_snapshot_can_be_used_the_damage_is_the_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = deposits_and_snapshots(dir.path());
    snaps.iter().for_each(damage);
    let err = Store::<Op>::open(dir.path(), Bank::new).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    let newest = snaps.last().unwrap().file_name().unwrap().to_str().unwrap();
    assert!(err.to_string().contains(newest), "{err}");
}

/// Defect 5, by hand: a snapshot at 12 over a log that ends at 10 (v1 could leave this after
/// a crash right after `snapshot()`). v1 reopened it, then failed every `execute` forever.
#[test]
fn a_snapshot_past_the_end_of_the_log_does_not_lock_the_store() {
    let donor = tempfile::tempdir().unwrap();
    assert_eq!(with_deposits(donor.path(), 1, 12).snapshot().unwrap(), 12);
    let dir = tempfile::tempdir().unwrap();
    drop(with_deposits(dir.path(), 1, 10));
    let snap = file_named(donor.path(), "snap-").pop().unwrap();
    fs::copy(&snap, dir.path().join(snap.file_name().unwrap())).unwrap();
    for _ in 0..2 {
        let bank = Store::<Op>::open(dir.path(), Bank::new).unwrap();
        let before = bank.state().balances()[1];
        bank.execute(Op::Deposit { to: 1, amount: 1 }).unwrap();
        assert_eq!(bank.state().balances()[1], before + 1);
    }
    let bank = Store::<Op>::open(dir.path(), Bank::new).unwrap();
    assert_eq!(bank.state().balances()[1], INITIAL + 14);
    assert_eq!(bank.position(), 14);
}

/// A directory log whose appends take 30 ms, which reports a snapshot saved over records that
/// are not durable yet.
struct SlowLog {
    inner: DirBackend,
    durable: AtomicU64,
    violations: Arc<AtomicU64>,
    /// Appends panic (after their 30 ms) instead of writing.
    panics: bool,
    /// Appends begun.
    appends: Arc<AtomicU64>,
}

impl SlowLog {
    fn new(dir: &Path, violations: &Arc<AtomicU64>, panics: bool) -> Self {
        SlowLog {
            inner: DirBackend::open_exclusive(dir).unwrap(),
            durable: AtomicU64::new(0),
            violations: Arc::clone(violations),
            panics,
            appends: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Backend for SlowLog {
    fn next_position(&self) -> stm_persist::Result<u64> {
        self.inner.next_position()
    }
    fn append(&self, first: u64, records: &[Vec<u8>]) -> stm_persist::Result<Append> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(30));
        assert!(!self.panics, "a backend that panics");
        let appended = self.inner.append(first, records)?;
        if appended == Append::Appended {
            self.durable
                .store(first + records.len() as u64 - 1, Ordering::SeqCst);
        }
        Ok(appended)
    }
    fn scan(
        &self,
        from: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> stm_persist::Result<bool>,
    ) -> stm_persist::Result<u64> {
        self.inner.scan(from, visit)
    }
    fn save_snapshot(&self, seq: u64, bytes: &[u8]) -> stm_persist::Result<()> {
        if seq > self.durable.load(Ordering::SeqCst) {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.save_snapshot(seq, bytes)
    }
    fn snapshots(&self) -> stm_persist::Result<Vec<u64>> {
        self.inner.snapshots()
    }
    fn load_snapshot(&self, seq: u64) -> stm_persist::Result<(String, Vec<u8>)> {
        self.inner.load_snapshot(seq)
    }
    fn compact(&self, through: u64) -> stm_persist::Result<()> {
        self.inner.compact(through)
    }
}

/// Defect 5: v1's `snapshot()` took its position from commands committed in memory whose
/// records were still being written, and saved without waiting for them.
#[test]
fn a_snapshot_never_covers_records_that_are_not_durable() {
    let dir = tempfile::tempdir().unwrap();
    let violations = Arc::new(AtomicU64::new(0));
    let log = SlowLog::new(dir.path(), &violations, false);
    let bank = Options::new()
        .open_backend::<Op>(log, Mode::Exclusive, Bank::new)
        .unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..3 {
                bank.execute(Op::Deposit { to: 0, amount: 1 }).unwrap();
            }
        });
        for _ in 0..6 {
            thread::sleep(Duration::from_millis(10));
            bank.snapshot().unwrap();
        }
    });
    assert_eq!(
        violations.load(Ordering::SeqCst),
        0,
        "a snapshot covered records not durable"
    );
}

/// A backend that panics in the middle of a group commit: the caller that was writing gets
/// the panic, the callers waiting for that batch get `Poisoned` instead of waiting forever.
#[test]
fn a_panicking_backend_poisons_the_store_instead_of_stranding_its_waiters() {
    let dir = tempfile::tempdir().unwrap();
    let log = SlowLog::new(dir.path(), &Arc::new(AtomicU64::new(0)), true);
    let appends = Arc::clone(&log.appends);
    let bank = Arc::new(
        Options::new()
            .open_backend::<Op>(log, Mode::Exclusive, Bank::new)
            .unwrap(),
    );
    let writer = {
        let bank = Arc::clone(&bank);
        thread::spawn(move || bank.execute(Op::Deposit { to: 0, amount: 1 }))
    };
    while appends.load(Ordering::SeqCst) == 0 {
        thread::sleep(Duration::from_millis(1)); // until the writer is inside its append
    }
    let (told, waiter) = mpsc::channel();
    let waiting = Arc::clone(&bank);
    thread::spawn(move || {
        let _ = told.send(waiting.execute(Op::Deposit { to: 1, amount: 1 }));
    });
    let outcome = waiter
        .recv_timeout(Duration::from_secs(20))
        .expect("a caller waiting for the batch was stranded");
    assert!(
        matches!(outcome, Err(ExecuteError::Store(Error::Poisoned))),
        "{outcome:?}"
    );
    assert!(writer.join().is_err(), "the writing caller gets the panic");
    assert!(matches!(
        bank.execute(Op::Deposit { to: 2, amount: 1 }),
        Err(ExecuteError::Store(Error::Poisoned))
    ));
}
