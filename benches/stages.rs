//! Background stages, measured in-process: how fast the job queue turns
//! over on SQLite, and what the derive stage costs beside a plain decode.
//!
//! `cargo bench --bench stages`
//!
//! * Queue: 2000 no-op jobs claimed and completed through the real runner
//!   and the real SQLite catalog (WAL, synchronous=FULL: every claim and
//!   every completion is a durable commit), by 1 and by 4 workers. The
//!   baseline is the same number of bare durable commits (one `UPDATE` per
//!   transaction) on the same database file, so the ratio shows what the
//!   queue's bookkeeping adds to the commits it cannot avoid.
//! * Derive: thumbnail + preview of a 12 MP JPEG and of a 512×512 CT slice,
//!   beside the same run's raw decode of the same file, as a ratio.
//!
//! * Worklist: p50 and p99 latency of a specialist's first worklist page
//!   with 100 000 cases in the catalog (half of them of the specialist's
//!   specialty, 70 % of those waiting), audit events included.
//!
//! Inputs are made by the bench (a noise-and-gradient photo encoded as
//! JPEG; a CT-like Part 10 object); numbers are medians of several runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_workers::catalog::{PoolSettings, Queue, SqlCatalog};
use relay_workers::derive::{DeriveLimits, dicom::derive_dicom, photo::derive_photo};
use relay_workers::queue::{Job, JobError, Registry, Runner, RunnerConfig, Typed};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Noop {
    n: u32,
}

impl Job for Noop {
    const KIND: &'static str = "noop";
}

const JOBS: u32 = 2000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn catalog(dir: &tempfile::TempDir) -> Arc<SqlCatalog> {
    let url = format!("sqlite://{}", dir.path().join("relay.db").display());
    let settings = PoolSettings {
        max_connections: 8,
        ..PoolSettings::default()
    };
    Arc::new(SqlCatalog::connect(&url, &settings).await.expect("catalog"))
}

