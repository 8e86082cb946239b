//! The RAM-ext engine on real memory servers and real userfaultfd, with this process's own
//! memory standing in for guest RAM (the VMM-level test with a KVM guest is in
//! `tests/tests/ram_ext.rs`): pages beyond the budget live on the servers and come back
//! intact, writes racing evictions are never lost, a dead replica loses nothing, a drain
//! empties the resident set, and the pressure controller moves the budget.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client_config, page_bytes, scratch, token_file, Memd};
use revenant_remote_mem::ram_ext::{ControllerConfig, GuestRange, RamExt, RamExtConfig};
use revenant_remote_mem::space::SlabSpace;
use revenant_remote_mem::MemClient;
use revenant_template::MappedRegion;

const PS: usize = 4096;

/// Private anonymous memory standing in for guest RAM, unmapped on drop (the template
/// crate's mapping, as a restored VM's RAM).
struct Region(MappedRegion);

impl Region {
    fn new(len: usize) -> Region {
        Region(MappedRegion::anonymous(0, len).unwrap())
    }

    fn page(&self, n: usize) -> &[u8] {
        // SAFETY: this test thread is the mapping's only user (the engine fills and drops
        // pages through the kernel, as for a VMM's guest RAM); `&self` excludes its writers.
        let all = unsafe { self.0.as_slice() };
        &all[n * PS..(n + 1) * PS]
    }

    fn page_mut(&mut self, n: usize) -> &mut [u8] {
        // SAFETY: as in `page`; `&mut self` makes this the only view of the page.
        let all = unsafe { self.0.as_mut_slice() };
        &mut all[n * PS..(n + 1) * PS]
    }

    fn range(&self) -> GuestRange {
        GuestRange {
            host_addr: self.0.as_ptr() as usize,
            len: self.0.len(),
        }
    }
}

fn space(servers: &[&Memd], len: usize) -> SlabSpace {
    let client = MemClient::connect(&client_config(servers, None)).unwrap();
    let space = SlabSpace::new(Arc::new(client));
    space.allocate(len as u64).unwrap();
    space
}

fn start(region: &Region, space: SlabSpace, budget: Option<u64>, prefetch: bool) -> RamExt {
    RamExt::start(
        &[region.range()],
        space,
        &RamExtConfig {
            budget_bytes: budget,
            prefetch,
            controller: None,
        },
    )
    .unwrap()
}

fn fill(region: &mut Region, pages: usize, seed: u64) {
    for n in 0..pages {
        page_bytes(seed, n as u64, region.page_mut(n));
    }
}

fn verify(region: &Region, pages: usize, seed: u64) {
    let mut want = vec![0u8; PS];
    for n in 0..pages {
        page_bytes(seed, n as u64, &mut want);
        assert!(region.page(n) == &want[..], "page {n} differs");
    }
}

#[test]
fn pages_beyond_the_budget_live_remotely_and_come_back_intact() {
    let dir = scratch("ramext-budget");
    let token = token_file(&dir);
    let a = Memd::start(&token, "512M", "16M", &[]);
    let b = Memd::start(&token, "512M", "16M", &[]);
    let len = 64 << 20;
    let mut region = Region::new(len);
    let budget = 8u64 << 20;
    let engine = start(&region, space(&[&a, &b], len), Some(budget), true);
    let pages = len / PS;
    // Every page but the last 256 gets data; those are written with zeros (never shipped).
    fill(&mut region, pages - 256, 7);
    for n in pages - 256..pages {
        region.page_mut(n).fill(0);
        region.page_mut(n)[0] = 1;
        region.page_mut(n)[0] = 0;
    }
    verify(&region, pages - 256, 7);
    for n in pages - 256..pages {
        assert!(region.page(n).iter().all(|&b| b == 0), "page {n}");
    }
    let c = engine.counters();
    eprintln!("{c:?}");
    assert!(c.evicted_pages > 0 && c.written_back_pages > 0, "{c:?}");
    assert!(c.remote_faults > 0, "{c:?}");
    assert!(
        c.zero_pages_dropped > 0,
        "zero pages must be dropped, not shipped: {c:?}"
    );
    assert!(
        c.written_back_pages < (pages as u64) * 3,
        "only dirty pages are written back: {c:?}"
    );
    assert!(
        c.resident_pages <= budget / PS as u64 + 256 + 64,
        "resident {} pages over a {} page budget",
        c.resident_pages,
        budget / PS as u64
    );
    assert!(engine.error().is_none(), "{:?}", engine.error());
    // The sequential verify pass is a trend: prefetch must have fetched ahead.
    assert!(c.prefetched_pages > 0, "{c:?}");
    assert_eq!(
        c.fault_latency_us.counts.iter().sum::<u64>(),
        c.remote_faults
    );
}

