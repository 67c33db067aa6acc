//! Side-by-side comparison: stmx, the `stm` crate 0.4, `async-stm` 0.5, and one
//! `parking_lot::Mutex` guarding all the variables, on the same workloads, interleaved in one
//! run (every round runs every implementation once, so machine noise hits them alike).
//!
//! `cargo bench --bench compare` prints a Markdown table of median ns/op and the ratio to the
//! Mutex baseline (and, for multi-thread bank rows, each system's throughput over its own
//! 1-thread throughput), then the bank's scaling beside a lock per account, then a table for
//! the containers (see `collections.rs`) and one for `MegaRef` (`megaref.rs`). Set
//! `STMX_COMPARE_ROUNDS` to change the number of rounds (default 15), and
//! `STMX_COMPARE_ONLY=collections` (or `core`, or `megaref`) to run one table.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

mod collections;
mod megaref;

use futures_executor::block_on;
use parking_lot::Mutex;

/// One implementation of every workload.
trait Subject: Send + Sync {
    fn name(&self) -> &'static str;
    /// A read-only transaction of one `u64`.
    fn read1(&self) -> u64;
    /// Read-modify-write of one `u64`.
    fn rmw1(&self);
    /// A read-only transaction summing 100 variables.
    fn read100(&self) -> u64;
    /// Moves `amount` from account `from` to account `to`.
    fn transfer(&self, from: usize, to: usize, amount: u64);
    /// The sum of all accounts (checked after the bank workloads).
    fn bank_total(&self) -> u64;
}

const INITIAL: u64 = 1_000_000;

/// stmx and the `stm` crate share the API shape (`atomically(|tx| var.read(tx))`), so one
/// macro writes both subjects.
macro_rules! tx_closure_subject {
    ($subject:ident, $label:literal, $krate:ident) => {
        struct $subject {
            one: $krate::TVar<u64>,
            hundred: Vec<$krate::TVar<u64>>,
            accounts: Vec<$krate::TVar<u64>>,
        }

        impl $subject {
            fn new(accounts: usize) -> Self {
                Self {
                    one: $krate::TVar::new(0),
                    hundred: (0..100).map($krate::TVar::new).collect(),
                    accounts: (0..accounts).map(|_| $krate::TVar::new(INITIAL)).collect(),
                }
            }
        }

        impl Subject for $subject {
            fn name(&self) -> &'static str {
                $label
            }
            fn read1(&self) -> u64 {
                $krate::atomically(|tx| self.one.read(tx))
            }
            fn rmw1(&self) {
                $krate::atomically(|tx| {
                    let v = self.one.read(tx)?;
                    self.one.write(tx, v.wrapping_add(1))
                })
            }
            fn read100(&self) -> u64 {
                $krate::atomically(|tx| {
                    let mut sum = 0;
                    for v in &self.hundred {
                        sum += v.read(tx)?;
                    }
                    Ok(sum)
                })
            }
            fn transfer(&self, from: usize, to: usize, amount: u64) {
                let (f, t) = (&self.accounts[from], &self.accounts[to]);
                $krate::atomically(|tx| {
                    let a = f.read(tx)?;
                    f.write(tx, a - amount)?;
                    let b = t.read(tx)?;
                    t.write(tx, b + amount)
                })
            }
            fn bank_total(&self) -> u64 {
                $krate::atomically(|tx| {
                    let mut sum = 0;
                    for v in &self.accounts {
                        sum += v.read(tx)?;
                    }
                    Ok(sum)
                })
            }
        }
    };
}

tx_closure_subject!(Stmx, "stmx", stmx);
tx_closure_subject!(StmCrate, "stm 0.4", stm);

struct AsyncStm {
    one: async_stm::TVar<u64>,
    hundred: Vec<async_stm::TVar<u64>>,
    accounts: Vec<async_stm::TVar<u64>>,
}

