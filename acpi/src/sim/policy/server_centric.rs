//! (a) Server-centric consolidation: no disaggregation. A VM needs its CPUs and all its memory on one
//! server; servers that become empty sleep in S3.

use super::{Policy, RemoteSource};
use crate::sim::trace::Request;

/// Server-centric policy (the paper's baseline).
#[derive(Debug, Default, Clone, Copy)]
pub struct ServerCentric;

impl Policy for ServerCentric {
    fn name(&self) -> &'static str {
        "server_centric"
    }

    fn min_local_gib(&self, req: &Request) -> f64 {
        req.mem_gib
    }

    fn remote_source(&self) -> RemoteSource {
        RemoteSource::None
    }
}
