//! CPU hot-plug: the `\_SB_.CPUS` container (ACPI0010) with one processor device (ACPI0007)
//! per possible vCPU, and the register block of the controller behind it.
//!
//! # Controller registers (Cloud Hypervisor's layout)
//!
//! The block is at [`platform::CPU_HOTPLUG_MMIO_BASE`] ([`platform::CPU_HOTPLUG_MMIO_LEN`]
//! bytes, MMIO). vCPU index = APIC ID = processor `_UID`.
//!
//! | offset | size | access | name | meaning |
//! |---|---|---|---|---|
//! | [`SELECT_OFFSET`] (0) | 4 | write (DWord) | `CSEL` | selects the vCPU the status byte refers to; a read may return the selection |
//! | [`STATUS_OFFSET`] (4) | 1 | read/write (Byte) | status | bits below, for the selected vCPU |
//!
//! Status bits:
//! - bit 0 [`STATUS_ENABLED`] (`CPEN`, read): the vCPU exists and runs. `_STA` returns 0xF
//!   when set, 0 otherwise, and `_MAT` reports the Local APIC as enabled.
//! - bit 1 [`STATUS_INSERTING`] (`CINS`, read; write 1 to acknowledge): a hot-add the guest
//!   has not handled yet. The device clears it when the guest writes the bit as 1.
//! - bit 2 [`STATUS_REMOVING`] (`CRMV`, read; write 1 to acknowledge): a hot-remove the guest
//!   has not handled yet. Cleared like `CINS`.
//! - bit 3 [`STATUS_EJECT`] (`CEJ0`, write): the guest has offlined the vCPU and asks for it
//!   to be removed (`_EJ0`); the device stops it and clears `CPEN`.
//!
//! The AML writes the status byte with the other bits zero (field update rule
//! WriteAsZeroes), so acknowledging one bit never touches another. A selection at or past
//! `max_vcpus` reads as 0 and ignores writes.
//!
//! # Flow
//! Hot-add of vCPU n: the VMM creates it, sets `CPEN | CINS` for n and raises
//! [`platform::GED_EVENT_CPU_HOTPLUG`] on the GED. The GED's `_EVT` calls `\_SB_.CPUS.CSCN`,
//! which walks all vCPUs, sends `Notify (Cn, 1)` (device check) for each one inserting and
//! acknowledges it; the OS then evaluates `_STA` and `_MAT` and brings the CPU up.
//! Hot-remove: the VMM sets `CRMV`, raises the same GED event; `CSCN` sends
//! `Notify (Cn, 3)` (eject request); the OS offlines the CPU and calls `_EJ0`, which writes
//! `CEJ0`.

use acpi_tables::aml::{
    Acquire, Add, Arg, Device, Equal, Field, FieldAccessType, FieldEntry, FieldLockRule,
    FieldUpdateRule, If, Index, LessThan, Local, Method, MethodCall, Mutex, Name, Notify, OpRegion,
    OpRegionSpace, Path, Release, Return, Store, While, ONE, ZERO,
};

use acpi_tables::Aml;

use super::dsdt::{aml_bytes, Raw};
use super::madt::{LAPIC_ENABLED, LAPIC_ONLINE_CAPABLE};
use super::AcpiConfig;
use crate::platform;

/// Offset of the vCPU selection register (4 bytes).
pub const SELECT_OFFSET: u64 = 0;
/// Offset of the status byte of the selected vCPU.
pub const STATUS_OFFSET: u64 = 4;
/// Status bit: the selected vCPU exists and runs.
pub const STATUS_ENABLED: u8 = 1 << 0;
/// Status bit: hot-add pending; the guest writes 1 to acknowledge.
pub const STATUS_INSERTING: u8 = 1 << 1;
/// Status bit: hot-remove pending; the guest writes 1 to acknowledge.
pub const STATUS_REMOVING: u8 = 1 << 2;
/// Status bit (write only): the guest ejects the selected vCPU.
pub const STATUS_EJECT: u8 = 1 << 3;

/// Notify values the scan sends (ACPI 6.5, 5.6.6).
const NOTIFY_DEVICE_CHECK: u8 = 1;
const NOTIFY_EJECT_REQUEST: u8 = 3;
/// `_STA` of a present, enabled, shown and functioning device.
const STA_PRESENT: u8 = 0x0f;
/// Mutex timeout meaning "wait forever".
const WAIT_FOREVER: u16 = 0xffff;
/// Size of a MADT Processor Local APIC entry, which `_MAT` returns.
const LAPIC_ENTRY_LEN: u8 = 8;

