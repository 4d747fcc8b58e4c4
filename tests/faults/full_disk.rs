//! A real full disk: the data directory on an 8 MB tmpfs, filled to the
//! last byte. Uploads are refused `507 insufficient_storage`, nothing is
//! stored and no spool file is left; once space is freed the same server
//! stores again. Mounting needs privilege (root, or a user namespace the
//! machine allows): without it the test skips loudly.

use std::io::Write;
use std::process::Command;

use super::{FILLER, Kind, Sweep};
use support::Relay;

use crate::support;

/// A tmpfs mounted over a directory, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "\n*** SKIPPED a_full_disk_is_507_and_recovers_without_restart: cannot mount a tmpfs ({})\n",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros to `path` until the filesystem refuses more.
fn fill(path: &std::path::Path) {
    let mut file = std::fs::File::create(path).expect("filler");
    let block = vec![0u8; 64 << 10];
    loop {
        if file.write_all(&block).is_err() {
            break;
        }
    }
    // Whatever a partial block left, take it too.
    while file.write_all(&[0u8]).is_ok() {}
}

#[tokio::test]
async fn a_full_disk_is_507_and_recovers_without_restart() {
    let relay = Relay::new();
    let Some(_tmpfs) = Tmpfs::mount(&relay.data_dir(), "8m") else {
        return;
    };
    let instances = tempfile::tempdir().expect("tempdir");
    let dicom = Kind::Dicom(support::dicom_instances(instances.path(), 40));
    let kinds = [&Kind::Photo, &dicom];
    let filler = relay.data_dir().join(FILLER);
    let mut sweep = Sweep::start_in(relay, &[]).await;
    for round in 0..2 {
        fill(&filler);
        for kind in kinds {
            let (bytes, media) = kind.file(sweep.next);
            sweep.next += 1;
            let what = format!("full disk, round {round}, {}", kind.name());
            let (status, body) = sweep.upload(bytes.clone(), media).await;
            sweep.assert_refused(&what, status, &body, true);
            sweep.cases += 1;
            sweep.assert_consistent(&what).await;
            // Space again, and the same bytes are taken without a restart.
            std::fs::remove_file(&filler).expect("free space");
            let (status, body) = sweep.upload(bytes, media).await;
            assert_eq!(status, 201, "{what}, space freed: {body}");
            sweep.stored += 1;
            sweep.assert_consistent(&what).await;
            fill(&filler);
        }
        std::fs::remove_file(&filler).expect("free space");
    }
    sweep.finish("full disk");
}
