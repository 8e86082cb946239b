//! The state file: a fixed, checksummed header followed by a serde payload.
//!
//! Layout (all integers little endian), see `docs/template-format.md`:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0  | 8 | magic `RVNTSTAT` |
//! | 8  | 4 | format version ([`STATE_FORMAT_VERSION`]) |
//! | 12 | 4 | flags (must be 0) |
//! | 16 | 8 | payload length in bytes |
//! | 24 | 4 | CRC32C of the payload |
//! | 28 | 4 | CRC32C of bytes 0..28 (the header itself) |
//! | 32 | n | payload |
//!
//! The payload is encoded with postcard rather than JSON: restore is on the fork path (target
//! p50 <= 2 ms for the whole fork), postcard decodes a few KiB in about a microsecond with no
//! string parsing, it is a third to a tenth the size of JSON for register dumps, and its wire
//! format is specified and stable within postcard 1.x. The price is that it is not
//! self-describing: a change to any saved type is a format change (bump the version), and saved
//! types must not rely on `deserialize_any` (no `#[serde(untagged)]`, `#[serde(flatten)]`,
//! `skip_serializing_if`, or `serde_json::Value` fields; store JSON text as a `String` instead).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// First bytes of every state file, so a stray file is rejected before anything else is read.
pub const STATE_MAGIC: [u8; 8] = *b"RVNTSTAT";
/// The only state file format version this build reads and writes.
/// Version 2: the device state carries virtio-blk and virtio-mem transports and queues.
/// Version 3: the virtio-balloon and virtio-rng devices too. Version 4: virtio-net devices.
pub const STATE_FORMAT_VERSION: u32 = 4;
/// Size of the fixed header in front of the payload.
pub const STATE_HEADER_LEN: usize = 32;
/// Largest state file read: VM state is a few KiB per vCPU and device, so anything near this is
/// not a state file, and reading it whole would let a bad path exhaust memory.
pub const MAX_STATE_FILE_LEN: u64 = 64 << 20;

/// Whether [`write_state`] waits for the data to reach stable storage.
///
/// Templates on tmpfs gain nothing from fsync; templates on disk that must survive a host crash do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Write and rename only: the file is complete or absent after a process crash.
    NoSync,
    /// Also fsync the file before the rename and the directory after it (survives a host crash).
    Sync,
}

/// Why a state file could not be written or read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// The file could not be created, written, renamed, opened or read.
    #[error("state file {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The file is far larger than any state file (see [`MAX_STATE_FILE_LEN`]).
    #[error("state file {path}: {len} bytes is larger than the {max} bytes a state file may have")]
    TooLarge { path: PathBuf, len: u64, max: u64 },
    /// The first 8 bytes are not the state file magic: this is not a Revenant state file.
    #[error("state file {path}: bad magic {found:02x?} (expected {STATE_MAGIC:02x?}): not a Revenant state file")]
    BadMagic { path: PathBuf, found: [u8; 8] },
    /// The file was written by a different (usually newer) format version.
    #[error("state file {path}: format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// The header sets flags this build does not know, so it cannot interpret the payload safely.
    #[error("state file {path}: unknown header flags {flags:#x}")]
    UnsupportedFlags { path: PathBuf, flags: u32 },
    /// The header's own checksum does not match: the length or payload checksum cannot be trusted.
    #[error("state file {path}: header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderChecksumMismatch {
        path: PathBuf,
        stored: u32,
        computed: u32,
    },
    /// The file ends before the header or the payload it announces.
    #[error("state file {path}: truncated: expected {expected} bytes, found {found}")]
    Truncated {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    /// The file is longer than header + announced payload (appended to, or two writes mixed).
    #[error("state file {path}: {extra} unexpected bytes after the payload")]
    TrailingData { path: PathBuf, extra: u64 },
    /// The payload does not match its checksum: the file is corrupt.
    #[error("state file {path}: payload checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    ChecksumMismatch {
        path: PathBuf,
        stored: u32,
        computed: u32,
    },
    /// The payload is intact but does not decode as the requested state type (a type changed
    /// without a format version bump, or the wrong type was asked for).
    #[error("state file {path}: payload does not decode: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: postcard::Error,
    },
    /// The payload decodes as the requested type with bytes to spare: it holds another type.
    #[error("state file {path}: payload has {extra} bytes left over after decoding: it holds a different state type")]
    PayloadNotConsumed { path: PathBuf, extra: u64 },
    /// The state could not be encoded (a type that postcard cannot represent).
    #[error("state file {path}: state does not encode: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: postcard::Error,
    },
}

