//! See `circuitd::fuzzing::tokens`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| circuitd::fuzzing::tokens(data));
