//! The replicated client: slabs placed on several memd hosts with
//! power-of-two choices, each kept on `r` hosts. Writes go to every live
//! replica; reads go to the first healthy one and fail over. A replica whose
//! write failed is marked stale at once, so no later read can see old data.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use super::conn::HostConn;
use super::placement::{two_choices, Rng};
use super::{random_key, rereplicate, ClientError};
use crate::endpoint::Endpoint;
use crate::protocol::ClientKey;

/// How to build a [`MemClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The memd hosts (static directory).
    pub endpoints: Vec<Endpoint>,
    /// Shared-secret token.
    pub token: Vec<u8>,
    /// Replication factor; `None` = 2 with two or more hosts, else 1.
    pub replicas: Option<usize>,
    /// Socket timeout: a host silent for this long counts as dead.
    pub timeout: Duration,
    /// Optional local backup file (Infiniswap's local copy): every write is
    /// also stored there, and reads fall back to it when no replica answers.
    /// Meant for r = 1 (a single host); the file is sparse, truncated at start.
    pub backup_file: Option<PathBuf>,
    /// The client's identity; slabs belong to it. None = a fresh random key.
    pub key: Option<[u8; 16]>,
}

/// A slab as the client's user sees it (index into the client's slab table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlabId(pub usize);

pub(super) struct Host {
    pub conn: Option<HostConn>,
    pub alive: AtomicBool,
    /// Free bytes as last reported by the host (HELLO / ALLOC replies).
    pub free: AtomicU64,
    pub endpoint: Endpoint,
}

pub(super) struct Replica {
    pub host: usize,
    pub slab: u64,
    /// A write to this copy failed: its contents may be old; never read it.
    pub stale: AtomicBool,
}

pub(super) struct LogicalSlab {
    /// Foreground I/O holds this shared; re-replication holds it exclusive
    /// while copying, so no write can slip past a copy in progress.
    pub replicas: RwLock<Vec<Replica>>,
    /// Taken over from another process's [`super::SlabTable`] by
    /// [`MemClient::attach`]: the slab is shared with every other process
    /// attached to it, so this client never repairs it (new copies would be
    /// invisible to the others, one set per clone) and never frees a copy
    /// behind their backs.
    pub adopted: bool,
}

pub(super) struct Shared {
    /// The HELLO client key every connection uses; owns the slabs.
    pub key: ClientKey,
    pub hosts: Vec<Host>,
    pub slabs: RwLock<Vec<Option<Arc<LogicalSlab>>>>,
    pub replicas: usize,
    pub slab_size: u64,
    pub backup: Option<File>,
    rng: Mutex<Rng>,
    pub wake: Mutex<bool>,
    pub cv: Condvar,
    pub shutdown: AtomicBool,
}

/// Client of several memd hosts with placement, replication and failover.
///
/// Dropping a client stops its re-replication worker and frees nothing: its
/// slabs stay on the servers (under its key) until freed with
/// [`MemClient::free_slab`] or the server restarts, which is what lets
/// another process [`MemClient::attach`] to them.
pub struct MemClient {
    pub(super) shared: Arc<Shared>,
    worker: Option<thread::JoinHandle<()>>,
}

impl Replica {
    pub(super) fn usable(&self, hosts: &[Host]) -> bool {
        !self.stale.load(Relaxed) && hosts.get(self.host).is_some_and(|h| h.alive.load(Relaxed))
    }
}

impl Shared {
    pub(super) fn conn(&self, host: usize) -> Option<&HostConn> {
        self.hosts.get(host).and_then(|h| h.conn.as_ref())
    }

    /// Records that `host` failed with `e`; wakes re-replication. Connection
    /// errors are final for a host here: its slabs are rebuilt elsewhere.
    pub(super) fn host_failed(&self, host: usize, e: &ClientError) {
        if let Some(h) = self.hosts.get(host) {
            if h.alive.swap(false, Relaxed) {
                tracing::warn!(host = %h.endpoint, error = %e, "memd host failed; re-replicating its slabs");
                self.kick();
            }
        }
    }

