//! [`DirBackend`]: the log and snapshots in a local directory, safe for several processes.
//!
//! Layout: `log-<first position>.seg` segment files (a header, then checksummed frames, one
//! record each), `snap-<position>.snap` snapshots, and two lock files. `owner.lock` is held
//! exclusively by an exclusive store for its whole life, or shared by every participant of a
//! shared log; `append.lock` is taken exclusively around each shared append (the
//! compare-and-append) and shared around each shared read.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::backend::{Append, Backend};
use crate::error::{Error, Result};
use crate::format::{self, FORMAT_VERSION, Frame};

const SEGMENT_MAGIC: &[u8; 8] = b"STMXLOG\0";
/// Magic, format version (u32), first position (u64).
const SEGMENT_HEADER: u64 = 20;
/// A segment is sealed and a new one started once it grows past this.
const SEGMENT_BYTES: u64 = 64 << 20;

/// A log in a local directory: the embedded default backend.
///
/// Opened [`exclusive`](DirBackend::open_exclusive)ly, one store owns the directory and
/// appends without taking a lock per append. Opened [`shared`](DirBackend::open_shared), any
/// number of stores, in one process or several on the same machine, append to it with
/// compare-and-append under a file lock. The two modes exclude each other.
///
/// On open (and, when shared, on each append) a torn tail, left by a crash in the middle of an
/// append, is cut; damage anywhere else is reported, never skipped.
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
    shared: bool,
    /// Holds `owner.lock` (exclusively or shared) for as long as the backend lives.
    _owner: File,
    /// `append.lock`, for shared logs.
    append_lock: File,
    tail: Mutex<Tail>,
    /// Where the last scan stopped: (segment, byte offset, position there), so that rolling
    /// forward reads only what is new.
    scan_hint: Mutex<(u64, u64, u64)>,
}

/// What this handle knows of the end of the log.
#[derive(Debug)]
struct Tail {
    /// First positions of the segments, ascending.
    segments: Vec<u64>,
    /// The last segment, open for appending, and how many bytes of it are whole frames.
    file: Option<File>,
    len: u64,
    next: u64,
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |e| Error::io(context, e)
}

impl DirBackend {
    /// Opens (creating if needed) `dir` for one owner. Cuts a torn tail.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if another backend has it open; I/O errors; [`Error::Corrupt`] or
    /// [`Error::UnsupportedFormat`] for a damaged or newer last segment.
    pub fn open_exclusive(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open(dir.as_ref(), false)
    }

    /// Opens (creating if needed) `dir` as one participant of a log shared by several stores
    /// or processes on this machine.
    ///
    /// # Errors
    ///
    /// As [`open_exclusive`](DirBackend::open_exclusive); [`Error::Locked`] if an exclusive
    /// owner has it open.
    pub fn open_shared(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open(dir.as_ref(), true)
    }

    fn open(dir: &Path, shared: bool) -> Result<Self> {
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
        let locked = if shared {
            owner.try_lock_shared()
        } else {
            owner.try_lock()
        };
        if locked.is_err() {
            return Err(Error::Locked {
                path: dir.to_path_buf(),
            });
        }
        let backend = Self {
            dir: dir.to_path_buf(),
            shared,
            _owner: owner,
            append_lock: lock_file("append.lock")?,
            tail: Mutex::new(Tail {
                segments: Vec::new(),
                file: None,
                len: 0,
                next: 1,
            }),
            scan_hint: Mutex::new((0, 0, 0)),
        };
        {
            let _guard = backend.lock_appends(true)?;
            let mut tail = backend.tail.lock();
            backend.refresh(&mut tail, true)?;
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
        if !self.shared {
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
    /// it. With `may_cut` (the caller excludes every other appender), a torn tail is cut.
    fn refresh(&self, tail: &mut Tail, may_cut: bool) -> Result<()> {
        let segments = self.list("log-", ".seg")?;
        let Some(&last) = segments.last() else {
            tail.segments.clear();
            tail.file = None;
            tail.len = 0;
            tail.next = tail.next.max(1);
            return Ok(());
        };
        if tail.segments.last() != Some(&last) || tail.file.is_none() {
            let path = self.segment_path(last);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err(format!("opening {}", path.display())))?;
            check_segment_header(&file, &path, last)?;
            tail.file = Some(file);
            tail.len = SEGMENT_HEADER;
            tail.next = last;
        }
        tail.segments = segments;
        let path = self.segment_path(last);
        let at_start = tail.len;
        let file = tail.file.as_mut().expect("opened above");
        let mut rest = Vec::new();
        file.seek(SeekFrom::Start(at_start))
            .and_then(|_| file.read_to_end(&mut rest))
            .map_err(io_err(format!("reading {}", path.display())))?;
        let mut at = 0;
        while at < rest.len() {
            match format::parse_frame(&rest[at..]) {
                Frame::Whole(_, n) => {
                    at += n;
                    tail.next += 1;
                }
                Frame::Damaged(n) if at + n < rest.len() => {
                    return Err(Error::corrupt(
                        format!("{} offset {}", path.display(), tail.len + at as u64),
                        "checksum mismatch with more records after it",
                    ));
                }
                Frame::Torn | Frame::Damaged(_) => break,
            }
        }
        tail.len += at as u64;
        if at < rest.len() && may_cut {
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
    fn start_segment(&self, tail: &mut Tail) -> Result<()> {
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
        header.extend_from_slice(&u32::from(FORMAT_VERSION).to_le_bytes());
        header.extend_from_slice(&first.to_le_bytes());
        file.write_all(&header)
            .and_then(|()| file.sync_all())
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(io_err(format!("writing {}", path.display())))?;
        sync_dir(&self.dir)?;
        tail.segments.push(first);
        tail.file = Some(file);
        tail.len = SEGMENT_HEADER;
        Ok(())
    }
}

/// Releases `append.lock` when dropped.
struct AppendGuard<'a>(&'a File);

impl Drop for AppendGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn check_segment_header(mut src: impl Read, path: &Path, first: u64) -> Result<()> {
    let mut header = [0_u8; SEGMENT_HEADER as usize];
    src.read_exact(&mut header)
        .map_err(io_err(format!("reading the header of {}", path.display())))?;
    if &header[..8] != SEGMENT_MAGIC {
        return Err(Error::corrupt(
            path.display().to_string(),
            "not a stmx log segment",
        ));
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != u32::from(FORMAT_VERSION) {
        return Err(Error::UnsupportedFormat {
            what: format!("log segment {}", path.display()),
            found: version,
            supported: u32::from(FORMAT_VERSION),
        });
    }
    let named = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    if named != first {
        return Err(Error::corrupt(
            path.display().to_string(),
            format!("the header says the segment starts at {named}"),
        ));
    }
    Ok(())
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
        if self.shared {
            let _guard = self.lock_appends(false)?;
            self.refresh(&mut tail, false)?;
        }
        Ok(tail.next)
    }

    fn append(&self, first: u64, records: &[Vec<u8>]) -> Result<Append> {
        let mut tail = self.tail.lock();
        let _guard = self.lock_appends(true)?;
        if self.shared {
            self.refresh(&mut tail, true)?;
        }
        if tail.next != first {
            return Ok(Append::Conflict { next: tail.next });
        }
        if records.is_empty() {
            return Ok(Append::Appended);
        }
        if tail.file.is_none() || tail.len >= SEGMENT_BYTES {
            self.start_segment(&mut tail)?;
        }
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.len() + 8).sum());
        for r in records {
            format::push_frame(&mut buf, r);
        }
        let path = self.segment_path(*tail.segments.last().expect("a segment is open"));
        let at = tail.len;
        let file = tail.file.as_mut().expect("a segment is open");
        let written = file
            .seek(SeekFrom::Start(at))
            .and_then(|_| file.write_all(&buf))
            .and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Forget the file. An exclusive store is poisoned now (reopening cuts what landed);
            // in a shared log the next append re-reads the segment and cuts it.
            tail.file = None;
            return Err(Error::io(format!("appending to {}", path.display()), e));
        }
        tail.len += buf.len() as u64;
        tail.next += records.len() as u64;
        Ok(Append::Appended)
    }

