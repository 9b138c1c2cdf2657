//! See `circuitd::fuzzing::page_token`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| circuitd::fuzzing::page_token(data));