/// Name of vCPU `id`'s processor device: `C000`..`C0FD`.
fn cpu_device_name(id: u32) -> String {
    format!("C{id:03X}")
}

/// The `CPUS` device (to be placed in `\_SB_`).
pub fn container(config: &AcpiConfig) -> Vec<u8> {
    let mut children: Vec<u8> = Vec::new();
    let hid = Name::new("_HID".into(), &"ACPI0010");
    let cid = Name::new("_CID".into(), &acpi_tables::aml::EISAName::new("PNP0A05"));
    let region = OpRegion::new(
        "PRST".into(),
        OpRegionSpace::SystemMemory,
        &platform::CPU_HOTPLUG_MMIO_BASE,
        &platform::CPU_HOTPLUG_MMIO_LEN,
    );
    let status_field = Field::new(
        "PRST".into(),
        FieldAccessType::Byte,
        FieldLockRule::NoLock,
        FieldUpdateRule::WriteAsZeroes,
        vec![
            FieldEntry::Reserved(STATUS_OFFSET as usize * 8),
            FieldEntry::Named(*b"CPEN", 1),
            FieldEntry::Named(*b"CINS", 1),
            FieldEntry::Named(*b"CRMV", 1),
            FieldEntry::Named(*b"CEJF", 1),
            FieldEntry::Reserved(4),
        ],
    );
    let select_field = Field::new(
        "PRST".into(),
        FieldAccessType::DWord,
        FieldLockRule::NoLock,
        FieldUpdateRule::Preserve,
        vec![FieldEntry::Named(*b"CSEL", 32)],
    );
    let lock = Mutex::new("CPLK".into(), 0);
    for obj in [
        &hid as &dyn acpi_tables::Aml,
        &cid,
        &region,
        &status_field,
        &select_field,
        &lock,
    ] {
        obj.to_aml_bytes(&mut children);
    }
    children.extend(status_method());
    children.extend(eject_method());
    children.extend(mat_method());
    children.extend(notify_method(config.max_vcpus));
    children.extend(scan_method(config.max_vcpus));
    for id in 0..config.max_vcpus {
        children.extend(cpu_device(id));
    }
    let children = Raw(children);
    aml_bytes(&Device::new("CPUS".into(), vec![&children]))
}

/// `CSTA (Arg0)`: `_STA` of vCPU Arg0.
fn status_method() -> Vec<u8> {
    let (csel, cpen) = (Path::new("CSEL"), Path::new("CPEN"));
    let acquire = Acquire::new("CPLK".into(), WAIT_FOREVER);
    let select = Store::new(&csel, &Arg(0));
    let zero = Store::new(&Local(0), &ZERO);
    let enabled = Equal::new(&cpen, &ONE);
    let present = Store::new(&Local(0), &STA_PRESENT);
    let if_enabled = If::new(&enabled, vec![&present]);
    let release = Release::new("CPLK".into());
    let ret = Return::new(&Local(0));
    aml_bytes(&Method::new(
        "CSTA".into(),
        1,
        false,
        vec![&acquire, &select, &zero, &if_enabled, &release, &ret],
    ))
}

/// `CEJ0 (Arg0)`: eject vCPU Arg0.
fn eject_method() -> Vec<u8> {
    let (csel, cejf) = (Path::new("CSEL"), Path::new("CEJF"));
    let acquire = Acquire::new("CPLK".into(), WAIT_FOREVER);
    let select = Store::new(&csel, &Arg(0));
    let eject = Store::new(&cejf, &ONE);
    let release = Release::new("CPLK".into());
    aml_bytes(&Method::new(
        "CEJ0".into(),
        1,
        false,
        vec![&acquire, &select, &eject, &release],
    ))
}

