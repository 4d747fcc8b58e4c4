//! The `dicom_prescan` target: see `relay_workers::fuzzing::dicom_prescan`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_workers::fuzzing::dicom_prescan(data));
