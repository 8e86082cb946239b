//! Putting the ACPI tables (built by `revenant_acpi::tables`) into guest memory.

use revenant_acpi::platform::VMGENID_ADDR;
use revenant_acpi::tables::{build_tables, AcpiConfig, AcpiTables, MmioDevice, TablesError};
use vm_memory::{Bytes, GuestAddress};

use crate::config::VmConfig;
use crate::vstate::memory::GuestMemoryMmap;

#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    #[error("cannot build the ACPI tables: {0}")]
    Build(#[from] TablesError),
    #[error("cannot write the ACPI tables into guest memory: {0}")]
    Write(#[from] vm_memory::GuestMemoryError),
    #[error("cannot draw a VM generation ID: {0}")]
    Random(#[source] std::io::Error),
}

/// The tables a VM with `config` and virtio-mmio devices at `virtio` gets.
pub fn tables_for(config: &VmConfig, virtio: &[MmioDevice]) -> Result<AcpiTables, AcpiError> {
    Ok(build_tables(&AcpiConfig {
        boot_vcpus: config.cpus.boot_vcpus,
        max_vcpus: config.cpus.max_vcpus,
        virtio_mmio: virtio.to_vec(),
        vmgenid: true,
        pci: Some(revenant_acpi::tables::PciRootConfig::standard()),
    })?)
}

/// Writes the tables and a fresh VM generation ID; returns the RSDP's address for the boot
/// protocol (PVH `rsdp_paddr`, boot_params `acpi_rsdp_addr`).
pub fn write_tables(mem: &GuestMemoryMmap, tables: &AcpiTables) -> Result<u64, AcpiError> {
    for t in &tables.tables {
        mem.write_slice(&t.bytes, GuestAddress(t.addr))?;
    }
    write_generation_id(mem)?;
    Ok(tables.rsdp_addr)
}

/// Draws a new VM generation ID into the VMGenID buffer (at boot, and for every clone).
pub fn write_generation_id(mem: &GuestMemoryMmap) -> Result<(), AcpiError> {
    mem.write_slice(&generation_id()?, GuestAddress(VMGENID_ADDR))?;
    Ok(())
}

/// 128 random bits from the kernel: a new ID tells a guest its RNG state may be shared with
/// clones (the template work changes it on every fork).
fn generation_id() -> Result<[u8; 16], AcpiError> {
    let mut id = [0u8; 16];
    // SAFETY: getrandom writes at most `id.len()` bytes into the buffer it is given.
    let n = unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
    if n != id.len() as isize {
        return Err(AcpiError::Random(std::io::Error::last_os_error()));
    }
    Ok(id)
}

/// Writes each table to `dir/<SIGNATURE>.dat` (for `iasl -d`); returns the file names.
pub fn dump(tables: &AcpiTables, dir: &std::path::Path) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut names = Vec::new();
    for t in &tables.tables {
        let name = format!("{}.dat", t.signature);
        std::fs::write(dir.join(&name), &t.bytes)?;
        names.push(name);
    }
    Ok(names)
}
