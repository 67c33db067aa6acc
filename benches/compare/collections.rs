//! The containers side by side with their lock-based and lock-free counterparts:
//! `THashMap` vs `dashmap` and `Mutex<HashMap>`, `TMap` vs `Mutex<BTreeMap>`, and a bounded
//! `TFifo` vs `crossbeam-channel` and the `stm` crate's usual queue (a `VecDeque` in one
//! `TVar`), and a `TChannel` with one `TPort` vs an unbounded `crossbeam-channel`, interleaved
//! round by round like the core table. The last column is the target the containers issue
//! sets.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Keys live in `0..KEY_SPACE`; half of them are present at the start.
const KEY_SPACE: u64 = 20_000;

/// A map under test: `u64 -> u64`.
pub(crate) trait MapSubject: Send + Sync {
    fn name(&self) -> &'static str;
    fn get(&self, k: u64) -> Option<u64>;
    fn insert(&self, k: u64, v: u64);
    fn remove(&self, k: u64);
}

/// A stmx map: every operation is its own transaction.
macro_rules! stmx_map {
    ($subject:ident, $map:ident, $label:literal) => {
        struct $subject(stmx::$map<u64, u64>);

        impl MapSubject for $subject {
            fn name(&self) -> &'static str {
                $label
            }
            fn get(&self, k: u64) -> Option<u64> {
                stmx::atomically(|tx| self.0.get(tx, &k))
            }
            fn insert(&self, k: u64, v: u64) {
                stmx::atomically(|tx| self.0.insert(tx, k, v));
            }
            fn remove(&self, k: u64) {
                stmx::atomically(|tx| self.0.remove(tx, &k));
            }
        }
    };
}

/// A `std` map behind one `parking_lot::Mutex`.
macro_rules! locked_map {
    ($subject:ident, $map:ident, $label:literal) => {
        struct $subject(Mutex<$map<u64, u64>>);

        impl MapSubject for $subject {
            fn name(&self) -> &'static str {
                $label
            }
            fn get(&self, k: u64) -> Option<u64> {
                self.0.lock().get(&k).copied()
            }
            fn insert(&self, k: u64, v: u64) {
                self.0.lock().insert(k, v);
            }
            fn remove(&self, k: u64) {
                self.0.lock().remove(&k);
            }
        }
    };
}

stmx_map!(StmxHash, THashMap, "stmx THashMap");
stmx_map!(StmxTree, TMap, "stmx TMap");
locked_map!(LockedHash, HashMap, "Mutex<HashMap>");
locked_map!(LockedTree, BTreeMap, "Mutex<BTreeMap>");

struct Dash(dashmap::DashMap<u64, u64>);

impl MapSubject for Dash {
    fn name(&self) -> &'static str {
        "dashmap"
    }
    fn get(&self, k: u64) -> Option<u64> {
        self.0.get(&k).map(|v| *v)
    }
    fn insert(&self, k: u64, v: u64) {
        self.0.insert(k, v);
    }
    fn remove(&self, k: u64) {
        self.0.remove(&k);
    }
}

fn filled(subject: Arc<dyn MapSubject>) -> Arc<dyn MapSubject> {
    for k in (0..KEY_SPACE).step_by(2) {
        subject.insert(k, k);
    }
    subject
}

fn hash_subjects() -> Vec<Arc<dyn MapSubject>> {
    vec![
        filled(Arc::new(StmxHash(stmx::THashMap::new()))),
        filled(Arc::new(Dash(dashmap::DashMap::new()))),
        filled(Arc::new(LockedHash(Mutex::new(HashMap::new())))),
    ]
}

fn tree_subjects() -> Vec<Arc<dyn MapSubject>> {
    vec![
        filled(Arc::new(StmxTree(stmx::TMap::new()))),
        filled(Arc::new(LockedTree(Mutex::new(BTreeMap::new())))),
    ]
}

/// `ops` operations split over `threads`: 90% `get`, 5% `insert`, 5% `remove` of random keys.
/// Returns ns per operation (wall time over all threads' operations).
fn mixed(subject: &Arc<dyn MapSubject>, threads: usize, ops: u64) -> f64 {
    let per_thread = ops / threads as u64;
    let elapsed = super::run_threads(threads, per_thread, &|seed| {
        let k = seed % KEY_SPACE;
        match (seed >> 32) % 20 {
            0 => subject.insert(k, seed),
            1 => subject.remove(k),
            _ => {
                black_box(subject.get(k));
            }
        }
    });
    elapsed.as_nanos() as f64 / (per_thread * threads as u64) as f64
}

