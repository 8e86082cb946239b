//! Tier-1 tests: no guest. The test plays the guest driver (descriptor chains in guest
//! memory, queue notifications through the MMIO registers) and the host side (real Unix
//! sockets), with the device's event handler run by an event manager in the test thread.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use virtio_bindings::virtio_mmio as reg;
use vm_memory::{Bytes, GuestAddress};

use super::connection::State;
use super::packet::{Header, Op, HDR_LEN, SHUTDOWN_BOTH};
use super::persist::VsockState;
use super::testbed::{Testbed, GUEST_BUF_ALLOC, GUEST_CID, MEM_SIZE, SCRATCH, TX_BUFS};
use super::{CONN_BUF_SIZE, FIRST_LOCAL_PORT, HOST_CID, MAX_PKT_LEN};
use crate::devices::virtio::testing::Desc;

const GUEST_PORT: u32 = 5000;
const HOST_PORT: u32 = 1234;

fn socket_path(dir: &Path) -> PathBuf {
    dir.join("v.sock")
}

/// A started testbed in a fresh directory, and (for guest-initiated tests) a host
/// listener at `<uds>_HOST_PORT`.
struct Env {
    _dir: tempfile::TempDir,
    uds: PathBuf,
    listener: UnixListener,
    bed: Testbed,
}

fn env() -> Env {
    env_with_rx(16)
}

fn env_with_rx(rx_buffers: u16) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let uds = socket_path(dir.path());
    let bed = Testbed::start(&uds, rx_buffers).unwrap();
    let listener = host_listener(&uds, HOST_PORT);
    Env {
        _dir: dir,
        uds,
        listener,
        bed,
    }
}

fn host_listener(uds: &Path, port: u32) -> UnixListener {
    let mut p = uds.as_os_str().to_owned();
    p.push(format!("_{port}"));
    UnixListener::bind(PathBuf::from(p)).unwrap()
}

fn ops(packets: &[(Header, Vec<u8>)]) -> Vec<u16> {
    packets.iter().map(|(h, _)| h.op).collect()
}

fn only(packets: Vec<(Header, Vec<u8>)>, op: Op) -> (Header, Vec<u8>) {
    assert_eq!(packets.len(), 1, "ops {:?}", ops(&packets));
    let p = packets.into_iter().next().unwrap();
    assert_eq!(p.0.op, op.code(), "{:?}", p.0);
    p
}

/// Reads exactly `n` bytes (the stream has a read timeout).
fn read_n(s: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).unwrap();
    buf
}

/// What the host client can read right now, without waiting; None at EOF.
fn read_now(s: &mut UnixStream) -> Option<Vec<u8>> {
    s.set_nonblocking(true).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    let eof = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(e) => panic!("read: {e}"),
        }
    };
    s.set_nonblocking(false).unwrap();
    (!eof || !out.is_empty()).then_some(out)
}

/// The client was closed without a byte written to it: EOF, or a reset when the device
/// closed with part of a malformed line unread.
fn assert_closed_silently(client: &mut UnixStream, what: &str) {
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = Vec::new();
    match client.read_to_end(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset && buf.is_empty() => {}
        other => panic!("{what}: {other:?} with {buf:?}"),
    }
}

/// Guest-initiated connection to HOST_PORT, accepted by the host; returns the host end.
fn guest_connect(bed: &mut Testbed, listener: &UnixListener, guest_port: u32) -> UnixStream {
    bed.send(bed.hdr(guest_port, HOST_PORT, Op::Request, 0), &[])
        .unwrap();
    let (host, _) = listener.accept().unwrap();
    host.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let (h, _) = only(bed.recv().unwrap(), Op::Response);
    assert_eq!(
        (h.src_cid, h.dst_cid, h.src_port, h.dst_port),
        (HOST_CID, GUEST_CID, HOST_PORT, guest_port)
    );
    assert_eq!(h.buf_alloc, CONN_BUF_SIZE);
    host
}

