//! The core of multiregion: the API (`Region`, `MultiRegionApp`) and every
//! decision the operator makes (`plan`), with no Kubernetes client, no async
//! runtime and no clock: what it needs to know is an input. The operator
//! crate (`multiregion`) gathers those inputs and applies the decisions.
#![forbid(unsafe_code)]

pub mod api;
pub mod plan;
pub mod text;
