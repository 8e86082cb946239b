//! Tier 3: a Linux guest (lean kernel, busybox initramfs from images/) uses Revenant's virtio
//! devices for real. Each test boots with `revenant.test=NAME`, which makes the guest's /init
//! run `images/initramfs/tests/NAME` and print `REVENANT-TEST NAME PASS|FAIL`:
//! - `ext4`: a virtio-blk ext4 root file system made by the host is mounted, read, written
//!   and used as a chroot; the host then finds the guest's file in the image;
//! - `swap`: `mkswap`/`swapon` on the remote swap device (memory servers), then twice the
//!   guest's RAM goes through tmpfs and comes back intact;
//! - `vsock`: a host client completes the hybrid vsock handshake to a guest listener and
//!   gets its data echoed;
//! - `pcihp`: a disk added with `vm.add-disk` after boot appears in the guest under the
//!   reported bdf with the host's data on it, and disappears after `vm.remove-device`.
//! - `s3`: the guest suspends to RAM (`echo mem > /sys/power/state`); the host sees `S3` in
//!   `vm.info`, wakes it with `vm.wake` and the guest carries on after its write;
//! - `resize`: `vm.resize` adds a vCPU (ACPI CPU hotplug) and 256 MiB (virtio-mem); the guest
//!   onlines the CPU and sees MemTotal grow;
//! - `net`: a virtio-net card on a host tap; the guest configures an address and pings the
//!   host's end of the tap.
//!
//! On this project's PVM hosts Linux user space runs through the VMM's SYSCALL bridge.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use revenant_tests::images::linux_guest;
use revenant_tests::linux_vm::LinuxVm;
use revenant_tests::memd::{token_file, Memd};
use revenant_tests::skip::skip;
use revenant_tests::vmm_process::ApiVmm;

const LIMIT: Duration = Duration::from_secs(300);

/// Creates and boots a VM running `test` in the guest; `devices` is more vm.create JSON.
fn boot(vmm: &mut ApiVmm, kernel: &Path, initramfs: &Path, test: &str, devices: &str) -> PathBuf {
    boot_sized(vmm, kernel, initramfs, test, devices, 128 << 20)
}

/// [`boot`] with `memory` bytes of guest RAM.
fn boot_sized(
    vmm: &mut ApiVmm,
    kernel: &Path,
    initramfs: &Path,
    test: &str,
    devices: &str,
    memory: u64,
) -> PathBuf {
    let console = vmm.dir.path().join("console.log");
    let body = LinuxVm {
        kernel,
        initramfs,
        args: &format!("revenant.test={test}"),
        console: &console,
        memory,
        hotplug: 0,
        max_vcpus: 1,
        devices,
    }
    .body();
    let r = vmm.client.put("vm.create", Some(&body));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    console
}

/// Waits until the console shows a line containing `marker`; returns the console so far.
fn wait_for(console: &Path, marker: &str) -> String {
    wait_within(console, marker, LIMIT)
}

/// [`wait_for`] with a time limit of its own.
fn wait_within(console: &Path, marker: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(console).unwrap_or_default();
        if text.contains(marker) {
            return text;
        }
        assert!(
            start.elapsed() < limit,
            "no `{marker}` within {limit:?}; console:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn assert_passed(console: &Path, test: &str) {
    assert_passed_within(console, test, LIMIT);
}

fn assert_passed_within(console: &Path, test: &str, limit: Duration) {
    let text = wait_within(console, &format!("REVENANT-TEST {test} "), limit);
    assert!(
        text.contains(&format!("REVENANT-TEST {test} PASS")),
        "console:\n{text}"
    );
}

#[test]
fn a_linux_guest_mounts_an_ext4_root_on_virtio_blk() {
    let name = "a_linux_guest_mounts_an_ext4_root_on_virtio_blk";
    let Some((kernel, initramfs)) = linux_guest(name) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("hello.txt"), "hello from the host\n").unwrap();
    if std::fs::copy("/bin/busybox", root.join("bin/busybox")).is_err() {
        return skip(name, "/bin/busybox (busybox-static) is not installed");
    }
    let image = dir.path().join("root.ext4");
    let made = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&root)
        .arg(&image)
        .arg("32M")
        .status();
    if !made.is_ok_and(|s| s.success()) {
        return skip(name, "mkfs.ext4 (e2fsprogs) is not available");
    }
    let mut vmm = ApiVmm::start();
    let devices = format!(r#""disks":[{{"path":"{}"}}]"#, image.display());
    let console = boot(&mut vmm, &kernel, &initramfs, "ext4", &devices);
    assert_passed(&console, "ext4");
    let out = std::process::Command::new("debugfs")
        .args(["-R", "cat /out.txt"])
        .arg(&image)
        .output()
        .expect("debugfs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "written by the guest"
    );
}

