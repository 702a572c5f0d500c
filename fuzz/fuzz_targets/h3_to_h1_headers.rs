#![no_main]
//! See `ptproxy_fuzz::h3_to_h1_headers` (fuzz/src/lib.rs) for the input layout and the checks.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ptproxy_fuzz::h3_to_h1_headers(data));
