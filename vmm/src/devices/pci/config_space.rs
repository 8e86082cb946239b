//! A type-0 configuration header (PCI Local Bus 3.0, 6.1) with its capability list.
//!
//! Every byte has a mask of the bits the guest may change; everything else is read-only, so a
//! guest write can never change a device's identity, its capability list or a BAR's size.
//! The BAR sizing protocol falls out of the masks: a BAR's address bits below its size are
//! read-only zero, so after the guest writes all ones it reads back the size mask. BARs are
//! 32-bit, non-prefetchable memory BARs: everything this VMM places sits below 4 GiB, in
//! [`super::BAR_APERTURE_START`].

use super::{BarRange, PciError, CONFIG_SPACE_SIZE};

pub const VENDOR_ID: usize = 0x00;
pub const DEVICE_ID: usize = 0x02;
pub const COMMAND: usize = 0x04;
pub const STATUS: usize = 0x06;
pub const REVISION_ID: usize = 0x08;
pub const CLASS_CODE: usize = 0x09;
pub const CACHE_LINE_SIZE: usize = 0x0c;
pub const HEADER_TYPE: usize = 0x0e;
pub const BAR0: usize = 0x10;
pub const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
pub const SUBSYSTEM_ID: usize = 0x2e;
pub const CAPABILITIES_POINTER: usize = 0x34;
pub const INTERRUPT_LINE: usize = 0x3c;
pub const INTERRUPT_PIN: usize = 0x3d;

pub const COMMAND_MEMORY: u16 = 1 << 1;
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
pub const COMMAND_PARITY: u16 = 1 << 6;
pub const COMMAND_SERR: u16 = 1 << 8;
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status: the function asserts INTx (PCI 3.0, 6.2.3).
pub const STATUS_INTERRUPT: u16 = 1 << 3;
/// Status: the capability list at 0x34 is valid.
pub const STATUS_CAPABILITIES: u16 = 1 << 4;

/// Command bits the guest may set. No I/O space bit: no device here has an I/O BAR.
const WRITABLE_COMMAND: u16 =
    COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_PARITY | COMMAND_SERR | COMMAND_INTX_DISABLE;
/// Capabilities start right after the 64-byte header.
const FIRST_CAPABILITY: usize = 0x40;
pub const NUM_BARS: usize = 6;
/// Smallest memory BAR: a page, so no two devices' registers share a page (KVM maps and
/// traps at page granularity).
pub const MIN_BAR_SIZE: u64 = 4096;
/// Low bits of a memory BAR: type (32-bit, non-prefetchable = 0), read-only.
const BAR_FLAG_BITS: u32 = 0xf;

/// The read-only identity of a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciHeader {
    pub vendor_id: u16,
    pub device_id: u16,
    pub revision_id: u8,
    /// Base class, subclass, programming interface.
    pub class: u8,
    pub subclass: u8,
    pub prog_if: u8,
    pub subsystem_vendor_id: u16,
    pub subsystem_id: u16,
    /// 0 for none, 1 for INTA#.
    pub interrupt_pin: u8,
}

/// 256 bytes of configuration space and the bits of each the guest may write.
#[derive(Clone)]
pub struct ConfigSpace {
    bytes: [u8; CONFIG_SPACE_SIZE],
    writable: [u8; CONFIG_SPACE_SIZE],
    bar_sizes: [u64; NUM_BARS],
    next_capability: usize,
    last_capability: Option<usize>,
}

impl ConfigSpace {
    pub fn new(h: &PciHeader) -> Self {
        let mut c = ConfigSpace {
            bytes: [0; CONFIG_SPACE_SIZE],
            writable: [0; CONFIG_SPACE_SIZE],
            bar_sizes: [0; NUM_BARS],
            next_capability: FIRST_CAPABILITY,
            last_capability: None,
        };
        c.put(VENDOR_ID, &h.vendor_id.to_le_bytes());
        c.put(DEVICE_ID, &h.device_id.to_le_bytes());
        c.put(
            REVISION_ID,
            &[h.revision_id, h.prog_if, h.subclass, h.class],
        );
        // Header type 0, single function: Linux then scans no other function of the slot.
        c.put(HEADER_TYPE, &[0]);
        c.put(SUBSYSTEM_VENDOR_ID, &h.subsystem_vendor_id.to_le_bytes());
        c.put(SUBSYSTEM_ID, &h.subsystem_id.to_le_bytes());
        c.put(INTERRUPT_PIN, &[h.interrupt_pin]);
        c.allow(COMMAND, &WRITABLE_COMMAND.to_le_bytes());
        // Cache line size and interrupt line are scratch registers software writes and
        // reads back; nothing here acts on them.
        c.allow(CACHE_LINE_SIZE, &[0xff]);
        c.allow(INTERRUPT_LINE, &[0xff]);
        c
    }

    fn put(&mut self, offset: usize, data: &[u8]) {
        self.bytes[offset..offset + data.len()].copy_from_slice(data);
    }

