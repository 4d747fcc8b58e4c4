//! The DICOM front door: a Storage SCP (C-STORE) and Verification SCP
//! (C-ECHO) over the DICOM upper layer (PS3.8), for modalities and PACS
//! that speak DICOM rather than HTTP.
//!
//! ```text
//! TCP accept (TCP_NODELAY) ─▶ past the association limit, or the catalog
//!    unreadable: A-ASSOCIATE-RJ rejected-transient
//!  ─▶ A-ASSOCIATE: called AE must be Relay's, calling AE must be mapped
//!    to an office (else A-ASSOCIATE-RJ rejected-permanent)
//!  ─▶ P-DATA: command + data set fragments reassembled per message
//!  ─▶ C-ECHO ─▶ success
//!  ─▶ C-STORE ─▶ Part 10 file (file meta rebuilt from the command and the
//!       negotiated transfer syntax) ─▶ ingest's DICOM check, parsed once
//!       ─▶ the office's draft case for the study (a read once it exists)
//!       ─▶ `Ingest::ingest_checked` ─▶ C-STORE-RSP
//!  ─▶ A-RELEASE / A-ABORT / idle timeout
//! ```
//!
//! Architecture Invariant: a C-STORE-RSP says success (0x0000) only after
//! ingest returned (`Ingest::ingest_checked`), that is once the blob is
//! durable and its catalog row, derive job and audit event are committed. Every failure
//! answers a failure status; nothing is acknowledged that was not stored.

mod association;
mod callers;
mod command;
mod echo;
mod error;
mod instance;
mod listener;
mod reject;
pub(crate) mod status;
pub(crate) mod store;
mod syntaxes;

pub use error::DimseError;
pub use instance::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};
pub use listener::{DicomDoor, DicomListener};