/// A bounded queue under test, driven by one producer and one consumer.
pub(crate) trait QueueSubject: Send + Sync {
    fn name(&self) -> &'static str;
    /// Passes `items` values from a producer thread to a consumer thread; returns the time.
    fn transfer(&self, items: u64) -> Duration;
}

const QUEUE_CAPACITY: usize = 64;

/// Times `items` values from a producer running `put` to a consumer running `take`.
fn spsc(items: u64, put: impl Fn(u64) + Sync, take: impl Fn() -> u64 + Sync) -> Duration {
    let barrier = Barrier::new(3);
    thread::scope(|s| {
        s.spawn(|| {
            barrier.wait();
            for i in 0..items {
                put(i);
            }
        });
        s.spawn(|| {
            barrier.wait();
            for i in 0..items {
                assert_eq!(take(), i, "the queue reordered values");
            }
        });
        let start = Instant::now();
        barrier.wait();
        // The scope joins both threads before returning.
        start
    })
    .elapsed()
}

struct StmxFifo(stmx::TFifo<u64>);
struct Crossbeam(
    crossbeam_channel::Sender<u64>,
    crossbeam_channel::Receiver<u64>,
);
struct StmCrateDeque(stm::TVar<VecDeque<u64>>);

impl QueueSubject for StmxFifo {
    fn name(&self) -> &'static str {
        "stmx TFifo::bounded"
    }
    fn transfer(&self, items: u64) -> Duration {
        spsc(
            items,
            |i| stmx::atomically(|tx| self.0.put(tx, i)),
            || stmx::atomically(|tx| self.0.take(tx)),
        )
    }
}

impl QueueSubject for Crossbeam {
    fn name(&self) -> &'static str {
        "crossbeam bounded"
    }
    fn transfer(&self, items: u64) -> Duration {
        spsc(
            items,
            |i| self.0.send(i).unwrap(),
            || self.1.recv().unwrap(),
        )
    }
}

impl QueueSubject for StmCrateDeque {
    fn name(&self) -> &'static str {
        "stm TVar<VecDeque>"
    }
    fn transfer(&self, items: u64) -> Duration {
        spsc(
            items,
            |i| {
                stm::atomically(|tx| {
                    let mut q = self.0.read(tx)?;
                    stm::guard(q.len() < QUEUE_CAPACITY)?;
                    q.push_back(i);
                    self.0.write(tx, q)
                })
            },
            || {
                stm::atomically(|tx| {
                    let mut q = self.0.read(tx)?;
                    let v = stm::unwrap_or_retry(q.pop_front())?;
                    self.0.write(tx, q)?;
                    Ok(v)
                })
            },
        )
    }
}

fn queue_subjects() -> Vec<Arc<dyn QueueSubject>> {
    let (tx, rx) = crossbeam_channel::bounded(QUEUE_CAPACITY);
    vec![
        Arc::new(StmxFifo(stmx::TFifo::bounded(QUEUE_CAPACITY))),
        Arc::new(Crossbeam(tx, rx)),
        Arc::new(StmCrateDeque(stm::TVar::new(VecDeque::new()))),
    ]
}

/// A multicast channel under test, on one thread: put a value, then take it through a port.
pub(crate) trait ChannelSubject {
    fn name(&self) -> &'static str;
    fn put_take(&self, i: u64) -> u64;
}

struct StmxChannel(stmx::TChannel<u64>, stmx::TPort<u64>);
struct CrossbeamUnbounded(
    crossbeam_channel::Sender<u64>,
    crossbeam_channel::Receiver<u64>,
);

impl ChannelSubject for StmxChannel {
    fn name(&self) -> &'static str {
        "stmx TChannel + TPort"
    }
    fn put_take(&self, i: u64) -> u64 {
        stmx::atomically(|tx| self.0.put(tx, i));
        stmx::atomically(|tx| self.1.take(tx))
    }
}

impl ChannelSubject for CrossbeamUnbounded {
    fn name(&self) -> &'static str {
        "crossbeam unbounded"
    }
    fn put_take(&self, i: u64) -> u64 {
        self.0.send(i).unwrap();
        self.1.recv().unwrap()
    }
}

