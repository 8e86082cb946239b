//! Tier-1 tests: no guest. A host-side driver brings the device up through the transport's
//! registers, posts rx buffers and tx chains, and checks the used rings, the bytes in guest
//! memory and what came out of the tap.
//!
//! Most tests use a `socketpair(AF_UNIX, SOCK_SEQPACKET)` standing in for the tap
//! (`testbed::stand_in`): it keeps frame boundaries as a tap does and needs no privilege,
//! and the test holds its other end as the host's network. The tests named `real_tap_*`
//! use a real tap and are skipped (saying why) where the process may not create one
//! (no CAP_NET_ADMIN).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use virtio_bindings::virtio_mmio as reg;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MQ,
    VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS,
};
use vm_memory::Bytes;

use super::testbed::*;
use super::*;
use crate::devices::virtio::testing::{Desc, NEXT};
use crate::devices::virtio::{VirtioDevice, VIRTIO_F_VERSION_1};

const BROADCAST: [u8; 6] = [0xff; 6];

fn started() -> (Testbed, OwnedFd) {
    let (tap, host) = stand_in();
    (Testbed::start(tap, u64::MAX).unwrap(), host)
}

/// `hdr` then `frame`, as the tap hands them over.
fn with_hdr(hdr: &[u8; VNET_HDR_LEN], frame: &[u8]) -> Vec<u8> {
    [&hdr[..], frame].concat()
}

fn num_buffers(hdr: &[u8]) -> u16 {
    u16::from_le_bytes([hdr[10], hdr[11]])
}

#[test]
fn config_space_has_the_mac_and_the_link_is_up() {
    let (mut bed, _host) = started();
    assert_eq!(
        bed.driver().read32(reg::VIRTIO_MMIO_DEVICE_ID),
        VIRTIO_ID_NET
    );
    let mut config = [0u8; 8];
    bed.driver().read_config(0, &mut config);
    assert_eq!(config[..6], TEST_MAC.0);
    assert_eq!(u16::from_le_bytes([config[6], config[7]]), 1, "link up");
    let mut past = [0xffu8; 4];
    bed.driver().read_config(8, &mut past);
    assert_eq!(past, [0; 4]);
    // Writes change nothing.
    bed.device().write_config(0, &[0; 6]);
    bed.driver().read_config(0, &mut config);
    assert_eq!(config[..6], TEST_MAC.0);

    let f = bed.features;
    for bit in [
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_STATUS,
        VIRTIO_NET_F_GUEST_CSUM,
    ] {
        assert_ne!(f & 1 << bit, 0, "feature {bit}");
    }
    assert_ne!(f & VIRTIO_F_VERSION_1, 0);
    for bit in [
        VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_F_CTRL_VQ,
        VIRTIO_NET_F_MQ,
    ] {
        assert_eq!(f & 1 << bit, 0, "feature {bit} is not implemented");
    }
    assert_eq!(bed.device().mac(), TEST_MAC);
    assert_eq!(bed.device().id(), "net0");

    // No MAC given: a random locally administered one, in the configuration space too.
    let (tap, _host) = stand_in();
    let net = Net::new(
        NetOptions {
            id: "n1".into(),
            mac: None,
        },
        tap,
    )
    .unwrap();
    assert!(net.mac().is_locally_administered() && net.mac().check_unicast().is_ok());
    let mut mac = [0u8; 6];
    net.read_config(0, &mut mac);
    assert_eq!(mac, net.mac().0);

    // A multicast MAC is refused, naming the device.
    let (tap, _host) = stand_in();
    let e = Net::new(
        NetOptions {
            id: "n2".into(),
            mac: Some("01:00:5e:00:00:01".parse().unwrap()),
        },
        tap,
    )
    .err()
    .unwrap();
    assert!(
        e.to_string().contains("n2") && e.to_string().contains("multicast"),
        "{e}"
    );
}

