//! PCI root bus: the host bridge `\_SB_.PCI0` with one hot-pluggable slot device per device
//! slot, the PCI hot-plug controller `\_SB_.PHPR` behind them, and `\_SB_.MBRD`, which
//! reserves the ECAM window as a motherboard resource. The MCFG table (module `mcfg`)
//! announces the same ECAM window.
//!
//! # Host bridge
//! `PCI0` (PNP0A08, compatible PNP0A03) is segment 0 (`_SEG`), buses `0..bus_count` from
//! `_BBN` 0. Its `_CRS`
//! claims the bus numbers, ports 0xCF8..=0xCFF (configuration mechanism #1, which Linux drops
//! from the window list again) and the BAR aperture as the only memory window. There is no
//! I/O window, so devices cannot have I/O BARs, and no `_PRT`: devices interrupt through
//! MSI-X only, so they should report Interrupt Pin 0 (without a `_PRT` the guest cannot
//! route INTx). There is no `_OSC` either: the guest then keeps the firmware's control of
//! PCIe native hot-plug, AER and PME, so hot-plug goes through the ACPI slots below
//! (Linux's acpiphp) and never through pciehp.
//!
//! The guest may move BARs anywhere inside the aperture, and may assign BARs the VMM left
//! unprogrammed, so the VMM must follow BAR writes. The e820 map must not cover the
//! aperture: Linux clips host bridge windows against e820 entries when the machine has no
//! DMI BIOS date (as here).
//!
//! # Slots
//! `Device (Snn_)` for slot nn = 1..`slots` (hex: `S01_`..`S1F_`) has `_ADR` = nn << 16
//! (device nn, function 0), `_SUN` = nn (Linux names the slot `/sys/bus/pci/slots/<nn>`),
//! and `_EJ0`, which calls `\_SB_.PHPR.PCEJ (nn)`. Slot 0 is the host bridge and has no
//! device. The slots have no `_STA`: the guest learns whether a slot holds a device by
//! reading its vendor ID, so an empty slot's configuration space must read as all ones.
//!
//! # Controller registers (Cloud Hypervisor's layout)
//!
//! The block is at [`PciRootConfig::hotplug_mmio_base`] (the standard configuration puts it
//! at [`platform::PCI_HOTPLUG_MMIO_BASE`]); the AML accesses each register as one aligned
//! 32-bit MMIO access, bit n standing for slot n:
//!
//! | offset | access | name | meaning |
//! |---|---|---|---|
//! | [`PCIU_OFFSET`] (0x0) | read | `PCIU` | slots whose device was plugged since the last read; the read clears them |
//! | [`PCID_OFFSET`] (0x4) | read | `PCID` | slots whose device the host wants to unplug, since the last read; the read clears them |
//! | [`B0EJ_OFFSET`] (0x8) | write | `B0EJ` | the guest has let go of the device in each slot whose bit is set: remove it |
//! | [`PSEG_OFFSET`] (0xc) | read/write | `PSEG` | segment selection; only segment 0 exists and the AML never accesses it |
//!
//! The field's update rule is WriteAsZeroes: a write to `B0EJ` carries only the bits being
//! ejected. The AML reads `PCIU` and `PCID` exactly once per scan, under the controller's
//! mutex, so read-to-clear loses nothing.
//!
//! # Flow
//! Hot-plug into slot n: the VMM makes the device answer at 00:nn.0, sets bit n in `PCIU`
//! and raises [`platform::GED_EVENT_PCI_HOTPLUG`] on the GED. The GED's `_EVT` calls
//! `\_SB_.PCI0.PCNT`, which reads `PCIU` and `PCID` and sends `Notify (Snn_, 1)` (device
//! check) for each bit of `PCIU`; the guest rescans the slot and finds 0000:00:nn.0.
//! Hot-unplug: the VMM sets bit n in `PCID` and raises the same GED event; `PCNT` sends
//! `Notify (Snn_, 3)` (eject request); the guest unbinds the driver, removes the device and
//! calls `_EJ0`, which writes bit n to `B0EJ`; only then does the VMM take the device out of
//! the slot (its configuration space reading all ones afterwards). A guest that ignores the
//! request never writes `B0EJ`.

use acpi_tables::aml::{
    Acquire, AddressSpace, AddressSpaceCacheable, And, Arg, Device, EISAName, Equal, Field,
    FieldAccessType, FieldEntry, FieldLockRule, FieldUpdateRule, If, Local, Memory32Fixed, Method,
    MethodCall, Mutex, Name, Notify, OpRegion, OpRegionSpace, Path, Release, ResourceTemplate,
    ShiftLeft, Store, IO, ONE, ZERO,
};
use acpi_tables::Aml;

use super::dsdt::{aml_bytes, Raw};
use super::PciRootConfig;
use crate::platform;

