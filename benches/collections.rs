//! Criterion benchmarks of the containers, with `std`-under-a-`Mutex` and `dashmap` baselines:
//! single-thread map lookups and updates, and a queue's put + take.
//!
//! `cargo bench --bench collections`. The side-by-side multi-thread table is in
//! `benches/compare` (`STMX_COMPARE_ONLY=collections cargo bench --bench compare`).

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use parking_lot::Mutex;
use stmx::prelude::*;

const KEYS: u64 = 10_000;

fn maps(c: &mut Criterion) {
    let mut g = c.benchmark_group("map");
    let hash = THashMap::new();
    let tree = TMap::new();
    let dash = dashmap::DashMap::new();
    let locked_hash = Mutex::new(HashMap::new());
    let locked_tree = Mutex::new(BTreeMap::new());
    for k in 0..KEYS {
        atomically(|tx| hash.insert(tx, k, k));
        atomically(|tx| tree.insert(tx, k, k));
        dash.insert(k, k);
        locked_hash.lock().insert(k, k);
        locked_tree.lock().insert(k, k);
    }
    let mut k = 0;
    let mut next = || {
        k = (k + 7_919) % KEYS;
        k
    };
    g.bench_function("get/THashMap", |b| {
        b.iter(|| atomically(|tx| hash.get(tx, &next())))
    });
    g.bench_function("get/dashmap", |b| b.iter(|| dash.get(&next()).map(|v| *v)));
    g.bench_function("get/Mutex<HashMap>", |b| {
        b.iter(|| locked_hash.lock().get(&next()).copied())
    });
    g.bench_function("get/TMap", |b| {
        b.iter(|| atomically(|tx| tree.get(tx, &next())))
    });
    g.bench_function("get/Mutex<BTreeMap>", |b| {
        b.iter(|| locked_tree.lock().get(&next()).copied())
    });
    g.bench_function("insert-existing/THashMap", |b| {
        b.iter(|| atomically(|tx| hash.insert(tx, next(), 1)))
    });
    g.bench_function("insert-existing/TMap", |b| {
        b.iter(|| atomically(|tx| tree.insert(tx, next(), 1)))
    });
    g.bench_function("remove+insert/TMap", |b| {
        b.iter(|| {
            let k = next();
            atomically(|tx| {
                tree.remove(tx, &k)?;
                tree.insert(tx, k, k)
            })
        })
    });
    g.finish();
}

fn queues(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue");
    let bounded = TFifo::bounded(64);
    let unbounded = TFifo::new();
    let channel = TChannel::new();
    let port = channel.subscribe();
    g.bench_function("put+take/TFifo::bounded", |b| {
        b.iter(|| {
            atomically(|tx| bounded.put(tx, black_box(1_u64)));
            atomically(|tx| bounded.take(tx))
        })
    });
    g.bench_function("put+take/TFifo::new", |b| {
        b.iter(|| {
            atomically(|tx| unbounded.put(tx, black_box(1_u64)));
            atomically(|tx| unbounded.take(tx))
        })
    });
    g.bench_function("put+take/TChannel+TPort", |b| {
        b.iter(|| {
            atomically(|tx| channel.put(tx, black_box(1_u64)));
            atomically(|tx| port.take(tx))
        })
    });
    let (tx_c, rx_c) = crossbeam_channel::bounded(64);
    g.bench_function("send+recv/crossbeam bounded", |b| {
        b.iter(|| {
            tx_c.send(black_box(1_u64)).unwrap();
            rx_c.recv().unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, maps, queues);
criterion_main!(benches);
