//! A durable ledger that survives being killed: `stmx::persist` in one file.
//!
//! Four tellers execute transfers between 16 accounts through a `Store`; each transfer is
//! durable when `execute` returns. Every 500 transfers a snapshot is written while the tellers
//! keep going. Kill the program at any moment (Ctrl-C, or `kill -9`) and run it again: it
//! replays the log over the newest snapshot, checks that no money appeared or vanished, and
//! carries on where it stopped.
//!
//! Run: `cargo run --release --example ledger [-- DIR [TRANSFERS]]`
//! (default `target/ledger-demo`, 2,000 transfers per run).

use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use stmx::persist::{Command, ExecuteError, State, Store};
use stmx::prelude::*;

const ACCOUNTS: usize = 16;
const START: i64 = 1_000;
const TELLERS: usize = 4;

/// The state: one `TVar` per account.
struct Ledger(Vec<TVar<i64>>);

impl State for Ledger {
    type Image = Vec<i64>;
    fn image(&self, tx: &mut Transaction) -> StmResult<Vec<i64>> {
        self.0.iter().map(|a| a.read(tx)).collect()
    }
    fn from_image(balances: Vec<i64>) -> Self {
        Ledger(balances.into_iter().map(TVar::new).collect())
    }
}

/// The commands: what the log records.
#[derive(Serialize, Deserialize)]
enum Op {
    Transfer { from: usize, to: usize, amount: i64 },
}

impl Command for Op {
    type State = Ledger;
    type Output = ();
    type Error = String;
    fn apply(&self, ledger: &Ledger, tx: &mut Transaction) -> Result<(), TxError<String>> {
        let Op::Transfer { from, to, amount } = *self;
        let balance = ledger.0[from].read(tx)?;
        if balance < amount {
            return Err(TxError::Abort(format!(
                "account {from} holds only {balance}"
            )));
        }
        ledger.0[from].write(tx, balance - amount)?;
        ledger.0[to].modify(tx, |b| b + amount)?;
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "target/ledger-demo".into()));
    let transfers: usize = args.next().map_or(Ok(2_000), |n| n.parse())?;

    let opened = Instant::now();
    let store = Arc::new(Store::<Op>::open(&dir, || {
        Ledger::from_image(vec![START; ACCOUNTS])
    })?);
    let total: i64 = store.read(|l, tx| l.image(tx)).iter().sum();
    println!(
        "opened {} in {:?}: {} commands in the log so far, total {total}",
        dir.display(),
        opened.elapsed(),
        store.position()
    );
    assert_eq!(total, START * ACCOUNTS as i64, "money appeared or vanished");

    let started = Instant::now();
    let tellers: Vec<_> = (0..TELLERS)
        .map(|t| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                let (mut done, mut refused) = (0, 0);
                let mut seed = ((t as u64 + 1) * 0x9E37_79B9_7F4A_7C15) ^ store.position();
                for i in 0..transfers / TELLERS {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let from = seed as usize % ACCOUNTS;
                    let to = (from + 1 + (seed >> 8) as usize % (ACCOUNTS - 1)) % ACCOUNTS;
                    let amount = (seed >> 16) as i64 % 400;
                    match store.execute(Op::Transfer { from, to, amount }) {
                        Ok(()) => done += 1,
                        Err(ExecuteError::Rejected(_)) => refused += 1,
                        Err(e) => panic!("the store failed: {e}"),
                    }
                    if t == 0 && i % 125 == 124 {
                        store.snapshot().expect("snapshot");
                    }
                }
                (done, refused)
            })
        })
        .collect();
    let (mut done, mut refused) = (0, 0);
    for t in tellers {
        let (d, r) = t.join().expect("teller panicked");
        done += d;
        refused += r;
    }
    let elapsed = started.elapsed();
    let balances = store.read(|l, tx| l.image(tx));
    println!(
        "{done} durable transfers ({refused} refused for lack of funds) in {elapsed:?}: \
         {:.0} per second",
        done as f64 / elapsed.as_secs_f64()
    );
    println!("balances: {balances:?}");
    assert_eq!(balances.iter().sum::<i64>(), START * ACCOUNTS as i64);
    println!(
        "total still {}; kill me mid-run and start me again: nothing is lost",
        START * ACCOUNTS as i64
    );
    Ok(())
}