/// Host-initiated: `CONNECT port`, then the REQUEST the guest sees; returns the client
/// and the host port the device chose.
fn host_connect(bed: &mut Testbed, uds: &Path, port: u32) -> (UnixStream, u32) {
    let mut client = UnixStream::connect(uds).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    bed.pump();
    assert_eq!(
        read_now(&mut client),
        Some(vec![]),
        "nothing before CONNECT"
    );
    client
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .unwrap();
    let (h, _) = only(bed.recv().unwrap(), Op::Request);
    assert_eq!(
        (h.src_cid, h.dst_cid, h.dst_port),
        (HOST_CID, GUEST_CID, port)
    );
    assert!(h.src_port >= FIRST_LOCAL_PORT);
    assert_eq!(
        read_now(&mut client),
        Some(vec![]),
        "nothing before the guest accepts"
    );
    (client, h.src_port)
}

/// A started testbed with a guest-initiated connection established; returns its host end.
fn guest_connected() -> (tempfile::TempDir, Testbed, UnixStream) {
    let Env {
        _dir,
        listener,
        mut bed,
        ..
    } = env();
    let host = guest_connect(&mut bed, &listener, GUEST_PORT);
    (_dir, bed, host)
}

/// A started testbed with a host client whose `CONNECT port` the guest has not answered.
fn pending_host_connect(port: u32) -> (tempfile::TempDir, Testbed, UnixStream, u32) {
    let Env {
        _dir, uds, mut bed, ..
    } = env();
    let (client, local) = host_connect(&mut bed, &uds, port);
    (_dir, bed, client, local)
}

