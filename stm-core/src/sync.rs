//! The one place atomics, `Arc`, mutexes and thread parking come from.
//!
//! Under `--cfg stm_loom` they are loom's, so the loom models in `raw/loom_tests.rs` explore
//! every interleaving of the real engine code. The cfg is prefixed because a plain `--cfg loom`
//! reaches every crate in the build and flips dependencies that know it.

#[cfg(stm_loom)]
pub(crate) use loom::{
    hint::spin_loop,
    sync::{
        Arc,
        atomic::{
            AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
        },
    },
    thread::{Thread, current, park, yield_now},
};
// Outside loom, `retry` waiters park through parking_lot_core (raw/parking.rs).
#[cfg(not(stm_loom))]
pub(crate) use std::{
    hint::spin_loop,
    sync::{
        Arc,
        atomic::{
            AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
        },
    },
    thread::yield_now,
};

/// A mutex with parking_lot's API: `lock` returns the guard directly (no poisoning).
#[cfg(not(stm_loom))]
pub(crate) type Mutex<T> = parking_lot::Mutex<T>;

/// A mutex with parking_lot's API over loom's mutex.
#[cfg(stm_loom)]
#[derive(Debug)]
pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

#[cfg(stm_loom)]
impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(loom::sync::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
