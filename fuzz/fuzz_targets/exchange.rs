#![no_main]
//! See `ptproxy_fuzz::exchange` (fuzz/src/exchange.rs) for the input layout and the checks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ptproxy_fuzz::exchange(data));
