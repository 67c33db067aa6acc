//! [`Backend`]: where a shelf keeps its objects, and [`RedbBackend`], the embedded default.

use std::path::Path;

use redb::{ReadableDatabase, TableDefinition, TableError};

use super::error::{Error, Result};

/// One object's change in a batch: its pid and its new record, or `None` to delete it.
pub type Change<'a> = (&'a str, Option<&'a [u8]>);

/// Storage for a shelf's objects: records keyed by pid.
///
/// A shelf calls [`store`](Backend::store) from one writer thread, with batches in
/// serialization order, and [`load`](Backend::load) from any thread. Implement it to keep a
/// shelf somewhere else; [`RedbBackend`] and, with the `postgres` feature, `shelf::PgBackend`
/// are provided.
///
/// # Examples
///
/// ```
/// use stm_persist::shelf::{Backend, RedbBackend};
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = RedbBackend::open(dir.path().join("s.shelf"))?;
/// store.store(&[("a", Some(b"1".as_slice())), ("b", Some(b"2".as_slice()))])?;
/// store.store(&[("a", None)])?;
/// assert_eq!(store.load("a")?, None);
/// assert_eq!(store.load("b")?.as_deref(), Some(b"2".as_slice()));
/// # Ok::<(), stm_persist::shelf::Error>(())
/// ```
pub trait Backend: Send + Sync + 'static {
    /// The record stored under `pid`, if any.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store cannot be read.
    fn load(&self, pid: &str) -> Result<Option<Vec<u8>>>;

    /// Applies `changes` in order as one atomic batch, and returns once it is durable: after a
    /// crash at any point, either all of it is there or none.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the batch could not be made durable; then none of it may be
    /// visible after a restart.
    fn store(&self, changes: &[Change<'_>]) -> Result<()>;
}

const OBJECTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("stmx_shelf_objects");

/// The embedded default: one [`redb`] file (ACID, copy-on-write B-trees, one `fsync` per
/// batch). One process at a time may open it.
///
/// # Examples
///
/// ```
/// use stm_persist::shelf::{RedbBackend, Shelf};
///
/// let dir = tempfile::tempdir().unwrap();
/// let shelf = Shelf::with_backend(RedbBackend::open(dir.path().join("app.shelf"))?);
/// let n = shelf.create(41_u64)?;
/// shelf.atomically(|tx| n.modify(tx, |n| n + 1))?;
/// # Ok::<(), stm_persist::shelf::Error>(())
/// ```
pub struct RedbBackend {
    db: redb::Database,
}

impl std::fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbBackend").finish_non_exhaustive()
    }
}

fn store_error(context: &str) -> impl FnOnce(redb::Error) -> Error + '_ {
    move |e| match e {
        redb::Error::DatabaseAlreadyOpen => Error::Locked(format!(
            "{context}: the file is open in another process or shelf"
        )),
        e => Error::Store(format!("{context}: {e}")),
    }
}

impl RedbBackend {
    /// Opens the shelf file at `path`, creating it (and its parent directories) if needed.
    /// Opening reads no objects: it takes the same time for an empty shelf as for a large one.
    /// A new file is created whole or not at all, so a crash while creating it leaves nothing
    /// to trip over.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if another process has it open; [`Error::Store`] if it cannot be
    /// created or is not a shelf file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let context = format!("opening {}", path.display());
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::Store(format!("{context}: creating the directory: {e}")))?;
        }
        if !path.exists() {
            create_atomically(path).map_err(|e| Error::Store(format!("{context}: {e}")))?;
        }
        let db = redb::Database::create(path).map_err(|e| store_error(&context)(e.into()))?;
        Ok(RedbBackend { db })
    }
}

/// Creates an empty shelf file at `path` so that a crash at any moment leaves either no file or
/// a whole one: it is made under a temporary name, synced, then linked into place (which fails,
/// harmlessly, if another process created it first) and the directory synced.
fn create_atomically(path: &Path) -> std::result::Result<(), String> {
    let mut name = path.file_name().ok_or("the path names no file")?.to_owned();
    name.push(format!(".creating-{}", std::process::id()));
    let tmp = path.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    {
        let db = redb::Database::create(&tmp).map_err(|e| e.to_string())?;
        let write = db.begin_write().map_err(|e| e.to_string())?;
        write.open_table(OBJECTS).map_err(|e| e.to_string())?;
        write.commit().map_err(|e| e.to_string())?;
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(format!("linking the new file into place: {e}")),
    }
    let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("syncing the directory: {e}"))
}

impl Backend for RedbBackend {
    fn load(&self, pid: &str) -> Result<Option<Vec<u8>>> {
        let fail = |e: redb::Error| store_error("loading an object")(e);
        let read = self.db.begin_read().map_err(|e| fail(e.into()))?;
        let table = match read.open_table(OBJECTS) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(fail(e.into())),
        };
        let value = table.get(pid).map_err(|e| fail(e.into()))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn store(&self, changes: &[Change<'_>]) -> Result<()> {
        let fail = |e: redb::Error| store_error("storing a batch")(e);
        let write = self.db.begin_write().map_err(|e| fail(e.into()))?;
        {
            let mut table = write.open_table(OBJECTS).map_err(|e| fail(e.into()))?;
            for &(pid, body) in changes {
                match body {
                    Some(body) => drop(table.insert(pid, body).map_err(|e| fail(e.into()))?),
                    None => drop(table.remove(pid).map_err(|e| fail(e.into()))?),
                }
            }
        }
        write.commit().map_err(|e| fail(e.into()))
    }
}
