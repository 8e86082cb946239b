//! Starting real `revenant-memd` memory servers on loopback for VMM tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::bins::binary;

/// A memd process on 127.0.0.1 with a kernel-chosen port; killed on drop.
pub struct Memd {
    child: Child,
    /// `tcp://127.0.0.1:PORT`, as memd printed it.
    pub endpoint: String,
}

/// Writes a token file into `dir` and returns its path.
pub fn token_file(dir: &Path) -> PathBuf {
    let p = dir.join("memd-token");
    std::fs::write(&p, "revenant-test-token\n").expect("write token");
    p
}

impl Memd {
    pub fn start(token: &Path) -> Memd {
        let mut child = Command::new(binary("revenant-memd"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--capacity",
                "1G",
                "--slab-size",
                "64M",
                "--token-file",
            ])
            .arg(token)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn revenant-memd");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("memd readiness line");
        let endpoint = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|l| l.split(' ').next())
            .unwrap_or_else(|| panic!("unexpected memd readiness line {line:?}"))
            .to_string();
        Memd { child, endpoint }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Memd {
    fn drop(&mut self) {
        self.kill9();
    }
}
