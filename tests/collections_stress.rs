//! Containers under concurrency: nothing lost or duplicated, FIFO order kept per producer,
//! every port of a channel sees every value, totals conserved across maps, blocked takers woken.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use stmx::prelude::*;

const PER_PRODUCER: u64 = if cfg!(debug_assertions) {
    3_000
} else {
    20_000
};

/// Runs `producers` threads each putting `(producer, 0..PER_PRODUCER)` with `put`, and
/// `consumers` threads each taking with `take` until all values are taken. Checks that every
/// value arrives exactly once and that each consumer sees each producer's values in order.
fn producers_consumers(
    producers: u64,
    consumers: usize,
    put: impl Fn(&mut Transaction, (u64, u64)) -> StmResult<()> + Send + Sync + 'static,
    take: impl Fn(&mut Transaction) -> StmResult<(u64, u64)> + Send + Sync + 'static,
) {
    let (put, take) = (Arc::new(put), Arc::new(take));
    let total = producers * PER_PRODUCER;
    let taken = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(producers as usize + consumers));
    let producer_threads: Vec<_> = (0..producers)
        .map(|p| {
            let (put, start) = (Arc::clone(&put), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                for i in 0..PER_PRODUCER {
                    atomically(|tx| put(tx, (p, i)));
                }
            })
        })
        .collect();
    let consumer_threads: Vec<_> = (0..consumers)
        .map(|_| {
            let (take, taken, start) = (Arc::clone(&take), Arc::clone(&taken), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                let mut got = Vec::new();
                // Claim a value before blocking for it, so no consumer waits for a value that
                // another one will take.
                while taken.fetch_add(1, Ordering::Relaxed) < total {
                    got.push(atomically(|tx| take(tx)));
                }
                got
            })
        })
        .collect();
    for t in producer_threads {
        t.join().unwrap();
    }
    let mut all = HashSet::new();
    for t in consumer_threads {
        let got = t.join().unwrap();
        let mut last = vec![None; producers as usize];
        for &(p, i) in &got {
            assert!(
                last[p as usize] < Some(i),
                "producer {p}'s values out of order: {i} after {:?}",
                last[p as usize]
            );
            last[p as usize] = Some(i);
            assert!(all.insert((p, i)), "({p}, {i}) taken twice");
        }
    }
    assert_eq!(all.len() as u64, total, "values were lost");
}

#[test]
fn unbounded_fifo_loses_and_duplicates_nothing_and_keeps_order() {
    let fifo = TFifo::new();
    let f2 = fifo.clone();
    producers_consumers(3, 3, move |tx, v| fifo.put(tx, v), move |tx| f2.take(tx));
}

#[test]
fn bounded_fifo_loses_and_duplicates_nothing_and_keeps_order() {
    let fifo = TFifo::bounded(4);
    let f2 = fifo.clone();
    let f3 = fifo.clone();
    producers_consumers(3, 3, move |tx, v| fifo.put(tx, v), move |tx| f2.take(tx));
    assert!(atomically(|tx| f3.is_empty(tx)));
}

#[test]
fn a_bounded_fifo_never_holds_more_than_its_capacity() {
    let fifo = TFifo::bounded(3);
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (fifo, stop) = (fifo.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                assert!(atomically(|tx| fifo.len(tx)) <= 3);
            }
        })
    };
    let f2 = fifo.clone();
    producers_consumers(2, 1, move |tx, v| fifo.put(tx, v), move |tx| f2.take(tx));
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
}

