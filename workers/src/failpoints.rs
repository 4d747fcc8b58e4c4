//! Failpoints in the upload path, for the fault sweep (`tests/faults.rs`).
//!
//! Each step of an upload that can fail for reasons outside Relay's control
//! names a failpoint: the spool file's creation and writes, the blob's
//! fsync, mkdir, link and directory fsyncs, every SQL statement of the
//! upload, the commit and the audit insert, and a tus chunk's fsync. With
//! the `failpoints` feature (the `fail` crate) a failpoint configured in
//! `FAILPOINTS` (`name=actions;…`, e.g. `blob.fsync=2*off->1*return(eio)`:
//! the third fsync fails once) returns an I/O error there:
//! `return(enospc)` a full disk, any other argument `EIO`. Without the
//! feature the macros expand to nothing, so a release build carries no
//! trace of them.
//!
//! A test changes failpoints while the server runs through a Unix socket
//! named by `RELAY_FAILPOINTS_SOCKET` (one `name=actions` line per request,
//! `name=` to remove, answered `ok` or `error: …`): only with the feature,
//! and never over HTTP.

/// Every failpoint, in the order an upload meets them.
pub const NAMES: &[&str] = &[
    "spool.create",
    "spool.write",
    "blob.fsync",
    "blob.mkdir",
    "blob.link",
    "blob.dir_fsync",
    "catalog.image.sql",
    "catalog.image.commit",
    "audit.insert",
    // A tus chunk's fsync, before its new offset is answered.
    "resumable.fsync",
];

/// Returns early with an `io::Error` (converted by `From`) when the
/// failpoint `$name` fires.
#[cfg(feature = "failpoints")]
macro_rules! fail_io {
    ($name:literal) => {
        fail::fail_point!($name, |arg| Err(
            $crate::failpoints::io_error($name, arg).into()
        ))
    };
}

/// Without the `failpoints` feature: nothing at all.
#[cfg(not(feature = "failpoints"))]
macro_rules! fail_io {
    ($name:literal) => {};
}

/// Returns early with a database error when the failpoint `$name` fires.
#[cfg(feature = "failpoints")]
macro_rules! fail_sql {
    ($name:literal) => {
        fail::fail_point!($name, |arg| Err($crate::catalog::CatalogError::from(
            sqlx::Error::Io($crate::failpoints::io_error($name, arg))
        )))
    };
}

/// Without the `failpoints` feature: nothing at all.
#[cfg(not(feature = "failpoints"))]
macro_rules! fail_sql {
    ($name:literal) => {};
}

pub(crate) use {fail_io, fail_sql};

/// The error a fired failpoint returns: `ENOSPC` for `return(enospc)`,
/// `EIO` otherwise, as the kernel would report them.
#[cfg(feature = "failpoints")]
pub fn io_error(name: &str, arg: Option<String>) -> std::io::Error {
    const ENOSPC: i32 = 28;
    const EIO: i32 = 5;
    let errno = match arg.as_deref() {
        Some("enospc") => ENOSPC,
        _ => EIO,
    };
    tracing::warn!(failpoint = name, errno, "failpoint fired");
    std::io::Error::from_raw_os_error(errno)
}

/// Keeps the failpoint configuration of a process alive.
#[derive(Debug)]
pub struct Failpoints {
    #[cfg(feature = "failpoints")]
    _scenario: fail::FailScenario<'static>,
}

/// Configures failpoints from `FAILPOINTS` and, when
/// `RELAY_FAILPOINTS_SOCKET` names a path, listens there for changes.
/// Without the `failpoints` feature it does nothing. Call once, first
/// thing in `main`, and keep the value.
pub fn from_env() -> Failpoints {
    #[cfg(feature = "failpoints")]
    {
        let scenario = fail::FailScenario::setup();
        if let Some(path) = std::env::var_os("RELAY_FAILPOINTS_SOCKET") {
            control::listen(std::path::PathBuf::from(path));
        }
        Failpoints {
            _scenario: scenario,
        }
    }
    #[cfg(not(feature = "failpoints"))]
    Failpoints {}
}

#[cfg(feature = "failpoints")]
mod control {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::PathBuf;

    /// Serves `name=actions` lines on a Unix socket from a thread of its own.
    pub(super) fn listen(path: PathBuf) {
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "failpoint control socket cannot be bound");
                return;
            }
        };
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = serve(stream) {
                    tracing::warn!(error = %e, "failpoint control connection failed");
                }
            }
        });
    }

    fn serve(stream: UnixStream) -> std::io::Result<()> {
        let mut out = stream.try_clone()?;
        for line in BufReader::new(stream).lines() {
            let line = line?;
            let answer = match line.split_once('=') {
                Some((name, "")) => {
                    fail::remove(name.trim());
                    Ok(())
                }
                Some((name, actions)) => fail::cfg(name.trim(), actions.trim()),
                None => Err(format!("expected name=actions, got {line:?}")),
            };
            match answer {
                Ok(()) => writeln!(out, "ok")?,
                Err(e) => writeln!(out, "error: {e}")?,
            }
        }
        Ok(())
    }
}
