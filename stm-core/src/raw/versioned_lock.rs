//! The TL2 lock word: one per `TVar`, holding a write lock, a waiter flag and a version.

use crate::sync::{AtomicU64, Ordering};

/// Set while a committer holds the variable's write lock. The top bit: a locked word compares
/// above every unlocked one, so that one unsigned comparison tests "unlocked and not newer
/// than the snapshot" ([`Word::readable_at`]).
pub(crate) const LOCK_BIT: u64 = 1 << 63;
/// Set, with `LOCK_BIT`, for good once the variable's last handle is gone (it is dead).
pub(crate) const DEAD_BIT: u64 = 1 << 62;
/// Set while a thread blocked in `retry` may be registered on this variable.
pub(crate) const WAITER_BIT: u64 = 0b1;
/// The version lives between the waiter flag and the two top flags (61 bits).
pub(crate) const VERSION_SHIFT: u32 = 1;

/// A snapshot of a [`VersionedLock`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Word(u64);

impl Word {
    /// A placeholder for log entries that hold no lock yet.
    pub(crate) const UNLOCKED: Word = Word(0);

    /// Marks a write entry, before the commit locks it, as a `commute` whose value is computed
    /// at commit. No lock word `try_lock` returns looks like it: those are unlocked (or dead).
    pub(crate) const COMMUTED: Word = Word(LOCK_BIT);

    #[inline]
    pub(crate) fn is_locked(self) -> bool {
        self.0 & LOCK_BIT != 0
    }

    #[inline]
    pub(crate) fn has_waiters(self) -> bool {
        self.0 & WAITER_BIT != 0
    }

    /// The variable is dead: no handle is left, and it will never change again. Its version is
    /// the last committed one.
    #[inline]
    pub(crate) fn is_dead(self) -> bool {
        self.0 & DEAD_BIT != 0
    }

    /// The clock value of the commit that last wrote the variable.
    #[inline]
    pub(crate) fn version(self) -> u64 {
        // The two top flags shifted out, then the waiter flag.
        (self.0 << 2) >> (VERSION_SHIFT + 2)
    }

    /// The bound for [`readable_at`](Self::readable_at) of a snapshot at version `rv`.
    #[inline]
    pub(crate) fn readable_bound(rv: u64) -> u64 {
        // An unlocked word is `version << 1 | waiter` (a dead word is locked), and a locked
        // word has its top bit set.
        (rv << VERSION_SHIFT) | WAITER_BIT
    }

    /// Unlocked, and written at a version no newer than the snapshot whose
    /// [`readable_bound`](Self::readable_bound) is `bound`: one comparison instead of a test of
    /// the lock bit and a comparison of the version (versions stay below 2^61).
    #[inline(always)]
    pub(crate) fn readable_at(self, bound: u64) -> bool {
        self.0 <= bound
    }

    /// [`readable_at`](Self::readable_at) against `limit`, one above the bound (or `0`, which no
    /// word is below: a limit that sends every read the long way).
    #[inline(always)]
    pub(crate) fn readable_below(self, limit: u64) -> bool {
        self.0 < limit
    }
}

/// Write lock, waiter flag and version of one `TVar`, packed in a word (TL2).
///
/// # State
///
/// ```text
/// LOCK_BIT (63) | DEAD_BIT (62) | version (61..1) | WAITER_BIT (0) | meaning
///       0       |       0       |        v        |       0        | unlocked; last written by the commit at `v`
///       0       |       0       |        v        |       1        | the same, and a `retry` waiter may be registered
///       1       |       0       |        v        |       w        | a committer holds the lock; readers spin or abort
///       1       |       1       |        v        |       0        | dead: locked for good, last written at `v`
/// ```
///
/// # Invariants
///
/// - Only the lock holder changes the version, and only in [`unlock`](Self::unlock).
/// - `WAITER_BIT` is only ever set on an *unlocked* word ([`try_add_waiter`](Self::try_add_waiter)),
///   so the word a committer saw when it took the lock tells it, exactly, whether it must wake
///   waiters: nobody can add one while it holds the lock. `unlock` clears the bit, and the
///   committer then wakes every registered waiter.
#[derive(Debug)]
pub(crate) struct VersionedLock {
    state: AtomicU64,
}

impl VersionedLock {
    pub(crate) fn new(version: u64) -> Self {
        Self {
            state: AtomicU64::new(version << VERSION_SHIFT),
        }
    }

    /// The current word. `Acquire` at least: a reader that then loads the value slot sees the
    /// value that was published before this version was stored. `SeqCst` for the clock's
    /// argument (`clock` module docs); on x86-64 and AArch64 that is the same instruction.
    #[inline]
    pub(crate) fn load(&self) -> Word {
        Word(self.state.load(Ordering::SeqCst))
    }

    /// Takes the lock if it is free, returning the word it replaced.
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<Word> {
        let current = self.state.load(Ordering::Relaxed);
        if current & LOCK_BIT != 0 {
            return None;
        }
        self.state
            .compare_exchange(
                current,
                current | LOCK_BIT,
                // `Acquire` for the value slot; `SeqCst` for the clock (`clock` module docs).
                Ordering::SeqCst,
                Ordering::Relaxed,
            )
            .ok()
            .map(Word)
    }

