//! The guest-visible ACPI platform: what the tables (FADT, DSDT, MADT) announce and the VMM's
//! devices implement. Both sides use these constants, so they cannot drift apart.
//!
//! Revenant uses HW-reduced ACPI (no PM1 blocks, no SCI from fixed hardware): sleep goes
//! through the FADT's sleep control/status registers, events through a Generic Event Device.

/// FADT SLEEP_CONTROL_REG (I/O port, 1 byte): the OS writes `SLP_TYP << 2 | SLP_EN` here.
pub const SLEEP_CONTROL_PORT: u16 = 0x600;
/// FADT SLEEP_STATUS_REG (I/O port, 1 byte): WAK_STS is set on wake, cleared by writing 1.
pub const SLEEP_STATUS_PORT: u16 = 0x601;
/// FADT RESET_REG (I/O port, 1 byte) and the RESET_VALUE that resets the machine.
pub const RESET_PORT: u16 = 0x602;
pub const RESET_VALUE: u8 = 0x1;
/// Ports 0x600..0x603 belong to the ACPI sleep/reset device.
pub const ACPI_PORTS_LEN: u16 = 3;

/// Bits of the sleep control register (ACPI 6.5, 4.8.3.7).
pub const SLP_EN: u8 = 1 << 5;
pub const SLP_TYP_SHIFT: u8 = 2;
pub const SLP_TYP_MASK: u8 = 0x7 << SLP_TYP_SHIFT;
/// Bit of the sleep status register (ACPI 6.5, 4.8.3.8).
pub const WAK_STS: u8 = 1 << 7;

/// SLP_TYP values the DSDT's `\_S3_`, `\_S4_`, `\_S5_` packages carry. Sz has no package of
/// its own: it is a VM-level mode in which the guest's S3 request becomes Sz (DESIGN.md).
pub const SLP_TYP_S3: u8 = 1;
pub const SLP_TYP_S4: u8 = 2;
pub const SLP_TYP_S5: u8 = 5;

/// The RSDP sits at the start of the BIOS read-only area so that a kernel booted without a
/// boot-protocol RSDP pointer still finds it by scanning 0xe0000-0xfffff; the other tables
/// follow it. The e820/PVH map does not report this range as RAM.
pub const RSDP_ADDR: u64 = 0x000e_0000;
/// End (exclusive) of the area the tables may use.
pub const ACPI_AREA_END: u64 = 0x0010_0000;
/// The FACS is at a fixed address (64-byte aligned as required) so a test guest can set the
/// firmware waking vector without parsing tables.
pub const FACS_ADDR: u64 = 0x000e_0040;
/// 16-byte VM generation ID read by the guest through the VMGenID device's `ADDR` method.
pub const VMGENID_ADDR: u64 = 0x000e_ff00;

/// Generic Event Device (ACPI0013): a 4-byte MMIO event register the guest's `_EVT` reads,
/// and its interrupt (IOAPIC pin, level, active high).
pub const GED_MMIO_BASE: u64 = 0xf000_0000;
pub const GED_MMIO_LEN: u64 = 0x10;
pub const GED_IRQ: u32 = 23;
/// Event bits in the GED register.
pub const GED_EVENT_CPU_HOTPLUG: u32 = 1 << 0;
pub const GED_EVENT_MEMORY_HOTPLUG: u32 = 1 << 1;
pub const GED_EVENT_POWER_BUTTON: u32 = 1 << 2;
/// The VM generation ID changed (a clone was restored): `_EVT` notifies `\_SB_.VGEN` (0x80).
pub const GED_EVENT_VMGENID: u32 = 1 << 3;
/// PCI slots were plugged or should be unplugged: `_EVT` calls `\_SB_.PCI0.PCNT`, which reads
/// the PCI hot-plug controller's PCIU/PCID registers and notifies each slot.
pub const GED_EVENT_PCI_HOTPLUG: u32 = 1 << 4;

/// CPU hotplug controller (Cloud Hypervisor's register layout): select a CPU, read its
/// status, acknowledge insert/remove, eject.
pub const CPU_HOTPLUG_MMIO_BASE: u64 = 0xf000_1000;
pub const CPU_HOTPLUG_MMIO_LEN: u64 = 0x10;

/// PCI hot-plug controller (Cloud Hypervisor's register layout), four 32-bit registers:
/// 0x0 PCIU (slots plugged since the last read, bit = slot; reading clears), 0x4 PCID
/// (slots the host wants to unplug; reading clears), 0x8 B0EJ (the guest writes a slot bit
/// to eject that slot after it let go of the device), 0xc PSEG (segment; only 0 exists).
pub const PCI_HOTPLUG_MMIO_BASE: u64 = 0xf000_2000;
pub const PCI_HOTPLUG_MMIO_LEN: u64 = 0x10;
/// Not a device: a guest-physical page with nothing behind it, which the VMM's SYSCALL
/// bridge on PVM hosts uses as its doorbell (`vmm/src/vstate/syscall_bridge.rs`).
pub const SYSCALL_DOORBELL_ADDR: u64 = 0xf000_3000;

/// The PCI root bus (segment 0, bus 0): where every device's 32-bit memory BARs go (the
/// host bridge's `_CRS` announces exactly this window) and the ECAM window of bus 0 (the
/// MCFG table announces it; the memory map reserves it, as Linux requires).
pub const PCI_BAR_APERTURE_START: u64 = 0xd000_0000;
pub const PCI_BAR_APERTURE_SIZE: u64 = 0x1000_0000;
pub const PCI_ECAM_BASE: u64 = 0xe000_0000;
pub const PCI_ECAM_SIZE: u64 = 1 << 20;
/// Configuration mechanism #1 ports (0xCF8 address, 0xCFC data), announced in `_CRS` too.
pub const PCI_CONFIG_IO_PORT: u16 = 0xcf8;
pub const PCI_CONFIG_IO_LEN: u16 = 8;
/// Device slots on bus 0; slot 0 is the host bridge, 1..=31 take devices.
pub const PCI_SLOTS: u8 = 32;

/// COM1, described in the DSDT for guests that enumerate it through ACPI.
pub const COM1_PORT: u16 = 0x3f8;
pub const COM1_IRQ: u32 = 4;

/// IOAPIC and LAPIC, as the MADT announces them.
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
