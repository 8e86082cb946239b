//! Times template save and restore on tmpfs: a 128 MiB anonymous "guest RAM" with N MiB written,
//! saved with `save_memory`, then mapped back Cow and Copy; plus a few-KiB state file.
//!
//! Run: `cargo run --release -p revenant-template --example save_bench [DIR]` (DIR defaults to
//! /dev/shm). Prints one line per case, medians of several runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use revenant_template::{
    host_page_size, map_memory, open_template, read_state, save_memory, save_template, write_state,
    Durability, GuestRegionRef, MappedRegion, PageScan, RestoreMode, SaveOptions, SnapshotOptions,
    Template,
};

const GUEST_MIB: usize = 128;
const RUNS: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// A guest region with `touched_mib` MiB of pages written: with data, or with zeros (present
/// in pagemap but skipped by the zero check).
fn guest(touched_mib: usize, zeros: bool) -> MappedRegion {
    let region = MappedRegion::anonymous(0, GUEST_MIB << 20).expect("mmap guest");
    // SAFETY: the benchmark owns the mapping; nothing else touches it.
    let mem = unsafe { region.as_mut_slice() };
    let ps = host_page_size();
    for (i, page) in mem[..touched_mib << 20].chunks_exact_mut(ps).enumerate() {
        if zeros {
            page[0] = 0;
        } else {
            page.fill((i % 255 + 1) as u8);
        }
    }
    region
}

fn time_save(
    region: &MappedRegion,
    path: &Path,
    scan: PageScan,
    threads: usize,
) -> (Duration, u64) {
    // SAFETY: the mapping is live and not written during the save.
    let r = unsafe { GuestRegionRef::from_raw_parts(0, region.as_ptr(), region.len()) };
    let opts = SaveOptions {
        scan,
        sync: false,
        threads,
    };
    let mut times = Vec::new();
    let mut data = 0;
    for _ in 0..RUNS {
        let _ = std::fs::remove_file(path);
        let t = Instant::now();
        let layout = save_memory(&[r], path, &opts).expect("save");
        times.push(t.elapsed());
        data = layout.data_bytes;
    }
    (median(times), data)
}

#[derive(Serialize, Deserialize)]
struct FakeVmState {
    vcpus: Vec<Vec<u64>>,
    lapic: Vec<Vec<u8>>,
    devices: Vec<(String, Vec<u8>)>,
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/dev/shm"));
    let dir = tempfile::tempdir_in(&dir).expect("temp dir");
    let path = dir.path().join("memory.bin");
    println!(
        "guest {GUEST_MIB} MiB, memory file in {}, median of {RUNS}",
        dir.path().display()
    );

    for (touched, zeros) in [(2, false), (32, false), (128, false), (128, true)] {
        let region = guest(touched, zeros);
        let what = if zeros { "zero-filled" } else { "data" };
        for (scan, threads) in [
            (PageScan::Pagemap, 1),
            (PageScan::AllPages, 1),
            (PageScan::Pagemap, 2),
            (PageScan::Pagemap, 4),
        ] {
            let (t, data) = time_save(&region, &path, scan, threads);
            println!(
                "save {touched:>3} MiB {what:<11} scan {scan:<9?} threads {threads}: {:>10}  ({} MiB written)",
                ms(t),
                data >> 20
            );
        }
        // Restore of what was just saved.
        let opts = SaveOptions::default();
        // SAFETY: as above.
        let r = unsafe { GuestRegionRef::from_raw_parts(0, region.as_ptr(), region.len()) };
        let layout = save_memory(&[r], &path, &opts).expect("save");
        for mode in [RestoreMode::Cow, RestoreMode::Copy, RestoreMode::OnDemand] {
            let mut map_t = Vec::new();
            let mut touch_t = Vec::new();
            for _ in 0..RUNS {
                let t = Instant::now();
                let m = match map_memory(&path, &layout, mode) {
                    Ok(m) => m,
                    Err(e) => {
                        println!("map {mode:?}: {e}");
                        break;
                    }
                };
                map_t.push(t.elapsed());
                // First touch of every page the guest had written: what a resumed guest pays.
                let r = &m.regions()[0];
                let t = Instant::now();
                let mut sum = 0u64;
                for off in (0..touched << 20).step_by(host_page_size()) {
                    // SAFETY: off is inside the mapping; nothing writes to it meanwhile.
                    sum += u64::from(unsafe { std::ptr::read_volatile(r.as_ptr().add(off)) });
                }
                touch_t.push(t.elapsed());
                std::hint::black_box(sum);
            }
            if map_t.is_empty() {
                continue;
            }
            println!(
                "map  {touched:>3} MiB {what:<11} mode {mode:<9?}: {:>10}  then first touch of {touched} MiB: {:>10}",
                ms(median(map_t)),
                ms(median(touch_t))
            );
        }
    }

    fork_path(dir.path());

    let state = FakeVmState {
        vcpus: vec![vec![0x1234_5678_9abc_def0; 64]; 2],
        lapic: vec![vec![7u8; 1024]; 2],
        devices: (0..6)
            .map(|i| (format!("dev{i}"), vec![i as u8; 256]))
            .collect(),
    };
    let spath = dir.path().join("state.bin");
    let mut w = Vec::new();
    let mut r = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        write_state(&spath, &state, Durability::NoSync).expect("write state");
        w.push(t.elapsed());
        let t = Instant::now();
        let back: FakeVmState = read_state(&spath).expect("read state");
        r.push(t.elapsed());
        assert_eq!(back.vcpus.len(), 2);
    }
    let size = std::fs::metadata(&spath).map(|m| m.len()).unwrap_or(0);
    println!(
        "state file {size} bytes: write {}  read+verify+decode {}",
        ms(median(w)),
        ms(median(r))
    );
}

/// The template-side part of a fork: open (read + verify the state file, stat the memory file)
/// and map the memory Cow.
fn fork_path(root: &Path) {
    let region = guest(32, false);
    // SAFETY: the mapping is live and not written during the save.
    let r = unsafe { GuestRegionRef::from_raw_parts(0, region.as_ptr(), region.len()) };
    let tdir = root.join("tpl");
    let state = fake_state();
    let config = serde_json::json!({"cpus": {"boot_vcpus": 1}, "memory": {"size": 134217728}});
    let t = Instant::now();
    save_template(&tdir, &[r], &state, &config, &SnapshotOptions::default()).expect("save");
    println!("save_template (32 of 128 MiB written): {}", ms(t.elapsed()));
    let times: Vec<Duration> = (0..101)
        .map(|_| {
            let t = Instant::now();
            let tpl: Template<FakeVmState> = open_template(&tdir).expect("open");
            let m = tpl.map_memory(RestoreMode::Cow).expect("map");
            let e = t.elapsed();
            drop(m);
            e
        })
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    println!(
        "fork path (open_template + map Cow), 101 runs: p50 {}  p99 {}",
        ms(sorted[50]),
        ms(sorted[99])
    );
}

fn fake_state() -> FakeVmState {
    FakeVmState {
        vcpus: vec![vec![0x1234_5678_9abc_def0; 64]; 2],
        lapic: vec![vec![7u8; 1024]; 2],
        devices: (0..6)
            .map(|i| (format!("dev{i}"), vec![i as u8; 256]))
            .collect(),
    }
}
