//! Fuzzes virtio-blk's descriptor-chain handling end to end: the input becomes a 16-entry
//! descriptor table, a request header and payload, and available-ring heads written into
//! guest memory by a hostile driver; the device is kicked through its virtio-mmio
//! QueueNotify register and processes the queue (chain walking, request parsing, I/O on an
//! in-memory disk, used ring). Any panic, hang or out-of-bounds access is a bug;
//! `run_fuzz_input` also checks the used ring against what was posted.

#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use revenant_vmm::devices::virtio::blk::testbed::{fuzz_testbed, run_fuzz_input, Testbed};

thread_local! {
    // One device for many inputs, like a long-running guest: state carried between inputs
    // (ring positions, a half-consumed queue) is part of what is tested. Re-created every
    // 1,000 inputs so a stuck state cannot hide the rest.
    static BED: RefCell<(Testbed, u32)> = RefCell::new((fuzz_testbed(), 0));
}

fuzz_target!(|data: &[u8]| {
    BED.with(|bed| {
        let mut bed = bed.borrow_mut();
        if bed.1 == 1000 {
            *bed = (fuzz_testbed(), 0);
        }
        bed.1 += 1;
        run_fuzz_input(&mut bed.0, data);
    });
});
