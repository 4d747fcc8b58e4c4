//! Moving a finished file out of the way: to `done/` or `failed/` under the
//! watched folder, at the same relative path, with a reason file beside a
//! failed one. The destination is chosen (and journaled) before the move,
//! so a move cut short by a crash is finished on the next start; a name
//! already taken in `done/` gets a numbered one instead of overwriting.

use std::io;
use std::path::Path;

use super::durable;

/// A free path for `rel` under `folder` (`done` or `failed`), relative to
/// the watched folder: `done/a/x.dcm`, else `done/a/x-1.dcm`, …
pub fn free_dest(root: &Path, folder: &str, rel: &str) -> String {
    let first = format!("{folder}/{rel}");
    if !taken(root, &first) {
        return first;
    }
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (name, String::new()),
    };
    let dir = if dir.is_empty() {
        folder.to_owned()
    } else {
        format!("{folder}/{dir}")
    };
    (1u32..)
        .map(|n| format!("{dir}/{stem}-{n}{ext}"))
        .find(|candidate| !taken(root, candidate))
        .unwrap_or(first)
}

fn taken(root: &Path, rel: &str) -> bool {
    root.join(rel).exists() || root.join(format!("{rel}.reason.txt")).exists()
}

/// Moves `rel` to `dest` (both relative to `root`) durably. Already moved
/// (the source gone, the destination there) counts as done.
pub fn move_file(root: &Path, rel: &str, dest: &str) -> io::Result<()> {
    let from = root.join(rel);
    let to = root.join(dest);
    if !from.exists() && to.exists() {
        return Ok(());
    }
    let to_dir = durable::parent(&to).to_owned();
    std::fs::create_dir_all(&to_dir)?;
    std::fs::rename(&from, &to)?;
    durable::sync_dir(&to_dir)?;
    durable::sync_dir(durable::parent(&from))
}

/// Writes `<dest>.reason.txt`: why the file was refused, in ids and codes
/// only (no patient data: the server's messages carry none).
pub fn write_reason(root: &Path, dest: &str, lines: &[(&str, &str)]) -> io::Result<()> {
    let path = root.join(format!("{dest}.reason.txt"));
    std::fs::create_dir_all(durable::parent(&path))?;
    let mut text = String::new();
    for (key, value) in lines {
        text.push_str(key);
        text.push_str(": ");
        text.push_str(value);
        text.push('\n');
    }
    durable::replace(&path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_name_gets_a_number_and_a_move_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("a")).expect("dir");
        std::fs::write(root.join("a/x.dcm"), b"1").expect("write");
        assert_eq!(free_dest(root, "done", "a/x.dcm"), "done/a/x.dcm");
        move_file(root, "a/x.dcm", "done/a/x.dcm").expect("move");
        move_file(root, "a/x.dcm", "done/a/x.dcm").expect("moved already");
        std::fs::write(root.join("a/x.dcm"), b"2").expect("write");
        assert_eq!(free_dest(root, "done", "a/x.dcm"), "done/a/x-1.dcm");
        assert_eq!(free_dest(root, "done", "y"), "done/y");
        write_reason(root, "failed/a/x.dcm", &[("code", "invalid_dicom")]).expect("reason");
        assert_eq!(
            std::fs::read_to_string(root.join("failed/a/x.dcm.reason.txt")).expect("read"),
            "code: invalid_dicom\n"
        );
        assert_eq!(free_dest(root, "failed", "a/x.dcm"), "failed/a/x-1.dcm");
    }
}
