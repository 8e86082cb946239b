//! A virtio-blk device on its transport with a host-side driver in front of it: guest
//! memory, a split virtqueue the driver owns, and helpers that build request chains. The
//! unit tests, the remote-swap integration test, the benchmark and the fuzz target use it.

use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::io::DiskBackend;
use super::{Block, BlockOptions};
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::testing::{Desc, DriverQueue, MmioDriver};
use crate::devices::virtio::VirtioDevice;
use crate::vstate::memory::{create_guest_memory, GuestMemoryMmap};

/// Where the driver queue lives.
pub const QUEUE_BASE: u64 = 0x10000;
/// The request header the helpers write.
pub const HEADER: u64 = 0x100000;
/// The status byte the helpers use.
pub const STATUS: u64 = 0x101000;
/// Free for data buffers from here to the end of memory.
pub const DATA: u64 = 0x200000;

pub struct Testbed {
    pub mem: GuestMemoryMmap,
    pub transport: MmioTransport,
    pub block: Arc<Mutex<Block>>,
    pub queue: DriverQueue,
    /// A second handle on the transport's interrupt eventfd.
    pub irq: EventFd,
    /// Features the bring-up negotiated.
    pub features: u64,
}

impl Testbed {
    /// A device over `disk` with `mem_size` bytes of guest memory, before any driver
    /// touched it. `irq` is the eventfd the transport raises.
    pub fn unstarted(
        disk: Box<dyn DiskBackend>,
        options: BlockOptions,
        mem_size: u64,
        irq: EventFd,
    ) -> std::io::Result<Testbed> {
        let mem = create_guest_memory(mem_size).map_err(std::io::Error::other)?;
        let block = Arc::new(Mutex::new(Block::new(options, disk)?));
        let transport = MmioTransport::new(mem.clone(), block.clone(), irq.try_clone()?)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Testbed {
            mem,
            transport,
            block,
            queue: DriverQueue::new(GuestAddress(QUEUE_BASE), super::QUEUE_SIZE),
            irq,
            features: 0,
        })
    }

    /// Brings the device up with every feature it offers and a queue of `queue_size`.
    pub fn start(&mut self, queue_size: u16) -> Result<(), String> {
        let q = DriverQueue::new(GuestAddress(QUEUE_BASE), queue_size);
        self.features = self
            .driver()
            .bring_up(u64::MAX, &q)
            .ok_or("the device refused the bring-up")?;
        self.queue = q;
        Ok(())
    }

    pub fn driver(&mut self) -> MmioDriver<'_, MmioTransport> {
        MmioDriver {
            dev: &mut self.transport,
        }
    }

    /// Writes a request header of `kind` for `sector` at `at`; returns its descriptor.
    pub fn header_at(&self, at: u64, kind: u32, sector: u64) -> Desc {
        // Writes to fixed addresses inside the memory this testbed created cannot fail.
        let _ = self.mem.write_obj(kind, GuestAddress(at));
        let _ = self.mem.write_obj(0u32, GuestAddress(at + 4));
        let _ = self.mem.write_obj(sector, GuestAddress(at + 8));
        Desc::readable(at, 16)
    }

    pub fn header(&self, kind: u32, sector: u64) -> Desc {
        self.header_at(HEADER, kind, sector)
    }

    /// A status descriptor at `at`, pre-set to 0xff so an unanswered request shows.
    pub fn status_desc_at(&self, at: u64) -> Desc {
        let _ = self.mem.write_obj(0xffu8, GuestAddress(at));
        Desc::writable(at, 1)
    }

    pub fn status_desc(&self) -> Desc {
        self.status_desc_at(STATUS)
    }

    pub fn status_at(&self, at: u64) -> u8 {
        self.mem.read_obj(GuestAddress(at)).unwrap_or(0xfe)
    }

    pub fn status(&self) -> u8 {
        self.status_at(STATUS)
    }

    /// Posts `chain` and runs the device as the event loop would; returns the new used
    /// entries.
    pub fn submit(&mut self, chain: &[Desc]) -> Vec<(u32, u32)> {
        if self.queue.add_chain(&self.mem, chain).is_err() {
            return Vec::new();
        }
        self.kick()
    }

    /// Notifies queue 0 through the QueueNotify register and lets the device process it
    /// here, synchronously; returns the new used entries.
    pub fn kick(&mut self) -> Vec<(u32, u32)> {
        self.driver().notify(0);
        let mut block = self.block.lock().unwrap_or_else(|p| p.into_inner());
        // The transport forwarded the notification to the queue's eventfd; consume it as
        // the event loop would.
        let _ = block.queue_events()[0].read();
        block.process_queue();
        drop(block);
        self.queue.take_used(&self.mem).unwrap_or_default()
    }

    /// Header, optional data buffer, status; returns (status, used length), or None when
    /// the device returned no (or more than one) used entry.
    pub fn request(&mut self, kind: u32, sector: u64, data: Option<Desc>) -> Option<(u8, u32)> {
        let mut chain = vec![self.header(kind, sector)];
        chain.extend(data);
        chain.push(self.status_desc());
        match self.submit(&chain)[..] {
            [(_, len)] => Some((self.status(), len)),
            _ => None,
        }
    }
}

/// A disk in a `Vec`, for fuzzing and tests that don't want files.
pub struct MemDisk(pub Vec<u8>);

