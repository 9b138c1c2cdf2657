//! See `circuitd::fuzzing::journal`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| circuitd::fuzzing::journal(data));
