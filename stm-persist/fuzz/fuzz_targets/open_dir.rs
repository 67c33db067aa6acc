//! A store directory of arbitrary files: the input is split into a snapshot and two segments,
//! then opened. Opening may fail, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use stm_persist::{Command, State, Store};
use stmx::{StmResult, TVar, Transaction, TxError};

struct Total(TVar<Vec<u32>>);

impl State for Total {
    type Image = Vec<u32>;
    fn image(&self, tx: &mut Transaction) -> StmResult<Vec<u32>> {
        self.0.read(tx)
    }
    fn from_image(v: Vec<u32>) -> Self {
        Total(TVar::new(v))
    }
}

#[derive(Serialize, Deserialize)]
enum Op {
    Push(u32),
    Pop,
}

impl Command for Op {
    type State = Total;
    type Output = ();
    type Error = String;
    fn apply(&self, s: &Total, tx: &mut Transaction) -> Result<(), TxError<String>> {
        let mut v = s.0.read(tx)?;
        match self {
            Op::Push(n) => v.push(*n),
            Op::Pop => {
                v.pop().ok_or_else(|| TxError::Abort("empty".to_string()))?;
            }
        }
        Ok(s.0.write(tx, v)?)
    }
}

fuzz_target!(|data: &[u8]| {
    // The input is three files, each preceded by its length (u16 LE): a snapshot at 2, a
    // segment starting at 1 and one starting at 3.
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "snap-00000000000000000002.snap",
        "log-00000000000000000001.seg",
        "log-00000000000000000003.seg",
    ];
    let mut rest = data;
    for name in names {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_le_bytes(*len)).min(tail.len());
        if len > 0 {
            std::fs::write(dir.path().join(name), &tail[..len]).unwrap();
        }
        rest = &tail[len..];
    }
    if let Ok(store) = Store::<Op>::open(dir.path(), || Total(TVar::new(Vec::new()))) {
        let _ = store.execute(Op::Push(1));
    }
});
