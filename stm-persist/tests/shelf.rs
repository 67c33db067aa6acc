//! The shelf: persistent objects by pid, loaded lazily, stored in serialization order.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use stm_persist::shelf::{Backend, Change, Error, PRef, PVar, RedbBackend, Shelf};
use stmx::{StmError, TVar, atomically, retry};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Account {
    owner: String,
    balance: i64,
}

fn account(owner: &str, balance: i64) -> Account {
    Account {
        owner: owner.into(),
        balance,
    }
}

fn path(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("data/app.shelf")
}

#[test]
fn the_issue_example_round_trips_through_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ann_pid = {
        let shelf = Shelf::open(path(&dir)).unwrap();
        let ann: PVar<Account> = shelf.create(account("ann", 100)).unwrap();
        let bob: PVar<Account> = shelf.create_with_id("bob", account("bob", 0)).unwrap();
        shelf
            .atomically(|tx| {
                let a = ann.read(tx)?;
                ann.write(
                    tx,
                    Account {
                        balance: a.balance - 10,
                        ..a
                    },
                )?;
                bob.modify(tx, |b| Account {
                    balance: b.balance + 10,
                    ..b
                })
            })
            .unwrap();
        let again = shelf.fetch::<Account>("bob").unwrap();
        assert!(PVar::ref_eq(&again, &bob), "one object per pid");
        assert_eq!(again.pid(), "bob");
        ann.pid().to_string()
    };
    let shelf = Shelf::open(path(&dir)).unwrap();
    assert_eq!(shelf.stats().resident, 0);
    let (ann, bob) = (
        shelf.fetch::<Account>(&ann_pid).unwrap(),
        shelf.fetch::<Account>("bob").unwrap(),
    );
    assert_eq!(shelf.stats().loads, 0, "fetch decodes nothing");
    assert_eq!(ann.read_atomic().unwrap(), account("ann", 90));
    assert_eq!(shelf.stats().loads, 1, "the first read loads");
    assert_eq!(bob.read_atomic().unwrap(), account("bob", 10));
    assert_eq!(ann.read_atomic().unwrap(), account("ann", 90));
    assert_eq!(
        shelf.stats().loads,
        2,
        "a loaded object is not loaded again"
    );
}

#[test]
fn reopening_loads_only_the_objects_touched() {
    let dir = tempfile::tempdir().unwrap();
    let n = if cfg!(debug_assertions) {
        20_000
    } else {
        100_000
    };
    let pids: Vec<String> = {
        let shelf = Shelf::open(path(&dir)).unwrap();
        let mut pids = Vec::with_capacity(n);
        for chunk in (0..n as u64).collect::<Vec<_>>().chunks(5_000) {
            let vars = shelf
                .atomically(|tx| {
                    chunk
                        .iter()
                        .map(|&i| shelf.create_in(tx, i))
                        .collect::<Result<Vec<PVar<u64>>, _>>()
                })
                .unwrap();
            pids.extend(vars.iter().map(|v| v.pid().to_string()));
        }
        assert_eq!(
            shelf.stats().resident,
            0,
            "handles dropped: nothing in memory"
        );
        pids
    };
    let shelf = Shelf::open(path(&dir)).unwrap();
    let stats = shelf.stats();
    assert_eq!((stats.loads, stats.store_reads, stats.resident), (0, 0, 0));
    let touched: Vec<usize> = (0..n).step_by(n / 10).collect();
    let sum = shelf
        .atomically(|tx| {
            let mut sum = 0;
            for &i in &touched {
                sum += shelf.fetch_in::<u64>(tx, &pids[i])?.read(tx)?;
            }
            Ok(sum)
        })
        .unwrap();
    assert_eq!(sum, touched.iter().map(|&i| i as u64).sum::<u64>());
    let stats = shelf.stats();
    assert_eq!(
        stats.loads,
        touched.len() as u64,
        "only the touched objects load"
    );
    assert_eq!(
        stats.resident, 0,
        "and leave memory once the transaction is over"
    );
}