    fn allow(&mut self, offset: usize, mask: &[u8]) {
        self.writable[offset..offset + mask.len()].copy_from_slice(mask);
    }

    /// Declares BAR `index` as a 32-bit memory BAR of `size` bytes (a power of two, at
    /// least [`MIN_BAR_SIZE`]), unprogrammed.
    pub fn add_memory_bar(&mut self, index: usize, size: u64) -> Result<(), PciError> {
        if index >= NUM_BARS {
            return Err(PciError::Bar {
                index,
                reason: "there are 6 BARs",
            });
        }
        if !size.is_power_of_two() || !(MIN_BAR_SIZE..=1 << 31).contains(&size) {
            return Err(PciError::Bar {
                index,
                reason: "size is not a power of two between 4 KiB and 2 GiB",
            });
        }
        self.bar_sizes[index] = size;
        let mask = !(size as u32 - 1) & !BAR_FLAG_BITS;
        let at = BAR0 + 4 * index;
        self.put(at, &0u32.to_le_bytes());
        self.allow(at, &mask.to_le_bytes());
        Ok(())
    }

    /// Places BAR `index` at `base` as firmware would before the guest runs (the guest may
    /// move it later). `base` must be aligned to the BAR's size and below 4 GiB.
    pub fn program_bar(&mut self, index: usize, base: u64) -> Result<(), PciError> {
        let size = self.bar_sizes.get(index).copied().unwrap_or(0);
        if size == 0 {
            return Err(PciError::Bar {
                index,
                reason: "no such BAR",
            });
        }
        let Ok(base32) = u32::try_from(base) else {
            return Err(PciError::Bar {
                index,
                reason: "a 32-bit BAR must lie below 4 GiB",
            });
        };
        if base % size != 0 || base + size > 1 << 32 {
            return Err(PciError::Bar {
                index,
                reason: "base is not aligned to the BAR's size",
            });
        }
        self.put(BAR0 + 4 * index, &base32.to_le_bytes());
        Ok(())
    }

    /// Size of BAR `index`, 0 if the function has none.
    pub fn bar_size(&self, index: usize) -> u64 {
        self.bar_sizes.get(index).copied().unwrap_or(0)
    }

