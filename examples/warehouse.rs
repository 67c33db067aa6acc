//! `#[transactional]` structs: a warehouse whose items are structs with transactional fields.
//!
//! Three order pickers reserve and ship stock; when an item runs out, a picker blocks with
//! `retry` on the item's `stock` field until the restocker refills it. Each order touches two
//! items and is one transaction: it ships both or neither. An auditor checks, inside each of
//! its transactions, that every unit is accounted for: `received == stock + shipped`.
//!
//! Run: `cargo run --release --example warehouse`

use std::sync::Arc;
use std::thread;

use stmx::prelude::*;

/// One kind of item on the shelves.
#[transactional]
#[derive(Debug)]
struct Item {
    /// Never changes: a plain field, not a `TVar`.
    #[transactional(plain)]
    sku: &'static str,
    /// Units on the shelf.
    stock: u32,
    /// Units sent to customers.
    shipped: u64,
    /// Units ever delivered to the warehouse.
    received: u64,
}

const SKUS: [&str; 4] = ["bolt", "nut", "washer", "gear"];
const PICKERS: usize = 3;
const ORDERS_PER_PICKER: usize = 20_000;

/// Takes `n` units of `item` off the shelf; waits (via `retry`) while there are too few.
fn pick(tx: &mut Transaction, item: &Item, n: u32) -> StmResult<()> {
    let stock = item.stock(tx)?;
    guard(stock >= n)?;
    item.set_stock(tx, stock - n)?;
    item.modify_shipped(tx, |s| s + u64::from(n))
}

/// Puts `n` units of `item` on the shelf.
fn restock(tx: &mut Transaction, item: &Item, n: u32) -> StmResult<()> {
    item.modify_stock(tx, |s| s + n)?;
    item.modify_received(tx, |r| r + u64::from(n))
}

fn main() {
    let items: Arc<Vec<Item>> =
        Arc::new(SKUS.iter().map(|&sku| Item::new(sku, 50, 0, 50)).collect());
    // A TVar, not an atomic flag: the restocker reads it inside its transaction and waits on it.
    let done = TVar::new(false);

    let pickers: Vec<_> = (0..PICKERS)
        .map(|p| {
            let items = Arc::clone(&items);
            thread::spawn(move || {
                for order in 0..ORDERS_PER_PICKER {
                    let first = &items[(p + order) % items.len()];
                    let second = &items[(p + 3 * order + 1) % items.len()];
                    // Both picks or neither: one transaction, blocking until both are in stock.
                    atomically(|tx| {
                        pick(tx, first, 1)?;
                        pick(tx, second, 2)
                    });
                }
            })
        })
        .collect();

    let restocker = {
        let (items, done) = (Arc::clone(&items), done.clone());
        thread::spawn(move || {
            let mut deliveries = 0_u64;
            // Each round waits until an item runs low (refilling it) or the pickers are done.
            while atomically(|tx| {
                tx.or_else(
                    |tx| {
                        let mut lowest = (u32::MAX, 0);
                        for (i, item) in items.iter().enumerate() {
                            lowest = lowest.min((item.stock(tx)?, i));
                        }
                        guard(lowest.0 < 10)?;
                        restock(tx, &items[lowest.1], 100).map(|()| true)
                    },
                    // Nothing low: stop if done, else retry, which waits on every stock field
                    // and on `done`.
                    |tx| {
                        guard(done.read(tx)?)?;
                        Ok(false)
                    },
                )
            }) {
                deliveries += 1;
            }
            deliveries
        })
    };

    let auditor = {
        let (items, done) = (Arc::clone(&items), done.clone());
        thread::spawn(move || {
            let mut audits = 0_u64;
            while !done.read_atomic() {
                atomically(|tx| {
                    for item in items.iter() {
                        let s = item.snapshot(tx)?;
                        assert_eq!(
                            s.received,
                            u64::from(s.stock) + s.shipped,
                            "{} leaked",
                            s.sku
                        );
                    }
                    Ok(())
                });
                audits += 1;
            }
            audits
        })
    };

    for p in pickers {
        p.join().unwrap();
    }
    done.write_atomic(true); // wakes the restocker
    let deliveries = restocker.join().unwrap();
    let audits = auditor.join().unwrap();

    let mut shipped = 0;
    for item in items.iter() {
        let s = item.snapshot_atomic();
        println!(
            "{:>6}: stock {:>3}, shipped {:>6}, received {:>6}",
            s.sku, s.stock, s.shipped, s.received
        );
        assert_eq!(s.received, u64::from(s.stock) + s.shipped);
        shipped += s.shipped;
    }
    let expected = (PICKERS * ORDERS_PER_PICKER * 3) as u64;
    println!("{deliveries} deliveries, {audits} audits, {shipped} units shipped");
    assert_eq!(shipped, expected, "every order ships exactly 3 units");
    println!("OK: every unit is accounted for");
}
