//! Sharing slabs between processes: one process uploads (say a VM template's
//! memory) and exports its key and [`SlabTable`]; others (clones restoring
//! from it) [`MemClient::attach`] with both and read the same slabs.
//!
//! memd ties slabs to the HELLO client key, not to a connection, so an
//! attached client simply connects with the owner's key. The key is a
//! capability: with it and the token a process can read, write and free the
//! slabs. Adopted slabs are never repaired or freed in the background (see
//! `rereplicate.rs`), and nothing is freed when a client is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use super::cluster::{connect_hosts, ClientConfig, Host, LogicalSlab, MemClient, Replica};
use super::conn::ReadOp;
use super::ClientError;
use crate::endpoint::Endpoint;
use crate::protocol::Status;

/// Where every slab of a client lives: enough, with the key, for another
/// process to [`MemClient::attach`] to them. Serde-friendly (JSON, TOML).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlabTable {
    /// Bytes per slab (every host must use this size).
    pub slab_size: u64,
    /// Replicas per slab; the index is the [`super::SlabId`]. A freed slab
    /// (or one with no usable copy left) has an empty list.
    pub slabs: Vec<Vec<RemoteReplica>>,
}

/// One copy of a slab on one memd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteReplica {
    /// The memd, as [`Endpoint`] displays it (e.g. `tcp://127.0.0.1:7600`).
    pub endpoint: String,
    /// The slab id that memd assigned.
    pub slab: u64,
}

impl MemClient {
    /// This client's key (give it, with the slab table, to another process
    /// that must read the same slabs; it is a capability: whoever has it and
    /// the token can read and write them).
    pub fn key(&self) -> [u8; 16] {
        self.shared.key
    }

    /// Where every slab's replicas live (only usable, non-stale replicas).
    pub fn slab_table(&self) -> SlabTable {
        let slabs = self.shared.slabs.read().unwrap_or_else(|p| p.into_inner());
        let hosts = &self.shared.hosts;
        let slabs = slabs
            .iter()
            .map(|s| {
                let Some(s) = s else { return Vec::new() };
                let reps = s.replicas.read().unwrap_or_else(|p| p.into_inner());
                reps.iter()
                    .filter(|r| r.usable(hosts))
                    .filter_map(|r| {
                        Some(RemoteReplica {
                            endpoint: hosts.get(r.host)?.endpoint.to_string(),
                            slab: r.slab,
                        })
                    })
                    .collect()
            })
            .collect();
        SlabTable {
            slab_size: self.shared.slab_size,
            slabs,
        }
    }

    /// Connects like [`MemClient::connect`] (`cfg.key` must be `Some`: the
    /// key that owns the slabs) and adopts the slabs of `table` without
    /// allocating anything. Replicas on endpoints that are not in
    /// `cfg.endpoints` or not reachable are left out; a slab with no
    /// reachable replica is an error naming the slab. Reads fail over between
    /// replicas as usual.
    ///
    /// Every replica is checked with a zero-length READ (pipelined, one
    /// round trip per host): memd answers NO_SUCH_SLAB for a slab owned by
    /// another key, so a wrong key (or a freed slab) is refused here rather
    /// than at the first fault. A replica on a host in S3 (POWER_STATE) is
    /// kept unchecked; its reads are refused until the host wakes.
    ///
    /// The adopted slabs are shared: this client never re-replicates them
    /// (a lost copy is not replaced; reads use the copies left), never frees
    /// them in the background, and dropping it frees nothing. Writes reach
    /// every process attached to the slab; [`MemClient::free_slab`] frees it
    /// for all of them. Slabs allocated later by this client are its own and
    /// repaired as usual. A backup file is refused: it would hold none of
    /// the adopted data, and reads falling back to it would see zeros.
    pub fn attach(cfg: &ClientConfig, table: &SlabTable) -> Result<MemClient, ClientError> {
        let key = cfg.key.ok_or(ClientError::AttachWithoutKey)?;
        if cfg.backup_file.is_some() {
            return Err(ClientError::AttachWithBackup);
        }
        let (hosts, slab_size) = connect_hosts(cfg, key)?;
        if slab_size != table.slab_size {
            return Err(ClientError::SlabSizeMismatch(table.slab_size, slab_size));
        }
        let slabs = adopt(&hosts, table)?;
        MemClient::start(cfg, key, hosts, slab_size, slabs)
    }
}

