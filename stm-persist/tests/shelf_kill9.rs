//! Crash safety of the shelf: a child process transferring through `Shelf::atomically` on four
//! threads is killed with SIGKILL at random points, many times. After each restart every
//! acknowledged transaction is there entirely, no transaction is there in part, and the total
//! across all accounts holds.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{next, read_acks, spawn_child};
use stm_persist::shelf::{Error, PVar, Shelf};

const CHILD_ENV: &str = "STMX_SHELF_KILL9_CHILD_DIR";
const THREADS: usize = 4;
const PER_THREAD: usize = 4;
const INITIAL: i64 = 1_000;

/// Thread `t`'s transfer number `k`, between two of its own accounts: deterministic, so the
/// state after `k` transfers can be computed.
fn transfer(t: usize, k: u64) -> (usize, usize, i64) {
    let mut seed = (k + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (t as u64 + 1);
    let r = next(&mut seed);
    let from = (r % PER_THREAD as u64) as usize;
    let to = (from + 1 + (r >> 8) as usize % (PER_THREAD - 1)) % PER_THREAD;
    (
        t * PER_THREAD + from,
        t * PER_THREAD + to,
        (r >> 20) as i64 % 300,
    )
}

/// The balances after each thread `t` made `counts[t]` transfers.
fn model(counts: &[u64]) -> Vec<i64> {
    let mut balances = vec![INITIAL; THREADS * PER_THREAD];
    for (t, &count) in counts.iter().enumerate() {
        for k in 0..count {
            let (from, to, amount) = transfer(t, k);
            if balances[from] >= amount {
                balances[from] -= amount;
                balances[to] += amount;
            }
        }
    }
    balances
}

fn open(dir: &Path) -> Shelf {
    Shelf::open(dir.join("bank.shelf")).expect("open after a crash")
}

/// The accounts and each thread's transfer count, created in one transaction on first use.
fn objects(shelf: &Shelf) -> (Vec<PVar<i64>>, Vec<PVar<u64>>) {
    let fetch = || -> Result<_, Error> {
        let accounts = (0..THREADS * PER_THREAD)
            .map(|i| shelf.fetch::<i64>(&format!("acct-{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        let counts = (0..THREADS)
            .map(|t| shelf.fetch::<u64>(&format!("count-{t}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((accounts, counts))
    };
    match fetch() {
        Ok(objects) => objects,
        Err(Error::NotFound { .. }) => shelf
            .atomically(|tx| {
                let accounts = (0..THREADS * PER_THREAD)
                    .map(|i| shelf.create_with_id_in(tx, &format!("acct-{i}"), INITIAL))
                    .collect::<Result<Vec<_>, _>>()?;
                let counts = (0..THREADS)
                    .map(|t| shelf.create_with_id_in(tx, &format!("count-{t}"), 0_u64))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((accounts, counts))
            })
            .unwrap(),
        Err(e) => panic!("{e}"),
    }
}

/// The child: four threads transfer, each printing `ack T K` once its transfer `K` returned.
#[test]
fn shelf_kill9_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return; // run as a normal test: nothing to do
    };
    let shelf = open(Path::new(&dir));
    let (accounts, counts) = objects(&shelf);
    std::thread::scope(|s| {
        for (t, count) in counts.iter().enumerate() {
            let (shelf, accounts) = (&shelf, &accounts);
            s.spawn(move || {
                loop {
                    let k = shelf
                        .atomically(|tx| {
                            let k = count.read(tx)?;
                            let (from, to, amount) = transfer(t, k);
                            let balance = accounts[from].read(tx)?;
                            if balance >= amount {
                                accounts[from].write(tx, balance - amount)?;
                                accounts[to].modify(tx, |b| b + amount)?;
                            }
                            count.write(tx, k + 1)?;
                            Ok(k)
                        })
                        .unwrap();
                    println!("ack {t} {k}");
                }
            });
        }
    });
}

#[test]
fn killed_at_random_points_the_shelf_keeps_exactly_the_acknowledged_transactions() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut seed = 0x2545_F491_4F6C_DD1D_u64;
    let rounds = if cfg!(debug_assertions) { 20 } else { 50 };
    let mut acked_any = false;
    for round in 0..rounds {
        let mut child = spawn_child("shelf_kill9_child", &[(CHILD_ENV, dir.path().as_os_str())]);
        let stdout = child.stdout.take().unwrap();
        std::thread::sleep(Duration::from_micros(next(&mut seed) % 60_000));
        child.kill().unwrap();
        child.wait().unwrap();
        let acked = read_acks(stdout, THREADS);
        let shelf = open(dir.path());
        let Ok(counts) = (0..THREADS)
            .map(|t| shelf.fetch::<u64>(&format!("count-{t}"))?.read_atomic())
            .collect::<Result<Vec<u64>, Error>>()
        else {
            // Killed before the objects were created: nothing of them may be there.
            assert!(
                acked.iter().all(Option::is_none),
                "round {round}: acked, yet nothing stored"
            );
            assert!(matches!(
                shelf.fetch::<i64>("acct-0"),
                Err(Error::NotFound { .. })
            ));
            continue;
        };
        let balances = common::shelf_balances(&shelf, THREADS * PER_THREAD);
        eprintln!("round {round}: acked {acked:?}, stored counts {counts:?}");
        for (t, acked) in acked.iter().enumerate() {
            if let Some(k) = *acked {
                acked_any = true;
                assert!(
                    counts[t] == k + 1 || counts[t] == k + 2,
                    "round {round}: thread {t} acked transfer {k}, {} are stored",
                    counts[t]
                );
            }
        }
        assert_eq!(
            balances,
            model(&counts),
            "round {round}: the balances are exactly those of the stored transfers"
        );
        assert_eq!(
            balances.iter().sum::<i64>(),
            INITIAL * balances.len() as i64
        );
    }
    assert!(acked_any, "the child never got to acknowledge a transfer");
}

/// The first open creates the file: a kill at that moment must not leave a file that the next
/// open refuses ("not a redb database").
#[test]
fn killed_while_creating_the_shelf_it_still_opens() {
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let rounds = if cfg!(debug_assertions) { 15 } else { 40 };
    for round in 0..rounds {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mut child = spawn_child("shelf_kill9_child", &[(CHILD_ENV, dir.path().as_os_str())]);
        std::thread::sleep(Duration::from_micros(next(&mut seed) % 4_000));
        child.kill().unwrap();
        child.wait().unwrap();
        let shelf = Shelf::open(dir.path().join("bank.shelf"))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        // Either nothing was stored yet, or the accounts were created whole.
        match shelf.fetch::<u64>("count-0") {
            Ok(_) => {
                for i in 0..THREADS * PER_THREAD {
                    shelf.fetch::<i64>(&format!("acct-{i}")).unwrap();
                }
            }
            Err(Error::NotFound { .. }) => {
                assert!(matches!(
                    shelf.fetch::<i64>("acct-0"),
                    Err(Error::NotFound { .. })
                ));
            }
            Err(e) => panic!("round {round}: {e}"),
        }
    }
}