impl DiskBackend for MemDisk {
    fn capacity_sectors(&self) -> u64 {
        self.0.len() as u64 / super::SECTOR_SIZE
    }

    fn read_vectored(
        &mut self,
        offset: u64,
        bufs: &[vm_memory::VolatileSlice<'_>],
    ) -> Result<(), super::io::DiskError> {
        for (b, range) in spans(offset, bufs) {
            b.copy_from(self.0.get(range).ok_or_else(out_of_range)?);
        }
        Ok(())
    }

    fn write_vectored(
        &mut self,
        offset: u64,
        bufs: &[vm_memory::VolatileSlice<'_>],
    ) -> Result<(), super::io::DiskError> {
        for (b, range) in spans(offset, bufs) {
            b.copy_to(self.0.get_mut(range).ok_or_else(out_of_range)?);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), super::io::DiskError> {
        Ok(())
    }

    fn can_discard(&self) -> bool {
        true
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<(), super::io::DiskError> {
        let (at, n) = (offset as usize, len as usize);
        self.0.get_mut(at..at + n).ok_or_else(out_of_range)?.fill(0);
        Ok(())
    }
}

/// Each buffer with the byte range of the disk it maps to, from `offset` on.
fn spans<'a, 'm>(
    offset: u64,
    bufs: &'a [vm_memory::VolatileSlice<'m>],
) -> impl Iterator<Item = (&'a vm_memory::VolatileSlice<'m>, std::ops::Range<usize>)> {
    let mut at = offset as usize;
    bufs.iter().map(move |b| {
        let range = at..at.saturating_add(b.len());
        at = range.end;
        (b, range)
    })
}

/// The device checks ranges before calling a backend, so this is a device bug if it shows.
fn out_of_range() -> super::io::DiskError {
    super::io::DiskError::Io {
        what: "memory disk access",
        offset: 0,
        source: std::io::ErrorKind::InvalidInput.into(),
    }
}

/// Guest memory the fuzz input's descriptors point into (plus a little beyond it, so
/// out-of-range addresses are common too).
pub const FUZZ_MEM_SIZE: u64 = 4 << 20;

/// A started testbed over a 1 MiB [`MemDisk`], as the fuzz target and its unit-test twin
/// use it.
pub fn fuzz_testbed() -> Testbed {
    let irq = match EventFd::new(libc::EFD_NONBLOCK) {
        Ok(e) => e,
        Err(e) => panic!("eventfd: {e}"),
    };
    let disk = Box::new(MemDisk(vec![0u8; 1 << 20]));
    let mut bed = match Testbed::unstarted(disk, BlockOptions::default(), FUZZ_MEM_SIZE, irq) {
        Ok(b) => b,
        Err(e) => panic!("testbed: {e}"),
    };
    if let Err(e) = bed.start(16) {
        panic!("bring-up: {e}");
    }
    bed
}

/// Interprets `data` as a hostile driver would write it: 16 raw descriptors (addresses,
/// lengths and next indices folded toward guest memory and the table unless their top bit is
/// set), a request header and
/// payload bytes at [`HEADER`], then up to 16 available-ring heads (folded into the table
/// unless their top bit is set); kicks the device and
/// checks what a driver can rely on whatever it wrote: no more used entries than chains,
/// and used lengths no larger than the chain could hold. Returns the used entries.
pub fn run_fuzz_input(bed: &mut Testbed, data: &[u8]) -> Vec<(u32, u32)> {
    let mut input = data.iter().copied();
    let mut take = |n: usize| -> Vec<u8> { (0..n).map(|_| input.next().unwrap_or(0)).collect() };
    for i in 0..bed.queue.size {
        let raw = take(16);
        let mut le = [0u8; 8];
        le.copy_from_slice(&raw[0..8]);
        let addr = u64::from_le_bytes(le);
        let addr = if addr >> 63 == 1 {
            addr
        } else {
            addr % (FUZZ_MEM_SIZE + 0x2000)
        };
        let len = u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]);
        let len = if len >> 31 == 1 { len } else { len % 0x4000 };
        let flags = u16::from_le_bytes([raw[12], raw[13]]);
        let next = u16::from_le_bytes([raw[14], raw[15]]);
        let next = if next >> 15 == 1 {
            next
        } else {
            next % (bed.queue.size + 2)
        };
        let d = Desc {
            addr,
            len,
            flags,
            next,
        };
        if bed.queue.write_desc(&bed.mem, i, d).is_err() {
            return Vec::new();
        }
    }
    let header = take(64);
    if bed.mem.write_slice(&header, GuestAddress(HEADER)).is_err() {
        return Vec::new();
    }
    let heads = take(1)[0] % 17;
    for _ in 0..heads {
        let h = take(2);
        let head = u16::from_le_bytes([h[0], h[1]]);
        let head = if head >> 15 == 1 {
            head
        } else {
            head % bed.queue.size
        };
        if bed.queue.publish(&bed.mem, head).is_err() {
            return Vec::new();
        }
    }
    let used = bed.kick();
    assert!(used.len() <= usize::from(heads), "{used:?}");
    for &(id, len) in &used {
        assert!(
            id < u32::from(bed.queue.size),
            "used id {id} outside the table"
        );
        // 16 descriptors of at most 2^32 - 1 bytes each, but virtio_queue stops a chain at
        // 4 GiB in total.
        assert!(u64::from(len) < 1 << 32);
    }
    used
}
