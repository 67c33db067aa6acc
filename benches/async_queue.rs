//! Async transactions: N producer tasks and N consumer tasks moving 200,000 items through a
//! bounded queue on a tokio multi-thread runtime with 2 workers, side by side in one run:
//! stmx (`TFifo::bounded` + `atomically_async`), async-stm (its `TBQueue`) and
//! `tokio::sync::mpsc` (the non-STM baseline). Then the memory of 10,000 tasks waiting in
//! `retry`, beyond what 10,000 tasks waiting on `std::future::pending` take.
//!
//! `cargo bench --bench async_queue`; `STMX_ASYNC_ROUNDS` (default 3), `STMX_ASYNC_ITEMS`
//! (default 200,000). Prints ns per item per round and the medians, with the ratios the
//! issue's targets are stated in.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use async_stm::queues::TQueueLike;
use async_stm::queues::tbqueue::TBQueue;
use stmx::atomically_async;
use stmx::prelude::*;

/// The system allocator, counting the bytes in use.
struct Counting;

static IN_USE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call forwards to `System` with the caller's arguments; the counter is only
// bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        IN_USE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract for `realloc` is `System.realloc`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const CAPACITY: usize = 256;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `n` producers and `n` consumers, each moving `items / n` items; ns per item.
fn run_tasks<P, C, PF, CF>(
    rt: &tokio::runtime::Runtime,
    n: usize,
    items: usize,
    produce: P,
    consume: C,
) -> f64
where
    P: Fn(u64) -> PF,
    C: Fn() -> CF,
    PF: std::future::Future<Output = ()> + Send + 'static,
    CF: std::future::Future<Output = u64> + Send + 'static,
{
    let per = (items / n) as u64;
    let start = Instant::now();
    rt.block_on(async {
        let producers: Vec<_> = (0..n).map(|_| tokio::spawn(produce(per))).collect();
        let consumers: Vec<_> = (0..n).map(|_| tokio::spawn(consume())).collect();
        for p in producers {
            p.await.unwrap();
        }
        let mut got = 0;
        for c in consumers {
            got += c.await.unwrap();
        }
        assert_eq!(got, per * n as u64);
    });
    start.elapsed().as_nanos() as f64 / (per as f64 * n as f64)
}

fn stmx_queue(rt: &tokio::runtime::Runtime, n: usize, items: usize) -> f64 {
    let fifo: TFifo<u64> = TFifo::bounded(CAPACITY);
    let per = (items / n) as u64;
    let (p, c) = (fifo.clone(), fifo);
    run_tasks(
        rt,
        n,
        items,
        move |count| {
            let fifo = p.clone();
            async move {
                for i in 0..count {
                    atomically_async(|tx| fifo.put(tx, i)).await;
                }
            }
        },
        move || {
            let fifo = c.clone();
            async move {
                for _ in 0..per {
                    atomically_async(|tx| fifo.take(tx)).await;
                }
                per
            }
        },
    )
}

fn async_stm_queue(rt: &tokio::runtime::Runtime, n: usize, items: usize) -> f64 {
    let queue: TBQueue<u64> = TBQueue::new(CAPACITY as u32);
    let per = (items / n) as u64;
    let (p, c) = (queue.clone(), queue);
    run_tasks(
        rt,
        n,
        items,
        move |count| {
            let queue = p.clone();
            async move {
                for i in 0..count {
                    async_stm::atomically(|| queue.write(i)).await;
                }
            }
        },
        move || {
            let queue = c.clone();
            async move {
                for _ in 0..per {
                    async_stm::atomically(|| queue.read()).await;
                }
                per
            }
        },
    )
}

fn mpsc_queue(rt: &tokio::runtime::Runtime, n: usize, items: usize) -> f64 {
    // mpsc has one receiver: the consumers share it behind an async mutex, as N consumers
    // of one queue must.
    let (tx, rx) = rt.block_on(async { tokio::sync::mpsc::channel::<u64>(CAPACITY) });
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let per = (items / n) as u64;
    run_tasks(
        rt,
        n,
        items,
        move |count| {
            let tx = tx.clone();
            async move {
                for i in 0..count {
                    tx.send(i).await.unwrap();
                }
            }
        },
        move || {
            let rx = Arc::clone(&rx);
            async move {
                for _ in 0..per {
                    rx.lock().await.recv().await.unwrap();
                }
                per
            }
        },
    )
}

/// Bytes per task of 10,000 tasks waiting in `retry` on their own variables (the task itself
/// included), and of the same tasks waiting on `std::future::pending` instead.
fn waiting_task_bytes() -> (f64, f64) {
    const TASKS: usize = 10_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let measure = |stm: bool| -> f64 {
        rt.block_on(async {
            let vars: Vec<TVar<bool>> = (0..TASKS).map(|_| TVar::new(false)).collect();
            let before = IN_USE.load(Ordering::Relaxed);
            let handles: Vec<_> = vars
                .iter()
                .map(|v| {
                    let v = v.clone();
                    tokio::spawn(async move {
                        if stm {
                            atomically_async(|tx| guard(v.read(tx)?)).await;
                        } else {
                            std::future::pending::<()>().await;
                        }
                    })
                })
                .collect();
            for _ in 0..4 {
                tokio::task::yield_now().await; // every task has run once and is waiting
            }
            let during = IN_USE.load(Ordering::Relaxed);
            for h in &handles {
                h.abort();
            }
            for h in handles {
                let _ = h.await;
            }
            (during - before) as f64 / TASKS as f64
        })
    };
    measure(false); // warms the runtime up: its first tasks grow its internal tables
    let pending = measure(false);
    let stm = measure(true);
    (stm, pending)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rounds = env("STMX_ASYNC_ROUNDS", 3);
    let items = env("STMX_ASYNC_ITEMS", 200_000);
    let rt = runtime();
    println!("ns per item, {items} items, bounded({CAPACITY}), tokio multi-thread with 2 workers");
    println!("round | N | stmx | async-stm | tokio mpsc");
    let ns = [1_usize, 16, 1000];
    let mut results = vec![[Vec::new(), Vec::new(), Vec::new()]; ns.len()];
    for r in 0..rounds {
        for (k, &n) in ns.iter().enumerate() {
            let s = stmx_queue(&rt, n, items);
            let a = async_stm_queue(&rt, n, items);
            let m = mpsc_queue(&rt, n, items);
            println!("{r} | {n} | {s:.0} | {a:.0} | {m:.0}");
            results[k][0].push(s);
            results[k][1].push(a);
            results[k][2].push(m);
        }
    }
    println!("\nmedians over {rounds} rounds:");
    println!(
        "N | stmx ns/item | async-stm | tokio mpsc | async-stm / stmx (target >= 3) | stmx / mpsc (target <= 4)"
    );
    for (k, &n) in ns.iter().enumerate() {
        let [s, a, m] = &mut results[k];
        let (s, a, m) = (median(s), median(a), median(m));
        println!(
            "{n} | {s:.0} | {a:.0} | {m:.0} | {:.2} | {:.2}",
            a / s,
            s / m
        );
    }
    let (stm, pending) = waiting_task_bytes();
    println!(
        "\n10,000 tasks waiting in retry: {stm:.0} bytes each, task included (the same tasks \
         waiting on `pending`: {pending:.0}; target: <= 512 beyond the task)"
    );
}