fn channel_subjects() -> Vec<Box<dyn ChannelSubject>> {
    let channel = stmx::TChannel::new();
    let port = channel.subscribe();
    let (tx, rx) = crossbeam_channel::unbounded();
    vec![
        Box::new(StmxChannel(channel, port)),
        Box::new(CrossbeamUnbounded(tx, rx)),
    ]
}

/// Times `items` put-then-take steps; returns ns per item.
fn put_take(subject: &dyn ChannelSubject, items: u64) -> f64 {
    let start = Instant::now();
    for i in 0..items {
        assert_eq!(black_box(subject.put_take(i)), i);
    }
    start.elapsed().as_nanos() as f64 / items as f64
}

/// Prints one table row: median ns/op per subject, its ratio to the first, and the target.
fn row(label: &str, names: &[&str], samples: &mut [Vec<f64>], target: &str) {
    let medians: Vec<f64> = samples.iter_mut().map(|s| super::median(s)).collect();
    let cells: Vec<String> = medians
        .iter()
        .zip(names)
        .map(|(m, n)| format!("{n} {m:.1}"))
        .collect();
    let ratios: Vec<String> = medians[1..]
        .iter()
        .zip(&names[1..])
        .map(|(m, n)| format!("{:.2}x {n}", medians[0] / m))
        .collect();
    println!(
        "| {label} | {} | {} | {target} |",
        cells.join(" · "),
        ratios.join(" · ")
    );
}

pub(crate) fn run(rounds: usize) {
    println!(
        "\nContainers: median ns/op; ratio = stmx time / other time (lower is better for stmx)\n"
    );
    println!("| workload | median ns/op | stmx / other | target (issue 12) |");
    println!("|---|---|---|---|");
    // A million operations per batch: with 100,000 (2.5 ms per thread) the two workers of the
    // two-thread rows ran largely one after the other (the Mutex baseline showed no
    // contention at all), so those rows measured one thread.
    const MAP_OPS: u64 = 1_000_000;
    for (label, subjects, threads, target) in [
        (
            "THashMap 90/10, 1 thread",
            hash_subjects(),
            1,
            "≤ 2x dashmap",
        ),
        (
            "THashMap 90/10, 2 threads",
            hash_subjects(),
            2,
            "≤ 1.5x dashmap",
        ),
        (
            "TMap 90/10, 1 thread",
            tree_subjects(),
            1,
            "≤ 3x Mutex<BTreeMap>",
        ),
        ("TMap 90/10, 2 threads", tree_subjects(), 2, ""),
    ] {
        for s in &subjects {
            mixed(s, threads, MAP_OPS);
        }
        let mut samples = vec![Vec::with_capacity(rounds); subjects.len()];
        for _ in 0..rounds {
            for (i, s) in subjects.iter().enumerate() {
                samples[i].push(mixed(s, threads, MAP_OPS));
            }
        }
        let names: Vec<&str> = subjects.iter().map(|s| s.name()).collect();
        row(label, &names, &mut samples, target);
    }

    const ITEMS: u64 = 100_000;
    let subjects = queue_subjects();
    for s in &subjects {
        s.transfer(ITEMS / 10);
    }
    let mut samples = vec![Vec::with_capacity(rounds); subjects.len()];
    for _ in 0..rounds {
        for (i, s) in subjects.iter().enumerate() {
            samples[i].push(s.transfer(ITEMS).as_nanos() as f64 / ITEMS as f64);
        }
    }
    let names: Vec<&str> = subjects.iter().map(|s| s.name()).collect();
    row(
        &format!("bounded({QUEUE_CAPACITY}) queue, 1 producer / 1 consumer"),
        &names,
        &mut samples,
        "≤ 3x crossbeam bounded",
    );

    const STEPS: u64 = 100_000;
    let subjects = channel_subjects();
    for s in &subjects {
        put_take(s.as_ref(), STEPS / 10);
    }
    let mut samples = vec![Vec::with_capacity(rounds); subjects.len()];
    for _ in 0..rounds {
        for (i, s) in subjects.iter().enumerate() {
            samples[i].push(put_take(s.as_ref(), STEPS));
        }
    }
    let names: Vec<&str> = subjects.iter().map(|s| s.name()).collect();
    row(
        "channel + one port, put then take, 1 thread",
        &names,
        &mut samples,
        "≤ 6x crossbeam unbounded",
    );
}
