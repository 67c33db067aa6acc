//! Crash safety: a child process executing commands is killed with SIGKILL at random points,
//! many times. After each restart the state must be exactly the acknowledged commands, plus
//! possibly the one in flight: never less, never anything else.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::Duration;

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

/// The child: pushes forever, printing `ack N` once `execute(Push(N))` returned.
#[test]
fn kill9_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return; // run as a normal test: nothing to do
    };
    let store = open(Path::new(&dir));
    let mut n = store.read(|s, tx| s.0.read(tx)).len() as u64;
    loop {
        store.execute(Push(n)).unwrap();
        println!("ack {n}");
        n += 1;
        if n.is_multiple_of(40) {
            store.snapshot().unwrap();
        }
    }
}

#[test]
fn killed_at_random_points_the_store_keeps_exactly_the_acknowledged_commands() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x2545_F491_4F6C_DD1D_u64;
    let rounds = if cfg!(debug_assertions) { 25 } else { 60 };
    let mut acked_total = 0;
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = Process::new(&exe)
            .args(["kill9_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Let it run a random while: from before its first command to well into its work.
        std::thread::sleep(Duration::from_micros(seed % 40_000));
        child.kill().unwrap();
        child.wait().unwrap();
        let acked = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("ack ").and_then(|n| n.parse::<u64>().ok()))
            .max();
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
