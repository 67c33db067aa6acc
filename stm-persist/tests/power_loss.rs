//! Power loss and a full disk, on real filesystems. A `kill -9` cannot show a skipped sync (the
//! page cache survives the process), so the power-loss test runs the store on an ext4 image
//! mounted through a loop device, kills the writer, and copies the image at once: the copy
//! holds what reached the device, as after a power cut, and none of what was only cached.
//!
//! Both need root and `mount` (CI has them); elsewhere they print a notice and pass.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stm_persist::{Command, Error, ExecuteError, State, Store};
use stmx::{StmResult, TVar, Transaction, TxError};

use common::{next, read_acks, spawn_child};

const CHILD_ENV: &str = "STMX_POWER_LOSS_CHILD_DIR";
const SHARED_ENV: &str = "STMX_POWER_LOSS_SHARED";

const WRITERS: usize = 4;

/// The values each writer pushed so far, in order.
struct Pushed(Vec<TVar<Vec<u64>>>);

impl State for Pushed {
    type Image = Vec<Vec<u64>>;
    fn image(&self, tx: &mut Transaction) -> StmResult<Vec<Vec<u64>>> {
        self.0.iter().map(|w| w.read(tx)).collect()
    }
    fn from_image(v: Vec<Vec<u64>>) -> Self {
        Pushed(v.into_iter().map(TVar::new).collect())
    }
}

/// Writer `.0` pushes `.1`, which must be the length of its list, with `.2` as ballast.
#[derive(Serialize, Deserialize)]
struct Push(usize, u64, Vec<u8>);

impl Command for Push {
    type State = Pushed;
    type Output = ();
    type Error = String;
    fn apply(&self, s: &Pushed, tx: &mut Transaction) -> Result<(), TxError<String>> {
        let mut v = s.0[self.0].read(tx)?;
        if v.len() as u64 != self.1 {
            return Err(TxError::Abort(format!("push {} onto {}", self.1, v.len())));
        }
        v.push(self.1);
        Ok(s.0[self.0].write(tx, v)?)
    }
}

fn empty() -> Pushed {
    Pushed::from_image(vec![Vec::new(); WRITERS])
}

fn open(dir: &Path) -> stm_persist::Result<Store<Push>> {
    Store::open(dir, empty)
}

fn run(cmd: &str, args: &[&str]) -> bool {
    Process::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A mounted filesystem, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn new(point: PathBuf, args: &[&str]) -> Option<Self> {
        std::fs::create_dir_all(&point).unwrap();
        let mut all = args.to_vec();
        all.push(point.to_str().unwrap());
        run("mount", &all).then_some(Mount(point))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = run("umount", &[self.0.to_str().unwrap()]);
    }
}

fn skip(test: &str, why: &str) {
    eprintln!("NOTICE: {test} skipped: {why}");
}

/// The child: `WRITERS` threads push forever, printing `ack W N` once `execute` returned.
/// Exclusive: one store. Shared: two participants (stores on the one directory, as two
/// processes would be) with two writers each. Writer 0 also takes a snapshot every 100.
#[test]
fn power_loss_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let shared = std::env::var_os(SHARED_ENV).is_some_and(|v| !v.is_empty());
    let stores: Vec<Store<Push>> = if shared {
        (0..2)
            .map(|_| Store::open_shared(dir, empty).unwrap())
            .collect()
    } else {
        vec![open(dir).unwrap()]
    };
    let start = stores[0].read(|s, tx| s.image(tx));
    std::thread::scope(|s| {
        for (w, from) in start.iter().enumerate() {
            let store = &stores[w % stores.len()];
            let from = from.len() as u64;
            s.spawn(move || {
                for n in from.. {
                    store.execute(Push(w, n, vec![7; 300])).unwrap();
                    println!("ack {w} {n}");
                    // Snapshots seal segments: in a shared log, while other writers' last
                    // records may still be syncing.
                    if w == 0 && n.is_multiple_of(100) {
                        store.snapshot().unwrap();
                    }
                }
            });
        }
    });
}

