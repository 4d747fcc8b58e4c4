//! The `image_sniff` target: see `relay_workers::fuzzing::image_sniff`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_workers::fuzzing::image_sniff(data));