#[test]
fn tx_chains_reach_the_tap() {
    let (mut bed, host) = started();
    let f = frame(BROADCAST, 60, 1);
    let mut hdr = plain_hdr();
    hdr[0] = 1; // NEEDS_CSUM: the header passes through as the driver wrote it.
    hdr[8] = 34;
    bed.send(&hdr, &f).unwrap();
    assert_eq!(bed.tx_used().unwrap(), vec![(0, 0)]);
    assert!(bed.irq.read().is_ok(), "the driver was interrupted");
    assert_eq!(host_recv(&host).unwrap(), with_hdr(&hdr, &f));
    // Header and frame in one buffer, and a run of frames filling the queue.
    let one = with_hdr(&plain_hdr(), &frame(BROADCAST, 1514, 7));
    bed.mem
        .write_slice(&one, vm_memory::GuestAddress(SCRATCH))
        .unwrap();
    bed.send_chain(&[Desc::readable(SCRATCH, one.len() as u32)])
        .unwrap();
    assert_eq!(host_recv(&host).unwrap(), one);
    for i in 0..TEST_QUEUE_SIZE {
        bed.send(&plain_hdr(), &frame(BROADCAST, 100, i as u8))
            .unwrap();
    }
    for i in 0..TEST_QUEUE_SIZE {
        let got = host_recv(&host).unwrap();
        assert_eq!(got[VNET_HDR_LEN..], frame(BROADCAST, 100, i as u8));
    }
    assert!(host_recv(&host).is_none());
    assert_eq!(bed.tx_used().unwrap().len(), 1 + TEST_QUEUE_SIZE as usize);
    let c = bed.device().counters();
    assert_eq!(
        (c.tx_packets, c.tx_bytes, c.tx_dropped),
        (18, 60 + 1514 + 16 * 100, 0)
    );
}

#[test]
fn rx_frames_land_in_posted_buffers_with_the_vnet_header() {
    let (mut bed, host) = started();
    bed.post_rx(2, SMALL_RX_BUF).unwrap();
    let f = frame(TEST_MAC.0, 98, 3);
    let mut hdr = plain_hdr();
    hdr[0] = 2; // DATA_VALID, kept: the driver accepted GUEST_CSUM.
    hdr[10] = 0x55; // The kernel never writes num_buffers; the device does.
    hdr[11] = 0x55;
    host_send(&host, &with_hdr(&hdr, &f));
    let got = bed.recv().unwrap();
    assert_eq!(got.len(), 1);
    let rx = &got[0];
    assert_eq!((rx.head, rx.len as usize), (0, VNET_HDR_LEN + f.len()));
    assert_eq!(rx.hdr[0], 2);
    assert_eq!(num_buffers(&rx.hdr), 1);
    assert_eq!(rx.frame, f);
    assert!(bed.irq.read().is_ok(), "the driver was interrupted");
    // A second frame takes the second buffer.
    host_send(&host, &with_hdr(&plain_hdr(), &frame(TEST_MAC.0, 1514, 9)));
    let got = bed.recv().unwrap();
    assert_eq!((got[0].head, got[0].frame.len()), (1, 1514));
    let c = bed.device().counters();
    assert_eq!((c.rx_packets, c.rx_bytes, c.rx_dropped), (2, 98 + 1514, 0));
}

#[test]
fn without_guest_csum_rx_header_flags_are_cleared() {
    let (tap, host) = stand_in();
    let want = VIRTIO_F_VERSION_1 | 1 << VIRTIO_NET_F_MAC;
    let mut bed = Testbed::start(tap, want).unwrap();
    assert_eq!(bed.features, want);
    bed.post_rx(1, SMALL_RX_BUF).unwrap();
    let mut hdr = plain_hdr();
    hdr[0] = 2;
    host_send(&host, &with_hdr(&hdr, &frame(TEST_MAC.0, 60, 0)));
    let got = bed.recv().unwrap();
    assert_eq!(
        got[0].hdr[0], 0,
        "DATA_VALID is not for a driver without GUEST_CSUM"
    );
    assert_eq!(num_buffers(&got[0].hdr), 1);
}

#[test]
fn frames_wait_in_the_tap_until_buffers_are_posted() {
    let (mut bed, host) = started();
    for i in 0..3 {
        host_send(&host, &with_hdr(&plain_hdr(), &frame(TEST_MAC.0, 60, i)));
    }
    bed.pump();
    assert!(bed.recv().unwrap().is_empty());
    assert_eq!(bed.device().counters().rx_dropped, 0);
    // One buffer: the first frame, the others still wait (no new tap edge needed: the
    // rx queue notification resumes reading).
    bed.post_rx(1, SMALL_RX_BUF).unwrap();
    let got = bed.recv().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].frame, frame(TEST_MAC.0, 60, 0));
    bed.post_rx(4, SMALL_RX_BUF).unwrap();
    let got = bed.recv().unwrap();
    let frames: Vec<_> = got.iter().map(|g| g.frame.clone()).collect();
    assert_eq!(
        frames,
        vec![frame(TEST_MAC.0, 60, 1), frame(TEST_MAC.0, 60, 2)]
    );
    // The two buffers left take later frames as they come.
    host_send(&host, &with_hdr(&plain_hdr(), &frame(TEST_MAC.0, 60, 3)));
    assert_eq!(bed.recv().unwrap()[0].frame, frame(TEST_MAC.0, 60, 3));
    let c = bed.device().counters();
    assert_eq!((c.rx_packets, c.rx_dropped), (4, 0));
}

