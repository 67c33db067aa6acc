//! The stmx demo: a bank whose accounts are `TVar`s.
//!
//! Four tellers move money between 100 accounts while two auditors sum every account inside
//! their own transactions, and a loan officer blocks with `retry` until the vault can fund a
//! loan. Every audit must see exactly the starting total: transactions are atomic and opaque.
//!
//! Run: `cargo run --release --example bank`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Instant;

use stmx::prelude::*;

const ACCOUNTS: usize = 100;
const START: i64 = 1_000;
const TELLERS: usize = 4;
const TRANSFERS_PER_TELLER: usize = 50_000;

/// Moves `amount` from `from` to `to` if `from` can cover it. Composes into larger
/// transactions because it takes `&mut Transaction`.
fn transfer(
    tx: &mut Transaction,
    from: &TVar<i64>,
    to: &TVar<i64>,
    amount: i64,
) -> StmResult<bool> {
    let balance = from.read(tx)?;
    if balance < amount {
        return Ok(false);
    }
    from.write(tx, balance - amount)?;
    to.modify(tx, |b| b + amount)?;
    Ok(true)
}

fn main() {
    let accounts: Arc<Vec<TVar<i64>>> = Arc::new((0..ACCOUNTS).map(|_| TVar::new(START)).collect());
    let vault = TVar::new(0_i64);
    let expected = START * ACCOUNTS as i64;
    let done = Arc::new(AtomicBool::new(false));
    let audits = Arc::new(AtomicU64::new(0));
    let started = Instant::now();

    // A loan officer waits (blocked, using no CPU) until the vault holds 5,000.
    let officer = {
        let vault = vault.clone();
        thread::spawn(move || {
            atomically(|tx| {
                let v = vault.read(tx)?;
                guard(v >= 5_000)?;
                vault.write(tx, v - 5_000)?;
                Ok(v)
            })
        })
    };

    let auditors: Vec<_> = (0..2)
        .map(|_| {
            let (accounts, vault, done, audits) = (
                Arc::clone(&accounts),
                vault.clone(),
                Arc::clone(&done),
                Arc::clone(&audits),
            );
            thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let total = atomically(|tx| {
                        let mut sum = vault.read(tx)?;
                        for a in accounts.iter() {
                            sum += a.read(tx)?;
                        }
                        Ok(sum)
                    });
                    // The loan leaves the bank, so the total may drop by exactly 5,000 once.
                    assert!(
                        total == expected || total == expected - 5_000,
                        "audit saw {total}"
                    );
                    audits.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let tellers: Vec<_> = (0..TELLERS)
        .map(|t| {
            let (accounts, vault) = (Arc::clone(&accounts), vault.clone());
            thread::spawn(move || {
                let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ t as u64;
                let mut moved = 0_u64;
                for i in 0..TRANSFERS_PER_TELLER {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let from = &accounts[seed as usize % ACCOUNTS];
                    let to = &accounts[(seed >> 32) as usize % ACCOUNTS];
                    let amount = (seed >> 56) as i64 % 100;
                    // Every 1,000th transfer also pays a fee into the vault, in the same
                    // transaction: two transfers, one atomic step.
                    let ok = atomically(|tx| {
                        let ok = transfer(tx, from, to, amount)?;
                        if ok && i % 1_000 == 0 {
                            transfer(tx, to, &vault, 50)?;
                        }
                        Ok(ok)
                    });
                    moved += u64::from(ok);
                }
                moved
            })
        })
        .collect();

    let transfers: u64 = tellers.into_iter().map(|t| t.join().unwrap()).sum();
    let loan = officer.join().unwrap();
    done.store(true, Ordering::Relaxed);
    auditors.into_iter().for_each(|a| a.join().unwrap());
    let elapsed = started.elapsed();

    let total: i64 = accounts.iter().map(TVar::read_atomic).sum::<i64>() + vault.read_atomic();
    let stats = stmx::stats();
    println!(
        "transfers committed : {transfers} of {}",
        TELLERS * TRANSFERS_PER_TELLER
    );
    println!(
        "loan granted when the vault held {loan}; vault now {}",
        vault.read_atomic()
    );
    println!("audits, all consistent: {}", audits.load(Ordering::Relaxed));
    println!(
        "total money         : {total} (expected {} after the loan)",
        expected - 5_000
    );
    println!(
        "transactions        : {} commits, {} conflict restarts, {} retry waits in {elapsed:.2?}",
        stats.commits, stats.conflicts, stats.retries
    );
    assert_eq!(total, expected - 5_000, "money was created or destroyed");
    println!("OK: no money was created or destroyed");
}