    fn scan(&self, from: u64, visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>) -> Result<u64> {
        let segments = {
            let mut tail = self.tail.lock();
            if self.shared {
                let _guard = self.lock_appends(false)?;
                self.refresh(&mut tail, false)?;
            }
            tail.segments.clone()
        };
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
            let (hint_first, hint_at, hint_seq) = *self.scan_hint.lock();
            let (skip, mut seq) = if hint_first == first && hint_seq <= pos {
                (hint_at, hint_seq)
            } else {
                (0, first)
            };
            let bytes = {
                // Shared logs: read under the shared lock, so no append is half-visible.
                let _guard = self.lock_appends(false)?;
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
            let mut at = 0;
            if skip == 0 {
                check_segment_header(&bytes[..], &path, first)?;
                at = SEGMENT_HEADER as usize;
            }
            while at < bytes.len() {
                match format::parse_frame(&bytes[at..]) {
                    Frame::Whole(payload, n) => {
                        let wanted = seq >= pos;
                        seq += 1;
                        at += n;
                        if wanted {
                            *self.scan_hint.lock() = (first, skip + at as u64, seq);
                            if !visit(seq - 1, payload)? {
                                return Ok(seq);
                            }
                            pos = seq;
                        }
                    }
                    Frame::Damaged(n) if !last_segment || at + n < bytes.len() => {
                        return Err(Error::corrupt(
                            format!("{} offset {at}", path.display()),
                            "checksum mismatch with more records after it",
                        ));
                    }
                    Frame::Torn | Frame::Damaged(_) if !last_segment => {
                        return Err(Error::corrupt(
                            format!("{} offset {at}", path.display()),
                            "a sealed segment ends in a torn record",
                        ));
                    }
                    Frame::Torn | Frame::Damaged(_) => break,
                }
            }
            if let Some(&next_first) = segments.get(i + 1)
                && seq != next_first
            {
                return Err(Error::corrupt(
                    path.display().to_string(),
                    format!(
                        "ends before record {seq}, but the next segment starts at {next_first}"
                    ),
                ));
            }
        }
        Ok(pos)
    }

    fn save_snapshot(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        let path = self.snapshot_path(seq);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = File::create(&tmp).and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        });
        written
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(io_err(format!("writing {}", path.display())))?;
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
        if self.shared {
            self.refresh(&mut tail, true)?;
        }
        // Seal the current segment if the snapshot covers part of it, so it can go next time.
        if tail.len > SEGMENT_HEADER && tail.segments.last().is_some_and(|&f| f <= through) {
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
        // Keep the newest two snapshots: the one just written and its predecessor.
        let snaps = self.list("snap-", ".snap")?;
        if snaps.len() > 2 {
            for &seq in &snaps[..snaps.len() - 2] {
                let path = self.snapshot_path(seq);
                fs::remove_file(&path).map_err(io_err(format!("removing {}", path.display())))?;
            }
        }
        sync_dir(&self.dir)
    }
}
