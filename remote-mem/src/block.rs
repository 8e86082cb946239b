//! Block backend over remote slabs: a sector-addressed disk whose bytes live
//! in memd slabs. The VMM's virtio-blk (explicit swap device) drives it.

use std::sync::{Arc, Mutex};

use crate::client::{ClientError, MemClient, SlabId};
use crate::client::{PageRead, PageWrite};
use crate::protocol::MAX_IO;

/// Bytes per sector (virtio-blk's unit).
pub const SECTOR_SIZE: u64 = 512;

/// Block I/O errors.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// Buffer length is not a whole number of sectors.
    #[error("buffer of {0} bytes is not a multiple of {SECTOR_SIZE}")]
    Unaligned(usize),
    /// Request reaches past the end of the device.
    #[error("sectors {sector}+{count} are beyond the device's {capacity} sectors")]
    OutOfRange {
        /// First sector.
        sector: u64,
        /// Number of sectors.
        count: u64,
        /// Device size in sectors.
        capacity: u64,
    },
    /// The remote memory failed.
    #[error("remote memory: {0}")]
    Remote(#[from] ClientError),
}

/// A sector-addressed disk.
pub trait BlockBackend: Send + Sync {
    /// Device size in sectors.
    fn capacity_sectors(&self) -> u64;
    /// Reads `buf.len()` bytes starting at `sector`.
    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// Writes `data` starting at `sector`.
    fn write(&self, sector: u64, data: &[u8]) -> Result<(), BlockError>;
    /// Makes completed writes durable.
    fn flush(&self) -> Result<(), BlockError>;
    /// Declares `count` sectors from `sector` unused; they read back as zeros.
    fn discard(&self, sector: u64, count: u64) -> Result<(), BlockError>;
}

/// A disk of `size` bytes made of slabs allocated on first write. Never-written
/// and discarded ranges read as zeros without a network round trip.
pub struct SlabBlockDevice {
    client: Arc<MemClient>,
    sectors: u64,
    slabs: Mutex<Vec<Option<SlabId>>>,
}

/// One piece of a request that lies inside one slab and one request limit.
struct Piece {
    slab_index: usize,
    offset: u64,
    start: usize,
    len: usize,
}

impl SlabBlockDevice {
    /// A device of `size_bytes` (rounded down to whole sectors).
    pub fn new(client: Arc<MemClient>, size_bytes: u64) -> Self {
        let sectors = size_bytes / SECTOR_SIZE;
        let n = (sectors * SECTOR_SIZE).div_ceil(client.slab_size()) as usize;
        Self {
            client,
            sectors,
            slabs: Mutex::new(vec![None; n]),
        }
    }

    fn check(&self, sector: u64, len: usize) -> Result<u64, BlockError> {
        if len as u64 % SECTOR_SIZE != 0 {
            return Err(BlockError::Unaligned(len));
        }
        let count = len as u64 / SECTOR_SIZE;
        match sector.checked_add(count) {
            Some(end) if end <= self.sectors => Ok(sector * SECTOR_SIZE),
            _ => Err(BlockError::OutOfRange {
                sector,
                count,
                capacity: self.sectors,
            }),
        }
    }

    /// Splits `[pos, pos+len)` at slab boundaries and into at most `limit` bytes.
    fn pieces(&self, mut pos: u64, len: usize, limit: usize) -> Vec<Piece> {
        let ss = self.client.slab_size();
        let mut out = Vec::new();
        let mut start = 0usize;
        while start < len {
            let offset = pos % ss;
            let n = ((ss - offset) as usize).min(len - start).min(limit);
            out.push(Piece {
                slab_index: (pos / ss) as usize,
                offset,
                start,
                len: n,
            });
            start += n;
            pos += n as u64;
        }
        out
    }

    fn slab(&self, index: usize, allocate: bool) -> Result<Option<SlabId>, ClientError> {
        let mut slabs = self.slabs.lock().unwrap_or_else(|p| p.into_inner());
        match slabs.get(index).copied().flatten() {
            Some(id) => Ok(Some(id)),
            None if allocate => {
                let id = self.client.alloc_slab()?;
                if let Some(s) = slabs.get_mut(index) {
                    *s = Some(id);
                }
                Ok(Some(id))
            }
            None => Ok(None),
        }
    }
}

impl BlockBackend for SlabBlockDevice {
    fn capacity_sectors(&self) -> u64 {
        self.sectors
    }

    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let pos = self.check(sector, buf.len())?;
        let pieces = self.pieces(pos, buf.len(), MAX_IO as usize);
        let mut ops = Vec::with_capacity(pieces.len());
        let mut rest: &mut [u8] = buf;
        for p in &pieces {
            let (chunk, tail) = std::mem::take(&mut rest).split_at_mut(p.len);
            rest = tail;
            match self.slab(p.slab_index, false)? {
                Some(slab) => ops.push(PageRead {
                    slab,
                    offset: p.offset,
                    buf: chunk,
                }),
                None => chunk.fill(0),
            }
        }
        // One piece (a 4 KiB page, any request within one slab): a direct read. The batch
        // path hands each host's share to a thread, which costs more than the read itself.
        match ops.as_mut_slice() {
            [] => {}
            [op] => self.client.read(op.slab, op.offset, op.buf)?,
            ops => self.client.read_batch(ops)?,
        }
        Ok(())
    }

    fn write(&self, sector: u64, data: &[u8]) -> Result<(), BlockError> {
        let pos = self.check(sector, data.len())?;
        let mut ops = Vec::new();
        for p in self.pieces(pos, data.len(), MAX_IO as usize) {
            if let Some(slab) = self.slab(p.slab_index, true)? {
                ops.push(PageWrite {
                    slab,
                    offset: p.offset,
                    data: &data[p.start..p.start + p.len],
                });
            }
        }
        match ops.as_slice() {
            [] => {}
            [op] => self.client.write(op.slab, op.offset, op.data)?,
            ops => self.client.write_batch(ops)?,
        }
        Ok(())
    }

    /// Every write returns only after all live replicas hold it in memory;
    /// there is no volatile cache to flush.
    fn flush(&self) -> Result<(), BlockError> {
        Ok(())
    }

    fn discard(&self, sector: u64, count: u64) -> Result<(), BlockError> {
        let bytes = count.saturating_mul(SECTOR_SIZE);
        let len = usize::try_from(bytes).map_err(|_| BlockError::OutOfRange {
            sector,
            count,
            capacity: self.sectors,
        })?;
        let pos = self.check(sector, len)?;
        let ss = self.client.slab_size();
        let zeros = vec![0u8; MAX_IO as usize];
        for p in self.pieces(pos, len, usize::MAX) {
            let whole = p.offset == 0 && p.len as u64 == ss;
            if whole {
                let id = {
                    let mut slabs = self.slabs.lock().unwrap_or_else(|p| p.into_inner());
                    slabs.get_mut(p.slab_index).and_then(Option::take)
                };
                if let Some(id) = id {
                    self.client.free_slab(id)?;
                }
            } else if let Some(slab) = self.slab(p.slab_index, false)? {
                let mut done = 0;
                while done < p.len {
                    let n = (p.len - done).min(zeros.len());
                    self.client
                        .write(slab, p.offset + done as u64, &zeros[..n])?;
                    done += n;
                }
            }
        }
        Ok(())
    }
}
