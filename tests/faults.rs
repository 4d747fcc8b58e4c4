//! The I/O fault sweep: every step of an upload fails in turn, and the
//! promise holds each time. For each failpoint of the upload path
//! (`relay_workers::failpoints::NAMES`: spool create and write, blob fsync,
//! mkdir, link and directory fsync, each SQL statement of the image
//! transaction, its commit, the audit insert), for a real photo and a real
//! DICOM instance, the N-th time the step runs fails, for N = 1, 2, … until
//! the upload runs clean, once (transient, `EIO`) and from then on
//! (persistent, `ENOSPC` for file steps). Each time: the client gets 5xx
//! (`507 insufficient_storage` for a full disk), no image row exists, no
//! blob is visible that no row records, no spool file is left anywhere in
//! the data directory, and the next upload succeeds on the same server. At
//! the end the audit chain verifies and the server stops cleanly.
//!
//! The `relay` binary `cargo test` builds has the failpoints compiled in
//! (the root package's dev-dependency enables `relay-workers/failpoints`);
//! a test changes them through the server's failpoint control socket.

mod support;

#[path = "faults/full_disk.rs"]
mod full_disk;
#[path = "faults/syscalls.rs"]
mod syscalls;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use relay_workers::failpoints::NAMES;
use support::{Relay, Server, count, files_under};

/// Failpoints whose errors are file-system errors (a full disk is `507`).
const FILE_STEPS: &[&str] = &[
    "spool.create",
    "spool.write",
    "blob.fsync",
    "blob.mkdir",
    "blob.link",
    "blob.dir_fsync",
];

/// A file the full-disk test fills the data directory's filesystem with.
const FILLER: &str = "filler";

/// No step runs this often in one upload; a sweep past it is a bug here.
const MAX_N: usize = 40;

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Fails the N-th time only.
    Transient,
    /// Fails the N-th time and every time after, until cleared.
    Persistent,
}

/// The server's failpoint control socket.
struct Control {
    path: PathBuf,
}

impl Control {
    fn set(&self, name: &str, actions: &str) {
        let mut stream = UnixStream::connect(&self.path).unwrap_or_else(|e| {
            panic!(
                "no failpoint control socket at {} ({e}): was the relay binary built without \
                 the failpoints feature?",
                self.path.display()
            )
        });
        writeln!(stream, "{name}={actions}").expect("write control");
        let mut answer = String::new();
        BufReader::new(stream)
            .read_line(&mut answer)
            .expect("read control");
        assert_eq!(answer.trim(), "ok", "failpoint {name}={actions}");
    }

    fn clear(&self, name: &str) {
        self.set(name, "");
    }
}

/// Distinct real files to upload, so no upload finds its bytes already
/// stored (which would skip the blob steps).
enum Kind {
    /// The GPS-tagged camera photo (its location removal writes a second
    /// spool file), made distinct by a JPEG comment segment.
    Photo,
    /// Real DICOM instances, each with a SOP Instance UID of its own.
    Dicom(Vec<PathBuf>),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Photo => "photo",
            Kind::Dicom(_) => "dicom",
        }
    }

    fn file(&self, i: usize) -> (Vec<u8>, &'static str) {
        match self {
            Kind::Photo => (
                with_comment(
                    &support::fixture("photos/camera-gps.jpg"),
                    &format!("fault sweep {i}"),
                ),
                "image/jpeg",
            ),
            Kind::Dicom(files) => (
                std::fs::read(&files[i % files.len()]).expect("instance"),
                "application/dicom",
            ),
        }
    }
}

/// A JPEG with a comment segment inserted after its application segments.
fn with_comment(jpeg: &[u8], comment: &str) -> Vec<u8> {
    let mut at = 2;
    while jpeg[at] == 0xFF && (0xE0..=0xEF).contains(&jpeg[at + 1]) {
        at += 2 + usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
    }
    let len = u16::try_from(comment.len() + 2).expect("short comment");
    let mut out = jpeg[..at].to_vec();
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(comment.as_bytes());
    out.extend_from_slice(&jpeg[at..]);
    out
}

