//! The `strip_location` target: see `relay_workers::fuzzing::strip_location`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_workers::fuzzing::strip_location(data));
