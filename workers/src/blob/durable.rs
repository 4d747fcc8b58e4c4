//! The one place a file becomes durable.
//!
//! A blob is written to a temporary file, `fsync`ed, then *linked* (not
//! renamed) to its final name and the directory `fsync`ed. Linking fails if
//! the name exists, so a key is never overwritten: that is also how the same
//! bytes uploaded twice are stored once. The temporary file is a
//! [`tempfile::NamedTempFile`], removed when dropped on every error path.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::failpoints::fail_io;

/// What a durable put found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persisted {
    /// The file is now durable under its name.
    Created,
    /// A file already had that name; nothing was written.
    AlreadyPresent,
}

/// Makes `temp` (already written) durable at `dest` without overwriting.
/// Blocking: call from a blocking pool.
pub fn persist_no_clobber(temp: &tempfile::NamedTempFile, dest: &Path) -> io::Result<Persisted> {
    persist_file_no_clobber(temp.as_file(), temp.path(), dest)
}

/// [`persist_no_clobber`] for a spool file given by its open handle and its
/// path (so it can run on a blocking thread while the caller keeps the
/// file).
///
/// An error after the link (the directory fsync) leaves the bytes visible
/// under `dest` though not known to be durable: they may be removed only
/// under the blob's catalog lock, which this function does not hold, so the
/// caller does (ingest's undo) or leaves them to `sweep`.
pub fn persist_file_no_clobber(file: &File, path: &Path, dest: &Path) -> io::Result<Persisted> {
    sync_file(file)?;
    let dir = dest
        .parent()
        .ok_or_else(|| io::Error::other("blob path has no parent directory"))?;
    create_dir_durable(dir)?;
    match link(path, dest) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Persisted::AlreadyPresent),
        Err(e) => return Err(e),
    }
    sync_dir(dir)?;
    Ok(Persisted::Created)
}

fn sync_file(file: &File) -> io::Result<()> {
    fail_io!("blob.fsync");
    file.sync_all()
}

fn link(from: &Path, to: &Path) -> io::Result<()> {
    fail_io!("blob.link");
    std::fs::hard_link(from, to)
}

/// Creates `dir` and any missing parents, fsyncing each parent whose entry
/// list changed, so the new directories survive a crash too. A directory
/// whose parent could not be fsynced is removed again: left in place, the
/// next put would find it and never sync its entry.
fn create_dir_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_durable(parent)?;
    }
    match create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(parent) = dir.parent()
        && let Err(e) = sync_dir(parent)
    {
        // (Refused, and harmless, if a concurrent put linked into it.)
        let _ = std::fs::remove_dir(dir);
        return Err(e);
    }
    Ok(())
}

fn create_dir(dir: &Path) -> io::Result<()> {
    fail_io!("blob.mkdir");
    std::fs::create_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fail_io!("blob.dir_fsync");
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn temp_with(dir: &Path, bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut t = tempfile::NamedTempFile::new_in(dir).expect("temp");
        t.write_all(bytes).expect("write");
        t
    }

    #[test]
    fn creates_then_refuses_to_overwrite() {
        let root = tempfile::tempdir().expect("dir");
        let dest = root.path().join("a/b/blob");
        let first = temp_with(root.path(), b"first");
        assert_eq!(
            persist_no_clobber(&first, &dest).expect("persist"),
            Persisted::Created
        );
        let second = temp_with(root.path(), b"second");
        assert_eq!(
            persist_no_clobber(&second, &dest).expect("persist"),
            Persisted::AlreadyPresent
        );
        assert_eq!(std::fs::read(&dest).expect("read"), b"first");
    }

    #[test]
    fn the_temporary_file_is_gone_once_dropped() {
        let root = tempfile::tempdir().expect("dir");
        let temp = temp_with(root.path(), b"x");
        let path = temp.path().to_owned();
        persist_no_clobber(&temp, &root.path().join("k/blob")).expect("persist");
        drop(temp);
        assert!(!path.exists());
        assert!(root.path().join("k/blob").exists());
    }
}
