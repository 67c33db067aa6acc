//! [`DirBackend`]: the log and snapshots in a local directory, safe for several processes.
//!
//! Layout: `log-<first position>.seg` segment files (a header, then checksummed frames, one
//! record each), `snap-<position>.snap` snapshots, and two lock files. `owner.lock` is held
//! exclusively by an exclusive store for its whole life, or shared by every participant of a
//! shared log; `append.lock` is taken exclusively around each shared append (the
//! compare-and-append) and shared around each shared read.
//!
//! Every read of frames goes through [`frame::walk`], so there is one damage policy: see the
//! `frame` module.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use crate::backend::{Append, Backend};
use crate::error::{Error, Result};
use crate::frame::{self, Bad, Layout};

const SEGMENT_MAGIC: &[u8; 8] = b"STMXLOG\0";
/// The segment format version this build writes (it also reads version 1).
pub(crate) const SEGMENT_VERSION: u32 = 2;
/// Magic, format version (u32), first position (u64).
const SEGMENT_HEADER: u64 = 20;
/// A segment is sealed and a new one started once it grows past this.
const SEGMENT_BYTES: u64 = 64 << 20;

/// Whether this handle is the only appender or one participant of a shared log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Exclusive,
    Shared,
}

/// Whether a read of segments must take `append.lock` shared, or its caller holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadLock {
    Take,
    Held,
}

/// What to do with a torn tail found while reading the end of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TornTail {
    /// Cut it: the caller excludes every other appender.
    Cut,
    /// Leave it: another participant may still be writing (it will cut it if it is torn).
    Keep,
}

/// A log in a local directory: the embedded default backend.
///
/// Opened [`exclusive`](DirBackend::open_exclusive)ly, one store owns the directory and
/// appends without taking a lock per append. Opened [`shared`](DirBackend::open_shared), any
/// number of stores, in one process or several on the same machine, append to it with
/// compare-and-append under a file lock. The two modes exclude each other.
///
/// On open (and, when shared, on each append) a torn tail, left by a crash in the middle of an
/// append, is cut; damage anywhere else is [`Error::Corrupt`], never skipped. Each append is
/// one write followed by `fdatasync`; a failed write is cut back off before the error is
/// returned.
///
/// # Examples
///
/// ```
/// use stm_persist::{Append, Backend, DirBackend, Error};
///
/// let dir = tempfile::tempdir().unwrap();
/// let log = DirBackend::open_exclusive(dir.path())?;
/// assert_eq!(log.append(1, &[b"a".to_vec(), b"b".to_vec()])?, Append::Appended);
/// assert_eq!(log.next_position()?, 3);
/// // A second owner is refused while the first is open.
/// assert!(matches!(DirBackend::open_exclusive(dir.path()), Err(Error::Locked { .. })));
/// # Ok::<(), stm_persist::Error>(())
/// ```
#[derive(Debug)]
pub struct DirBackend {
    dir: PathBuf,
    access: Access,
    /// Holds `owner.lock` (exclusively or shared) for as long as the backend lives.
    _owner: File,
    /// `append.lock`, for shared logs.
    append_lock: File,
    tail: Mutex<Tail>,
    /// Where the last scan stopped, so that rolling forward reads only what is new.
    scan_hint: Mutex<ScanHint>,
    /// The last position this handle's own sync made durable: every record up to it is
    /// durable (written before that sync began). Shared logs write it into their frames.
    synced: AtomicU64,
}

/// What this handle knows of the end of the log.
#[derive(Debug)]
struct Tail {
    /// First positions of the segments, ascending.
    segments: Vec<u64>,
    /// The last segment, open for appending, with its layout; `None` before the first append
    /// or after a failed one. Shared so that a shared log syncs it after releasing its locks.
    file: Option<(Arc<File>, Layout)>,
    /// How many bytes of the last segment are whole frames.
    len: u64,
    /// The position the next record gets.
    next: u64,
}

