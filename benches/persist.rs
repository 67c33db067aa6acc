//! Durable commits and replay of `stmx::persist`, side by side with the raw disk in one run.
//!
//! `cargo bench --bench persist` prints, per round and as medians:
//! - raw: one 40-byte frame appended with `write` + `fdatasync`, the floor for one caller;
//! - 1 caller: `Store::execute` of a small command, durable when it returns;
//! - 8 and 16 callers: the same from 8 or 16 threads at once (group commit);
//! - shared: 4 participants (separate stores on one directory, as 4 processes would), each with
//!   4 caller threads, compare-and-appending to one log; over PostgreSQL too when `STMX_PG_URL`
//!   is set (and the `postgres` feature is on);
//! - replay: `Store::open` of a log of small commands, in commands per second.
//!
//! Data goes under `target/persist-bench` (a real disk, not tmpfs). Environment:
//! `STMX_PERSIST_ROUNDS` (default 5), `STMX_PERSIST_OPS` (durable ops per round, default
//! 2000), `STMX_REPLAY_RECORDS` (default 1,000,000).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use stmx::persist::{Command, State, Store};
use stmx::{StmResult, TVar, Transaction, TxError};

const ACCOUNTS: usize = 1024;

struct Accounts(Vec<TVar<u64>>);

impl State for Accounts {
    type Image = Vec<u64>;
    fn image(&self, tx: &mut Transaction) -> StmResult<Vec<u64>> {
        self.0.iter().map(|a| a.read(tx)).collect()
    }
    fn from_image(v: Vec<u64>) -> Self {
        Accounts(v.into_iter().map(TVar::new).collect())
    }
}

#[derive(Serialize, Deserialize)]
struct Deposit {
    account: u32,
    amount: u64,
}

