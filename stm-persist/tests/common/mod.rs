//! A bank: the state and commands the persistence tests share.
#![allow(dead_code)]

use std::sync::{Arc, Barrier};
use std::thread;

use serde::{Deserialize, Serialize};
use stm_persist::{Command, State, Store};
use stmx::{StmResult, TVar, Transaction, TxError};

pub(crate) const ACCOUNTS: usize = 8;
pub(crate) const INITIAL: i64 = 1_000;

pub(crate) struct Bank(pub Vec<TVar<i64>>);

impl Bank {
    pub(crate) fn new() -> Self {
        Bank::from_image(vec![INITIAL; ACCOUNTS])
    }

    pub(crate) fn balances(&self) -> Vec<i64> {
        self.0.iter().map(TVar::read_atomic).collect()
    }
}

impl State for Bank {
    type Image = Vec<i64>;
    fn image(&self, tx: &mut Transaction) -> StmResult<Vec<i64>> {
        self.0.iter().map(|a| a.read(tx)).collect()
    }
    fn from_image(balances: Vec<i64>) -> Self {
        Bank(balances.into_iter().map(TVar::new).collect())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) enum Op {
    Transfer {
        from: usize,
        to: usize,
        amount: i64,
    },
    Deposit {
        to: usize,
        amount: i64,
    },
    /// Waits (`guard`, so `retry`) until `from` holds `amount`, then takes it out of the bank.
    WithdrawWhenAble {
        from: usize,
        amount: i64,
    },
}

impl Command for Op {
    type State = Bank;
    type Output = i64;
    type Error = String;
    fn apply(&self, bank: &Bank, tx: &mut Transaction) -> Result<i64, TxError<String>> {
        match *self {
            Op::Transfer { from, to, amount } => {
                let balance = bank.0[from].read(tx)?;
                if balance < amount {
                    return Err(TxError::Abort(format!("account {from} has only {balance}")));
                }
                bank.0[from].write(tx, balance - amount)?;
                bank.0[to].modify(tx, |b| b + amount)?;
                Ok(balance - amount)
            }
            Op::Deposit { to, amount } => {
                bank.0[to].modify(tx, |b| b + amount)?;
                Ok(bank.0[to].read(tx)?)
            }
            Op::WithdrawWhenAble { from, amount } => {
                let balance = bank.0[from].read(tx)?;
                stmx::guard(balance >= amount)?;
                bank.0[from].write(tx, balance - amount)?;
                Ok(balance - amount)
            }
        }
    }
}

/// The sequential model: what the log, replayed, must give.
pub(crate) fn apply_model(model: &mut [i64], op: &Op) -> bool {
    match *op {
        Op::Transfer { from, to, amount } => {
            if model[from] < amount {
                return false;
            }
            model[from] -= amount;
            model[to] += amount;
        }
        Op::Deposit { to, amount } => model[to] += amount,
        Op::WithdrawWhenAble { from, amount } => {
            if model[from] < amount {
                return false;
            }
            model[from] -= amount;
        }
    }
    true
}

pub(crate) fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

pub(crate) fn random_transfer(seed: &mut u64) -> Op {
    let from = next(seed) as usize % ACCOUNTS;
    let to = (from + 1 + next(seed) as usize % (ACCOUNTS - 1)) % ACCOUNTS;
    Op::Transfer {
        from,
        to,
        amount: (next(seed) % 300) as i64,
    }
}

/// Runs `participants` stores, each opened by `open` on its own thread (its own state and
/// connections, like a process), executing `per_participant` random transfers at once. Checks
/// that every participant committed some, that each replica, rolled forward, holds exactly the
/// successful commands, conserves the total and equals the others; returns the stores and the
/// converged balances.
pub(crate) fn run_participants(
    participants: usize,
    per_participant: usize,
    open: impl Fn() -> Store<Op> + Clone + Send + 'static,
) -> (Vec<Store<Op>>, Vec<i64>) {
    let start = Arc::new(Barrier::new(participants));
    let workers: Vec<_> = (0..participants as u64)
        .map(|p| {
            let (open, start) = (open.clone(), Arc::clone(&start));
            thread::spawn(move || {
                let store = open();
                let mut seed = 0xBA4C ^ ((p + 1) << 17);
                start.wait();
                let mut done = 0;
                for _ in 0..per_participant {
                    done += u64::from(store.execute(random_transfer(&mut seed)).is_ok());
                }
                (store, done)
            })
        })
        .collect();
    let (stores, done): (Vec<Store<Op>>, Vec<u64>) =
        workers.into_iter().map(|w| w.join().unwrap()).unzip();
    assert!(
        done.iter().all(|&d| d > 0),
        "every participant committed: {done:?}"
    );
    let states: Vec<Vec<i64>> = stores
        .iter()
        .map(|s| {
            assert_eq!(
                s.sync().unwrap(),
                done.iter().sum::<u64>(),
                "each success logged once"
            );
            s.state().balances()
        })
        .collect();
    for (i, s) in states.iter().enumerate() {
        assert_eq!(
            s.iter().sum::<i64>(),
            INITIAL * ACCOUNTS as i64,
            "participant {i}'s total"
        );
        assert_eq!(s, &states[0], "participant {i} converged");
    }
    let converged = states[0].clone();
    (stores, converged)
}

/// Runs the test `name` of this test binary as a child process with `env` set, its stdout
/// piped and its stderr dropped: how the crash tests run a writer they can kill.
pub(crate) fn spawn_child(name: &str, env: &[(&str, &std::ffi::OsStr)]) -> std::process::Child {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (key, value) in env {
        child.env(key, value);
    }
    child.spawn().unwrap()
}

/// Reads a child's `ack W N` lines (writer `W` got `Ok` for its command `N`) to the end: the
/// highest `N` of each of `writers` writers.
pub(crate) fn read_acks(out: impl std::io::Read, writers: usize) -> Vec<Option<u64>> {
    use std::io::BufRead;
    let mut acked = vec![None; writers];
    for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
        let mut words = line.split(' ');
        if let (Some("ack"), Some(w), Some(n)) = (words.next(), words.next(), words.next()) {
            let (w, n): (usize, u64) = (w.parse().unwrap(), n.parse().unwrap());
            acked[w] = acked[w].max(Some(n));
        }
    }
    acked
}

/// The stored balances of accounts `acct-0` .. `acct-{n-1}` on `shelf` (the shelf tests'
/// transfers).
pub(crate) fn shelf_balances(shelf: &stm_persist::shelf::Shelf, n: usize) -> Vec<i64> {
    (0..n)
        .map(|i| {
            shelf
                .fetch::<i64>(&format!("acct-{i}"))
                .unwrap()
                .read_atomic()
                .unwrap()
        })
        .collect()
}