struct Sweep {
    relay: Relay,
    server: Server,
    control: Control,
    token: String,
    case: String,
    /// Uploads acknowledged with 201.
    stored: i64,
    /// Files handed out so far (each upload attempt gets a new one).
    next: usize,
    cases: usize,
}

impl Sweep {
    async fn start() -> Self {
        Self::start_in(Relay::new(), &[]).await
    }

    /// A server of `relay` (whose data directory may already be mounted
    /// somewhere of the test's choosing) run through `wrapper`.
    async fn start_in(relay: Relay, wrapper: &[&str]) -> Self {
        let (_office, _user, token) = relay.office_with_user("Sweep Clinic");
        let path = relay.dir().join("failpoints.sock");
        let socket = path.to_str().expect("utf-8 path").to_owned();
        let server = relay.start_via(
            wrapper,
            &["serve", "--listen", "127.0.0.1:0", "--workers", "0"],
            &[("RELAY_FAILPOINTS_SOCKET", &socket)],
        );
        let case = server.create_case(&token, "dermatology").await;
        Self {
            relay,
            server,
            control: Control { path },
            token,
            case,
            stored: 0,
            next: 0,
            cases: 0,
        }
    }

    async fn upload(&self, bytes: Vec<u8>, media: &str) -> (u16, serde_json::Value) {
        let request = self
            .server
            .http
            .post(self.server.url(&format!(
                "/api/v1/cases/{}/images?filename=sweep",
                self.case
            )))
            .header("content-type", media)
            .body(bytes);
        self.server.send(request, &self.token).await
    }

    /// Sweeps `name` over N = 1… for one kind of file in one mode.
    async fn sweep(&mut self, name: &str, kind: &Kind, mode: Mode) {
        let file_step = FILE_STEPS.contains(&name);
        let arg = match mode {
            Mode::Persistent if file_step => "enospc",
            _ => "eio",
        };
        for n in 1..=MAX_N {
            let skip = if n > 1 {
                format!("{}*off->", n - 1)
            } else {
                String::new()
            };
            let actions = match mode {
                Mode::Transient => format!("{skip}1*return({arg})"),
                Mode::Persistent => format!("{skip}return({arg})"),
            };
            self.control.set(name, &actions);
            let (bytes, media) = kind.file(self.next);
            self.next += 1;
            let what = format!("{name} #{n} {mode:?} {}", kind.name());
            let (status, body) = self.upload(bytes.clone(), media).await;
            if status == 201 {
                // The step runs fewer than n times: the upload ran clean.
                self.control.clear(name);
                self.stored += 1;
                self.assert_consistent(&what).await;
                assert!(
                    n > 1 || !matches!(name, "spool.create" | "blob.fsync" | "catalog.image.sql"),
                    "{what}: a step every upload takes did not fail (are failpoints compiled in?)"
                );
                return;
            }
            self.cases += 1;
            self.assert_refused(&what, status, &body, file_step && arg == "enospc");
            self.assert_consistent(&what).await;
            if let Mode::Persistent = mode {
                let (status, body) = self.upload(bytes.clone(), media).await;
                self.assert_refused(&format!("{what}, again"), status, &body, arg == "enospc");
                self.assert_consistent(&what).await;
                self.control.clear(name);
            }
            // The client's retry of the same bytes, on the same server.
            let (status, body) = self.upload(bytes, media).await;
            assert_eq!(status, 201, "{what}: the next upload: {body}");
            self.stored += 1;
            self.assert_consistent(&what).await;
        }
        panic!("{name}: the upload never ran clean within {MAX_N} faults");
    }

    fn assert_refused(&self, what: &str, status: u16, body: &serde_json::Value, full: bool) {
        if full {
            assert_eq!(
                status,
                507,
                "{what}: {body}; log:\n{}",
                warnings(&self.server.log())
            );
            assert_eq!(body["error"], "insufficient_storage", "{what}: {body}");
        } else {
            assert!((500..600).contains(&status), "{what}: {status} {body}");
        }
    }