impl Command for Deposit {
    type State = Accounts;
    type Output = ();
    type Error = ();
    fn apply(&self, s: &Accounts, tx: &mut Transaction) -> Result<(), TxError<()>> {
        Ok(s.0[self.account as usize].modify(tx, |b| b + self.amount)?)
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fresh(dir: &Path) -> PathBuf {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    dir.to_path_buf()
}

fn open(dir: &Path) -> Store<Deposit> {
    Store::open(dir, || Accounts::from_image(vec![0; ACCOUNTS])).unwrap()
}

fn open_shared(dir: &Path) -> Store<Deposit> {
    Store::open_shared(dir, || Accounts::from_image(vec![0; ACCOUNTS])).unwrap()
}

/// Nanoseconds per durable append+fdatasync of one 40-byte frame.
fn raw(dir: &Path, ops: usize) -> f64 {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(fresh(dir).join("raw.log"))
        .unwrap();
    let frame = [7_u8; 40];
    let start = Instant::now();
    for _ in 0..ops {
        f.write_all(&frame).unwrap();
        f.sync_data().unwrap();
    }
    start.elapsed().as_nanos() as f64 / ops as f64
}

/// Durable commits per second with `callers` threads, `ops` commands in all.
fn durable(dir: &Path, callers: usize, ops: usize) -> f64 {
    let store = Arc::new(open(&fresh(dir)));
    commits_per_second(&vec![store; callers], ops)
}

/// Durable commits per second of 4 participants (stores opened by `open`, as 4 processes
/// would) with 4 caller threads each, `ops` commands in all.
fn shared(open: impl Fn() -> Store<Deposit>, ops: usize) -> f64 {
    let stores: Vec<_> = (0..4).map(|_| Arc::new(open())).collect();
    let callers: Vec<_> = stores.iter().flat_map(|s| vec![Arc::clone(s); 4]).collect();
    let rate = commits_per_second(&callers, ops);
    let end = stores[0].sync().unwrap();
    assert_eq!(end as usize, ops / 16 * 16, "every command logged once");
    rate
}

/// Runs one thread per entry of `callers`, each executing its share of `ops` deposits through
/// its store; durable commits per second.
fn commits_per_second(callers: &[Arc<Store<Deposit>>], ops: usize) -> f64 {
    let go = Arc::new(Barrier::new(callers.len() + 1));
    let per = ops / callers.len();
    let workers: Vec<_> = callers
        .iter()
        .enumerate()
        .map(|(c, store)| {
            let (store, go) = (Arc::clone(store), Arc::clone(&go));
            thread::spawn(move || {
                go.wait();
                for i in 0..per {
                    let account = ((c * 131 + i * 7) % ACCOUNTS) as u32;
                    store.execute(Deposit { account, amount: 1 }).unwrap();
                }
            })
        })
        .collect();
    go.wait();
    let start = Instant::now();
    for w in workers {
        w.join().unwrap();
    }
    (per * callers.len()) as f64 / start.elapsed().as_secs_f64()
}

/// Builds a log of `records` deposits (many callers, so group commit batches them).
fn build_log(dir: &Path, records: usize) {
    let callers = 64;
    let store = Arc::new(open(&fresh(dir)));
    let workers: Vec<_> = (0..callers)
        .map(|c| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                for i in 0..records / callers {
                    let account = ((c + i * callers) % ACCOUNTS) as u32;
                    store.execute(Deposit { account, amount: 1 }).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

/// Replayed commands per second when opening the log in `dir`.
fn replay(dir: &Path, records: usize) -> f64 {
    let start = Instant::now();
    let store = open(dir);
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(store.position() as usize, records / 64 * 64);
    store.position() as f64 / secs
}

/// The PostgreSQL server to measure, when the bench is built with `postgres` and one is set.
fn pg_url() -> Option<String> {
    if cfg!(feature = "postgres") {
        std::env::var("STMX_PG_URL").ok()
    } else {
        None
    }
}

#[cfg(feature = "postgres")]
fn open_pg(url: &str, round: usize) -> Store<Deposit> {
    use stmx::persist::{Mode, Options, PgBackend};
    let log = format!("bench-{}-{round}", std::process::id());
    let backend = PgBackend::connect(url, &log).unwrap();
    Options::new()
        .open_backend(backend, Mode::Shared, || {
            Accounts::from_image(vec![0; ACCOUNTS])
        })
        .unwrap()
}

#[cfg(not(feature = "postgres"))]
fn open_pg(_: &str, _: usize) -> Store<Deposit> {
    unreachable!("pg_url() is None without the postgres feature")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rounds = env("STMX_PERSIST_ROUNDS", 5);
    let ops = env("STMX_PERSIST_OPS", 2_000);
    let records = env("STMX_REPLAY_RECORDS", 1_000_000);
    let base = std::env::var_os("STMX_PERSIST_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/persist-bench"),
        PathBuf::from,
    );
    let pg = pg_url();
    let (mut raw_ns, mut one, mut eight, mut sixteen, mut dir4x4, mut pg4x4) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    println!(
        "round | raw append+fdatasync ns | exclusive commits/s: 1 caller | 8 callers | \
         16 callers | shared 4x4, directory | shared 4x4, PostgreSQL"
    );
    for r in 0..rounds {
        raw_ns.push(raw(&base.join("raw"), ops));
        one.push(durable(&base.join("one"), 1, ops));
        eight.push(durable(&base.join("eight"), 8, ops * 2));
        sixteen.push(durable(&base.join("sixteen"), 16, ops * 2));
        let dir = fresh(&base.join("shared"));
        dir4x4.push(shared(|| open_shared(&dir), ops * 2));
        if let Some(url) = &pg {
            pg4x4.push(shared(|| open_pg(url, r), ops));
        }
        println!(
            "{r} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {}",
            raw_ns[r],
            one[r],
            eight[r],
            sixteen[r],
            dir4x4[r],
            pg4x4.get(r).map_or("-".to_string(), |v| format!("{v:.0}"))
        );
    }
    let (raw_ns, one, eight, sixteen, dir4x4) = (
        median(&mut raw_ns),
        median(&mut one),
        median(&mut eight),
        median(&mut sixteen),
        median(&mut dir4x4),
    );
    let raw_rate = 1e9 / raw_ns;
    println!("\nmedians over {rounds} rounds, {ops} durable ops each:");
    println!("raw append+fdatasync: {raw_ns:.0} ns = {raw_rate:.0}/s");
    println!(
        "1 caller: {one:.0} commits/s: raw is {:.2}x faster (target <= 1.2x)",
        raw_rate / one
    );
    println!(
        "8 callers: {eight:.0} commits/s: {:.2}x the 1-caller rate (target >= 5x)",
        eight / one
    );
    println!("16 callers: {sixteen:.0} commits/s");
    println!(
        "shared, 4 participants x 4 callers, one directory: {dir4x4:.0} commits/s: the \
         exclusive store with 16 callers is {:.2}x faster (target <= 2x)",
        sixteen / dir4x4
    );
    if !pg4x4.is_empty() {
        println!(
            "shared, 4 participants x 4 callers, PostgreSQL: {:.0} commits/s",
            median(&mut pg4x4)
        );
    }
    let dir = base.join("replay");
    build_log(&dir, records);
    let mut rates: Vec<f64> = (0..3).map(|_| replay(&dir, records)).collect();
    println!(
        "replay of {} records: {:.2} M commands/s (median of 3; target >= 5 M/s)",
        records / 64 * 64,
        median(&mut rates) / 1e6
    );
    let _ = fs::remove_dir_all(&base);
}
