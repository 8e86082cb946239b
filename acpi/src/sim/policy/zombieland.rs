//! (c) ZombieLand: consolidate by CPU; servers whose CPUs are not needed sleep in Sz and lend their
//! memory; a VM keeps its hot memory local and the cold rest goes to zombies (RAM Ext). A zombie is
//! woken (transition latency and energy paid) when its CPUs are needed. As in the paper's
//! simulation, moving cold pages to remote memory is assumed to cost no run time; the
//! Revenant-calibrated policy drops that assumption.

use super::{Policy, RemoteSource};
use crate::sim::trace::Request;

/// ZombieLand policy.
#[derive(Debug, Default, Clone, Copy)]
pub struct ZombieLand;

impl Policy for ZombieLand {
    fn name(&self) -> &'static str {
        "zombieland"
    }

    fn min_local_gib(&self, req: &Request) -> f64 {
        req.mem_gib * req.hot_fraction
    }

    fn remote_source(&self) -> RemoteSource {
        RemoteSource::Zombies
    }
}