/// Offset of `PCIU` (slots plugged; read clears).
pub const PCIU_OFFSET: u64 = 0x0;
/// Offset of `PCID` (slots to unplug; read clears).
pub const PCID_OFFSET: u64 = 0x4;
/// Offset of `B0EJ` (the guest writes the bits of the slots it ejects).
pub const B0EJ_OFFSET: u64 = 0x8;
/// Offset of `PSEG` (segment selection; unused with one segment).
pub const PSEG_OFFSET: u64 = 0xc;
/// Size of the four registers; the register block is at least this long.
pub const REGISTERS_LEN: u64 = 0x10;

/// Device numbers are 5 bits, and the registers have one bit per slot.
pub const MAX_SLOTS: u8 = 32;
/// Bus numbers are 8 bits.
pub const MAX_BUSES: u16 = 256;
/// ECAM space of one bus: 32 devices x 8 functions x 4 KiB.
pub const ECAM_BUS_SIZE: u64 = 1 << 20;

/// Notify values the scan sends (ACPI 6.5, 5.6.6).
const NOTIFY_DEVICE_CHECK: u8 = 1;
const NOTIFY_EJECT_REQUEST: u8 = 3;
/// `_STA` of the controller: present, enabled and functioning, but not shown in the UI.
const STA_PRESENT_HIDDEN: u8 = 0x0b;
/// Mutex timeout meaning "wait forever".
const WAIT_FOREVER: u16 = 0xffff;

const LOCK: &str = "\\_SB_.PHPR.BLCK";
const EJECT_METHOD: &str = "\\_SB_.PHPR.PCEJ";
const PCIU: &str = "\\_SB_.PHPR.PCIU";
const PCID: &str = "\\_SB_.PHPR.PCID";
/// The method the GED's `_EVT` calls on [`platform::GED_EVENT_PCI_HOTPLUG`].
pub(super) const SCAN_METHOD: &str = "\\_SB_.PCI0.PCNT";

/// Name of slot `slot`'s device: `S01_`..`S1F_`.
pub fn slot_device_name(slot: u8) -> String {
    format!("S{slot:02X}_")
}

/// The `MBRD`, `PHPR` and `PCI0` devices (to be placed in `\_SB_`). `pci` must have passed
/// `validate()`: every window is below 4 GiB and there are 1..=32 slots and 1..=256 buses.
pub fn devices(pci: &PciRootConfig) -> Vec<u8> {
    let mut bytes = ecam_reservation(pci);
    bytes.extend(hotplug_controller(pci));
    bytes.extend(host_bridge(pci));
    bytes
}

/// `Device (MBRD)`: the ECAM window as a motherboard resource (PNP0C02). Linux uses an MCFG
/// window only if it is reserved here or, failing that, in the e820 map; this keeps the
/// reservation in the tables that announce the window.
fn ecam_reservation(pci: &PciRootConfig) -> Vec<u8> {
    let hid = Name::new("_HID".into(), &EISAName::new("PNP0C02"));
    let uid = Name::new("_UID".into(), &ZERO);
    // validate() has checked that the window is below 4 GiB.
    let window = Memory32Fixed::new(true, pci.ecam_base as u32, pci.ecam_size() as u32);
    let crs = Name::new("_CRS".into(), &ResourceTemplate::new(vec![&window]));
    aml_bytes(&Device::new("MBRD".into(), vec![&hid, &uid, &crs]))
}

/// `Device (PHPR)`: the hot-plug controller's register block (see the module documentation)
/// and `PCEJ (Arg0)`, which ejects slot Arg0.
fn hotplug_controller(pci: &PciRootConfig) -> Vec<u8> {
    let hid = Name::new("_HID".into(), &EISAName::new("PNP0A06"));
    let sta = Name::new("_STA".into(), &STA_PRESENT_HIDDEN);
    let uid = Name::new("_UID".into(), &"PCI Hotplug Controller");
    let window = Memory32Fixed::new(
        true,
        pci.hotplug_mmio_base as u32,
        pci.hotplug_mmio_len as u32,
    );
    let crs = Name::new("_CRS".into(), &ResourceTemplate::new(vec![&window]));
    let lock = Mutex::new("BLCK".into(), 0);
    let region = OpRegion::new(
        "PCST".into(),
        OpRegionSpace::SystemMemory,
        &pci.hotplug_mmio_base,
        &REGISTERS_LEN,
    );
    let field = Field::new(
        "PCST".into(),
        FieldAccessType::DWord,
        FieldLockRule::NoLock,
        FieldUpdateRule::WriteAsZeroes,
        vec![
            FieldEntry::Named(*b"PCIU", 32),
            FieldEntry::Named(*b"PCID", 32),
            FieldEntry::Named(*b"B0EJ", 32),
            FieldEntry::Named(*b"PSEG", 32),
        ],
    );

    let acquire = Acquire::new("BLCK".into(), WAIT_FOREVER);
    let b0ej = Path::new("B0EJ");
    let eject = ShiftLeft::new(&b0ej, &ONE, &Arg(0));
    let release = Release::new("BLCK".into());
    let pcej = Method::new("PCEJ".into(), 1, false, vec![&acquire, &eject, &release]);

    aml_bytes(&Device::new(
        "PHPR".into(),
        vec![&hid, &sta, &uid, &crs, &lock, &region, &field, &pcej],
    ))
}

