//! [`Backend`]: where the log and the snapshots live.

use std::time::Duration;

use crate::error::Result;

/// What a compare-and-append did.
///
/// # Examples
///
/// ```
/// use stm_persist::Append;
///
/// let outcome = Append::Conflict { next: 12 };
/// assert_ne!(outcome, Append::Appended);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Append {
    /// The records were appended at the requested positions and are durable.
    Appended,
    /// The log did not end where the caller thought: another participant appended first.
    /// Nothing was written; `next` is the position the next record would get now.
    Conflict {
        /// The position of the next record.
        next: u64,
    },
}

/// A log of records numbered from 1, with compare-and-append, plus snapshot storage.
///
/// Records are opaque bytes to a backend (the store frames, versions and checks them). A
/// backend may be shared by several processes: [`append`](Backend::append) must then be atomic
/// with respect to all of them, which is what makes SPTM's optimistic protocol correct. The
/// crate provides [`DirBackend`](crate::DirBackend) (a local directory) and, with the
/// `postgres` feature, `PgBackend`.
///
/// # Examples
///
/// ```
/// use stm_persist::{Append, Backend, DirBackend};
///
/// let dir = tempfile::tempdir().unwrap();
/// let log = DirBackend::open_shared(dir.path())?;
/// assert_eq!(log.next_position()?, 1);
/// assert_eq!(log.append(1, &[b"first".to_vec()])?, Append::Appended);
/// assert_eq!(log.append(1, &[b"late".to_vec()])?, Append::Conflict { next: 2 });
/// let mut seen = Vec::new();
/// log.scan(1, &mut |pos, bytes| {
///     seen.push((pos, bytes.to_vec()));
///     Ok(true)
/// })?;
/// assert_eq!(seen, [(1, b"first".to_vec())]);
/// # Ok::<(), stm_persist::Error>(())
/// ```
pub trait Backend: Send + Sync + 'static {
    /// The position the next appended record would get (1 for an empty log).
    ///
    /// # Errors
    ///
    /// I/O or backend errors.
    fn next_position(&self) -> Result<u64>;

    /// Appends `records` at positions `first`, `first + 1`, … if and only if the log's next
    /// position is `first`; all of them or none. On [`Append::Appended`] they are durable.
    ///
    /// # Errors
    ///
    /// I/O or backend errors; then the caller cannot know whether the records landed, and must
    /// read the log to find out. ([`DirBackend`](crate::DirBackend) cuts a failed append off
    /// again before it returns the error, so there they did not land unless that cut failed
    /// too.)
    fn append(&self, first: u64, records: &[Vec<u8>]) -> Result<Append>;

    /// Appends records built against the end of the log, as one step: calls `catch_up` for
    /// every record from `from` to the end of the log, then `build(next)` for the records to
    /// append at positions `next`, `next + 1`, …, and appends them. Returns the position of
    /// the first one, or `None` if `build` returned none (nothing is appended).
    ///
    /// The default is SPTM's optimistic loop over [`scan`](Backend::scan) and
    /// [`append`](Backend::append): catch up, build, compare-and-append, and after a conflict
    /// catch up and build again. A backend that can lock its log overrides it to hold the lock
    /// from the catch-up to the sync, so that a participant never loses the race and never
    /// builds twice.
    ///
    /// # Errors
    ///
    /// What `catch_up` or `build` return (nothing appended), and the errors of
    /// [`append`](Backend::append).
    fn append_after(
        &self,
        from: u64,
        catch_up: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
        build: &mut dyn FnMut(u64) -> Result<Vec<Vec<u8>>>,
    ) -> Result<Option<u64>> {
        let mut from = from;
        loop {
            let next = self.scan(from, &mut |pos, bytes| catch_up(pos, bytes).map(|()| true))?;
            let records = build(next)?;
            if records.is_empty() {
                return Ok(None);
            }
            match self.append(next, &records)? {
                Append::Appended => return Ok(Some(next)),
                Append::Conflict { .. } => from = next,
            }
        }
    }

    /// Calls `visit(position, bytes)` for each record from `from` on, in order, until it
    /// returns `Ok(false)` or the log ends. Returns the position after the last record
    /// visited.
    ///
    /// # Errors
    ///
    /// [`Error::Lagging`](crate::Error::Lagging) if `from` was compacted away,
    /// [`Error::Corrupt`](crate::Error::Corrupt) for damage, and whatever `visit` returns.
    fn scan(&self, from: u64, visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>) -> Result<u64>;

    /// Stores a snapshot of the state after record `seq`, atomically (all or nothing).
    ///
    /// # Errors
    ///
    /// I/O or backend errors.
    fn save_snapshot(&self, seq: u64, bytes: &[u8]) -> Result<()>;

    /// The positions of the stored snapshots, oldest first.
    ///
    /// # Errors
    ///
    /// I/O or backend errors.
    fn snapshots(&self) -> Result<Vec<u64>>;

    /// The bytes of the snapshot taken after record `seq`, with a name for messages.
    ///
    /// # Errors
    ///
    /// I/O or backend errors.
    fn load_snapshot(&self, seq: u64) -> Result<(String, Vec<u8>)>;

    /// Drops the records at or before `through` (a backend may keep some) and the snapshots
    /// older than `through`. The store calls it with the position of the *older* of the two
    /// snapshots it keeps (0 when there is one), so that a damaged newest snapshot can always
    /// fall back on the older one and the log after it.
    ///
    /// # Errors
    ///
    /// I/O or backend errors.
    fn compact(&self, through: u64) -> Result<()>;

    /// Makes `next` the position the next record gets, when the log ends before it: a snapshot
    /// covers records the log does not hold (written by hand, or by a store older than format
    /// 2 that crashed right after a snapshot). Exclusive stores call it on open. The default
    /// refuses with [`Error::Corrupt`](crate::Error::Corrupt).
    ///
    /// # Errors
    ///
    /// I/O or backend errors; [`Error::Corrupt`](crate::Error::Corrupt) if the backend cannot
    /// do it.
    fn skip_to(&self, next: u64) -> Result<()> {
        let end = self.next_position()?;
        if end >= next {
            return Ok(());
        }
        Err(crate::Error::corrupt(
            format!("log record {end}"),
            format!(
                "the newest snapshot covers the log up to {}, but the log ends before it",
                next - 1
            ),
        ))
    }

    /// Blocks until the log's next position is past `next`, or `timeout` passes. The default
    /// polls [`next_position`](Backend::next_position); backends with notifications override it.
    ///
    /// # Errors
    ///
    /// I/O or backend errors.
    fn wait_for_append(&self, next: u64, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        while self.next_position()? <= next {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(2)));
        }
        Ok(())
    }
}