/// `CMAT (Arg0)`: vCPU Arg0's MADT Local APIC entry, enabled only if the controller says the
/// vCPU runs (an OS refuses to bring up a CPU whose `_MAT` entry is not enabled), online
/// capable otherwise.
fn mat_method() -> Vec<u8> {
    let entry = acpi_tables::aml::BufferData::new(vec![
        0, // type: Processor Local APIC
        LAPIC_ENTRY_LEN,
        0, // processor UID, filled below
        0, // APIC ID, filled below
        LAPIC_ONLINE_CAPABLE as u8,
        0,
        0,
        0,
    ]);
    // The entry is built in a local, not a Name, so that concurrent callers each get their
    // own copy without serializing the method.
    let entry_local = Local(1);
    let init = Store::new(&entry_local, &entry);
    let uid_at = Index::new(&ZERO, &entry_local, &2u8);
    let set_uid = Store::new(&uid_at, &Arg(0));
    let apic_at = Index::new(&ZERO, &entry_local, &3u8);
    let set_apic = Store::new(&apic_at, &Arg(0));
    let status = MethodCall::new("CSTA".into(), vec![&Arg(0)]);
    let running = Equal::new(&status, &STA_PRESENT);
    let flags_at = Index::new(&ZERO, &entry_local, &4u8);
    let set_enabled = Store::new(&flags_at, &(LAPIC_ENABLED as u8));
    let if_running = If::new(&running, vec![&set_enabled]);
    let ret = Return::new(&entry_local);
    aml_bytes(&Method::new(
        "CMAT".into(),
        1,
        false,
        vec![&init, &set_uid, &set_apic, &if_running, &ret],
    ))
}

/// `CTFY (Arg0, Arg1)`: `Notify (C<Arg0>, Arg1)`.
fn notify_method(max_vcpus: u32) -> Vec<u8> {
    let mut body = Vec::new();
    for id in 0..max_vcpus {
        let device = Path::new(&cpu_device_name(id));
        let is_cpu = Equal::new(&Arg(0), &id);
        let notify = Notify::new(&device, &Arg(1));
        If::new(&is_cpu, vec![&notify]).to_aml_bytes(&mut body);
    }
    let body = Raw(body);
    aml_bytes(&Method::new("CTFY".into(), 2, false, vec![&body]))
}

/// `CSCN`: notify the OS of every pending insert and remove, and acknowledge each.
fn scan_method(max_vcpus: u32) -> Vec<u8> {
    let (csel, cins, crmv) = (Path::new("CSEL"), Path::new("CINS"), Path::new("CRMV"));
    let acquire = Acquire::new("CPLK".into(), WAIT_FOREVER);
    let start = Store::new(&Local(0), &ZERO);
    let more = LessThan::new(&Local(0), &max_vcpus);
    let select = Store::new(&csel, &Local(0));

    let inserting = Equal::new(&cins, &ONE);
    let notify_insert = MethodCall::new("CTFY".into(), vec![&Local(0), &NOTIFY_DEVICE_CHECK]);
    let ack_insert = Store::new(&cins, &ONE);
    let if_inserting = If::new(&inserting, vec![&notify_insert, &ack_insert]);

    let removing = Equal::new(&crmv, &ONE);
    let notify_remove = MethodCall::new("CTFY".into(), vec![&Local(0), &NOTIFY_EJECT_REQUEST]);
    let ack_remove = Store::new(&crmv, &ONE);
    let if_removing = If::new(&removing, vec![&notify_remove, &ack_remove]);

    let next = Add::new(&Local(0), &Local(0), &ONE);
    let walk = While::new(&more, vec![&select, &if_inserting, &if_removing, &next]);
    let release = Release::new("CPLK".into());
    aml_bytes(&Method::new(
        "CSCN".into(),
        0,
        true,
        vec![&acquire, &start, &walk, &release],
    ))
}

/// `Device (Cnnn)` for vCPU `id`.
fn cpu_device(id: u32) -> Vec<u8> {
    let name = cpu_device_name(id);
    let hid = Name::new("_HID".into(), &"ACPI0007");
    let uid = Name::new("_UID".into(), &id);
    let status = MethodCall::new("CSTA".into(), vec![&id]);
    let ret_status = Return::new(&status);
    let sta = Method::new("_STA".into(), 0, false, vec![&ret_status]);
    let mat_call = MethodCall::new("CMAT".into(), vec![&id]);
    let ret_mat = Return::new(&mat_call);
    let mat = Method::new("_MAT".into(), 0, false, vec![&ret_mat]);
    let eject_call = MethodCall::new("CEJ0".into(), vec![&id]);
    let ej0 = Method::new("_EJ0".into(), 1, false, vec![&eject_call]);
    aml_bytes(&Device::new(
        name.as_str().into(),
        vec![&hid, &uid, &sta, &mat, &ej0],
    ))
}