/// `Device (PCI0)`: the host bridge, its slots, `DVNT` and `PCNT`.
fn host_bridge(pci: &PciRootConfig) -> Vec<u8> {
    let hid = Name::new("_HID".into(), &EISAName::new("PNP0A08"));
    let cid = Name::new("_CID".into(), &EISAName::new("PNP0A03"));
    // No `_ADR`: a device has either a `_HID` or an `_ADR` (ACPI 6.5, 6.1; iasl warns about
    // both), and nothing reads a root bridge's address.
    let seg = Name::new("_SEG".into(), &ZERO);
    let uid = Name::new("_UID".into(), &ZERO);
    let bbn = Name::new("_BBN".into(), &ZERO);

    let buses = AddressSpace::new_bus_number(0u16, pci.bus_count - 1);
    let config_ports = IO::new(
        platform::PCI_CONFIG_IO_PORT,
        platform::PCI_CONFIG_IO_PORT,
        1,
        platform::PCI_CONFIG_IO_LEN as u8,
    );
    // validate() has checked that the aperture is non-empty and below 4 GiB.
    let aperture = AddressSpace::new_memory(
        AddressSpaceCacheable::Cacheable,
        true,
        pci.aperture_start as u32,
        (pci.aperture_start + pci.aperture_size - 1) as u32,
        None,
    );
    let crs = ResourceTemplate::new(vec![&buses, &config_ports, &aperture]);
    let crs = Name::new("_CRS".into(), &crs);

    let mut children = Vec::new();
    for obj in [&hid as &dyn Aml, &cid, &seg, &uid, &bbn, &crs] {
        obj.to_aml_bytes(&mut children);
    }
    for slot in 1..pci.slots {
        children.extend(slot_device(slot));
    }
    children.extend(notify_method(pci.slots));
    children.extend(scan_method());
    let children = Raw(children);
    aml_bytes(&Device::new("PCI0".into(), vec![&children]))
}

/// `Device (Snn_)` for slot `slot`.
fn slot_device(slot: u8) -> Vec<u8> {
    let name = slot_device_name(slot);
    let adr = Name::new("_ADR".into(), &(u32::from(slot) << 16));
    let sun = Name::new("_SUN".into(), &slot);
    let eject = MethodCall::new(EJECT_METHOD.into(), vec![&slot]);
    let ej0 = Method::new("_EJ0".into(), 1, false, vec![&eject]);
    aml_bytes(&Device::new(name.as_str().into(), vec![&adr, &sun, &ej0]))
}

/// `DVNT (Arg0, Arg1)`: `Notify (Snn_, Arg1)` for every slot nn whose bit is set in Arg0.
/// `Notify` needs a fixed object, hence one `If` per slot.
fn notify_method(slots: u8) -> Vec<u8> {
    let mut body = Vec::new();
    for slot in 1..slots {
        let bit = 1u32 << slot;
        let device = Path::new(&slot_device_name(slot));
        let masked = And::new(&ZERO, &Arg(0), &bit);
        let set = Equal::new(&masked, &bit);
        let notify = Notify::new(&device, &Arg(1));
        If::new(&set, vec![&notify]).to_aml_bytes(&mut body);
    }
    let body = Raw(body);
    aml_bytes(&Method::new("DVNT".into(), 2, false, vec![&body]))
}

/// `PCNT`: reads `PCIU` and `PCID` once each (the reads clear them), then sends a device
/// check to every plugged slot and an eject request to every slot to unplug.
fn scan_method() -> Vec<u8> {
    let acquire = Acquire::new(LOCK.into(), WAIT_FOREVER);
    let (pciu, pcid) = (Path::new(PCIU), Path::new(PCID));
    let plugged = Store::new(&Local(0), &pciu);
    let unplug = Store::new(&Local(1), &pcid);
    let release = Release::new(LOCK.into());
    let notify_plugged = MethodCall::new("DVNT".into(), vec![&Local(0), &NOTIFY_DEVICE_CHECK]);
    let notify_unplug = MethodCall::new("DVNT".into(), vec![&Local(1), &NOTIFY_EJECT_REQUEST]);
    aml_bytes(&Method::new(
        "PCNT".into(),
        0,
        true,
        vec![
            &acquire,
            &plugged,
            &unplug,
            &release,
            &notify_plugged,
            &notify_unplug,
        ],
    ))
}