/// A place in the log a scan reached: `offset` in segment `segment` (of layout `layout`) is
/// where record `next` starts. `offset` 0 means no hint.
#[derive(Debug, Clone, Copy)]
struct ScanHint {
    segment: u64,
    layout: Layout,
    offset: u64,
    next: u64,
}

impl ScanHint {
    const NONE: ScanHint = ScanHint {
        segment: 0,
        layout: Layout::V2,
        offset: 0,
        next: 0,
    };
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |e| Error::io(context, e)
}

/// Turns what [`frame::walk`] stopped on into the store's error, naming the file and offset
/// (`base` is the file offset of the walked bytes).
fn walk_error(path: &Path, base: u64) -> impl FnOnce(Result<Bad, Error>) -> Error + '_ {
    move |stopped| match stopped {
        Ok(Bad::Damaged { offset, detail }) => Error::corrupt(
            format!("{} offset {}", path.display(), base + offset as u64),
            detail,
        ),
        Err(e) => e,
    }
}

impl DirBackend {
    /// Opens (creating if needed) `dir` for one owner. Cuts a torn tail.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if another backend has it open; I/O errors; [`Error::Corrupt`] or
    /// [`Error::UnsupportedFormat`] for a damaged or newer last segment.
    pub fn open_exclusive(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open(dir.as_ref(), Access::Exclusive)
    }

    /// Opens (creating if needed) `dir` as one participant of a log shared by several stores
    /// or processes on this machine.
    ///
    /// # Errors
    ///
    /// As [`open_exclusive`](DirBackend::open_exclusive); [`Error::Locked`] if an exclusive
    /// owner has it open.
    pub fn open_shared(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open(dir.as_ref(), Access::Shared)
    }