#[test]
fn writes_racing_evictions_are_never_lost() {
    let dir = scratch("ramext-race");
    let token = token_file(&dir);
    let a = Memd::start(&token, "256M", "16M", &[]);
    let len = 16 << 20;
    let mut region = Region::new(len);
    // A budget of 1 MiB over 16 MiB: the evictor works all the time while we write.
    let engine = start(&region, space(&[&a], len), Some(1 << 20), false);
    let pages = len / PS;
    let words = PS / 8;
    let mut shadow = vec![0u64; pages * words];
    let mut x = 0x1234_5678_9abc_def1u64;
    let start = Instant::now();
    let mut writes = 0u64;
    while start.elapsed() < Duration::from_secs(3) || writes < 50_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // A few hot pages take most writes, so some are written while being written back.
        let n = if x & 3 != 0 {
            (x >> 8) as usize % (pages / 64)
        } else {
            (x >> 8) as usize % pages
        };
        let word = (x >> 40) as usize % words;
        writes += 1;
        region.page_mut(n)[word * 8..word * 8 + 8].copy_from_slice(&writes.to_le_bytes());
        shadow[n * words + word] = writes;
    }
    let c = engine.counters();
    eprintln!("{writes} writes; {c:?}");
    let mut bad = Vec::new();
    for n in 0..pages {
        let page = region.page(n);
        for w in 0..words {
            let got = u64::from_le_bytes(page[w * 8..w * 8 + 8].try_into().unwrap());
            if got != shadow[n * words + w] {
                bad.push((n, w, got, shadow[n * words + w]));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} words lost, first {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert!(c.evicted_pages > 1000 && c.remote_faults > 100, "{c:?}");
    assert!(engine.error().is_none(), "{:?}", engine.error());
}

#[test]
fn a_dead_replica_loses_no_page() {
    let dir = scratch("ramext-kill");
    let token = token_file(&dir);
    let mut a = Memd::start(&token, "256M", "16M", &[]);
    let b = Memd::start(&token, "256M", "16M", &[]);
    let len = 32 << 20;
    let mut region = Region::new(len);
    let engine = start(&region, space(&[&a, &b], len), Some(4 << 20), true);
    let pages = len / PS;
    fill(&mut region, pages, 11);
    a.kill9();
    verify(&region, pages, 11);
    // And the engine keeps working on the survivor: write and read everything again.
    fill(&mut region, pages, 12);
    verify(&region, pages, 12);
    let c = engine.counters();
    assert!(c.remote_faults > 0 && c.evicted_pages > 0, "{c:?}");
}

#[test]
fn a_drain_empties_the_resident_set() {
    let dir = scratch("ramext-drain");
    let token = token_file(&dir);
    let a = Memd::start(&token, "256M", "16M", &[]);
    let len = 32 << 20;
    let mut region = Region::new(len);
    let pages = len / PS;
    // Data written before the engine starts counts as resident and dirty.
    fill(&mut region, pages / 2, 3);
    let engine = start(&region, space(&[&a], len), None, false);
    assert_eq!(engine.counters().resident_pages, (pages / 2) as u64);
    let out = engine.evict_all(Duration::from_secs(30)).unwrap();
    assert_eq!(out, (pages / 2 * PS) as u64);
    let c = engine.counters();
    assert_eq!(c.resident_pages, 0, "{c:?}");
    assert_eq!(c.remote_pages, (pages / 2) as u64, "{c:?}");
    verify(&region, pages / 2, 3);
    // Untouched pages come back as zeros without asking the servers.
    assert!(region.page(pages - 1).iter().all(|&b| b == 0));
    let c = engine.counters();
    assert!(c.zero_faults > 0 && c.remote_faults > 0, "{c:?}");
}

#[test]
fn discarded_pages_read_as_zero_and_are_never_shipped_or_fetched() {
    let dir = scratch("ramext-discard");
    let token = token_file(&dir);
    let a = Memd::start(&token, "256M", "16M", &[]);
    let len = 16 << 20;
    let mut region = Region::new(len);
    let pages = len / PS;
    fill(&mut region, pages, 5);
    let engine = start(&region, space(&[&a], len), None, false);
    // The first quarter goes remote; the guest then gives up the first eighth (remote
    // pages) and the last eighth (resident pages), plus a partial page that must be kept.
    engine.evict_all(Duration::from_secs(30)).unwrap();
    for n in pages / 4..pages {
        verify_page(&region, n, 5);
    }
    let base = region.range().host_addr;
    let discarder = engine.discarder();
    let before = engine.counters();
    let remote = discarder.discard(base, pages / 8 * PS + 100).unwrap();
    assert_eq!(remote.forgotten, (pages / 8) as u64, "{remote:?}");
    assert_eq!(remote.dropped, 0, "{remote:?}");
    let resident = discarder
        .discard(base + (pages - pages / 8) * PS, pages / 8 * PS)
        .unwrap();
    assert_eq!(resident.dropped, (pages / 8) as u64, "{resident:?}");
    let c = engine.counters();
    assert_eq!(c.discarded_pages, (pages / 4) as u64, "{c:?}");
    assert_eq!(c.resident_pages, before.resident_pages - (pages / 8) as u64);
    // Discarded pages read as zero, without a remote fetch; the rest is intact.
    for n in (0..pages / 8).chain(pages - pages / 8..pages) {
        assert!(region.page(n).iter().all(|&b| b == 0), "page {n}");
    }
    let after = engine.counters();
    assert_eq!(
        after.bytes_in, c.bytes_in,
        "discarded pages must not be fetched"
    );
    for n in pages / 8..pages - pages / 8 {
        verify_page(&region, n, 5);
    }
    // A drain now ships nothing for the discarded pages: only the pages that came back.
    let out = engine.evict_all(Duration::from_secs(30)).unwrap();
    assert_eq!(
        out, 0,
        "clean pages and discarded pages are not written back"
    );
    assert!(engine.error().is_none(), "{:?}", engine.error());
    // After the engine is gone the handle does nothing.
    drop(engine);
    assert_eq!(discarder.discard(base, PS).unwrap().dropped, 0);
}

fn verify_page(region: &Region, n: usize, seed: u64) {
    let mut want = vec![0u8; PS];
    page_bytes(seed, n as u64, &mut want);
    assert!(region.page(n) == &want[..], "page {n} differs");
}

#[test]
fn the_pressure_controller_shrinks_an_idle_budget() {
    let dir = scratch("ramext-ctl");
    let token = token_file(&dir);
    let a = Memd::start(&token, "256M", "16M", &[]);
    let len = 16 << 20;
    let mut region = Region::new(len);
    let pages = len / PS;
    let engine = RamExt::start(
        &[region.range()],
        space(&[&a], len),
        &RamExtConfig {
            budget_bytes: None,
            prefetch: false,
            controller: Some(ControllerConfig {
                stall_target_pct: 1.0,
                interval_ms: 10,
                min_budget: 2 << 20,
            }),
        },
    )
    .unwrap();
    fill(&mut region, pages, 5);
    // No faults, no stall: the budget falls to its floor and the cold pages go remote.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = engine.counters();
        if c.budget_pages == (2 << 20) / PS as u64 && c.resident_pages <= c.budget_pages {
            break;
        }
        assert!(Instant::now() < deadline, "budget stuck: {c:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    verify(&region, pages, 5);
    assert!(engine.counters().remote_faults > 0);
}

#[test]
fn freed_slab_space_can_be_allocated_again() {
    let dir = scratch("ramext-free");
    let token = token_file(&dir);
    let a = Memd::start(&token, "64M", "16M", &[]);
    let first = space(&[&a], 64 << 20);
    // Full: a second VM's space does not fit...
    let client = MemClient::connect(&client_config(&[&a], None)).unwrap();
    let second = SlabSpace::new(Arc::new(client));
    assert!(second.allocate(16 << 20).is_err());
    // ...until the first one frees its slabs.
    first.free(64 << 20).unwrap();
    second.allocate(64 << 20).unwrap();
}
