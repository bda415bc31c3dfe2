//! multiregion: run one application across several Kubernetes clusters
//! ("regions") and keep it serving when a region fails.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod controller;
pub mod error;
pub mod localregions;
pub mod metrics;
pub mod plan;
pub mod regions;