    fn open(dir: &Path, access: Access) -> Result<Self> {
        fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let lock_file = |name: &str| {
            let path = dir.join(name);
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err(format!("opening {}", path.display())))
        };
        let owner = lock_file("owner.lock")?;
        let locked = match access {
            Access::Shared => owner.try_lock_shared(),
            Access::Exclusive => owner.try_lock(),
        };
        if locked.is_err() {
            return Err(Error::Locked {
                path: dir.to_path_buf(),
            });
        }
        let backend = Self {
            dir: dir.to_path_buf(),
            access,
            _owner: owner,
            append_lock: lock_file("append.lock")?,
            tail: Mutex::new(Tail {
                segments: Vec::new(),
                file: None,
                len: 0,
                next: 1,
            }),
            scan_hint: Mutex::new(ScanHint::NONE),
            synced: AtomicU64::new(0),
        };
        {
            let mut tail = backend.tail.lock();
            let _guard = backend.lock_appends(true)?;
            backend.refresh(&mut tail, TornTail::Cut)?;
        }
        Ok(backend)
    }

    /// The directory.
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = stm_persist::DirBackend::open_shared(dir.path())?;
    /// assert_eq!(log.path(), dir.path());
    /// # Ok::<(), stm_persist::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn segment_path(&self, first: u64) -> PathBuf {
        self.dir.join(format!("log-{first:020}.seg"))
    }

    fn snapshot_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("snap-{seq:020}.snap"))
    }

    /// Takes `append.lock` (exclusive for appends, shared for reads) when the log is shared.
    fn lock_appends(&self, exclusive: bool) -> Result<Option<AppendGuard<'_>>> {
        if self.access == Access::Exclusive {
            return Ok(None);
        }
        let locked = if exclusive {
            self.append_lock.lock()
        } else {
            self.append_lock.lock_shared()
        };
        locked.map_err(io_err("locking append.lock"))?;
        Ok(Some(AppendGuard(&self.append_lock)))
    }

    /// Numbers found in names `prefix<number>suffix` in the directory, ascending.
    fn list(&self, prefix: &str, suffix: &str) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        let entries =
            fs::read_dir(&self.dir).map_err(io_err(format!("listing {}", self.dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_err(format!("listing {}", self.dir.display())))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(n) = name
                .strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(suffix))
                .and_then(|n| n.parse().ok())
            {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Brings `tail` up to date with the directory: the newest segment and the whole frames in
    /// it, applying the damage policy to what follows them.
    fn refresh(&self, tail: &mut Tail, torn: TornTail) -> Result<()> {
        let segments = self.list("log-", ".seg")?;
        let Some(&last) = segments.last() else {
            tail.segments.clear();
            tail.file = None;
            tail.len = 0;
            return Ok(());
        };
        if tail.segments.last() != Some(&last) || tail.file.is_none() {
            let path = self.segment_path(last);
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err(format!("opening {}", path.display())))?;
            let layout = check_segment_header(&mut file, &path, last)?;
            tail.file = Some((Arc::new(file), layout));
            tail.len = SEGMENT_HEADER;
            tail.next = last;
        }
        tail.segments = segments;
        let path = self.segment_path(last);
        let (file, layout) = tail.file.as_ref().expect("opened above");
        let mut rest = Vec::new();
        (&**file)
            .seek(SeekFrom::Start(tail.len))
            .and_then(|_| (&**file).read_to_end(&mut rest))
            .map_err(io_err(format!("reading {}", path.display())))?;
        let walked = frame::walk::<Error>(&rest, *layout, tail.next, |_, _, _| Ok(true))
            .map_err(walk_error(&path, tail.len))?;
        tail.len += walked.end as u64;
        tail.next = walked.next;
        if walked.torn && torn == TornTail::Cut {
            file.set_len(tail.len)
                .and_then(|()| file.sync_data())
                .map_err(io_err(format!(
                    "cutting the torn tail of {}",
                    path.display()
                )))?;
        }
        Ok(())
    }

    /// Starts a new segment whose first record will be `tail.next`. The header is written to
    /// a temporary file that is renamed into place, so a crash never leaves a segment with a
    /// torn header.
    ///
    /// The segment it seals is synced first. A shared log's participants sync after releasing
    /// `append.lock`, so its last records may not be durable yet; a torn end of a sealed
    /// segment is damage (records after it, in the new segment, would otherwise outlive
    /// records before them).
    fn start_segment(&self, tail: &mut Tail) -> Result<()> {
        if let Some((sealed, _)) = &tail.file {
            let path = self.segment_path(*tail.segments.last().expect("a segment is open"));
            sealed.sync_data().map_err(io_err(format!(
                "syncing {} before sealing it",
                path.display()
            )))?;
        }
        let first = tail.next;
        let path = self.segment_path(first);
        let tmp = path.with_extension("seg.tmp");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&tmp)
            .map_err(io_err(format!("creating {}", tmp.display())))?;
        let mut header = Vec::with_capacity(SEGMENT_HEADER as usize);
        header.extend_from_slice(SEGMENT_MAGIC);
        header.extend_from_slice(&SEGMENT_VERSION.to_le_bytes());
        header.extend_from_slice(&first.to_le_bytes());
        let written = file
            .write_all(&header)
            .and_then(|()| file.sync_all())
            .and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(format!("writing {}", path.display()), e));
        }
        sync_dir(&self.dir)?;
        if tail.segments.last() != Some(&first) {
            tail.segments.push(first);
        }
        tail.file = Some((Arc::new(file), Layout::V2));
        tail.len = SEGMENT_HEADER;
        Ok(())
    }

    /// Visits the records of `segments` from `from` on; see [`Backend::scan`].
    fn read_segments(
        &self,
        segments: &[u64],
        from: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
        lock: ReadLock,
    ) -> Result<u64> {
        let Some(&oldest) = segments.first() else {
            return Ok(from);
        };
        if from < oldest {
            return Err(Error::Lagging {
                needed: from,
                first_available: oldest,
            });
        }
        let start = segments.partition_point(|&first| first <= from) - 1;
        let mut pos = from;
        for (i, &first) in segments.iter().enumerate().skip(start) {
            let last_segment = i + 1 == segments.len();
            let path = self.segment_path(first);
            let hint = *self.scan_hint.lock();
            let hinted = hint.segment == first && hint.next <= pos && hint.offset > 0;
            let (skip, seq) = if hinted {
                (hint.offset, hint.next)
            } else {
                (0, first)
            };
            let bytes = {
                // Shared logs: read under the shared lock, so no append is half-visible.
                let _guard = match lock {
                    ReadLock::Take => self.lock_appends(false)?,
                    ReadLock::Held => None,
                };
                match read_from(&path, skip) {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && pos < first => {
                        return Err(Error::Lagging {
                            needed: pos,
                            first_available: first,
                        });
                    }
                    Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
                }
            };
            let (layout, body_at) = if hinted {
                (hint.layout, 0)
            } else {
                (
                    check_segment_header(&bytes[..], &path, first)?,
                    SEGMENT_HEADER as usize,
                )
            };
            let base = skip + body_at as u64;
            let mut stopped = false;
            let walked = frame::walk(&bytes[body_at..], layout, seq, |at, end, payload| {
                if at < pos {
                    return Ok(true);
                }
                *self.scan_hint.lock() = ScanHint {
                    segment: first,
                    layout,
                    offset: base + end as u64,
                    next: at + 1,
                };
                pos = at + 1;
                let more = visit(at, payload)?;
                stopped = !more;
                Ok(more)
            })
            .map_err(walk_error(&path, base))?;
            if stopped {
                return Ok(pos);
            }
            if walked.torn && !last_segment {
                return Err(Error::corrupt(
                    format!("{} offset {}", path.display(), base + walked.end as u64),
                    "a sealed segment ends in a torn record",
                ));
            }
            if let Some(&next_first) = segments.get(i + 1)
                && walked.next != next_first
            {
                return Err(Error::corrupt(
                    path.display().to_string(),
                    format!(
                        "ends before record {}, but the next segment starts at {next_first}",
                        walked.next
                    ),
                ));
            }
        }
        Ok(pos)
    }

    /// Appends `records` at `first` (= `tail.next`) under the locks the caller took, and
    /// makes them durable.
    ///
    /// An exclusive log syncs under its lock, and cuts a failed write or sync back off. A
    /// shared log releases its locks before the sync, so that other participants' appends and
    /// syncs overlap with this one (the filesystem commits them together); each frame then
    /// records the position every record before which was durable when it was written (the
    /// mark in `append.lock`), which is what the damage policy needs after a crash.
    fn append_locked(
        &self,
        mut tail: MutexGuard<'_, Tail>,
        guard: Option<AppendGuard<'_>>,
        first: u64,
        records: &[Vec<u8>],
    ) -> Result<()> {
        let settled = match self.access {
            Access::Exclusive => first,
            Access::Shared => (self.synced.load(Ordering::Acquire) + 1).min(first),
        };
        let (file, at) = self.write_records(&mut tail, settled, records)?;
        let path = self.segment_path(*tail.segments.last().expect("a segment is open"));
        let last = first + records.len() as u64 - 1;
        if self.access == Access::Exclusive {
            if let Err(e) = file.sync_data() {
                self.cut_back(&mut tail, &file, at, first);
                return Err(Error::io(format!("syncing {}", path.display()), e));
            }
            return Ok(());
        }
        drop(guard);
        drop(tail);
        file.sync_data()
            .map_err(io_err(format!("syncing {}", path.display())))?;
        self.synced.fetch_max(last, Ordering::AcqRel);
        Ok(())
    }

    /// Writes `records` at the end of the last segment (starting one if needed) without
    /// syncing; returns the file and the offset they start at. A failed write is cut off.
    fn write_records(
        &self,
        tail: &mut Tail,
        settled: u64,
        records: &[Vec<u8>],
    ) -> Result<(Arc<File>, u64)> {
        // Version 1 segments are read, never extended.
        if tail
            .file
            .as_ref()
            .is_none_or(|(_, layout)| *layout != Layout::V2)
            || tail.len >= SEGMENT_BYTES
        {
            self.start_segment(tail)?;
        }
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.len() + frame::V2_HEADER).sum());
        for r in records {
            frame::push_frame(&mut buf, r, settled);
        }
        let file = Arc::clone(&tail.file.as_ref().expect("a segment is open").0);
        let (at, first) = (tail.len, tail.next);
        if let Err(e) = file.write_all_at(&buf, at) {
            let path = self.segment_path(*tail.segments.last().expect("a segment is open"));
            self.cut_back(tail, &file, at, first);
            return Err(Error::io(format!("appending to {}", path.display()), e));
        }
        tail.len += buf.len() as u64;
        tail.next += records.len() as u64;
        Ok((file, at))
    }

    /// Nothing of a failed append may survive: cuts the segment back to `at` (a full disk still
    /// allows that). If even that fails, forgets the file: the next append or open re-reads the
    /// segment and cuts the torn tail.
    fn cut_back(&self, tail: &mut Tail, file: &File, at: u64, first: u64) {
        tail.len = at;
        tail.next = first;
        if file.set_len(at).and_then(|()| file.sync_data()).is_err() {
            tail.file = None;
        }
    }
}

