//! Block backend over slabs on two real memd processes.

mod common;

use std::sync::Arc;

use common::{client_config, page_bytes, scratch, token_file, Memd};
use revenant_remote_mem::block::{BlockBackend, BlockError, SlabBlockDevice, SECTOR_SIZE};
use revenant_remote_mem::client::MemClient;

#[test]
fn sectors_round_trip_across_slabs_and_discard_zeroes() {
    let dir = scratch("block");
    let tok = token_file(&dir);
    let (m1, m2) = (
        Memd::start(&tok, "64M", "1M", &[]),
        Memd::start(&tok, "64M", "1M", &[]),
    );
    let client = Arc::new(MemClient::connect(&client_config(&[&m1, &m2], None)).unwrap());
    let dev = SlabBlockDevice::new(Arc::clone(&client), 8 << 20);
    assert_eq!(dev.capacity_sectors(), (8 << 20) / SECTOR_SIZE);

    // Never-written sectors read as zeros.
    let mut buf = vec![0xFFu8; 4096];
    dev.read(100, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));

    // 3 MiB starting 7 sectors before the first slab boundary: spans 4 slabs
    // and more than one request's worth of bytes.
    let start = (1 << 20) / SECTOR_SIZE - 7;
    let mut data = vec![0u8; 3 << 20];
    page_bytes(77, 0, &mut data);
    dev.write(start, &data).unwrap();
    dev.flush().unwrap();
    let mut back = vec![0u8; data.len()];
    dev.read(start, &mut back).unwrap();
    assert!(back == data, "multi-slab write did not read back");
    // A small unaligned-to-page (but sector-aligned) read inside.
    let mut small = vec![0u8; 3 * SECTOR_SIZE as usize];
    dev.read(start + 5, &mut small).unwrap();
    assert_eq!(small[..], data[5 * 512..8 * 512]);

    // Discard: a partial range becomes zeros, a whole slab is given back.
    let used_before: u64 = [&m1, &m2]
        .iter()
        .map(|m| m.conn().stat().unwrap()["used"].as_u64().unwrap())
        .sum();
    dev.discard(start + 1, 2).unwrap();
    dev.discard((2 << 20) / SECTOR_SIZE, (1 << 20) / SECTOR_SIZE)
        .unwrap();
    let used_after: u64 = [&m1, &m2]
        .iter()
        .map(|m| m.conn().stat().unwrap()["used"].as_u64().unwrap())
        .sum();
    assert_eq!(
        used_before - used_after,
        2 << 20,
        "one slab x two replicas freed"
    );
    dev.read(start, &mut back).unwrap();
    let mut want = data.clone();
    want[512..3 * 512].fill(0);
    let whole = ((2 << 20) - start * SECTOR_SIZE) as usize;
    want[whole..whole + (1 << 20)].fill(0);
    assert!(
        back == want,
        "discarded ranges must read as zeros, the rest unchanged"
    );

    // Bad requests are errors, not panics.
    let end = dev.capacity_sectors();
    assert!(matches!(
        dev.read(end - 1, &mut vec![0; 1024]),
        Err(BlockError::OutOfRange { .. })
    ));
    assert!(matches!(
        dev.write(0, &[0; 100]),
        Err(BlockError::Unaligned(100))
    ));
    assert!(matches!(
        dev.discard(u64::MAX, 2),
        Err(BlockError::OutOfRange { .. })
    ));
}
