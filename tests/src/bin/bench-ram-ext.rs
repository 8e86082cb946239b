//! `scripts/bench ram-ext`: the RAM extension's remote-fault latency and the slowdown of a
//! test guest run with part of its memory local.
//!
//! 1. Fault latency, on this process's own memory (no guest, so nothing but the engine is
//!    measured): 64 MiB are written, moved to one loopback memd (`evict_all`), then pages are
//!    read in random order, one fault each (prefetch off), each read timed by the faulting
//!    thread. The same on never-written pages gives the userfaultfd floor (zero fill, no
//!    network).
//! 2. Slowdown: the fill-and-verify guest (tests/src/guests.rs) writes a working set at CPL3
//!    and then verifies it pass after pass; the time of `PASSES` passes after the first is
//!    compared between all-local (no `memory.remote`) and local budgets of 100/75/50/25% of
//!    the guest's touched memory, and 50% with the pressure controller.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use revenant_remote_mem::client::ClientConfig;
use revenant_remote_mem::endpoint::Endpoint;
use revenant_remote_mem::ram_ext::{GuestRange, RamExt, RamExtConfig};
use revenant_remote_mem::space::SlabSpace;
use revenant_remote_mem::MemClient;
use revenant_template::MappedRegion;
use revenant_tests::bench::{env_count, percentile, BenchVmm};
use revenant_tests::guests;
use revenant_tests::memd::{token_file, Memd};
use revenant_tests::vmm_process::write_guest;

const GUEST_MEMORY: u64 = 256 << 20;
const PS: usize = 4096;

/// Anonymous private memory standing in for guest RAM (the template crate's mapping);
/// unmapped on drop.
struct Region(MappedRegion);

impl Region {
    fn new(len: usize) -> Region {
        Region(MappedRegion::anonymous(0, len).expect("mmap"))
    }

