//! Relay's pipeline engine.
//!
//! Everything that decides what happens to a consult case lives here: the
//! domain model, the catalog (SQL) that records it, the blob store that holds
//! images, and the background stages. Nothing in this crate knows about HTTP
//! routing or the command line; the `relay` package is the only front door.
//!
//! Architecture Invariant: this crate depends on no web or CLI crate (axum,
//! tower-http, clap). Front doors translate their protocol into calls on the
//! [`catalog::Catalog`] and [`blob::BlobStore`] traits.

pub mod audit;
pub mod auth;
pub mod blob;
pub mod catalog;
pub mod derive;
pub mod failpoints;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingest;
pub mod model;
pub mod queue;
pub mod reprocess;
pub mod resumable;
pub mod session;
pub mod stages;
#[doc(hidden)]
pub mod testing;
pub mod tls;
pub mod token;
pub mod webhook;
