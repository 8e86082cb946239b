//! FADT (signature "FACP") and FACS.
//!
//! The platform is HW-reduced (no PM1/GPE blocks, no SCI): sleep goes through the FADT's
//! sleep control/status registers and reset through the reset register, all single-byte I/O
//! ports from [`crate::platform`].
//!
//! The FACS is still provided at its fixed address, but ACPICA (and so Linux) does not use a
//! FACS on HW-reduced platforms (`AcpiTbInitializeFacs`): a Linux guest never writes a
//! firmware waking vector there, so resuming from S3/Sz must not depend on one. Tiny test
//! guests may still use it.

use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::Aml;

use super::{finish_sdt, layout, CREATOR_ID, CREATOR_REVISION, OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::platform;

/// FADT major revision: 6.5 is the first with all the fields we fill (hypervisor vendor
/// identity arrived in 6.0).
const FADT_REVISION: u8 = 6;
/// Size of a revision 6 FADT.
pub const FADT_LEN: usize = 276;

/// IAPC_BOOT_ARCH bit: there is no VGA hardware to probe (ACPI 6.5, 5.2.9.3).
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;

/// A one-byte register in I/O port space.
fn io_byte_register(port: u16) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(port),
    )
}

/// Builds the FADT pointing at the DSDT and the FACS.
pub fn build_fadt(dsdt_addr: u64, facs_addr: u64) -> Vec<u8> {
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .firmware_ctrl_64(facs_addr)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup);
    // Both DSDT fields hold the address (it is below 4 GiB): an OS that reads only the 32-bit
    // field finds the same table. FIRMWARE_CTRL stays 0 because the spec requires it to be 0
    // when X_FIRMWARE_CTRL is set.
    if let Ok(dsdt32) = u32::try_from(dsdt_addr) {
        fadt.dsdt = dsdt32.into();
    }
    fadt.creator_id = CREATOR_ID;
    fadt.creator_revision = CREATOR_REVISION.to_le_bytes();
    fadt.iapc_boot_arch = IAPC_VGA_NOT_PRESENT.into();
    fadt.sleep_control_reg = io_byte_register(platform::SLEEP_CONTROL_PORT);
    fadt.sleep_status_reg = io_byte_register(platform::SLEEP_STATUS_PORT);
    fadt.reset_reg = io_byte_register(platform::RESET_PORT);
    fadt.reset_value = platform::RESET_VALUE;
    fadt.hypervisor_vendor_identity = u64::from_le_bytes(*b"REVENANT").into();

    let mut bytes = Vec::with_capacity(FADT_LEN);
    fadt.finalize().to_aml_bytes(&mut bytes);
    finish_sdt(&mut bytes, FADT_REVISION);
    bytes
}

/// Builds the FACS: 64 bytes, version 2, waking vectors zero (the guest's OS sets them).
pub fn build_facs() -> Vec<u8> {
    let mut facs = acpi_tables::facs::FACS::new();
    facs.version = 2;
    let mut bytes = Vec::with_capacity(layout::FACS_LEN as usize);
    facs.to_aml_bytes(&mut bytes);
    bytes
}
