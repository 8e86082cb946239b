//! Shared pieces of the benchmark binaries: a VMM process whose test reports arrive with
//! their time of arrival, percentiles, and knobs from the environment.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use crate::api_client::ApiClient;
use crate::bins::binary;

pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub struct BenchVmm {
    pub child: Child,
    pub client: ApiClient,
    /// When each test report line reached us.
    pub reports: Receiver<Instant>,
}

impl BenchVmm {
    pub fn spawn(dir: &Path, name: &str) -> BenchVmm {
        Self::spawn_with(dir, name, &[])
    }

    /// [`BenchVmm::spawn`] with extra command-line arguments.
    pub fn spawn_with(dir: &Path, name: &str, args: &[&str]) -> BenchVmm {
        Self::spawn_binary(&binary("revenant"), dir, name, args)
    }

    /// [`BenchVmm::spawn_with`] of the VMM binary at `revenant` (another build, a probe).
    pub fn spawn_binary(revenant: &Path, dir: &Path, name: &str, args: &[&str]) -> BenchVmm {
        let socket = dir.join(format!("{name}.sock"));
        let mut child = Command::new(revenant)
            .arg("--api-socket")
            .arg(&socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn revenant");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, reports) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("revenant: test-report") && tx.send(Instant::now()).is_err() {
                    return;
                }
            }
        });
        let mut client = ApiClient::new(&socket);
        let deadline = Instant::now() + Duration::from_secs(10);
        // Poll tightly: this measures the VMM, not a poller's period.
        while !socket.exists() || client.request("GET", "vmm.ping", None).is_err() {
            assert!(Instant::now() < deadline, "VMM did not come up");
            std::thread::sleep(Duration::from_micros(200));
        }
        BenchVmm {
            child,
            client,
            reports,
        }
    }

    pub fn restore_and_resume(&mut self, template: &Path, mode: &str) {
        let body = format!(
            r#"{{"source_url":"file://{}","memory_restore_mode":"{mode}"}}"#,
            template.display()
        );
        let r = self.client.put("vm.restore", Some(&body));
        assert_eq!(
            r.status,
            204,
            "restore: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(self.client.put("vm.resume", None).status, 204);
    }

    pub fn first_report(&self) -> Instant {
        self.reports
            .recv_timeout(Duration::from_secs(20))
            .expect("clone never reported")
    }
}

impl Drop for BenchVmm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// A `revenant --api-socket` process (binary `revenant`) with a 256 MiB real-mode guest that
/// halted after its first instructions: the idle VMM whose memory `scripts/bench vmm-start`
/// measures and whose code `scripts/hot-functions` records. Its API socket is `idle.sock` in
/// `dir`.
pub fn idle_vmm(revenant: &Path, dir: &Path) -> BenchVmm {
    let halt = dir.join("halt.bin");
    std::fs::write(&halt, crate::guests::real_mode_halt()).expect("write guest");
    let mut vmm = BenchVmm::spawn_binary(revenant, dir, "idle", &[]);
    let body = crate::vmm_process::test_guest_config(&halt, "real", 256 << 20, "Off", "");
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    std::thread::sleep(Duration::from_millis(300));
    vmm
}
