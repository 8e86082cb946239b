//! Tier 3: the lean kernel and busybox initramfs from images/ boot to the readiness marker
//! (with the default `auto` CPU profile and no cmdline tricks) and power off cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use revenant_tests::bins::binary;
use revenant_tests::images::linux_guest;

const MARKER: &str = "REVENANT-READY";
const BOOT_LIMIT: Duration = Duration::from_secs(180);

#[test]
fn lean_kernel_boots_to_the_readiness_marker() {
    let name = "lean_kernel_boots_to_the_readiness_marker";
    let Some((kernel, initramfs)) = linux_guest(name) else {
        return;
    };
    let mut child = Command::new(binary("revenant"))
        .arg("--kernel")
        .arg(&kernel)
        .arg("--initramfs")
        .arg(&initramfs)
        .args([
            "--memory",
            "256M",
            "--cmdline",
            "console=ttyS0 reboot=k panic=-1 revenant.poweroff=1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn revenant");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let start = Instant::now();
    let mut console = Vec::new();
    let found = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let hit = line.contains(MARKER);
                console.push(line);
                if hit {
                    break true;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break false,
            Err(mpsc::RecvTimeoutError::Timeout) if start.elapsed() > BOOT_LIMIT => break false,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    };
    if !found {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "no {MARKER} within {BOOT_LIMIT:?}; console:\n{}",
            console.join("\n")
        );
    }
    eprintln!("{MARKER} after {:?}", start.elapsed());
    // revenant.poweroff=1: the guest powers off and the VMM exits 0.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for revenant") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "the guest did not power off cleanly within 60 s ({status:?}); console:\n{}",
        console.join("\n")
    );
}