    pub(super) fn kick(&self) {
        *self.wake.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    /// Allocates one slab on a live host not in `exclude`, by two choices.
    pub(super) fn place(&self, exclude: &[usize]) -> Result<Replica, ClientError> {
        let mut tried: Vec<usize> = exclude.to_vec();
        loop {
            let candidates: Vec<(usize, u64)> = self
                .hosts
                .iter()
                .enumerate()
                .filter(|(i, h)| h.alive.load(Relaxed) && !tried.contains(i))
                .map(|(i, h)| (i, h.free.load(Relaxed)))
                .collect();
            let pick = {
                let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
                two_choices(&candidates, &mut rng)
            };
            let Some(host) = pick else {
                return Err(ClientError::NoHosts(
                    "no live host with room for another slab".into(),
                ));
            };
            tried.push(host);
            let Some(conn) = self.conn(host) else {
                continue;
            };
            match conn.alloc() {
                Ok((slab, free)) => {
                    self.hosts[host].free.store(free, Relaxed);
                    return Ok(Replica {
                        host,
                        slab,
                        stale: AtomicBool::new(false),
                    });
                }
                Err(ClientError::Status(s)) => {
                    tracing::debug!(host = %self.hosts[host].endpoint, status = ?s, "slab allocation refused");
                    self.hosts[host].free.store(0, Relaxed);
                }
                Err(e) => self.host_failed(host, &e),
            }
        }
    }

    pub(super) fn slab(&self, id: SlabId) -> Result<Arc<LogicalSlab>, ClientError> {
        let slabs = self.slabs.read().unwrap_or_else(|p| p.into_inner());
        slabs
            .get(id.0)
            .and_then(|s| s.clone())
            .ok_or(ClientError::UnknownSlab(id.0))
    }

    pub(super) fn check_range(&self, offset: u64, len: usize) -> Result<(), ClientError> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.slab_size => Ok(()),
            _ => Err(ClientError::OutOfRange {
                offset,
                len,
                slab_size: self.slab_size,
            }),
        }
    }

    /// Reads from the first usable replica, failing over to the others.
    pub(super) fn read_replicas(
        &self,
        reps: &[Replica],
        id: SlabId,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), ClientError> {
        for rep in reps.iter().filter(|r| r.usable(&self.hosts)) {
            let Some(conn) = self.conn(rep.host) else {
                continue;
            };
            match conn.read(rep.slab, offset, buf) {
                Ok(()) => return Ok(()),
                Err(ClientError::Status(s)) => {
                    tracing::warn!(host = %conn.endpoint(), status = ?s, "replica read refused; trying another");
                }
                Err(e) => self.host_failed(rep.host, &e),
            }
        }
        if self.backup_read(id, offset, buf) {
            return Ok(());
        }
        Err(ClientError::AllReplicasFailed(id.0))
    }

    /// Byte position of (`id`, `offset`) in the backup file.
    fn backup_pos(&self, id: SlabId, offset: u64) -> Option<u64> {
        (id.0 as u64)
            .checked_mul(self.slab_size)?
            .checked_add(offset)
    }

    /// Stores `data` in the backup file; `false` without one or on error.
    pub(super) fn backup_write(&self, id: SlabId, offset: u64, data: &[u8]) -> bool {
        let (Some(f), Some(pos)) = (&self.backup, self.backup_pos(id, offset)) else {
            return false;
        };
        match f.write_all_at(data, pos) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "backup file write failed");
                false
            }
        }
    }

    /// Reads from the backup file; `false` without one or on error. Bytes
    /// past the end of the (sparse) file were never written: zeros, like a
    /// fresh slab.
    fn backup_read(&self, id: SlabId, offset: u64, buf: &mut [u8]) -> bool {
        let (Some(f), Some(pos)) = (&self.backup, self.backup_pos(id, offset)) else {
            return false;
        };
        let mut done = 0;
        while done < buf.len() {
            match f.read_at(&mut buf[done..], pos + done as u64) {
                Ok(0) => {
                    buf[done..].fill(0);
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "backup file read failed");
                    return false;
                }
            }
        }
        true
    }
}

impl MemClient {
    /// Connects to every host. Unreachable hosts are recorded as dead; at least
    /// one must answer.
    pub fn connect(cfg: &ClientConfig) -> Result<Self, ClientError> {
        let key = match cfg.key {
            Some(k) => k,
            None => random_key()?,
        };
        let (hosts, slab_size) = connect_hosts(cfg, key)?;
        Self::start(cfg, key, hosts, slab_size, Vec::new())
    }