    /// BAR `index`'s programmed address (whether or not memory decoding is on).
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        (self.bar_size(index) != 0)
            .then(|| u64::from(self.read_u32(BAR0 + 4 * index) & !BAR_FLAG_BITS))
    }

    /// The BARs the function decodes: memory space enabled and an address programmed.
    pub fn bar_ranges(&self) -> Vec<BarRange> {
        if self.command() & COMMAND_MEMORY == 0 {
            return Vec::new();
        }
        (0..NUM_BARS)
            .filter_map(|i| {
                let base = self.bar_address(i).filter(|&b| b != 0)?;
                Some(BarRange {
                    bar: i as u8,
                    base,
                    size: self.bar_sizes[i],
                })
            })
            .collect()
    }

    /// Appends a capability: `id`, then the list pointer, then `body`; `writable` (at most
    /// as long as `body`) says which of the body's bits the guest may change. Returns the
    /// capability's offset.
    pub fn add_capability(
        &mut self,
        id: u8,
        body: &[u8],
        writable: &[u8],
    ) -> Result<usize, PciError> {
        let len = 2 + body.len();
        let start = self.next_capability;
        if start + len > CONFIG_SPACE_SIZE || writable.len() > body.len() {
            return Err(PciError::CapabilitySpace { len });
        }
        self.put(start, &[id, 0]);
        self.put(start + 2, body);
        self.allow(start + 2, writable);
        match self.last_capability {
            Some(last) => self.put(last + 1, &[start as u8]),
            None => self.put(CAPABILITIES_POINTER, &[start as u8]),
        }
        let status = self.read_u16(STATUS) | STATUS_CAPABILITIES;
        self.put(STATUS, &status.to_le_bytes());
        self.last_capability = Some(start);
        // Capabilities are dword aligned (the pointer's low two bits are reserved).
        self.next_capability = (start + len).next_multiple_of(4);
        Ok(start)
    }

    /// Reads `data.len()` bytes at `offset`; bytes past the 256 read as zero.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i)
                .and_then(|at| self.bytes.get(at))
                .copied()
                .unwrap_or(0);
        }
    }

    /// Writes `data` at `offset`, changing only writable bits; bytes past the 256 are
    /// dropped.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            let Some(at) = offset.checked_add(i).filter(|&a| a < CONFIG_SPACE_SIZE) else {
                return;
            };
            let mask = self.writable[at];
            self.bytes[at] = (self.bytes[at] & !mask) | (v & mask);
        }
    }

    /// Sets bytes the device itself owns (read-only to the guest): a capability field the
    /// device updates.
    pub fn set_bytes(&mut self, offset: usize, data: &[u8]) {
        if offset + data.len() <= CONFIG_SPACE_SIZE {
            self.put(offset, data);
        }
    }

    pub fn read_u16(&self, offset: usize) -> u16 {
        let mut b = [0; 2];
        self.read(offset, &mut b);
        u16::from_le_bytes(b)
    }

    pub fn read_u32(&self, offset: usize) -> u32 {
        let mut b = [0; 4];
        self.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    pub fn command(&self) -> u16 {
        self.read_u16(COMMAND)
    }

    /// The whole space, for a snapshot.
    pub fn state(&self) -> Vec<u8> {
        self.bytes.to_vec()
    }

    /// Takes back a snapshot's bytes. Only writable bits may differ from this function's
    /// own: anything else means the state belongs to another kind of device.
    pub fn restore(&mut self, saved: &[u8]) -> Result<(), PciError> {
        if saved.len() != CONFIG_SPACE_SIZE {
            return Err(PciError::State("configuration space is not 256 bytes"));
        }
        let foreign = saved
            .iter()
            .zip(self.bytes.iter().zip(&self.writable))
            .any(|(s, (b, w))| (s ^ b) & !w != 0);
        if foreign {
            return Err(PciError::State(
                "read-only configuration bits differ (another device's state)",
            ));
        }
        self.bytes.copy_from_slice(saved);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> PciHeader {
        PciHeader {
            vendor_id: 0x1af4,
            device_id: 0x1044,
            revision_id: 1,
            class: 0xff,
            subclass: 0,
            prog_if: 0,
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x40,
            interrupt_pin: 1,
        }
    }

    #[test]
    fn identity_is_read_only_and_bar_sizing_reads_the_size_mask() {
        let mut c = ConfigSpace::new(&header());
        c.add_memory_bar(0, 0x8000).unwrap();
        c.write(0, &[0xff; 4]);
        assert_eq!(c.read_u32(0), 0x1044_1af4);
        c.write(BAR0, &u32::MAX.to_le_bytes());
        assert_eq!(c.read_u32(BAR0), 0xffff_8000);
        // A BAR the device lacks stays 0 (size 0 to the guest).
        c.write(BAR0 + 4, &u32::MAX.to_le_bytes());
        assert_eq!(c.read_u32(BAR0 + 4), 0);
        c.write(BAR0, &0xd000_1234u32.to_le_bytes());
        assert_eq!(c.bar_address(0), Some(0xd000_0000));
        assert!(c.bar_ranges().is_empty(), "memory decoding is off");
        c.write(COMMAND, &(COMMAND_MEMORY | 1).to_le_bytes());
        assert_eq!(c.command(), COMMAND_MEMORY, "no I/O space bit");
        assert_eq!(
            c.bar_ranges(),
            vec![BarRange {
                bar: 0,
                base: 0xd000_0000,
                size: 0x8000
            }]
        );
        assert!(c.add_memory_bar(1, 0x3000).is_err());
        assert!(c.add_memory_bar(6, 0x1000).is_err());
        assert!(c.program_bar(0, 0xd000_4000).is_err(), "unaligned");
        assert!(c.program_bar(0, 1 << 32).is_err());
    }

    #[test]
    fn capabilities_chain_and_keep_their_pointers() {
        let mut c = ConfigSpace::new(&header());
        let a = c.add_capability(0x09, &[0xaa; 14], &[]).unwrap();
        let b = c.add_capability(0x11, &[0; 10], &[0, 0xc0]).unwrap();
        assert_eq!((a, b), (0x40, 0x50));
        assert_eq!(
            c.read_u16(STATUS) & STATUS_CAPABILITIES,
            STATUS_CAPABILITIES
        );
        assert_eq!(c.byte(CAPABILITIES_POINTER), 0x40);
        assert_eq!(c.byte(0x41), 0x50);
        assert_eq!(c.byte(0x51), 0);
        c.write(0x41, &[0x80]);
        c.write(0x52, &[0xff, 0xff]);
        assert_eq!(c.byte(0x41), 0x50);
        assert_eq!(c.read_u16(0x52), 0xc000);
        // Too big for what is left.
        assert!(c.add_capability(0x09, &[0; 200], &[]).is_err());
        assert!(c.add_capability(0x09, &[0; 2], &[0; 3]).is_err());
    }

    #[test]
    fn restore_takes_writable_bits_only() {
        let mut c = ConfigSpace::new(&header());
        c.add_memory_bar(0, 0x8000).unwrap();
        c.program_bar(0, 0xd000_0000).unwrap();
        c.write(COMMAND, &COMMAND_MEMORY.to_le_bytes());
        let saved = c.state();
        let mut fresh = ConfigSpace::new(&header());
        fresh.add_memory_bar(0, 0x8000).unwrap();
        fresh.restore(&saved).unwrap();
        assert_eq!(fresh.bar_ranges(), c.bar_ranges());
        let mut other = saved.clone();
        other[DEVICE_ID] ^= 1;
        assert!(fresh.restore(&other).is_err());
        assert!(fresh.restore(&saved[..100]).is_err());
    }

    impl ConfigSpace {
        fn byte(&self, offset: usize) -> u8 {
            self.bytes[offset]
        }
    }
}