/// Jobs per second for `workers` runners draining `JOBS` no-op jobs.
async fn queue_rate(workers: usize) -> f64 {
    let dir = tempfile::tempdir().expect("dir");
    let catalog = catalog(&dir).await;
    for n in 0..JOBS {
        catalog
            .enqueue(Noop::KIND, &serde_json::json!({ "n": n }), 5)
            .await
            .expect("enqueue");
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let registry =
            Registry::new().register(Typed::new(|_: Noop| async { Ok::<(), JobError>(()) }));
        let config = RunnerConfig {
            worker: format!("bench-{w}"),
            concurrency: 1,
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(5),
            grace: Duration::from_secs(5),
        };
        let runner = Runner::new(catalog.clone(), registry, config);
        tasks.push(tokio::spawn(async move {
            let mut done = 0u32;
            loop {
                match runner.run_once().await.expect("run") {
                    relay_workers::queue::Outcome::Idle => return done,
                    _ => done += 1,
                }
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("worker");
    }
    assert_eq!(total, JOBS, "every job ran once");
    f64::from(JOBS) / started.elapsed().as_secs_f64()
}

/// Durable commits per second, one bare `UPDATE` each: the floor under any
/// queue that commits each claim and each completion.
async fn commit_rate() -> f64 {
    use sqlx::Connection;
    let dir = tempfile::tempdir().expect("dir");
    let catalog = catalog(&dir).await;
    catalog
        .enqueue("noop", &serde_json::json!({}), 5)
        .await
        .expect("enqueue");
    let url = format!("sqlite://{}", dir.path().join("relay.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("db");
    sqlx::query("PRAGMA synchronous = FULL")
        .execute(&mut conn)
        .await
        .expect("pragma");
    let n = JOBS * 2; // a claim and a completion per job
    let started = Instant::now();
    for i in 0..n {
        sqlx::query("UPDATE jobs SET updated_at = ?")
            .bind(i64::from(i))
            .execute(&mut conn)
            .await
            .expect("update");
    }
    f64::from(JOBS) / started.elapsed().as_secs_f64()
}

fn photo_12mp() -> Vec<u8> {
    let (w, h) = (4000u32, 3000u32);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let noise = (seed & 31) as u8;
        image::Rgb([
            (x * 255 / w) as u8 ^ noise,
            (y * 255 / h) as u8,
            noise.wrapping_mul(5),
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .expect("encode");
    out
}

fn ct_slice(dir: &std::path::Path) -> std::path::PathBuf {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
    let mut obj = InMemDicomObject::new_empty();
    let text = |tag, vr, v: &str| DataElement::new(tag, vr, PrimitiveValue::from(v));
    obj.put(text(
        tags::SOP_CLASS_UID,
        VR::UI,
        "1.2.840.10008.5.1.4.1.1.2",
    ));
    obj.put(text(tags::SOP_INSTANCE_UID, VR::UI, "2.25.1001"));
    obj.put(text(tags::STUDY_INSTANCE_UID, VR::UI, "2.25.1002"));
    obj.put(text(tags::SERIES_INSTANCE_UID, VR::UI, "2.25.1003"));
    obj.put(text(tags::MODALITY, VR::CS, "CT"));
    obj.put(text(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    ));
    for (tag, v) in [
        (tags::ROWS, 512u16),
        (tags::COLUMNS, 512),
        (tags::BITS_ALLOCATED, 16),
        (tags::BITS_STORED, 16),
        (tags::HIGH_BIT, 15),
        (tags::SAMPLES_PER_PIXEL, 1),
        (tags::PIXEL_REPRESENTATION, 1),
    ] {
        obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
    }
    obj.put(text(tags::RESCALE_INTERCEPT, VR::DS, "-1024"));
    obj.put(text(tags::RESCALE_SLOPE, VR::DS, "1"));
    let pixels: Vec<i16> = (0..512 * 512)
        .map(|i| ((i % 512) as i16 * 4) - 200 + ((i / 512) as i16 % 64))
        .collect();
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::I16(pixels.into()),
    ));
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax("1.2.840.10008.1.2.1")
                .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.2")
                .media_storage_sop_instance_uid("2.25.1001"),
        )
        .expect("meta");
    let path = dir.join("ct.dcm");
    file.write_to_file(&path).expect("write");
    path
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> f64 {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect(),
    )
}

/// p50 and p99 of the worklist query over 100 000 cases, in milliseconds.
async fn worklist_latency() -> (f64, f64) {
    use relay_workers::audit::AuditContext;
    use relay_workers::catalog::{Accounts, Cases, Consult};
    use relay_workers::model::{
        Case, Name, NewCase, NewUser, Specialty, Timestamp, UserId, WorklistQuery,
    };
    let dir = tempfile::tempdir().expect("dir");
    let catalog = catalog(&dir).await;
    let ctx = AuditContext::operator();
    let office = catalog
        .create_office(&ctx, Name::try_from("Bench".to_owned()).expect("name"))
        .await
        .expect("office");
    let user = catalog
        .create_user(
            &ctx,
            NewUser::Office {
                name: Name::try_from("U".to_owned()).expect("name"),
                office: office.id,
            },
        )
        .await
        .expect("user");
    let new: NewCase = serde_json::from_value(serde_json::json!({
        "patient": {"name": "P", "birth_date": "1970-01-01", "sex": "female", "mrn": "M"},
        "specialty": "dermatology", "question": "Q"
    }))
    .expect("referral");
    catalog
        .create_case(
            &ctx,
            &Case::draft(new, office.id, user.id, Timestamp::now()),
        )
        .await
        .expect("case");
    {
        use sqlx::Connection;
        let url = format!("sqlite://{}", dir.path().join("relay.db").display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("db");
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) \
             INSERT INTO cases SELECT printf('%08x-0000-7000-8000-%012x', i, i), c.office_id, c.created_by, \
               CASE WHEN i % 10 < 7 THEN 'submitted' ELSE 'reported' END, \
               CASE WHEN i % 2 = 0 THEN 'dermatology' ELSE 'radiology' END, \
               CASE WHEN i % 20 = 0 THEN 'stat' WHEN i % 5 = 0 THEN 'urgent' ELSE 'routine' END, \
               c.patient_name, c.patient_birth_date, c.patient_sex, c.patient_mrn, c.question, c.history, \
               NULL, NULL, NULL, NULL, NULL, NULL, NULL, c.created_at + i, c.created_at + i, c.created_at + i, NULL, \
               c.created_at + i, c.created_at + i + 86400000 * (i % 4), NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL \
             FROM n, (SELECT * FROM cases LIMIT 1) c",
        )
        .execute(&mut conn)
        .await
        .expect("100 000 cases");
        sqlx::query("ANALYZE")
            .execute(&mut conn)
            .await
            .expect("analyze");
    }
    let query = WorklistQuery {
        page: 1,
        per_page: 25,
        ..WorklistQuery::default()
    };
    let specialist = UserId::generate();
    let mut samples = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let page = catalog
            .worklist(&ctx, specialist, Specialty::Dermatology, &query)
            .await
            .expect("worklist");
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(page.items.len(), 25);
    }
    samples.sort_by(f64::total_cmp);
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

#[tokio::main]
async fn main() {
    println!(
        "relay stages benchmark ({} cores; medians)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let commits = commit_rate().await;
    for workers in [1, 4] {
        let rates: Vec<f64> = futures_median(workers).await;
        let rate = median(rates);
        println!(
            "queue claim+complete, {workers} worker(s): {rate:8.1} jobs/s   baseline {commits:8.1} jobs/s of bare durable commits   ratio {:.2}",
            rate / commits
        );
    }
    let (p50, p99) = worklist_latency().await;
    println!(
        "worklist page of 25 with 100 000 cases: p50 {p50:6.1} ms   p99 {p99:6.1} ms   (200 queries, audit events included)"
    );
    let limits = DeriveLimits::default();
    let photo = photo_12mp();
    let decode = time(3, || image::load_from_memory(&photo).expect("decode"));
    let derive = time(3, || derive_photo(&photo, &limits).expect("derive"));
    println!(
        "derive 12 MP JPEG ({:.1} MB): {derive:8.1} ms   raw decode {decode:8.1} ms   ratio {:.2}",
        photo.len() as f64 / 1e6,
        derive / decode
    );
    let dir = tempfile::tempdir().expect("dir");
    let ct = ct_slice(dir.path());
    let ct_decode = time(5, || {
        use dicom_pixeldata::PixelDecoder;
        dicom_object::open_file(&ct)
            .expect("open")
            .decode_pixel_data()
            .expect("decode")
            .to_dynamic_image(0)
            .expect("image")
    });
    let ct_derive = time(5, || derive_dicom(&ct, &limits).expect("derive"));
    println!(
        "derive 512x512 CT slice: {ct_derive:8.1} ms   raw open+decode {ct_decode:8.1} ms   ratio {:.2}",
        ct_derive / ct_decode
    );
}

async fn futures_median(workers: usize) -> Vec<f64> {
    let mut v = Vec::new();
    for _ in 0..3 {
        v.push(queue_rate(workers).await);
    }
    v
}
