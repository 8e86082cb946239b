//! Background repair: when a host dies (or a copy goes stale), every slab
//! with fewer usable copies than wanted gets a new copy on another host,
//! copied from a surviving one.
//!
//! Only slabs this client allocated itself: slabs adopted by
//! [`super::MemClient::attach`] are shared with other processes, so they are
//! neither repaired (every clone would make its own private copies) nor is a
//! stale copy of them freed (the others may still read it). An adopted slab
//! that lost a copy keeps failing over to the copies left.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::cluster::{Replica, Shared};
use crate::protocol::MAX_IO;

/// Also wake up now and then without a kick, to retry repairs that found no
/// room earlier (a host may have freed memory since).
const RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// Worker loop; returns when the client shuts down.
pub(super) fn run(shared: &Shared) {
    loop {
        {
            let mut woken = shared.wake.lock().unwrap_or_else(|p| p.into_inner());
            if !*woken && !shared.shutdown.load(Relaxed) {
                woken = shared
                    .cv
                    .wait_timeout(woken, RETRY_INTERVAL)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            *woken = false;
        }
        if shared.shutdown.load(Relaxed) {
            return;
        }
        repair_all(shared);
    }
}

/// How many copies a slab can have at most now.
fn target(shared: &Shared) -> usize {
    let live = shared
        .hosts
        .iter()
        .filter(|h| h.alive.load(Relaxed))
        .count();
    shared.replicas.min(live)
}

/// Slabs this client repairs (not adopted ones) with fewer usable copies
/// than [`target`].
pub(super) fn under_replicated(shared: &Shared) -> usize {
    let want = target(shared);
    let slabs = shared.slabs.read().unwrap_or_else(|p| p.into_inner());
    slabs
        .iter()
        .flatten()
        .filter(|s| !s.adopted)
        .filter(|s| {
            let reps = s.replicas.read().unwrap_or_else(|p| p.into_inner());
            reps.iter().filter(|r| r.usable(&shared.hosts)).count() < want
        })
        .count()
}

fn repair_all(shared: &Shared) {
    let slabs: Vec<_> = {
        let s = shared.slabs.read().unwrap_or_else(|p| p.into_inner());
        s.iter()
            .enumerate()
            .filter_map(|(i, x)| x.clone().map(|x| (i, x)))
            .filter(|(_, x)| !x.adopted)
            .collect()
    };
    for (id, slab) in slabs {
        if shared.shutdown.load(Relaxed) {
            return;
        }
        let want = target(shared);
        {
            let reps = slab.replicas.read().unwrap_or_else(|p| p.into_inner());
            let usable = reps.iter().filter(|r| r.usable(&shared.hosts)).count();
            if usable >= want && usable == reps.len() {
                continue;
            }
        }
        // Exclusive: foreground writes to this slab wait until the copy is done.
        let mut reps = slab.replicas.write().unwrap_or_else(|p| p.into_inner());
        let (keep, drop): (Vec<Replica>, Vec<Replica>) =
            reps.drain(..).partition(|r| r.usable(&shared.hosts));
        *reps = keep;
        for r in drop.iter().filter(|r| {
            shared
                .hosts
                .get(r.host)
                .is_some_and(|h| h.alive.load(Relaxed))
        }) {
            // A stale copy on a live host: give its memory back.
            if let Some(c) = shared.conn(r.host) {
                let _ = c.free(r.slab);
            }
        }
        if reps.is_empty() && shared.backup.is_none() {
            tracing::error!(slab = id, "every copy of a slab is gone; its data is lost");
            continue;
        }
        while reps.len() < want {
            let exclude: Vec<usize> = reps.iter().map(|r| r.host).collect();
            let new = match shared.place(&exclude) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(slab = id, error = %e, "cannot place a new copy yet");
                    break;
                }
            };
            match copy_slab(shared, super::SlabId(id), &reps, &new) {
                Ok(()) => {
                    tracing::info!(slab = id, host = %shared.hosts[new.host].endpoint, "slab re-replicated");
                    reps.push(new);
                }
                Err(()) => {
                    if let Some(c) = shared.conn(new.host) {
                        let _ = c.free(new.slab);
                    }
                    break;
                }
            }
        }
    }
}

/// Copies a whole slab from any usable source copy (or the backup file) to
/// `dst`, chunk by chunk.
fn copy_slab(shared: &Shared, id: super::SlabId, src: &[Replica], dst: &Replica) -> Result<(), ()> {
    let Some(out) = shared.conn(dst.host) else {
        return Err(());
    };
    let mut buf = vec![0u8; MAX_IO as usize];
    let mut off = 0u64;
    while off < shared.slab_size {
        let n = (shared.slab_size - off).min(u64::from(MAX_IO)) as usize;
        let chunk = &mut buf[..n];
        if shared.read_replicas(src, id, off, chunk).is_err() {
            return Err(());
        }
        if let Err(e) = out.write(dst.slab, off, chunk) {
            if !matches!(e, super::ClientError::Status(_)) {
                shared.host_failed(dst.host, &e);
            }
            return Err(());
        }
        off += n as u64;
    }
    Ok(())
}
