//! See `circuitd::fuzzing::requests`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| circuitd::fuzzing::requests(data));