    /// No row but those acknowledged, no blob file but those the catalog
    /// records, every recorded blob present, no spool file left.
    async fn assert_consistent(&self, what: &str) {
        let mut db = self.relay.database().await;
        assert_eq!(
            count(&mut db, "images").await,
            self.stored,
            "{what}: image rows"
        );
        let recorded: BTreeSet<String> = sqlx::query_scalar("SELECT sha256 FROM blobs")
            .fetch_all(&mut db)
            .await
            .expect("blob rows")
            .into_iter()
            .collect();
        let data = self.relay.data_dir();
        let blob_root = data.join("blobs/sha256");
        let mut files = BTreeSet::new();
        for path in files_under(&data) {
            if path.starts_with(&blob_root) {
                files.insert(file_name(&path));
            } else {
                let name = file_name(&path);
                assert!(
                    ["relay.db", "relay.db-wal", "relay.db-shm", FILLER].contains(&name.as_str()),
                    "{what}: a file left behind: {}",
                    path.display()
                );
            }
        }
        assert_eq!(
            files,
            recorded,
            "{what}: blob files against blob rows; log:\n{}",
            warnings(&self.server.log())
        );
    }

    fn finish(self, name: &str) {
        let verified = self.relay.run(&["admin", "audit", "verify"]);
        assert!(
            verified.status.success(),
            "{name}: audit verify: {}",
            String::from_utf8_lossy(&verified.stdout)
        );
        eprintln!(
            "{name}: {} fault cases, {} uploads stored",
            self.cases, self.stored
        );
        self.server.stop();
    }
}