    fn addr(&self) -> usize {
        self.0.as_ptr() as usize
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Reads one byte of page `n` and returns how long that took (a fault, when the page is
    /// not resident).
    fn timed_read(&self, n: usize) -> f64 {
        assert!(n < self.len() / PS);
        let start = Instant::now();
        // SAFETY: page n is inside the mapping.
        let v = unsafe { std::ptr::read_volatile((self.addr() + n * PS) as *const u8) };
        let us = start.elapsed().as_secs_f64() * 1e6;
        std::hint::black_box(v);
        us
    }
}

/// A random permutation of `0..n` (xorshift, fixed seed: runs compare).
fn shuffled(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

/// A slab space of `len` bytes on `memd` (replicas 1).
fn slab_space(memd: &Memd, token: &Path, len: u64) -> SlabSpace {
    let cfg = ClientConfig {
        endpoints: vec![Endpoint::parse(&memd.endpoint).expect("memd endpoint")],
        token: std::fs::read_to_string(token)
            .expect("read the token")
            .trim()
            .as_bytes()
            .to_vec(),
        replicas: Some(1),
        timeout: Duration::from_secs(10),
        backup_file: None,
        key: None,
    };
    let client = Arc::new(MemClient::connect(&cfg).expect("connect to memd"));
    let space = SlabSpace::new(client);
    space.allocate(len).expect("allocate slabs");
    space
}

/// Writes every page of `region` (before an engine starts: all resident and dirty).
fn fill(region: &Region) {
    for n in 0..region.len() / PS {
        // SAFETY: page n is inside the mapping.
        unsafe {
            std::ptr::write_bytes((region.addr() + n * PS) as *mut u8, (n % 251 + 1) as u8, PS)
        };
    }
}

/// Microseconds per page to read 64 MiB sequentially after it all moved to memd, with or
/// without trend prefetch.
fn sequential_read(memd: &Memd, token: &Path, prefetch: bool) -> f64 {
    let len = 64 << 20;
    let space = slab_space(memd, token, len as u64);
    let region = Region::new(len);
    fill(&region);
    let range = GuestRange {
        host_addr: region.addr(),
        len,
    };
    let config = RamExtConfig {
        budget_bytes: None,
        prefetch,
        controller: None,
    };
    let engine = RamExt::start(&[range], space.clone(), &config).expect("start the engine");
    engine
        .evict_all(Duration::from_secs(60))
        .expect("move the pages out");
    let start = Instant::now();
    for n in 0..len / PS {
        region.timed_read(n);
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / (len / PS) as f64;
    drop(engine);
    let _ = space.free(len as u64);
    us
}

fn fault_latency(memd: &Memd, token: &Path) -> FaultLatency {
    let len = 64 << 20;
    let pages = len / PS;
    let space = slab_space(memd, token, 2 * len as u64);
    let region = Region::new(len);
    fill(&region);
    let zero_region = Region::new(len);
    let config = RamExtConfig {
        budget_bytes: None,
        prefetch: false,
        controller: None,
    };
    let ranges = [
        GuestRange {
            host_addr: region.addr(),
            len,
        },
        GuestRange {
            host_addr: zero_region.addr(),
            len,
        },
    ];
    let engine = RamExt::start(&ranges, space, &config).expect("start the engine");
    engine
        .evict_all(Duration::from_secs(60))
        .expect("move the pages out");
    // Half the pages timed on an otherwise idle machine, half with a thread keeping the other
    // core busy (as on a loaded host): on an idle VM every hand-off between the faulting
    // thread, the fault thread and memd pays a wake-up from the idle state.
    let order = shuffled(pages);
    let (idle_pages, busy_pages) = order.split_at(pages / 2);
    eprintln!("bench-ram-ext: 64 MiB on memd; timing {pages} remote faults");
    let idle: Vec<f64> = idle_pages.iter().map(|&n| region.timed_read(n)).collect();
    let zero_idle: Vec<f64> = (0..pages / 32)
        .map(|i| zero_region.timed_read(i * 16))
        .collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    };
    let busy: Vec<f64> = busy_pages.iter().map(|&n| region.timed_read(n)).collect();
    // Zero fills come 16 pages at a time: touch every 16th page so each read faults.
    let zero: Vec<f64> = (pages / 32..pages / 16)
        .map(|i| zero_region.timed_read(i * 16))
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = spinner.join();
    let c = engine.counters();
    assert_eq!(c.remote_faults, pages as u64, "one fault per page: {c:?}");
    FaultLatency {
        p50: percentile(busy.clone(), 0.5),
        p99: percentile(busy, 0.99),
        zero_p50: percentile(zero, 0.5),
        idle_p50: percentile(idle.clone(), 0.5),
        idle_p99: percentile(idle, 0.99),
        idle_zero_p50: percentile(zero_idle, 0.5),
    }
}

/// Remote-fault and zero-fill latencies in microseconds, with a busy sibling core and idle.
struct FaultLatency {
    p50: f64,
    p99: f64,
    zero_p50: f64,
    idle_p50: f64,
    idle_p99: f64,
    idle_zero_p50: f64,
}

/// Time of `passes` verify passes after the first one, in ms, for the fill-and-verify guest
/// writing `pages` pages and verifying the first `hot_pages` of them pass after pass, with
/// `remote` as `memory.remote` (None: all local). Also returns the resident pages at the end
/// when the engine ran.
fn run_guest(
    work: &Path,
    name: &str,
    (pages, hot_pages): (u64, u64),
    passes: usize,
    remote: Option<String>,
) -> (f64, Option<u64>) {
    let image = write_guest(
        work,
        &format!("{name}.bin"),
        &guests::long_mode_fill_and_verify_hot(pages, hot_pages),
    );
    let mut vmm = BenchVmm::spawn(work, name);
    let remote = remote.map_or(String::new(), |r| format!(r#","remote":{r}"#));
    let body = format!(
        r#"{{"memory":{{"size":{GUEST_MEMORY}{remote}}},"payload":{{"test_guest":{{"path":"{}","mode":"long"}}}},"serial":{{"mode":"Off"}}}}"#,
        image.display()
    );
    let r = vmm.client.put("vm.create", Some(&body));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    let wait = |vmm: &BenchVmm| {
        vmm.reports
            .recv_timeout(Duration::from_secs(300))
            .expect("the guest stopped reporting")
    };
    let first = wait(&vmm);
    let mut last = first;
    for _ in 0..passes {
        last = wait(&vmm);
    }
    let counters = vmm.client.get("vm.counters").json();
    let resident = counters["ram_ext"]["resident_pages"].as_u64();
    if counters["ram_ext"].is_object() {
        eprintln!("bench-ram-ext: {name}: {}", counters["ram_ext"]);
    }
    // A clean shutdown frees the VM's slabs on memd (a killed VMM would leave them there).
    let _ = vmm.client.put("vmm.shutdown", None);
    let _ = vmm.child.wait();
    ((last - first).as_secs_f64() * 1e3 / passes as f64, resident)
}

fn main() {
    let passes = env_count("PASSES", 3);
    // The working set: 64 MiB unless told otherwise.
    let ws_mib = env_count("WORKING_SET_MIB", 64) as u64;
    let pages = ws_mib << 8;
    let work = tempfile::tempdir().expect("tempdir");
    let token = token_file(work.path());
    let memd = Memd::start(&token);

    let f = fault_latency(&memd, &token);
    eprintln!(
        "bench-ram-ext: remote fault p50 {:.1} us, p99 {:.1} us, zero fill p50 {:.1} us with a busy sibling core; idle: {:.1} / {:.1} / {:.1} us",
        f.p50, f.p99, f.zero_p50, f.idle_p50, f.idle_p99, f.idle_zero_p50
    );
    let mut results = vec![
        ("remote_fault_p50_us".to_string(), f.p50),
        ("remote_fault_p99_us".to_string(), f.p99),
        ("uffd_zero_fault_p50_us".to_string(), f.zero_p50),
        ("remote_fault_idle_p50_us".to_string(), f.idle_p50),
        ("remote_fault_idle_p99_us".to_string(), f.idle_p99),
        ("uffd_zero_fault_idle_p50_us".to_string(), f.idle_zero_p50),
    ];
    let seq_prefetch = sequential_read(&memd, &token, true);
    let seq_plain = sequential_read(&memd, &token, false);
    eprintln!(
        "bench-ram-ext: sequential read of remote memory: {seq_prefetch:.1} us/page with prefetch, {seq_plain:.1} without"
    );
    results.push(("seq_read_us_per_page_prefetch".into(), seq_prefetch));
    results.push(("seq_read_us_per_page_no_prefetch".into(), seq_plain));
    policy_accuracy(&mut results);
    if std::env::var_os("FAULTS_ONLY").is_none() {
        slowdowns(
            work.path(),
            &memd,
            &token,
            pages,
            ws_mib,
            passes,
            &mut results,
        );
    }
    let fields: Vec<String> = results
        .iter()
        .map(|(k, v)| format!("\"{k}\":{v:.3}"))
        .collect();
    println!("{{{}}}", fields.join(","));
}

/// Misses of the engine's CLOCK (userfaultfd-visible references only) and of FIFO (no
/// information) relative to an oracle LRU, on seeded traces, with a budget of a quarter of
/// the pages.
fn policy_accuracy(results: &mut Vec<(String, f64)>) {
    use revenant_remote_mem::ram_ext::policy_sim::{misses, traces, Policy};
    let pages = 16384u32;
    let budget = pages as usize / 4;
    for (name, trace) in [
        ("hot_cold", traces::hot_cold(pages, 2_000_000, 11)),
        (
            "hot_reads_scan",
            traces::hot_reads_with_scan(pages, 2_000_000, 11),
        ),
    ] {
        let lru = misses(Policy::Lru, &trace, pages as usize, budget) as f64;
        let clock = misses(Policy::EngineClock, &trace, pages as usize, budget) as f64;
        let fifo = misses(Policy::Fifo, &trace, pages as usize, budget) as f64;
        eprintln!(
            "bench-ram-ext: {name}: misses LRU {lru}, engine CLOCK {clock} ({:.2}x), FIFO {fifo} ({:.2}x)",
            clock / lru,
            fifo / lru
        );
        results.push((format!("clock_vs_lru_misses_{name}"), clock / lru));
        results.push((format!("fifo_vs_lru_misses_{name}"), fifo / lru));
    }
}

/// The slowdown curve: all local, then budgets of 100/75/50/25% and the controller.
fn slowdowns(
    work: &Path,
    memd: &Memd,
    token: &Path,
    pages: u64,
    ws_mib: u64,
    passes: usize,
    results: &mut Vec<(String, f64)>,
) {
    // Guest pages touched: the working set plus the low 2 MiB (page tables, code, stack).
    let touched = (ws_mib + 2) << 20;
    let remote = |budget: u64, extra: &str| {
        format!(
            r#"{{"servers":"{}","token_file":"{}","replicas":1,"local_budget":{budget}{extra}}}"#,
            memd.endpoint,
            token.display()
        )
    };
    // The pressure controller (5% stall target, 50 ms steps) down to `floor` bytes.
    let controller = |floor: u64| {
        format!(r#","controller":{{"stall_target_pct":5.0,"interval_ms":50,"min_budget":{floor}}}"#)
    };
    // Resident pages at the end, in % of the touched memory.
    let local_pct = |resident: Option<u64>| {
        resident.map_or(0.0, |r| (r * PS as u64) as f64 * 100.0 / touched as f64)
    };
    let (base, _) = run_guest(work, "local", (pages, pages), passes, None);
    eprintln!("bench-ram-ext: all local: {base:.1} ms per pass");
    results.push(("all_local_pass_ms".to_string(), base));
    for pct in [100u64, 75, 50, 25] {
        let budget = (touched * pct / 100) & !(PS as u64 - 1);
        let (ms, _) = run_guest(
            work,
            &format!("local{pct}"),
            (pages, pages),
            passes,
            Some(remote(budget, "")),
        );
        eprintln!("bench-ram-ext: {pct}% local: {ms:.1} ms per pass");
        results.push((format!("slowdown_at_{pct}pct_local"), ms / base));
    }
    let half = (touched / 2) & !(PS as u64 - 1);
    let (ms, _) = run_guest(
        work,
        "local50-noprefetch",
        (pages, pages),
        passes,
        Some(remote(half, r#","prefetch":false"#)),
    );
    eprintln!("bench-ram-ext: 50% local without prefetch: {ms:.1} ms per pass");
    results.push(("slowdown_at_50pct_local_no_prefetch".into(), ms / base));
    let (ms, resident) = run_guest(
        work,
        "controller",
        (pages, pages),
        passes,
        Some(remote(half, &controller(touched / 4))),
    );
    let final_pct = local_pct(resident);
    eprintln!("bench-ram-ext: controller from 50% local: {ms:.1} ms per pass, {final_pct:.0}% of the touched memory resident at the end");
    results.push(("slowdown_at_50pct_local_controller".into(), ms / base));
    results.push(("controller_final_local_pct".into(), final_pct));

    // A workload with a cold part: all pages written once, only the first quarter verified
    // pass after pass. Local memory beyond the hot quarter is what the RAM extension saves.
    let hot = (pages, pages / 4);
    // Its passes take ~1-2 ms, close to the report path's own jitter: time many of them.
    let hot_passes = passes.max(50);
    let (hot_base, _) = run_guest(work, "hot-local", hot, hot_passes, None);
    let (ms, _) = run_guest(work, "hot-local50", hot, hot_passes, Some(remote(half, "")));
    eprintln!(
        "bench-ram-ext: hot quarter: all local {hot_base:.2} ms per pass, 50% local {ms:.2} ms"
    );
    results.push(("hot25_all_local_pass_ms".into(), hot_base));
    results.push(("hot25_slowdown_at_50pct_local".into(), ms / hot_base));
    let (ms, resident) = run_guest(
        work,
        "hot-controller",
        hot,
        // Long enough (~3 s) for the controller to probe down from where the fill left it:
        // it moves 2% per 50 ms interval.
        hot_passes.max(3000),
        Some(remote(half, &controller(touched / 10))),
    );
    let final_pct = local_pct(resident);
    eprintln!("bench-ram-ext: hot quarter, controller from 50%: {ms:.2} ms per pass, {final_pct:.0}% resident at the end");
    results.push(("hot25_slowdown_controller".into(), ms / hot_base));
    results.push(("hot25_controller_final_local_pct".into(), final_pct));
}
