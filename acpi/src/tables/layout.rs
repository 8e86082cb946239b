//! Placement of the tables in the ACPI area.
//!
//! The RSDP sits at [`platform::RSDP_ADDR`] and the FACS at [`platform::FACS_ADDR`]; the other
//! tables follow in the order they are placed, skipping those two and the VMGenID buffer at
//! [`platform::VMGENID_ADDR`] (the VMM writes the generation ID there whether or not the DSDT
//! announces the device, so no table may sit on it).

use std::ops::Range;

use super::TablesError;
use crate::platform;

/// Size of an ACPI 2.0+ RSDP.
pub const RSDP_LEN: u64 = 36;
/// Size of the FACS (ACPI 6.5, 5.2.10).
pub const FACS_LEN: u64 = 64;
/// Size of the VMGenID generation ID buffer.
pub const VMGENID_LEN: u64 = 16;
/// Tables start on 16-byte boundaries: the spec only asks 8 of the XSDT/RSDP targets, 16 keeps
/// a hex dump readable and costs a few bytes.
const ALIGN: u64 = 16;

/// Hands out addresses in `[RSDP_ADDR, ACPI_AREA_END)` around the fixed-address ranges.
pub struct Placer {
    next: u64,
    reserved: [Range<u64>; 3],
}

impl Placer {
    pub fn new() -> Self {
        Self {
            next: platform::RSDP_ADDR + RSDP_LEN,
            reserved: [
                platform::RSDP_ADDR..platform::RSDP_ADDR + RSDP_LEN,
                platform::FACS_ADDR..platform::FACS_ADDR + FACS_LEN,
                platform::VMGENID_ADDR..platform::VMGENID_ADDR + VMGENID_LEN,
            ],
        }
    }

    /// Returns the address of the next `len` free bytes, or an error naming `signature` when
    /// they would cross [`platform::ACPI_AREA_END`].
    pub fn place(&mut self, signature: &str, len: usize) -> Result<u64, TablesError> {
        let does_not_fit = || TablesError::DoesNotFit {
            signature: signature.to_string(),
            len,
        };
        let size = u64::try_from(len).map_err(|_| does_not_fit())?;
        let mut addr = align_up(self.next);
        // The reserved ranges are few and sorted, so one pass that jumps past each overlap is
        // enough; loop anyway in case a jump lands on the next range.
        while let Some(r) = self
            .reserved
            .iter()
            .find(|r| addr < r.end && addr.saturating_add(size) > r.start)
        {
            addr = align_up(r.end);
        }
        let end = addr.checked_add(size).ok_or_else(does_not_fit)?;
        if end > platform::ACPI_AREA_END {
            return Err(does_not_fit());
        }
        self.next = end;
        Ok(addr)
    }
}

fn align_up(addr: u64) -> u64 {
    addr.div_ceil(ALIGN) * ALIGN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_table_follows_the_facs() {
        let mut placer = Placer::new();
        assert_eq!(placer.place("XSDT", 52), Ok(platform::FACS_ADDR + FACS_LEN));
    }

    #[test]
    fn a_table_that_would_cover_the_vmgenid_buffer_goes_after_it() {
        let mut placer = Placer::new();
        let before = (platform::VMGENID_ADDR - (platform::FACS_ADDR + FACS_LEN)) as usize;
        // Fills the space up to 16 bytes before the buffer; the next 32 bytes cannot fit there.
        placer.place("A", before - 16).unwrap();
        let addr = placer.place("B", 32).unwrap();
        assert_eq!(addr, platform::VMGENID_ADDR + VMGENID_LEN);
        assert_eq!(
            placer.place("C", (platform::ACPI_AREA_END - addr) as usize),
            Err(TablesError::DoesNotFit {
                signature: "C".to_string(),
                len: (platform::ACPI_AREA_END - addr) as usize
            })
        );
        let last = (platform::ACPI_AREA_END - addr - 32) as usize;
        assert_eq!(placer.place("D", last), Ok(addr + 32));
    }
}
