//! The display pipeline against fixtures/reference/, rendered by
//! fixtures/make-reference.py with pydicom and the standard's formulas.

use image::GrayImage;
use serde_json::Value;

use super::*;

/// The fixture's reference rendering (fixtures/make-reference.py) and its
/// summary.
fn reference(stem: &str) -> (GrayImage, Value) {
    let png = image::open(fixture(&format!("reference/{stem}.png")))
        .expect("reference PNG")
        .to_luma8();
    let json = std::fs::read(fixture(&format!("reference/{stem}.json"))).expect("reference JSON");
    (
        png,
        serde_json::from_slice(&json).expect("reference JSON parses"),
    )
}

/// Compares a rendition with the pydicom reference: the mean and standard
/// deviation within ±3 of the reference's, and (same size) every pixel
/// within a small mean absolute difference.
fn assert_matches_reference(rendition: &Rendition, stem: &str) -> GrayImage {
    let ours = grey(rendition);
    let (png, summary) = reference(stem);
    let number = |key: &str| {
        summary[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {summary}"))
    };
    let (mean, std) = mean_std(&ours);
    assert!(
        (mean - number("mean")).abs() <= 3.0,
        "{stem}: mean {mean} vs {summary}"
    );
    assert!(
        (std - number("std")).abs() <= 3.0,
        "{stem}: std {std} vs {summary}"
    );
    assert_eq!(
        (f64::from(ours.width()), f64::from(ours.height())),
        (number("width"), number("height"))
    );
    // Before encoding the pixels are identical (see the test below); what
    // remains is JPEG's loss at quality 85, about 2 levels on these edges.
    let mad = mean_abs_diff(&ours, &png);
    assert!(
        mad <= 3.0,
        "{stem}: mean absolute difference {mad} from the reference"
    );
    ours
}

#[test]
fn ct_matches_the_pydicom_reference() {
    let derived = derive("dicom/CT_small.dcm");
    // CT_small has no window: the CT default (40/400 HU) is the reference's too.
    let (_, summary) = reference("CT_small");
    assert_eq!(
        (
            summary["window_center"].as_f64(),
            summary["window_width"].as_f64()
        ),
        (Some(CT_DEFAULT_WINDOW.0), Some(CT_DEFAULT_WINDOW.1))
    );
    assert_matches_reference(&derived.preview, "CT_small");
    let frame = render("dicom/CT_small.dcm", 0, None).expect("renders");
    assert_eq!(frame.kind, RenditionKind::Frame { index: 0 });
    assert_eq!(frame.bytes, derived.preview.bytes);
}

#[test]
fn monochrome1_is_inverted_like_the_reference() {
    let derived = derive("dicom/CR_6154_monochrome1.dcm");
    let ours = assert_matches_reference(&derived.preview, "CR_6154_monochrome1");
    let (png, _) = reference("CR_6154_monochrome1");
    // Not inverting would land far from the reference (its mean is about
    // 98, the un-inverted image's about 157).
    let matched = mean_abs_diff(&ours, &png);
    let as_stored = mean_abs_diff(&inverted(&ours), &png);
    assert!(
        as_stored > 40.0 && as_stored > 10.0 * matched,
        "un-inverted differs by {as_stored}, inverted by {matched}"
    );
}

/// The 8-bit frame before JPEG encoding, read back through the same path
/// `render_frame` takes.
fn unencoded(name: &str) -> GrayImage {
    let object = open(&fixture(name)).expect("opens");
    let layout = layout::PixelLayout::read(&object, &DeriveLimits::default()).expect("layout");
    match window::render(&object, &layout, 0, None).expect("renders") {
        crate::derive::encode::Displayable::Grey(grey) => grey,
        crate::derive::encode::Displayable::Rgb(_) => panic!("{name} rendered in colour"),
    }
}

#[test]
fn before_encoding_every_pixel_is_within_one_level_of_the_reference() {
    for (name, stem) in [
        ("dicom/CT_small.dcm", "CT_small"),
        ("dicom/CR_6154_monochrome1.dcm", "CR_6154_monochrome1"),
    ] {
        let ours = unencoded(name);
        let (png, _) = reference(stem);
        let worst = ours
            .pixels()
            .zip(png.pixels())
            .map(|(a, b)| a.0[0].abs_diff(b.0[0]))
            .max();
        assert!(worst <= Some(1), "{stem}: a pixel differs by {worst:?}");
    }
}