    /// Publishes `new_version` and releases the lock, clearing the waiter flag.
    ///
    /// # Safety
    ///
    /// The caller holds the lock: a successful [`try_lock`](Self::try_lock) not yet followed by
    /// `unlock` or [`restore`](Self::restore). If the word it replaced had `WAITER_BIT`, the
    /// caller wakes the variable's waiters afterwards.
    pub(crate) unsafe fn unlock(&self, new_version: u64) {
        debug_assert!(self.load().is_locked(), "unlock without the lock");
        self.release_to(new_version << VERSION_SHIFT);
    }

    /// Releases the lock without a new version: the commit was abandoned.
    ///
    /// # Safety
    ///
    /// The caller holds the lock, and `previous` is the word its `try_lock` returned.
    pub(crate) unsafe fn restore(&self, previous: Word) {
        debug_assert!(self.load().is_locked(), "restore without the lock");
        debug_assert!(!previous.is_locked());
        self.release_to(previous.0);
    }

    /// The releasing write of `unlock` and `restore`.
    ///
    /// A plain `Release` store: only the lock holder writes a locked word, and the memory model
    /// orders every store after the read-modify-writes it follows (RMW atomicity). loom 0.7
    /// does not enforce that rule against plain stores (tokio-rs/loom#254, #389), and then
    /// reports impossible histories such as two successful `try_lock`s; in loom builds the
    /// store is a `swap`, which is equivalent in the real memory model.
    fn release_to(&self, word: u64) {
        #[cfg(not(stm_loom))]
        self.state.store(word, Ordering::Release);
        #[cfg(stm_loom)]
        self.state.swap(word, Ordering::Release);
    }

    /// Locks the word for good, marking it dead and keeping its version, if it is unlocked;
    /// returns the word it replaced. The caller is the variable's killer (its last handle is
    /// gone): committers that meet the dead word skip their write, validation counts it as
    /// unchanged.
    pub(crate) fn try_kill(&self) -> Option<Word> {
        let current = self.state.load(Ordering::Relaxed);
        if current & LOCK_BIT != 0 {
            return None;
        }
        let dead = (current & !WAITER_BIT) | LOCK_BIT | DEAD_BIT;
        self.state
            .compare_exchange(current, dead, Ordering::SeqCst, Ordering::Relaxed)
            .ok()
            .map(Word)
    }

    /// Sets `WAITER_BIT` if the word is unlocked and still at `version`; false if the variable
    /// was locked or written since the waiter read it (it must then not go to sleep).
    pub(crate) fn try_add_waiter(&self, version: u64) -> bool {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let word = Word(current);
            if word.is_locked() || word.version() != version {
                return false;
            }
            if word.has_waiters() {
                return true;
            }
            // Both this CAS and the committer's `try_lock` are read-modify-writes of one word, so
            // either our bit lands first and the committer's CAS reads it, or ours fails because
            // the lock was taken. `Release` pairs with `try_lock`'s `Acquire`: a committer that
            // sees the bit also sees the registry entry pushed before it.
            match self.state.compare_exchange_weak(
                current,
                current | WAITER_BIT,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(all(test, not(stm_loom)))]
mod tests {
    use super::*;

    #[test]
    fn lock_unlock_publishes_version_and_clears_waiters() {
        let lock = VersionedLock::new(3);
        assert!(lock.try_add_waiter(3));
        let prev = lock.try_lock().unwrap();
        assert!(prev.has_waiters() && prev.version() == 3);
        assert!(lock.try_lock().is_none());
        assert!(
            !lock.try_add_waiter(3),
            "no waiter may be added while locked"
        );
        // SAFETY: we hold the lock (try_lock above succeeded).
        unsafe { lock.unlock(7) };
        let word = lock.load();
        assert!(!word.is_locked() && !word.has_waiters());
        assert_eq!(word.version(), 7);
        assert!(!lock.try_add_waiter(3), "stale version");
    }

    #[test]
    fn restore_gives_back_the_exact_word() {
        let lock = VersionedLock::new(5);
        assert!(lock.try_add_waiter(5));
        let before = lock.load();
        let prev = lock.try_lock().unwrap();
        // SAFETY: we hold the lock and `prev` is what try_lock returned.
        unsafe { lock.restore(prev) };
        assert_eq!(lock.load(), before);
    }

    /// The one-comparison checks agree with "unlocked, and no newer than the snapshot" on every
    /// state a word can be in (a dead word is locked), small and huge versions alike, and no
    /// word is readable below a limit of `0`.
    #[test]
    fn readable_at_is_unlocked_and_not_newer() {
        let versions = [0, 1, 2, 3, 7, 1 << 40, (1 << 61) - 1];
        for &version in &versions {
            for flags in [
                0,
                WAITER_BIT,
                LOCK_BIT,
                LOCK_BIT | WAITER_BIT,
                LOCK_BIT | DEAD_BIT,
            ] {
                let word = Word((version << VERSION_SHIFT) | flags);
                assert_eq!(word.version(), version, "flags {flags:#b}");
                for &rv in &versions {
                    let expected = !word.is_locked() && word.version() <= rv;
                    let bound = Word::readable_bound(rv);
                    let context = format!("version {version}, flags {flags:#b}, rv {rv}");
                    assert_eq!(word.readable_at(bound), expected, "{context}");
                    assert_eq!(word.readable_below(bound + 1), expected, "{context}");
                }
                assert!(
                    !word.readable_below(0),
                    "version {version}, flags {flags:#b}"
                );
            }
        }
    }
}
