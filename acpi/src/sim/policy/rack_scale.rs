//! (b) Rack-scale disaggregation: each rack has a fixed-size memory blade. A VM keeps its hot memory
//! on its host server and the rest on the rack's blade; servers consolidate by CPU. Like the paper's
//! "ideal" rack-scale design, remote memory is assumed to cost no run time.

use super::{Policy, RemoteSource};
use crate::sim::trace::Request;

/// Rack-scale memory-blade policy.
#[derive(Debug, Default, Clone, Copy)]
pub struct RackScale;

impl Policy for RackScale {
    fn name(&self) -> &'static str {
        "rack_scale"
    }

    fn min_local_gib(&self, req: &Request) -> f64 {
        req.mem_gib * req.hot_fraction
    }

    fn remote_source(&self) -> RemoteSource {
        RemoteSource::RackBlade
    }
}
