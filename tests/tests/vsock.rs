//! virtio-vsock in the real `revenant` binary, configured over the API as kata does.
//!
//! The test guest is a few real-mode instructions with no virtio-vsock driver, so the
//! device never becomes active: what is checked is the host side a kata shim sees before
//! the guest's agent is up. The socket exists once the VM boots, a client that says nothing
//! is not written to, and `CONNECT 1024` (no guest driver, so nobody can accept) closes the
//! client with nothing written. The guest side of the handshake (REQUEST, RESPONSE, `OK`,
//! echo) is covered by the device's tier-1 tests in `vmm/src/devices/virtio/vsock/tests.rs`.
//! A paused VM with vsock also snapshots, and a clone restored from it serves the socket
//! again (a second clone, on the same path, is refused naming `vsock.socket`).

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use revenant_tests::guests;
use revenant_tests::skip::kvm_available;
use revenant_tests::vmm_process::{test_guest_config, write_guest, ApiVmm};

/// Reads until EOF; a reset counts as a close too. Returns the bytes read.
fn read_until_closed(s: &mut UnixStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the VMM neither wrote nor closed within 5 s: {e}"),
    }
    buf
}

#[test]
fn vsock_socket_is_served_and_connect_without_a_guest_listener_is_closed_silently() {
    if !kvm_available(
        "vsock_socket_is_served_and_connect_without_a_guest_listener_is_closed_silently",
    ) {
        return;
    }
    let mut vmm = ApiVmm::start();
    let image = write_guest(vmm.dir.path(), "halt.bin", &guests::real_mode_halt());
    let socket = vmm.dir.path().join("clh.sock");
    let vsock = format!(r#""vsock":{{"cid":3,"socket":"{}"}}"#, socket.display());
    let body = test_guest_config(&image, "real", 16 << 20, "Off", &vsock);
    let r = vmm.client.put("vm.create", Some(&body));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        vmm.client.put("vm.boot", None).status,
        204,
        "{}",
        vmm.stderr()
    );
    let info = vmm.client.get("vm.info").json();
    assert_eq!(info["config"]["vsock"]["cid"], 3);
    let meta = std::fs::symlink_metadata(&socket).expect("the vsock socket exists after boot");
    assert!(meta.file_type().is_socket());

    // A client that has not spoken yet is not written to (nor closed).
    let mut quiet = UnixStream::connect(&socket).unwrap();
    quiet
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let e = quiet.read(&mut byte).expect_err("nothing to read");
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{e}"
    );

    // No guest driver, so no guest can accept port 1024: closed with nothing written.
    let mut client = UnixStream::connect(&socket).unwrap();
    client.write_all(b"CONNECT 1024\n").unwrap();
    assert_eq!(read_until_closed(&mut client), b"");
    // A malformed line gets the same.
    let mut bad = UnixStream::connect(&socket).unwrap();
    bad.write_all(b"HELLO\n").unwrap();
    assert_eq!(read_until_closed(&mut bad), b"");

    // The device's state goes into a snapshot (its connections never do: persist.rs).
    assert_eq!(vmm.client.put("vm.pause", None).status, 204);
    let template = vmm.dir.path().join("template");
    let body = format!(r#"{{"destination_url":"file://{}"}}"#, template.display());
    let r = vmm.client.put("vm.snapshot", Some(&body));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));

    assert_eq!(vmm.client.put("vmm.shutdown", None).status, 204);
    let status = vmm
        .wait_exit(Duration::from_secs(5))
        .expect("revenant exits after vmm.shutdown");
    assert!(status.success(), "exit status {status:?}");
    assert!(!socket.exists(), "the vsock socket is removed on exit");

    // A clone restored from it serves the socket again (at the template's path, free now
    // that the template's VMM is gone), with no connections: the guest has no vsock driver,
    // so there is none to tell (a running driver gets TRANSPORT_RESET, see the tier-1 tests
    // in vmm/src/devices/virtio/restore/tests.rs).
    let mut clone = ApiVmm::start();
    let body = format!(r#"{{"source_url":"file://{}"}}"#, template.display());
    let r = clone.client.put("vm.restore", Some(&body));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let meta = std::fs::symlink_metadata(&socket).expect("the clone listens on the socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(clone.client.put("vm.resume", None).status, 204);
    let mut client = UnixStream::connect(&socket).unwrap();
    client.write_all(b"CONNECT 1024\n").unwrap();
    assert_eq!(read_until_closed(&mut client), b"");

    // A second clone of the same template would listen on the same path: refused, naming
    // the field, while the first one holds it.
    let mut second = ApiVmm::start();
    let r = second.client.put("vm.restore", Some(&body));
    let text = String::from_utf8_lossy(&r.body);
    assert_eq!(r.status, 400, "{text}");
    assert!(text.contains("vsock.socket"), "{text}");
}
