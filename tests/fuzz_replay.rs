//! Replays the committed fuzz corpus and every regression case of the HTTP
//! parsing targets (`workers/fuzz/`: tus headers, multipart uploads)
//! through the same functions the fuzz targets call, on stable Rust.

use std::path::Path;

use relay::http::fuzzing;

fn replay(target: &str, body: fn(&[u8])) {
    let fuzz_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workers/fuzz");
    let (ran, failed) =
        relay_workers::fuzzing::replay(&fuzz_dir, target, body).expect("the corpus reads");
    assert!(ran > 0, "{target} has no committed corpus");
    assert!(failed.is_empty(), "{target} failed on: {failed:#?}");
}

#[test]
fn tus_headers() {
    replay("tus_headers", fuzzing::tus_headers);
}

#[test]
fn multipart() {
    replay("multipart", fuzzing::multipart);
}
