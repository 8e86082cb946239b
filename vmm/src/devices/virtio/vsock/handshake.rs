//! The hybrid-vsock handshake of a host client: one `CONNECT <port>\n` line, read without
//! consuming anything after it and refused when malformed or longer than
//! [`CONNECT_LINE_MAX`]. Nothing is ever written to the client here: the `OK` line comes
//! only once the guest accepted (`connection`).

use std::io::{self, Read};
use std::os::unix::net::UnixStream;

use super::CONNECT_LINE_MAX;

/// A host client that has not finished its `CONNECT` line.
pub(super) struct Handshake {
    pub(super) stream: UnixStream,
    line: Vec<u8>,
}

pub(super) enum LineRead {
    Incomplete,
    Port(u32),
    Bad(&'static str),
}

impl Handshake {
    pub(super) fn new(stream: UnixStream) -> Self {
        Handshake {
            stream,
            line: Vec::new(),
        }
    }

    /// Reads byte by byte so nothing after the newline is consumed: whatever the client
    /// sends next belongs to the guest.
    pub(super) fn read_line(&mut self) -> LineRead {
        let mut byte = [0u8; 1];
        loop {
            match self.stream.read(&mut byte) {
                Ok(0) => return LineRead::Bad("client closed before a full line"),
                Ok(_) if byte[0] == b'\n' => {
                    return parse_connect(&self.line)
                        .map_or(LineRead::Bad("malformed"), LineRead::Port)
                }
                Ok(_) => {
                    self.line.push(byte[0]);
                    if self.line.len() >= CONNECT_LINE_MAX {
                        return LineRead::Bad("no newline within the length limit");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return LineRead::Incomplete,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return LineRead::Bad("read failed"),
            }
        }
    }
}

/// `CONNECT <port>` (newline already stripped): decimal digits only, a u32.
pub fn parse_connect(line: &[u8]) -> Option<u32> {
    let digits = line.strip_prefix(b"CONNECT ")?;
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_lines() {
        assert_eq!(parse_connect(b"CONNECT 1024"), Some(1024));
        assert_eq!(parse_connect(b"CONNECT 4294967295"), Some(u32::MAX));
        for bad in [
            &b"CONNECT 4294967296"[..],
            b"CONNECT ",
            b"CONNECT -1",
            b"CONNECT 12a",
            b"connect 1",
            b"CONNECT  1",
            b"CONNECT 1 ",
            b"CONNECT 00000000001",
            b"",
        ] {
            assert_eq!(
                parse_connect(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
