//! Concurrency stress tests that check invariants: sums conserved, nothing lost or
//! duplicated, no write skew, and progress for a long reader under constant conflicts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use stmx::prelude::*;

const ACCOUNTS: usize = 16;
const INITIAL: i64 = 1_000;

fn bank(accounts: usize) -> Arc<Vec<TVar<i64>>> {
    Arc::new((0..accounts).map(|_| TVar::new(INITIAL)).collect())
}

/// xorshift, so each thread gets its own cheap random sequence.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn run_bank(threads: usize, transfers: usize, accounts: usize) {
    let bank = bank(accounts);
    let done = Arc::new(AtomicBool::new(false));
    let total = INITIAL * accounts as i64;
    let auditors: Vec<_> = (0..2)
        .map(|_| {
            let (bank, done) = (Arc::clone(&bank), Arc::clone(&done));
            thread::spawn(move || {
                let mut audits = 0_u64;
                while !done.load(Ordering::Relaxed) || audits == 0 {
                    // Opacity: the sum is checked *inside* the transaction, on every attempt,
                    // including attempts that will later abort.
                    atomically(|tx| {
                        let mut sum = 0;
                        for a in bank.iter() {
                            sum += a.read(tx)?;
                        }
                        assert_eq!(sum, total, "an auditor saw an inconsistent state");
                        Ok(())
                    });
                    audits += 1;
                }
                audits
            })
        })
        .collect();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let bank = Arc::clone(&bank);
            thread::spawn(move || {
                let mut seed = 0x9E37_79B9 ^ ((t as u64 + 1) * 0x1234_5678_9ABC);
                for _ in 0..transfers {
                    let from = next(&mut seed) as usize % bank.len();
                    let to = next(&mut seed) as usize % bank.len();
                    let amount = (next(&mut seed) % 50) as i64;
                    atomically(|tx| {
                        let f = bank[from].read(tx)?;
                        let t = bank[to].read(tx)?;
                        if from != to {
                            bank[from].write(tx, f - amount)?;
                            bank[to].write(tx, t + amount)?;
                        }
                        Ok(())
                    });
                }
            })
        })
        .collect();
    workers.into_iter().for_each(|w| w.join().unwrap());
    done.store(true, Ordering::Relaxed);
    for a in auditors {
        assert!(a.join().unwrap() > 0);
    }
    let sum: i64 = bank.iter().map(TVar::read_atomic).sum();
    assert_eq!(sum, total);
}

#[test]
fn bank_transfers_conserve_the_total_2_threads() {
    run_bank(2, 20_000, ACCOUNTS);
}

#[test]
fn bank_transfers_conserve_the_total_8_threads_hot_accounts() {
    run_bank(8, 5_000, 4);
}

#[test]
fn hand_offs_through_one_slot_lose_and_duplicate_nothing() {
    const N: u64 = 10_000;
    let slot: TVar<Option<u64>> = TVar::new(None);
    let producer = {
        let slot = slot.clone();
        thread::spawn(move || {
            for i in 1..=N {
                atomically(|tx| match slot.read(tx)? {
                    None => slot.write(tx, Some(i)),
                    Some(_) => retry(), // full: wait for the consumer
                });
            }
        })
    };
    for expected in 1..=N {
        let got = atomically(|tx| {
            let v = unwrap_or_retry(slot.read(tx)?)?; // empty: wait for the producer
            slot.write(tx, None)?;
            Ok(v)
        });
        assert_eq!(got, expected, "lost or duplicated hand-off");
    }
    producer.join().unwrap();
    assert_eq!(slot.read_atomic(), None);
}

