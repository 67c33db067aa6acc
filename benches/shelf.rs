//! The shelf (`stmx::shelf`): open time against the number of stored objects, fetch and first
//! read of an unloaded object, and durable commits, side by side with the store's own durable
//! write rate, in one run.
//!
//! `cargo bench --bench shelf` prints, per round and as medians:
//! - open: `Shelf::open` of a shelf holding 0, 10,000 and 100,000 objects (then dropped);
//! - fetch+read: `Shelf::fetch` and the first read of an object not in memory (a reopened
//!   shelf of 100,000 objects, random pids), in microseconds;
//! - store: the backend alone (`RedbBackend::store` of one small record per durable batch),
//!   the floor for one caller;
//! - 1 and 8 callers: `Shelf::atomically` updating one of 1,024 objects, durable when it
//!   returns.
//!
//! Data goes under `target/shelf-bench` (a real disk, not tmpfs). Environment:
//! `STMX_SHELF_ROUNDS` (default 5), `STMX_SHELF_OPS` (durable commits per round, default 1000).

use std::path::{Path, PathBuf};
use std::time::Instant;

use stmx::shelf::{Backend, PVar, RedbBackend, Shelf};

const ACCOUNTS: usize = 1024;
const SIZES: [usize; 3] = [0, 10_000, 100_000];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A shelf file holding `n` objects `o0`..: built once.
fn build(base: &Path, n: usize) -> PathBuf {
    let path = base.join(format!("objects-{n}.shelf"));
    if path.exists() {
        return path;
    }
    let shelf = Shelf::open(&path).unwrap();
    for start in (0..n).step_by(10_000) {
        shelf
            .atomically(|tx| {
                for i in start..(start + 10_000).min(n) {
                    shelf.create_with_id_in(
                        tx,
                        &format!("o{i}"),
                        (i as u64, format!("object {i}")),
                    )?;
                }
                Ok(())
            })
            .unwrap();
    }
    path
}

/// Microseconds to open the shelf at `path`.
fn open_us(path: &Path) -> f64 {
    let start = Instant::now();
    let shelf = Shelf::open(path).unwrap();
    let us = start.elapsed().as_secs_f64() * 1e6;
    drop(shelf);
    us
}

/// Microseconds per fetch and first read of an object not in memory.
fn fetch_read_us(path: &Path, n: usize, ops: usize, seed: &mut u64) -> f64 {
    let shelf = Shelf::open(path).unwrap();
    let start = Instant::now();
    for _ in 0..ops {
        *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let i = (*seed >> 33) as usize % n;
        let var = shelf.fetch::<(u64, String)>(&format!("o{i}")).unwrap();
        assert_eq!(var.read_atomic().unwrap().0, i as u64);
    }
    start.elapsed().as_secs_f64() * 1e6 / ops as f64
}

/// Durable batches per second of the backend alone: one small record each.
fn store_rate(base: &Path, ops: usize) -> f64 {
    let path = base.join("raw.shelf");
    let _ = std::fs::remove_file(&path);
    let store = RedbBackend::open(&path).unwrap();
    let start = Instant::now();
    for i in 0..ops {
        let record = (i as u64).to_le_bytes();
        store
            .store(&[(&format!("o{}", i % ACCOUNTS), Some(&record[..]))])
            .unwrap();
    }
    ops as f64 / start.elapsed().as_secs_f64()
}

/// Durable `Shelf::atomically` commits per second with `callers` threads, `ops` in all, and
/// the commits each durable write of the store covered on average.
fn commits(base: &Path, callers: usize, ops: usize) -> (f64, f64) {
    let path = base.join(format!("commits-{callers}.shelf"));
    let _ = std::fs::remove_file(&path);
    let shelf = Shelf::open(&path).unwrap();
    let accounts: Vec<PVar<u64>> = shelf
        .atomically(|tx| {
            (0..ACCOUNTS)
                .map(|i| shelf.create_with_id_in(tx, &format!("a{i}"), 0))
                .collect()
        })
        .unwrap();
    let per = ops / callers;
    let before = shelf.stats();
    let start = Instant::now();
    std::thread::scope(|s| {
        for c in 0..callers {
            let (shelf, accounts) = (&shelf, &accounts);
            s.spawn(move || {
                for k in 0..per {
                    let a = &accounts[(c * 7919 + k * 31) % ACCOUNTS];
                    shelf.atomically(|tx| a.modify(tx, |n| n + 1)).unwrap();
                }
            });
        }
    });
    let rate = (per * callers) as f64 / start.elapsed().as_secs_f64();
    let after = shelf.stats();
    let per_sync = (after.batches - before.batches) as f64 / (after.syncs - before.syncs) as f64;
    (rate, per_sync)
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rounds = env("STMX_SHELF_ROUNDS", 5);
    let ops = env("STMX_SHELF_OPS", 1_000);
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/shelf-bench");
    std::fs::create_dir_all(&base).unwrap();
    let paths: Vec<PathBuf> = SIZES.iter().map(|&n| build(&base, n)).collect();
    let mut open = vec![vec![]; SIZES.len()];
    let (mut fetch, mut raw, mut one, mut eight) = (vec![], vec![], vec![], vec![]);
    let mut per_sync = vec![];
    let mut seed = 0x2545_F491_4F6C_DD1D_u64;
    println!(
        "round | open µs: 0 | 10k | 100k objects | fetch+first read µs | store alone batches/s \
         | 1 caller commits/s | 8 callers commits/s"
    );
    for r in 0..rounds {
        for (i, path) in paths.iter().enumerate() {
            open[i].push(open_us(path));
        }
        fetch.push(fetch_read_us(&paths[2], SIZES[2], 2_000, &mut seed));
        raw.push(store_rate(&base, ops));
        one.push(commits(&base, 1, ops).0);
        let (rate, covered) = commits(&base, 8, ops * 2);
        eight.push(rate);
        per_sync.push(covered);
        println!(
            "{r} | {:.0} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.0} ({:.1} per sync)",
            open[0][r], open[1][r], open[2][r], fetch[r], raw[r], one[r], eight[r], covered
        );
    }
    let open: Vec<f64> = open.iter_mut().map(|v| median(v)).collect();
    let per_sync = median(&mut per_sync);
    let (fetch, raw, one, eight) = (
        median(&mut fetch),
        median(&mut raw),
        median(&mut one),
        median(&mut eight),
    );
    println!("\nmedians over {rounds} rounds:");
    println!(
        "open: {:.0} µs empty, {:.0} µs with 10k objects, {:.0} µs with 100k",
        open[0], open[1], open[2]
    );
    println!("fetch + first read of an unloaded object: {fetch:.2} µs (target <= 20 µs)");
    println!("store alone: {raw:.0} durable batches/s");
    println!(
        "1 caller: {one:.0} commits/s: the store alone is {:.2}x faster (target <= 1.2x)",
        raw / one
    );
    println!(
        "8 callers: {eight:.0} commits/s: {:.2}x the 1-caller rate (target >= 5x), \
         {per_sync:.1} commits per durable write",
        eight / one
    );
}
