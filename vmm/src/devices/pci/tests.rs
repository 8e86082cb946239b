//! Tier-1 tests of the root bus with a stand-in device: configuration mechanism #1 and
//! ECAM decoding, slots, the BAR window's routing and its change events, malformed
//! accesses. The virtio-pci tests (`virtio::pci::tests`) enumerate a real device.

use std::sync::{Arc, Mutex};

use super::config_space::{ConfigSpace, PciHeader, BAR0, COMMAND, COMMAND_MEMORY};
use super::*;
use crate::devices::bus::BusDevice;

/// A function with one 8 KiB BAR whose bytes read as their offset's low byte, and which
/// records writes.
struct Fake {
    config: ConfigSpace,
    writes: Vec<(u8, u64, Vec<u8>)>,
}

impl Fake {
    fn new(device_id: u16) -> Arc<Mutex<Fake>> {
        let mut config = ConfigSpace::new(&PciHeader {
            vendor_id: 0x1234,
            device_id,
            revision_id: 0,
            class: 0xff,
            subclass: 0,
            prog_if: 0,
            subsystem_vendor_id: 0,
            subsystem_id: 0,
            interrupt_pin: 1,
        });
        config.add_memory_bar(0, 0x2000).unwrap();
        Arc::new(Mutex::new(Fake {
            config,
            writes: vec![],
        }))
    }
}

impl PciDevice for Fake {
    fn config_read(&mut self, offset: u16, data: &mut [u8]) {
        self.config.read(usize::from(offset), data);
    }
    fn config_write(&mut self, offset: u16, data: &[u8]) {
        self.config.write(usize::from(offset), data);
    }
    fn bars(&self) -> Vec<BarRange> {
        self.config.bar_ranges()
    }
    fn bar_read(&mut self, _bar: u8, offset: u64, data: &mut [u8]) {
        data.fill(offset as u8);
    }
    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        self.writes.push((bar, offset, data.to_vec()));
    }
}

fn cf8(io: &mut PciConfigIo, dev: u8, reg: u8) {
    let addr = 1u32 << 31 | u32::from(dev) << 11 | u32::from(reg & 0xfc);
    io.write(0, &addr.to_le_bytes());
}

fn io_read(io: &mut PciConfigIo, dev: u8, reg: u8, len: usize) -> u32 {
    cf8(io, dev, reg);
    let mut b = [0u8; 4];
    io.read(4 + u64::from(reg & 3), &mut b[..len]);
    u32::from_le_bytes(b)
}

fn ecam_read(ecam: &mut PciConfigMmio, dev: u8, func: u8, reg: u16, len: usize) -> u32 {
    let mut b = [0u8; 4];
    let off = u64::from(dev) << 15 | u64::from(func) << 12 | u64::from(reg);
    ecam.read(off, &mut b[..len]);
    u32::from_le_bytes(b)
}

#[test]
fn bdf_names_slots_as_kata_expects() {
    assert_eq!(PciRoot::bdf(0), "0000:00:00.0");
    assert_eq!(PciRoot::bdf(3), "0000:00:03.0");
    assert_eq!(PciRoot::bdf(0x1f), "0000:00:1f.0");
}

#[test]
fn slots_are_handed_out_and_taken_back() {
    let root = PciRoot::new();
    assert_eq!(root.occupied(), vec![0]);
    assert_eq!(root.add(None, Fake::new(1)).unwrap(), 1);
    assert_eq!(root.add(Some(7), Fake::new(2)).unwrap(), 7);
    assert_eq!(root.add(None, Fake::new(3)).unwrap(), 2);
    assert!(matches!(
        root.add(Some(7), Fake::new(4)),
        Err(PciError::SlotInUse(7))
    ));
    assert!(matches!(
        root.add(Some(0), Fake::new(4)),
        Err(PciError::InvalidSlot(0))
    ));
    assert!(matches!(
        root.add(Some(32), Fake::new(4)),
        Err(PciError::InvalidSlot(32))
    ));
    assert!(matches!(root.remove(0), Err(PciError::InvalidSlot(0))));
    assert!(matches!(root.remove(9), Err(PciError::SlotEmpty(9))));
    root.remove(1).unwrap();
    assert_eq!(root.occupied(), vec![0, 2, 7]);
    assert_eq!(root.add(None, Fake::new(5)).unwrap(), 1, "lowest free slot");
    for _ in 0..28 {
        root.add(None, Fake::new(6)).unwrap();
    }
    assert!(matches!(
        root.add(None, Fake::new(6)),
        Err(PciError::NoFreeSlot)
    ));
}

