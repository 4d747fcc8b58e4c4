//! The `multipart` target: see `relay::http::fuzzing::multipart`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::http::fuzzing::multipart(data));
