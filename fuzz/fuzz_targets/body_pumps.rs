#![no_main]
//! See `ptproxy_fuzz::body_pumps` (fuzz/src/body_pumps.rs) for the input layout and the checks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ptproxy_fuzz::body_pumps(data));
