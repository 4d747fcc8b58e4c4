//! The `dicom_parse` target: see `relay_workers::fuzzing::dicom_parse`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_workers::fuzzing::dicom_parse(data));