/// A replica named by the table, resolved to a configured host.
struct Candidate {
    /// Index in the table.
    slab: usize,
    /// Position in the table's replica list of that slab.
    nth: usize,
    host: usize,
    remote: u64,
}

/// What the check of one replica found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    /// The host holds the slab under our key.
    Owned,
    /// The host cannot serve I/O now (S3): kept, unverified.
    Unverified,
    /// NO_SUCH_SLAB (wrong key or freed) or another refusal.
    Refused,
    /// The host or its connection is gone.
    Unreachable,
}

/// Resolves and checks every replica of `table`; builds the slab list.
fn adopt(hosts: &[Host], table: &SlabTable) -> Result<Vec<Option<Arc<LogicalSlab>>>, ClientError> {
    let mut by_host: HashMap<usize, Vec<Candidate>> = HashMap::new();
    for (slab, reps) in table.slabs.iter().enumerate() {
        for (nth, rep) in reps.iter().enumerate() {
            let host = Endpoint::parse(&rep.endpoint)
                .ok()
                .and_then(|ep| hosts.iter().position(|h| h.endpoint == ep));
            match host {
                Some(host) if hosts[host].alive.load(Relaxed) => {
                    by_host.entry(host).or_default().push(Candidate {
                        slab,
                        nth,
                        host,
                        remote: rep.slab,
                    });
                }
                _ => {
                    tracing::debug!(slab, endpoint = %rep.endpoint, "replica not on a reachable configured host; left out")
                }
            }
        }
    }
    // Per table slab: the replicas kept, and whether any host refused one.
    let mut kept: Vec<Vec<(usize, Replica)>> = table.slabs.iter().map(|_| Vec::new()).collect();
    let mut refused = vec![false; table.slabs.len()];
    for (host, cands) in by_host {
        for (c, check) in cands.iter().zip(check_host(&hosts[host], &cands)) {
            match check {
                Check::Owned | Check::Unverified => kept[c.slab].push((
                    c.nth,
                    Replica {
                        host: c.host,
                        slab: c.remote,
                        stale: AtomicBool::new(false),
                    },
                )),
                Check::Refused => refused[c.slab] = true,
                Check::Unreachable => {}
            }
        }
    }
    let mut slabs = Vec::with_capacity(table.slabs.len());
    for (slab, mut reps) in kept.into_iter().enumerate() {
        if table.slabs[slab].is_empty() {
            // Freed in the exporting client: stays freed here.
            slabs.push(None);
            continue;
        }
        if reps.is_empty() {
            return Err(ClientError::AttachSlab {
                slab,
                reason: if refused[slab] {
                    "no reachable host holds it under this client key (wrong key, or freed)"
                } else {
                    "none of its replicas is on a configured, reachable host"
                },
            });
        }
        // Table order, so reads prefer the copy the owner listed first.
        reps.sort_by_key(|(nth, _)| *nth);
        slabs.push(Some(Arc::new(LogicalSlab {
            replicas: RwLock::new(reps.into_iter().map(|(_, r)| r).collect()),
            adopted: true,
        })));
    }
    Ok(slabs)
}

/// Zero-length READs of every candidate on `host`, pipelined in one batch.
fn check_host(host: &Host, cands: &[Candidate]) -> Vec<Check> {
    let Some(conn) = &host.conn else {
        return vec![Check::Unreachable; cands.len()];
    };
    let mut ops: Vec<ReadOp<'_>> = cands
        .iter()
        .map(|c| ReadOp {
            slab: c.remote,
            offset: 0,
            buf: &mut [],
        })
        .collect();
    match conn.read_batch(&mut ops) {
        Ok(results) => results
            .into_iter()
            .map(|r| match r {
                Ok(()) => Check::Owned,
                Err(Status::PowerState) => Check::Unverified,
                Err(_) => Check::Refused,
            })
            .collect(),
        Err(e) => {
            tracing::warn!(host = %host.endpoint, error = %e, "memd host failed while attaching");
            host.alive.store(false, Relaxed);
            vec![Check::Unreachable; cands.len()]
        }
    }
}
