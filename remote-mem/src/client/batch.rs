//! Batch I/O of the replicated client: ops grouped per host and pipelined on
//! each host's connection, hosts served in parallel.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLockReadGuard};
use std::thread;

use super::cluster::{LogicalSlab, MemClient, Replica, SlabId};
use super::conn::{ReadOp, WriteOp};
use super::ClientError;

/// A read in a client batch.
pub struct PageRead<'a> {
    /// Slab to read from.
    pub slab: SlabId,
    /// Byte offset in the slab.
    pub offset: u64,
    /// Destination (length = bytes to read, at most 1 MiB).
    pub buf: &'a mut [u8],
}

/// A write in a client batch.
pub struct PageWrite<'a> {
    /// Slab to write to.
    pub slab: SlabId,
    /// Byte offset in the slab.
    pub offset: u64,
    /// Data (at most 1 MiB).
    pub data: &'a [u8],
}

/// One host's part of a write batch: host, (op index, replica index) per
/// request, and per-request success or the connection's failure.
type HostWriteOutcome = (usize, Vec<(usize, usize)>, Result<Vec<bool>, ClientError>);

impl MemClient {
    /// Pipelined reads: ops are grouped per host (first usable replica of
    /// each slab) and sent as one batch per host, hosts in parallel. Ops that
    /// fail there are retried one by one with failover.
    pub fn read_batch(&self, ops: &mut [PageRead<'_>]) -> Result<(), ClientError> {
        let mut per_host: Vec<Vec<(usize, u64)>> =
            (0..self.shared.hosts.len()).map(|_| Vec::new()).collect();
        for (i, op) in ops.iter().enumerate() {
            self.shared.check_range(op.offset, op.buf.len())?;
            let slab = self.shared.slab(op.slab)?;
            let reps = slab.replicas.read().unwrap_or_else(|p| p.into_inner());
            if let Some(r) = reps.iter().find(|r| r.usable(&self.shared.hosts)) {
                per_host[r.host].push((i, r.slab));
            }
        }
        let mut done = vec![false; ops.len()];
        // Hand each host its ops' buffers: split `ops` into disjoint &mut.
        let mut slots: Vec<Option<&mut PageRead<'_>>> = ops.iter_mut().map(Some).collect();
        let mut jobs: Vec<(usize, Vec<usize>, Vec<ReadOp<'_>>)> = Vec::new();
        for (host, list) in per_host.iter().enumerate().filter(|(_, l)| !l.is_empty()) {
            let mut idx = Vec::with_capacity(list.len());
            let mut rops = Vec::with_capacity(list.len());
            for &(i, remote) in list {
                if let Some(op) = slots[i].take() {
                    idx.push(i);
                    rops.push(ReadOp {
                        slab: remote,
                        offset: op.offset,
                        buf: &mut *op.buf,
                    });
                }
            }
            jobs.push((host, idx, rops));
        }
        let shared = &self.shared;
        let outcomes: Vec<(Vec<usize>, Vec<bool>)> = thread::scope(|s| {
            let handles: Vec<_> = jobs
                .into_iter()
                .map(|(host, idx, mut rops)| {
                    s.spawn(move || {
                        let ok = match shared.conn(host).map(|c| c.read_batch(&mut rops)) {
                            Some(Ok(res)) => res.iter().map(Result::is_ok).collect(),
                            Some(Err(e)) => {
                                shared.host_failed(host, &e);
                                vec![false; idx.len()]
                            }
                            None => vec![false; idx.len()],
                        };
                        (idx, ok)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for (idx, ok) in outcomes {
            for (i, ok) in idx.into_iter().zip(ok) {
                done[i] = ok;
            }
        }
        for (op, _) in ops.iter_mut().zip(&done).filter(|(_, d)| !**d) {
            self.read(op.slab, op.offset, op.buf)?;
        }
        Ok(())
    }

    /// Pipelined writes to every usable replica, hosts in parallel. Fails if
    /// some op reached no replica at all.
    pub fn write_batch(&self, ops: &[PageWrite<'_>]) -> Result<(), ClientError> {
        let mut ids: Vec<SlabId> = ops.iter().map(|o| o.slab).collect();
        ids.sort();
        ids.dedup();
        let slabs: Vec<(SlabId, Arc<LogicalSlab>)> = ids
            .iter()
            .map(|&id| Ok((id, self.shared.slab(id)?)))
            .collect::<Result<_, ClientError>>()?;
        // Shared locks in slab order for the whole batch, so re-replication
        // cannot copy a slab between two of our writes to it.
        let guards: Vec<(SlabId, RwLockReadGuard<'_, Vec<Replica>>)> = slabs
            .iter()
            .map(|(id, s)| (*id, s.replicas.read().unwrap_or_else(|p| p.into_inner())))
            .collect();
        let reps_of = |id: SlabId| guards.iter().find(|(g, _)| *g == id).map(|(_, r)| &**r);
        let mut per_host: Vec<Vec<(usize, usize)>> =
            (0..self.shared.hosts.len()).map(|_| Vec::new()).collect();
        for (i, op) in ops.iter().enumerate() {
            self.shared.check_range(op.offset, op.data.len())?;
            for (j, r) in reps_of(op.slab).into_iter().flatten().enumerate() {
                if r.usable(&self.shared.hosts) {
                    per_host[r.host].push((i, j));
                }
            }
        }
        let shared = &self.shared;
        let results: Vec<HostWriteOutcome> = thread::scope(|s| {
            let handles: Vec<_> = per_host
                .into_iter()
                .enumerate()
                .filter(|(_, l)| !l.is_empty())
                .map(|(host, list)| {
                    let wops: Vec<WriteOp<'_>> = list
                        .iter()
                        .map(|&(i, j)| {
                            let slab = reps_of(ops[i].slab).map_or(0, |r| r[j].slab);
                            WriteOp {
                                slab,
                                offset: ops[i].offset,
                                data: ops[i].data,
                            }
                        })
                        .collect();
                    s.spawn(move || {
                        let r = match shared.conn(host) {
                            Some(c) => c
                                .write_batch(&wops)
                                .map(|v| v.iter().map(Result::is_ok).collect()),
                            None => Err(ClientError::NoHosts("host has no connection".into())),
                        };
                        (host, list, r)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        let mut copies = vec![0usize; ops.len()];
        for (host, list, r) in results {
            match r {
                Ok(oks) => {
                    for ((i, j), ok) in list.into_iter().zip(oks) {
                        if ok {
                            copies[i] += 1;
                        } else if let Some(rep) = reps_of(ops[i].slab).and_then(|r| r.get(j)) {
                            // Refused by a live host: only this copy is suspect.
                            rep.stale.store(true, Relaxed);
                            self.shared.kick();
                        }
                    }
                }
                Err(e) => {
                    self.shared.host_failed(host, &e);
                }
            }
        }
        for (op, c) in ops.iter().zip(copies.iter_mut()) {
            if self.shared.backup_write(op.slab, op.offset, op.data) {
                *c += 1;
            }
        }
        match copies.iter().position(|&c| c == 0) {
            Some(i) => Err(ClientError::AllReplicasFailed(ops[i].slab.0)),
            None => Ok(()),
        }
    }
}
