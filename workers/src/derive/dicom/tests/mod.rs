//! The DICOM renderer against every fixture. `reference` compares with
//! renderings made independently by pydicom; `robustness` feeds it what it
//! must refuse.

use std::path::{Path, PathBuf};

use image::GrayImage;

use super::*;

mod reference;
mod robustness;

pub(super) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

pub(super) fn derive(name: &str) -> DicomDerivatives {
    derive_dicom(&fixture(name), &DeriveLimits::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub(super) fn render(
    name: &str,
    frame: u32,
    window: Option<(f64, f64)>,
) -> Result<Rendition, DeriveError> {
    render_frame(
        &fixture(name),
        frame,
        window,
        PREVIEW_SIDE,
        &DeriveLimits::default(),
    )
}

pub(super) fn decode(rendition: &Rendition) -> image::DynamicImage {
    assert_eq!(rendition.media_type, "image/jpeg");
    let image = image::load_from_memory_with_format(&rendition.bytes, image::ImageFormat::Jpeg)
        .expect("a rendition is a valid JPEG");
    assert_eq!(
        (image.width(), image.height()),
        (rendition.width, rendition.height)
    );
    image
}

pub(super) fn grey(rendition: &Rendition) -> GrayImage {
    decode(rendition).to_luma8()
}

pub(super) fn mean_std(image: &GrayImage) -> (f64, f64) {
    let n = f64::from(image.width() * image.height());
    let mean = image.pixels().map(|p| f64::from(p.0[0])).sum::<f64>() / n;
    let var = image
        .pixels()
        .map(|p| (f64::from(p.0[0]) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

pub(super) fn mean_abs_diff(a: &GrayImage, b: &GrayImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a
        .pixels()
        .zip(b.pixels())
        .map(|(p, q)| u64::from(p.0[0].abs_diff(q.0[0])))
        .sum();
    total as f64 / f64::from(a.width() * a.height())
}

pub(super) fn inverted(image: &GrayImage) -> GrayImage {
    let mut out = image.clone();
    image::imageops::invert(&mut out);
    out
}

// Every fixture in fixtures/dicom/ renders with the enabled features
// (uncompressed, JPEG baseline, JPEG lossless, RLE, JPEG 2000); none is
// Unsupported. The only unsupported case tested is the synthetic JPEG-LS
// file below, since dicom-pixeldata is built without charls.
const ALL: &[&str] = &[
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "JPEG2000.dcm",
    "emri_small.dcm",
    "CR_6154_monochrome1.dcm",
    "examples_rgb_color.dcm",
];

#[test]
fn every_fixture_derives() {
    let listed: Vec<String> = std::fs::read_dir(fixture("dicom"))
        .expect("fixtures/dicom")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    for name in &listed {
        assert!(ALL.contains(&name.as_str()), "{name} is new: add it to ALL");
    }
    for name in ALL {
        let derived = derive(&format!("dicom/{name}"));
        let attributes = derived.attributes.as_object().expect("an object");
        for key in [
            "sop_instance_uid",
            "sop_class_uid",
            "study_instance_uid",
            "series_instance_uid",
            "modality",
            "rows",
            "columns",
            "photometric_interpretation",
            "transfer_syntax",
        ] {
            assert!(
                attributes.contains_key(key),
                "{name}: no {key} in {attributes:?}"
            );
        }
        assert!(
            attributes.values().all(|v| !v.is_null()),
            "{name}: a null in {attributes:?}"
        );
        assert!(derived.frames >= 1);
        for (rendition, kind, side) in [
            (&derived.thumbnail, RenditionKind::Thumbnail, THUMBNAIL_SIDE),
            (&derived.preview, RenditionKind::Preview, PREVIEW_SIDE),
        ] {
            assert_eq!(rendition.kind, kind, "{name}");
            assert!(!rendition.bytes.is_empty(), "{name}");
            assert!(rendition.width.max(rendition.height) <= side, "{name}");
            decode(rendition);
        }
        let rows = attributes["rows"].as_u64().expect("rows");
        let columns = attributes["columns"].as_u64().expect("columns");
        assert_eq!(
            (
                u64::from(derived.preview.width),
                u64::from(derived.preview.height)
            ),
            (columns, rows),
            "{name}: the preview is the frame at its own size (never upscaled)"
        );
    }
}

#[test]
fn ct_attributes() {
    let derived = derive("dicom/CT_small.dcm");
    let a = &derived.attributes;
    assert_eq!(a["patient_name"], "CompressedSamples^CT1");
    assert_eq!(a["modality"], "CT");
    assert_eq!(a["rows"], 128);
    assert_eq!(a["columns"], 128);
    assert_eq!(a["transfer_syntax"], "1.2.840.10008.1.2.1");
    assert_eq!(a["photometric_interpretation"], "MONOCHROME2");
    assert_eq!(a["rescale_slope"], 1.0);
    assert_eq!(a["rescale_intercept"], -1024.0);
    assert_eq!(
        a["image_position_patient"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(
        a["image_orientation_patient"].as_array().map(Vec::len),
        Some(6)
    );
    let study_date = a["study_date"].as_str().expect("a study date");
    assert!(
        study_date.len() == 10 && study_date.as_bytes()[4] == b'-',
        "{study_date}"
    );
    // Absent attributes are omitted, not null.
    assert!(
        a.get("window_center").is_none() && a.get("number_of_frames").is_none(),
        "{a}"
    );
    assert_eq!(derived.frames, 1);
}

#[test]
fn debug_never_shows_the_patient() {
    let derived = derive("dicom/CT_small.dcm");
    let debug = format!("{derived:?}");
    assert!(!debug.contains("CompressedSamples"), "{debug}");
    assert!(debug.contains("patient_name"), "{debug}");
}

#[test]
fn a_window_override_changes_the_rendering() {
    let default = grey(&render("dicom/CT_small.dcm", 0, None).expect("renders"));
    let explicit =
        grey(&render("dicom/CT_small.dcm", 0, Some(CT_DEFAULT_WINDOW)).expect("renders"));
    assert!(mean_abs_diff(&default, &explicit) < 0.5);
    // A bone window: most soft tissue goes dark, the contrast drops.
    let bone = grey(&render("dicom/CT_small.dcm", 0, Some((400.0, 1800.0))).expect("renders"));
    assert!(mean_abs_diff(&default, &bone) > 20.0);
    assert!(mean_std(&bone).1 < mean_std(&default).1);

    for window in [
        (40.0, 0.0),
        (40.0, -5.0),
        (f64::NAN, 400.0),
        (40.0, f64::INFINITY),
    ] {
        let result = render("dicom/CT_small.dcm", 0, Some(window));
        assert!(
            matches!(result, Err(DeriveError::Invalid(_))),
            "{window:?}: {result:?}"
        );
    }
}

#[test]
fn multi_frame() {
    let derived = derive("dicom/emri_small.dcm");
    assert_eq!(derived.frames, 10);
    assert_eq!(derived.attributes["number_of_frames"], 10);
    let first = grey(&render("dicom/emri_small.dcm", 0, None).expect("frame 0"));
    let last = render("dicom/emri_small.dcm", 9, None).expect("frame 9");
    assert_eq!(last.kind, RenditionKind::Frame { index: 9 });
    let last = grey(&last);
    assert!(
        mean_abs_diff(&first, &last) > 1.0,
        "frames 0 and 9 look the same"
    );
    assert_eq!(first, grey(&derived.preview));

    let Err(DeriveError::Invalid(message)) = render("dicom/emri_small.dcm", 10, None) else {
        panic!("frame 10 of 10 must be Invalid");
    };
    assert!(message.contains("frame 10"), "{message}");
    assert!(matches!(
        render("dicom/CT_small.dcm", 1, None),
        Err(DeriveError::Invalid(_))
    ));
    assert!(matches!(
        render("dicom/CT_small.dcm", u32::MAX, None),
        Err(DeriveError::Invalid(_))
    ));
}

#[test]
fn compressed_transfer_syntaxes_render() {
    // RLE is lossless: the same pixels as the uncompressed file, so the very
    // same JPEG.
    let plain = render("dicom/MR_small.dcm", 0, None).expect("uncompressed");
    let rle = render("dicom/MR_small_RLE.dcm", 0, None).expect("RLE");
    assert_eq!(mean_abs_diff(&grey(&plain), &grey(&rle)), 0.0);
    assert_eq!(plain.bytes, rle.bytes);

    // The same colour test pattern, JPEG baseline (YBR_FULL, lossy) and JPEG
    // lossless (RGB): both in colour, and alike.
    let baseline =
        decode(&render("dicom/SC_rgb_jpeg_dcmtk.dcm", 0, None).expect("baseline")).to_rgb8();
    let lossless =
        decode(&render("dicom/SC_rgb_jpeg_gdcm.dcm", 0, None).expect("lossless")).to_rgb8();
    for image in [&baseline, &lossless] {
        assert!(
            image
                .pixels()
                .any(|p| p.0[0] > 200 && p.0[1] < 60 && p.0[2] < 60),
            "no red in the test pattern"
        );
        assert!(
            image.pixels().any(|p| p.0[2] > 200 && p.0[0] < 60),
            "no blue"
        );
    }
    let differences: u64 = baseline
        .as_raw()
        .iter()
        .zip(lossless.as_raw())
        .map(|(a, b)| u64::from(a.abs_diff(*b)))
        .sum();
    let per_sample = differences as f64 / baseline.as_raw().len() as f64;
    assert!(
        per_sample < 8.0,
        "baseline and lossless differ by {per_sample}"
    );

    // JPEG 2000, 1024×256 NM: the thumbnail keeps the aspect ratio.
    let derived = derive("dicom/JPEG2000.dcm");
    assert_eq!((derived.preview.width, derived.preview.height), (256, 1024));
    assert_eq!(
        (derived.thumbnail.width, derived.thumbnail.height),
        (64, 256)
    );
    let (mean, std) = mean_std(&grey(&derived.preview));
    assert!(
        std > 5.0 && mean > 1.0,
        "JPEG 2000 rendered flat: {mean} {std}"
    );
}

#[test]
fn ultrasound_rgb_stays_in_colour() {
    let image = decode(&derive("dicom/examples_rgb_color.dcm").preview).to_rgb8();
    assert!(image.pixels().any(|p| {
        let [r, g, b] = p.0;
        r.abs_diff(g) > 30 || g.abs_diff(b) > 30
    }));
}

#[test]
fn max_side_bounds_a_frame() {
    let limits = DeriveLimits::default();
    let small =
        render_frame(&fixture("dicom/CT_small.dcm"), 0, None, 64, &limits).expect("renders");
    assert_eq!((small.width, small.height), (64, 64));
    let zero = render_frame(&fixture("dicom/CT_small.dcm"), 0, None, 0, &limits);
    assert!(matches!(zero, Err(DeriveError::Invalid(_))));
}
