//! Tier-1 tests: no guest. A host-side driver brings the device up through the transport's
//! registers, posts chains and checks the used ring, the bytes written and the interrupts.

use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::*;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::testing::{Desc, DriverQueue, MmioDriver};
use crate::devices::virtio::VIRTIO_F_VERSION_1;
use crate::vstate::memory::{create_guest_memory, GuestMemoryMmap};

const MEM: u64 = 4 << 20;
const BUF: u64 = 0x100000;

struct Bed {
    mem: GuestMemoryMmap,
    transport: MmioTransport,
    device: Arc<Mutex<Rng>>,
    queue: DriverQueue,
    irq: EventFd,
}

impl Bed {
    fn new(src: &std::path::Path) -> Bed {
        let mem = create_guest_memory(MEM).unwrap();
        let device = Arc::new(Mutex::new(Rng::new(src).unwrap()));
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let transport =
            MmioTransport::new(mem.clone(), device.clone(), irq.try_clone().unwrap()).unwrap();
        let mut bed = Bed {
            mem,
            transport,
            device,
            queue: DriverQueue::new(GuestAddress(0x10000), 16),
            irq,
        };
        let q = DriverQueue::new(GuestAddress(0x10000), 16);
        assert_eq!(
            bed.driver().bring_up(u64::MAX, &q),
            Some(VIRTIO_F_VERSION_1)
        );
        bed
    }

    fn driver(&mut self) -> MmioDriver<'_, MmioTransport> {
        MmioDriver {
            dev: &mut self.transport,
        }
    }

    /// Posts `chain`, has the device answer (as its event handler would) and returns the
    /// used entries.
    fn request(&mut self, chain: &[Desc]) -> Vec<(u32, u32)> {
        self.queue.add_chain(&self.mem, chain).unwrap();
        self.device.lock().unwrap().process_queue();
        self.queue.take_used(&self.mem).unwrap()
    }
}

#[test]
fn buffers_are_filled_from_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("entropy");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    std::fs::write(&src, &bytes).unwrap();
    let mut bed = Bed::new(&src);
    // Two buffers in one chain: filled in order with the source's first bytes.
    let used = bed.request(&[Desc::writable(BUF, 3), Desc::writable(BUF + 0x1000, 5)]);
    assert_eq!(used, vec![(0, 8)]);
    assert!(bed.irq.read().is_ok());
    let mut a = [0u8; 3];
    let mut b = [0u8; 5];
    bed.mem.read_slice(&mut a, GuestAddress(BUF)).unwrap();
    bed.mem
        .read_slice(&mut b, GuestAddress(BUF + 0x1000))
        .unwrap();
    assert_eq!(a, [0, 1, 2]);
    assert_eq!(b, [3, 4, 5, 6, 7]);
    // The next request continues where the source is.
    let used = bed.request(&[Desc::writable(BUF, 2)]);
    assert_eq!(used[0].1, 2);
    bed.mem.read_slice(&mut a[..2], GuestAddress(BUF)).unwrap();
    assert_eq!(&a[..2], &[8, 9]);
    // A huge buffer gets at most MAX_REQUEST bytes.
    let used = bed.request(&[Desc::writable(BUF, 1 << 20)]);
    assert_eq!(used[0].1 as usize, MAX_REQUEST);
    let c = bed.device.lock().unwrap().counters();
    assert_eq!(
        (c.requests, c.bytes, c.dropped),
        (3, 10 + MAX_REQUEST as u64, 0)
    );
}

#[test]
fn urandom_fills_and_malformed_chains_get_nothing() {
    let mut bed = Bed::new(std::path::Path::new("/dev/urandom"));
    bed.mem.write_slice(&[0u8; 64], GuestAddress(BUF)).unwrap();
    assert_eq!(bed.request(&[Desc::writable(BUF, 64)]), vec![(0, 64)]);
    let mut got = [0u8; 64];
    bed.mem.read_slice(&mut got, GuestAddress(BUF)).unwrap();
    assert!(
        got.iter().any(|&b| b != 0),
        "64 random bytes are not all zero"
    );
    // Device-readable buffer, outside memory: returned with length 0.
    assert_eq!(bed.request(&[Desc::readable(BUF, 16)])[0].1, 0);
    assert_eq!(bed.request(&[Desc::writable(MEM - 8, 16)])[0].1, 0);
    assert_eq!(bed.device.lock().unwrap().counters().dropped, 2);
    // The device keeps working.
    assert_eq!(bed.request(&[Desc::writable(BUF, 16)])[0].1, 16);
}

#[test]
fn a_missing_source_is_a_clear_error() {
    let e = Rng::new(std::path::Path::new("/nonexistent/entropy"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("/nonexistent/entropy"), "{e}");
}
