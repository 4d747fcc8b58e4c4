//! The checks, one module per part of the catalog. Each check runs on every
//! backend through `on_every_backend!`; where the backends are allowed to
//! differ, the check says why at that spot.

#[macro_use]
pub mod fixture;

mod accounts;
mod audit;
mod cases;
mod concurrency;
mod consult;
mod dicom;
mod dicomweb;
mod images;
mod leases;
mod outage;
mod placement;
mod queue;
mod reprocess;
mod sessions;