#[test]
fn a_linux_guest_swaps_to_remote_memory() {
    let name = "a_linux_guest_swaps_to_remote_memory";
    let Some((kernel, initramfs)) = linux_guest(name) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let servers = [Memd::start(&token), Memd::start(&token)];
    let mut vmm = ApiVmm::start();
    let devices = format!(
        r#""disks":[{{"remote_swap":{{"size":{},"servers":["{}","{}"],"token_file":"{}","replicas":2}}}}]"#,
        512u64 << 20,
        servers[0].endpoint,
        servers[1].endpoint,
        token.display()
    );
    // Small RAM, and a long limit: every page fault and swap I/O of the guest runs kernel code,
    // which this project's PVM hosts emulate instruction by instruction.
    let console = boot_sized(&mut vmm, &kernel, &initramfs, "swap", &devices, 48 << 20);
    assert_passed_within(&console, "swap", Duration::from_secs(900));
}

#[test]
fn a_host_client_talks_to_a_guest_program_over_hybrid_vsock() {
    let name = "a_host_client_talks_to_a_guest_program_over_hybrid_vsock";
    let Some((kernel, initramfs)) = linux_guest(name) else {
        return;
    };
    let mut vmm = ApiVmm::start();
    let socket = vmm.dir.path().join("vsock.sock");
    let devices = format!(r#""vsock":{{"cid":3,"socket":"{}"}}"#, socket.display());
    let console = boot(&mut vmm, &kernel, &initramfs, "vsock", &devices);
    wait_for(&console, "REVENANT-VSOCK-LISTENING 5000");
    let mut stream = UnixStream::connect(&socket).expect("connect to the vsock socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(b"CONNECT 5000\n").unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut ok = String::new();
    reader.read_line(&mut ok).unwrap();
    assert!(ok.starts_with("OK "), "handshake answer: {ok:?}");
    stream.write_all(b"ping over vsock").unwrap();
    let mut echo = [0u8; 15];
    reader.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"ping over vsock");
    drop(reader);
    drop(stream);
    assert_passed(&console, "vsock");
}

#[test]
fn a_disk_hot_plugged_after_boot_appears_at_its_bdf_and_goes_away() {
    let name = "a_disk_hot_plugged_after_boot_appears_at_its_bdf_and_goes_away";
    let Some((kernel, initramfs)) = linux_guest(name) else {
        return;
    };
    let mut vmm = ApiVmm::start();
    let console = boot(
        &mut vmm,
        &kernel,
        &initramfs,
        "pcihp",
        r#""rng":{"src":"/dev/urandom"}"#,
    );
    wait_for(&console, "REVENANT-PCIHP READY");
    let disk = vmm.dir.path().join("hot.img");
    let mut data = b"REVENANT-PCI".to_vec();
    data.resize(1 << 20, 0);
    std::fs::write(&disk, &data).unwrap();
    let r = vmm.client.put(
        "vm.add-disk",
        Some(&format!(r#"{{"path":"{}","id":"hot"}}"#, disk.display())),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let bdf = r.json()["bdf"].as_str().unwrap().to_string();
    let text = wait_for(&console, "REVENANT-PCIHP DISK");
    assert!(
        text.contains(&format!("REVENANT-PCIHP DISK {bdf} REVENANT-PCI")),
        "console:\n{text}"
    );
    assert_eq!(
        vmm.client
            .put("vm.remove-device", Some(r#"{"id":"hot"}"#))
            .status,
        204
    );
    wait_for(&console, &format!("REVENANT-PCIHP GONE {bdf}"));
    assert_passed(&console, "pcihp");
}

#[test]
fn a_linux_guest_suspends_to_ram_and_the_host_wakes_it() {
    let name = "a_linux_guest_suspends_to_ram_and_the_host_wakes_it";
    let Some((kernel, initramfs)) = linux_guest(name) else {
        return;
    };
    let mut vmm = ApiVmm::start();
    let console = boot(
        &mut vmm,
        &kernel,
        &initramfs,
        "s3",
        r#""rng":{"src":"/dev/urandom"}"#,
    );
    wait_for(&console, "REVENANT-S3 ENTER");
    // The guest's write to the sleep control register stops its vCPUs: vm.info says S3.
    let start = Instant::now();
    loop {
        let info = vmm.client.get("vm.info").json();
        if info["sleep_state"] == "S3" {
            assert_eq!(info["state"], "Sleeping", "{info}");
            break;
        }
        assert!(
            start.elapsed() < LIMIT,
            "the guest never reached S3: {info}; console:\n{}",
            std::fs::read_to_string(&console).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(&console).unwrap_or_default();
    assert!(
        !text.contains("REVENANT-S3 BACK"),
        "ran on while asleep:\n{text}"
    );
    assert_eq!(vmm.client.put("vm.wake", None).status, 204);
    wait_for(&console, "REVENANT-S3 BACK");
    assert_eq!(vmm.client.get("vm.info").json()["sleep_state"], "S0");
    assert_passed(&console, "s3");
}

#[test]
fn a_linux_guest_sees_its_memory_and_vcpus_grow() {
    let name = "a_linux_guest_sees_its_memory_and_vcpus_grow";
    let Some((kernel, initramfs)) = linux_guest(name) else {
        return;
    };
    let mut vmm = ApiVmm::start();
    let console = vmm.dir.path().join("console.log");
    let body = LinuxVm {
        kernel: &kernel,
        initramfs: &initramfs,
        args: "revenant.test=resize",
        console: &console,
        memory: 128 << 20,
        hotplug: 256 << 20,
        max_vcpus: 2,
        devices: "",
    }
    .body();
    let r = vmm.client.put("vm.create", Some(&body));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    wait_for(&console, "REVENANT-RESIZE READY");
    let r = vmm.client.put(
        "vm.resize",
        Some(&format!(
            r#"{{"desired_vcpus":2,"desired_ram":{}}}"#,
            (128u64 + 256) << 20
        )),
    );
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let text = wait_for(&console, "REVENANT-RESIZE GREW");
    eprintln!(
        "{}",
        text.lines()
            .filter(|l| l.contains("REVENANT-RESIZE"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The guest plugged what it was asked for, and vm.info says so.
    let info = vmm.client.get("vm.info").json();
    assert_eq!(
        info["memory_hotplug"]["plugged_size"],
        256u64 << 20,
        "{info}"
    );
    assert_eq!(info["memory_actual_size"], 384u64 << 20, "{info}");
    assert_passed(&console, "resize");
}

#[test]
fn a_linux_guest_pings_the_host_over_virtio_net() {
    use revenant_tests::netns::NetNamespace;
    use revenant_tests::tap::{create_tap, unique_name};
    let name = "a_linux_guest_pings_the_host_over_virtio_net";
    let Some((kernel, initramfs)) = linux_guest(name) else {
        return;
    };
    let tap = unique_name("l");
    match create_tap(&tap) {
        // Not persistent: gone when closed; the VMM opens it again by name.
        Ok(probe) => drop(probe),
        Err(e) => {
            println!("SKIP: {name}: cannot create tap {tap} ({e}); needs CAP_NET_ADMIN");
            return;
        }
    }
    let mut vmm = ApiVmm::start();
    let console = boot(
        &mut vmm,
        &kernel,
        &initramfs,
        "net",
        &format!(r#""net":[{{"tap":"{tap}","mac":"52:54:00:12:34:56"}}]"#),
    );
    // The VMM holds the tap once vm.boot answered. Its host end moves into a network
    // namespace of this test's own (the VMM's fd keeps working), where it gets the address
    // the guest pings: the guest's traffic never reaches the host's own network.
    let ns = NetNamespace::create(&unique_name("ns")).expect("network namespace");
    ns.adopt(&tap, "10.213.7.1/24")
        .expect("host end of the tap in the namespace");
    let text = wait_for(&console, "REVENANT-NET card");
    assert!(text.contains("mac 52:54:00:12:34:56"), "console:\n{text}");
    assert_passed(&console, "net");
    let counters = vmm.client.get("vm.counters").json();
    let card = &counters["net"][0];
    assert!(card["tx_packets"].as_u64().unwrap_or(0) >= 4, "{card}");
    assert!(card["rx_packets"].as_u64().unwrap_or(0) >= 4, "{card}");
}
