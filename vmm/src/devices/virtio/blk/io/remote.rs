//! The explicit swap device's backend: sectors in memd slabs
//! ([`revenant_remote_mem::block::BlockBackend`], e.g. `SlabBlockDevice`).

use std::sync::Arc;

use revenant_remote_mem::block::BlockBackend;
use vm_memory::VolatileSlice;

use super::{DiskBackend, DiskError};
use crate::devices::virtio::blk::SECTOR_SIZE;

/// Largest bounce buffer: a request is moved in pieces of at most this much, so a guest
/// posting a huge request cannot make the VMM allocate as much.
const BOUNCE_MAX: usize = 1 << 20;

/// Adapts a remote block backend to [`DiskBackend`]. Guest buffers are gathered into (or
/// scattered from) a bounce buffer, because the client sends whole byte slices; it batches
/// the pieces of each bounce-buffer load into one round trip per server.
pub struct RemoteDisk {
    backend: Arc<dyn BlockBackend>,
    bounce: Vec<u8>,
}

/// `bufs` cut into loads of at most [`BOUNCE_MAX`] bytes.
fn loads<'a>(bufs: &[VolatileSlice<'a>]) -> Vec<Vec<VolatileSlice<'a>>> {
    let mut out = vec![Vec::new()];
    let mut room = BOUNCE_MAX;
    for b in bufs {
        let mut off = 0;
        while off < b.len() {
            if room == 0 {
                out.push(Vec::new());
                room = BOUNCE_MAX;
            }
            let n = (b.len() - off).min(room);
            if let (Ok(piece), Some(load)) = (b.subslice(off, n), out.last_mut()) {
                load.push(piece);
            }
            off += n;
            room -= n;
        }
    }
    out
}

impl RemoteDisk {
    pub fn new(backend: Arc<dyn BlockBackend>) -> Self {
        RemoteDisk {
            backend,
            bounce: vec![0; BOUNCE_MAX],
        }
    }
}

impl DiskBackend for RemoteDisk {
    fn capacity_sectors(&self) -> u64 {
        self.backend.capacity_sectors()
    }

    fn read_vectored(&mut self, offset: u64, bufs: &[VolatileSlice<'_>]) -> Result<(), DiskError> {
        let mut offset = offset;
        for load in loads(bufs) {
            let total: usize = load.iter().map(|b| b.len()).sum();
            let buf = &mut self.bounce[..total];
            self.backend.read(offset / SECTOR_SIZE, buf)?;
            let mut at = 0;
            for b in &load {
                b.copy_from(&buf[at..at + b.len()]);
                at += b.len();
            }
            offset += total as u64;
        }
        Ok(())
    }

    fn write_vectored(&mut self, offset: u64, bufs: &[VolatileSlice<'_>]) -> Result<(), DiskError> {
        let mut offset = offset;
        for load in loads(bufs) {
            let total: usize = load.iter().map(|b| b.len()).sum();
            let buf = &mut self.bounce[..total];
            let mut at = 0;
            for b in &load {
                at += b.copy_to(&mut buf[at..]);
            }
            self.backend.write(offset / SECTOR_SIZE, buf)?;
            offset += total as u64;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), DiskError> {
        Ok(self.backend.flush()?)
    }

    fn can_discard(&self) -> bool {
        true
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<(), DiskError> {
        Ok(self
            .backend
            .discard(offset / SECTOR_SIZE, len / SECTOR_SIZE)?)
    }
}