#[test]
fn transport_identifies_a_vsock_device_with_its_cid() {
    let dir = tempfile::tempdir().unwrap();
    let mut bed = Testbed::unstarted(&socket_path(dir.path())).unwrap();
    let mut d = bed.driver();
    assert_eq!(d.read32(reg::VIRTIO_MMIO_DEVICE_ID), 19);
    let features = d.device_features();
    assert_eq!(features, crate::devices::virtio::VIRTIO_F_VERSION_1 | 1);
    let mut cid = [0u8; 8];
    d.read_config(0, &mut cid);
    assert_eq!(u64::from_le_bytes(cid), GUEST_CID);
    let mut high = [0u8; 4];
    d.read_config(4, &mut high);
    assert_eq!(high, [0; 4]);
    assert!(d.negotiate(u64::MAX).is_some());
    for q in 0..3 {
        d.write32(reg::VIRTIO_MMIO_QUEUE_SEL, q);
        assert_eq!(d.read32(reg::VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
    }
    d.write32(reg::VIRTIO_MMIO_QUEUE_SEL, 3);
    assert_eq!(d.read32(reg::VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
    assert!(socket_path(dir.path()).exists(), "listening before boot");
}

#[test]
fn guest_connects_echoes_gets_credit_and_shuts_down() {
    let (_dir, mut bed, mut host) = guest_connected();

    // Guest -> host, then the host echoes it back.
    bed.send(bed.hdr(GUEST_PORT, HOST_PORT, Op::Rw, 5), b"hello")
        .unwrap();
    let got = read_n(&mut host, 5);
    assert_eq!(got, b"hello");
    host.write_all(&got).unwrap();
    let (h, data) = only(bed.recv().unwrap(), Op::Rw);
    assert_eq!((h.len, data.as_slice()), (5, &b"hello"[..]));
    assert_eq!(h.fwd_cnt, 5, "our fwd_cnt counts what the host took");
    bed.fwd_cnt += 5;

    // Credit request -> credit update.
    bed.send(bed.hdr(GUEST_PORT, HOST_PORT, Op::CreditRequest, 0), &[])
        .unwrap();
    let (h, _) = only(bed.recv().unwrap(), Op::CreditUpdate);
    assert_eq!((h.buf_alloc, h.fwd_cnt), (CONN_BUF_SIZE, 5));

    // Half our buffer forwarded: an unsolicited credit update.
    let chunk = vec![0x5a; MAX_PKT_LEN as usize];
    let mut read = 0usize;
    for _ in 0..2 {
        bed.send(bed.hdr(GUEST_PORT, HOST_PORT, Op::Rw, MAX_PKT_LEN), &chunk)
            .unwrap();
        read += read_n(&mut host, chunk.len()).len();
    }
    bed.pump();
    let (h, _) = only(bed.recv().unwrap(), Op::CreditUpdate);
    assert_eq!(h.fwd_cnt as usize, 5 + read);

    // The guest closes: RST, and the host reads EOF.
    let mut bye = bed.hdr(GUEST_PORT, HOST_PORT, Op::Shutdown, 0);
    bye.flags = SHUTDOWN_BOTH;
    bed.send(bye, &[]).unwrap();
    only(bed.recv().unwrap(), Op::Rst);
    assert_eq!(read_now(&mut host), None, "host sees EOF");
    assert_eq!(bed.device().muxer().connection_count(), 0);
}

#[test]
fn host_close_sends_shutdown_and_guest_rst_ends_it() {
    let (_dir, mut bed, mut host) = guest_connected();
    host.write_all(b"last words").unwrap();
    drop(host);
    let got = bed
        .recv_until(Op::Shutdown, Duration::from_secs(2))
        .unwrap();
    assert_eq!(ops(&got), [Op::Rw.code(), Op::Shutdown.code()]);
    assert_eq!(got[0].1, b"last words", "data first, then SHUTDOWN");
    assert_eq!(got[1].0.flags, SHUTDOWN_BOTH);
    let key = (HOST_PORT, GUEST_PORT);
    assert!(matches!(
        bed.device().muxer().connection_state(key),
        Some(State::Closing { .. })
    ));
    bed.send(bed.hdr(GUEST_PORT, HOST_PORT, Op::Rst, 0), &[])
        .unwrap();
    assert_eq!(bed.device().muxer().connection_count(), 0);
    assert!(bed.recv().unwrap().is_empty(), "no answer to an RST");
}

#[test]
fn host_data_waits_for_guest_credit() {
    let Env {
        _dir,
        listener,
        mut bed,
        ..
    } = env();
    // The guest offers only 8 bytes of buffer.
    let mut req = bed.hdr(GUEST_PORT, HOST_PORT, Op::Request, 0);
    req.buf_alloc = 8;
    bed.send(req, &[]).unwrap();
    let (mut host, _) = listener.accept().unwrap();
    only(bed.recv().unwrap(), Op::Response);
    host.write_all(b"0123456789abcdefghij").unwrap();
    let got = bed.recv().unwrap();
    assert_eq!(
        ops(&got),
        [Op::Rw.code(), Op::CreditRequest.code()],
        "8 bytes, then a credit request"
    );
    assert_eq!(got[0].1, b"01234567");
    assert!(bed.recv().unwrap().is_empty(), "no more without credit");
    // The guest consumed the 8 bytes.
    let mut upd = bed.hdr(GUEST_PORT, HOST_PORT, Op::CreditUpdate, 0);
    upd.buf_alloc = 8;
    upd.fwd_cnt = 8;
    bed.send(upd, &[]).unwrap();
    let got = bed.recv().unwrap();
    assert_eq!(got[0].1, b"89abcdef");
    upd.fwd_cnt = 16;
    bed.send(upd, &[]).unwrap();
    let got = bed.recv().unwrap();
    assert_eq!(got[0].1, b"ghij");
}

#[test]
fn guest_beyond_credit_is_reset() {
    let Env {
        _dir,
        listener,
        mut bed,
        ..
    } = env();
    // The host never reads: the guest fills our buffer and goes on.
    let _host = guest_connect(&mut bed, &listener, GUEST_PORT);
    let chunk = vec![1u8; MAX_PKT_LEN as usize];
    let mut reset = false;
    for _ in 0..64 {
        bed.send(bed.hdr(GUEST_PORT, HOST_PORT, Op::Rw, MAX_PKT_LEN), &chunk)
            .unwrap();
        if bed
            .recv()
            .unwrap()
            .iter()
            .any(|(h, _)| h.op == Op::Rst.code())
        {
            reset = true;
            break;
        }
    }
    assert!(reset, "a guest ignoring credit is reset");
    assert_eq!(bed.device().muxer().connection_count(), 0);
}

#[test]
fn host_connect_gets_ok_only_after_the_guest_accepts_then_echoes() {
    let (_env, mut bed, mut client, local) = pending_host_connect(1024);
    let mut resp = bed.hdr(1024, local, Op::Response, 0);
    resp.buf_alloc = GUEST_BUF_ALLOC;
    bed.send(resp, &[]).unwrap();
    let expected = format!("OK {local}\n");
    assert_eq!(read_n(&mut client, expected.len()), expected.as_bytes());
    assert_eq!(
        read_now(&mut client),
        Some(vec![]),
        "nothing after the line"
    );

    client.write_all(b"ping").unwrap();
    let (h, data) = only(bed.recv().unwrap(), Op::Rw);
    assert_eq!(
        (h.src_port, h.dst_port, data.as_slice()),
        (local, 1024, &b"ping"[..])
    );
    bed.fwd_cnt += 4;
    bed.send(bed.hdr(1024, local, Op::Rw, 4), b"pong").unwrap();
    assert_eq!(read_n(&mut client, 4), b"pong");
    let c = bed.device().counters();
    assert_eq!(c.muxer.host_connects, 1);
}

#[test]
fn guest_rst_closes_the_client_with_nothing_written() {
    let (_env, mut bed, mut client, local) = pending_host_connect(1024);
    bed.send(bed.hdr(1024, local, Op::Rst, 0), &[]).unwrap();
    assert_closed_silently(&mut client, "after RST");
    assert_eq!(bed.device().muxer().connection_count(), 0);
}

#[test]
fn unanswered_request_times_out_with_nothing_written() {
    let (_env, mut bed, mut client, local) = pending_host_connect(1024);
    bed.pump_for(super::HANDSHAKE_TIMEOUT + Duration::from_millis(300));
    assert_closed_silently(&mut client, "after the timeout");
    let (h, _) = only(bed.recv().unwrap(), Op::Rst);
    assert_eq!((h.src_port, h.dst_port), (local, 1024));
    // A late RESPONSE is refused.
    bed.send(bed.hdr(1024, local, Op::Response, 0), &[])
        .unwrap();
    only(bed.recv().unwrap(), Op::Rst);
}

#[test]
fn malformed_connect_lines_close_the_client() {
    let Env {
        _dir, uds, mut bed, ..
    } = env();
    let long = "CONNECT 1".repeat(5);
    for line in [
        "CONNECT abc\n",
        "connect 1024\n",
        "CONNECT 99999999999\n",
        &long,
    ] {
        let mut client = UnixStream::connect(&uds).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        client.write_all(line.as_bytes()).unwrap();
        bed.pump();
        assert_closed_silently(&mut client, line);
    }
    assert!(bed.recv().unwrap().is_empty(), "the guest heard of none");
    // A client that says nothing is left waiting, not closed or written to.
    let mut quiet = UnixStream::connect(&uds).unwrap();
    bed.pump();
    assert_eq!(read_now(&mut quiet), Some(vec![]));
    // The line may arrive in pieces.
    quiet.write_all(b"CONN").unwrap();
    bed.pump();
    quiet.write_all(b"ECT 7\n").unwrap();
    let (h, _) = only(bed.recv().unwrap(), Op::Request);
    assert_eq!(h.dst_port, 7);
}

#[test]
fn connect_before_the_driver_is_up_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let uds = socket_path(dir.path());
    let mut bed = Testbed::unstarted(&uds).unwrap();
    let mut client = UnixStream::connect(&uds).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    client.write_all(b"CONNECT 1024\n").unwrap();
    bed.pump();
    assert_closed_silently(&mut client, "no driver");
}

#[test]
fn guest_connect_to_nobody_gets_rst() {
    let Env { _dir, mut bed, .. } = env();
    bed.send(bed.hdr(GUEST_PORT, 4321, Op::Request, 0), &[])
        .unwrap();
    let (h, _) = only(bed.recv().unwrap(), Op::Rst);
    assert_eq!((h.src_port, h.dst_port), (4321, GUEST_PORT));
}

#[test]
fn malformed_packets_are_dropped_or_reset_and_the_device_keeps_working() {
    let Env {
        _dir,
        listener,
        mut bed,
        ..
    } = env();
    let hdr = bed.hdr(GUEST_PORT, HOST_PORT, Op::Rw, 0);
    let write_hdr = |bed: &Testbed, at: u64, h: Header| {
        bed.mem
            .write_slice(&h.to_bytes(), GuestAddress(at))
            .unwrap();
    };

    // Dropped without an answer: short header, len beyond the buffers, len beyond the
    // maximum, buffers outside memory, a writable tx buffer, an unterminated chain.
    write_hdr(&bed, SCRATCH, Header { len: 100, ..hdr });
    let dropped: Vec<Vec<Desc>> = vec![
        vec![Desc::readable(SCRATCH, 20)],
        vec![Desc::readable(SCRATCH, HDR_LEN as u32 + 10)],
        vec![Desc::readable(MEM_SIZE - 10, 100)],
        vec![Desc::readable(u64::MAX - 5, 64)],
        vec![Desc::readable(SCRATCH, 44), Desc::readable(MEM_SIZE, 100)],
        vec![Desc::writable(SCRATCH, 200)],
        vec![
            Desc::readable(SCRATCH, 44),
            Desc::writable(SCRATCH + 44, 100),
        ],
    ];
    for chain in &dropped {
        bed.send_chain(chain).unwrap();
    }
    write_hdr(
        &bed,
        SCRATCH + 0x1000,
        Header {
            len: MAX_PKT_LEN + 1,
            ..hdr
        },
    );
    bed.send_chain(&[Desc::readable(SCRATCH + 0x1000, 0x2_0000)])
        .unwrap();
    // A descriptor whose NEXT points to itself.
    let slot = bed.txq.avail_idx() % bed.txq.size;
    bed.txq
        .write_desc(
            &bed.mem,
            slot,
            Desc {
                addr: SCRATCH,
                len: 44,
                flags: crate::devices::virtio::testing::NEXT,
                next: slot,
            },
        )
        .unwrap();
    bed.txq.publish(&bed.mem, slot).unwrap();
    bed.driver().notify(1);
    bed.pump();
    let used = bed.tx_used().unwrap();
    assert_eq!(used.len(), dropped.len() + 2);
    assert!(used.iter().all(|&(_, len)| len == 0), "{used:?}");
    assert_eq!(bed.device().counters().tx_dropped, dropped.len() as u64 + 2);
    // Not from our guest, not for the host: ignored.
    bed.send(Header { src_cid: 7, ..hdr }, &[]).unwrap();
    bed.send(Header { dst_cid: 9, ..hdr }, &[]).unwrap();
    assert!(bed.recv().unwrap().is_empty());

    // Answered with RST: unknown op, wrong socket type, data for no connection.
    bed.send(Header { op: 99, ..hdr }, &[]).unwrap();
    bed.send(Header { type_: 2, ..hdr }, &[]).unwrap();
    bed.send(Header { len: 3, ..hdr }, b"abc").unwrap();
    let got = bed.recv().unwrap();
    assert_eq!(ops(&got), [Op::Rst.code(); 3]);

    // Header split over two descriptors, payload in a third: fine.
    let mut host = guest_connect(&mut bed, &listener, GUEST_PORT);
    let b = Header { len: 3, ..hdr }.to_bytes();
    bed.mem.write_slice(&b, GuestAddress(TX_BUFS)).unwrap();
    bed.mem.write_slice(b"xyz", GuestAddress(SCRATCH)).unwrap();
    bed.send_chain(&[
        Desc::readable(TX_BUFS, 20),
        Desc::readable(TX_BUFS + 20, 24),
        Desc::readable(SCRATCH, 3),
    ])
    .unwrap();
    assert_eq!(read_n(&mut host, 3), b"xyz");
    // Header and payload sharing one descriptor was covered by every send() above.

    // An unknown op on a live connection resets it.
    bed.send(Header { op: 42, ..hdr }, &[]).unwrap();
    only(bed.recv().unwrap(), Op::Rst);
    assert_eq!(bed.device().muxer().connection_count(), 0);
    let mut eof = Vec::new();
    host.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(host.read_to_end(&mut eof).unwrap(), 0);
}

#[test]
fn malformed_rx_buffers_come_back_empty() {
    let Env {
        _dir,
        listener,
        mut bed,
        ..
    } = env_with_rx(0);
    bed.rxq
        .add_chain(&bed.mem, &[Desc::readable(SCRATCH, 4096)])
        .unwrap();
    bed.rxq
        .add_chain(&bed.mem, &[Desc::writable(SCRATCH, 10)])
        .unwrap();
    bed.rxq
        .add_chain(&bed.mem, &[Desc::writable(MEM_SIZE - 8, 4096)])
        .unwrap();
    bed.driver().notify(0);
    // The RESPONSE waits for a buffer; the three bad ones are returned empty on the way.
    bed.send(bed.hdr(GUEST_PORT, HOST_PORT, Op::Request, 0), &[])
        .unwrap();
    let _host = listener.accept().unwrap();
    let used = bed.rxq.take_used(&bed.mem).unwrap();
    assert_eq!(used.iter().map(|u| u.1).collect::<Vec<_>>(), [0, 0, 0]);
    assert_eq!(bed.device().counters().rx_dropped, 3);
    // Slots 0-2 went to the bad chains; post good buffers from slot 3 on.
    bed.post_rx(4).unwrap();
    bed.pump();
    let used = bed.rxq.take_used(&bed.mem).unwrap();
    assert_eq!(used.len(), 1);
    let (id, len) = used[0];
    assert_eq!(len as usize, HDR_LEN);
    let addr = super::testbed::RX_BUFS + u64::from(id) * 0x2000;
    let mut raw = [0u8; HDR_LEN];
    bed.mem.read_slice(&mut raw, GuestAddress(addr)).unwrap();
    assert_eq!(Header::from_bytes(&raw).op, Op::Response.code());
}

#[test]
fn driver_reset_drops_connections_and_state_serializes() {
    let Env {
        _dir,
        uds,
        listener,
        mut bed,
    } = env();
    let mut host = guest_connect(&mut bed, &listener, GUEST_PORT);

    let state = bed.device().state();
    assert_eq!(state.cid, GUEST_CID);
    assert_eq!(state.queues.len(), 3);
    assert_ne!(state.acked_features, 0);
    let json = serde_json::to_string(&state).unwrap();
    let back: VsockState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);

    // The event a restored device sends: TRANSPORT_RESET (id 0) in an event buffer.
    assert!(!bed.device().send_transport_reset(), "no event buffer yet");
    bed.mem
        .write_obj(0xffff_ffffu32, GuestAddress(SCRATCH))
        .unwrap();
    bed.evq
        .add_chain(&bed.mem, &[Desc::writable(SCRATCH, 8)])
        .unwrap();
    assert!(bed.device().send_transport_reset());
    assert_eq!(bed.evq.take_used(&bed.mem).unwrap()[0].1, 4);
    assert_eq!(bed.mem.read_obj::<u32>(GuestAddress(SCRATCH)).unwrap(), 0);

    bed.driver().set_status(0);
    bed.pump();
    assert!(!bed.device().is_active());
    assert_eq!(bed.device().muxer().connection_count(), 0);
    host.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = Vec::new();
    assert_eq!(host.read_to_end(&mut buf).unwrap(), 0);
    drop(bed);
    assert!(!uds.exists(), "the socket file goes with the device");
}
