//! virtio-blk devices for the remote-swap test and the benchmark: a swap device over a
//! loopback `revenant-memd`, and a raw image on tmpfs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use revenant_remote_mem::block::SlabBlockDevice;
use revenant_remote_mem::client::{ClientConfig, MemClient};
use revenant_remote_mem::endpoint::Endpoint;
use revenant_vmm::devices::virtio::blk::io::{RawFile, RemoteDisk};

use crate::memd::Memd;

/// A `size`-byte remote swap disk on `memd` (whose token is in `token_file`).
pub fn remote_disk(memd: &Memd, token_file: &Path, size: u64) -> RemoteDisk {
    RemoteDisk::new(Arc::new(remote_backend(memd, token_file, size)))
}

/// The block backend under [`remote_disk`], for measuring it without the device.
pub fn remote_backend(memd: &Memd, token_file: &Path, size: u64) -> SlabBlockDevice {
    let token = std::fs::read_to_string(token_file).expect("read the memd token");
    let cfg = ClientConfig {
        endpoints: vec![Endpoint::parse(&memd.endpoint).expect("memd endpoint")],
        token: token.trim_end().as_bytes().to_vec(),
        replicas: None,
        timeout: Duration::from_secs(10),
        backup_file: None,
        key: None,
    };
    let client = MemClient::connect(&cfg).expect("connect to memd");
    SlabBlockDevice::new(Arc::new(client), size)
}

/// A `size`-byte raw image at `path` (sparse), opened read-write.
pub fn file_disk(path: &Path, size: u64) -> RawFile {
    let f = std::fs::File::create(path).expect("create the disk image");
    f.set_len(size).expect("size the disk image");
    RawFile::open(path, false).expect("open the disk image")
}
