//! Cluster-mode directory on etcd. memd keeps its [`HostRecord`] under a lease
//! that it renews every TTL/3; if memd dies, etcd deletes the key when the
//! lease runs out, and every watcher sees the host disappear within the TTL.
//!
//! etcd-client is async; each of these objects owns one background thread
//! with a single-threaded tokio runtime, so callers stay synchronous.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, PutOptions, WatchOptions};
use tokio::runtime::Runtime;

use super::{HostRecord, ETCD_PREFIX};
use crate::endpoint::Endpoint;

/// How often background loops look at their stop flag.
const POLL: Duration = Duration::from_millis(200);

/// Directory errors.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// etcd request failed.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// Could not start the runtime or thread.
    #[error("cannot start directory thread: {0}")]
    Thread(#[from] io::Error),
    /// TTL must be at least 2 s (etcd's minimum lease is about 1.5 s).
    #[error("lease TTL {0} s is too short (minimum 2)")]
    TtlTooShort(i64),
}

fn runtime() -> io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// A memd's registration; revokes the lease (removing the host at once) when dropped.
pub struct Registration {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Registration {
    /// Registers under `ETCD_PREFIX + record().endpoint` with a `ttl_secs` lease
    /// and keeps it alive, republishing `record()` at each renewal.
    pub fn start<F>(etcd: &[String], ttl_secs: i64, record: F) -> Result<Self, DirectoryError>
    where
        F: Fn() -> HostRecord + Send + 'static,
    {
        if ttl_secs < 2 {
            return Err(DirectoryError::TtlTooShort(ttl_secs));
        }
        let rt = runtime()?;
        let mut client = rt.block_on(Client::connect(etcd, None))?;
        let first = record();
        let key = format!("{ETCD_PREFIX}{}", first.endpoint);
        let lease = rt.block_on(client.lease_grant(ttl_secs, None))?.id();
        rt.block_on(put(&mut client, &key, &first, lease))?;
        let (mut keeper, mut acks) = rt.block_on(client.lease_keep_alive(lease))?;
        tracing::info!(%key, ttl_secs, "registered in etcd");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let renew = Duration::from_millis((ttl_secs as u64 * 1000) / 3);
        let thread = thread::Builder::new()
            .name("memd-etcd-lease".into())
            .spawn(move || {
                rt.block_on(async move {
                    let mut since = Duration::ZERO;
                    while !flag.load(Relaxed) {
                        tokio::time::sleep(POLL).await;
                        since += POLL;
                        if since < renew {
                            continue;
                        }
                        since = Duration::ZERO;
                        let renewed = async {
                            keeper.keep_alive().await?;
                            acks.message().await?;
                            put(&mut client, &key, &record(), lease).await
                        };
                        if let Err(e) = renewed.await {
                            tracing::warn!(error = %e, "etcd lease renewal failed; retrying");
                        }
                    }
                    let _ = client.lease_revoke(lease).await;
                });
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn put(
    client: &mut Client,
    key: &str,
    r: &HostRecord,
    lease: i64,
) -> Result<(), etcd_client::Error> {
    let value = serde_json::to_vec(r).unwrap_or_default();
    client
        .put(key, value, Some(PutOptions::new().with_lease(lease)))
        .await?;
    Ok(())
}

type HostMap = Arc<RwLock<BTreeMap<String, HostRecord>>>;

/// A client's live view of the directory: a snapshot, then a watch on the prefix.
pub struct DirectoryWatch {
    hosts: HostMap,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl DirectoryWatch {
    /// Loads the current hosts and starts following changes.
    pub fn start(etcd: &[String]) -> Result<Self, DirectoryError> {
        let rt = runtime()?;
        let mut client = rt.block_on(Client::connect(etcd, None))?;
        let hosts: HostMap = Arc::default();
        let rev = rt.block_on(load(&mut client, &hosts))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, map) = (Arc::clone(&stop), Arc::clone(&hosts));
        let thread = thread::Builder::new()
            .name("memd-etcd-watch".into())
            .spawn(move || {
                rt.block_on(follow(client, map, rev, flag));
            })?;
        Ok(Self {
            hosts,
            stop,
            thread: Some(thread),
        })
    }

    /// Hosts registered now.
    pub fn hosts(&self) -> Vec<HostRecord> {
        self.hosts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Endpoints of the hosts registered now (records with bad addresses skipped).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.hosts()
            .iter()
            .filter_map(|h| Endpoint::parse(&h.endpoint).ok())
            .collect()
    }
}

impl Drop for DirectoryWatch {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Replaces the map with etcd's current content; returns the revision read.
async fn load(client: &mut Client, hosts: &HostMap) -> Result<i64, etcd_client::Error> {
    let resp = client
        .get(ETCD_PREFIX, Some(GetOptions::new().with_prefix()))
        .await?;
    let mut fresh = BTreeMap::new();
    for kv in resp.kvs() {
        if let (Ok(k), Ok(r)) = (
            kv.key_str(),
            serde_json::from_slice::<HostRecord>(kv.value()),
        ) {
            fresh.insert(k.to_string(), r);
        }
    }
    *hosts.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    Ok(resp.header().map_or(0, |h| h.revision()))
}

/// Applies watch events until stopped; on any stream failure reloads and re-watches.
async fn follow(mut client: Client, hosts: HostMap, mut rev: i64, stop: Arc<AtomicBool>) {
    while !stop.load(Relaxed) {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(rev + 1);
        let mut stream = match client.watch(ETCD_PREFIX, Some(opts)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "etcd watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            if stop.load(Relaxed) {
                return;
            }
            let msg = match tokio::time::timeout(POLL, stream.message()).await {
                Err(_) => continue,
                Ok(Ok(Some(m))) => m,
                Ok(Ok(None)) | Ok(Err(_)) => break,
            };
            if let Some(h) = msg.header() {
                rev = rev.max(h.revision());
            }
            let mut map = hosts.write().unwrap_or_else(|p| p.into_inner());
            for ev in msg.events() {
                let Some(kv) = ev.kv() else { continue };
                let Ok(key) = kv.key_str() else { continue };
                match ev.event_type() {
                    EventType::Put => {
                        if let Ok(r) = serde_json::from_slice::<HostRecord>(kv.value()) {
                            map.insert(key.to_string(), r);
                        }
                    }
                    EventType::Delete => {
                        map.remove(key);
                    }
                }
            }
        }
        tracing::warn!("etcd watch stream ended; reloading");
        match load(&mut client, &hosts).await {
            Ok(r) => rev = r,
            Err(e) => {
                tracing::warn!(error = %e, "etcd reload failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
