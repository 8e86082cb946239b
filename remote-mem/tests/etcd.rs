//! Cluster-mode directory against a real etcd on loopback (feature `etcd`):
//! two memd register with a lease, one is killed, the client's view drops it.

#![cfg(feature = "etcd")]

mod common;

use std::time::{Duration, Instant};

use common::{client_config, scratch, token_file, Memd};
use revenant_remote_mem::client::{ClientConfig, MemClient};
use revenant_remote_mem::directory::testing::start_etcd;
use revenant_remote_mem::directory::DirectoryWatch;
use revenant_remote_mem::power::PowerState;

/// Lease TTL the test memds register with.
const TTL_SECS: u64 = 3;

fn wait_for(view: &DirectoryWatch, n: usize, limit: Duration) -> Duration {
    let t = Instant::now();
    while view.hosts().len() != n {
        assert!(
            t.elapsed() < limit,
            "view has {:?}, want {n} hosts",
            view.hosts()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    t.elapsed()
}

#[test]
fn killed_memd_leaves_the_directory_within_its_lease() {
    let dir = scratch("etcd");
    let Some((_etcd, url)) = start_etcd(&dir) else {
        return;
    };
    let tok = token_file(&dir);
    let ttl = TTL_SECS.to_string();
    let extra = ["--etcd", url.as_str(), "--etcd-ttl", ttl.as_str()];
    let a = Memd::start(&tok, "16M", "1M", &extra);
    let mut b = Memd::start(&tok, "32M", "1M", &extra);

    let view = DirectoryWatch::start(std::slice::from_ref(&url)).unwrap();
    wait_for(&view, 2, Duration::from_secs(10));
    let hosts = view.hosts();
    let eps: Vec<String> = hosts.iter().map(|h| h.endpoint.clone()).collect();
    assert!(
        eps.contains(&a.endpoint.to_string()) && eps.contains(&b.endpoint.to_string()),
        "{eps:?}"
    );
    assert!(hosts.iter().all(|h| h.power_state == PowerState::S0));
    assert_eq!(hosts.iter().map(|h| h.capacity).sum::<u64>(), 48 << 20);

    // The directory is enough to build a working client.
    let cfg = ClientConfig {
        endpoints: view.endpoints(),
        ..client_config(&[], None)
    };
    let client = MemClient::connect(&cfg).unwrap();
    let s = client.alloc_slab().unwrap();
    client.write(s, 0, b"found through etcd").unwrap();

    // The operator CLI finds both hosts through etcd.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_revenant-memd"))
        .args(["stat", "--etcd", url.as_str(), "--token-file"])
        .arg(&tok)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");

    b.kill9();
    // etcd deletes the key when the lease expires (TTL from the last renewal,
    // renewals every TTL/3) and the watch delivers the delete. Bound generously:
    // this is a correctness check, not a timing benchmark.
    let gone = wait_for(&view, 1, Duration::from_secs(TTL_SECS * 4 + 5));
    println!("killed memd dropped from the view after {gone:?} (lease TTL {TTL_SECS} s)");
    assert_eq!(view.hosts()[0].endpoint, a.endpoint.to_string());
    let mut buf = [0u8; 18];
    client.read(s, 0, &mut buf).unwrap();
    assert_eq!(&buf, b"found through etcd");
}
