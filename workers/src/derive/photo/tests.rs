use image::imageops::{self, FilterType};
use image::{DynamicImage, GrayImage};

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn derive(name: &str) -> PhotoDerivatives {
    derive_photo(&fixture(name), &DeriveLimits::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn grey(rendition: &Rendition) -> GrayImage {
    image::load_from_memory(&rendition.bytes)
        .expect("a rendition is a decodable image")
        .to_luma8()
}

/// Mean absolute difference of two same-sized grey images, 0-255.
fn mean_abs_diff(a: &GrayImage, b: &GrayImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a
        .pixels()
        .zip(b.pixels())
        .map(|(p, q)| u64::from(p.0[0].abs_diff(q.0[0])))
        .sum();
    total as f64 / f64::from(a.width() * a.height())
}

#[test]
fn portrait_is_rendered_upright() {
    let derived = derive("photos/camera-portrait.jpg");
    // Stored 400×210 with Orientation 6: displayed 210 wide × 400 tall.
    assert_eq!(derived.metadata["width"], 210);
    assert_eq!(derived.metadata["height"], 400);
    assert_eq!(derived.metadata["orientation"], 6);
    let thumb = &derived.thumbnail;
    assert_eq!(
        (thumb.kind, thumb.width, thumb.height),
        (RenditionKind::Thumbnail, 134, 256)
    );
    let preview = &derived.preview;
    assert_eq!(
        (preview.kind, preview.width, preview.height),
        (RenditionKind::Preview, 210, 400)
    );
    assert_eq!(grey(preview).dimensions(), (210, 400));

    // Rotated, not merely resized: the thumbnail matches the stored pixels
    // turned 90° clockwise, and not the stored pixels squeezed into the same
    // box, nor turned the other way.
    let stored = image::load_from_memory(&fixture("photos/camera-portrait.jpg"))
        .expect("decodes")
        .to_luma8();
    assert_eq!(stored.dimensions(), (400, 210));
    let fit = |img: &GrayImage| imageops::resize(img, 134, 256, FilterType::CatmullRom);
    let thumb = grey(thumb);
    let clockwise = mean_abs_diff(&thumb, &fit(&imageops::rotate90(&stored)));
    let unrotated = mean_abs_diff(&thumb, &fit(&stored));
    let anticlockwise = mean_abs_diff(&thumb, &fit(&imageops::rotate270(&stored)));
    assert!(clockwise < 3.0, "rotated thumbnail differs by {clockwise}");
    assert!(
        unrotated > 4.0 * clockwise && unrotated > 10.0,
        "un-rotated {unrotated} vs rotated {clockwise}"
    );
    assert!(
        anticlockwise > 4.0 * clockwise && anticlockwise > 10.0,
        "anticlockwise {anticlockwise} vs clockwise {clockwise}"
    );
}

#[test]
fn metadata_has_capture_details_and_never_location() {
    let bytes = fixture("photos/camera-gps.jpg");
    // The fixture does carry a location, so its absence below means something.
    let exif = exif::Reader::new()
        .read_from_container(&mut std::io::Cursor::new(&bytes))
        .expect("has EXIF");
    assert!(
        exif.get_field(exif::Tag::GPSLatitude, exif::In::PRIMARY)
            .is_some()
    );

    let derived = derive("photos/camera-gps.jpg");
    let metadata = &derived.metadata;
    assert_eq!(metadata["captured_at"], "2003-12-14T12:01:44");
    assert_eq!(metadata["camera_make"], "Canon");
    assert_eq!(metadata["camera_model"], "Canon PowerShot S40");
    assert_eq!(
        (metadata["width"].as_u64(), metadata["height"].as_u64()),
        (Some(480), Some(360))
    );
    assert_no_location(metadata);
    assert_eq!(
        (derived.thumbnail.width, derived.thumbnail.height),
        (256, 192)
    );
    assert_eq!((derived.preview.width, derived.preview.height), (480, 360));
}

#[test]
fn png_with_an_exif_location_gives_none_either() {
    let derived = derive("photos/lesion.png");
    assert_no_location(&derived.metadata);
    assert_eq!((derived.preview.width, derived.preview.height), (128, 128));
    assert!(image::load_from_memory(&derived.thumbnail.bytes).is_ok());
}

fn assert_no_location(metadata: &serde_json::Value) {
    let object = metadata.as_object().expect("an object");
    for key in object.keys() {
        let key = key.to_lowercase();
        assert!(
            !key.contains("gps") && !key.contains("latitude") && !key.contains("longitude"),
            "{key} in {metadata}"
        );
    }
    let text = metadata.to_string();
    assert!(!text.contains("47.37") && !text.contains("8.54"), "{text}");
}

#[test]
fn a_photo_without_orientation_is_kept_as_stored() {
    let derived = derive("photos/camera-plain.jpg");
    assert!(derived.metadata.get("orientation").is_none());
    assert_eq!(derived.metadata["captured_at"], "2006-02-15T23:39:07");
    assert_eq!((derived.preview.width, derived.preview.height), (300, 400));
    let stored = image::load_from_memory(&fixture("photos/camera-plain.jpg"))
        .expect("decodes")
        .to_luma8();
    assert!(mean_abs_diff(&grey(&derived.preview), &stored) < 3.0);
}

#[test]
fn every_orientation_follows_the_exif_definition() {
    // The fixtures only have 1 and 6; check image's mapping for all eight
    // on a 3×2 image whose pixels all differ: stored (x, y) holds 10·(3y + x).
    // EXIF says where the displayed image's top-left corner comes from.
    let stored = DynamicImage::ImageLuma8(GrayImage::from_fn(3, 2, |x, y| {
        image::Luma([(10 * (y * 3 + x)) as u8])
    }));
    let expected = [
        (1, (3, 2), 0),  // as stored
        (2, (3, 2), 20), // mirrored left-right: from the top-right
        (3, (3, 2), 50), // turned 180°: from the bottom-right
        (4, (3, 2), 30), // mirrored top-bottom: from the bottom-left
        (5, (2, 3), 0),  // transposed
        (6, (2, 3), 30), // turned 90° clockwise: from the bottom-left
        (7, (2, 3), 50), // transversed
        (8, (2, 3), 20), // turned 90° anticlockwise: from the top-right
    ];
    for (value, shape, top_left) in expected {
        let mut turned = stored.clone();
        turned.apply_orientation(Orientation::from_exif(value).expect("1-8 are valid"));
        let turned = turned.to_luma8();
        assert_eq!(turned.dimensions(), shape, "orientation {value}");
        assert_eq!(turned.get_pixel(0, 0).0[0], top_left, "orientation {value}");
    }
}

#[test]
fn damaged_or_oversized_photos_are_invalid() {
    let limits = DeriveLimits::default();
    for name in [
        "bad/truncated.jpg",
        "bad/png-bomb.png",
        "bad/png-bomb-100k.png",
        "bad/not-an-image.txt",
        "bad/empty.bin",
    ] {
        match derive_photo(&fixture(name), &limits) {
            Err(DeriveError::Invalid(message)) => assert!(!message.is_empty()),
            other => panic!("{name}: expected Invalid, got {other:?}"),
        }
    }
    let small = DeriveLimits {
        max_pixels: 1000,
        ..limits
    };
    let Err(DeriveError::Invalid(message)) =
        derive_photo(&fixture("photos/camera-gps.jpg"), &small)
    else {
        panic!("a photo over the pixel limit must be refused");
    };
    assert!(message.contains("172800"), "{message}");
}

#[test]
fn heic_is_not_rendered() {
    let result = derive_photo(&fixture("bad/heic-photo.heic"), &DeriveLimits::default());
    assert!(
        matches!(result, Err(DeriveError::Unsupported(_))),
        "{result:?}"
    );
}
