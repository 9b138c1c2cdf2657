//! See `circuitd::fuzzing::snapshot`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| circuitd::fuzzing::snapshot(data));
