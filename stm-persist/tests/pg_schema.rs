//! Many processes meeting a fresh PostgreSQL database at once: each backend creates stmx's
//! tables if they are missing, and `CREATE TABLE IF NOT EXISTS` run concurrently can fail with
//! a duplicate type or key. The backends serialize that step; this test starts from dropped
//! tables and connects log and shelf backends from many threads at once, several times.
//!
//! Needs a server: `STMX_PG_URL` (`.ci/pg-start` starts one). Its own binary, because it
//! drops the tables the other PostgreSQL tests use.
#![cfg(feature = "postgres")]

use std::sync::Barrier;
use std::thread;

use stm_persist::PgBackend;
use stm_persist::shelf::PgBackend as ShelfPgBackend;

#[test]
fn concurrent_first_connections_create_the_tables_once() {
    let Ok(url) = std::env::var("STMX_PG_URL") else {
        eprintln!("NOTICE: STMX_PG_URL is not set; skipping");
        return;
    };
    let Ok(mut admin) = postgres::Client::connect(&url, postgres::NoTls) else {
        eprintln!("NOTICE: no PostgreSQL server at {url:?}; skipping");
        return;
    };
    for round in 0..5 {
        admin
            .batch_execute("DROP TABLE IF EXISTS stmx_shelf, stmx_log, stmx_snapshots")
            .unwrap();
        let start = Barrier::new(8);
        thread::scope(|s| {
            for t in 0..8 {
                let (url, start) = (&url, &start);
                s.spawn(move || {
                    start.wait();
                    let name = format!("schema-{}-{round}-{t}", std::process::id());
                    if t % 2 == 0 {
                        PgBackend::connect(url, &name).map(drop)
                    } else {
                        ShelfPgBackend::connect(url, &name)
                            .map(drop)
                            .map_err(|e| stm_persist::Error::Backend(format!("shelf: {e}")))
                    }
                    .unwrap_or_else(|e| panic!("round {round}, thread {t}: {e}"));
                });
            }
        });
    }
}
