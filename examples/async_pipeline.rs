//! An async pipeline on tokio: a source, two stages and a sink connected by bounded `TFifo`s,
//! every task awaiting its transactions with `atomically_async` (a full or empty queue parks
//! the task, not a thread). A stage moves an item from its input to its output in one
//! transaction. A shutdown signal is a `TVar<bool>` that every task watches with `or_else`:
//! "move the next item, or else, if shutdown is set, stop".
//!
//! `cargo run --release --example async_pipeline [MILLIS]`: runs for MILLIS (default 300),
//! then signals shutdown and checks that the sink received an unbroken prefix of the results
//! and that every item produced is either received or still queued.

use std::time::Duration;

use stmx::atomically_async;
use stmx::prelude::*;

/// Waits for the next item from `input`, or for `shutdown`: `None` once shutdown is set (items
/// still queued are left where they are).
async fn next_or_stop(input: &TFifo<u64>, shutdown: &TVar<bool>) -> Option<u64> {
    atomically_async(|tx| {
        tx.or_else(
            |tx| input.take(tx).map(Some),
            |tx| {
                guard(shutdown.read(tx)?)?;
                Ok(None)
            },
        )
    })
    .await
}

/// Puts `item` into `output`, waiting while it is full; `false` if shutdown came first.
async fn put_or_stop(output: &TFifo<u64>, shutdown: &TVar<bool>, item: u64) -> bool {
    atomically_async(|tx| {
        tx.or_else(
            |tx| output.put(tx, item).map(|()| true),
            |tx| {
                guard(shutdown.read(tx)?)?;
                Ok(false)
            },
        )
    })
    .await
}

/// A stage: moves each item from `input` to `output` as `f(item)`, take and put in one
/// transaction (so an item is always in exactly one queue), until shutdown.
async fn stage(
    input: TFifo<u64>,
    output: TFifo<u64>,
    shutdown: TVar<bool>,
    f: fn(u64) -> u64,
) -> u64 {
    let mut passed = 0;
    loop {
        let moved = atomically_async(|tx| {
            tx.or_else(
                |tx| {
                    let item = input.take(tx)?;
                    output.put(tx, f(item))?; // waits (the whole move does) while `output` is full
                    Ok(true)
                },
                |tx| {
                    guard(shutdown.read(tx)?)?;
                    Ok(false)
                },
            )
        })
        .await;
        if !moved {
            return passed;
        }
        passed += 1;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let millis: u64 = std::env::args()
        .nth(1)
        .map_or(300, |m| m.parse().expect("MILLIS must be a number"));
    let shutdown = TVar::new(false);
    let queues: Vec<TFifo<u64>> = (0..3).map(|_| TFifo::bounded(32)).collect();

    let source = {
        let (out, shutdown) = (queues[0].clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while put_or_stop(&out, &shutdown, n).await {
                n += 1;
            }
            n
        })
    };
    let square = tokio::spawn(stage(
        queues[0].clone(),
        queues[1].clone(),
        shutdown.clone(),
        |x| x * x,
    ));
    let plus_one = tokio::spawn(stage(
        queues[1].clone(),
        queues[2].clone(),
        shutdown.clone(),
        |x| x + 1,
    ));
    let sink = {
        let (input, shutdown) = (queues[2].clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut received = Vec::new();
            while let Some(item) = next_or_stop(&input, &shutdown).await {
                received.push(item);
            }
            received
        })
    };

    tokio::time::sleep(Duration::from_millis(millis)).await;
    atomically_async(|tx| shutdown.write(tx, true)).await; // wakes every stage that waits

    let produced = source.await.unwrap();
    let (squared, incremented) = (square.await.unwrap(), plus_one.await.unwrap());
    let received = sink.await.unwrap();
    println!(
        "in {millis} ms: source produced {produced}, square passed {squared}, plus-one passed \
         {incremented}, sink received {}",
        received.len()
    );
    let unbroken = received
        .iter()
        .enumerate()
        .all(|(i, &v)| v == (i as u64) * (i as u64) + 1);
    let left: usize = atomically_async(|tx| {
        let mut n = 0;
        for q in &queues {
            n += q.len(tx)?;
        }
        Ok(n)
    })
    .await;
    println!("{left} items were still queued at shutdown");
    if !unbroken || received.is_empty() {
        eprintln!("FAILED: the sink did not receive an unbroken prefix of i*i+1");
        std::process::exit(1);
    }
    if produced != received.len() as u64 + left as u64 {
        eprintln!(
            "FAILED: {produced} produced, but {} received and {left} queued",
            received.len()
        );
        std::process::exit(1);
    }
    println!(
        "OK: the sink received i*i+1 for i = 0..{}, in order; every item produced is received \
         or queued",
        received.len()
    );
}