/// The server's warnings and errors, for a failure message.
fn warnings(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One server per failpoint: both kinds of file, both modes.
async fn sweep_failpoint(name: &str) {
    assert!(NAMES.contains(&name), "{name} is not a failpoint");
    let instances = tempfile::tempdir().expect("tempdir");
    let dicom = Kind::Dicom(support::dicom_instances(instances.path(), 4 * MAX_N));
    let mut sweep = Sweep::start().await;
    for kind in [&Kind::Photo, &dicom] {
        for mode in [Mode::Transient, Mode::Persistent] {
            sweep.sweep(name, kind, mode).await;
        }
    }
    sweep.finish(name);
}

#[tokio::test]
async fn spool_create() {
    sweep_failpoint("spool.create").await;
}

#[tokio::test]
async fn spool_write() {
    sweep_failpoint("spool.write").await;
}

#[tokio::test]
async fn blob_fsync() {
    sweep_failpoint("blob.fsync").await;
}

#[tokio::test]
async fn blob_mkdir() {
    sweep_failpoint("blob.mkdir").await;
}

#[tokio::test]
async fn blob_link() {
    sweep_failpoint("blob.link").await;
}

#[tokio::test]
async fn blob_dir_fsync() {
    sweep_failpoint("blob.dir_fsync").await;
}

#[tokio::test]
async fn catalog_image_sql() {
    sweep_failpoint("catalog.image.sql").await;
}

#[tokio::test]
async fn catalog_image_commit() {
    sweep_failpoint("catalog.image.commit").await;
}

#[tokio::test]
async fn audit_insert() {
    sweep_failpoint("audit.insert").await;
}

/// Regression: a new blob directory whose parent could not be fsynced was
/// left in place, so the next put found it and never synced its entry.
/// Now it is removed and the next put creates (and syncs) it again.
#[tokio::test]
async fn a_directory_whose_parent_was_not_synced_is_made_again() {
    let mut sweep = Sweep::start().await;
    let (bytes, media) = Kind::Photo.file(0);
    sweep.control.set("blob.dir_fsync", "1*return(eio)");
    let (status, body) = sweep.upload(bytes.clone(), media).await;
    assert_eq!(status, 500, "{body}");
    let shards = std::fs::read_dir(sweep.relay.data_dir().join("blobs/sha256"))
        .expect("blob root")
        .count();
    assert_eq!(shards, 0, "the unsynced directory was left behind");
    let (status, body) = sweep.upload(bytes, media).await;
    assert_eq!(status, 201, "{body}");
    sweep.stored = 1;
    sweep.assert_consistent("after the retry").await;
    sweep.finish("regression");
}

/// Regression: when the image transaction failed after the blob was put,
/// the blob stayed in the store (visible, recorded by no row) until a
/// sweep; now the upload removes what it wrote.
#[tokio::test]
async fn a_failed_commit_leaves_no_blob() {
    let sweep = Sweep::start().await;
    let (bytes, media) = Kind::Photo.file(0);
    sweep.control.set("catalog.image.commit", "1*return(eio)");
    let (status, body) = sweep.upload(bytes, media).await;
    assert!((500..600).contains(&status), "{status} {body}");
    assert!(
        files_under(&sweep.relay.data_dir().join("blobs/sha256")).is_empty(),
        "the uncommitted blob is still in the store"
    );
    sweep.assert_consistent("after the failed commit").await;
    sweep.finish("regression");
}

/// The `relay` binary the tests run has the failpoints compiled in, and
/// `FAILPOINTS` configures them at start (feature unification of the
/// dev-dependency: were it missing, this upload would be stored).
#[tokio::test]
async fn the_test_binary_obeys_failpoints_from_the_environment() {
    let relay = Relay::new();
    let (_office, _user, token) = relay.office_with_user("Env Clinic");
    let server = relay.start_with(
        &["serve", "--listen", "127.0.0.1:0", "--workers", "0"],
        &[("FAILPOINTS", "blob.fsync=1*return(enospc)")],
    );
    let case = server.create_case(&token, "dermatology").await;
    let request = server
        .http
        .post(server.url(&format!("/api/v1/cases/{case}/images?filename=env")))
        .header("content-type", "image/jpeg")
        .body(support::fixture("photos/camera-plain.jpg"));
    let (status, body) = server
        .send(request.try_clone().expect("clone"), &token)
        .await;
    assert_eq!(status, 507, "{body}");
    let (status, body) = server.send(request, &token).await;
    assert_eq!(status, 201, "{body}");
    server.stop();
}

/// Regression: a tus chunk whose write or fsync failed stayed in the
/// upload's file, whose length is the offset, so the next `HEAD` reported
/// it as received and the client went on to a `201` after a failed fsync.
/// Now the upload is cut back to the last acknowledged offset.
#[tokio::test]
async fn a_tus_chunk_whose_fsync_failed_is_not_counted() {
    use base64::Engine;
    let sweep = Sweep::start().await;
    let (bytes, _) = Kind::Photo.file(0);
    let tus = |method: reqwest::Method, path: &str| {
        sweep
            .server
            .http
            .request(method, sweep.server.url(path))
            .bearer_auth(&sweep.token)
            .header("tus-resumable", "1.0.0")
    };
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    let created = tus(reqwest::Method::POST, "/api/v1/uploads")
        .header("upload-length", bytes.len().to_string())
        .header(
            "upload-metadata",
            format!(
                "case {},filename {},filetype {}",
                b64(&sweep.case),
                b64("tus.jpg"),
                b64("image/jpeg")
            ),
        )
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let upload = created.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let half = bytes.len() / 2;
    let patch = |offset: usize, body: &[u8]| {
        tus(reqwest::Method::PATCH, &upload)
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", offset.to_string())
            .body(body.to_vec())
    };
    let offset = || async {
        let head = tus(reqwest::Method::HEAD, &upload)
            .send()
            .await
            .expect("head");
        head.headers()["upload-offset"]
            .to_str()
            .expect("offset")
            .parse::<usize>()
            .expect("number")
    };
    let first = patch(0, &bytes[..half]).send().await.expect("patch");
    assert_eq!(first.status(), 204);
    sweep.control.set("resumable.fsync", "1*return(eio)");
    let failed = patch(half, &bytes[half..]).send().await.expect("patch");
    assert!(failed.status().is_server_error(), "{}", failed.status());
    assert_eq!(
        offset().await,
        half,
        "bytes whose fsync failed were counted"
    );
    let second = patch(half, &bytes[half..]).send().await.expect("patch");
    assert!(second.status().is_success(), "{}", second.status());
    let mut db = sweep.relay.database().await;
    assert_eq!(count(&mut db, "images").await, 1);
    sweep.finish("tus");
}
