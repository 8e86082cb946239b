//! Fuzzes memd's frame parsing at two levels: the pure header/HELLO decoders,
//! and the whole server request loop (`serve_stream`) fed the input as the
//! byte stream of one connection, against a small in-memory slab store.
//! Any panic, hang or out-of-bounds access is a bug.

#![no_main]

use libfuzzer_sys::fuzz_target;
use revenant_remote_mem::power::PowerState;
use revenant_remote_mem::protocol::{Header, Hello, HelloReply, Opcode, VERSION};
use revenant_remote_mem::server::serve_stream;
use revenant_remote_mem::server::store::{Limits, SlabStore};

const TOKEN: &[u8] = b"fuzz-token";

fuzz_target!(|data: &[u8]| {
    let _ = Header::decode_request(data);
    let _ = Header::decode_response(data);
    let _ = Hello::decode(data);
    let _ = HelloReply::decode(data);

    // Odd first byte: start with a valid handshake so the fuzzer reaches the
    // authenticated request loop without having to guess the token.
    let mut stream = Vec::with_capacity(data.len() + 64);
    if data.first().is_some_and(|b| b & 1 == 1) {
        let body = Hello {
            version: VERSION,
            client_key: [7; 16],
            token: TOKEN.to_vec(),
        }
        .encode();
        let mut h = Header::request(Opcode::Hello, 1, 0, 0, 0);
        h.body_len = body.len() as u32;
        stream.extend_from_slice(&h.encode());
        stream.extend_from_slice(&body);
        // Give the fuzzer a slab (id 1) to aim at.
        stream.extend_from_slice(&Header::request(Opcode::Alloc, 2, 0, 0, 0).encode());
    }
    stream.extend_from_slice(data.get(1..).unwrap_or(&[]));
    let store = SlabStore::new(
        Limits {
            slab_size: 64 << 10,
            capacity: 1 << 20,
            quota: 1 << 20,
        },
        PowerState::S0,
    );
    let _ = serve_stream(&stream[..], std::io::sink(), &store, TOKEN, || {});
});
