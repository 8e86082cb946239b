//! Starting the real `revenant` binary, as kata does (API socket) or directly (flags).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::api_client::ApiClient;
use crate::bins::binary;

/// A `revenant --api-socket` process; killed on drop if still running.
pub struct ApiVmm {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub client: ApiClient,
}

impl ApiVmm {
    /// Starts the VMM and waits until `vmm.ping` answers, polling every 10 ms for up to
    /// 10 s exactly like kata's runtime.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`ApiVmm::start`] with extra command-line arguments.
    pub fn start_with(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("api.sock");
        let child = Command::new(binary("revenant"))
            .arg("--api-socket")
            .arg(&socket)
            .arg("-v")
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout")).expect("stdout file"))
            .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr file"))
            .spawn()
            .expect("spawn revenant");
        let mut client = ApiClient::new(&socket);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if socket.exists() {
                if let Ok(r) = client.request("GET", "vmm.ping", None) {
                    if r.status < 300 {
                        break;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "revenant did not answer vmm.ping within 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        ApiVmm {
            child,
            dir,
            socket,
            client,
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_with_timeout(&mut self.child, timeout)
    }
}

impl Drop for ApiVmm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Result of a direct-boot run.
pub struct DirectRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `revenant ARGS` to completion (killed after `timeout`, which fails the test).
pub fn run_direct(args: &[&str], timeout: Duration) -> DirectRun {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    let mut child = Command::new(binary("revenant"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn revenant");
    let status = wait_with_timeout(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        panic!("revenant {args:?} ran past {timeout:?}\nstdout: {stdout}\nstderr: {stderr}")
    });
    DirectRun {
        status,
        stdout,
        stderr,
    }
}

/// Writes a guest image into `dir` and returns its path.
pub fn write_guest(dir: &Path, name: &str, code: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, code).expect("write guest image");
    p
}

/// Values the guest reported on the test-report port, parsed from the VMM's stderr.
pub fn test_reports(stderr: &str) -> Vec<u32> {
    stderr
        .lines()
        .filter_map(|l| l.split("revenant: test-report ").nth(1))
        .filter_map(|v| u32::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok())
        .collect()
}

/// A `vm.create` body for a raw test guest: `memory` bytes, CPU `mode` (`real`/`long`),
/// serial `serial` (`Tty`, `Off`, ...); `extra` is more JSON members, e.g.
/// `"sleep_mode":"sz"`, or empty.
pub fn test_guest_config(
    image: &Path,
    mode: &str,
    memory: u64,
    serial: &str,
    extra: &str,
) -> String {
    test_guest_config_with_memory(
        image,
        mode,
        &format!(r#"{{"size":{memory}}}"#),
        serial,
        extra,
    )
}

/// [`test_guest_config`] with the whole `memory` object given as JSON (zones, hot-plug, ...).
pub fn test_guest_config_with_memory(
    image: &Path,
    mode: &str,
    memory: &str,
    serial: &str,
    extra: &str,
) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(",{extra}")
    };
    format!(
        r#"{{"memory":{memory},"payload":{{"test_guest":{{"path":"{}","mode":"{mode}"}}}},"serial":{{"mode":"{serial}"}}{extra}}}"#,
        image.display()
    )
}

/// The `memory` JSON of kata's templating VM: `size: 0` and one zone of `size` bytes backed
/// by `file`, mapped shared.
pub fn shared_zone_memory(file: &Path, size: u64) -> String {
    format!(
        r#"{{"size":0,"zones":[{{"id":"mem0","size":{size},"file":"{}","shared":true}}]}}"#,
        file.display()
    )
}

impl ApiVmm {
    /// Values the guest reported on the test-report port, from `vm.counters` (empty when it
    /// reported none, or when the VM is gone and has no counters).
    pub fn reports(&mut self) -> Vec<u64> {
        self.client.get("vm.counters").json()["test_reports"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
            .unwrap_or_default()
    }

    /// Waits (up to 60 s) until the guest reported `n` more values than `seen`; returns
    /// the new ones and moves `seen` past them.
    pub fn next_reports(&mut self, seen: &mut usize, n: usize) -> Vec<u64> {
        let start = Instant::now();
        loop {
            let r = self.reports();
            if r.len() >= *seen + n {
                let new = r[*seen..*seen + n].to_vec();
                *seen += n;
                return new;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "got {:?}; stderr:\n{}",
                &r[*seen..],
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Names of process `pid`'s vCPU threads (`vcpuN`, as kata finds them), sorted.
pub fn vcpu_thread_names(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("/proc/PID/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .filter(|c| c.starts_with("vcpu"))
        .collect();
    names.sort();
    names
}
