//! HELLO request and reply bodies (handshake).

use super::{FrameError, MAX_TOKEN};

/// A client's secret identity. Slabs belong to the key that allocated them;
/// the key is 128 random bits chosen by the client, so another client cannot
/// guess it, and a reconnecting client regains its slabs by presenting it again.
pub type ClientKey = [u8; 16];

/// HELLO request body: `u16 version | [u8;16] client key | token bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version the client speaks.
    pub version: u16,
    /// The client's secret identity.
    pub client_key: ClientKey,
    /// Shared-secret token (1..=[`MAX_TOKEN`] bytes).
    pub token: Vec<u8>,
}

impl Hello {
    /// Serialises the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(18 + self.token.len());
        v.extend_from_slice(&self.version.to_le_bytes());
        v.extend_from_slice(&self.client_key);
        v.extend_from_slice(&self.token);
        v
    }

    /// Parses a body whose length the header check already bounded.
    pub fn decode(b: &[u8]) -> Result<Self, FrameError> {
        if b.len() < 18 {
            return Err(FrameError::HelloTooShort(b.len()));
        }
        let token = b[18..].to_vec();
        if token.is_empty() {
            return Err(FrameError::EmptyToken);
        }
        if token.len() > MAX_TOKEN {
            return Err(FrameError::HelloTooShort(b.len()));
        }
        let mut client_key = [0u8; 16];
        client_key.copy_from_slice(&b[2..18]);
        Ok(Self {
            version: u16::from_le_bytes([b[0], b[1]]),
            client_key,
            token,
        })
    }
}

/// Length of the HELLO reply body.
pub const HELLO_REPLY_LEN: usize = 32;

/// HELLO reply body: `u16 version | u8 power state | 5 reserved | u64 slab size |
/// u64 capacity | u64 free`, all little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloReply {
    /// Version the server will speak on this connection.
    pub version: u16,
    /// Power state code ([`crate::power::PowerState`]).
    pub power: u8,
    /// Bytes per slab on this server.
    pub slab_size: u64,
    /// Total bytes the server serves.
    pub capacity: u64,
    /// Bytes not yet allocated to slabs.
    pub free: u64,
}

impl HelloReply {
    /// Serialises the body.
    pub fn encode(&self) -> [u8; HELLO_REPLY_LEN] {
        let mut b = [0u8; HELLO_REPLY_LEN];
        b[0..2].copy_from_slice(&self.version.to_le_bytes());
        b[2] = self.power;
        b[8..16].copy_from_slice(&self.slab_size.to_le_bytes());
        b[16..24].copy_from_slice(&self.capacity.to_le_bytes());
        b[24..32].copy_from_slice(&self.free.to_le_bytes());
        b
    }

    /// Parses a reply body; `None` if it has the wrong length.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let b: &[u8; HELLO_REPLY_LEN] = b.try_into().ok()?;
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        Some(Self {
            version: u16::from_le_bytes([b[0], b[1]]),
            power: b[2],
            slab_size: u64_at(8),
            capacity: u64_at(16),
            free: u64_at(24),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_rejects_short() {
        let h = Hello {
            version: 1,
            client_key: [7; 16],
            token: b"secret".to_vec(),
        };
        assert_eq!(Hello::decode(&h.encode()).unwrap(), h);
        assert_eq!(Hello::decode(&[1, 0, 3]), Err(FrameError::HelloTooShort(3)));
        assert_eq!(Hello::decode(&[0u8; 18]), Err(FrameError::EmptyToken));
        let r = HelloReply {
            version: 1,
            power: 2,
            slab_size: 64,
            capacity: 128,
            free: 64,
        };
        assert_eq!(HelloReply::decode(&r.encode()), Some(r));
        assert_eq!(HelloReply::decode(&[0u8; 5]), None);
    }
}