impl Subject for AsyncStm {
    fn name(&self) -> &'static str {
        "async-stm 0.5"
    }
    fn read1(&self) -> u64 {
        block_on(async_stm::atomically(|| Ok(*self.one.read()?)))
    }
    fn rmw1(&self) {
        block_on(async_stm::atomically(|| {
            self.one.update(|v| v.wrapping_add(1))
        }))
    }
    fn read100(&self) -> u64 {
        block_on(async_stm::atomically(|| {
            let mut sum = 0;
            for v in &self.hundred {
                sum += *v.read()?;
            }
            Ok(sum)
        }))
    }
    fn transfer(&self, from: usize, to: usize, amount: u64) {
        let (f, t) = (&self.accounts[from], &self.accounts[to]);
        block_on(async_stm::atomically(|| {
            let a = *f.read()?;
            f.write(a - amount)?;
            let b = *t.read()?;
            t.write(b + amount)
        }))
    }
    fn bank_total(&self) -> u64 {
        block_on(async_stm::atomically(|| {
            let mut sum = 0;
            for v in &self.accounts {
                sum += *v.read()?;
            }
            Ok(sum)
        }))
    }
}

/// The lock baseline: one Mutex guards every variable.
struct Locked {
    state: Mutex<LockedState>,
}

struct LockedState {
    one: u64,
    hundred: Vec<u64>,
    accounts: Vec<u64>,
}

impl Subject for Locked {
    fn name(&self) -> &'static str {
        "Mutex"
    }
    fn read1(&self) -> u64 {
        self.state.lock().one
    }
    fn rmw1(&self) {
        let mut s = self.state.lock();
        s.one = s.one.wrapping_add(1);
    }
    fn read100(&self) -> u64 {
        self.state.lock().hundred.iter().sum()
    }
    fn transfer(&self, from: usize, to: usize, amount: u64) {
        let mut s = self.state.lock();
        s.accounts[from] -= amount;
        s.accounts[to] += amount;
    }
    fn bank_total(&self) -> u64 {
        self.state.lock().accounts.iter().sum()
    }
}

/// A lock per variable, each on a cache line of its own, a transfer taking its two in index
/// order (two-phase locking): the best a lock-based design does on transfers between random
/// accounts, so its scaling is this machine's own ceiling for the bank rows.
struct LockPerAccount {
    one: Padded,
    hundred: Vec<Padded>,
    accounts: Vec<Padded>,
}

#[repr(align(64))]
struct Padded(Mutex<u64>);

impl LockPerAccount {
    fn new(accounts: usize) -> Self {
        Self {
            one: Padded(Mutex::new(0)),
            hundred: (0..100).map(|v| Padded(Mutex::new(v))).collect(),
            accounts: (0..accounts).map(|_| Padded(Mutex::new(INITIAL))).collect(),
        }
    }
}

impl Subject for LockPerAccount {
    fn name(&self) -> &'static str {
        "lock per account"
    }
    fn read1(&self) -> u64 {
        *self.one.0.lock()
    }
    fn rmw1(&self) {
        let mut one = self.one.0.lock();
        *one = one.wrapping_add(1);
    }
    fn read100(&self) -> u64 {
        // Two-phase: every lock is held until the sum is complete.
        let guards: Vec<_> = self.hundred.iter().map(|v| v.0.lock()).collect();
        guards.iter().map(|g| **g).sum()
    }
    fn transfer(&self, from: usize, to: usize, amount: u64) {
        if from == to {
            return;
        }
        let (first, second) = (from.min(to), from.max(to));
        let mut a = self.accounts[first].0.lock();
        let mut b = self.accounts[second].0.lock();
        let (f, t) = if from < to {
            (&mut *a, &mut *b)
        } else {
            (&mut *b, &mut *a)
        };
        *f -= amount;
        *t += amount;
    }
    fn bank_total(&self) -> u64 {
        let guards: Vec<_> = self.accounts.iter().map(|v| v.0.lock()).collect();
        guards.iter().map(|g| **g).sum()
    }
}

fn subjects(accounts: usize) -> Vec<Arc<dyn Subject>> {
    vec![
        Arc::new(Locked {
            state: Mutex::new(LockedState {
                one: 0,
                hundred: (0..100).collect(),
                accounts: vec![INITIAL; accounts],
            }),
        }),
        Arc::new(Stmx::new(accounts)),
        Arc::new(StmCrate::new(accounts)),
        Arc::new(AsyncStm {
            one: async_stm::TVar::new(0),
            hundred: (0..100).map(async_stm::TVar::new).collect(),
            accounts: (0..accounts)
                .map(|_| async_stm::TVar::new(INITIAL))
                .collect(),
        }),
    ]
}

