//! A log segment file's bytes, read with the backend's frame reader and damage policy.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = stm_persist::fuzz::check_segment(data, 1);
});
