//! [`register_delay`]: variables that become `true` after a delay, all served by one thread.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::tvar::TVar;

/// A pending delay: its variable is set at `at`. Ordered by deadline, earliest first, then
/// by registration.
struct Pending {
    at: Instant,
    seq: u64,
    var: TVar<bool>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        // `BinaryHeap` is a max-heap: reverse, so that the earliest deadline is on top.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
struct Queue {
    pending: BinaryHeap<Pending>,
    next_seq: u64,
}

struct Timers {
    queue: Mutex<Queue>,
    changed: Condvar,
}

/// The timers, with their thread started on first use.
fn timers() -> &'static Timers {
    static TIMERS: OnceLock<Timers> = OnceLock::new();
    static THREAD: OnceLock<()> = OnceLock::new();
    let timers: &'static Timers = TIMERS.get_or_init(|| Timers {
        queue: Mutex::new(Queue::default()),
        changed: Condvar::new(),
    });
    THREAD.get_or_init(|| {
        std::thread::Builder::new()
            .name("stmx-timers".into())
            .spawn(move || serve(timers))
            .expect("stmx: cannot start the timer thread");
    });
    timers
}

/// The timer thread: sets each variable when its deadline passes, earliest first.
fn serve(timers: &Timers) -> ! {
    let mut queue = timers.queue.lock();
    loop {
        let now = Instant::now();
        match queue.pending.peek() {
            None => timers.changed.wait(&mut queue),
            Some(next) if next.at > now => {
                let at = next.at;
                timers.changed.wait_until(&mut queue, at);
            }
            Some(_) => {
                let due = queue.pending.pop().expect("peeked");
                // Outside the lock: the write wakes transactions, which may register delays.
                parking_lot::MutexGuard::unlocked(&mut queue, || due.var.write_atomic(true));
            }
        }
    }
}

/// Returns a variable that becomes `true` once `after` has passed (GHC's `registerDelay`), so
/// that a timeout can be one alternative of an [`or_else`](crate::Transaction::or_else):
/// `guard(delay.read(tx)?)`.
///
/// All delays share one thread, started on first use: thousands of pending delays cost a heap
/// entry each, not a thread. The variable is set with
/// [`write_atomic`](TVar::write_atomic), which wakes the transactions waiting on it; on an
/// idle machine that happens within a few milliseconds of the deadline. A zero delay gives a
/// variable that is `true` already. The timer thread holds a handle to the variable until its
/// deadline, so a long delay keeps it (one `bool`) allocated that long even if every other
/// handle is dropped.
///
/// # Panics
///
/// If the timer thread cannot be started (on first use).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stm_core::{TVar, atomically, guard, register_delay, retry};
///
/// let reply: TVar<Option<u32>> = TVar::new(None); // nobody answers
/// let delay = register_delay(Duration::from_millis(20));
/// let got = atomically(|tx| {
///     tx.or_else(
///         |tx| match reply.read(tx)? { Some(r) => Ok(Some(r)), None => retry() },
///         |tx| { guard(delay.read(tx)?)?; Ok(None) }, // gave up waiting
///     )
/// });
/// assert_eq!(got, None);
/// ```
pub fn register_delay(after: Duration) -> TVar<bool> {
    if after.is_zero() {
        return TVar::new(true);
    }
    let var = TVar::new(false);
    let at = Instant::now() + after;
    let timers = timers();
    let earliest = {
        let mut queue = timers.queue.lock();
        let seq = queue.next_seq;
        queue.next_seq += 1;
        queue.pending.push(Pending {
            at,
            seq,
            var: var.clone(),
        });
        queue.pending.peek().is_some_and(|p| p.seq == seq)
    };
    if earliest {
        timers.changed.notify_one();
    }
    var
}
