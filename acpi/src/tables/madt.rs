//! MADT (signature "APIC"): the local APICs of every possible vCPU, the IOAPIC and the ISA
//! IRQ0 override.

use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::{Aml, AmlSink};
use zerocopy::{Immutable, IntoBytes};

use super::{finish_sdt, AcpiConfig, OEM_ID, OEM_REVISION, OEM_TABLE_ID};
use crate::platform;

/// MADT revision 5 (ACPI 6.3) is the first that defines the Local APIC "Online Capable" flag;
/// an OS reading an older MADT ignores it and would not offer the CPUs for hot-plug.
const MADT_REVISION: u8 = 5;
/// The IOAPIC's ID. KVM's in-kernel IOAPIC starts with ID 0.
const IOAPIC_ID: u8 = 0;
/// MADT entry type of an Interrupt Source Override (ACPI 6.5, 5.2.12.5).
const INTERRUPT_SOURCE_OVERRIDE: u8 = 2;

/// Local APIC flags (ACPI 6.5, table 5.37).
pub const LAPIC_ENABLED: u32 = 1 << 0;
pub const LAPIC_ONLINE_CAPABLE: u32 = 1 << 1;

/// Interrupt Source Override: ISA IRQ `source` arrives on `gsi`. Not provided by
/// `acpi_tables` 0.2.
#[repr(C, packed)]
#[derive(Clone, Copy, IntoBytes, Immutable)]
struct InterruptSourceOverride {
    r#type: u8,
    length: u8,
    bus: u8,
    source: u8,
    gsi: u32,
    flags: u16,
}

impl InterruptSourceOverride {
    /// An override with "conforms to the bus" polarity and trigger (flags 0), which for ISA
    /// means edge, active high.
    fn isa(source: u8, gsi: u32) -> Self {
        Self {
            r#type: INTERRUPT_SOURCE_OVERRIDE,
            length: 10,
            bus: 0,
            source,
            gsi: gsi.to_le(),
            flags: 0,
        }
    }
}

impl Aml for InterruptSourceOverride {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(self.as_bytes());
    }
}

/// Builds the MADT: one Local APIC per possible vCPU (APIC ID = processor UID = vCPU index),
/// enabled for the boot vCPUs and online-capable for the rest.
pub fn build(config: &AcpiConfig) -> Vec<u8> {
    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(platform::LAPIC_ADDR),
    );
    // validate() keeps max_vcpus <= MAX_VCPUS (254), so every id fits a u8.
    for id in 0..config.max_vcpus.min(super::MAX_VCPUS) as u8 {
        let status = if u32::from(id) < config.boot_vcpus {
            EnabledStatus::Enabled
        } else {
            EnabledStatus::DisabledOnlineCapable
        };
        madt.add_structure(ProcessorLocalApic::new(id, id, status));
    }
    madt.add_structure(IoApic::new(IOAPIC_ID, platform::IOAPIC_ADDR, 0));
    // The PIT drives ISA IRQ0, which the IOAPIC receives on pin 2 (as on PC hardware and in
    // Firecracker and Cloud Hypervisor).
    madt.add_structure(InterruptSourceOverride::isa(0, 2));

    let mut bytes = Vec::new();
    madt.to_aml_bytes(&mut bytes);
    finish_sdt(&mut bytes, MADT_REVISION);
    bytes
}