#[test]
fn stack_loses_and_duplicates_nothing() {
    let stack = TStack::new();
    let producers: Vec<_> = (0..2_u64)
        .map(|p| {
            let stack = stack.clone();
            thread::spawn(move || {
                for i in 0..PER_PRODUCER {
                    atomically(|tx| stack.push(tx, (p, i)));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for _ in 0..2 * PER_PRODUCER {
        assert!(seen.insert(atomically(|tx| stack.pop(tx))));
    }
    for p in producers {
        p.join().unwrap();
    }
    assert!(atomically(|tx| stack.is_empty(tx)));
}

/// Two consumer groups on one channel: group A is one port shared by two threads, group B a
/// port of its own. Each group receives every value exactly once, in order per producer.
#[test]
fn every_port_of_a_channel_receives_every_value() {
    let channel = TChannel::new();
    let (group_a, group_b) = (channel.subscribe(), TPort::new(&channel));
    let producers = 2_u64;
    let total = producers * PER_PRODUCER;

    let consume = |port: TPort<(u64, u64)>, threads: usize| {
        let taken = Arc::new(AtomicU64::new(0));
        (0..threads)
            .map(|_| {
                let (port, taken) = (port.clone(), Arc::clone(&taken));
                thread::spawn(move || {
                    let mut got = Vec::new();
                    while taken.fetch_add(1, Ordering::Relaxed) < total {
                        got.push(atomically(|tx| port.take(tx)));
                    }
                    got
                })
            })
            .collect::<Vec<_>>()
    };
    let a_threads = consume(group_a, 2);
    let b_threads = consume(group_b, 1);
    let producer_threads: Vec<_> = (0..producers)
        .map(|p| {
            let channel = channel.clone();
            thread::spawn(move || {
                for i in 0..PER_PRODUCER {
                    atomically(|tx| channel.put(tx, (p, i)));
                }
            })
        })
        .collect();
    for t in producer_threads {
        t.join().unwrap();
    }
    for group in [a_threads, b_threads] {
        let mut all = HashSet::new();
        for t in group {
            let mut last = vec![None; producers as usize];
            for (p, i) in t.join().unwrap() {
                assert!(last[p as usize] < Some(i), "out of order within a consumer");
                last[p as usize] = Some(i);
                assert!(all.insert((p, i)), "a group received ({p}, {i}) twice");
            }
        }
        assert_eq!(all.len() as u64, total, "a group missed values");
    }
}

/// A map's entries, as the auditors read them.
type Entries = Vec<(u32, i64)>;

/// Items move between two maps (hash and sorted) while auditors check, inside each of their
/// transactions, that every item is in exactly one map and the total is unchanged.
fn transfer_between_maps<M: Clone + Send + Sync + 'static>(
    new: impl Fn() -> M,
    insert: fn(&M, &mut Transaction, u32, i64) -> StmResult<Option<i64>>,
    remove: fn(&M, &mut Transaction, &u32) -> StmResult<Option<i64>>,
    entries: fn(&M, &mut Transaction) -> StmResult<Entries>,
) {
    const ITEMS: u32 = 64;
    let moves = if cfg!(debug_assertions) {
        4_000
    } else {
        40_000
    };
    let (left, right) = (new(), new());
    atomically(|tx| {
        for k in 0..ITEMS {
            insert(&left, tx, k, i64::from(k) * 10)?;
        }
        Ok(())
    });
    let expected_total: i64 = (0..ITEMS).map(|k| i64::from(k) * 10).sum();
    let done = Arc::new(AtomicBool::new(false));
    let audits = Arc::new(AtomicU64::new(0));
    let auditors: Vec<_> = (0..2)
        .map(|_| {
            let (left, right, done, audits) =
                (left.clone(), right.clone(), done.clone(), audits.clone());
            thread::spawn(move || {
                while !done.load(Ordering::Relaxed) || audits.load(Ordering::Relaxed) == 0 {
                    atomically(|tx| {
                        let (l, r) = (entries(&left, tx)?, entries(&right, tx)?);
                        assert_eq!(
                            l.len() + r.len(),
                            ITEMS as usize,
                            "an item is lost or doubled"
                        );
                        let total: i64 = l.iter().chain(&r).map(|(_, v)| v).sum();
                        assert_eq!(total, expected_total, "the total changed");
                        Ok(())
                    });
                    audits.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let movers: Vec<_> = (0..2_u32)
        .map(|t| {
            let (left, right) = (left.clone(), right.clone());
            thread::spawn(move || {
                let mut seed = 0x9E37_79B9_u32.wrapping_mul(t + 1);
                for _ in 0..moves {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    let k = seed % ITEMS;
                    atomically(|tx| {
                        if let Some(v) = remove(&left, tx, &k)? {
                            insert(&right, tx, k, v)?;
                        } else if let Some(v) = remove(&right, tx, &k)? {
                            insert(&left, tx, k, v)?;
                        } else {
                            panic!("item {k} is in neither map");
                        }
                        Ok(())
                    });
                }
            })
        })
        .collect();
    for m in movers {
        m.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for a in auditors {
        a.join().unwrap();
    }
    assert!(audits.load(Ordering::Relaxed) > 0);
}

#[test]
fn moving_items_between_hash_maps_conserves_them() {
    transfer_between_maps(
        THashMap::<u32, i64>::new,
        |m, tx, k, v| m.insert(tx, k, v),
        |m, tx, k| m.remove(tx, k),
        |m, tx| m.to_vec(tx),
    );
}

#[test]
fn moving_items_between_sorted_maps_conserves_them() {
    transfer_between_maps(
        TMap::<u32, i64>::new,
        |m, tx, k, v| m.insert(tx, k, v),
        |m, tx, k| m.remove(tx, k),
        |m, tx| m.to_vec(tx),
    );
}

/// Concurrent inserts of disjoint keys from several threads: all present, `len` exact, and the
/// red-black invariants hold at the end.
#[test]
fn concurrent_inserts_into_maps_are_all_kept() {
    let (hash, tree) = (THashMap::new(), TMap::new());
    let per_thread = if cfg!(debug_assertions) {
        1_000
    } else {
        10_000
    };
    let threads: Vec<_> = (0..4_u32)
        .map(|t| {
            let (hash, tree) = (hash.clone(), tree.clone());
            thread::spawn(move || {
                for i in 0..per_thread {
                    let k = i * 4 + t;
                    atomically(|tx| {
                        hash.insert(tx, k, t)?;
                        tree.insert(tx, k, t)
                    });
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let n = 4 * per_thread as usize;
    assert_eq!(atomically(|tx| hash.len(tx)), n);
    assert_eq!(atomically(|tx| tree.len(tx)), n);
    atomically(|tx| tree.check_invariants(tx)).unwrap();
    assert_eq!(
        atomically(|tx| tree.keys(tx)),
        (0..n as u32).collect::<Vec<_>>()
    );
}

/// Spawns a thread that runs `take` and reports when it returns; checks it is still blocked
/// after a while, then runs `put` and checks the taker gets the value.
fn blocked_take_is_woken_by_put<T: PartialEq + std::fmt::Debug + Send + 'static>(
    take: impl Fn(&mut Transaction) -> StmResult<T> + Send + 'static,
    put: impl Fn(&mut Transaction) -> StmResult<()>,
    expected: T,
) {
    let returned = Arc::new(AtomicBool::new(false));
    let taker = {
        let returned = Arc::clone(&returned);
        thread::spawn(move || {
            let v = atomically(|tx| take(tx));
            returned.store(true, Ordering::SeqCst);
            v
        })
    };
    thread::sleep(Duration::from_millis(50));
    assert!(
        !returned.load(Ordering::SeqCst),
        "take returned from an empty container"
    );
    atomically(|tx| put(tx));
    assert_eq!(taker.join().unwrap(), expected);
}

#[test]
fn blocked_takes_are_woken_by_puts() {
    let cell = TCell::new();
    let c2 = cell.clone();
    blocked_take_is_woken_by_put(move |tx| c2.take(tx), |tx| cell.put(tx, 1), 1);

    let stack = TStack::new();
    let s2 = stack.clone();
    blocked_take_is_woken_by_put(move |tx| s2.pop(tx), |tx| stack.push(tx, 2), 2);

    for fifo in [TFifo::new(), TFifo::bounded(1)] {
        let f2 = fifo.clone();
        blocked_take_is_woken_by_put(move |tx| f2.take(tx), |tx| fifo.put(tx, 3), 3);
    }

    let channel = TChannel::new();
    let port = channel.subscribe();
    blocked_take_is_woken_by_put(move |tx| port.take(tx), |tx| channel.put(tx, 4), 4);

    // A full bounded queue blocks `put` until a take makes room.
    let fifo = TFifo::bounded(1);
    atomically(|tx| fifo.put(tx, 0));
    let f2 = fifo.clone();
    blocked_take_is_woken_by_put(move |tx| f2.put(tx, 5), |tx| fifo.take(tx).map(drop), ());
}

/// `or_else` over two queues takes from whichever has a value, and waits on both.
#[test]
fn or_else_takes_from_whichever_queue_has_a_value() {
    let (a, b) = (TFifo::new(), TFifo::bounded(2));
    let (a2, b2) = (a.clone(), b.clone());
    let taker = thread::spawn(move || {
        (0..4)
            .map(|_| atomically(|tx| tx.or_else(|tx| a2.take(tx), |tx| b2.take(tx))))
            .collect::<Vec<_>>()
    });
    thread::sleep(Duration::from_millis(20));
    atomically(|tx| b.put(tx, "b1"));
    thread::sleep(Duration::from_millis(20));
    atomically(|tx| a.put(tx, "a1"));
    atomically(|tx| {
        b.put(tx, "b2")?;
        a.put(tx, "a2")
    });
    let mut got = taker.join().unwrap();
    got.sort_unstable();
    assert_eq!(got, ["a1", "a2", "b1", "b2"]);
}