#[test]
fn many_producers_and_consumers_through_retry() {
    const PER_PRODUCER: u64 = 2_000;
    let slot: TVar<Option<u64>> = TVar::new(None);
    let producers: Vec<_> = (0..3_u64)
        .map(|p| {
            let slot = slot.clone();
            thread::spawn(move || {
                for i in 0..PER_PRODUCER {
                    let item = p * PER_PRODUCER + i;
                    atomically(|tx| {
                        guard(slot.read(tx)?.is_none())?;
                        slot.write(tx, Some(item))
                    });
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let slot = slot.clone();
            thread::spawn(move || {
                (0..PER_PRODUCER)
                    .map(|_| {
                        atomically(|tx| {
                            let v = unwrap_or_retry(slot.read(tx)?)?;
                            slot.write(tx, None)?;
                            Ok(v)
                        })
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    producers.into_iter().for_each(|p| p.join().unwrap());
    let mut all: Vec<u64> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..3 * PER_PRODUCER).collect::<Vec<_>>());
}

#[test]
fn no_write_skew() {
    // Invariant: x + y >= 0. Each thread reads both and withdraws from one only if the sum
    // allows. Snapshot isolation would let both withdraw; serializability must not.
    for round in 0..2_000 {
        let (x, y) = (TVar::new(50_i64), TVar::new(50_i64));
        let barrier = Arc::new(Barrier::new(2));
        let spawn = |mine: TVar<i64>, other: TVar<i64>, barrier: Arc<Barrier>| {
            thread::spawn(move || {
                barrier.wait();
                atomically(|tx| {
                    let (m, o) = (mine.read(tx)?, other.read(tx)?);
                    if m + o >= 100 {
                        mine.write(tx, m - 100)?;
                    }
                    Ok(())
                })
            })
        };
        let a = spawn(x.clone(), y.clone(), Arc::clone(&barrier));
        let b = spawn(y.clone(), x.clone(), barrier);
        a.join().unwrap();
        b.join().unwrap();
        assert!(
            x.read_atomic() + y.read_atomic() >= 0,
            "write skew in round {round}"
        );
    }
}

#[test]
fn a_long_reader_commits_while_writers_keep_swapping() {
    const VARS: usize = 1_000;
    let vars: Arc<Vec<TVar<u64>>> = Arc::new((0..VARS as u64).map(TVar::new).collect());
    let expected: u64 = (0..VARS as u64).sum();
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swappers: Vec<_> = (0..2)
        .map(|t| {
            let (vars, stop, total) = (Arc::clone(&vars), Arc::clone(&stop), Arc::clone(&swaps));
            thread::spawn(move || {
                let mut seed = 0xDEAD_BEEF_u64 + t;
                let mut swaps = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    total.fetch_add(1, Ordering::Relaxed);
                    let i = next(&mut seed) as usize % VARS;
                    let j = next(&mut seed) as usize % VARS;
                    atomically(|tx| {
                        let (a, b) = (vars[i].read(tx)?, vars[j].read(tx)?);
                        vars[i].write(tx, b)?;
                        vars[j].write(tx, a)
                    });
                    swaps += 1;
                }
                swaps
            })
        })
        .collect();
    while swaps.load(Ordering::Relaxed) < 1_000 {
        thread::yield_now(); // make sure the reader really competes with the swappers
    }
    let started = Instant::now();
    for _ in 0..10 {
        let sum = atomically(|tx| {
            let mut sum = 0;
            for v in vars.iter() {
                sum += v.read(tx)?;
            }
            Ok(sum)
        });
        assert_eq!(sum, expected);
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    // Both swappers ran throughout (the reader only started after 1,000 swaps).
    let swapped: u64 = swappers.into_iter().map(|s| s.join().unwrap()).sum();
    assert!(swapped >= 1_000, "the swappers made no progress");
    // Generous: this is a liveness check, not a benchmark (it takes milliseconds).
    assert!(
        elapsed < Duration::from_secs(20),
        "the reader starved for {elapsed:?}"
    );
}

#[test]
fn concurrent_increments_are_not_lost() {
    let counter = TVar::new(0_u64);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let c = counter.clone();
            thread::spawn(move || {
                for i in 0..5_000 {
                    if i % 2 == 0 {
                        atomically(|tx| c.modify(tx, |n| n + 1));
                    } else {
                        atomically(|tx| {
                            let n = c.read(tx)?;
                            tx.or_else(|_| retry(), |tx| c.write(tx, n + 1))
                        });
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(counter.read_atomic(), 20_000);
}

#[test]
fn a_transaction_that_always_loses_eventually_runs_alone_and_commits() {
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;

    // Every attempt reads `a`, then makes another thread commit to `a` and waits for it (at most
    // 50 ms), so its own commit fails validation. Without the starvation escape this never
    // commits; with it, after a dozen conflicts the transaction holds the serial token, the
    // competing writer waits for it, and the next attempt commits.
    let (a, b) = (TVar::new(0_u64), TVar::new(0_u64));
    let attempts = AtomicUsize::new(0);
    let mut writers = Vec::new();
    atomically(|tx| {
        let n = attempts.fetch_add(1, Ordering::SeqCst) as u64;
        assert!(n < 1_000, "the transaction starved");
        let seen = a.read(tx)?;
        let (done_tx, done_rx) = mpsc::channel();
        let a2 = a.clone();
        writers.push(thread::spawn(move || {
            a2.write_atomic(n + 1);
            let _ = done_tx.send(());
        }));
        let _ = done_rx.recv_timeout(Duration::from_millis(50));
        b.write(tx, seen + 100)
    });
    let attempts = attempts.load(Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    assert!(
        (2..=20).contains(&attempts),
        "committed after {attempts} attempts"
    );
    // The winning attempt saw the value written by the last writer that got in before it.
    assert_eq!(b.read_atomic(), (attempts as u64 - 1) + 100);
}

/// Values stored inline in the variable (primitives, here a `u128` filling both words) are read
/// whole: a writer stores `(n << 64) | n`, readers in and out of transactions check that both
/// halves match. A torn read of the two words would show different halves.
#[test]
fn inline_two_word_values_are_never_torn() {
    let v = Arc::new(TVar::new(0_u128));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (v, done) = (Arc::clone(&v), Arc::clone(&done));
            thread::spawn(move || {
                let mut seen = 0_u64;
                // At least some reads even if the writer is done before this thread runs.
                while !done.load(Ordering::Relaxed) || seen < 1_000 {
                    let x = if r == 0 {
                        atomically(|tx| v.read(tx))
                    } else {
                        v.read_atomic()
                    };
                    assert_eq!(x >> 64, x & u128::from(u64::MAX), "torn: {x:#x}");
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    for n in 1..=200_000_u128 {
        if n % 2 == 0 {
            v.write_atomic((n << 64) | n);
        } else {
            atomically(|tx| v.write(tx, (n << 64) | n));
        }
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert_eq!(v.read_atomic(), (200_000 << 64) | 200_000);
}

/// A read-only transaction of plain values runs unpinned and pins at its first read of a boxed
/// value (`docs/design.md`, "Read-only attempts"). Readers that read a `u64` first and a boxed
/// vector second, while a writer keeps replacing both, must see whole values from one commit;
/// under AddressSanitizer (`.ci/asan`) a box freed under a reader that forgot to pin fails.
#[test]
fn read_only_transactions_pin_before_their_first_boxed_read() {
    let n = Arc::new(TVar::new(0_u64));
    let items = Arc::new(TVar::new(Vec::<u64>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (n, items, done) = (Arc::clone(&n), Arc::clone(&items), Arc::clone(&done));
            thread::spawn(move || {
                let mut seen = 0_u64;
                while !done.load(Ordering::Relaxed) || seen < 1_000 {
                    let (count, whole) = atomically(|tx| {
                        let count = n.read(tx)?;
                        let whole = items.read_with(tx, |v| {
                            v.len() as u64 == count.min(8) && v.iter().all(|&x| x == count)
                        })?;
                        Ok((count, whole))
                    });
                    assert!(whole, "the vector does not match the count {count}");
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    for i in 1..=100_000_u64 {
        atomically(|tx| {
            n.write(tx, i)?;
            items.write(tx, vec![i; i.min(8) as usize])
        });
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}

/// Variables die (their last handle dropped) while other threads' transactions have read them
/// through handles they dropped since, and still hold them in their logs: validation meets dead
/// variables, commits meet dead variables in their write sets. Every value read must be whole
/// (a vector of `n` copies of `n`), and under AddressSanitizer (`.ci/asan`) nothing is touched
/// after it was freed.
#[test]
fn variables_die_while_other_transactions_hold_them_in_their_logs() {
    use std::sync::Mutex;
    const SLOTS: usize = 8;
    let fresh = |n: u8| TVar::new(vec![n; usize::from(n)]);
    let slots: Arc<Mutex<Vec<TVar<Vec<u8>>>>> =
        Arc::new(Mutex::new((1..=SLOTS as u8).map(fresh).collect()));
    let total = Arc::new(TVar::new(0_u64));
    let stop = Arc::new(AtomicBool::new(false));
    let replacer = {
        let (slots, stop) = (Arc::clone(&slots), Arc::clone(&stop));
        thread::spawn(move || {
            let mut seed = 7_u64;
            while !stop.load(Ordering::Relaxed) {
                let i = (next(&mut seed) % SLOTS as u64) as usize;
                let n = (next(&mut seed) % 200) as u8 + 1;
                // The old variable's last handle goes here (unless a reader holds a clone).
                let old = std::mem::replace(&mut slots.lock().unwrap()[i], fresh(n));
                drop(old);
            }
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (slots, total) = (Arc::clone(&slots), Arc::clone(&total));
            thread::spawn(move || {
                let mut seed = 11 + r as u64;
                for _ in 0..20_000 {
                    atomically(|tx| {
                        let mut sum = 0_u64;
                        for _ in 0..3 {
                            let i = (next(&mut seed) % SLOTS as u64) as usize;
                            let v = slots.lock().unwrap()[i].clone();
                            let (len, whole) = v.read_with(tx, |bytes| {
                                (
                                    bytes.len(),
                                    bytes.iter().all(|&b| usize::from(b) == bytes.len()),
                                )
                            })?;
                            assert!(whole, "a torn or freed value");
                            if len % 2 == 0 {
                                // A write to a variable that may die before this commits.
                                v.write(tx, vec![1])?;
                                v.write(tx, vec![u8::try_from(len).unwrap(); len])?;
                            }
                            sum += len as u64;
                            drop(v); // perhaps the last handle, inside the transaction
                        }
                        total.modify(tx, |t| t + sum)
                    });
                }
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    replacer.join().unwrap();
    assert!(total.read_atomic() > 0);
    drop(slots);
    // The exited readers left replaced values to the epoch: collect them, so that a leak
    // checker sees only what is really lost.
    for _ in 0..8 {
        stmx::collect_garbage();
    }
}

/// A list of `TVar`s walked with `read_through` / `read_ref` while writers move amounts between
/// its nodes: every walk sees one consistent snapshot (opacity through a `Reader`).
#[test]
fn walks_through_a_reader_see_one_snapshot() {
    struct Node {
        amount: i64,
        next: Option<TVar<Node>>,
    }
    const NODES: usize = 32;
    // Built back to front: each node holds the handle of the next.
    let mut tail = None;
    let mut handles = Vec::new();
    for _ in 0..NODES {
        let node = TVar::new(Node {
            amount: 100,
            next: tail.take(),
        });
        handles.push(node.clone());
        tail = Some(node);
    }
    let head = tail.expect("at least one node");
    handles.reverse();
    let handles = Arc::new(handles);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (handles, stop) = (Arc::clone(&handles), Arc::clone(&stop));
            thread::spawn(move || {
                let mut seed = 3 + w as u64;
                while !stop.load(Ordering::Relaxed) {
                    let a = (next(&mut seed) % NODES as u64) as usize;
                    let b = (next(&mut seed) % NODES as u64) as usize;
                    let n = (next(&mut seed) % 10) as i64;
                    atomically(|tx| {
                        let x = handles[a].read_with(tx, |node| node.amount)?;
                        let next_a = handles[a].read_with(tx, |node| node.next.clone())?;
                        handles[a].write(
                            tx,
                            Node {
                                amount: x - n,
                                next: next_a,
                            },
                        )?;
                        let y = handles[b].read_with(tx, |node| node.amount)?;
                        let next_b = handles[b].read_with(tx, |node| node.next.clone())?;
                        handles[b].write(
                            tx,
                            Node {
                                amount: y + n,
                                next: next_b,
                            },
                        )
                    });
                }
            })
        })
        .collect();
    for _ in 0..20_000 {
        let total = atomically(|tx| {
            head.read_through(tx, |mut node, reader| {
                let mut total = node.amount;
                while let Some(link) = &node.next {
                    node = reader.read_ref(link)?;
                    total += node.amount;
                }
                Ok(total)
            })
        });
        assert_eq!(total, 100 * NODES as i64, "a walk saw a torn snapshot");
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
}
