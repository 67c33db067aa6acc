//! Where threads blocked in `retry` wait, and how commits find them.
//!
//! A blocked transaction registers one entry per variable it read in a sharded table keyed by
//! the variable's address, then sets that variable's `WAITER_BIT` (only possible while the
//! variable is unlocked and unchanged, see `VersionedLock::try_add_waiter`). A committer that
//! took a lock whose word had `WAITER_BIT` calls [`WaitRegistry::wake`] after releasing all its
//! locks, which notifies every waiter registered on that address. A committer that sees no
//! `WAITER_BIT` does nothing: waking costs nothing when nobody waits.

use std::task::Waker;

use crate::sync::{Arc, AtomicBool, Mutex, Ordering};

#[cfg(not(stm_loom))]
const SHARDS: usize = 64;
/// One shard under loom: which variables share a shard would depend on addresses, and loom
/// models must be deterministic.
#[cfg(stm_loom)]
const SHARDS: usize = 1;

/// One blocked thread, or one pending future (a task).
#[derive(Debug)]
pub(crate) struct Waiter {
    notified: AtomicBool,
    /// A task's waiter: the waker to wake instead of unparking a thread, set before each
    /// registration and taken by the notification.
    waker: Option<Mutex<Option<Waker>>>,
    #[cfg(stm_loom)]
    thread: crate::sync::Thread,
}

impl Waiter {
    /// A waiter for the calling thread (the only thread that may call [`wait`](Self::wait)).
    pub(crate) fn for_current_thread() -> Arc<Self> {
        Arc::new(Self {
            notified: AtomicBool::new(false),
            waker: None,
            #[cfg(stm_loom)]
            thread: crate::sync::current(),
        })
    }

    /// A waiter for a future: notifying it wakes the waker last given to
    /// [`set_waker`](Self::set_waker). Never [`wait`](Self::wait)ed on.
    pub(crate) fn for_task() -> Arc<Self> {
        Arc::new(Self {
            notified: AtomicBool::new(false),
            waker: Some(Mutex::new(None)),
            #[cfg(stm_loom)]
            thread: crate::sync::current(),
        })
    }

    /// Sets the waker a notification wakes; call before registering.
    pub(crate) fn set_waker(&self, waker: &Waker) {
        let mut slot = self
            .waker
            .as_ref()
            .expect("set_waker on a task's waiter")
            .lock();
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    /// Forgets earlier notifications; call before registering.
    pub(crate) fn reset(&self) {
        self.notified.store(false, Ordering::Relaxed);
    }

    #[cfg(not(stm_loom))]
    fn key(&self) -> usize {
        self as *const Self as usize
    }

    fn notify(&self) {
        self.notified.store(true, Ordering::Release);
        if let Some(slot) = &self.waker {
            let waker = slot.lock().take();
            if let Some(waker) = waker {
                waker.wake();
            }
            return;
        }
        #[cfg(not(stm_loom))]
        // SAFETY: `key` is the address of this live `Waiter`, which only its own thread parks
        // on; parking_lot_core requires keys not to collide with other parking uses, and no
        // other code parks on the address of our private allocation.
        unsafe {
            parking_lot_core::unpark_all(self.key(), parking_lot_core::DEFAULT_UNPARK_TOKEN);
        }
        #[cfg(stm_loom)]
        self.thread.unpark();
    }

    /// Blocks until [`notify`](Self::notify) is called after the last [`reset`](Self::reset),
    /// or until `deadline` passes; returns whether it was notified.
    pub(crate) fn wait(&self, deadline: Option<std::time::Instant>) -> bool {
        while !self.notified.load(Ordering::Acquire) {
            #[cfg(not(stm_loom))]
            {
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    return false;
                }
                // SAFETY: as in `notify` for the key. The validate callback only loads an
                // atomic; neither callback panics or parks.
                unsafe {
                    parking_lot_core::park(
                        self.key(),
                        || !self.notified.load(Ordering::Acquire),
                        || {},
                        |_, _| {},
                        parking_lot_core::DEFAULT_PARK_TOKEN,
                        deadline,
                    );
                }
            }
            #[cfg(stm_loom)]
            {
                let _ = deadline; // loom has no time: models wait until notified
                crate::sync::park();
            }
        }
        true
    }
}

#[derive(Debug)]
struct Entry {
    addr: usize,
    waiter: Arc<Waiter>,
}

/// The table of blocked transactions, sharded by variable address.
#[derive(Debug)]
pub(crate) struct WaitRegistry {
    shards: [Mutex<Vec<Entry>>; SHARDS],
}

impl WaitRegistry {
    #[cfg(not(stm_loom))]
    pub(crate) const fn new() -> Self {
        Self {
            shards: [const { Mutex::new(Vec::new()) }; SHARDS],
        }
    }

    #[cfg(stm_loom)]
    pub(crate) fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(Vec::new())),
        }
    }

    fn shard(&self, addr: usize) -> &Mutex<Vec<Entry>> {
        // Variables are at least 16-byte aligned: drop the low bits, then mix.
        let hash = (addr >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        &self.shards[(hash >> 58) % SHARDS]
    }

    /// Registers `waiter` on the variable at `addr`. Must happen before its `WAITER_BIT` is set.
    pub(crate) fn register(&self, addr: usize, waiter: &Arc<Waiter>) {
        self.shard(addr).lock().push(Entry {
            addr,
            waiter: Arc::clone(waiter),
        });
    }

    /// Removes `waiter`'s entry for `addr`, if a committer has not already taken it.
    pub(crate) fn deregister(&self, addr: usize, waiter: &Arc<Waiter>) {
        let mut shard = self.shard(addr).lock();
        if let Some(i) = shard
            .iter()
            .position(|e| e.addr == addr && Arc::ptr_eq(&e.waiter, waiter))
        {
            shard.swap_remove(i);
        }
    }

    /// How many (waiter, variable) registrations are in place now.
    pub(crate) fn registrations(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().len()).sum()
    }

    /// Notifies and removes every waiter registered on `addr`. Call with no commit lock held.
    ///
    /// Waiters are notified after the shard lock is released: a woken thread may need that
    /// shard at once (to deregister), and must not wake into a held lock.
    pub(crate) fn wake(&self, addr: usize) {
        let mut woken = Vec::new();
        {
            let mut shard = self.shard(addr).lock();
            let mut i = 0;
            while i < shard.len() {
                if shard[i].addr == addr {
                    woken.push(shard.swap_remove(i).waiter);
                } else {
                    i += 1;
                }
            }
        }
        for waiter in woken {
            waiter.notify();
        }
    }
}

/// The process-wide registry.
#[cfg(not(stm_loom))]
pub(crate) fn global() -> &'static WaitRegistry {
    static REGISTRY: WaitRegistry = WaitRegistry::new();
    &REGISTRY
}

/// The process-wide registry, re-created for each loom execution.
#[cfg(stm_loom)]
pub(crate) fn global() -> &'static WaitRegistry {
    loom::lazy_static! {
        static ref REGISTRY: WaitRegistry = WaitRegistry::new();
    }
    &REGISTRY
}
