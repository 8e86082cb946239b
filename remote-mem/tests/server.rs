//! Server behaviour against real `revenant-memd` processes: authentication,
//! isolation, hostile input, power states, quota, Unix socket, operator CLI.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{scratch, token_file, Memd, TOKEN};
use revenant_remote_mem::client::{random_key, ClientError, HostConn, Rng};
use revenant_remote_mem::endpoint::Endpoint;
use revenant_remote_mem::power::PowerState;
use revenant_remote_mem::protocol::{Header, Hello, Opcode, Status, HEADER_LEN, MAX_IO, VERSION};

fn tcp_addr(m: &Memd) -> String {
    match &m.endpoint {
        Endpoint::Tcp(a) => a.clone(),
        Endpoint::Unix(_) => unreachable!(),
    }
}

#[test]
fn wrong_token_is_rejected() {
    let dir = scratch("token");
    let m = Memd::start(&token_file(&dir), "16M", "1M", &[]);
    let e = HostConn::connect(
        &m.endpoint,
        b"not-the-token",
        random_key().unwrap(),
        Duration::from_secs(5),
    );
    assert!(
        matches!(
            e,
            Err(ClientError::Refused {
                status: Status::AuthFailed,
                ..
            })
        ),
        "wrong token accepted or wrong error: {:?}",
        e.err()
    );
    // The right token still works afterwards.
    let c = m.conn();
    assert!(c.alloc().is_ok());
    // The refused connection's thread counts its error after sending the refusal, so under
    // load the count can trail the client's next request a little: wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let stat = loop {
        let stat = c.stat().unwrap();
        if stat["protocol_errors"] == 1 || std::time::Instant::now() > deadline {
            break stat;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(stat["protocol_errors"], 1, "{stat}");
}

#[test]
fn client_b_cannot_touch_client_a_slab() {
    let dir = scratch("isolation");
    let m = Memd::start(&token_file(&dir), "16M", "1M", &[]);
    let a = m.conn();
    let b = m.conn();
    let (slab, _) = a.alloc().unwrap();
    a.write(slab, 0, &[0x5A; 4096]).unwrap();
    let mut buf = [0u8; 4096];
    assert!(matches!(
        b.read(slab, 0, &mut buf),
        Err(ClientError::Status(Status::NoSuchSlab))
    ));
    assert!(matches!(
        b.write(slab, 0, &[1; 4096]),
        Err(ClientError::Status(Status::NoSuchSlab))
    ));
    assert!(matches!(
        b.free(slab),
        Err(ClientError::Status(Status::NoSuchSlab))
    ));
    assert_eq!(buf, [0u8; 4096], "nothing leaked into B's buffer");
    // B's failed attempts left A's data and A's connection intact.
    a.read(slab, 0, &mut buf).unwrap();
    assert_eq!(buf, [0x5A; 4096]);
}

/// One deterministic malformed frame, chosen by `i`, for a connection that
/// has (`authed`) or has not completed the handshake.
fn malformed_frame(i: u32, rng: &mut Rng) -> (bool, Vec<u8>) {
    let good = Header::request(Opcode::Read, 1, 1, 0, 4096).encode();
    let mut f = good.to_vec();
    match i % 10 {
        0 => {
            // Random garbage of random length.
            f = (0..rng.below(200) + 1)
                .map(|_| rng.next_u64() as u8)
                .collect();
        }
        1 => f[0] ^= 0xFF,                                     // bad magic
        2 => f[2] = 8 + rng.below(240) as u8,                  // unknown opcode
        3 => f[4..8].copy_from_slice(&u32::MAX.to_le_bytes()), // huge body on a READ
        4 => {
            // WRITE declaring more than the I/O limit.
            let mut h = Header::request(Opcode::Write, 1, 1, 0, 4096);
            h.length = MAX_IO + 1 + rng.below(1000) as u32;
            h.body_len = h.length;
            f = h.encode().to_vec();
        }
        5 => f[39] = 1 + rng.below(255) as u8, // reserved byte set
        6 => {
            // WRITE whose body length disagrees with its length field.
            let mut h = Header::request(Opcode::Write, 1, 1, 0, 4096);
            h.body_len = 100;
            f = h.encode().to_vec();
            f.extend(std::iter::repeat_n(0u8, 100));
        }
        7 => {
            // A Hello with garbage (too short) body.
            let mut h = Header::request(Opcode::Hello, 1, 0, 0, 0);
            h.body_len = 5;
            f = h.encode().to_vec();
            f.extend_from_slice(&[1, 2, 3, 4, 5]);
            return (false, f);
        }
        8 => {
            // Hello with an empty token.
            let body = Hello {
                version: VERSION,
                client_key: [1; 16],
                token: vec![],
            }
            .encode();
            let mut h = Header::request(Opcode::Hello, 1, 0, 0, 0);
            h.body_len = body.len() as u32;
            f = h.encode().to_vec();
            f.extend_from_slice(&body);
            return (false, f);
        }
        _ => {
            // A second Hello after the handshake.
            let body = Hello {
                version: VERSION,
                client_key: [1; 16],
                token: TOKEN.into(),
            }
            .encode();
            let mut h = Header::request(Opcode::Hello, 1, 0, 0, 0);
            h.body_len = body.len() as u32;
            f = h.encode().to_vec();
            f.extend_from_slice(&body);
        }
    }
    // Half of the frames arrive before any handshake, half after.
    (rng.below(2) == 0, f)
}

fn hello_frame() -> Vec<u8> {
    let body = Hello {
        version: VERSION,
        client_key: random_key().unwrap(),
        token: TOKEN.into(),
    }
    .encode();
    let mut h = Header::request(Opcode::Hello, 1, 0, 0, 0);
    h.body_len = body.len() as u32;
    let mut f = h.encode().to_vec();
    f.extend_from_slice(&body);
    f
}

#[test]
fn a_thousand_malformed_frames_leave_the_server_serving() {
    let dir = scratch("malformed");
    let mut m = Memd::start(&token_file(&dir), "16M", "1M", &[]);
    let addr = tcp_addr(&m);
    // A long-lived good client that must keep working throughout.
    let good = m.conn();
    let (slab, _) = good.alloc().unwrap();
    good.write(slab, 4096, &[0xC3; 4096]).unwrap();

    let mut rng = Rng::new(20261125);
    let mut closed = 0;
    for i in 0..1000u32 {
        let (authed, frame) = malformed_frame(i, &mut rng);
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if authed {
            s.write_all(&hello_frame()).unwrap();
            let mut r = [0u8; HEADER_LEN + 32];
            s.read_exact(&mut r).unwrap();
            assert_eq!(Header::decode_response(&r).unwrap().status(), Status::Ok);
        }
        // The server may close before reading everything: ignore write errors.
        let _ = s.write_all(&frame);
        // Half-close: a frame cut short (garbage shorter than a header) then
        // reads as EOF mid-frame instead of a server waiting for more bytes.
        let _ = s.shutdown(std::net::Shutdown::Write);
        // Every malformed frame gets the connection closed (EOF or reset), never
        // a hang; a rejected Hello first gets its error reply.
        let mut sink = [0u8; 256];
        loop {
            match s.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        closed += 1;
        if i % 100 == 99 {
            let mut buf = [0u8; 4096];
            good.read(slab, 4096, &mut buf).unwrap();
            assert_eq!(buf, [0xC3; 4096], "after {} malformed frames", i + 1);
        }
    }
    assert_eq!(closed, 1000);
    assert!(m.running(), "memd died");
    // New clients are still served, and the server counted the bad connections.
    let fresh = m.conn();
    assert!(fresh.alloc().is_ok());
    let stat = fresh.stat().unwrap();
    assert!(stat["protocol_errors"].as_u64().unwrap() >= 900, "{stat}");
}

#[test]
fn power_states_gate_requests() {
    let dir = scratch("power");
    let m = Memd::start(&token_file(&dir), "16M", "1M", &["--power-state", "sz"]);
    let c = m.conn();
    assert_eq!(c.info.power, PowerState::Sz.code());
    assert!(
        matches!(c.alloc(), Err(ClientError::Status(Status::PowerState))),
        "Sz must refuse allocation"
    );
    c.set_power(PowerState::S0).unwrap();
    let (slab, _) = c.alloc().unwrap();
    c.write(slab, 0, &[9; 512]).unwrap();
    c.set_power(PowerState::Sz).unwrap();
    // Sz: the NIC-only path still reads and writes existing slabs.
    c.write(slab, 512, &[8; 512]).unwrap();
    let mut buf = [0u8; 1024];
    c.read(slab, 0, &mut buf).unwrap();
    assert_eq!(&buf[..512], &[9; 512]);
    assert_eq!(&buf[512..], &[8; 512]);
    assert!(matches!(
        c.alloc(),
        Err(ClientError::Status(Status::PowerState))
    ));
    c.set_power(PowerState::S3).unwrap();
    assert!(matches!(
        c.read(slab, 0, &mut buf),
        Err(ClientError::Status(Status::PowerState))
    ));
    let stat = c.stat().unwrap();
    assert_eq!(stat["power_state"], "s3");
    assert!(
        stat["seconds_in_state"]["sz"].as_f64().unwrap() > 0.0,
        "{stat}"
    );
    // Energy per state comes from the acpi power model's default profile.
    let profile = revenant_acpi::power::PowerProfile::default();
    for (state, host) in [
        ("sz", revenant_acpi::power::HostState::Sz),
        ("s3", revenant_acpi::power::HostState::S3),
    ] {
        let secs = stat["seconds_in_state"][state].as_f64().unwrap();
        let joules = stat["joules_in_state"][state].as_f64().unwrap();
        let expected = secs * profile.power_w.watts(host);
        assert!(
            (joules - expected).abs() <= 1e-6 * expected.max(1.0),
            "{state}: {stat}"
        );
    }
    assert!(
        profile.power_w.watts(revenant_acpi::power::HostState::Sz)
            > profile.power_w.watts(revenant_acpi::power::HostState::S3)
    );
}

#[test]
fn capacity_quota_and_bounds_are_enforced() {
    let dir = scratch("quota");
    let m = Memd::start(&token_file(&dir), "3M", "1M", &["--quota", "2M"]);
    let (a, b) = (m.conn(), m.conn());
    let (s, _) = a.alloc().unwrap();
    a.alloc().unwrap();
    assert!(matches!(
        a.alloc(),
        Err(ClientError::Status(Status::QuotaExceeded))
    ));
    b.alloc().unwrap();
    assert!(matches!(
        b.alloc(),
        Err(ClientError::Status(Status::NoCapacity))
    ));
    let mut buf = [0u8; 4096];
    assert!(matches!(
        a.read(s, (1 << 20) - 100, &mut buf),
        Err(ClientError::Status(Status::OutOfRange))
    ));
    assert!(matches!(
        a.read(s, u64::MAX - 10, &mut buf),
        Err(ClientError::Status(Status::OutOfRange))
    ));
    a.free(s).unwrap();
    assert!(b.alloc().is_ok(), "freed memory is reusable");
}

#[test]
fn unix_socket_serves_the_same_protocol() {
    let dir = scratch("unix");
    let sock = dir.join("memd.sock");
    let m = Memd::start(
        &token_file(&dir),
        "4M",
        "1M",
        &["--unix", sock.to_str().unwrap()],
    );
    drop(m.conn());
    let ep = Endpoint::Unix(sock);
    let c = HostConn::connect(
        &ep,
        TOKEN.as_bytes(),
        random_key().unwrap(),
        Duration::from_secs(5),
    )
    .unwrap();
    let (s, _) = c.alloc().unwrap();
    c.write(s, 8192, b"over a unix socket").unwrap();
    let mut buf = [0u8; 18];
    c.read(s, 8192, &mut buf).unwrap();
    assert_eq!(&buf, b"over a unix socket");
}

#[test]
fn operator_stat_and_power_cli() {
    let dir = scratch("cli");
    let tok = token_file(&dir);
    let (m1, m2) = (
        Memd::start(&tok, "4M", "1M", &[]),
        Memd::start(&tok, "8M", "1M", &[]),
    );
    let servers = format!("{},{}", m1.endpoint, m2.endpoint);
    let bin = env!("CARGO_BIN_EXE_revenant-memd");
    let st = Command::new(bin)
        .args([
            "power",
            "--servers",
            &servers,
            "--state",
            "sz",
            "--token-file",
        ])
        .arg(&tok)
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new(bin)
        .args(["stat", "--servers", &servers, "--token-file"])
        .arg(&tok)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["capacity"], 4 << 20);
    assert_eq!(v[1]["capacity"], 8 << 20);
    assert_eq!(v[1]["power_state"], "sz");
    // A wrong token makes the CLI fail loudly.
    let bad = dir.join("bad");
    std::fs::write(&bad, "nope").unwrap();
    let out = Command::new(bin)
        .args(["stat", "--servers", &servers, "--token-file"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
}