#[test]
fn objects_nobody_holds_leave_memory_and_come_back_with_their_latest_value() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::open(path(&dir)).unwrap();
    let mut v = shelf.create_with_id("v", 1_u32).unwrap();
    // A plain `atomically` queues its write without waiting; dropping the last handle while
    // the write is queued must not let a fetch read the older stored value.
    for round in 2..300_u32 {
        atomically(|tx| v.write(tx, round));
        drop(v);
        v = shelf.fetch::<u32>("v").unwrap();
        assert_eq!(v.read_atomic().unwrap(), round, "round {round}");
    }
    drop(v);
    shelf.flush().unwrap();
    assert_eq!(shelf.stats().resident, 0);
    let loads = shelf.stats().loads;
    assert_eq!(shelf.fetch::<u32>("v").unwrap().read_atomic().unwrap(), 299);
    assert_eq!(shelf.stats().loads, loads + 1, "reloaded from the store");
}

/// Resident set size of this process, in bytes (Linux).
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[test]
fn memory_stays_bounded_while_a_loop_touches_a_million_objects() {
    let dir = tempfile::tempdir().unwrap();
    let n: u64 = if cfg!(debug_assertions) {
        30_000
    } else {
        1_000_000
    };
    let shelf = Shelf::open(path(&dir)).unwrap();
    for start in (0..n).step_by(20_000) {
        shelf
            .atomically(|tx| {
                for i in start..(start + 20_000).min(n) {
                    shelf.create_with_id_in(tx, &format!("o{i}"), account("x", i as i64))?;
                }
                Ok(())
            })
            .unwrap();
    }
    let (mut peak_resident, mut baseline, mut peak_rss) = (0, 0, 0);
    let mut sum = 0;
    for i in 0..n {
        let var = shelf.fetch::<Account>(&format!("o{i}")).unwrap();
        if i % 100 == 0 {
            // Every hundredth touch writes (stored without waiting).
            atomically(|tx| {
                var.modify(tx, |a| Account {
                    balance: a.balance + 1,
                    ..a
                })
            });
        } else {
            sum += var.read_atomic().unwrap().balance;
        }
        if i % 10_000 == 0 {
            peak_resident = peak_resident.max(shelf.stats().resident);
            let now = rss().unwrap_or(0);
            if i == n / 10 {
                baseline = now;
            }
            peak_rss = peak_rss.max(now);
        }
    }
    eprintln!(
        "{n} objects: at most {peak_resident} in memory, RSS {} MiB at 10%, peak {} MiB",
        baseline >> 20,
        peak_rss >> 20
    );
    assert!(sum > 0);
    assert_eq!(shelf.stats().loads, n, "each object loaded once");
    assert!(
        peak_resident <= 1_000,
        "at most the unstored writes stay in memory, not {peak_resident} objects"
    );
    if !cfg!(debug_assertions) && baseline > 0 {
        // Keeping the objects would cost well over 200 MiB; the store's page cache grows too,
        // by less than the file's size.
        let growth = peak_rss.saturating_sub(baseline) >> 20;
        assert!(growth < 160, "RSS grew by {growth} MiB over the loop");
    }
    shelf.flush().unwrap();
    assert_eq!(
        shelf
            .fetch::<Account>("o100")
            .unwrap()
            .read_atomic()
            .unwrap()
            .balance,
        101
    );
}

