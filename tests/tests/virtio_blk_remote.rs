//! The explicit swap device: virtio-blk over remote memory in a real `revenant-memd`,
//! driven through its virtio-mmio registers and queue by a host-side driver (no guest).

use revenant_tests::memd::{token_file, Memd};
use revenant_tests::virtio_blk::remote_disk;
use revenant_vmm::devices::virtio::blk::testbed::{Testbed, DATA};
use revenant_vmm::devices::virtio::blk::BlockOptions;
use revenant_vmm::devices::virtio::testing::Desc;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT,
};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

const OK: u8 = VIRTIO_BLK_S_OK as u8;
const DISK_SIZE: u64 = 128 << 20;
/// Beyond the first 64 MiB slab, so requests cross a slab boundary.
const SECTOR: u64 = (64 << 20) / 512 - 8;

#[test]
fn remote_swap_round_trips_through_memd() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let memd = Memd::start(&token);
    let disk = remote_disk(&memd, &token, DISK_SIZE);
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let options = BlockOptions {
        id: "swap0".into(),
        ..Default::default()
    };
    let mut bed = Testbed::unstarted(Box::new(disk), options, 32 << 20, irq).unwrap();
    bed.start(128).unwrap();
    let mut cap = [0u8; 8];
    bed.driver().read_config(0, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), DISK_SIZE / 512);

    // Never written: zeros, without the data in memd.
    let read = |bed: &mut Testbed, len: u32| {
        bed.mem
            .write_slice(&vec![0xee; len as usize], GuestAddress(DATA + (8 << 20)))
            .unwrap();
        let r = bed.request(
            VIRTIO_BLK_T_IN,
            SECTOR,
            Some(Desc::writable(DATA + (8 << 20), len)),
        );
        let mut got = vec![0u8; len as usize];
        bed.mem
            .read_slice(&mut got, GuestAddress(DATA + (8 << 20)))
            .unwrap();
        (r, got)
    };
    let (r, got) = read(&mut bed, 8192);
    assert_eq!(r, Some((OK, 8193)));
    assert!(got.iter().all(|b| *b == 0));

    // 2 MiB written across the slab boundary (bigger than one bounce-buffer load).
    let data: Vec<u8> = (0..2 << 20).map(|i: u32| (i % 251) as u8).collect();
    bed.mem.write_slice(&data, GuestAddress(DATA)).unwrap();
    let r = bed.request(
        VIRTIO_BLK_T_OUT,
        SECTOR,
        Some(Desc::readable(DATA, data.len() as u32)),
    );
    assert_eq!(r, Some((OK, 1)));
    let (r, got) = read(&mut bed, data.len() as u32);
    assert_eq!(r, Some((OK, data.len() as u32 + 1)));
    assert!(got == data, "data read back differs from what was written");

    assert_eq!(bed.request(VIRTIO_BLK_T_FLUSH, 0, None), Some((OK, 1)));

    // Discard the first 4 KiB: zeros there, the rest intact.
    bed.mem.write_obj(SECTOR, GuestAddress(DATA)).unwrap();
    bed.mem.write_obj(8u32, GuestAddress(DATA + 8)).unwrap();
    bed.mem.write_obj(0u32, GuestAddress(DATA + 12)).unwrap();
    let r = bed.request(VIRTIO_BLK_T_DISCARD, 0, Some(Desc::readable(DATA, 16)));
    assert_eq!(r, Some((OK, 1)));
    let (r, got) = read(&mut bed, 8192);
    assert_eq!(r, Some((OK, 8193)));
    assert!(got[..4096].iter().all(|b| *b == 0));
    assert_eq!(got[4096..], data[4096..8192]);

    // Past the end of the device.
    let r = bed.request(
        VIRTIO_BLK_T_IN,
        DISK_SIZE / 512,
        Some(Desc::writable(DATA, 512)),
    );
    assert_eq!(r, Some((VIRTIO_BLK_S_IOERR as u8, 1)));

    // memd gone: the request fails with IOERR instead of hanging or panicking.
    drop(memd);
    bed.mem
        .write_slice(&data[..4096], GuestAddress(DATA))
        .unwrap();
    let r = bed.request(VIRTIO_BLK_T_OUT, 0, Some(Desc::readable(DATA, 4096)));
    assert_eq!(r, Some((VIRTIO_BLK_S_IOERR as u8, 1)));
}
