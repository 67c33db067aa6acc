//! [`PgBackend`]: a shared log in PostgreSQL, for participants on several machines.

use std::time::Duration;

use parking_lot::Mutex;
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};

use crate::backend::{Append, Backend};
use crate::error::{Error, Result};

/// The channel appends notify, with the log's name as payload.
const CHANNEL: &str = "stmx_log_appended";
/// Taken (for the rest of its transaction) before creating stmx's tables, by the log's and the
/// shelf's backends alike: concurrent `CREATE TABLE IF NOT EXISTS` can fail with a duplicate.
pub(crate) const SCHEMA_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('stmx_schema'))";
/// Records fetched per query while scanning.
const SCAN_BATCH: i64 = 4_096;

/// A log kept in PostgreSQL: table `stmx_log` keyed by (log name, position), whose primary key
/// makes each append a compare-and-append, and `stmx_snapshots`. Appends `NOTIFY` so that
/// followers wake at once (`LISTEN`).
///
/// Several logs can live in one database under different names. Open it with
/// [`Options::open_backend`](crate::Options::open_backend) in [`Mode::Shared`](crate::Mode).
///
/// # Examples
///
/// ```no_run
/// use stm_persist::{Mode, Options, PgBackend};
/// # use stm_persist::{Command, State};
/// # use stmx::{StmResult, TVar, Transaction, TxError};
/// # struct S(TVar<u64>);
/// # impl State for S {
/// #     type Image = u64;
/// #     fn image(&self, tx: &mut Transaction) -> StmResult<u64> { self.0.read(tx) }
/// #     fn from_image(n: u64) -> Self { S(TVar::new(n)) }
/// # }
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct Inc;
/// # impl Command for Inc {
/// #     type State = S; type Output = (); type Error = ();
/// #     fn apply(&self, s: &S, tx: &mut Transaction) -> Result<(), TxError<()>> {
/// #         Ok(s.0.modify(tx, |n| n + 1)?)
/// #     }
/// # }
///
/// let log = PgBackend::connect("host=db.internal user=app dbname=app", "orders")?;
/// let store = Options::new().open_backend::<Inc>(log, Mode::Shared, || S(TVar::new(0)))?;
/// store.execute(Inc).unwrap();
/// # Ok::<(), stm_persist::Error>(())
/// ```
pub struct PgBackend {
    log: String,
    client: Mutex<Client>,
    /// A second connection that `LISTEN`s, for [`Backend::wait_for_append`].
    listener: Mutex<Client>,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

fn pg(context: &str) -> impl FnOnce(postgres::Error) -> Error + '_ {
    move |e| match e.as_db_error() {
        Some(db) => Error::Backend(format!(
            "{context}: {} ({})",
            db.message(),
            db.code().code()
        )),
        None => Error::Backend(format!("{context}: {e}")),
    }
}

impl PgBackend {
    /// Connects (twice: one connection listens) with libpq-style `params` and creates the
    /// tables if they do not exist. `log` names this log within the database.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] if the server cannot be reached or the tables cannot be created.
    pub fn connect(params: &str, log: &str) -> Result<Self> {
        let mut client = Client::connect(params, NoTls).map_err(pg("connecting"))?;
        // `CREATE TABLE IF NOT EXISTS` is not safe against itself: two connections creating a
        // table at once can fail with a duplicate type or key. The statements of one simple
        // query run in one transaction, so the transaction-level advisory lock serializes
        // creators (the shelf's backend takes the same one).
        client
            .batch_execute(&format!(
                "{SCHEMA_LOCK};
                 CREATE TABLE IF NOT EXISTS stmx_log (
                     log text NOT NULL, seq bigint NOT NULL, record bytea NOT NULL,
                     PRIMARY KEY (log, seq));
                 CREATE TABLE IF NOT EXISTS stmx_snapshots (
                     log text NOT NULL, seq bigint NOT NULL, data bytea NOT NULL,
                     PRIMARY KEY (log, seq));"
            ))
            .map_err(pg("creating the tables"))?;
        let mut listener = Client::connect(params, NoTls).map_err(pg("connecting"))?;
        listener
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .map_err(pg("listening"))?;
        Ok(Self {
            log: log.to_string(),
            client: Mutex::new(client),
            listener: Mutex::new(listener),
        })
    }

    fn next_in(&self, client: &mut Client) -> Result<u64> {
        let row = client
            .query_one(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM stmx_log WHERE log = $1",
                &[&self.log],
            )
            .map_err(pg("reading the log's end"))?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}

impl Backend for PgBackend {
    fn next_position(&self) -> Result<u64> {
        self.next_in(&mut self.client.lock())
    }