#[test]
fn errors_are_typed_and_commit_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::open(path(&dir)).unwrap();
    let bob = shelf.create_with_id("bob", account("bob", 5)).unwrap();
    assert!(matches!(shelf.fetch::<Account>("eve"), Err(Error::NotFound { pid }) if pid == "eve"));
    assert!(matches!(
        shelf.create_with_id("bob", account("bob", 9)),
        Err(Error::Exists { .. })
    ));
    match shelf.fetch::<(String, i64)>("bob") {
        Err(Error::TypeMismatch {
            stored, expected, ..
        }) => {
            assert_eq!(
                (stored.as_str(), expected.as_str()),
                ("Account", "(String, i64)")
            );
        }
        other => panic!("{other:?}"),
    }
    // Inside a transaction: the error comes back and the transaction's writes are undone.
    let count = TVar::new(0);
    let missing = PRef::<Account>::new("eve");
    let r = shelf.atomically(|tx| {
        count.modify(tx, |c| c + 1)?;
        bob.write(tx, account("bob", 1_000))?;
        missing.resolve(tx, &shelf)?.read(tx)
    });
    assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
    assert_eq!(count.read_atomic(), 0);
    assert_eq!(bob.read_atomic().unwrap(), account("bob", 5));
    // An object stored in a format this build does not know.
    drop((bob, shelf));
    {
        let backend = RedbBackend::open(path(&dir)).unwrap();
        let mut record = backend.load("bob").unwrap().unwrap();
        record[0] = 99;
        backend.store(&[("bob", Some(&record))]).unwrap();
    }
    let shelf = Shelf::open(path(&dir)).unwrap();
    let e = shelf.fetch::<Account>("bob").unwrap_err();
    assert!(matches!(e, Error::Format { .. }), "{e:?}");
    assert!(e.to_string().contains("format 99 is unknown"), "{e}");
    // The same file cannot be opened twice.
    assert!(matches!(Shelf::open(path(&dir)), Err(Error::Locked(_))));
}

#[test]
#[should_panic(expected = "no object with pid `gone` on the shelf")]
fn a_failed_load_in_a_plain_atomically_panics_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::open(path(&dir)).unwrap();
    let gone = shelf.create_with_id("gone", 1_u8).unwrap();
    shelf.atomically(|tx| shelf.delete(tx, "gone")).unwrap();
    atomically(|tx| gone.read(tx));
}

#[test]
fn deletes_are_stored_and_the_pid_can_be_reused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let shelf = Shelf::open(path(&dir)).unwrap();
        let a = shelf.create_with_id("a", 1_i32).unwrap();
        shelf.atomically(|tx| shelf.delete(tx, "a")).unwrap();
        assert!(matches!(
            shelf.fetch::<i32>("a"),
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(a.read_atomic(), Err(Error::NotFound { .. })));
        shelf.create_with_id("b", 2_i32).unwrap();
        shelf.atomically(|tx| shelf.delete(tx, "b")).unwrap();
        shelf.create_with_id("b", 3_i32).unwrap();
    }
    let shelf = Shelf::open(path(&dir)).unwrap();
    assert!(matches!(
        shelf.fetch::<i32>("a"),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(shelf.fetch::<i32>("b").unwrap().read_atomic().unwrap(), 3);
}

#[test]
fn writes_rolled_back_by_or_else_are_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    {
        let shelf = Shelf::open(path(&dir)).unwrap();
        let (a, b) = (
            shelf.create_with_id("a", 1_u32).unwrap(),
            shelf.create_with_id("b", 1_u32).unwrap(),
        );
        shelf
            .atomically(|tx| {
                a.write(tx, 2)?;
                tx.or_else(
                    |tx| {
                        a.write(tx, 100)?;
                        b.write(tx, 100)?;
                        retry()
                    },
                    |tx| b.write(tx, 3),
                )
            })
            .unwrap();
        assert_eq!((a.read_atomic().unwrap(), b.read_atomic().unwrap()), (2, 3));
    }
    let shelf = Shelf::open(path(&dir)).unwrap();
    let a = shelf.fetch::<u32>("a").unwrap().read_atomic().unwrap();
    let b = shelf.fetch::<u32>("b").unwrap().read_atomic().unwrap();
    assert_eq!((a, b), (2, 3));
}

