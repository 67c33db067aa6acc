//! [`PgBackend`]: a shelf kept in PostgreSQL.

use parking_lot::Mutex;
use postgres::{Client, NoTls};

use super::backend::{Backend, Change};
use super::error::{Error, Result};
use crate::pg::SCHEMA_LOCK;

fn pg(context: &str) -> impl FnOnce(postgres::Error) -> Error + '_ {
    move |e| match e.as_db_error() {
        Some(db) => Error::Store(format!(
            "{context}: {} ({})",
            db.message(),
            db.code().code()
        )),
        None => Error::Store(format!("{context}: {e}")),
    }
}

/// A shelf in PostgreSQL: table `stmx_shelf`, keyed by (shelf name, pid), with a version
/// column counting each object's stored changes. Several shelves can live in one database
/// under different names.
///
/// One writer process per shelf: connecting takes a session-level advisory lock on the shelf's
/// name and holds it while the backend lives, so a second writer gets [`Error::Locked`]. Each
/// batch is one SQL transaction (atomic, durable as the server's `synchronous_commit` makes
/// it).
///
/// # Examples
///
/// ```no_run
/// use stm_persist::shelf::{PgBackend, Shelf};
///
/// let shelf = Shelf::with_backend(PgBackend::connect("host=db user=app dbname=app", "library")?);
/// let n = shelf.create_with_id("visits", 0_u64)?;
/// shelf.atomically(|tx| n.modify(tx, |n| n + 1))?;
/// # Ok::<(), stm_persist::shelf::Error>(())
/// ```
pub struct PgBackend {
    shelf: String,
    /// Holds the advisory lock; stores batches.
    writer: Mutex<Client>,
    /// Loads, so that a fetch does not wait for a batch being stored.
    reader: Mutex<Client>,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("shelf", &self.shelf)
            .finish_non_exhaustive()
    }
}

impl PgBackend {
    /// Connects (twice: one connection loads) with libpq-style `params`, creates the table if
    /// needed, and takes the shelf's writer lock. `shelf` names this shelf within the database.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if another backend holds the shelf; [`Error::Store`] if the server
    /// cannot be reached or the table cannot be created.
    pub fn connect(params: &str, shelf: &str) -> Result<Self> {
        let mut writer = Client::connect(params, NoTls).map_err(pg("connecting"))?;
        // Creators serialized by a transaction-level advisory lock (see `pg::SCHEMA_LOCK`).
        writer
            .batch_execute(&format!(
                "{SCHEMA_LOCK};
                 CREATE TABLE IF NOT EXISTS stmx_shelf (
                     shelf text NOT NULL, pid text NOT NULL, version bigint NOT NULL,
                     body bytea NOT NULL, PRIMARY KEY (shelf, pid))"
            ))
            .map_err(pg("creating the table"))?;
        let locked: bool = writer
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext('stmx_shelf'), hashtext($1))",
                &[&shelf],
            )
            .map_err(pg("taking the writer lock"))?
            .get(0);
        if !locked {
            return Err(Error::Locked(format!(
                "shelf `{shelf}`: another process is its writer"
            )));
        }
        let reader = Client::connect(params, NoTls).map_err(pg("connecting"))?;
        Ok(PgBackend {
            shelf: shelf.into(),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        // Release the writer lock now, not when the server notices the closed connection, so
        // that the shelf can be reopened at once.
        let _ = self.writer.get_mut().execute(
            "SELECT pg_advisory_unlock(hashtext('stmx_shelf'), hashtext($1))",
            &[&self.shelf],
        );
    }
}

impl Backend for PgBackend {
    fn load(&self, pid: &str) -> Result<Option<Vec<u8>>> {
        let row = self
            .reader
            .lock()
            .query_opt(
                "SELECT body FROM stmx_shelf WHERE shelf = $1 AND pid = $2",
                &[&self.shelf, &pid],
            )
            .map_err(pg("loading an object"))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn store(&self, changes: &[Change<'_>]) -> Result<()> {
        let (mut upserts, mut bodies, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
        for &(pid, body) in changes {
            match body {
                Some(body) => {
                    upserts.push(pid);
                    bodies.push(body);
                }
                None => deletes.push(pid),
            }
        }
        let mut client = self.writer.lock();
        let mut tx = client.transaction().map_err(pg("storing a batch"))?;
        // Each pid appears once per batch (the shelf keeps each object's last change), so the
        // two statements touch disjoint rows.
        if !deletes.is_empty() {
            tx.execute(
                "DELETE FROM stmx_shelf WHERE shelf = $1 AND pid = ANY($2)",
                &[&self.shelf, &deletes],
            )
            .map_err(pg("storing a batch"))?;
        }
        if !upserts.is_empty() {
            tx.execute(
                "INSERT INTO stmx_shelf (shelf, pid, version, body)
                 SELECT $1, p, 1, b FROM unnest($2::text[], $3::bytea[]) AS u(p, b)
                 ON CONFLICT (shelf, pid)
                 DO UPDATE SET body = excluded.body, version = stmx_shelf.version + 1",
                &[&self.shelf, &upserts, &bodies],
            )
            .map_err(pg("storing a batch"))?;
        }
        tx.commit().map_err(pg("storing a batch"))
    }
}