    fn append(&self, first: u64, records: &[Vec<u8>]) -> Result<Append> {
        if records.is_empty() {
            let next = self.next_position()?;
            return Ok(if next == first {
                Append::Appended
            } else {
                Append::Conflict { next }
            });
        }
        let mut client = self.client.lock();
        // One statement, so one round trip and atomic on its own: the rows land only if the
        // log ends just before `first` (the compare), and the primary key turns a racing
        // append at the same positions into a conflict. Followers are notified when they land.
        let inserted = client.query_one(
            "WITH ins AS (
                 INSERT INTO stmx_log (log, seq, record)
                 SELECT $1::text, $2::bigint + s.i - 1, s.r
                 FROM unnest($3::bytea[]) WITH ORDINALITY AS s(r, i)
                 WHERE (SELECT COALESCE(MAX(seq), 0) FROM stmx_log WHERE log = $1::text)
                     = $2::bigint - 1
                 RETURNING 1)
             SELECT n, CASE WHEN n > 0 THEN pg_notify($4, $1) END::text
             FROM (SELECT count(*) AS n FROM ins) AS c",
            &[&self.log, &(first as i64), &records, &CHANNEL],
        );
        match inserted {
            Ok(row) if row.get::<_, i64>(0) == records.len() as i64 => Ok(Append::Appended),
            Ok(_) => Ok(Append::Conflict {
                next: self.next_in(&mut client)?,
            }),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Ok(Append::Conflict {
                next: self.next_in(&mut client)?,
            }),
            Err(e) => Err(pg("appending")(e)),
        }
    }

    fn scan(&self, from: u64, visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>) -> Result<u64> {
        let mut client = self.client.lock();
        let first: Option<i64> = client
            .query_one("SELECT MIN(seq) FROM stmx_log WHERE log = $1", &[&self.log])
            .map_err(pg("reading the log's start"))?
            .get(0);
        if let Some(first) = first
            && from < first as u64
            && first > 1
        {
            return Err(Error::Lagging {
                needed: from,
                first_available: first as u64,
            });
        }
        let mut pos = from;
        loop {
            let rows = client
                .query(
                    "SELECT seq, record FROM stmx_log WHERE log = $1 AND seq >= $2
                     ORDER BY seq LIMIT $3",
                    &[&self.log, &(pos as i64), &SCAN_BATCH],
                )
                .map_err(pg("reading the log"))?;
            if rows.is_empty() {
                return Ok(pos);
            }
            for row in &rows {
                let seq = row.get::<_, i64>(0) as u64;
                if seq != pos {
                    return Err(Error::corrupt(
                        format!("log {} record {pos}", self.log),
                        format!("missing; the next stored record is {seq}"),
                    ));
                }
                let record: &[u8] = row.get(1);
                if !visit(seq, record)? {
                    return Ok(seq + 1);
                }
                pos = seq + 1;
            }
        }
    }

    fn save_snapshot(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        self.client
            .lock()
            .execute(
                "INSERT INTO stmx_snapshots (log, seq, data) VALUES ($1, $2, $3)
                 ON CONFLICT (log, seq) DO UPDATE SET data = EXCLUDED.data",
                &[&self.log, &(seq as i64), &bytes],
            )
            .map_err(pg("saving a snapshot"))?;
        Ok(())
    }

    fn snapshots(&self) -> Result<Vec<u64>> {
        let rows = self
            .client
            .lock()
            .query(
                "SELECT seq FROM stmx_snapshots WHERE log = $1 ORDER BY seq",
                &[&self.log],
            )
            .map_err(pg("listing snapshots"))?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
    }

    fn load_snapshot(&self, seq: u64) -> Result<(String, Vec<u8>)> {
        let row = self
            .client
            .lock()
            .query_one(
                "SELECT data FROM stmx_snapshots WHERE log = $1 AND seq = $2",
                &[&self.log, &(seq as i64)],
            )
            .map_err(pg("loading a snapshot"))?;
        Ok((format!("snapshot {seq} of log {}", self.log), row.get(0)))
    }

    fn compact(&self, through: u64) -> Result<()> {
        let mut client = self.client.lock();
        let mut tx = client.transaction().map_err(pg("compacting"))?;
        // Keep record `through` itself, so the log's end stays known.
        tx.execute(
            "DELETE FROM stmx_log WHERE log = $1 AND seq < $2",
            &[&self.log, &(through as i64)],
        )
        .map_err(pg("compacting"))?;
        tx.execute(
            "DELETE FROM stmx_snapshots WHERE log = $1 AND seq NOT IN
             (SELECT seq FROM stmx_snapshots WHERE log = $1 ORDER BY seq DESC LIMIT 2)",
            &[&self.log],
        )
        .map_err(pg("compacting"))?;
        tx.commit().map_err(pg("compacting"))
    }

    fn wait_for_append(&self, next: u64, timeout: Duration) -> Result<()> {
        let mut listener = self.listener.lock();
        // Drain old notifications, then check, then wait: an append after the check notifies.
        let mut notes = listener.notifications();
        while notes.iter().next().map_err(pg("listening"))?.is_some() {}
        drop(notes);
        if self.next_in(&mut listener)? > next {
            return Ok(());
        }
        let mut notes = listener.notifications();
        let _ = notes
            .timeout_iter(timeout)
            .next()
            .map_err(pg("waiting for an append"))?;
        Ok(())
    }
}
