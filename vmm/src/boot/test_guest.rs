//! Raw machine-code test guests: a flat binary loaded at a fixed address.

use std::path::Path;

use vm_memory::{Bytes, GuestAddress};

use super::entry::EntryPoint;
use super::layout::{HIMEM_START, REAL_MODE_LOAD_ADDR, REAL_MODE_MAX_SIZE};
use crate::vstate::memory::{low_ram_end, GuestMemoryMmap};

/// The CPU mode a raw test guest starts in.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum TestGuestMode {
    /// 16-bit real mode; the image is loaded at 0x10000 and entered at CS=0x1000, IP=0.
    Real,
    /// 64-bit long mode set up by the VMM (identity map of 4 GiB, user-accessible, SYSCALL
    /// segments ready); the image is loaded and entered at 0x100000, RDI = RAM size.
    Long,
}

#[derive(Debug, thiserror::Error)]
pub enum TestGuestError {
    #[error("cannot read test guest image {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "test guest image of {size} bytes does not fit (at most {max} bytes in {mode:?} mode)"
    )]
    TooLarge {
        size: u64,
        max: u64,
        mode: TestGuestMode,
    },
    #[error("cannot copy the test guest into guest memory: {0}")]
    Copy(#[from] vm_memory::GuestMemoryError),
}

pub fn load(
    mem: &GuestMemoryMmap,
    path: &Path,
    mode: TestGuestMode,
) -> Result<EntryPoint, TestGuestError> {
    let image = std::fs::read(path).map_err(|source| TestGuestError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let size = image.len() as u64;
    let (addr, max) = match mode {
        TestGuestMode::Real => (REAL_MODE_LOAD_ADDR, REAL_MODE_MAX_SIZE),
        TestGuestMode::Long => (HIMEM_START, low_ram_end(mem).saturating_sub(HIMEM_START)),
    };
    if size > max {
        return Err(TestGuestError::TooLarge { size, max, mode });
    }
    mem.write_slice(&image, GuestAddress(addr))?;
    Ok(match mode {
        TestGuestMode::Real => EntryPoint::RealMode {
            cs: (REAL_MODE_LOAD_ADDR >> 4) as u16,
            ip: 0,
        },
        TestGuestMode::Long => EntryPoint::Long64 {
            entry: HIMEM_START,
            ram_size: low_ram_end(mem),
        },
    })
}
