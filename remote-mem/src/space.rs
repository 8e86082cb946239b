//! A linear byte space over one client's slabs: byte `offset` lives at offset
//! `offset % slab_size` of slab `offset / slab_size`. A template's memory file and guest RAM
//! pushed out by RAM-ext are both laid out this way; reads and writes are split at slab
//! boundaries here, so callers never see them.

use std::sync::Arc;

use crate::client::{ClientError, MemClient, PageRead, PageWrite, SlabId};
use crate::protocol::MAX_IO;

/// A linear byte space on memory servers. Clones share the client.
#[derive(Clone)]
pub struct SlabSpace {
    client: Arc<MemClient>,
    slab_size: u64,
}

/// One piece of a range that lies inside one slab and one request limit: slab, offset in
/// the slab, start within the range, length.
type Piece = (SlabId, u64, usize, usize);

impl SlabSpace {
    /// The space of `client`'s slabs, in slab id order.
    pub fn new(client: Arc<MemClient>) -> Self {
        let slab_size = client.slab_size();
        SlabSpace { client, slab_size }
    }

    /// The space of slabs `slab_size` bytes long (an attached client's table may say so).
    pub fn with_slab_size(client: Arc<MemClient>, slab_size: u64) -> Self {
        SlabSpace { client, slab_size }
    }

    /// The client underneath.
    pub fn client(&self) -> &Arc<MemClient> {
        &self.client
    }

    /// Allocates the slabs that hold `len` bytes (a fresh client: its slab ids count from 0).
    pub fn allocate(&self, len: u64) -> Result<(), ClientError> {
        for _ in 0..len.div_ceil(self.slab_size) {
            self.client.alloc_slab()?;
        }
        Ok(())
    }

    /// Frees the slabs that hold `len` bytes (allocated with [`SlabSpace::allocate`]), on
    /// every replica. Slabs are never freed when a client just goes away (templates share
    /// them by key), so whoever allocated them must call this when done.
    pub fn free(&self, len: u64) -> Result<(), ClientError> {
        let mut first_error = None;
        for i in 0..len.div_ceil(self.slab_size) {
            if let Err(e) = self.client.free_slab(SlabId(i as usize)) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn pieces(&self, offset: u64, len: usize) -> impl Iterator<Item = Piece> + '_ {
        let mut done = 0usize;
        let max = MAX_IO as usize;
        std::iter::from_fn(move || {
            (done < len).then(|| {
                let at = offset + done as u64;
                let in_slab = at % self.slab_size;
                let n = (len - done)
                    .min((self.slab_size - in_slab) as usize)
                    .min(max);
                let piece = (SlabId((at / self.slab_size) as usize), in_slab, done, n);
                done += n;
                piece
            })
        })
    }

    /// Writes `data` at `offset`.
    pub fn write_at(&self, data: &[u8], offset: u64) -> Result<(), ClientError> {
        for (slab, at, start, n) in self.pieces(offset, data.len()) {
            self.client.write(slab, at, &data[start..start + n])?;
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), ClientError> {
        let len = buf.len();
        for (slab, at, start, n) in self.pieces(offset, len) {
            self.client.read(slab, at, &mut buf[start..start + n])?;
        }
        Ok(())
    }

    /// Writes several (offset, data) runs in one pipelined batch per host.
    pub fn write_runs(&self, runs: &[(u64, &[u8])]) -> Result<(), ClientError> {
        let mut ops = Vec::with_capacity(runs.len());
        for &(offset, data) in runs {
            for (slab, at, start, n) in self.pieces(offset, data.len()) {
                ops.push(PageWrite {
                    slab,
                    offset: at,
                    data: &data[start..start + n],
                });
            }
        }
        match ops.len() {
            0 => Ok(()),
            1 => self.client.write(ops[0].slab, ops[0].offset, ops[0].data),
            _ => self.client.write_batch(&ops),
        }
    }

    /// Reads several (offset, buffer) runs in one pipelined batch per host.
    pub fn read_runs(&self, runs: &mut [(u64, &mut [u8])]) -> Result<(), ClientError> {
        let mut pieces = Vec::new();
        for (i, (offset, buf)) in runs.iter().enumerate() {
            for p in self.pieces(*offset, buf.len()) {
                pieces.push((i, p));
            }
        }
        if pieces.len() == runs.len() {
            // One piece per run: read straight into the callers' buffers.
            let mut ops: Vec<PageRead<'_>> = runs
                .iter_mut()
                .zip(&pieces)
                .map(|((_, buf), (_, (slab, at, _, _)))| PageRead {
                    slab: *slab,
                    offset: *at,
                    buf: &mut buf[..],
                })
                .collect();
            return match ops.len() {
                1 => self.client.read(ops[0].slab, ops[0].offset, ops[0].buf),
                _ => self.client.read_batch(&mut ops),
            };
        }
        for (offset, buf) in runs.iter_mut() {
            self.read_at(buf, *offset)?;
        }
        Ok(())
    }
}
