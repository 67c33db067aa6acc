//! A log record's bytes, decoded as the store decodes them: never a panic, never an unbounded
//! allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
enum Cmd {
    Reset,
    Add(u64),
    Rename { to: String },
    Many(Vec<Vec<u8>>),
}

fuzz_target!(|data: &[u8]| {
    if let Some((&position, bytes)) = data.split_first() {
        let _ = stm_persist::fuzz::decode_record::<Cmd>(bytes, u64::from(position));
    }
});
