//! virtio-blk device-path benchmark (run by `scripts/bench virtio-blk`).
//!
//! A host thread plays the guest driver: it writes descriptor chains into guest memory,
//! kicks the queue through the eventfd that is registered as the KVM ioeventfd on
//! QueueNotify (what KVM signals when a guest writes that register), and collects
//! completions from the used ring. The device runs on the VMM's event loop and raises its
//! interrupt through an eventfd registered as a KVM irqfd on a real KVM VM, so KVM does
//! the injection work it does for a guest. (The irqfd's counter is consumed by KVM, so the
//! driver polls the used ring rather than waiting on it.) Without /dev/kvm the eventfds are
//! used unregistered, and stderr says so.
//!
//! Two disks, same run: a raw image on tmpfs and a remote swap device on a loopback
//! `revenant-memd`. Per disk: 1 MiB sequential writes (which also fill the remote disk, so
//! reads are real round trips), 1 MiB sequential reads (queue depth 8), 4 KiB random reads
//! at queue depth 32 (IOPS) and at queue depth 1 (the device's cost per request).
//! Progress on stderr; the last stdout line is one JSON object.
//! Env: VIRTIO_BENCH_SECONDS per phase (default 2), VIRTIO_BENCH_DISK (bytes, default 256M).

use std::time::{Duration, Instant};

