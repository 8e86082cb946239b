//! Shared harness for Revenant's integration tests: finding the real binaries, deciding
//! whether a test can run here (and saying so loudly when it can't), driving the VMM over
//! its API socket, and assembling tiny test guests.

pub mod api_client;
pub mod bench;
pub mod bins;
pub mod guests;
pub mod images;
pub mod kata;
pub mod linux_template;
pub mod linux_vm;
pub mod memd;
pub mod netns;
pub mod skip;
pub mod tap;
pub mod virtio_blk;
pub mod vmm_process;
