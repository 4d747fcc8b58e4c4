//! Replays the committed fuzz corpus and every regression case of the
//! ingest targets (`workers/fuzz/`) through the same functions the fuzz
//! targets call, so a crash the fuzzer found once is checked on every run
//! of the test suite, on stable Rust.

use std::path::Path;

use relay_workers::fuzzing;

fn replay(target: &str, body: fn(&[u8])) {
    let fuzz_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let (ran, failed) = fuzzing::replay(&fuzz_dir, target, body).expect("the corpus reads");
    assert!(ran > 0, "{target} has no committed corpus");
    assert!(failed.is_empty(), "{target} failed on: {failed:#?}");
}

#[test]
fn dicom_prescan() {
    replay("dicom_prescan", fuzzing::dicom_prescan);
}

#[test]
fn dicom_parse() {
    replay("dicom_parse", fuzzing::dicom_parse);
}

#[test]
fn image_sniff() {
    replay("image_sniff", fuzzing::image_sniff);
}

#[test]
fn strip_location() {
    replay("strip_location", fuzzing::strip_location);
}
