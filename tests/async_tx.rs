//! `atomically_async` and `try_atomically_async` under tokio (current-thread and
//! multi-thread) and `futures::executor`: wake-ups, cancellation, hooks, alternatives.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stmx::prelude::*;
use stmx::{atomically_async, try_atomically_async, waiting};

/// Registrations are counted process-wide, so the tests of this file run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

/// Many tasks, each awaiting its own variable, all woken by a setter task.
async fn many_waiters(n: usize) {
    let vars: Arc<Vec<TVar<bool>>> = Arc::new((0..n).map(|_| TVar::new(false)).collect());
    let woken = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (vars, woken) = (Arc::clone(&vars), Arc::clone(&woken));
            tokio::spawn(async move {
                atomically_async(|tx| guard(vars[i].read(tx)?)).await;
                woken.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    tokio::task::yield_now().await;
    for v in vars.iter() {
        v.write_atomic(true);
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(woken.load(Ordering::SeqCst), n);
}

#[test]
fn ten_thousand_tasks_each_waiting_on_its_own_variable_are_all_woken() {
    let _serial = serial();
    current_thread().block_on(many_waiters(10_000));
    multi_thread().block_on(many_waiters(10_000));
    assert_eq!(waiting(), 0, "no registration left behind");
}

#[test]
fn futures_executor_works_too_and_the_future_is_send() {
    let _serial = serial();
    fn is_send<T: Send>(_: &T) {}
    let v = Arc::new(TVar::new(0));
    let f = {
        let v = Arc::clone(&v);
        atomically_async(move |tx| {
            let n = v.read(tx)?;
            guard(n >= 3)?;
            Ok(n * 10)
        })
    };
    is_send(&f);
    let setter = std::thread::spawn(move || {
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(2));
            atomically(|tx| v.modify(tx, |n| n + 1));
        }
    });
    assert_eq!(futures_executor::block_on(f), 30);
    setter.join().unwrap();
}

#[test]
fn async_consumers_drain_a_bounded_fifo_from_producers() {
    let _serial = serial();
    multi_thread().block_on(async {
        let fifo = TFifo::bounded(8);
        let total = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for p in 0..4_u64 {
            let fifo = fifo.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..500 {
                    atomically_async(|tx| fifo.put(tx, Some(p * 1000 + i))).await;
                }
            }));
        }
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let (fifo, total) = (fifo.clone(), Arc::clone(&total));
                tokio::spawn(async move {
                    let mut sum = 0;
                    while let Some(v) = atomically_async(|tx| fifo.take(tx)).await {
                        sum += v;
                        total.fetch_add(1, Ordering::SeqCst);
                    }
                    sum
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        for _ in 0..3 {
            atomically_async(|tx| fifo.put(tx, None)).await; // one stop signal each
        }
        let mut sum = 0;
        for c in consumers {
            sum += c.await.unwrap();
        }
        assert_eq!(total.load(Ordering::SeqCst), 2000);
        let want: u64 = (0..4)
            .map(|p| (0..500).map(|i| p * 1000 + i).sum::<u64>())
            .sum();
        assert_eq!(sum, want);
    });
}

#[test]
fn a_waiting_task_does_not_stop_others_on_a_one_thread_runtime() {
    let _serial = serial();
    current_thread().block_on(async {
        let gate = Arc::new(TVar::new(false));
        let waiter = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move { atomically_async(|tx| guard(gate.read(tx)?)).await })
        };
        // The same (only) thread goes on running this task while the other waits.
        let mut ticks = 0;
        for _ in 0..10 {
            tokio::task::yield_now().await;
            ticks += 1;
        }
        assert_eq!(ticks, 10);
        assert!(!waiter.is_finished());
        gate.write_atomic(true);
        waiter.await.unwrap();
    });
}

#[test]
fn dropped_and_timed_out_futures_leave_no_registration_behind() {
    let _serial = serial();
    let never = Arc::new(TVar::new(false));
    current_thread().block_on(async {
        let before = waiting();
        let r = tokio::time::timeout(Duration::from_millis(20), {
            let never = Arc::clone(&never);
            atomically_async(move |tx| guard(never.read(tx)?))
        })
        .await;
        assert!(r.is_err(), "timed out");
        assert_eq!(waiting(), before);
        // select!: the other branch wins, the transaction is dropped while registered.
        let other = TVar::new(0);
        tokio::select! {
            () = atomically_async(|tx| guard(never.read(tx)?)) => unreachable!(),
            () = tokio::time::sleep(Duration::from_millis(5)) => other.write_atomic(1),
        }
        assert_eq!(waiting(), before);
        assert_eq!(other.read_atomic(), 1);
    });
    // A future polled once (registered), then dropped without being woken.
    let mut f = Box::pin(atomically_async({
        let never = Arc::clone(&never);
        move |tx| guard(never.read(tx)?)
    }));
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    assert!(f.as_mut().poll(&mut cx).is_pending());
    assert!(waiting() >= 1);
    drop(f);
    assert_eq!(waiting(), 0);
    // Nothing blocked forever on a variable written after the futures went.
    never.write_atomic(true);
}

#[test]
fn or_else_and_hooks_work_in_async_transactions() {
    let _serial = serial();
    let (a, b) = (TVar::new(None), TVar::new(Some(2)));
    let after = Arc::new(AtomicUsize::new(0));
    let got = futures_executor::block_on(atomically_async(|tx| {
        let after = Arc::clone(&after);
        tx.after_commit(move || {
            after.fetch_add(1, Ordering::SeqCst);
        });
        tx.or_else(
            |tx| unwrap_or_retry(a.read(tx)?),
            |tx| unwrap_or_retry(b.read(tx)?),
        )
    }));
    assert_eq!(got, 2);
    assert_eq!(
        after.load(Ordering::SeqCst),
        1,
        "after_commit ran in the committing poll"
    );
    let r: Result<(), &str> = futures_executor::block_on(try_atomically_async(|tx| {
        a.write(tx, Some(1))?;
        Err(TxError::Abort("no"))
    }));
    assert_eq!(r, Err("no"));
    assert_eq!(a.read_atomic(), None);
}

#[test]
#[should_panic(expected = "retry")]
fn a_retry_with_nothing_read_panics_as_in_atomically() {
    let _serial = serial();
    futures_executor::block_on(atomically_async(|_| retry::<()>()));
}
