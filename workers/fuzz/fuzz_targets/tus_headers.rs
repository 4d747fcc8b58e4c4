//! The `tus_headers` target: see `relay::http::fuzzing::tus_headers`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::http::fuzzing::tus_headers(data));