#[test]
fn frames_that_came_before_the_driver_are_delivered_at_activation() {
    let (tap, host) = stand_in();
    let mut bed = Testbed::unstarted(tap).unwrap();
    host_send(&host, &with_hdr(&plain_hdr(), &frame(TEST_MAC.0, 60, 4)));
    // The tap's readable edge comes and goes while no driver runs.
    bed.pump();
    bed.queue_rx(1, SMALL_RX_BUF).unwrap();
    bed.bring_up(u64::MAX).unwrap();
    let got = bed.recv().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].frame, frame(TEST_MAC.0, 60, 4));
}

#[test]
fn a_frame_larger_than_its_buffer_is_dropped_and_counted() {
    let (mut bed, host) = started();
    let room = VNET_HDR_LEN as u32 + 100;
    bed.post_rx(1, room).unwrap();
    host_send(&host, &with_hdr(&plain_hdr(), &frame(TEST_MAC.0, 101, 0)));
    host_send(&host, &with_hdr(&plain_hdr(), &frame(TEST_MAC.0, 100, 1)));
    // The oversized frame is dropped; the buffer takes the next, which fits exactly.
    let got = bed.recv().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].len, &got[0].frame),
        (room, &frame(TEST_MAC.0, 100, 1))
    );
    let c = bed.device().counters();
    assert_eq!((c.rx_packets, c.rx_dropped, c.malformed_chains), (1, 1, 0));
}

#[test]
fn malformed_tx_chains_are_returned_and_counted() {
    let (mut bed, host) = started();
    let hdr_at = SCRATCH;
    bed.mem
        .write_slice(
            &with_hdr(&plain_hdr(), &frame(BROADCAST, 60, 0)),
            vm_memory::GuestAddress(hdr_at),
        )
        .unwrap();
    // A device-writable buffer in a tx chain.
    bed.send_chain(&[
        Desc::readable(hdr_at, 72),
        Desc::writable(SCRATCH + 0x1000, 64),
    ])
    .unwrap();
    // Outside guest memory.
    bed.send_chain(&[Desc::readable(MEM_SIZE - 8, 72)]).unwrap();
    // Shorter than a vnet header and an Ethernet header.
    bed.send_chain(&[Desc::readable(hdr_at, 20)]).unwrap();
    // A descriptor that points to itself.
    let slot = TEST_QUEUE_SIZE - 1;
    bed.txq
        .write_desc(
            &bed.mem,
            slot,
            Desc {
                addr: hdr_at,
                len: 72,
                flags: NEXT,
                next: slot,
            },
        )
        .unwrap();
    bed.txq.publish(&bed.mem, slot).unwrap();
    bed.driver().notify(TX_QUEUE as u32);
    bed.pump();
    // A head outside the descriptor table: nothing to return, nothing to panic about.
    bed.txq.publish(&bed.mem, 200).unwrap();
    bed.driver().notify(TX_QUEUE as u32);
    bed.pump();
    let used = bed.tx_used().unwrap();
    assert_eq!(used.len(), 4, "{used:?}");
    assert!(used.iter().all(|&(_, len)| len == 0));
    // Longer than any frame: dropped, though well formed.
    bed.send_chain(&[Desc::readable(hdr_at, MAX_FRAME_CHAIN_LEN as u32 + 1)])
        .unwrap();
    assert!(host_recv(&host).is_none(), "nothing reached the tap");
    let c = bed.device().counters();
    assert_eq!((c.tx_packets, c.tx_dropped, c.malformed_chains), (0, 6, 5));
    // The queue still works.
    bed.send(&plain_hdr(), &frame(BROADCAST, 60, 2)).unwrap();
    assert_eq!(
        host_recv(&host).unwrap()[VNET_HDR_LEN..],
        frame(BROADCAST, 60, 2)
    );
}

