//! `relay reprocess verify` and `migrate` throughput against the least any
//! verification costs: reading every file and hashing it with sha256.
//!
//! `cargo bench --bench reprocess` (`RELAY_BENCH_VERIFY_MB` sets the store's
//! size; default 2048)
//!
//! The bench fills a Relay data directory with blobs of 1–16 MB of random
//! bytes (about 2 GB in all), each stored at its content address and
//! recorded in the catalog as ingest would, then times in one run, taking
//! turns three times:
//!
//! - **verify**: the real `relay reprocess verify --concurrency 4` binary
//!   over the whole store (catalog walk in batches, a checkpoint per batch,
//!   every blob re-hashed through the store's verified reader);
//! - **migrate**: the real `relay reprocess migrate --delete-source
//!   --concurrency 4` moving every blob to a second directory and, the next
//!   turn, back (each blob read and hashed, written and fsynced, read back
//!   and hashed on the target, recorded, the old copy removed);
//! - **baseline**: the same files read in 256 KiB chunks and hashed with
//!   sha256 by 4 threads in this process, nothing else;
//! - **copy baseline** (for migrate): the same files copied by 4 threads to
//!   a scratch directory and each fsynced, then removed — the least a
//!   durable move costs on this disk, before any hashing.
//!
//! Both read from the page cache when the machine has the memory (the files
//! were just written; the baseline and verify alternate), so the ratio is
//! of CPU and I/O path, not of the disk. The figures to watch are verify
//! MB/s over baseline MB/s (target ≥ 0.8) and migrate MB/s over the same
//! baseline (it does two hashings and a durable write per blob, so well
//! below 1 is expected).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::Digest;
use support::Relay;

const THREADS: usize = 4;

/// A cheap, seedable byte source (xorshift), so the bench needs no RNG crate.
fn fill(buf: &mut [u8], mut seed: u64) {
    for chunk in buf.chunks_mut(8) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let bytes = seed.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// Writes blobs totalling about `total_mb` into the store and the catalog;
/// returns their paths.
async fn stock(relay: &Relay, total_mb: u64) -> Vec<PathBuf> {
    // The catalog and its tables exist once the CLI has opened it.
    relay.create_office("Bench Archive");
    let mut db = relay.database().await;
    let root = relay.data_dir().join("blobs/sha256");
    let mut paths = Vec::new();
    let mut written = 0u64;
    let mut n = 0u64;
    while written < total_mb << 20 {
        let size = ((n % 16) + 1) << 20;
        let mut bytes = vec![0u8; size as usize];
        fill(&mut bytes, n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let hex = hex::encode(sha2::Sha256::digest(&bytes));
        let dir = root.join(&hex[..2]).join(&hex[2..4]);
        std::fs::create_dir_all(&dir).expect("blob dir");
        let path = dir.join(&hex);
        std::fs::write(&path, &bytes).expect("blob");
        sqlx::query("INSERT INTO blobs (sha256, size, created_at) VALUES (?, ?, ?)")
            .bind(&hex)
            .bind(size as i64)
            .bind(0_i64)
            .execute(&mut db)
            .await
            .expect("blob row");
        paths.push(path);
        written += size;
        n += 1;
    }
    paths
}

/// Reads and hashes every file with `THREADS` threads; returns seconds.
fn baseline(paths: &[PathBuf]) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for share in paths.chunks(paths.len().div_ceil(THREADS)) {
            scope.spawn(move || {
                let mut buf = vec![0u8; 256 << 10];
                for path in share {
                    let mut file = std::fs::File::open(path).expect("open");
                    let mut hasher = sha2::Sha256::new();
                    loop {
                        let n = file.read(&mut buf).expect("read");
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buf[..n]);
                    }
                    let digest = hex::encode(hasher.finalize());
                    assert_eq!(
                        Path::new(path).file_name().and_then(|f| f.to_str()),
                        Some(digest.as_str())
                    );
                }
            });
        }
    });
    started.elapsed().as_secs_f64()
}

/// Copies every file into `scratch` with 4 threads, fsyncing each; returns
/// seconds (the copies are removed after the clock stops).
fn copy_baseline(paths: &[PathBuf], scratch: &Path) -> f64 {
    std::fs::create_dir_all(scratch).expect("scratch dir");
    let started = Instant::now();
    std::thread::scope(|scope| {
        for share in paths.chunks(paths.len().div_ceil(THREADS)) {
            scope.spawn(move || {
                for path in share {
                    let dest = scratch.join(path.file_name().expect("name"));
                    std::fs::copy(path, &dest).expect("copy");
                    std::fs::File::open(&dest)
                        .and_then(|f| f.sync_all())
                        .expect("fsync");
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    std::fs::remove_dir_all(scratch).expect("remove scratch");
    seconds
}

/// Runs `relay reprocess verify`; returns seconds.
fn verify(relay: &Relay) -> f64 {
    let started = Instant::now();
    let out = relay.run(&["reprocess", "verify", "--concurrency", "4"]);
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "verify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    seconds
}

/// Runs `relay reprocess migrate --to URL --delete-source`; returns seconds.
fn migrate(relay: &Relay, to: &str) -> f64 {
    let started = Instant::now();
    let out = relay.run(&[
        "reprocess",
        "migrate",
        "--to",
        to,
        "--delete-source",
        "--concurrency",
        "4",
    ]);
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "migrate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    seconds
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let total_mb: u64 = std::env::var("RELAY_BENCH_VERIFY_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048);
    let relay = Relay::new();
    let paths = stock(&relay, total_mb).await;
    let bytes: u64 = paths
        .iter()
        .map(|p| std::fs::metadata(p).expect("size").len())
        .sum();
    let mb = bytes as f64 / 1e6;
    println!(
        "relay reprocess benchmark ({} cores): {} blobs, {mb:.0} MB",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        paths.len()
    );
    let home = format!("file://{}", relay.data_dir().join("blobs").display());
    let away = format!("file://{}", relay.dir().join("blobs-away").display());
    let (mut base, mut verifies, mut migrations) = (Vec::new(), Vec::new(), Vec::new());
    let mut copies = Vec::new();
    let scratch = relay.dir().join("copy-baseline");
    let dirs = [
        relay.data_dir().join("blobs"),
        relay.dir().join("blobs-away"),
    ];
    for turn in 0..3 {
        // The blobs are where the last migration put them.
        let here = support::files_under(&dirs[turn % 2].join("sha256"));
        assert_eq!(here.len(), paths.len(), "every blob is in one place");
        base.push(baseline(&here));
        copies.push(copy_baseline(&here, &scratch));
        verifies.push(verify(&relay));
        // Out on even turns, home on odd ones.
        let to = if turn % 2 == 0 { &away } else { &home };
        migrations.push(migrate(&relay, to));
    }
    let base = mb / median(base);
    let copied = mb / median(copies);
    let (verified, migrated) = (mb / median(verifies), mb / median(migrations));
    println!(
        "verify:  {verified:7.1} MB/s   baseline read+sha256 ({THREADS} threads): {base:7.1} MB/s   ratio {:.2}",
        verified / base
    );
    println!(
        "migrate: {migrated:7.1} MB/s   (fs→fs, --delete-source)                          ratio {:.2}",
        migrated / base
    );
    println!(
        "migrate: {migrated:7.1} MB/s   copy+fsync baseline ({THREADS} threads): {copied:7.1} MB/s    ratio {:.2}",
        migrated / copied
    );
}
