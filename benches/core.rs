//! Criterion benchmarks of the engine: uncontended read/write paths and contended commits.
//!
//! `cargo bench --bench core`. Contended groups time `iters` commits per thread with
//! `iter_custom` and scoped threads (spawning inside `iter` would measure thread creation).

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use parking_lot::Mutex;
use stmx::prelude::*;

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended");
    let one = TVar::new(1_u64);
    g.bench_function("read/1", |b| b.iter(|| atomically(|tx| one.read(tx))));
    g.bench_function("read_atomic/1", |b| {
        b.iter(|| black_box(&one).read_atomic())
    });
    g.bench_function("rmw/1", |b| {
        b.iter(|| atomically(|tx| one.modify(tx, |v| v + 1)))
    });
    g.bench_function("write_atomic/1", |b| {
        b.iter(|| one.write_atomic(black_box(3)))
    });
    let hundred: Vec<TVar<u64>> = (0..100).map(TVar::new).collect();
    g.bench_function("read/100", |b| {
        b.iter(|| {
            atomically(|tx| {
                let mut sum = 0;
                for v in &hundred {
                    sum += v.read(tx)?;
                }
                Ok(sum)
            })
        })
    });
    g.bench_function("or_else/retry-then-read", |b| {
        b.iter(|| atomically(|tx| tx.or_else(|_| retry(), |tx| one.read(tx))))
    });
    // A variable's whole life: creation, and death when its only handle is dropped.
    g.bench_function("new-drop/u64", |b| {
        b.iter(|| drop(TVar::new(black_box(7_u64))))
    });
    g.bench_function("new-drop/String", |b| {
        b.iter(|| drop(TVar::new(black_box(String::new()))))
    });
    // The single-operation views against the transactions they replace.
    g.bench_function("swap_atomic/1", |b| {
        b.iter(|| one.swap_atomic(black_box(4)))
    });
    g.bench_function("atomically-replace/1", |b| {
        b.iter(|| atomically(|tx| one.replace(tx, black_box(4))))
    });
    g.bench_function("compare_and_set_atomic/1", |b| {
        b.iter(|| one.compare_and_set_atomic(&4, black_box(4)))
    });
    g.bench_function("atomically-compare-and-set/1", |b| {
        b.iter(|| {
            atomically(|tx| {
                let equal = one.read(tx)? == 4;
                if equal {
                    one.write(tx, black_box(4))?;
                }
                Ok(equal)
            })
        })
    });
    g.bench_function("modify_atomic/1", |b| {
        b.iter(|| one.modify_atomic(|v| v ^ 1))
    });
    let mutex = Mutex::new(1_u64);
    g.bench_function("mutex/read/1", |b| b.iter(|| *black_box(&mutex).lock()));
    g.bench_function("mutex/rmw/1", |b| b.iter(|| *black_box(&mutex).lock() += 1));
    g.finish();
}

/// `threads` threads each commit `iters` increments of one of `vars` variables.
fn contended_increments(threads: usize, vars: &[TVar<u64>], iters: u64) -> Duration {
    let barrier = Barrier::new(threads + 1);
    thread::scope(|s| {
        for t in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for i in 0..iters as usize {
                    let v = &vars[(i + t) % vars.len()];
                    atomically(|tx| v.modify(tx, |n| n + 1));
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("commit/contended");
    for threads in [1, 2] {
        for vars in [1, 64] {
            let tvars: Vec<TVar<u64>> = (0..vars).map(|_| TVar::new(0)).collect();
            g.bench_with_input(
                BenchmarkId::new(format!("{vars}vars"), threads),
                &threads,
                |b, &threads| b.iter_custom(|iters| contended_increments(threads, &tvars, iters)),
            );
        }
    }
    g.finish();
}

fn retry_ping_pong(c: &mut Criterion) {
    c.bench_function("retry/ping-pong", |b| {
        b.iter_custom(|iters| {
            let slot = TVar::new(None::<u64>);
            thread::scope(|s| {
                let producer = &slot;
                s.spawn(move || {
                    for i in 0..iters {
                        atomically(|tx| {
                            guard(producer.read(tx)?.is_none())?;
                            producer.write(tx, Some(i))
                        });
                    }
                });
                let start = Instant::now();
                for _ in 0..iters {
                    atomically(|tx| {
                        let v = unwrap_or_retry(slot.read(tx)?)?;
                        slot.write(tx, None)?;
                        Ok(v)
                    });
                }
                start.elapsed()
            })
        })
    });
}

criterion_group!(benches, uncontended, contended, retry_ping_pong);
criterion_main!(benches);
