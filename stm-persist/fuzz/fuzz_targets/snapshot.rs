//! A snapshot file's bytes, decoded as the store decodes them.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = stm_persist::fuzz::decode_snapshot::<BTreeMap<String, Vec<i64>>>(data);
});
