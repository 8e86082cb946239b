//! `revenant-memd bench`: memd 4 KiB random-read latency and 64 KiB sequential
//! throughput, next to the two floors they are judged against, all in one run:
//! a bare 4 KiB request/response over loopback TCP and `pread` from tmpfs.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::thread;
use std::time::Instant;

use serde::Serialize;

use crate::client::placement_rng;
use crate::client::{ClientConfig, ClientError, MemClient, PageRead, PageWrite};
use crate::protocol::HEADER_LEN;

const PAGE: usize = 4096;
const SEQ_UNIT: usize = 64 * 1024;
/// 64 KiB reads in flight per batch in the sequential test (16 MiB per batch).
const SEQ_BATCH: usize = 256;

/// Benchmark parameters.
#[derive(Debug, Clone, Copy)]
pub struct BenchParams {
    /// Timed 4 KiB reads (and floor round trips / preads).
    pub samples: usize,
    /// Bytes of remote memory the random reads and sequential scan cover.
    pub working_set: u64,
    /// Sequential passes over the working set.
    pub seq_passes: usize,
}

/// The JSON the bench prints (exactly the keys `scripts/bench-memd` promises).
#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// memd 4 KiB random read, median, microseconds.
    pub read4k_p50_us: f64,
    /// memd 4 KiB random read, 99th percentile, microseconds.
    pub read4k_p99_us: f64,
    /// memd 64 KiB sequential read throughput, GB/s (10^9 bytes).
    pub seq_gbps: f64,
    /// Bare loopback TCP 40-byte request / 4 KiB reply, median, microseconds.
    pub tcp_floor_p50_us: f64,
    /// `pread` of 4 KiB at random offsets from a /dev/shm file, median, microseconds.
    pub tmpfs_pread_p50_us: f64,
}

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Talking to memd failed.
    #[error("memd: {0}")]
    Client(#[from] ClientError),
    /// Local socket or file I/O failed.
    #[error("local I/O: {0}")]
    Io(#[from] io::Error),
    /// The data read back differs from what was written.
    #[error("data read back differs from data written at slab {0}")]
    Corrupt(usize),
}

/// Runs everything and returns the report.
pub fn run(cfg: &ClientConfig, p: BenchParams) -> Result<BenchReport, BenchError> {
    // r = 1: reads touch one replica whatever r is; r = 1 keeps the fill short.
    let client = MemClient::connect(&ClientConfig {
        replicas: Some(1),
        ..cfg.clone()
    })?;
    let ss = client.slab_size();
    let nslabs = p.working_set.div_ceil(ss).max(1) as usize;
    let mut rng = placement_rng(0x5eed);
    eprintln!("bench: filling {} slabs of {} bytes", nslabs, ss);
    let mut slabs = Vec::with_capacity(nslabs);
    let mut chunk = vec![0u8; SEQ_UNIT];
    for _ in 0..nslabs {
        let id = client.alloc_slab()?;
        let mut off = 0;
        while off < ss {
            let n = (ss - off).min(chunk.len() as u64) as usize;
            fill(&mut chunk[..n], id.0 as u64 ^ off);
            client.write_batch(&[PageWrite {
                slab: id,
                offset: off,
                data: &chunk[..n],
            }])?;
            off += n as u64;
        }
        slabs.push(id);
    }

    eprintln!("bench: {} random 4 KiB reads", p.samples);
    let pages_per_slab = (ss / PAGE as u64).max(1);
    let mut page = vec![0u8; PAGE];
    let mut lat = Vec::with_capacity(p.samples);
    for i in 0..p.samples + p.samples / 10 {
        let s = slabs[rng.below(slabs.len())];
        let off = rng.below(pages_per_slab as usize) as u64 * PAGE as u64;
        let t = Instant::now();
        client.read_page(s, off, &mut page)?;
        let dt = t.elapsed();
        if i >= p.samples / 10 {
            lat.push(dt.as_secs_f64() * 1e6);
        }
        if i % 997 == 0 {
            let mut want = vec![0u8; SEQ_UNIT];
            let base = off - off % SEQ_UNIT as u64;
            fill(&mut want, s.0 as u64 ^ base);
            let at = (off - base) as usize;
            if want[at..at + PAGE] != page[..] {
                return Err(BenchError::Corrupt(s.0));
            }
        }
    }
    let (read4k_p50_us, read4k_p99_us) = (percentile(&mut lat, 50.0), percentile(&mut lat, 99.0));

    eprintln!("bench: sequential 64 KiB reads, {} passes", p.seq_passes);
    let mut bufs = vec![vec![0u8; SEQ_UNIT]; SEQ_BATCH];
    let units: Vec<(usize, u64)> = (0..slabs.len())
        .flat_map(|s| (0..ss / SEQ_UNIT as u64).map(move |u| (s, u * SEQ_UNIT as u64)))
        .collect();
    let t = Instant::now();
    let mut bytes = 0u64;
    for _ in 0..p.seq_passes {
        for group in units.chunks(SEQ_BATCH) {
            let mut ops: Vec<PageRead<'_>> = group
                .iter()
                .zip(bufs.iter_mut())
                .map(|(&(s, off), b)| PageRead {
                    slab: slabs[s],
                    offset: off,
                    buf: b.as_mut_slice(),
                })
                .collect();
            client.read_batch(&mut ops)?;
            bytes += (group.len() * SEQ_UNIT) as u64;
        }
    }
    let seq_gbps = (bytes as f64 / t.elapsed().as_secs_f64() / 1e9 * 1000.0).round() / 1000.0;
    for s in slabs {
        client.free_slab(s)?;
    }

    eprintln!("bench: loopback TCP floor");
    let tcp_floor_p50_us = tcp_floor(p.samples)?;
    eprintln!("bench: tmpfs pread");
    let tmpfs_pread_p50_us = tmpfs_pread(p.samples, &mut rng)?;
    Ok(BenchReport {
        read4k_p50_us,
        read4k_p99_us,
        seq_gbps,
        tcp_floor_p50_us,
        tmpfs_pread_p50_us,
    })
}

/// Deterministic bytes for a 64 KiB unit, so reads can be checked.
fn fill(buf: &mut [u8], seed: u64) {
    let mut rng = placement_rng(seed.wrapping_add(1));
    for c in buf.chunks_mut(8) {
        let v = rng.next_u64().to_le_bytes();
        c.copy_from_slice(&v[..c.len()]);
    }
}

fn percentile(v: &mut [f64], pct: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let i = ((pct / 100.0) * (v.len() - 1) as f64).round() as usize;
    (v[i.min(v.len() - 1)] * 100.0).round() / 100.0
}

/// Median of a minimal request/response over loopback TCP: 40 bytes out (a
/// memd header), 4 KiB back, TCP_NODELAY, one thread per side, like memd.
fn tcp_floor(samples: usize) -> io::Result<f64> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let server = thread::spawn(move || -> io::Result<()> {
        let (mut s, _) = l.accept()?;
        s.set_nodelay(true)?;
        let mut req = [0u8; HEADER_LEN];
        let resp = vec![7u8; PAGE];
        loop {
            match s.read_exact(&mut req) {
                Ok(()) => s.write_all(&resp)?,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    let req = [1u8; HEADER_LEN];
    let mut resp = vec![0u8; PAGE];
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples + samples / 10 {
        let t = Instant::now();
        c.write_all(&req)?;
        c.read_exact(&mut resp)?;
        if i >= samples / 10 {
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    drop(c);
    let _ = server.join();
    Ok(percentile(&mut lat, 50.0))
}

/// Median `pread` of 4 KiB at random page offsets of a 64 MiB /dev/shm file.
fn tmpfs_pread(samples: usize, rng: &mut crate::client::Rng) -> io::Result<f64> {
    const SIZE: usize = 64 << 20;
    let path = std::path::PathBuf::from(format!(
        "/dev/shm/revenant-memd-bench-{}",
        std::process::id()
    ));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    let result = (|| {
        let mut chunk = vec![0u8; 1 << 20];
        for i in 0..SIZE / chunk.len() {
            fill(&mut chunk, i as u64);
            f.write_all_at(&chunk, (i * chunk.len()) as u64)?;
        }
        let mut page = vec![0u8; PAGE];
        let mut lat = Vec::with_capacity(samples);
        for i in 0..samples + samples / 10 {
            let off = rng.below(SIZE / PAGE) as u64 * PAGE as u64;
            let t = Instant::now();
            f.read_exact_at(&mut page, off)?;
            if i >= samples / 10 {
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        Ok(percentile(&mut lat, 50.0))
    })();
    let _ = std::fs::remove_file(&path);
    result
}
