//! Crash safety: a child process executing commands is killed with SIGKILL at random points,
//! many times. After each restart the state must be exactly the acknowledged commands, plus
//! possibly the one in flight: never less, never anything else.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{next, read_acks, spawn_child};
use serde::{Deserialize, Serialize};
use stm_persist::{Command, State, Store};
use stmx::{StmResult, TVar, Transaction, TxError};

const CHILD_ENV: &str = "STMX_KILL9_CHILD_DIR";

/// The numbers pushed so far, in order.
struct Pushed(TVar<Vec<u64>>);

impl State for Pushed {
    type Image = Vec<u64>;
    fn image(&self, tx: &mut Transaction) -> StmResult<Vec<u64>> {
        self.0.read(tx)
    }
    fn from_image(v: Vec<u64>) -> Self {
        Pushed(TVar::new(v))
    }
}

/// Pushes `n`, which must be the current length: a duplicate or a gap is rejected.
#[derive(Serialize, Deserialize)]
struct Push(u64);

impl Command for Push {
    type State = Pushed;
    type Output = ();
    type Error = String;
    fn apply(&self, s: &Pushed, tx: &mut Transaction) -> Result<(), TxError<String>> {
        let mut v = s.0.read(tx)?;
        if v.len() as u64 != self.0 {
            return Err(TxError::Abort(format!(
                "push {} onto {} values",
                self.0,
                v.len()
            )));
        }
        v.push(self.0);
        s.0.write(tx, v)?;
        Ok(())
    }
}

fn open(dir: &Path) -> Store<Push> {
    Store::open(dir, || Pushed(TVar::new(Vec::new()))).expect("open after a crash")
}

/// The child: pushes forever, printing `ack 0 N` once `execute(Push(N))` returned.
#[test]
fn kill9_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return; // run as a normal test: nothing to do
    };
    let store = open(Path::new(&dir));
    let mut n = store.read(|s, tx| s.0.read(tx)).len() as u64;
    loop {
        store.execute(Push(n)).unwrap();
        println!("ack 0 {n}");
        n += 1;
        if n.is_multiple_of(40) {
            store.snapshot().unwrap();
        }
    }
}

#[test]
fn killed_at_random_points_the_store_keeps_exactly_the_acknowledged_commands() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut seed = 0x2545_F491_4F6C_DD1D_u64;
    let rounds = if cfg!(debug_assertions) { 25 } else { 60 };
    let mut acked_total = 0;
    for round in 0..rounds {
        let mut child = spawn_child("kill9_child", &[(CHILD_ENV, dir.path().as_os_str())]);
        let stdout = child.stdout.take().unwrap();
        // Let it run a random while: from before its first command to well into its work.
        std::thread::sleep(Duration::from_micros(next(&mut seed) % 40_000));
        child.kill().unwrap();
        child.wait().unwrap();
        let acked = read_acks(stdout, 1)[0];
        let state = open(dir.path()).read(|s, tx| s.0.read(tx));
        let len = state.len() as u64;
        assert!(
            state.iter().copied().eq(0..len),
            "round {round}: lost or duplicated"
        );
        eprintln!("round {round}: acked {acked:?}, {len} values");
        if let Some(acked) = acked {
            assert!(
                len == acked + 1 || len == acked + 2,
                "round {round}: {len} values after acknowledging 0..={acked}"
            );
            acked_total = acked;
        }
    }
    assert!(
        acked_total > 0,
        "the child never got to acknowledge a command"
    );
}

const SNAPSHOT_CHILD_ENV: &str = "STMX_KILL9_SNAPSHOT_CHILD_DIR";
const THREADS: usize = 4;

/// How many bumps each writer thread has made.
struct Counts(Vec<TVar<u64>>);

impl State for Counts {
    type Image = Vec<u64>;
    fn image(&self, tx: &mut Transaction) -> StmResult<Vec<u64>> {
        self.0.iter().map(|c| c.read(tx)).collect()
    }
    fn from_image(v: Vec<u64>) -> Self {
        Counts(v.into_iter().map(TVar::new).collect())
    }
}

/// Thread `.0`'s bump number `.1`, which must be its current count.
#[derive(Serialize, Deserialize)]
struct Bump(usize, u64);

impl Command for Bump {
    type State = Counts;
    type Output = ();
    type Error = String;
    fn apply(&self, s: &Counts, tx: &mut Transaction) -> Result<(), TxError<String>> {
        let n = s.0[self.0].read(tx)?;
        if n != self.1 {
            return Err(TxError::Abort(format!(
                "bump {} of thread {} at {n}",
                self.1, self.0
            )));
        }
        Ok(s.0[self.0].write(tx, n + 1)?)
    }
}

fn open_counts(dir: &Path) -> Store<Bump> {
    Store::open(dir, || Counts::from_image(vec![0; THREADS])).expect("open after a crash")
}

/// The child: four writer threads bump their counters (printing `ack T N` once durable) while
/// another thread takes snapshots as fast as it can.
#[test]
fn kill9_snapshot_child() {
    let Some(dir) = std::env::var_os(SNAPSHOT_CHILD_ENV) else {
        return;
    };
    let store = open_counts(Path::new(&dir));
    let start = store.read(|s, tx| s.image(tx));
    std::thread::scope(|s| {
        for (t, &from) in start.iter().enumerate() {
            let store = &store;
            s.spawn(move || {
                for n in from.. {
                    store.execute(Bump(t, n)).unwrap();
                    println!("ack {t} {n}");
                }
            });
        }
        loop {
            store.snapshot().unwrap();
        }
    });
}

/// v1's `snapshot()` could cover commands whose records were not yet written; killed at that
/// moment, the store reopened but refused every command after, forever.
#[test]
fn killed_while_snapshotting_the_store_reopens_and_accepts_commands() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let rounds = if cfg!(debug_assertions) { 15 } else { 40 };
    let mut acked_any = false;
    for round in 0..rounds {
        let mut child = spawn_child(
            "kill9_snapshot_child",
            &[(SNAPSHOT_CHILD_ENV, dir.path().as_os_str())],
        );
        let stdout = child.stdout.take().unwrap();
        std::thread::sleep(Duration::from_micros(20_000 + next(&mut seed) % 60_000));
        child.kill().unwrap();
        child.wait().unwrap();
        let acked = read_acks(stdout, THREADS);
        let store = open_counts(dir.path());
        let counts = store.read(|s, tx| s.image(tx));
        for t in 0..THREADS {
            if let Some(n) = acked[t] {
                acked_any = true;
                assert!(
                    counts[t] > n,
                    "round {round}: thread {t} acked {n}, has {}",
                    counts[t]
                );
            }
        }
        // The defect: every command failed after such a crash.
        store
            .execute(Bump(0, counts[0]))
            .unwrap_or_else(|e| panic!("round {round}: the reopened store refuses commands: {e}"));
    }
    assert!(acked_any, "the child never got to acknowledge a command");
}
