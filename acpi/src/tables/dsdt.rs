//! The DSDT: everything the guest finds by walking the ACPI namespace.
//!
//! `\_SB_` holds the virtio-mmio transports (`Vnnn`), COM1, the power button, the Generic
//! Event Device, the CPU hot-plug container ([`super::cpu_hotplug`]), if asked for, the
//! VMGenID device and, with a PCI root bus, its host bridge, slots and hot-plug controller
//! ([`super::pci`]). The root holds the `\_S3_`, `\_S4_`, `\_S5_` sleep packages.
//!
//! The Generic Event Device's contract with the VMM is in the parent module's documentation.

use acpi_tables::aml::{
    And, Device, EISAName, Equal, Field, FieldAccessType, FieldEntry, FieldLockRule,
    FieldUpdateRule, If, Interrupt, Local, Memory32Fixed, Method, MethodCall, Name, Notify,
    OpRegion, OpRegionSpace, Package, Path, ResourceTemplate, Return, Scope, Store, IO, ZERO,
};
use acpi_tables::sdt::Sdt;
use acpi_tables::{Aml, AmlSink};

use super::{
    cpu_hotplug, finish_sdt, pci, AcpiConfig, MmioDevice, OEM_ID, OEM_REVISION, OEM_TABLE_ID,
};
use crate::platform;

/// DSDT revision 2: integers are 64 bits wide.
const DSDT_REVISION: u8 = 2;
/// virtio devices are named `V000`..`VFFF`.
pub const MAX_VIRTIO_DEVICES: usize = 0x1000;
/// The VMGenID device's _HID: an ACPI ID under Revenant's vendor prefix.
pub const VMGENID_HID: &str = "RVNT0001";
/// `Notify` value of a power button press (ACPI 6.5, 4.8.2.2.1.1).
const NOTIFY_POWER_BUTTON: u8 = 0x80;
/// Notify value the Linux vmgenid driver (and the VMGenID spec) expects on a new ID.
const NOTIFY_VMGENID_CHANGED: u8 = 0x80;

/// AML that is already encoded, so that parts built separately can be nested.
pub struct Raw(pub Vec<u8>);

impl Aml for Raw {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}

/// Encodes one AML object.
pub fn aml_bytes(obj: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    obj.to_aml_bytes(&mut bytes);
    bytes
}

