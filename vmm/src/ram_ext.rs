//! RAM extension for a VM: its guest RAM on memory servers (`revenant-memd`) through the
//! engine in `revenant_remote_mem::ram_ext`. With `memory.remote.local_budget` (or a
//! controller) the engine runs from boot and keeps at most the budget resident; without,
//! it starts when the VM first enters Sz, and then moves every page out.
//!
//! Guest RAM offset `o` (regions laid end to end) lives at byte `o` of the VM's slab space.

use std::sync::Arc;
use std::time::Duration;

use revenant_remote_mem::client::MemClient;
use revenant_remote_mem::ram_ext::{GuestRange, RamExt, RamExtConfig, RamExtCounters};
use revenant_remote_mem::space::SlabSpace;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use crate::config::RemoteRamConfig;
use crate::remote_template::client_config;
use crate::vstate::memory::GuestMemoryMmap;

/// How long a VM entering Sz may take to move its RAM out.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum RamExtError {
    #[error("{0}")]
    Config(String),
    #[error("memory servers: {0}")]
    Client(String),
    #[error("RAM extension: {0}")]
    Engine(#[from] revenant_remote_mem::ram_ext::RamExtError),
}

/// The memd endpoints to use: `servers`, or the hosts in S0 registered in the etcd
/// `directory` now (new slabs can only be allocated on hosts whose CPUs are on).
fn servers(cfg: &RemoteRamConfig) -> Result<String, RamExtError> {
    if cfg.directory.is_empty() {
        return Ok(cfg.servers.clone());
    }
    directory_servers(&cfg.directory)
}

#[cfg(feature = "etcd")]
fn directory_servers(etcd: &[String]) -> Result<String, RamExtError> {
    use revenant_remote_mem::power::PowerState;
    let watch = revenant_remote_mem::directory::DirectoryWatch::start(etcd)
        .map_err(|e| RamExtError::Client(format!("host directory {etcd:?}: {e}")))?;
    let hosts: Vec<String> = watch
        .hosts()
        .into_iter()
        .filter(|h| h.power_state == PowerState::S0)
        .map(|h| h.endpoint)
        .collect();
    if hosts.is_empty() {
        return Err(RamExtError::Client(format!(
            "no memory server in S0 is registered in the host directory {etcd:?}"
        )));
    }
    Ok(hosts.join(","))
}

#[cfg(not(feature = "etcd"))]
fn directory_servers(_etcd: &[String]) -> Result<String, RamExtError> {
    // validate() refuses a directory in this build already.
    Err(RamExtError::Config(
        "memory.remote.directory needs a revenant built with the etcd feature".into(),
    ))
}

/// A VM's guest RAM backed by memory servers. Dropping it stops the engine and frees the
/// VM's slabs (memd keeps a client's slabs after it disconnects, for templates' sake).
pub struct RemoteRam {
    engine: Option<RamExt>,
    space: SlabSpace,
    bytes: u64,
}

impl RemoteRam {
    /// Connects, allocates slabs for all of `memory` and starts the engine: with the
    /// configured budget when `from_boot`, else with none (pages move only in Sz).
    pub fn start(
        cfg: &RemoteRamConfig,
        memory: &GuestMemoryMmap,
        from_boot: bool,
    ) -> Result<Self, RamExtError> {
        let client_cfg = client_config(&servers(cfg)?, &cfg.token_file, cfg.replicas, None)
            .map_err(|e| RamExtError::Config(e.to_string()))?;
        let client =
            MemClient::connect(&client_cfg).map_err(|e| RamExtError::Client(e.to_string()))?;
        let space = SlabSpace::new(Arc::new(client));
        let ranges: Vec<GuestRange> = memory
            .iter()
            .map(|r| GuestRange {
                host_addr: r.as_ptr() as usize,
                len: r.len() as usize,
            })
            .collect();
        let total: u64 = ranges.iter().map(|r| r.len as u64).sum();
        space
            .allocate(total)
            .map_err(|e| RamExtError::Client(e.to_string()))?;
        let engine_cfg = RamExtConfig {
            budget_bytes: cfg.local_budget.filter(|_| from_boot),
            prefetch: cfg.prefetch,
            controller: cfg.controller.filter(|_| from_boot),
        };
        Ok(RemoteRam {
            engine: Some(RamExt::start(&ranges, space.clone(), &engine_cfg)?),
            space,
            bytes: total,
        })
    }

    /// Moves every resident page to the servers (the vCPUs must be stopped). Returns the
    /// bytes written.
    pub fn evict_all(&self) -> Result<u64, RamExtError> {
        match &self.engine {
            Some(e) => Ok(e.evict_all(DRAIN_TIMEOUT)?),
            None => Ok(0),
        }
    }

    /// A handle for discarding pages the guest gave up, while the engine runs.
    pub fn discarder(&self) -> Option<revenant_remote_mem::ram_ext::PageDiscarder> {
        self.engine.as_ref().map(RamExt::discarder)
    }

    /// The engine's counters.
    pub fn counters(&self) -> RamExtCounters {
        self.engine
            .as_ref()
            .map(RamExt::counters)
            .unwrap_or_default()
    }
}

impl Drop for RemoteRam {
    fn drop(&mut self) {
        // The engine's threads first: they may still be reading from or writing to the slabs.
        self.engine = None;
        if let Err(e) = self.space.free(self.bytes) {
            tracing::warn!("RAM extension: could not free every slab on the memory servers: {e}");
        }
    }
}

impl From<RamExtError> for crate::vm::VmError {
    /// Unreachable servers or a bad token are the caller's to fix (`memory.remote`, 4xx);
    /// an engine failure is the VMM's.
    fn from(e: RamExtError) -> Self {
        match e {
            RamExtError::Engine(_) => crate::vm::VmError::RamExt(e.to_string()),
            _ => crate::vm::VmError::Config(crate::config::ConfigError::new(
                "memory.remote",
                e.to_string(),
            )),
        }
    }
}

#[cfg(all(test, feature = "etcd"))]
mod tests {
    use revenant_remote_mem::directory::testing::start_etcd;
    use revenant_remote_mem::directory::{HostRecord, Registration};
    use revenant_remote_mem::power::PowerState;

    use super::directory_servers;

    fn register(url: &str, endpoint: &str, power_state: PowerState) -> Registration {
        let record = HostRecord {
            endpoint: endpoint.into(),
            capacity: 1 << 30,
            free: 1 << 30,
            power_state,
        };
        Registration::start(&[url.to_string()], 5, move || record.clone()).unwrap()
    }

    #[test]
    fn the_directory_names_the_memory_servers_in_s0() {
        let dir = tempfile::tempdir().unwrap();
        let Some((_etcd, url)) = start_etcd(dir.path()) else {
            return;
        };
        // Empty directory: a clear error, not a VM without memory servers.
        let e = directory_servers(std::slice::from_ref(&url))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no memory server in S0"), "{e}");
        let _a = register(&url, "tcp://10.0.0.2:7600", PowerState::S0);
        let _b = register(&url, "tcp://10.0.0.3:7600", PowerState::Sz);
        let _c = register(&url, "tcp://10.0.0.4:7600", PowerState::S0);
        // A zombie host serves its existing slabs but cannot allocate new ones.
        assert_eq!(
            directory_servers(&[url]).unwrap(),
            "tcp://10.0.0.2:7600,tcp://10.0.0.4:7600"
        );
    }
}
