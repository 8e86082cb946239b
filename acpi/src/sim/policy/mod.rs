//! Placement policies. Each policy is a small module behind [`Policy`]; the event-driven engine
//! (`sim::engine`) does the bookkeeping and asks the policy only what differs between them.

mod rack_scale;
mod revenant;
mod server_centric;
mod zombieland;

pub use rack_scale::RackScale;
pub use revenant::RevenantCalibrated;
pub use server_centric::ServerCentric;
pub use zombieland::ZombieLand;

use crate::power::HostState;

use super::trace::Request;

/// Where a VM's memory that does not fit locally comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteSource {
    /// Nowhere: every byte must be local (no disaggregation).
    None,
    /// The memory blade of the host server's rack.
    RackBlade,
    /// Servers in Sz (zombies); sleeping S3 servers are turned into zombies when more is needed.
    Zombies,
}

/// What distinguishes one placement policy from another.
pub trait Policy {
    /// Name used in reports (`server_centric`, `rack_scale`, `zombieland`, `revenant`).
    fn name(&self) -> &'static str;

    /// GiB of `req`'s memory that must be in its host server's own DRAM.
    fn min_local_gib(&self, req: &Request) -> f64;

    /// Where the rest of the memory comes from.
    fn remote_source(&self) -> RemoteSource;

    /// Sleep state for an empty server that still lends `lent_gib` to other servers.
    fn sleep_state(&self, lent_gib: f64) -> HostState {
        if lent_gib > 0.0 && self.remote_source() == RemoteSource::Zombies {
            HostState::Sz
        } else {
            HostState::S3
        }
    }

    /// Run-time multiplier of a VM with `remote_fraction` of its memory remote. The engine
    /// stretches the VM's lifetime by it (its CPUs stay busy longer), so a slowdown costs energy.
    fn slowdown(&self, remote_fraction: f64) -> f64 {
        let _ = remote_fraction;
        1.0
    }
}

/// The policy names `--policy` accepts, in report order.
pub const POLICY_NAMES: [&str; 4] = ["server_centric", "rack_scale", "zombieland", "revenant"];