#[test]
fn autosaved_writes_are_stored_in_order_and_flushed_on_close() {
    let dir = tempfile::tempdir().unwrap();
    {
        let shelf = Shelf::open(path(&dir)).unwrap();
        let log = shelf.create_with_id("log", Vec::<u32>::new()).unwrap();
        let n = shelf.create_with_id("n", 0_u32).unwrap();
        for i in 0..500 {
            atomically(|tx| {
                log.modify(tx, |mut v| {
                    v.push(i);
                    v
                })?;
                n.write(tx, i + 1)
            });
        }
        // No flush: closing the shelf (last handles dropped) stores what is queued.
    }
    let shelf = Shelf::open(path(&dir)).unwrap();
    let log = shelf
        .fetch::<Vec<u32>>("log")
        .unwrap()
        .read_atomic()
        .unwrap();
    assert_eq!(log, (0..500).collect::<Vec<_>>());
    assert_eq!(shelf.fetch::<u32>("n").unwrap().read_atomic().unwrap(), 500);
}

#[derive(Clone, Serialize, Deserialize)]
struct Member {
    name: String,
    loans: Vec<PRef<Book>>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Book {
    title: String,
    borrower: Option<PRef<Member>>,
}

#[test]
fn prefs_are_stored_as_ids_and_resolved_lazily() {
    let dir = tempfile::tempdir().unwrap();
    {
        let shelf = Shelf::open(path(&dir)).unwrap();
        let ann = shelf
            .create_with_id(
                "ann",
                Member {
                    name: "Ann".into(),
                    loans: vec![],
                },
            )
            .unwrap();
        let books: Vec<PVar<Book>> = (0..3)
            .map(|i| {
                let book = Book {
                    title: format!("book {i}"),
                    borrower: None,
                };
                shelf.create_with_id(&format!("book-{i}"), book).unwrap()
            })
            .collect();
        shelf
            .atomically(|tx| {
                let book = &books[1];
                book.modify(tx, |b| Book {
                    borrower: Some(ann.pref()),
                    ..b
                })?;
                ann.modify(tx, |mut m| {
                    m.loans.push(book.pref());
                    m
                })
            })
            .unwrap();
    }
    let shelf = Shelf::open(path(&dir)).unwrap();
    let ann = shelf.fetch::<Member>("ann").unwrap();
    let loans = ann.read_atomic().unwrap().loans;
    assert_eq!(
        shelf.stats().loads,
        1,
        "loading ann loads none of her books"
    );
    let book = loans[0].get(&shelf).unwrap();
    let borrower = book.read_atomic().unwrap().borrower.unwrap();
    assert_eq!(
        borrower.get(&shelf).unwrap().read_atomic().unwrap().name,
        "Ann"
    );
    assert!(PVar::ref_eq(&borrower.get(&shelf).unwrap(), &ann));
    assert_eq!(shelf.stats().loads, 2);
}

/// A store that can be made to fail.
struct Flaky {
    inner: RedbBackend,
    broken: Arc<AtomicBool>,
}

impl Backend for Flaky {
    fn load(&self, pid: &str) -> stm_persist::shelf::Result<Option<Vec<u8>>> {
        self.inner.load(pid)
    }
    fn store(&self, changes: &[Change<'_>]) -> stm_persist::shelf::Result<()> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(Error::Store("disk full (simulated)".into()));
        }
        if changes.iter().any(|&(pid, _)| pid == "bomb") {
            panic!("a bug in the backend");
        }
        self.inner.store(changes)
    }
}

#[test]
fn a_backend_that_panics_fails_the_shelf_instead_of_hanging_its_callers() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::with_backend(Flaky {
        inner: RedbBackend::open(path(&dir)).unwrap(),
        broken: Arc::new(AtomicBool::new(false)),
    });
    let e = shelf.create_with_id("bomb", 1_u8).unwrap_err();
    assert_eq!(
        e,
        Error::Store("the backend panicked: a bug in the backend".into())
    );
    assert!(matches!(shelf.flush(), Err(Error::Store(_))));
}