    /// Builds the client over connected `hosts` with the slab table `slabs`
    /// and starts its re-replication worker.
    pub(super) fn start(
        cfg: &ClientConfig,
        key: ClientKey,
        hosts: Vec<Host>,
        slab_size: u64,
        slabs: Vec<Option<Arc<LogicalSlab>>>,
    ) -> Result<Self, ClientError> {
        let replicas = cfg
            .replicas
            .unwrap_or(if hosts.len() >= 2 { 2 } else { 1 })
            .max(1);
        let backup = match &cfg.backup_file {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(p)?,
            ),
            None => None,
        };
        // Not derived from the key: processes sharing a key must not make
        // the same placement choices.
        let seed = u64::from_le_bytes(random_key()?[..8].try_into().unwrap_or([1; 8]));
        let shared = Arc::new(Shared {
            key,
            hosts,
            slabs: RwLock::new(slabs),
            replicas,
            slab_size,
            backup,
            rng: Mutex::new(Rng::new(seed)),
            wake: Mutex::new(false),
            cv: Condvar::new(),
            shutdown: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let worker = thread::Builder::new()
            .name("memd-rereplicate".into())
            .spawn(move || rereplicate::run(&s))?;
        Ok(Self {
            shared,
            worker: Some(worker),
        })
    }

    /// Bytes per slab.
    pub fn slab_size(&self) -> u64 {
        self.shared.slab_size
    }

    /// Replication factor.
    pub fn replication(&self) -> usize {
        self.shared.replicas
    }

    /// Whether host `i` (index in the configured list) is considered alive.
    pub fn host_alive(&self, i: usize) -> bool {
        self.shared
            .hosts
            .get(i)
            .is_some_and(|h| h.alive.load(Relaxed))
    }

    /// Host indices holding usable copies of `id`.
    pub fn replica_hosts(&self, id: SlabId) -> Result<Vec<usize>, ClientError> {
        let slab = self.shared.slab(id)?;
        let reps = slab.replicas.read().unwrap_or_else(|p| p.into_inner());
        Ok(reps
            .iter()
            .filter(|r| r.usable(&self.shared.hosts))
            .map(|r| r.host)
            .collect())
    }

    /// Number of slabs with fewer usable replicas than wanted and available.
    pub fn under_replicated(&self) -> usize {
        rereplicate::under_replicated(&self.shared)
    }

    /// Waits until re-replication has caught up (or `timeout` passes).
    pub fn wait_replicated(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.under_replicated() == 0 {
                return true;
            }
            self.shared.kick();
            thread::sleep(Duration::from_millis(20));
        }
        self.under_replicated() == 0
    }

