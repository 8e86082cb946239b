//! memd wire protocol: fixed 40-byte little-endian frame header, optional body.
//!
//! The byte layout is documented in `remote-mem/PROTOCOL.md`; this module is its
//! single implementation, shared by the server, the client and the fuzz target.

mod frame;
mod hello;
pub mod io;

pub use frame::{Header, HEADER_LEN};
pub use hello::{ClientKey, Hello, HelloReply, HELLO_REPLY_LEN};

/// Protocol version spoken by this build. Bumped on any incompatible change.
pub const VERSION: u16 = 1;

/// First two bytes of every frame ("RM" little-endian). Catches a desynchronised
/// or non-memd peer on the first header instead of misreading lengths.
pub const MAGIC: u16 = 0x4D52;

/// Largest READ/WRITE payload. 1 MiB keeps a single request's buffer small
/// (a hostile peer cannot make the server allocate more per connection) while
/// still being 16 x the 64 KiB sequential unit, enough to saturate loopback.
pub const MAX_IO: u32 = 1 << 20;

/// Largest HELLO body: version + key + a token of at most [`MAX_TOKEN`] bytes.
pub const MAX_HELLO_BODY: u32 = 2 + 16 + MAX_TOKEN as u32;

/// Longest accepted shared-secret token in bytes.
pub const MAX_TOKEN: usize = 256;

/// Largest STAT reply body (JSON). Bounds what a client will read from a server.
pub const MAX_STAT_BODY: u32 = 64 * 1024;

/// Request and response kinds. A response carries its request's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    /// Authenticate and pick the protocol version; must be the first frame.
    Hello = 1,
    /// Allocate one slab for this client; reply's `slab` is the new id.
    Alloc = 2,
    /// Free one of this client's slabs.
    Free = 3,
    /// Read `length` bytes at `offset` of `slab`; reply body is the data.
    Read = 4,
    /// Write the body (`length` bytes) at `offset` of `slab`.
    Write = 5,
    /// Server statistics; reply body is a JSON object.
    Stat = 6,
    /// Control: set the host power state (`offset` = [`crate::power::PowerState`] code).
    SetPower = 7,
}

impl Opcode {
    /// Decodes a wire opcode; `None` for unknown values.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Hello,
            2 => Self::Alloc,
            3 => Self::Free,
            4 => Self::Read,
            5 => Self::Write,
            6 => Self::Stat,
            7 => Self::SetPower,
            _ => return None,
        })
    }
}

/// Result code in a response header. Non-zero statuses leave the connection open
/// except `AuthFailed` and `VersionUnsupported`, after which the server closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// The token did not match.
    AuthFailed = 1,
    /// The server does not speak the client's protocol version.
    VersionUnsupported = 2,
    /// No such slab for this client (also returned for another client's slab, so
    /// ids of other clients cannot be probed).
    NoSuchSlab = 3,
    /// `offset + length` is outside the slab.
    OutOfRange = 4,
    /// The server has no free capacity for another slab.
    NoCapacity = 5,
    /// This client reached its per-client quota.
    QuotaExceeded = 6,
    /// Refused in the host's current power state (Sz: no allocation; S3: nothing).
    PowerState = 7,
    /// Well-formed frame with a meaningless argument (e.g. unknown power state).
    BadRequest = 8,
}

impl Status {
    /// Decodes a wire status; unknown codes map to `None`.
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            0 => Self::Ok,
            1 => Self::AuthFailed,
            2 => Self::VersionUnsupported,
            3 => Self::NoSuchSlab,
            4 => Self::OutOfRange,
            5 => Self::NoCapacity,
            6 => Self::QuotaExceeded,
            7 => Self::PowerState,
            8 => Self::BadRequest,
            _ => return None,
        })
    }
}

/// Why a frame was rejected. Any of these closes the connection it came from.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Buffer shorter than the fixed header.
    #[error("frame shorter than the {HEADER_LEN}-byte header ({0} bytes)")]
    Short(usize),
    /// First two bytes are not the memd magic.
    #[error("bad magic {0:#06x}: not a memd frame or stream out of sync")]
    BadMagic(u16),
    /// Opcode byte is not one we know.
    #[error("unknown opcode {0}")]
    UnknownOpcode(u8),
    /// Reserved bits were set; reserved for future versions, must be zero now.
    #[error("reserved header fields are not zero")]
    ReservedNonZero,
    /// Body longer than this opcode allows.
    #[error("body of {len} bytes exceeds the {max}-byte limit for {op:?}")]
    BodyTooLong {
        /// Opcode of the frame.
        op: Opcode,
        /// Declared body length.
        len: u32,
        /// Limit for this opcode.
        max: u32,
    },
    /// `length` field exceeds [`MAX_IO`].
    #[error("I/O length {0} exceeds the {MAX_IO}-byte limit")]
    IoTooLong(u32),
    /// WRITE body length differs from its `length` field.
    #[error("write body is {body} bytes but length field says {length}")]
    WriteLengthMismatch {
        /// Declared body length.
        body: u32,
        /// Declared I/O length.
        length: u32,
    },
    /// HELLO body too short for version and client key.
    #[error("hello body of {0} bytes is too short")]
    HelloTooShort(usize),
    /// HELLO carries an empty token.
    #[error("hello carries an empty token")]
    EmptyToken,
    /// Status field is not a known status (responses only).
    #[error("unknown status {0}")]
    UnknownStatus(u16),
}