#[test]
fn malformed_rx_chains_are_returned_empty_and_no_frame_is_lost() {
    let (mut bed, host) = started();
    host_send(&host, &with_hdr(&plain_hdr(), &frame(TEST_MAC.0, 60, 8)));
    bed.pump();
    // A device-readable buffer, one too short for the header, one outside guest memory.
    bed.post_rx_chain(&[Desc::readable(SCRATCH, SMALL_RX_BUF)])
        .unwrap();
    bed.post_rx_chain(&[Desc::writable(SCRATCH, VNET_HDR_LEN as u32 - 1)])
        .unwrap();
    bed.post_rx_chain(&[Desc::writable(MEM_SIZE - 8, SMALL_RX_BUF)])
        .unwrap();
    // Readable after writable.
    bed.post_rx_chain(&[
        Desc::writable(SCRATCH, 64),
        Desc::readable(SCRATCH + 0x1000, 64),
    ])
    .unwrap();
    // A loop through two descriptors.
    let (a, b) = (TEST_QUEUE_SIZE - 2, TEST_QUEUE_SIZE - 1);
    for (slot, next) in [(a, b), (b, a)] {
        let d = Desc {
            addr: SCRATCH,
            len: 64,
            flags: NEXT | crate::devices::virtio::testing::WRITE,
            next,
        };
        bed.rxq.write_desc(&bed.mem, slot, d).unwrap();
    }
    bed.rxq.publish(&bed.mem, a).unwrap();
    bed.driver().notify(RX_QUEUE as u32);
    bed.pump();
    let got = bed.recv().unwrap();
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(got.iter().all(|g| g.len == 0));
    let c = bed.device().counters();
    assert_eq!((c.malformed_chains, c.rx_packets, c.rx_dropped), (5, 0, 0));
    // The frame waited for a usable buffer.
    bed.post_rx(1, SMALL_RX_BUF).unwrap();
    let got = bed.recv().unwrap();
    assert_eq!(got[0].frame, frame(TEST_MAC.0, 60, 8));
}

#[test]
fn an_available_index_past_the_queue_size_does_not_hang_the_device() {
    let (mut bed, host) = started();
    host_send(&host, &with_hdr(&plain_hdr(), &frame(TEST_MAC.0, 60, 0)));
    for q in [&bed.rxq, &bed.txq] {
        let idx = vm_memory::GuestAddress(q.avail_ring.0 + 2);
        bed.mem.write_obj(100u16.to_le(), idx).unwrap();
    }
    // Both queues are notified; each pass ends (this test finishing is the check).
    bed.driver().notify(TX_QUEUE as u32);
    bed.driver().notify(RX_QUEUE as u32);
    bed.pump();
    let c = bed.device().counters();
    assert_eq!((c.tx_packets, c.rx_packets, c.rx_dropped), (0, 0, 0));
}

