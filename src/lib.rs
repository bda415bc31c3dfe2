//! multiregion: run one application across several Kubernetes clusters
//! ("regions") and keep it serving when a region fails.
//!
//! The API and the decisions live in `multiregion-core` (re-exported here as
//! `api` and `plan`); this crate talks to clusters: the member clients and
//! probes (`regions`), the reconcile (`controller`), metrics and the CLI.
#![forbid(unsafe_code)]

pub use multiregion_core::{api, plan, text};

pub mod cli;
pub mod controller;
pub mod data;
pub mod deadline;
pub mod error;
pub mod fence;
pub mod metrics;
pub mod observe;
pub mod regions;
