//! Helpers shared by the integration tests: real `revenant-memd` processes on
//! loopback ports chosen by the kernel.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use revenant_remote_mem::client::{random_key, ClientConfig, HostConn};
use revenant_remote_mem::endpoint::Endpoint;

pub const TOKEN: &str = "test-token-1234";

/// A scratch directory unique to this test process and `name`, removed when dropped.
pub fn scratch(name: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("memd-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

/// A directory deleted with everything in it on drop.
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the shared token file into `dir`.
pub fn token_file(dir: &Path) -> PathBuf {
    let p = dir.join("token");
    std::fs::write(&p, format!("{TOKEN}\n")).unwrap();
    p
}

/// A running memd; killed (SIGKILL) and reaped on drop.
pub struct Memd {
    pub child: Child,
    pub endpoint: Endpoint,
}

impl Memd {
    /// Starts memd on 127.0.0.1 with a kernel-chosen port; waits for its
    /// readiness line.
    pub fn start(token: &Path, capacity: &str, slab: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_revenant-memd"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--capacity",
                capacity,
                "--slab-size",
                slab,
                "--token-file",
            ])
            .arg(token)
            .args(extra)
            // The malformed-frame test makes memd log 1,000 warnings; set
            // MEMD_TEST_LOG=warn to see them.
            .env(
                "RUST_LOG",
                std::env::var("MEMD_TEST_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn revenant-memd");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|l| l.split(' ').next())
            .unwrap_or_else(|| panic!("bad readiness line {line:?}"));
        Self {
            child,
            endpoint: Endpoint::parse(addr).unwrap(),
        }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// An authenticated connection with a fresh client key.
    pub fn conn(&self) -> HostConn {
        HostConn::connect(
            &self.endpoint,
            TOKEN.as_bytes(),
            random_key().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap()
    }
}

impl Drop for Memd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Client config over `servers`.
pub fn client_config(servers: &[&Memd], replicas: Option<usize>) -> ClientConfig {
    ClientConfig {
        endpoints: servers.iter().map(|m| m.endpoint.clone()).collect(),
        token: TOKEN.as_bytes().to_vec(),
        replicas,
        timeout: Duration::from_secs(10),
        backup_file: None,
        key: None,
    }
}

/// Deterministic page contents for page number `n` of a run seeded `seed`.
pub fn page_bytes(seed: u64, n: u64, out: &mut [u8]) {
    let mut x = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for c in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = x.to_le_bytes();
        c.copy_from_slice(&v[..c.len()]);
    }
}