use kvm_ioctls::IoEventAddress;
use revenant_remote_mem::block::BlockBackend;
use revenant_tests::memd::{token_file, Memd};
use revenant_tests::virtio_blk::{file_disk, remote_backend, remote_disk};
use revenant_vmm::devices::virtio::blk::io::DiskBackend;
use revenant_vmm::devices::virtio::blk::testbed::{Testbed, DATA, HEADER, STATUS};
use revenant_vmm::devices::virtio::blk::BlockOptions;
use revenant_vmm::devices::virtio::testing::Desc;
use revenant_vmm::devices::virtio::{VirtioDevice, QUEUE_NOTIFY_OFFSET};
use revenant_vmm::event_loop::{EventLoop, Subscriber};
use revenant_vmm::vstate::vm_fd::{create_vm, KvmVm};
use virtio_bindings::virtio_blk::{VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
use vmm_sys_util::eventfd::EventFd;

const MEM_SIZE: u64 = 64 << 20;
/// Where a guest would find the device (the first virtio-mmio window) and its interrupt.
const MMIO_BASE: u64 = 0xc000_0000;
const GSI: u32 = 5;
const SEQ_LEN: u32 = 1 << 20;
const SEQ_SEGMENTS: u32 = 16;
const SEQ_DEPTH: usize = 8;
const RAND_DEPTH: usize = 32;

struct Bench {
    bed: Testbed,
    kick: EventFd,
    _event_loop: EventLoop,
    _kvm: Option<KvmVm>,
    sectors: u64,
}

#[derive(Clone, Copy)]
struct Req {
    kind: u32,
    sector: u64,
    len: u32,
    segments: u32,
}

impl Bench {
    fn new(disk: Box<dyn DiskBackend>, id: &str) -> Bench {
        let irq = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
        let options = BlockOptions {
            id: id.into(),
            ..Default::default()
        };
        let mut bed = Testbed::unstarted(disk, options, MEM_SIZE, irq).expect("testbed");
        let kick = bed.block.lock().unwrap().queue_events()[0]
            .try_clone()
            .expect("eventfd");
        let kvm = match create_vm(&bed.mem, false) {
            Ok(kvm) => {
                kvm.fd.register_irqfd(&bed.irq, GSI).expect("KVM irqfd");
                let notify = IoEventAddress::Mmio(MMIO_BASE + QUEUE_NOTIFY_OFFSET);
                kvm.fd
                    .register_ioevent(&kick, &notify, 0u32)
                    .expect("KVM ioeventfd");
                Some(kvm)
            }
            Err(e) => {
                eprintln!("bench-virtio-blk: no KVM VM ({e}): /dev/kvm is missing or unusable, so the irqfd and ioeventfd are plain eventfds not registered with KVM");
                None
            }
        };
        let sub: Subscriber = bed.block.clone();
        let event_loop = EventLoop::start(vec![sub]).expect("event loop");
        bed.start(256).expect("bring-up");
        let sectors = bed.block.lock().unwrap().capacity_sectors();
        Bench {
            bed,
            kick,
            _event_loop: event_loop,
            _kvm: kvm,
            sectors,
        }
    }

    /// Posts `reqs`, kicks once, waits for all of them; panics on a failed request.
    fn batch(&mut self, reqs: &[Req]) {
        for (i, r) in reqs.iter().enumerate() {
            let i = i as u64;
            let mut chain = vec![self.bed.header_at(HEADER + 32 * i, r.kind, r.sector)];
            let seg = r.len / r.segments;
            let base = DATA + i * u64::from(r.len);
            for s in 0..u64::from(r.segments) {
                let addr = base + s * u64::from(seg);
                chain.push(if r.kind == VIRTIO_BLK_T_IN {
                    Desc::writable(addr, seg)
                } else {
                    Desc::readable(addr, seg)
                });
            }
            chain.push(self.bed.status_desc_at(STATUS + i));
            self.bed
                .queue
                .add_chain(&self.bed.mem, &chain)
                .expect("post chain");
        }
        self.kick.write(1).expect("kick");
        let mut done = 0;
        while done < reqs.len() {
            let used = self.bed.queue.take_used(&self.bed.mem).expect("used ring");
            if used.is_empty() {
                // Not a pure spin: on a 2-core host a spinning driver would take the CPU
                // the event loop or a loopback memd needs.
                std::thread::yield_now();
            }
            done += used.len();
        }
        for i in 0..reqs.len() as u64 {
            assert_eq!(
                self.bed.status_at(STATUS + i),
                VIRTIO_BLK_S_OK as u8,
                "request failed"
            );
        }
    }

    /// Runs batches from `next` for `secs`; returns (requests, elapsed seconds).
    fn timed(&mut self, secs: Duration, mut next: impl FnMut() -> Vec<Req>) -> (u64, f64) {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < secs {
            let reqs = next();
            self.batch(&reqs);
            n += reqs.len() as u64;
        }
        (n, start.elapsed().as_secs_f64())
    }
}

struct Results {
    seq1m_write_mbps: f64,
    seq1m_mbps: f64,
    randread4k_iops: f64,
    per_request_us: f64,
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn run(name: &str, disk: Box<dyn DiskBackend>, secs: Duration) -> Results {
    let mut b = Bench::new(disk, name);
    let per_seq = u64::from(SEQ_LEN) / 512;
    let seq_reqs = |kind: u32, cursor: &mut u64, sectors: u64| -> Vec<Req> {
        (0..SEQ_DEPTH)
            .map(|_| {
                if *cursor + per_seq > sectors {
                    *cursor = 0;
                }
                let r = Req {
                    kind,
                    sector: *cursor,
                    len: SEQ_LEN,
                    segments: SEQ_SEGMENTS,
                };
                *cursor += per_seq;
                r
            })
            .collect()
    };
    let sectors = b.sectors;
    // Fill the whole disk once (a remote disk's unwritten sectors would read as zeros
    // without a round trip), timing it as the write throughput.
    let start = Instant::now();
    let mut cursor = 0;
    let fill_batches = sectors / per_seq / SEQ_DEPTH as u64;
    for _ in 0..fill_batches {
        let reqs = seq_reqs(VIRTIO_BLK_T_OUT, &mut cursor, sectors);
        b.batch(&reqs);
    }
    let written = fill_batches * SEQ_DEPTH as u64;
    let seq1m_write_mbps =
        written as f64 * f64::from(SEQ_LEN) / 1e6 / start.elapsed().as_secs_f64();
    eprintln!("bench-virtio-blk: {name}: 1 MiB sequential write {seq1m_write_mbps:.0} MB/s");

    let mut cursor = 0;
    let (n, t) = b.timed(secs, || seq_reqs(VIRTIO_BLK_T_IN, &mut cursor, sectors));
    let seq1m_mbps = n as f64 * f64::from(SEQ_LEN) / 1e6 / t;
    eprintln!("bench-virtio-blk: {name}: 1 MiB sequential read {seq1m_mbps:.0} MB/s");

    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let pages = sectors / 8;
    let mut rand_reqs = |depth: usize| -> Vec<Req> {
        (0..depth)
            .map(|_| Req {
                kind: VIRTIO_BLK_T_IN,
                sector: (xorshift(&mut seed) % pages) * 8,
                len: 4096,
                segments: 1,
            })
            .collect()
    };
    let (n, t) = b.timed(secs, || rand_reqs(RAND_DEPTH));
    let randread4k_iops = n as f64 / t;
    eprintln!("bench-virtio-blk: {name}: 4 KiB random read, depth {RAND_DEPTH}: {randread4k_iops:.0} IOPS");
    let (n, t) = b.timed(secs, || rand_reqs(1));
    let per_request_us = t * 1e6 / n as f64;
    eprintln!(
        "bench-virtio-blk: {name}: 4 KiB random read, depth 1: {per_request_us:.2} us per request"
    );
    let c = b.bed.block.lock().unwrap().counters();
    assert_eq!(c.errors + c.dropped, 0, "{c:?}");
    Results {
        seq1m_write_mbps,
        seq1m_mbps,
        randread4k_iops,
        per_request_us,
    }
}

/// The remote backend's own 4 KiB random-read time, without the device: the floor
/// `per_request_us_remote` is compared with.
fn backend_read4k_us(backend: &dyn BlockBackend, secs: Duration) -> f64 {
    let pages = backend.capacity_sectors() / 8;
    let mut page = vec![0x5au8; 1 << 20];
    for i in 0..pages / 256 {
        backend.write(i * 2048, &page).expect("fill");
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < secs {
        let sector = (xorshift(&mut seed) % pages) * 8;
        backend.read(sector, &mut page[..4096]).expect("read");
        n += 1;
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let secs = Duration::from_secs_f64(
        std::env::var("VIRTIO_BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2.0),
    );
    let size: u64 = std::env::var("VIRTIO_BENCH_DISK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256 << 20);
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let shm = tempfile::tempdir_in("/dev/shm").expect("tmpfs directory in /dev/shm");
    let image = shm.path().join("disk.img");
    let local = run("tmpfs", Box::new(file_disk(&image, size)), secs);
    drop(shm);

    let dir = tempfile::tempdir().expect("scratch directory");
    let token = token_file(dir.path());
    let memd = Memd::start(&token);
    eprintln!("bench-virtio-blk: memd at {}", memd.endpoint);
    let backend_us = backend_read4k_us(&remote_backend(&memd, &token, 64 << 20), secs);
    eprintln!("bench-virtio-blk: remote backend alone, 4 KiB random read: {backend_us:.2} us");
    let remote = run("remote", Box::new(remote_disk(&memd, &token, size)), secs);

    println!(
        "{{\"randread4k_iops\": {:.0}, \"seq1m_mbps\": {:.0}, \"seq1m_write_mbps\": {:.0}, \"per_request_us\": {:.2}, \"randread4k_iops_remote\": {:.0}, \"seq1m_mbps_remote\": {:.0}, \"seq1m_write_mbps_remote\": {:.0}, \"per_request_us_remote\": {:.2}, \"backend_read4k_us_remote\": {backend_us:.2}, \"kvm\": {kvm}}}",
        local.randread4k_iops,
        local.seq1m_mbps,
        local.seq1m_write_mbps,
        local.per_request_us,
        remote.randread4k_iops,
        remote.seq1m_mbps,
        remote.seq1m_write_mbps,
        remote.per_request_us,
    );
}