    /// Allocates a slab on up to `r` hosts. Fewer copies than `r` are accepted
    /// (and repaired later) as long as one host took it.
    pub fn alloc_slab(&self) -> Result<SlabId, ClientError> {
        let mut reps: Vec<Replica> = Vec::with_capacity(self.shared.replicas);
        for _ in 0..self.shared.replicas {
            let exclude: Vec<usize> = reps.iter().map(|r| r.host).collect();
            match self.shared.place(&exclude) {
                Ok(r) => reps.push(r),
                Err(e) if reps.is_empty() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, copies = reps.len(), "slab has fewer copies than wanted");
                    break;
                }
            }
        }
        let mut slabs = self.shared.slabs.write().unwrap_or_else(|p| p.into_inner());
        slabs.push(Some(Arc::new(LogicalSlab {
            replicas: RwLock::new(reps),
            adopted: false,
        })));
        Ok(SlabId(slabs.len() - 1))
    }

    /// Frees a slab on every host that holds it.
    pub fn free_slab(&self, id: SlabId) -> Result<(), ClientError> {
        let slab = {
            let mut slabs = self.shared.slabs.write().unwrap_or_else(|p| p.into_inner());
            slabs
                .get_mut(id.0)
                .and_then(Option::take)
                .ok_or(ClientError::UnknownSlab(id.0))?
        };
        let reps = slab.replicas.write().unwrap_or_else(|p| p.into_inner());
        for rep in reps.iter().filter(|r| self.host_alive(r.host)) {
            if let Some(Err(e)) = self.shared.conn(rep.host).map(|c| c.free(rep.slab)) {
                tracing::warn!(error = %e, "freeing a replica failed; its memory stays until the server restarts");
            }
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes (at most 1 MiB) at `offset` of slab `id`. The
    /// fast path for single pages: one request to one replica on this thread.
    pub fn read(&self, id: SlabId, offset: u64, buf: &mut [u8]) -> Result<(), ClientError> {
        self.shared.check_range(offset, buf.len())?;
        let slab = self.shared.slab(id)?;
        let reps = slab.replicas.read().unwrap_or_else(|p| p.into_inner());
        self.shared.read_replicas(&reps, id, offset, buf)
    }

    /// Same as [`MemClient::read`]; the name the RAM-ext fault handler uses.
    pub fn read_page(&self, id: SlabId, offset: u64, page: &mut [u8]) -> Result<(), ClientError> {
        self.read(id, offset, page)
    }

    /// Writes `data` (at most 1 MiB) at `offset` of slab `id` to every usable
    /// replica. Succeeds if at least one copy took it; failed copies are
    /// marked stale (never read again) and rebuilt in the background.
    pub fn write(&self, id: SlabId, offset: u64, data: &[u8]) -> Result<(), ClientError> {
        self.shared.check_range(offset, data.len())?;
        let slab = self.shared.slab(id)?;
        let reps = slab.replicas.read().unwrap_or_else(|p| p.into_inner());
        // Send to every copy first, then collect the replies: the copies are
        // written in parallel. Hosts are locked in index order (deadlock-free).
        let mut order: Vec<&Replica> = reps
            .iter()
            .filter(|r| r.usable(&self.shared.hosts))
            .collect();
        order.sort_by_key(|r| r.host);
        let mut pending = Vec::with_capacity(order.len());
        for rep in order {
            let Some(conn) = self.shared.conn(rep.host) else {
                continue;
            };
            match conn.write_start(rep.slab, offset, data) {
                Ok(p) => pending.push((rep, p)),
                Err(e) => self.replica_write_failed(rep, &e),
            }
        }
        let mut ok = 0;
        for (rep, p) in pending {
            match p.finish() {
                Ok(()) => ok += 1,
                Err(e) => self.replica_write_failed(rep, &e),
            }
        }
        if self.shared.backup_write(id, offset, data) {
            ok += 1;
        }
        if ok == 0 {
            return Err(ClientError::AllReplicasFailed(id.0));
        }
        Ok(())
    }

    fn replica_write_failed(&self, rep: &Replica, e: &ClientError) {
        rep.stale.store(true, Relaxed);
        match e {
            ClientError::Status(_) => self.shared.kick(),
            _ => self.shared.host_failed(rep.host, e),
        }
    }
}

/// Connects to every host of `cfg` as client `key`. Unreachable hosts are
/// recorded as dead; at least one must answer. Returns the hosts (in
/// `cfg.endpoints` order) and their common slab size.
pub(super) fn connect_hosts(
    cfg: &ClientConfig,
    key: ClientKey,
) -> Result<(Vec<Host>, u64), ClientError> {
    let mut hosts = Vec::with_capacity(cfg.endpoints.len());
    let mut slab_size: Option<u64> = None;
    let mut errors = Vec::new();
    for ep in &cfg.endpoints {
        let conn = match HostConn::connect(ep, &cfg.token, key, cfg.timeout) {
            Ok(c) => {
                if let Some(s) = slab_size.filter(|s| *s != c.info.slab_size) {
                    return Err(ClientError::SlabSizeMismatch(s, c.info.slab_size));
                }
                slab_size = Some(c.info.slab_size);
                Some(c)
            }
            // A wrong token is a configuration error, not a dead host.
            Err(e @ ClientError::Refused { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(host = %ep, error = %e, "memd host unreachable");
                errors.push(e.to_string());
                None
            }
        };
        hosts.push(Host {
            alive: AtomicBool::new(conn.is_some()),
            free: AtomicU64::new(conn.as_ref().map_or(0, |c| c.info.free)),
            conn,
            endpoint: ep.clone(),
        });
    }
    let slab_size = slab_size.ok_or_else(|| ClientError::NoHosts(errors.join("; ")))?;
    Ok((hosts, slab_size))
}

impl Drop for MemClient {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Relaxed);
        self.shared.kick();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