#[test]
fn both_config_mechanisms_reach_the_same_functions() {
    let root = PciRoot::new();
    root.add(Some(3), Fake::new(0xbeef)).unwrap();
    let mut io = root.config_io();
    let mut ecam = root.ecam();
    for dev in 0..SLOTS {
        let expected = match dev {
            0 => 0x29c0_8086,
            3 => 0xbeef_1234,
            _ => 0xffff_ffff,
        };
        assert_eq!(io_read(&mut io, dev, 0, 4), expected, "cf8 {dev}");
        assert_eq!(ecam_read(&mut ecam, dev, 0, 0, 4), expected, "ecam {dev}");
    }
    // Byte and word accesses through the data window.
    assert_eq!(io_read(&mut io, 3, 2, 2), 0xbeef);
    assert_eq!(io_read(&mut io, 3, 3, 1), 0xbe);
    assert_eq!(io_read(&mut io, 0, 0x0b, 1), 0x06, "host bridge class");
    assert_eq!(io_read(&mut io, 0, 0x0a, 1), 0x00, "host bridge subclass");
    // Other functions and buses are empty.
    assert_eq!(ecam_read(&mut ecam, 3, 1, 0, 4), 0xffff_ffff);
    let mut b = [0u8; 4];
    ecam.read(1 << 20, &mut b);
    assert_eq!(b, [0xff; 4], "bus 1");
    let addr = 1u32 << 31 | 1 << 16 | 3 << 11;
    io.write(0, &addr.to_le_bytes());
    io.read(4, &mut b);
    assert_eq!(b, [0xff; 4], "bus 1 through cf8");
    // Without the enable bit nothing is reached; the address register reads back.
    io.write(0, &(3u32 << 11).to_le_bytes());
    io.read(4, &mut b);
    assert_eq!(b, [0xff; 4]);
    io.read(0, &mut b);
    assert_eq!(u32::from_le_bytes(b), 3 << 11);
    // Writes go through both ways.
    cf8(&mut io, 3, 0x3c);
    io.write(4, &[0x0a]);
    assert_eq!(ecam_read(&mut ecam, 3, 0, 0x3c, 1), 0x0a);
}

#[test]
fn malformed_config_accesses_read_all_ones_and_change_nothing() {
    let root = PciRoot::new();
    root.add(Some(1), Fake::new(0x1111)).unwrap();
    let mut io = root.config_io();
    let mut ecam = root.ecam();
    let before: Vec<u32> = (0..64)
        .map(|r| ecam_read(&mut ecam, 1, 0, r * 4, 4))
        .collect();
    for len in 0..=9usize {
        for off in [
            0u64,
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8,
            0xffe,
            0xfff,
            0x1000,
            u64::MAX - 2,
        ] {
            let mut b = vec![0u8; len];
            let ecam_off = (1u64 << 15).saturating_add(off);
            ecam.read(ecam_off, &mut b);
            if len != 0 && !valid_config_access(off, len) {
                assert!(b.iter().all(|&x| x == 0xff), "ecam {off:#x} {len}");
            }
            ecam.write(ecam_off, &vec![0xa5; len]);
            cf8(&mut io, 1, 0);
            io.read(off, &mut b);
            io.write(off.max(1), &vec![0xa5; len]);
        }
    }
    // Unaligned or crossing the data window's dword.
    cf8(&mut io, 1, 0);
    let mut b = [0u8; 2];
    io.read(7, &mut b);
    assert_eq!(b, [0xff; 2]);
    io.read(5, &mut b);
    assert_eq!(b, [0xff; 2]);
    // Byte accesses at 0xcf8..0xcfb are not the address register.
    io.write(1, &[0]);
    let mut a = [0u8; 1];
    io.read(0, &mut a);
    assert_eq!(a, [0xff]);
    // Only writable bits changed (interrupt line, cache line size, command, BAR).
    let after: Vec<u32> = (0..64)
        .map(|r| ecam_read(&mut ecam, 1, 0, r * 4, 4))
        .collect();
    for (r, (b, a)) in before.iter().zip(&after).enumerate() {
        if ![1usize, 3, 4, 15].contains(&r) {
            assert_eq!(b, a, "dword {r}");
        }
    }
    assert_eq!(after[0], 0x1111_1234);
}