/// Releases `append.lock` when dropped.
struct AppendGuard<'a>(&'a File);

impl Drop for AppendGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Checks a segment header read from `src`; returns the segment's frame layout.
fn check_segment_header(mut src: impl Read, path: &Path, first: u64) -> Result<Layout> {
    let mut header = [0_u8; SEGMENT_HEADER as usize];
    src.read_exact(&mut header)
        .map_err(io_err(format!("reading the header of {}", path.display())))?;
    parse_segment_header(&header, path, first)
}

fn parse_segment_header(header: &[u8], path: &Path, first: u64) -> Result<Layout> {
    if header.len() < SEGMENT_HEADER as usize || &header[..8] != SEGMENT_MAGIC {
        return Err(Error::corrupt(
            path.display().to_string(),
            "not a stmx log segment",
        ));
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let Some(layout) = Layout::of_version(version) else {
        return Err(Error::UnsupportedFormat {
            what: format!("log segment {}", path.display()),
            found: version,
            supported: SEGMENT_VERSION,
        });
    };
    let named = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    if named != first {
        return Err(Error::corrupt(
            path.display().to_string(),
            format!("the header says the segment starts at {named}"),
        ));
    }
    Ok(layout)
}

/// How a segment's bytes ended, for [`check_segment`].
#[derive(Debug, PartialEq, Eq)]
#[doc(hidden)]
pub struct SegmentEnd {
    /// The number of whole records.
    pub records: u64,
    /// Whether torn bytes follow them.
    pub torn: bool,
}

/// Reads a whole segment file's bytes as the backend does, for the fuzzers: header, frames,
/// damage policy.
///
/// # Errors
///
/// [`Error::Corrupt`] or [`Error::UnsupportedFormat`].
#[doc(hidden)]
pub fn check_segment(bytes: &[u8], first: u64) -> Result<SegmentEnd> {
    let path = Path::new("segment");
    let layout = parse_segment_header(bytes, path, first)?;
    let body = &bytes[SEGMENT_HEADER as usize..];
    let walked = frame::walk::<Error>(body, layout, first, |_, _, _| Ok(true))
        .map_err(walk_error(path, SEGMENT_HEADER))?;
    Ok(SegmentEnd {
        records: walked.next - first,
        torn: walked.torn,
    })
}

/// The bytes of `path` from `offset` on.
fn read_from(path: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut out = Vec::new();
    file.read_to_end(&mut out)?;
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing the directory {}", dir.display())))
}

impl Backend for DirBackend {
    fn next_position(&self) -> Result<u64> {
        let mut tail = self.tail.lock();
        if self.access == Access::Shared {
            let _guard = self.lock_appends(false)?;
            self.refresh(&mut tail, TornTail::Keep)?;
        }
        Ok(tail.next)
    }

    fn append(&self, first: u64, records: &[Vec<u8>]) -> Result<Append> {
        let mut tail = self.tail.lock();
        let guard = self.lock_appends(true)?;
        if self.access == Access::Shared || tail.file.is_none() {
            self.refresh(&mut tail, TornTail::Cut)?;
        }
        if tail.next != first {
            return Ok(Append::Conflict { next: tail.next });
        }
        if records.is_empty() {
            return Ok(Append::Appended);
        }
        self.append_locked(tail, guard, first, records)?;
        Ok(Append::Appended)
    }

    fn append_after(
        &self,
        from: u64,
        catch_up: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
        build: &mut dyn FnMut(u64) -> Result<Vec<Vec<u8>>>,
    ) -> Result<Option<u64>> {
        // One step under `append.lock`: no other participant can append in between, so
        // what `build` decides on the caught-up state always lands.
        let mut tail = self.tail.lock();
        let guard = self.lock_appends(true)?;
        if self.access == Access::Shared || tail.file.is_none() {
            self.refresh(&mut tail, TornTail::Cut)?;
        }
        if from < tail.next {
            let segments = tail.segments.clone();
            self.read_segments(
                &segments,
                from,
                &mut |pos, bytes| catch_up(pos, bytes).map(|()| true),
                ReadLock::Held,
            )?;
        }
        let next = tail.next;
        let records = build(next)?;
        if records.is_empty() {
            return Ok(None);
        }
        self.append_locked(tail, guard, next, &records)?;
        Ok(Some(next))
    }

    fn scan(&self, from: u64, visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>) -> Result<u64> {
        let segments = {
            let mut tail = self.tail.lock();
            if self.access == Access::Shared {
                let _guard = self.lock_appends(false)?;
                self.refresh(&mut tail, TornTail::Keep)?;
            }
            tail.segments.clone()
        };
        self.read_segments(&segments, from, visit, ReadLock::Take)
    }

    fn save_snapshot(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        let path = self.snapshot_path(seq);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = File::create(&tmp).and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        });
        if let Err(e) = written.and_then(|()| fs::rename(&tmp, &path)) {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(format!("writing {}", path.display()), e));
        }
        sync_dir(&self.dir)
    }

    fn snapshots(&self) -> Result<Vec<u64>> {
        self.list("snap-", ".snap")
    }

    fn load_snapshot(&self, seq: u64) -> Result<(String, Vec<u8>)> {
        let path = self.snapshot_path(seq);
        let bytes = fs::read(&path).map_err(io_err(format!("reading {}", path.display())))?;
        Ok((path.display().to_string(), bytes))
    }

    fn compact(&self, through: u64) -> Result<()> {
        let mut tail = self.tail.lock();
        let _guard = self.lock_appends(true)?;
        self.refresh(&mut tail, TornTail::Cut)?;
        // Seal the current segment, so that the next compaction can drop what it holds now.
        if tail.len > SEGMENT_HEADER {
            self.start_segment(&mut tail)?;
        }
        let covered: Vec<u64> = tail
            .segments
            .windows(2)
            .filter(|pair| pair[1] - 1 <= through)
            .map(|pair| pair[0])
            .collect();
        for &first in &covered {
            let path = self.segment_path(first);
            fs::remove_file(&path).map_err(io_err(format!("removing {}", path.display())))?;
        }
        tail.segments.retain(|f| !covered.contains(f));
        for seq in self.list("snap-", ".snap")? {
            if seq < through {
                let path = self.snapshot_path(seq);
                fs::remove_file(&path).map_err(io_err(format!("removing {}", path.display())))?;
            }
        }
        sync_dir(&self.dir)
    }

    fn skip_to(&self, next: u64) -> Result<()> {
        let mut tail = self.tail.lock();
        let _guard = self.lock_appends(true)?;
        self.refresh(&mut tail, TornTail::Cut)?;
        if tail.next < next {
            tail.next = next;
            self.start_segment(&mut tail)?;
        }
        Ok(())
    }
}