#[test]
fn snapshot_and_restore_keep_the_mac_and_ring_positions() {
    let (mut bed, host) = started();
    bed.post_rx(4, SMALL_RX_BUF).unwrap();
    for i in 0..2 {
        host_send(&host, &with_hdr(&plain_hdr(), &frame(TEST_MAC.0, 60, i)));
    }
    assert_eq!(bed.recv().unwrap().len(), 2);
    for i in 0..3 {
        bed.send(&plain_hdr(), &frame(BROADCAST, 60, i)).unwrap();
    }
    assert_eq!(bed.tx_used().unwrap().len(), 3);
    let snapshot = VirtioNetSnapshot {
        transport: bed.transport.state(),
        device: bed.device().state(),
    };
    // Through the state file's encoding.
    let bytes = postcard::to_allocvec(&snapshot).unwrap();
    let snapshot: VirtioNetSnapshot = postcard::from_bytes(&bytes).unwrap();
    let s = &snapshot.device;
    assert_eq!((s.id.as_str(), s.mac), ("net0", TEST_MAC));
    assert_eq!(s.acked_features, bed.features);
    assert_eq!(s.queues.len(), 2);
    assert_eq!(
        (s.queues[RX_QUEUE].next_avail, s.queues[RX_QUEUE].next_used),
        (2, 2),
        "two rx buffers used, two still posted"
    );
    assert_eq!(
        (s.queues[TX_QUEUE].next_avail, s.queues[TX_QUEUE].next_used),
        (3, 3)
    );

    // A clone may get its own MAC; a multicast one is refused; a device offering other
    // features is not this one.
    let (tap, _h) = stand_in();
    let other_mac: MacAddr = "52:54:00:aa:bb:cc".parse().unwrap();
    let clone = Net::from_state(s, tap, Some(other_mac)).unwrap();
    assert_eq!((clone.mac(), clone.state().mac), (other_mac, other_mac));
    let (tap, _h) = stand_in();
    assert!(Net::from_state(s, tap, Some(MacAddr([0xff; 6]))).is_err());
    let (tap, _h) = stand_in();
    let changed = NetState {
        avail_features: s.avail_features & !(1 << VIRTIO_NET_F_STATUS),
        ..s.clone()
    };
    let e = Net::from_state(&changed, tap, None).err().unwrap();
    assert!(e.to_string().contains("features"), "{e}");

    // Restored in front of a new tap, with the saved MAC.
    drop(host);
    let (tap, host) = stand_in();
    let net = Net::from_state(s, tap, None).unwrap();
    let mut bed = bed.restored(&snapshot, net).unwrap();
    assert!(bed.device().is_active());
    assert_eq!(bed.device().state(), snapshot.device);
    let mut mac = [0u8; 6];
    bed.driver().read_config(0, &mut mac);
    assert_eq!(mac, TEST_MAC.0);
    // The two buffers posted before the snapshot take the next frames.
    host_send(&host, &with_hdr(&plain_hdr(), &frame(TEST_MAC.0, 60, 9)));
    let got = bed.recv().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].head, &got[0].frame), (2, &frame(TEST_MAC.0, 60, 9)));
    bed.send(&plain_hdr(), &frame(BROADCAST, 60, 9)).unwrap();
    assert_eq!(bed.tx_used().unwrap(), vec![(6, 0)]);
    assert_eq!(
        host_recv(&host).unwrap()[VNET_HDR_LEN..],
        frame(BROADCAST, 60, 9)
    );
    let st = bed.device().state();
    assert_eq!(st.queues[RX_QUEUE].next_used, 3);
    assert_eq!(st.queues[TX_QUEUE].next_used, 4);
}

#[test]
fn a_device_never_started_snapshots_no_queues() {
    let (tap, _host) = stand_in();
    let bed = Testbed::unstarted(tap).unwrap();
    let state = bed.device().state();
    assert!(state.queues.is_empty());
    assert_eq!(state.acked_features, 0);
    assert_eq!(state.running_queues().queues.len(), 0);
}

#[test]
fn reset_stops_the_device_and_leaves_frames_in_the_tap() {
    let (mut bed, host) = started();
    bed.driver().set_status(0);
    assert!(!bed.device().is_active());
    host_send(&host, &with_hdr(&plain_hdr(), &frame(TEST_MAC.0, 60, 0)));
    bed.pump();
    // Bring it up again: the frame is still there.
    bed.rxq =
        crate::devices::virtio::testing::DriverQueue::new(bed.rxq.desc_table, TEST_QUEUE_SIZE);
    bed.txq =
        crate::devices::virtio::testing::DriverQueue::new(bed.txq.desc_table, TEST_QUEUE_SIZE);
    // Fresh rings: clear the old indices.
    for q in [&bed.rxq, &bed.txq] {
        bed.mem.write_obj(0u32, q.avail_ring).unwrap();
        bed.mem.write_obj(0u32, q.used_ring).unwrap();
    }
    bed.bring_up(u64::MAX).unwrap();
    bed.post_rx(1, SMALL_RX_BUF).unwrap();
    assert_eq!(bed.recv().unwrap()[0].frame, frame(TEST_MAC.0, 60, 0));
}

// --- Real taps (CAP_NET_ADMIN) ---

/// Opens `/dev/net/tun` and attaches a new interface with `flags` the way another
/// program (kata's runtime) would, blocking; None where this process may not.
fn raw_tun(flags: libc::c_int) -> Option<OwnedFd> {
    // SAFETY: open with a NUL-terminated path; the fd is checked below.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        eprintln!("no /dev/net/tun here, test skipped");
        return None;
    }
    // SAFETY: fd was just opened and is ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"rvnt%d") {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } < 0 {
        eprintln!(
            "cannot create a tap here, test skipped: {}",
            std::io::Error::last_os_error()
        );
        return None;
    }
    Some(fd)
}