#[test]
fn the_bar_window_routes_decoded_bars_and_reports_changes() {
    let root = PciRoot::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    root.set_bar_observer(Arc::new(move |e| log.lock().unwrap().push(e)));
    let a = Fake::new(1);
    let b = Fake::new(2);
    root.add(Some(1), a.clone()).unwrap();
    root.add(Some(2), b.clone()).unwrap();
    let mut ecam = root.ecam();
    let mut window = root.bar_window();
    let program = |ecam: &mut PciConfigMmio, slot: u64, base: u32, cmd: u16| {
        ecam.write(slot << 15 | BAR0 as u64, &base.to_le_bytes());
        ecam.write(slot << 15 | COMMAND as u64, &cmd.to_le_bytes());
    };
    let mut d = [0u8; 4];
    window.read(0x10, &mut d);
    assert_eq!(d, [0xff; 4], "nothing decodes yet");
    program(&mut ecam, 1, 0xd000_0000, COMMAND_MEMORY);
    program(&mut ecam, 2, 0xd000_4000, COMMAND_MEMORY);
    window.read(0x10, &mut d);
    assert_eq!(d, [0x10; 4]);
    window.write(0x4020, &[1, 2]);
    assert_eq!(b.lock().unwrap().writes, vec![(0, 0x20, vec![1, 2])]);
    // Straddling the end of a BAR reaches nothing.
    window.read(0x1ffe, &mut d);
    assert_eq!(d, [0xff; 4]);
    let slot = |e: &BarEvent| match e {
        BarEvent::Mapped { slot, .. } | BarEvent::Unmapped { slot, .. } => *slot,
    };
    let seen: Vec<(u8, bool)> = events
        .lock()
        .unwrap()
        .drain(..)
        .map(|e| (slot(&e), matches!(e, BarEvent::Mapped { .. })))
        .collect();
    assert_eq!(seen, vec![(1, true), (2, true)]);
    // A BAR overlapping another, or outside the aperture, is not routed.
    program(&mut ecam, 2, 0xd000_0000, COMMAND_MEMORY);
    window.read(0x4000, &mut d);
    assert_eq!(d, [0xff; 4]);
    window.read(0x0, &mut d);
    assert_eq!(d, [0x00; 4], "slot 1 keeps its range");
    program(&mut ecam, 2, 0xe000_0000, COMMAND_MEMORY);
    // Moving a BAR: unmapped at the old place, mapped at the new.
    events.lock().unwrap().clear();
    program(&mut ecam, 1, 0xd010_0000, COMMAND_MEMORY);
    let ev = events.lock().unwrap().clone();
    assert_eq!(
        ev,
        vec![
            BarEvent::Unmapped {
                slot: 1,
                range: BarRange {
                    bar: 0,
                    base: 0xd000_0000,
                    size: 0x2000
                }
            },
            BarEvent::Mapped {
                slot: 1,
                range: BarRange {
                    bar: 0,
                    base: 0xd010_0000,
                    size: 0x2000
                }
            },
        ]
    );
    window.read(0x10_0004, &mut d);
    assert_eq!(d, [0x04; 4]);
    // Memory decoding off, then the device unplugged: gone from the window.
    program(&mut ecam, 1, 0xd010_0000, 0);
    window.read(0x10_0004, &mut d);
    assert_eq!(d, [0xff; 4]);
    program(&mut ecam, 1, 0xd010_0000, COMMAND_MEMORY);
    events.lock().unwrap().clear();
    root.remove(1).unwrap();
    window.read(0x10_0004, &mut d);
    assert_eq!(d, [0xff; 4]);
    assert!(matches!(
        events.lock().unwrap()[..],
        [BarEvent::Unmapped { slot: 1, .. }]
    ));
    // A device plugged in with its BAR already decoding is routed at once.
    let c = Fake::new(3);
    {
        let mut f = c.lock().unwrap();
        f.config.program_bar(0, 0xd020_0000).unwrap();
        f.config.write(COMMAND, &COMMAND_MEMORY.to_le_bytes());
    }
    root.add(Some(9), c).unwrap();
    window.read(0x20_0008, &mut d);
    assert_eq!(d, [0x08; 4]);
    // Past the aperture's end.
    window.read(BAR_APERTURE_SIZE + 8, &mut d);
    assert_eq!(d, [0xff; 4]);
    window.read(u64::MAX - 1, &mut d);
    assert_eq!(d, [0xff; 4]);
}
