//! The fixed frame header and the checks that make it safe to act on.

use super::{FrameError, Opcode, Status, MAGIC, MAX_HELLO_BODY, MAX_IO, MAX_STAT_BODY};

/// Size of every frame header in bytes.
pub const HEADER_LEN: usize = 40;

/// One decoded frame header. Requests and responses share the layout; in a
/// response `status` is meaningful and the other fields echo the request
/// (except where PROTOCOL.md says otherwise, e.g. ALLOC returns the slab id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the frame asks for / answers.
    pub opcode: Opcode,
    /// Number of body bytes that follow the header.
    pub body_len: u32,
    /// Chosen by the client, echoed in the response: lets many requests be in
    /// flight on one connection and be matched when answered.
    pub request_id: u64,
    /// Slab id (server-assigned).
    pub slab: u64,
    /// Byte offset inside the slab, or an opcode-specific argument.
    pub offset: u64,
    /// I/O length in bytes, or an opcode-specific argument.
    pub length: u32,
    /// Result code (responses); zero in requests.
    pub status: u16,
}

impl Header {
    /// A request header with no status.
    pub fn request(opcode: Opcode, request_id: u64, slab: u64, offset: u64, length: u32) -> Self {
        let body_len = if opcode == Opcode::Write { length } else { 0 };
        Self {
            opcode,
            body_len,
            request_id,
            slab,
            offset,
            length,
            status: 0,
        }
    }

    /// The response header to `self` with `status` and a body of `body_len` bytes.
    pub fn reply(&self, status: Status, body_len: u32) -> Self {
        Self {
            body_len,
            status: status as u16,
            ..*self
        }
    }

    /// Serialises the header into its 40 wire bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..2].copy_from_slice(&MAGIC.to_le_bytes());
        b[2] = self.opcode as u8;
        b[3] = 0; // flags, reserved
        b[4..8].copy_from_slice(&self.body_len.to_le_bytes());
        b[8..16].copy_from_slice(&self.request_id.to_le_bytes());
        b[16..24].copy_from_slice(&self.slab.to_le_bytes());
        b[24..32].copy_from_slice(&self.offset.to_le_bytes());
        b[32..36].copy_from_slice(&self.length.to_le_bytes());
        b[36..38].copy_from_slice(&self.status.to_le_bytes());
        // b[38..40] reserved, zero.
        b
    }

    /// Decodes the structural part of a header (magic, opcode, reserved bytes).
    /// Never panics: every slice index below is within the checked length.
    fn decode_raw(b: &[u8]) -> Result<Self, FrameError> {
        let b: &[u8; HEADER_LEN] = b
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(FrameError::Short(b.len()))?;
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let magic = u16_at(0);
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        let opcode = Opcode::from_u8(b[2]).ok_or(FrameError::UnknownOpcode(b[2]))?;
        if b[3] != 0 || u16_at(38) != 0 {
            return Err(FrameError::ReservedNonZero);
        }
        Ok(Self {
            opcode,
            body_len: u32_at(4),
            request_id: u64_at(8),
            slab: u64_at(16),
            offset: u64_at(24),
            length: u32_at(32),
            status: u16_at(36),
        })
    }

    /// Decodes and validates a request header as the server receives it: after
    /// this returns `Ok`, `body_len` is bounded and consistent with the opcode,
    /// so the server may allocate and read exactly `body_len` bytes.
    pub fn decode_request(b: &[u8]) -> Result<Self, FrameError> {
        let h = Self::decode_raw(b)?;
        if h.status != 0 {
            return Err(FrameError::ReservedNonZero);
        }
        let max_body = match h.opcode {
            Opcode::Hello => MAX_HELLO_BODY,
            Opcode::Write => MAX_IO,
            _ => 0,
        };
        if h.body_len > max_body {
            return Err(FrameError::BodyTooLong {
                op: h.opcode,
                len: h.body_len,
                max: max_body,
            });
        }
        match h.opcode {
            Opcode::Read | Opcode::Write if h.length > MAX_IO => {
                return Err(FrameError::IoTooLong(h.length))
            }
            Opcode::Write if h.body_len != h.length => {
                return Err(FrameError::WriteLengthMismatch {
                    body: h.body_len,
                    length: h.length,
                })
            }
            _ => {}
        }
        Ok(h)
    }

    /// Decodes and validates a response header as the client receives it.
    pub fn decode_response(b: &[u8]) -> Result<Self, FrameError> {
        let h = Self::decode_raw(b)?;
        let status = Status::from_u16(h.status).ok_or(FrameError::UnknownStatus(h.status))?;
        let max_body = match (h.opcode, status) {
            (_, s) if s != Status::Ok => 0,
            (Opcode::Hello, _) => super::HELLO_REPLY_LEN as u32,
            (Opcode::Read, _) => MAX_IO,
            (Opcode::Stat, _) => MAX_STAT_BODY,
            _ => 0,
        };
        if h.body_len > max_body {
            return Err(FrameError::BodyTooLong {
                op: h.opcode,
                len: h.body_len,
                max: max_body,
            });
        }
        Ok(h)
    }

    /// Decoded status of a response (unknown codes were rejected by
    /// [`Header::decode_response`], so `BadRequest` here is only a fallback).
    pub fn status(&self) -> Status {
        Status::from_u16(self.status).unwrap_or(Status::BadRequest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips() {
        let h = Header::request(Opcode::Write, 7, 3, 4096, 4096);
        let d = Header::decode_request(&h.encode()).unwrap();
        assert_eq!(d, h);
        assert_eq!(d.body_len, 4096);
    }

    #[test]
    fn rejects_hostile_headers() {
        let good = Header::request(Opcode::Read, 1, 1, 0, 4096).encode();
        assert_eq!(
            Header::decode_request(&good[..10]),
            Err(FrameError::Short(10))
        );
        let mut b = good;
        b[0] = 0;
        assert!(matches!(
            Header::decode_request(&b),
            Err(FrameError::BadMagic(_))
        ));
        let mut b = good;
        b[2] = 200;
        assert_eq!(
            Header::decode_request(&b),
            Err(FrameError::UnknownOpcode(200))
        );
        let mut b = good;
        b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Header::decode_request(&b),
            Err(FrameError::BodyTooLong { .. })
        ));
        let mut b = good;
        b[32..36].copy_from_slice(&(MAX_IO + 1).to_le_bytes());
        assert_eq!(
            Header::decode_request(&b),
            Err(FrameError::IoTooLong(MAX_IO + 1))
        );
        let mut w = Header::request(Opcode::Write, 1, 1, 0, 4096);
        w.body_len = 10;
        assert!(matches!(
            Header::decode_request(&w.encode()),
            Err(FrameError::WriteLengthMismatch { .. })
        ));
        let mut b = good;
        b[39] = 1;
        assert_eq!(Header::decode_request(&b), Err(FrameError::ReservedNonZero));
    }

    #[test]
    fn every_byte_flip_of_a_header_is_handled() {
        // Exhaustive single-byte corruption: must return, never panic.
        let good = Header::request(Opcode::Write, 9, 2, 8192, 512).encode();
        for i in 0..HEADER_LEN {
            for v in 0..=255u8 {
                let mut b = good;
                b[i] = v;
                let _ = Header::decode_request(&b);
                let _ = Header::decode_response(&b);
            }
        }
    }
}
