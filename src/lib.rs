//! Relay's front doors: the `relay` command line, the HTTP API, and the
//! composition root that wires the stores chosen by configuration.
//!
//! Architecture Invariant: no storage or queue logic lives here; this crate
//! translates protocols into calls on `relay-workers`.

pub mod app;
pub mod backends;
pub mod cli;
pub mod config;
pub mod dicomweb;
pub mod dimse;
pub mod http;
pub mod shutdown;
pub mod web;
