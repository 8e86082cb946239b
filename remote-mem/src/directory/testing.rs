//! A real etcd on loopback for tests (yours and the VMM's): `etcd` from Debian's
//! `etcd-server`, on kernel-chosen ports, killed on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running etcd; killed and reaped on drop.
pub struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts etcd on loopback with its data in `dir`; returns it and its client URL. `None`
/// (with a `SKIP:` line on stdout) when etcd cannot run here. Panics if it starts but does not
/// listen within 20 s: this is test support.
pub fn start_etcd(dir: &std::path::Path) -> Option<(Etcd, String)> {
    let (Ok(client), Ok(peer)) = (free_port(), free_port()) else {
        println!("SKIP: no free loopback port for etcd");
        return None;
    };
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .arg("--data-dir")
        .arg(dir.join("etcd"))
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("default={peer_url}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => Etcd(c),
        Err(e) => {
            println!("SKIP: cannot run etcd ({e}); install Debian etcd-server");
            return None;
        }
    };
    let end = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
        assert!(Instant::now() < end, "etcd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((child, url))
}
