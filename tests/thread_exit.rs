//! Variables whose last handles are dropped while their thread exits (after the engine's own
//! thread-locals are gone) are still killed, without deep recursion: before, each such death
//! was deferred to the epoch, whose collector ran it on another exiting thread, which
//! deferred it again, down the stack until it overflowed (SIGSEGV, 10 runs in 10).
//!
//! A test binary of its own: it counts live values.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use stmx::prelude::*;

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// A value that counts its live copies.
#[derive(Debug)]
struct Counted;

impl Counted {
    fn new() -> Self {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Counted
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        Counted::new()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

thread_local! {
    /// Registered before the engine's thread-locals, so destroyed after them.
    static HELD: RefCell<Vec<TFifo<Counted>>> = const { RefCell::new(Vec::new()) };
}

#[test]
fn chains_dropped_at_thread_exit_are_buried_without_deep_recursion() {
    for _round in 0..4 {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn(move || {
                        let _ = t;
                        HELD.with(|h| h.borrow_mut().clear()); // registers HELD first
                        for _ in 0..20 {
                            let fifo = TFifo::new();
                            atomically(|tx| {
                                for _ in 0..500 {
                                    fifo.put(tx, Counted::new())?;
                                }
                                Ok(())
                            });
                            HELD.with(|h| h.borrow_mut().push(fifo));
                        }
                        drop(TVar::new(String::new())); // the engine's thread-locals, after
                    })
                    .unwrap()
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
    // Every value held by the exited threads is dropped once its grace period has passed,
    // and the engine still works.
    let deadline = Instant::now() + Duration::from_secs(10);
    while LIVE.load(Ordering::SeqCst) != 0 && Instant::now() < deadline {
        stmx::collect_garbage();
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        LIVE.load(Ordering::SeqCst),
        0,
        "values of chains dropped at thread exit"
    );
    let v = TVar::new(1);
    atomically(|tx| v.modify(tx, |x| x + 1));
    assert_eq!(v.read_atomic(), 2);
}