#[test]
fn a_failed_store_is_reported_and_the_shelf_refuses_further_work() {
    let dir = tempfile::tempdir().unwrap();
    let broken = Arc::new(AtomicBool::new(false));
    let shelf = Shelf::with_backend(Flaky {
        inner: RedbBackend::open(path(&dir)).unwrap(),
        broken: Arc::clone(&broken),
    });
    let a = shelf.create_with_id("a", 1_u64).unwrap();
    broken.store(true, Ordering::SeqCst);
    let e = shelf.atomically(|tx| a.write(tx, 2)).unwrap_err();
    assert_eq!(e, Error::Store("disk full (simulated)".into()));
    assert!(matches!(
        shelf.atomically(|tx| a.write(tx, 3)),
        Err(Error::Store(_))
    ));
    assert!(matches!(shelf.flush(), Err(Error::Store(_))));
    assert!(matches!(shelf.fetch::<u64>("zzz"), Err(Error::Store(_))));
    drop((a, shelf));
    let shelf = Shelf::open(path(&dir)).unwrap();
    assert_eq!(
        shelf.fetch::<u64>("a").unwrap().read_atomic().unwrap(),
        1,
        "the last stored state"
    );
}

#[test]
fn concurrent_transfers_conserve_the_total_live_and_after_reopening() {
    const ACCOUNTS: usize = 16;
    const THREADS: usize = 8;
    let per_thread = if cfg!(debug_assertions) { 60 } else { 200 };
    let dir = tempfile::tempdir().unwrap();
    let live: Vec<i64> = {
        let shelf = Shelf::open(path(&dir)).unwrap();
        let accounts: Vec<PVar<i64>> = (0..ACCOUNTS)
            .map(|i| shelf.create_with_id(&format!("acct-{i}"), 1_000).unwrap())
            .collect();
        let before = shelf.stats();
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (shelf, accounts) = (&shelf, &accounts);
                s.spawn(move || {
                    let mut seed = 0x9E37_79B9_u64 + t as u64;
                    for _ in 0..per_thread {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let from = seed as usize % ACCOUNTS;
                        let to = (from + 1 + (seed >> 20) as usize % (ACCOUNTS - 1)) % ACCOUNTS;
                        let amount = (seed >> 40) as i64 % 50;
                        shelf
                            .atomically(|tx| {
                                let f = accounts[from].read(tx)?;
                                if f < amount {
                                    return Ok(());
                                }
                                accounts[from].write(tx, f - amount)?;
                                accounts[to].modify(tx, |b| b + amount)
                            })
                            .unwrap();
                    }
                });
            }
        });
        let after = shelf.stats();
        let (batches, syncs) = (after.batches - before.batches, after.syncs - before.syncs);
        eprintln!("{batches} batches in {syncs} syncs");
        assert!(
            syncs < batches,
            "concurrent callers share syncs: {batches} in {syncs}"
        );
        accounts.iter().map(|a| a.read_atomic().unwrap()).collect()
    };
    assert_eq!(live.iter().sum::<i64>(), 1_000 * ACCOUNTS as i64);
    let shelf = Shelf::open(path(&dir)).unwrap();
    assert_eq!(common::shelf_balances(&shelf, ACCOUNTS), live);
}

#[test]
fn pvars_compose_with_tvars_and_blocking_retry() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::open(path(&dir)).unwrap();
    let stock = shelf.create_with_id("stock", 0_u32).unwrap();
    let shipped = TVar::new(0_u32);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            shelf.atomically(|tx| {
                let n = stock.read(tx)?;
                if n < 3 {
                    return Err(StmError::Retry);
                }
                stock.write(tx, n - 3)?;
                shipped.modify(tx, |s| s + 3)
            })
        });
        for _ in 0..3 {
            std::thread::sleep(std::time::Duration::from_millis(5));
            shelf.atomically(|tx| stock.modify(tx, |n| n + 1)).unwrap();
        }
        waiter.join().unwrap().unwrap();
    });
    assert_eq!(
        (stock.read_atomic().unwrap(), shipped.read_atomic()),
        (0, 3)
    );
}

#[test]
fn handles_are_send_and_sync() {
    fn is<T: Send + Sync>() {}
    is::<Shelf>();
    is::<PVar<Account>>();
    is::<PRef<Account>>();
}