#[derive(Clone, Copy)]
enum Workload {
    Read1,
    Rmw1,
    Read100,
    Bank { accounts: usize, threads: usize },
}

impl Workload {
    fn label(self) -> String {
        match self {
            Workload::Read1 => "read1".into(),
            Workload::Rmw1 => "rmw1".into(),
            Workload::Read100 => "read100".into(),
            Workload::Bank { accounts, threads } => format!("bank{accounts}/{threads}t"),
        }
    }

    /// Operations per measurement: enough for ~1-10 ms per batch, and for the bank rows enough
    /// (~5-15 ms per thread) that the workers' staggered wake-ups from the start barrier do not
    /// count.
    fn ops(self) -> u64 {
        match self {
            Workload::Read1 | Workload::Rmw1 => 100_000,
            Workload::Read100 => 10_000,
            Workload::Bank { .. } => 200_000,
        }
    }

    /// Runs one batch; returns nanoseconds per operation (per transfer, all threads counted).
    fn measure(self, subject: &Arc<dyn Subject>) -> f64 {
        let ops = self.ops();
        let elapsed = match self {
            Workload::Read1 => timed(|| {
                (0..ops).for_each(|_| {
                    black_box(subject.read1());
                })
            }),
            Workload::Rmw1 => timed(|| (0..ops).for_each(|_| subject.rmw1())),
            Workload::Read100 => timed(|| {
                (0..ops).for_each(|_| {
                    black_box(subject.read100());
                })
            }),
            Workload::Bank { accounts, threads } => bank(subject, accounts, threads, ops),
        };
        elapsed.as_nanos() as f64 / ops as f64
    }
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// Runs `step` `per_thread` times on each of `threads` threads, from a common start; each call
/// gets the next value of its thread's xorshift sequence. Returns the wall time.
fn run_threads(threads: usize, per_thread: u64, step: &(dyn Fn(u64) + Sync)) -> Duration {
    // Each thread reads the clock itself, right after the common start and right after its
    // last step; the wall time is the first start to the last end. (Timing from the spawning
    // thread is wrong when it is descheduled after the start barrier: on 2 cores with 2 or more
    // workers it often is, and the workers then finish before its clock starts.)
    let arrived = AtomicUsize::new(0);
    let spans: Vec<(Instant, Instant)> = thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let arrived = &arrived;
                s.spawn(move || {
                    let mut seed = 0x2545_F491_4F6C_DD1D_u64 ^ (t as u64 + 1);
                    // A spinning start, not a `Barrier`: a thread woken from the barrier's
                    // futex started up to milliseconds late on this VM, so that two workers
                    // often ran one after the other (measured: bank1024 on 2 threads at 0.52x
                    // its 1-thread throughput with the barrier, 1.29x with this).
                    arrived.fetch_add(1, Ordering::SeqCst);
                    while arrived.load(Ordering::SeqCst) < threads {
                        thread::yield_now();
                    }
                    let start = Instant::now();
                    for _ in 0..per_thread {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        step(seed);
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let first = spans
        .iter()
        .map(|s| s.0)
        .min()
        .expect("at least one thread");
    let last = spans
        .iter()
        .map(|s| s.1)
        .max()
        .expect("at least one thread");
    last - first
}

/// `ops` transfers split over `threads` threads, timed from a common start.
fn bank(subject: &Arc<dyn Subject>, accounts: usize, threads: usize, ops: u64) -> Duration {
    let elapsed = run_threads(threads, ops / threads as u64, &|seed| {
        let from = (seed % accounts as u64) as usize;
        let to = ((seed >> 20) % accounts as u64) as usize;
        subject.transfer(from, to, seed >> 60);
    });
    let expected = INITIAL * accounts as u64;
    assert_eq!(
        subject.bank_total(),
        expected,
        "{}: the bank lost money",
        subject.name()
    );
    elapsed
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("STMX_COMPARE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(15);
    let only = std::env::var("STMX_COMPARE_ONLY").unwrap_or_default();
    if only.is_empty() || only == "core" {
        core_table(rounds);
        lock_scaling_table(rounds);
    }
    if only.is_empty() || only == "collections" {
        collections::run(rounds);
    }
    if only.is_empty() || only == "megaref" {
        megaref::run_all(rounds);
    }
}

fn core_table(rounds: usize) {
    let workloads = [
        Workload::Read1,
        Workload::Rmw1,
        Workload::Read100,
        Workload::Bank {
            accounts: 1024,
            threads: 1,
        },
        Workload::Bank {
            accounts: 1024,
            threads: 2,
        },
        // Oversubscribed on a 2-core machine: threads get preempted inside transactions.
        Workload::Bank {
            accounts: 1024,
            threads: 4,
        },
        Workload::Bank {
            accounts: 4,
            threads: 1,
        },
        Workload::Bank {
            accounts: 4,
            threads: 2,
        },
    ];
    println!(
        "stmx compare: {rounds} rounds, {} cores; median ns/op (ratio to Mutex)\n",
        thread::available_parallelism().map_or(1, |n| n.get())
    );
    let names: Vec<&str> = subjects(4).iter().map(|s| s.name()).collect();
    println!(
        "| workload | {} | stmx vs best other STM | throughput vs own 1 thread ({}) |",
        names.join(" | "),
        names.join(" / ")
    );
    println!("|---|{}---|---|", "---|".repeat(names.len()));
    // The 1-thread medians of each bank size, for the scaling column of multi-thread rows.
    let mut one_thread: Vec<(usize, Vec<f64>)> = Vec::new();
    for w in workloads {
        let accounts = match w {
            Workload::Bank { accounts, .. } => accounts,
            _ => 4,
        };
        let subjects = subjects(accounts);
        // Warm-up, then interleaved rounds.
        for s in &subjects {
            w.measure(s);
        }
        let mut samples = vec![Vec::with_capacity(rounds); subjects.len()];
        for _ in 0..rounds {
            for (i, s) in subjects.iter().enumerate() {
                samples[i].push(w.measure(s));
            }
        }
        let medians: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
        let base = medians[0];
        let cells: Vec<String> = medians
            .iter()
            .map(|m| format!("{m:.1} ({:.2}x)", m / base))
            .collect();
        let best_other = medians[2..].iter().copied().fold(f64::INFINITY, f64::min);
        // Throughput over the same system's 1-thread throughput: time per transfer at 1 thread
        // over time per transfer (all threads counted) at N threads.
        let scaling = match w {
            Workload::Bank { threads: 1, .. } => {
                one_thread.push((accounts, medians.clone()));
                String::new()
            }
            Workload::Bank { .. } => one_thread
                .iter()
                .find(|(a, _)| *a == accounts)
                .map(|(_, single)| {
                    single
                        .iter()
                        .zip(&medians)
                        .map(|(one, many)| format!("{:.2}x", one / many))
                        .collect::<Vec<_>>()
                        .join(" / ")
                })
                .unwrap_or_default(),
            _ => String::new(),
        };
        println!(
            "| {} | {} | {:.1}x faster | {scaling} |",
            w.label(),
            cells.join(" | "),
            best_other / medians[1]
        );
    }
}

/// The bank rows' scaling beside a lock per account (`LockPerAccount`): on a machine where
/// cross-core cache misses bound two-phase locking, they bound stmx too.
fn lock_scaling_table(rounds: usize) {
    let accounts = 1024;
    let subjects: [Arc<dyn Subject>; 2] = [
        Arc::new(LockPerAccount::new(accounts)),
        Arc::new(Stmx::new(accounts)),
    ];
    println!(
        "\nbank{accounts} with a lock per account (own cache line, taken in index order) beside \
         stmx: median ns per transfer, all threads counted, and throughput over own 1 thread\n"
    );
    println!("| threads | lock per account | stmx |");
    println!("|---|---|---|");
    let mut single = [0.0; 2];
    for threads in [1, 2, 4] {
        let w = Workload::Bank { accounts, threads };
        for s in &subjects {
            w.measure(s);
        }
        let mut samples = [Vec::with_capacity(rounds), Vec::with_capacity(rounds)];
        for _ in 0..rounds {
            for (i, s) in subjects.iter().enumerate() {
                samples[i].push(w.measure(s));
            }
        }
        let medians = samples.map(|mut s| median(&mut s));
        if threads == 1 {
            single = medians;
        }
        println!(
            "| {threads} | {:.1} ({:.2}x) | {:.1} ({:.2}x) |",
            medians[0],
            single[0] / medians[0],
            medians[1],
            single[1] / medians[1]
        );
    }
}
