//! What the renderer must refuse, and how: Unsupported for what this build
//! cannot show, Invalid for what is damaged or over the limits, never a
//! panic.

use std::path::{Path, PathBuf};

use super::*;

#[test]
fn jpeg_ls_is_unsupported() {
    // JPEG2000.dcm relabelled as JPEG-LS Lossless: the meta group's Transfer
    // Syntax UID (same length, 22 characters) is all that changes, so its
    // encapsulated pixel data is garbage to a JPEG-LS decoder — which this
    // build does not have anyway.
    let bytes = std::fs::read(fixture("dicom/JPEG2000.dcm")).expect("fixture");
    let (from, to) = (b"1.2.840.10008.1.2.4.91", b"1.2.840.10008.1.2.4.80");
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("the transfer syntax UID is in the meta group");
    assert!(at < 400, "found at {at}, past the meta group");
    let mut relabelled = bytes.clone();
    relabelled[at..at + to.len()].copy_from_slice(to);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jpeg-ls.dcm");
    std::fs::write(&path, relabelled).expect("write");

    let limits = DeriveLimits::default();
    for result in [
        derive_dicom(&path, &limits).map(|_| ()),
        render_frame(&path, 0, None, 256, &limits).map(|_| ()),
    ] {
        let Err(error @ DeriveError::Unsupported(_)) = result else {
            panic!("expected Unsupported, got {result:?}");
        };
        assert!(error.is_unsupported() && error.code() == "unsupported");
        assert!(error.to_string().contains("JPEG-LS"), "{error}");
    }
    // Its attributes can still be listed.
    let attributes = read_attributes(&path).expect("attributes");
    assert_eq!(attributes["transfer_syntax"], "1.2.840.10008.1.2.4.80");
    assert_eq!(
        attributes["sop_instance_uid"],
        derive("dicom/JPEG2000.dcm").attributes["sop_instance_uid"]
    );
}

#[test]
fn limits_are_checked_before_decoding() {
    let path = fixture("dicom/emri_small.dcm");
    let few_frames = DeriveLimits {
        max_frames: 9,
        ..DeriveLimits::default()
    };
    let Err(DeriveError::Invalid(message)) = derive_dicom(&path, &few_frames) else {
        panic!("10 frames over a limit of 9 must be Invalid");
    };
    assert!(message.contains("10 frames"), "{message}");
    // 64 × 64 × 10 × 1 = 40960 samples.
    let few_pixels = DeriveLimits {
        max_pixels: 40_959,
        ..DeriveLimits::default()
    };
    assert!(matches!(
        derive_dicom(&path, &few_pixels),
        Err(DeriveError::Invalid(_))
    ));
    let enough = DeriveLimits {
        max_pixels: 40_960,
        max_frames: 10,
        ..DeriveLimits::default()
    };
    assert!(derive_dicom(&path, &enough).is_ok());
}

#[test]
fn objects_too_large_to_hold_are_unsupported_before_they_are_read() {
    let path = fixture("dicom/emri_small.dcm");
    let size = std::fs::metadata(&path).expect("fixture").len();
    let small = DeriveLimits {
        max_dicom_bytes: size - 1,
        ..DeriveLimits::default()
    };
    let Err(DeriveError::Unsupported(message)) = derive_dicom(&path, &small) else {
        panic!("an object over the size bound must be Unsupported");
    };
    assert!(message.contains("not rendered yet"), "{message}");
    assert!(matches!(
        render_frame(&path, 0, None, 256, &small),
        Err(DeriveError::Unsupported(_))
    ));
    let exact = DeriveLimits {
        max_dicom_bytes: size,
        ..DeriveLimits::default()
    };
    assert!(derive_dicom(&path, &exact).is_ok());
}

#[test]
fn damaged_files_are_invalid_not_panics() {
    let limits = DeriveLimits::default();
    for name in [
        "bad/dicom-element-past-eof.dcm",
        "bad/text-as-dicom.dcm",
        "bad/empty.bin",
        "bad/not-an-image.txt",
        "photos/camera-gps.jpg",
    ] {
        let result = derive_dicom(&fixture(name), &limits);
        assert!(
            matches!(result, Err(DeriveError::Invalid(_))),
            "{name}: {result:?}"
        );
    }
    let missing = derive_dicom(&fixture("dicom/does-not-exist.dcm"), &limits);
    assert!(
        matches!(missing, Err(DeriveError::Invalid(_))),
        "{missing:?}"
    );
}

#[test]
fn a_file_without_pixel_data_is_unsupported() {
    // MR_small cut just before its Pixel Data element: what an SR or a PDF
    // object looks like to the renderer.
    let bytes = std::fs::read(fixture("dicom/MR_small.dcm")).expect("fixture");
    let pixel_data_tag = [0xE0, 0x7F, 0x10, 0x00];
    let at = bytes
        .windows(4)
        .rposition(|w| w == pixel_data_tag)
        .expect("a Pixel Data element");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("no-pixels.dcm");
    std::fs::write(&path, &bytes[..at]).expect("write");
    let result = derive_dicom(&path, &DeriveLimits::default());
    assert!(
        matches!(result, Err(DeriveError::Unsupported(_))),
        "{result:?}"
    );
}

/// Writes `name` with `patch` applied to a copy of its bytes, into `dir`.
fn patched(name: &str, dir: &Path, patch: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(fixture(name)).expect("fixture");
    patch(&mut bytes);
    let path = dir.join("patched.dcm");
    std::fs::write(&path, bytes).expect("write");
    path
}

#[test]
fn a_codestream_larger_than_the_object_is_refused_before_decoding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = DeriveLimits::default();
    // JPEG baseline, 100×100: SOF0 with length 17, precision 8, Y 100, X 100.
    let jpeg = patched("dicom/SC_rgb_jpeg_dcmtk.dcm", dir.path(), |bytes| {
        let sof = [0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x64, 0x00, 0x64];
        let at = bytes
            .windows(sof.len())
            .position(|w| w == sof)
            .expect("SOF0");
        bytes[at + 5..at + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    });
    let result = derive_dicom(&jpeg, &limits);
    let Err(DeriveError::Invalid(message)) = &result else {
        panic!("a 65535×65535 JPEG in a 100×100 object: {result:?}");
    };
    assert!(message.contains("65535×65535"), "{message}");

    // JPEG 2000: Xsiz/Ysiz right after SOC and SIZ.
    let j2k = patched("dicom/JPEG2000.dcm", dir.path(), |bytes| {
        let at = bytes
            .windows(4)
            .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])
            .expect("SOC SIZ");
        bytes[at + 8..at + 16].copy_from_slice(&[0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]);
    });
    let result = render_frame(&j2k, 0, None, 256, &limits);
    let Err(DeriveError::Invalid(message)) = &result else {
        panic!("a 65536×65536 JPEG 2000 frame in a 256×1024 object: {result:?}");
    };
    assert!(message.contains("declares"), "{message}");
}