#[test]
fn real_tap_fds_are_adopted_and_wrong_ones_refused() {
    let Some(fd) = raw_tun(libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) else {
        return;
    };
    let tap = Tap::from_fd(fd).unwrap();
    assert!(tap.if_name().starts_with("rvnt"), "{}", tap.if_name());
    // SAFETY: F_GETFL on an fd the tap owns.
    let fl = unsafe { libc::fcntl(tap.as_raw_fd(), libc::F_GETFL) };
    assert_ne!(fl & libc::O_NONBLOCK, 0, "made non-blocking");
    tap.set_offloads_from_features(device::OFFERED_FEATURES)
        .unwrap();
    tap.set_offload(0).unwrap();
    // No vnet header; a tun (IP packets, no Ethernet). (Whether a tap asked for without
    // IFF_NO_PI reports it depends on the kernel: 6.18 sets it along with IFF_VNET_HDR.)
    for flags in [
        libc::IFF_TAP | libc::IFF_NO_PI,
        libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR,
    ] {
        let fd = raw_tun(flags).unwrap();
        let e = Tap::from_fd(fd).unwrap_err();
        assert!(matches!(e, TapError::Flags { .. }), "{flags:#x}: {e}");
    }
    // Tap::open names it as the kernel did.
    let Some(tap) = real_tap() else { return };
    assert!(tap.if_name().starts_with("rvnt") && !tap.if_name().contains('%'));
}

/// Sets `name` up (SIOCSIFFLAGS), with IPv6 off first so it sends nothing of its own.
fn link_up(name: &str) {
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
    // SAFETY: a plain socket for interface ioctls, closed by OwnedFd.
    let sock = unsafe { OwnedFd::from_raw_fd(libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)) };
    // SAFETY: ifreq is plain old data.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write one ifreq.
    unsafe {
        assert_eq!(
            libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr),
            0
        );
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(
            libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut ifr),
            0
        );
    }
}

/// A raw packet socket on `name` for ethertype 0x88b5 (the test frames'), so the host's
/// own traffic on the interface does not get in the way.
fn packet_socket(name: &str) -> OwnedFd {
    let proto = 0x88b5u16.to_be();
    // SAFETY: plain socket call; the fd is checked and owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            libc::c_int::from(proto),
        )
    };
    assert!(fd >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: fd was just created.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let cname = std::ffi::CString::new(name).unwrap();
    // SAFETY: NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    assert_ne!(index, 0);
    // SAFETY: sockaddr_ll is plain old data.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto;
    addr.sll_ifindex = index as i32;
    // SAFETY: bind reads one sockaddr_ll of the given size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    fd
}

#[test]
fn real_tap_carries_frames_both_ways() {
    let Some(tap) = real_tap() else { return };
    let name = tap.if_name().to_string();
    let mut bed = Testbed::start(tap, u64::MAX).unwrap();
    // While the interface is down the tap refuses writes (EIO): dropped and counted, the
    // chain returned.
    bed.send(&plain_hdr(), &frame(BROADCAST, 60, 0)).unwrap();
    assert_eq!(bed.tx_used().unwrap().len(), 1);
    let c = bed.device().counters();
    assert_eq!((c.tx_packets, c.tx_dropped), (0, 1));

    link_up(&name);
    let sock = packet_socket(&name);
    // Guest to host.
    let out = frame(BROADCAST, 60, 5);
    bed.send(&plain_hdr(), &out).unwrap();
    let mut buf = vec![0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(2);
    let got = loop {
        // SAFETY: recv writes at most buf.len() bytes into buf.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if let Ok(n) = usize::try_from(n) {
            break buf[..n].to_vec();
        }
        assert!(
            Instant::now() < deadline,
            "the frame never reached the host"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(got, out);
    assert_eq!(bed.device().counters().tx_packets, 1);

    // Host to guest.
    bed.post_rx(8, SMALL_RX_BUF).unwrap();
    let inbound = frame(TEST_MAC.0, 60, 6);
    // SAFETY: send reads inbound.len() bytes.
    let n = unsafe { libc::send(sock.as_raw_fd(), inbound.as_ptr().cast(), inbound.len(), 0) };
    assert_eq!(
        n,
        inbound.len() as isize,
        "{}",
        std::io::Error::last_os_error()
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    let (hdr, data) = loop {
        let got = bed.recv().unwrap();
        if let Some(g) = got
            .into_iter()
            .find(|g| g.frame.get(12..14) == Some(&[0x88, 0xb5]))
        {
            break (g.hdr, g.frame);
        }
        assert!(
            Instant::now() < deadline,
            "the frame never reached the guest"
        );
    };
    assert_eq!(data, inbound);
    assert_eq!(num_buffers(&hdr), 1);
    assert_eq!(bed.device().counters().rx_dropped, 0);
}