/// Header fields as parsed from the first [`STATE_HEADER_LEN`] bytes.
struct Header {
    version: u32,
    flags: u32,
    payload_len: u64,
    payload_crc: u32,
}

impl Header {
    fn encode(&self) -> [u8; STATE_HEADER_LEN] {
        let mut h = [0u8; STATE_HEADER_LEN];
        h[0..8].copy_from_slice(&STATE_MAGIC);
        h[8..12].copy_from_slice(&self.version.to_le_bytes());
        h[12..16].copy_from_slice(&self.flags.to_le_bytes());
        h[16..24].copy_from_slice(&self.payload_len.to_le_bytes());
        h[24..28].copy_from_slice(&self.payload_crc.to_le_bytes());
        let header_crc = crc32c::crc32c(&h[0..28]);
        h[28..32].copy_from_slice(&header_crc.to_le_bytes());
        h
    }
}

fn le_u32(b: &[u8; STATE_HEADER_LEN], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn le_u64(b: &[u8; STATE_HEADER_LEN], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Writes `state` to `path` atomically: to a temporary file in the same directory, then renamed
/// over `path`, so a reader sees either the old complete file or the new complete file.
pub fn write_state<S: Serialize>(
    path: &Path,
    state: &S,
    durability: Durability,
) -> Result<(), StateFileError> {
    let payload = postcard::to_stdvec(state).map_err(|source| StateFileError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    let header = Header {
        version: STATE_FORMAT_VERSION,
        flags: 0,
        payload_len: payload.len() as u64,
        payload_crc: crc32c::crc32c(&payload),
    }
    .encode();
    let mut bytes = Vec::with_capacity(STATE_HEADER_LEN + payload.len());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&payload);
    crate::atomic_file::write_atomically(path, &bytes, durability == Durability::Sync).map_err(
        |(op, source)| StateFileError::Io {
            path: path.to_path_buf(),
            op,
            source,
        },
    )
}

/// Reads and verifies the state file at `path` and decodes its payload as `S`.
///
/// Checks, in order: magic, version, flags, header checksum, length, payload checksum, decode.
/// Version comes before the header checksum because a future version may lay out the rest of
/// the header differently; reporting "unsupported version" is then the useful answer.
pub fn read_state<S: DeserializeOwned>(path: &Path) -> Result<S, StateFileError> {
    let io = |op| {
        move |source| StateFileError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    };
    let file = fs::File::open(path).map_err(io("open"))?;
    let len = file.metadata().map_err(io("stat"))?.len();
    if len > MAX_STATE_FILE_LEN {
        return Err(StateFileError::TooLarge {
            path: path.to_path_buf(),
            len,
            max: MAX_STATE_FILE_LEN,
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // take(): a file that grows while being read still cannot make us read more than the cap.
    file.take(MAX_STATE_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io("read"))?;
    let payload = verified_payload(path, &bytes)?;
    let (state, rest) =
        postcard::take_from_bytes(payload).map_err(|source| StateFileError::Decode {
            path: path.to_path_buf(),
            source,
        })?;
    // postcard stops when the type is complete; bytes left over mean the file holds a
    // different (larger) type than the one asked for.
    if !rest.is_empty() {
        return Err(StateFileError::PayloadNotConsumed {
            path: path.to_path_buf(),
            extra: rest.len() as u64,
        });
    }
    Ok(state)
}

/// Returns the payload of a state file image after checking everything but its decoding.
fn verified_payload<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a [u8], StateFileError> {
    let p = || path.to_path_buf();
    let found = bytes.len() as u64;
    if bytes.len() >= 8 && bytes[0..8] != STATE_MAGIC {
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&bytes[0..8]);
        return Err(StateFileError::BadMagic {
            path: p(),
            found: magic,
        });
    }
    let Some(head) = bytes.get(..STATE_HEADER_LEN) else {
        return Err(StateFileError::Truncated {
            path: p(),
            expected: STATE_HEADER_LEN as u64,
            found,
        });
    };
    let mut h = [0u8; STATE_HEADER_LEN];
    h.copy_from_slice(head);
    let header = Header {
        version: le_u32(&h, 8),
        flags: le_u32(&h, 12),
        payload_len: le_u64(&h, 16),
        payload_crc: le_u32(&h, 24),
    };
    if header.version != STATE_FORMAT_VERSION {
        return Err(StateFileError::UnsupportedVersion {
            path: p(),
            found: header.version,
            supported: STATE_FORMAT_VERSION,
        });
    }
    let stored = le_u32(&h, 28);
    let computed = crc32c::crc32c(&h[0..28]);
    if stored != computed {
        return Err(StateFileError::HeaderChecksumMismatch {
            path: p(),
            stored,
            computed,
        });
    }
    if header.flags != 0 {
        return Err(StateFileError::UnsupportedFlags {
            path: p(),
            flags: header.flags,
        });
    }
    let expected = (STATE_HEADER_LEN as u64).saturating_add(header.payload_len);
    if found < expected {
        return Err(StateFileError::Truncated {
            path: p(),
            expected,
            found,
        });
    }
    if found > expected {
        return Err(StateFileError::TrailingData {
            path: p(),
            extra: found - expected,
        });
    }
    let payload = &bytes[STATE_HEADER_LEN..];
    let computed = crc32c::crc32c(payload);
    if computed != header.payload_crc {
        return Err(StateFileError::ChecksumMismatch {
            path: p(),
            stored: header.payload_crc,
            computed,
        });
    }
    Ok(payload)
}

/// Writes raw bytes to a file; used by tests to build corrupt files next to real ones.
#[cfg(test)]
pub(crate) fn write_raw(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).expect("write raw file");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct VcpuLike {
        regs: [u64; 18],
        msrs: Vec<(u32, u64)>,
        name: String,
        mode: Mode,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Mode {
        Real,
        Long { cr3: u64 },
    }

    fn sample() -> VcpuLike {
        VcpuLike {
            regs: core::array::from_fn(|i| (i as u64) * 0x1111_1111_1111),
            msrs: vec![(0xc000_0080, 0x500), (0x10, u64::MAX)],
            name: "vcpu0".into(),
            mode: Mode::Long { cr3: 0x9000 },
        }
    }

    fn written(dir: &Path) -> (PathBuf, Vec<u8>) {
        let path = dir.join("state.bin");
        write_state(&path, &sample(), Durability::NoSync).expect("write");
        let bytes = fs::read(&path).expect("read back");
        (path, bytes)
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = written(dir.path());
        assert_eq!(&bytes[0..8], b"RVNTSTAT");
        let back: VcpuLike = read_state(&path).unwrap();
        assert_eq!(back, sample());
        // Sync mode writes the same bytes.
        write_state(&path, &sample(), Durability::Sync).unwrap();
        assert_eq!(fs::read(&path).unwrap(), bytes);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn truncated_payload_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = written(dir.path());
        write_raw(&path, &bytes[..bytes.len() - 3]);
        match read_state::<VcpuLike>(&path) {
            Err(StateFileError::Truncated {
                expected, found, ..
            }) => {
                assert_eq!(expected, bytes.len() as u64);
                assert_eq!(found, bytes.len() as u64 - 3);
            }
            other => panic!("expected Truncated, got {other:?}"),
        }
    }

    #[test]
    fn truncated_header_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = written(dir.path());
        write_raw(&path, &bytes[..20]);
        assert!(matches!(
            read_state::<VcpuLike>(&path),
            Err(StateFileError::Truncated {
                expected: 32,
                found: 20,
                ..
            })
        ));
        write_raw(&path, &[]);
        assert!(matches!(
            read_state::<VcpuLike>(&path),
            Err(StateFileError::Truncated { found: 0, .. })
        ));
    }

    #[test]
    fn flipped_payload_byte_is_a_checksum_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut bytes) = written(dir.path());
        let last = bytes.len() - 1;
        bytes[STATE_HEADER_LEN + 5] ^= 0x40;
        bytes[last] ^= 0x01;
        write_raw(&path, &bytes);
        let err = read_state::<VcpuLike>(&path).unwrap_err();
        assert!(
            matches!(err, StateFileError::ChecksumMismatch { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("state.bin"), "{err}");
    }

    #[test]
    fn future_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut bytes) = written(dir.path());
        bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
        write_raw(&path, &bytes);
        let err = read_state::<VcpuLike>(&path).unwrap_err();
        assert!(
            matches!(
                err,
                StateFileError::UnsupportedVersion {
                    found: 7,
                    supported: STATE_FORMAT_VERSION,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("version 7"), "{err}");
    }

    #[test]
    fn bad_magic_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut bytes) = written(dir.path());
        bytes[0] = b'X';
        write_raw(&path, &bytes);
        assert!(matches!(
            read_state::<VcpuLike>(&path),
            Err(StateFileError::BadMagic { .. })
        ));
        // A short non-state file is "bad magic", not "truncated".
        write_raw(&path, b"{\"json\": 1}");
        assert!(matches!(
            read_state::<VcpuLike>(&path),
            Err(StateFileError::BadMagic { .. })
        ));
    }

    #[test]
    fn corrupt_header_length_is_a_header_checksum_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut bytes) = written(dir.path());
        bytes[16] ^= 0x04;
        write_raw(&path, &bytes);
        assert!(matches!(
            read_state::<VcpuLike>(&path),
            Err(StateFileError::HeaderChecksumMismatch { .. })
        ));
    }

    #[test]
    fn unknown_flags_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = written(dir.path());
        let mut h = [0u8; STATE_HEADER_LEN];
        h.copy_from_slice(&bytes[..STATE_HEADER_LEN]);
        let header = Header {
            version: STATE_FORMAT_VERSION,
            flags: 0x2,
            payload_len: le_u64(&h, 16),
            payload_crc: le_u32(&h, 24),
        };
        let mut out = header.encode().to_vec();
        out.extend_from_slice(&bytes[STATE_HEADER_LEN..]);
        write_raw(&path, &out);
        assert!(matches!(
            read_state::<VcpuLike>(&path),
            Err(StateFileError::UnsupportedFlags { flags: 2, .. })
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut bytes) = written(dir.path());
        bytes.extend_from_slice(b"junk");
        write_raw(&path, &bytes);
        assert!(matches!(
            read_state::<VcpuLike>(&path),
            Err(StateFileError::TrailingData { extra: 4, .. })
        ));
    }

    #[test]
    fn wrong_type_is_a_decode_error() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Other {
            // regs[0] is 0 (a valid u8), regs[1]'s first varint byte is 0x91 (not a valid bool).
            a: u8,
            b: bool,
        }
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = written(dir.path());
        assert!(matches!(
            read_state::<Other>(&path),
            Err(StateFileError::Decode { .. })
        ));
    }

    #[test]
    fn smaller_type_than_saved_is_refused() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Prefix {
            regs: [u64; 18],
        }
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = written(dir.path());
        assert!(matches!(
            read_state::<Prefix>(&path),
            Err(StateFileError::PayloadNotConsumed { .. })
        ));
    }

    #[test]
    fn oversized_file_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.bin");
        let f = fs::File::create(&path).unwrap();
        f.set_len(MAX_STATE_FILE_LEN + 1).unwrap(); // sparse: costs no disk
        assert!(matches!(
            read_state::<VcpuLike>(&path),
            Err(StateFileError::TooLarge { .. })
        ));
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.bin");
        let err = read_state::<VcpuLike>(&path).unwrap_err();
        assert!(matches!(err, StateFileError::Io { .. }));
        assert!(err.to_string().contains("nope.bin"), "{err}");
    }
}