/// Builds the DSDT. `config` must have passed `validate()`.
pub fn build(config: &AcpiConfig) -> Vec<u8> {
    let mut sb = Vec::new();
    for (index, dev) in config.virtio_mmio.iter().enumerate() {
        sb.extend(virtio_device(index, dev));
    }
    sb.extend(com1());
    sb.extend(power_button());
    sb.extend(generic_event_device(config.vmgenid, config.pci.is_some()));
    sb.extend(cpu_hotplug::container(config));
    if config.vmgenid {
        sb.extend(vmgenid());
    }
    if let Some(root) = &config.pci {
        sb.extend(pci::devices(root));
    }

    let mut dsdt = Sdt::new(
        *b"DSDT",
        super::header::LEN as u32,
        DSDT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    dsdt.append_slice(&Scope::raw("\\_SB_".into(), sb));
    for (name, slp_typ) in [
        ("_S3_", platform::SLP_TYP_S3),
        ("_S4_", platform::SLP_TYP_S4),
        ("_S5_", platform::SLP_TYP_S5),
    ] {
        dsdt.append_slice(&sleep_package(name, slp_typ));
    }
    let mut bytes = dsdt.as_slice().to_vec();
    finish_sdt(&mut bytes, DSDT_REVISION);
    bytes
}

/// `Name (_Sx_, Package (0x04) { SLP_TYP, Zero, Zero, Zero })`: the first element is the
/// SLP_TYP written to the sleep control register; the others are reserved (PM1b's value and
/// two reserved entries on legacy hardware).
fn sleep_package(name: &str, slp_typ: u8) -> Vec<u8> {
    let package = Package::new(vec![&slp_typ, &ZERO, &ZERO, &ZERO]);
    aml_bytes(&Name::new(name.into(), &package))
}

/// `Device (Vnnn)`: a virtio-mmio transport as Linux's virtio_mmio driver expects it.
fn virtio_device(index: usize, dev: &MmioDevice) -> Vec<u8> {
    let name = format!("V{index:03X}");
    // validate() has checked that the window is below 4 GiB.
    let window = Memory32Fixed::new(true, dev.base as u32, dev.size as u32);
    // Edge, active high: the VMM raises it through a KVM irqfd, which pulses the IOAPIC pin.
    // Declared level, a pulse arriving before the guest's EOI would be lost (remote IRR still
    // set) and a request could hang; edge matches what the line does (and what Linux assumes
    // for `virtio_mmio.device=` on the command line).
    let irq = Interrupt::new(true, true, false, false, dev.irq);
    let crs = ResourceTemplate::new(vec![&window, &irq]);
    let hid = Name::new("_HID".into(), &"LNRO0005");
    let uid = Name::new("_UID".into(), &(index as u32));
    let crs = Name::new("_CRS".into(), &crs);
    aml_bytes(&Device::new(name.as_str().into(), vec![&hid, &uid, &crs]))
}

/// `Device (COM1)`: the 16550 UART at 0x3f8, ISA IRQ 4 (edge, active high).
fn com1() -> Vec<u8> {
    let ports = IO::new(platform::COM1_PORT, platform::COM1_PORT, 1, 8);
    let irq = Interrupt::new(true, true, false, false, platform::COM1_IRQ);
    let crs = ResourceTemplate::new(vec![&ports, &irq]);
    let hid = Name::new("_HID".into(), &EISAName::new("PNP0501"));
    let uid = Name::new("_UID".into(), &ZERO);
    let crs = Name::new("_CRS".into(), &crs);
    aml_bytes(&Device::new("COM1".into(), vec![&hid, &uid, &crs]))
}

/// `Device (PWRB)`: the control-method power button the GED notifies.
fn power_button() -> Vec<u8> {
    let hid = Name::new("_HID".into(), &EISAName::new("PNP0C0C"));
    let uid = Name::new("_UID".into(), &ZERO);
    aml_bytes(&Device::new("PWRB".into(), vec![&hid, &uid]))
}

/// `Device (GED_)`: see the module documentation. With `vmgenid`, bit
/// `GED_EVENT_VMGENID` notifies `\_SB_.VGEN` so the guest re-reads its generation ID; with
/// `pci`, bit `GED_EVENT_PCI_HOTPLUG` runs the PCI slot scan `\_SB_.PCI0.PCNT`.
fn generic_event_device(vmgenid: bool, pci: bool) -> Vec<u8> {
    let hid = Name::new("_HID".into(), &"ACPI0013");
    let uid = Name::new("_UID".into(), &ZERO);
    let irq = Interrupt::new(true, false, false, false, platform::GED_IRQ);
    let crs = ResourceTemplate::new(vec![&irq]);
    let crs = Name::new("_CRS".into(), &crs);
    let region = OpRegion::new(
        "GDST".into(),
        OpRegionSpace::SystemMemory,
        &platform::GED_MMIO_BASE,
        &platform::GED_MMIO_LEN,
    );
    let field = Field::new(
        "GDST".into(),
        FieldAccessType::DWord,
        FieldLockRule::NoLock,
        FieldUpdateRule::WriteAsZeroes,
        vec![FieldEntry::Named(*b"GDAT", 32)],
    );

    let (gdat, button) = (Path::new("GDAT"), Path::new("\\_SB_.PWRB"));
    let read = Store::new(&Local(0), &gdat);
    let cpu_bit = platform::GED_EVENT_CPU_HOTPLUG;
    let cpu_masked = And::new(&ZERO, &Local(0), &cpu_bit);
    let cpu_set = Equal::new(&cpu_masked, &cpu_bit);
    let scan = MethodCall::new("\\_SB_.CPUS.CSCN".into(), vec![]);
    let on_cpu = If::new(&cpu_set, vec![&scan]);
    let button_bit = platform::GED_EVENT_POWER_BUTTON;
    let button_masked = And::new(&ZERO, &Local(0), &button_bit);
    let button_set = Equal::new(&button_masked, &button_bit);
    let press = Notify::new(&button, &NOTIFY_POWER_BUTTON);
    let on_button = If::new(&button_set, vec![&press]);
    let vgen = Path::new("\\_SB_.VGEN");
    let vgen_bit = platform::GED_EVENT_VMGENID;
    let vgen_masked = And::new(&ZERO, &Local(0), &vgen_bit);
    let vgen_set = Equal::new(&vgen_masked, &vgen_bit);
    let changed = Notify::new(&vgen, &NOTIFY_VMGENID_CHANGED);
    let on_vgen = If::new(&vgen_set, vec![&changed]);
    let pci_bit = platform::GED_EVENT_PCI_HOTPLUG;
    let pci_masked = And::new(&ZERO, &Local(0), &pci_bit);
    let pci_set = Equal::new(&pci_masked, &pci_bit);
    let pci_scan = MethodCall::new(pci::SCAN_METHOD.into(), vec![]);
    let on_pci = If::new(&pci_set, vec![&pci_scan]);
    let mut body: Vec<&dyn Aml> = vec![&read, &on_cpu, &on_button];
    if vmgenid {
        body.push(&on_vgen);
    }
    if pci {
        body.push(&on_pci);
    }
    let evt = Method::new("_EVT".into(), 1, true, body);

    aml_bytes(&Device::new(
        "GED_".into(),
        vec![&hid, &uid, &crs, &region, &field, &evt],
    ))
}

/// `Device (VGEN)`: the VM generation ID device; `ADDR` returns the address of the 16-byte
/// generation ID as `Package { low 32 bits, high 32 bits }`.
fn vmgenid() -> Vec<u8> {
    // Linux's vmgenid driver matches the _CID (ACPICA upper-cases it to VM_GEN_COUNTER);
    // QEMU's "QEMUVGID" is not a valid ACPI ID (iasl rejects it), so the _HID is our own.
    let hid = Name::new("_HID".into(), &VMGENID_HID);
    let cid = Name::new("_CID".into(), &"VM_Gen_Counter");
    let ddn = Name::new("_DDN".into(), &"VM_Gen_Counter");
    let low = (platform::VMGENID_ADDR & 0xffff_ffff) as u32;
    let high = (platform::VMGENID_ADDR >> 32) as u32;
    let addr = Package::new(vec![&low, &high]);
    let ret = Return::new(&addr);
    let addr_method = Method::new("ADDR".into(), 0, false, vec![&ret]);
    aml_bytes(&Device::new(
        "VGEN".into(),
        vec![&hid, &cid, &ddn, &addr_method],
    ))
}
