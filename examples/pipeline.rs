//! A pipeline of stages connected by bounded `TFifo`s, watched through a multicast `TChannel`.
//!
//! source ──TFifo(16)──▶ 3 squarers ──TFifo(16)──▶ sink
//!                          │
//!                          └──TChannel──▶ 2 monitors (each has its own TPort)
//!
//! A squarer takes a number, puts its square downstream and announces it on the channel, all in
//! one transaction: a monitor never hears of work that did not happen, and no number is
//! squared twice. Bounded queues give back-pressure: a fast stage blocks (`retry`) until the
//! next one catches up. Each monitor sees every event, because each has a port of its own.
//!
//! Run: `cargo run --release --example pipeline`

use std::thread;

use stmx::prelude::*;

const NUMBERS: u64 = 100_000;
const SQUARERS: usize = 3;

#[derive(Clone, Debug)]
enum Event {
    Squared { worker: usize, n: u64 },
    Finished { worker: usize },
}

fn main() {
    let input: TFifo<Option<u64>> = TFifo::bounded(16);
    let output: TFifo<Option<u64>> = TFifo::bounded(16);
    let events: TChannel<Event> = TChannel::new();
    // Subscribe before any work starts, so the monitors see every event.
    let ports: Vec<TPort<Event>> = (0..2).map(|_| events.subscribe()).collect();

    let source = {
        let input = input.clone();
        thread::spawn(move || {
            for n in 1..=NUMBERS {
                atomically(|tx| input.put(tx, Some(n)));
            }
            for _ in 0..SQUARERS {
                atomically(|tx| input.put(tx, None)); // one stop signal per squarer
            }
        })
    };

    let squarers: Vec<_> = (0..SQUARERS)
        .map(|worker| {
            let (input, output, events) = (input.clone(), output.clone(), events.clone());
            thread::spawn(move || {
                loop {
                    let more = atomically(|tx| match input.take(tx)? {
                        Some(n) => {
                            output.put(tx, Some(n * n))?;
                            events.put(tx, Event::Squared { worker, n })?;
                            Ok(true)
                        }
                        None => {
                            output.put(tx, None)?;
                            events.put(tx, Event::Finished { worker })?;
                            Ok(false)
                        }
                    });
                    if !more {
                        break;
                    }
                }
            })
        })
        .collect();

    let sink = {
        let output = output.clone();
        thread::spawn(move || {
            let (mut sum, mut count, mut stopped) = (0_u64, 0_u64, 0);
            while stopped < SQUARERS {
                match atomically(|tx| output.take(tx)) {
                    Some(square) => {
                        sum += square;
                        count += 1;
                    }
                    None => stopped += 1,
                }
            }
            (sum, count)
        })
    };

    let monitors: Vec<_> = ports
        .into_iter()
        .enumerate()
        .map(|(id, port)| {
            thread::spawn(move || {
                let mut per_worker = [0_u64; SQUARERS];
                let mut done = [false; SQUARERS];
                let (mut finished, mut numbers_sum) = (0, 0_u64);
                while finished < SQUARERS {
                    match atomically(|tx| port.take(tx)) {
                        Event::Squared { worker, n } => {
                            per_worker[worker] += 1;
                            numbers_sum += n;
                        }
                        Event::Finished { worker } => {
                            // Every squarer finishes once, after all its work.
                            assert!(!done[worker], "squarer {worker} finished twice");
                            done[worker] = true;
                            finished += 1;
                        }
                    }
                }
                println!("monitor {id}: squarings per worker {per_worker:?}");
                (per_worker.iter().sum::<u64>(), numbers_sum)
            })
        })
        .collect();

    source.join().unwrap();
    for s in squarers {
        s.join().unwrap();
    }
    let (sum, count) = sink.join().unwrap();
    let expected: u64 = (1..=NUMBERS).map(|n| n * n).sum();
    println!("sink: {count} squares, sum {sum}");
    assert_eq!(count, NUMBERS, "the sink lost or duplicated values");
    assert_eq!(sum, expected, "the sum of squares is wrong");
    for m in monitors {
        let (events_seen, numbers_sum) = m.join().unwrap();
        assert_eq!(events_seen, NUMBERS, "a monitor missed events");
        assert_eq!(numbers_sum, NUMBERS * (NUMBERS + 1) / 2);
    }
    assert!(atomically(|tx| Ok(
        input.is_empty(tx)? && output.is_empty(tx)?
    )));
    println!("OK: every number squared once, summed once, and seen by both monitors");
}
