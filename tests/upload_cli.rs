//! `relay upload`, the office's client, against a real server: a folder of
//! real DICOM files and photos with a bad file among them (reported and
//! skipped, the rest stored, each receipt's digest the file's); a large
//! upload whose network drops mid-way (resumed from the server's offset);
//! and the client SIGKILLed mid-file and started again (it goes on with the
//! upload it began: one image, byte-identical).

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use sha2::Digest;
use support::proxy::{Mode, Proxy};
use support::{Relay, Server, files_under};

fn sha_of(path: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("read")))
}

fn token_file(relay: &Relay, token: &str) -> PathBuf {
    let path = relay.dir().join("office.token");
    std::fs::write(&path, token).expect("token file");
    path
}

/// The bytes of uploads in progress on the server.
fn uploading(relay: &Relay) -> u64 {
    files_under(&relay.data_dir().join("uploads"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

async fn images(server: &Server, token: &str, case: &str) -> Vec<Value> {
    let (_, listed) = server
        .get(&format!("/api/v1/cases/{case}/images"), token)
        .await;
    listed.as_array().expect("images").clone()
}

#[tokio::test]
async fn a_folder_goes_up_and_a_bad_file_is_reported_and_skipped() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Rural Clinic");
    let server = relay.start();
    let case = server.create_case(&office, "radiology").await;
    let folder = tempfile::tempdir().expect("tempdir");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut good = Vec::new();
    for name in [
        "dicom/CT_small.dcm",
        "dicom/MR_small.dcm",
        "photos/lesion.png",
    ] {
        let dest = folder
            .path()
            .join("study")
            .join(Path::new(name).file_name().expect("name"));
        std::fs::create_dir_all(dest.parent().expect("dir")).expect("dir");
        std::fs::copy(fixtures.join(name), &dest).expect("copy");
        good.push(dest);
    }
    let bad = folder.path().join("study/truncated.jpg");
    std::fs::copy(fixtures.join("bad/truncated.jpg"), &bad).expect("copy");
    let tokens = token_file(&relay, &office);

    let out = relay
        .command()
        .args(["upload", "--server", &server.url(""), "--token-file"])
        .arg(&tokens)
        .args(["--case", &case, "--json", "--state-dir"])
        .arg(relay.dir().join("state"))
        .arg(folder.path())
        .output()
        .expect("relay upload runs");
    assert_eq!(out.status.code(), Some(1), "a bad file fails the run");
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for path in &good {
        let line = lines
            .iter()
            .find(|l| l["file"] == path.display().to_string())
            .unwrap_or_else(|| panic!("{} reported", path.display()));
        assert_eq!(line["ok"], true, "{line}");
        assert_eq!(
            line["sha256"],
            sha_of(path).as_str(),
            "the receipt names the file's bytes"
        );
    }
    let refused = lines
        .iter()
        .find(|l| l["file"] == bad.display().to_string())
        .expect("the bad file is reported");
    assert_eq!(refused["ok"], false);
    assert!(
        refused["error"]
            .as_str()
            .expect("reason")
            .contains("export it again"),
        "{refused}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 of 4 files uploaded"));
    assert_eq!(images(&server, &office, &case).await.len(), 3);
    server.stop();
}

#[tokio::test]
async fn a_dropped_network_and_a_killed_client_both_resume() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Rural Clinic");
    let server = relay.start();
    let work = tempfile::tempdir().expect("tempdir");
    let large = work.path().join("ct.dcm");
    support::large_dicom(&large, 48);
    let sha = sha_of(&large);
    let tokens = token_file(&relay, &office);
    let upstream = server
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("addr");
    let proxy = Proxy::start(upstream);
    let via = format!("http://{}", proxy.addr());
    let state = relay.dir().join("state");
    let upload = |case: &str| {
        relay
            .command()
            .args(["upload", "--server", &via, "--token-file"])
            .arg(&tokens)
            .args(["--case", case, "--concurrency", "1", "--state-dir"])
            .arg(&state)
            .arg(&large)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("relay upload starts")
    };

    // The network drops once bytes are flowing, and comes back.
    let case = server.create_case(&office, "radiology").await;
    let child = upload(&case);
    for _ in 0..600 {
        if uploading(&relay) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(uploading(&relay) > 0, "the upload started");
    proxy.set(Mode::Down);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.set(Mode::Forward);
    let out = child.wait_with_output().expect("finishes");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("resuming") || stderr.contains("retrying"),
        "{stderr}"
    );
    assert!(stdout.contains(&sha), "{stdout}");
    let stored = images(&server, &office, &case).await;
    assert_eq!(stored.len(), 1);
    let (_, bytes) = server
        .original(&office, stored[0]["id"].as_str().expect("id"))
        .await;
    assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), sha);

    // The client is killed mid-file; run again, it goes on where it was.
    let case = server.create_case(&office, "radiology").await;
    let mut child = upload(&case);
    for _ in 0..1000 {
        if uploading(&relay) >= 16 << 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let kept = uploading(&relay);
    assert!(kept >= 16 << 20, "{kept}");
    let out = upload(&case).wait_with_output().expect("finishes");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("(resumed)"), "{stdout}");
    let stored = images(&server, &office, &case).await;
    assert_eq!(stored.len(), 1, "one image, not two");
    let (_, bytes) = server
        .original(&office, stored[0]["id"].as_str().expect("id"))
        .await;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&bytes)),
        sha,
        "byte-identical"
    );
    drop(proxy);
    server.stop();
}