/// Runs the child on a loop-mounted ext4 image, cuts the power (copies the image) at random
/// moments, and checks that the copy opens with every acknowledged command.
fn power_loss_rounds(shared: bool) {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let image = work.path().join("fs.img");
    std::fs::write(&image, []).unwrap();
    let sized = std::fs::File::options()
        .write(true)
        .open(&image)
        .and_then(|f| f.set_len(64 << 20));
    if sized.is_err() || !run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]) {
        return skip("the power-loss test", "mkfs.ext4 is not available");
    }
    let Some(live) = Mount::new(
        work.path().join("live"),
        &["-o", "loop", image.to_str().unwrap()],
    ) else {
        return skip(
            "the power-loss test",
            "cannot mount a loop device (not root?)",
        );
    };
    let store_dir = live.0.join("store");
    let mut seed = 0x5DEE_CE66_D1CE_4E5B_u64;
    let rounds = if cfg!(debug_assertions) { 4 } else { 10 };
    let mut acked_any = false;
    for round in 0..rounds {
        let shared_env = std::ffi::OsStr::new(if shared { "1" } else { "" });
        let mut child = spawn_child(
            "power_loss_child",
            &[(CHILD_ENV, store_dir.as_os_str()), (SHARED_ENV, shared_env)],
        );
        let stdout = child.stdout.take().unwrap();
        std::thread::sleep(Duration::from_millis(50 + next(&mut seed) % 150));
        child.kill().unwrap();
        // The power cut: what reached the device, now.
        let copy = work.path().join("cut.img");
        std::fs::copy(&image, &copy).unwrap();
        child.wait().unwrap();
        let acked = read_acks(stdout, WRITERS);
        let cut = Mount::new(
            work.path().join("cut"),
            &["-o", "loop", copy.to_str().unwrap()],
        )
        .expect("mounting the copy");
        let reopened = if shared {
            Store::open_shared(cut.0.join("store"), empty)
        } else {
            open(&cut.0.join("store"))
        };
        let lists = reopened
            .unwrap_or_else(|e| {
                panic!("round {round}: the store does not open after a power cut: {e}")
            })
            .read(|s, tx| s.image(tx));
        drop(cut);
        std::fs::remove_file(&copy).unwrap();
        for (w, values) in lists.iter().enumerate() {
            let len = values.len() as u64;
            assert!(
                values.iter().copied().eq(0..len),
                "round {round}: writer {w} lost or duplicated"
            );
            if let Some(acked) = acked[w] {
                acked_any = true;
                assert!(
                    len > acked,
                    "round {round}: writer {w}: {len} values after acknowledging 0..={acked}"
                );
            }
        }
        let lens: Vec<usize> = lists.iter().map(Vec::len).collect();
        eprintln!("round {round}: acked {acked:?}, {lens:?} values after the cut");
    }
    assert!(acked_any, "the child never got to acknowledge a command");
}

#[test]
fn after_a_power_loss_every_acknowledged_command_is_there() {
    power_loss_rounds(false);
}

#[test]
fn after_a_power_loss_a_shared_log_has_every_acknowledged_command() {
    power_loss_rounds(true);
}

#[test]
fn on_a_full_disk_execute_fails_and_the_store_keeps_exactly_what_was_acknowledged() {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let Some(disk) = Mount::new(
        work.path().join("small"),
        &["-t", "tmpfs", "-o", "size=256k", "tmpfs"],
    ) else {
        return skip("the full-disk test", "cannot mount a tmpfs (not root?)");
    };
    let dir = disk.0.join("store");
    let mut acked = 0;
    {
        let store = open(&dir).unwrap();
        let err = loop {
            match store.execute(Push(0, acked, vec![1; 2_000])) {
                Ok(()) => acked += 1,
                Err(e) => break e,
            }
            assert!(acked < 1_000, "the disk never filled");
        };
        let ExecuteError::Store(Error::Io { source, .. }) = &err else {
            panic!("expected the disk's error, got {err}");
        };
        assert_eq!(source.raw_os_error(), Some(28), "ENOSPC: {err}");
        // The store's memory may hold the failed command: it refuses more.
        assert!(matches!(
            store.execute(Push(0, acked + 1, Vec::new())),
            Err(ExecuteError::Store(Error::Poisoned))
        ));
        assert!(store.snapshot().is_err(), "no room for a snapshot either");
    }
    // Reopened on the still-full disk: exactly the acknowledged commands.
    let store = open(&dir).unwrap();
    let values = store.read(|s, tx| s.0[0].read(tx));
    assert_eq!(values, (0..acked).collect::<Vec<_>>());
    assert!(acked > 10, "only {acked} commands fitted");
}
