//! Guest memory save -> map round trips on real files and real mappings (no KVM needed).

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use revenant_template::{
    host_page_size, map_memory, map_memory_into, save_memory, GuestMemoryMapping, GuestRegionRef,
    MapError, MappedRegion, MemoryFileError, MemoryLayout, PageScan, RestoreMode, SaveOptions,
};

/// Template directory on tmpfs when the host has one (that is where templates live), else /tmp.
fn template_dir() -> tempfile::TempDir {
    if Path::new("/dev/shm").is_dir() {
        if let Ok(d) = tempfile::tempdir_in("/dev/shm") {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

/// A value for byte `i` of page `page` that differs between pages and is never all zero.
fn pattern(page: usize, i: usize) -> u8 {
    ((page * 31 + i * 7) % 251 + 1) as u8
}

/// An anonymous "guest RAM" region with data in `data_pages`, and page `zero_page` touched but
/// left zero (present in pagemap, must still not be written).
fn guest_ram(
    guest_addr: u64,
    pages: usize,
    data_pages: &[usize],
    zero_page: usize,
) -> MappedRegion {
    let ps = host_page_size();
    let region = MappedRegion::anonymous(guest_addr, pages * ps).unwrap();
    // SAFETY: the test owns the region and nothing else accesses it.
    let mem = unsafe { region.as_mut_slice() };
    for &p in data_pages {
        for i in 0..ps {
            mem[p * ps + i] = pattern(p, i);
        }
    }
    mem[zero_page * ps + 17] = 0;
    region
}

fn bytes(region: &MappedRegion) -> Vec<u8> {
    // SAFETY: no vCPU or other thread touches test mappings.
    unsafe { region.as_slice() }.to_vec()
}

fn refs(regions: &[MappedRegion]) -> Vec<GuestRegionRef<'_>> {
    regions
        .iter()
        // SAFETY: the regions are live for the borrow and not written while saving.
        .map(|r| unsafe { GuestRegionRef::from_raw_parts(r.guest_addr(), r.as_ptr(), r.len()) })
        .collect()
}

/// Two regions, like a guest with RAM below and above the 32-bit PCI hole.
fn two_region_guest() -> Vec<MappedRegion> {
    vec![
        guest_ram(0, 2048, &[0, 1, 5, 100, 2047], 50),
        guest_ram(0x1_0000_0000, 300, &[299, 3], 7),
    ]
}

fn save(regions: &[MappedRegion], dir: &Path, scan: PageScan) -> (PathBuf, MemoryLayout) {
    let path = dir.join("memory.bin");
    let opts = SaveOptions {
        scan,
        ..SaveOptions::default()
    };
    let layout = save_memory(&refs(regions), &path, &opts).unwrap();
    (path, layout)
}

/// Per-page flags of a mapping from /proc/self/pagemap. Used instead of smaps because the
/// kernel merges neighbouring mappings into one smaps entry, while pagemap is exact per page.
struct PageFlags {
    present: bool,
    /// File page (page cache) rather than a private anonymous copy.
    file: bool,
    /// Mapped only once (by this mapping).
    exclusive: bool,
}

fn page_flags(region: &MappedRegion) -> Vec<PageFlags> {
    let ps = host_page_size();
    let pages = region.len() / ps;
    let mut raw = vec![0u8; pages * 8];
    let f = fs::File::open("/proc/self/pagemap").unwrap();
    f.read_exact_at(&mut raw, (region.as_ptr() as usize / ps * 8) as u64)
        .unwrap();
    raw.chunks_exact(8)
        .map(|e| {
            let v = u64::from_ne_bytes(e.try_into().unwrap());
            PageFlags {
                present: v & (1 << 63) != 0,
                file: v & (1 << 61) != 0,
                exclusive: v & (1 << 56) != 0,
            }
        })
        .collect()
}

/// Pages of the mapping that are private anonymous copies (what Private_Dirty counts).
fn private_pages(region: &MappedRegion) -> Vec<usize> {
    let flags = page_flags(region);
    (0..flags.len())
        .filter(|&i| flags[i].present && !flags[i].file)
        .collect()
}

#[test]
fn save_writes_only_data_pages_into_a_sparse_file() {
    let ps = host_page_size() as u64;
    let dir = template_dir();
    let regions = two_region_guest();
    let (path, layout) = save(&regions, dir.path(), PageScan::Pagemap);

    // 5 + 2 data pages; the touched-but-zero pages and the untouched ones are not written.
    assert_eq!(layout.data_bytes, 7 * ps);
    assert_eq!(layout.page_size, ps);
    assert_eq!(layout.regions.len(), 2);
    assert_eq!(layout.regions[0].file_offset, 0);
    assert_eq!(layout.regions[0].size, 2048 * ps);
    assert_eq!(layout.regions[1].guest_addr, 0x1_0000_0000);
    assert_eq!(layout.regions[1].file_offset % (2 << 20), 0);
    assert!(layout.regions[1].file_offset >= 2048 * ps);
    assert_eq!(layout.file_len, layout.regions[1].file_offset + 300 * ps);

    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), layout.file_len);
    // Allocated space is the data pages (plus filesystem slack), not the 8+ MiB file length.
    let allocated = meta.blocks() * 512;
    assert!(allocated <= 7 * ps + 64 * 1024, "allocated {allocated}");
    // No temporary file is left next to it.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn all_pages_scan_and_threaded_save_write_the_same_file_as_pagemap_scan() {
    let dir = template_dir();
    let regions = two_region_guest();
    let (path, layout) = save(&regions, dir.path(), PageScan::Pagemap);
    let first = fs::read(&path).unwrap();
    let (path, layout2) = save(&regions, dir.path(), PageScan::AllPages);
    assert_eq!(layout, layout2);
    assert!(fs::read(&path).unwrap() == first);
    // Several writer threads (one piece per region here) produce the same file too.
    let opts = SaveOptions {
        threads: 3,
        ..SaveOptions::default()
    };
    let layout3 = save_memory(&refs(&regions), &path, &opts).unwrap();
    assert_eq!(layout, layout3);
    assert!(fs::read(&path).unwrap() == first);
}

#[test]
fn cow_and_copy_restore_the_saved_bytes() {
    let dir = template_dir();
    let regions = two_region_guest();
    let (path, layout) = save(&regions, dir.path(), PageScan::Pagemap);
    for mode in [RestoreMode::Cow, RestoreMode::Copy] {
        let mapped = map_memory(&path, &layout, mode).unwrap();
        assert_eq!(mapped.regions().len(), 2);
        for (orig, back) in regions.iter().zip(mapped.regions()) {
            assert_eq!(back.guest_addr(), orig.guest_addr());
            assert_eq!(back.len(), orig.len());
            assert!(
                bytes(back) == bytes(orig),
                "{mode:?} region {:#x}",
                orig.guest_addr()
            );
        }
    }
}

#[test]
fn restores_into_reserved_memory_land_at_its_addresses() {
    let dir = template_dir();
    let regions = two_region_guest();
    let (path, layout) = save(&regions, dir.path(), PageScan::Pagemap);
    for mode in [RestoreMode::Cow, RestoreMode::Copy, RestoreMode::OnDemand] {
        // What a prepared VM holds: empty regions whose addresses KVM already knows.
        let reserved: Vec<MappedRegion> = regions
            .iter()
            .map(|r| MappedRegion::anonymous(r.guest_addr(), r.len()).unwrap())
            .collect();
        let addrs: Vec<usize> = reserved.iter().map(|r| r.as_ptr() as usize).collect();
        let mapped = map_memory_into(&path, &layout, mode, &[], Some(reserved)).unwrap();
        for ((orig, back), addr) in regions.iter().zip(mapped.regions()).zip(&addrs) {
            assert_eq!(back.as_ptr() as usize, *addr, "{mode:?}: moved");
            assert!(
                bytes(back) == bytes(orig),
                "{mode:?} region {:#x}",
                orig.guest_addr()
            );
        }
    }
    // A prepared VM of another size is refused (the caller then restores into a fresh VM).
    let wrong = vec![MappedRegion::anonymous(0, 4096 * 16).unwrap()];
    assert!(matches!(
        map_memory_into(&path, &layout, RestoreMode::Cow, &[], Some(wrong)),
        Err(MapError::ReservedMismatch { .. })
    ));
}

#[test]
fn copy_restore_allocates_only_the_data_pages() {
    let ps = host_page_size() as u64;
    let dir = template_dir();
    let regions = two_region_guest();
    let (path, layout) = save(&regions, dir.path(), PageScan::Pagemap);
    let mapped = map_memory(&path, &layout, RestoreMode::Copy).unwrap();
    // Region 0 has data in pages 0, 1, 5, 100, 2047; holes were not read, so not resident.
    let flags = page_flags(&mapped.regions()[0]);
    let resident: Vec<usize> = (0..flags.len()).filter(|&i| flags[i].present).collect();
    assert_eq!(resident, vec![0, 1, 5, 100, 2047]);
    assert_eq!(layout.data_bytes, 7 * ps);
}

#[test]
fn cow_writes_stay_private_and_untouched_pages_are_shared() {
    let ps = host_page_size();
    let dir = template_dir();
    let regions = two_region_guest();
    let (path, layout) = save(&regions, dir.path(), PageScan::Pagemap);
    let file_before = fs::read(&path).unwrap();

    let a = map_memory(&path, &layout, RestoreMode::Cow).unwrap();
    let b = map_memory(&path, &layout, RestoreMode::Cow).unwrap();
    let (ra, rb) = (&a.regions()[0], &b.regions()[0]);
    // Reading every page of both clones maps the file's pages, it does not copy them.
    assert!(bytes(ra) == bytes(rb));
    assert_eq!(private_pages(ra), Vec::<usize>::new());
    assert_eq!(private_pages(rb), Vec::<usize>::new());
    // Every page of A is the file's page and is also mapped by B: shared, not copied.
    let fa = page_flags(ra);
    assert!(fa.iter().all(|f| f.present && f.file && !f.exclusive));

    // A guest write to page 5 of clone A: one private page in A, nothing in B, file unchanged.
    // SAFETY: the test owns the mapping; no other access while the slice lives.
    let ra_mem = unsafe { ra.as_mut_slice() };
    ra_mem[5 * ps + 3] = 0xAB;
    assert_eq!(private_pages(ra), vec![5]);
    assert_eq!(private_pages(rb), Vec::<usize>::new());
    assert_eq!(bytes(rb)[5 * ps + 3], pattern(5, 3));
    assert!(fs::read(&path).unwrap() == file_before);
    // A fresh clone sees the template, not clone A's write.
    let c = map_memory(&path, &layout, RestoreMode::Cow).unwrap();
    assert_eq!(bytes(&c.regions()[0])[5 * ps + 3], pattern(5, 3));
}

#[test]
fn resaving_over_a_mapped_template_leaves_live_clones_intact() {
    let ps = host_page_size();
    let dir = template_dir();
    let regions = two_region_guest();
    let (path, layout) = save(&regions, dir.path(), PageScan::Pagemap);
    let clone = map_memory(&path, &layout, RestoreMode::Cow).unwrap();
    let other = vec![guest_ram(0, 16, &[0, 5], 1)];
    save(&other, dir.path(), PageScan::Pagemap);
    // The clone still reads the old template's page 100 (the new file is far shorter).
    assert_eq!(bytes(&clone.regions()[0])[100 * ps], pattern(100, 0));
}

#[test]
fn snapshot_of_a_cow_clone_needs_all_pages_scan() {
    let ps = host_page_size();
    let dir = template_dir();
    let regions = two_region_guest();
    let (path, layout) = save(&regions, dir.path(), PageScan::Pagemap);
    let clone = map_memory(&path, &layout, RestoreMode::Cow).unwrap();
    // SAFETY: the test owns the mapping.
    let clone_mem = unsafe { clone.regions()[0].as_mut_slice() };
    clone_mem[9 * ps] = 0x5A;

    let sub = tempfile::tempdir_in(dir.path()).unwrap();
    let (path2, layout2) = save(clone.regions(), sub.path(), PageScan::AllPages);
    let again = map_memory(&path2, &layout2, RestoreMode::Copy).unwrap();
    let back = bytes(&again.regions()[0]);
    assert_eq!(back[9 * ps], 0x5A);
    // Page 100 was never touched in the clone (not present in its page tables) yet holds data.
    assert_eq!(back[100 * ps + 1], pattern(100, 1));
}

#[test]
fn missing_memory_file_is_a_clear_error() {
    let dir = template_dir();
    let regions = two_region_guest();
    let (path, layout) = save(&regions, dir.path(), PageScan::Pagemap);
    fs::remove_file(&path).unwrap();
    let err = map_memory(&path, &layout, RestoreMode::Cow).unwrap_err();
    assert!(matches!(err, MapError::MissingFile { .. }), "{err:?}");
    assert!(err.to_string().contains("memory.bin"), "{err}");
}

#[test]
fn short_memory_file_is_refused_before_mapping() {
    let dir = template_dir();
    let regions = two_region_guest();
    let (path, layout) = save(&regions, dir.path(), PageScan::Pagemap);
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(layout.file_len - 4096).unwrap();
    for mode in [RestoreMode::Cow, RestoreMode::Copy] {
        match map_memory(&path, &layout, mode) {
            Err(MapError::TooShort {
                expected, found, ..
            }) => {
                assert_eq!(expected, layout.file_len);
                assert_eq!(found, layout.file_len - 4096);
            }
            other => panic!("expected TooShort, got {other:?}"),
        }
    }
    // Writing the missing tail back makes it mappable again.
    f.write_all_at(&[0], layout.file_len - 1).unwrap();
    assert!(map_memory(&path, &layout, RestoreMode::Cow).is_ok());
}

#[test]
fn inconsistent_layouts_are_refused() {
    let dir = template_dir();
    let regions = two_region_guest();
    let (path, layout) = save(&regions, dir.path(), PageScan::Pagemap);
    let mut cases = Vec::new();
    let mut l = layout.clone();
    l.page_size = 65536;
    cases.push(("page size", l));
    let mut l = layout.clone();
    l.regions[1].size += 4096;
    cases.push(("past the end", l));
    let mut l = layout.clone();
    l.regions[0].size = 100;
    cases.push(("unaligned size", l));
    let mut l = layout.clone();
    l.regions[1].guest_addr = 4096;
    cases.push(("overlap", l));
    let mut l = layout.clone();
    l.regions[0].file_offset = u64::MAX - 4095;
    cases.push(("offset overflow", l));
    for (what, l) in cases {
        let err = map_memory(&path, &l, RestoreMode::Cow).unwrap_err();
        assert!(matches!(err, MapError::InvalidLayout(_)), "{what}: {err:?}");
    }
}

#[test]
fn unaligned_host_memory_is_refused() {
    let dir = template_dir();
    let region = guest_ram(0, 4, &[0], 1);
    // SAFETY: a sub-range of a live test mapping, not written while saving.
    let bytes = unsafe { &region.as_slice()[1..4097] };
    let err = save_memory(
        &[GuestRegionRef::new(0, bytes)],
        &dir.path().join("m"),
        &SaveOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, MemoryFileError::Unaligned { .. }), "{err:?}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// OnDemand mapping, or None (with a SKIP line) where this process may not use userfaultfd.
fn map_on_demand(path: &Path, layout: &MemoryLayout) -> Option<GuestMemoryMapping> {
    match map_memory(path, layout, RestoreMode::OnDemand) {
        Ok(m) => Some(m),
        Err(MapError::Userfaultfd(e)) => {
            eprintln!("SKIP: userfaultfd not available to this process: {e}");
            None
        }
        Err(e) => panic!("OnDemand map failed: {e}"),
    }
}

#[test]
fn on_demand_restore_loads_pages_on_first_touch() {
    let ps = host_page_size();
    let dir = template_dir();
    let regions = two_region_guest();
    let (path, layout) = save(&regions, dir.path(), PageScan::Pagemap);
    let file_before = fs::read(&path).unwrap();
    let Some(mapped) = map_on_demand(&path, &layout) else {
        return;
    };
    let r0 = &mapped.regions()[0];
    // Nothing is loaded up front.
    assert!(page_flags(r0).iter().all(|f| !f.present));

    // A read of one byte loads that page and the fault-around window after it (16 pages).
    // Page 110 first, then page 100: the second window runs into the first and stops there.
    // SAFETY: reads of a test-owned mapping, served by the fault thread.
    let (b110, b100) = unsafe {
        (
            std::ptr::read_volatile(r0.as_ptr().add(110 * ps + 9)),
            std::ptr::read_volatile(r0.as_ptr().add(100 * ps + 9)),
        )
    };
    assert_eq!(b110, 0); // a hole in the template
    assert_eq!(b100, pattern(100, 9));
    let present: Vec<usize> = page_flags(r0)
        .iter()
        .enumerate()
        .filter(|(_, f)| f.present)
        .map(|(i, _)| i)
        .collect();
    // Pages 100 (the fault) and 110..126 (the first window) are loaded; nothing outside the
    // two windows. (Whether 101..110 are prefetched depends on the kernel: a zero-page fill of
    // 101..126 fails as a whole at the already present page 110.)
    assert!(present.contains(&100), "{present:?}");
    assert!((110..126).all(|p| present.contains(&p)), "{present:?}");
    assert!(
        present.iter().all(|p| (100..126).contains(p)),
        "{present:?}"
    );
    // Fault-around stops at the end of the region.
    // SAFETY: as above.
    let last = unsafe { std::ptr::read_volatile(r0.as_ptr().add(2047 * ps)) };
    assert_eq!(last, pattern(2047, 0));

    // Whole contents (data pages, holes, the touched-but-zero page) match the source.
    for (orig, back) in regions.iter().zip(mapped.regions()) {
        assert!(
            bytes(back) == bytes(orig),
            "region {:#x}",
            orig.guest_addr()
        );
    }
    // Writes (first touch being a write included) stay private.
    // SAFETY: test-owned mapping, no other access while the slice lives.
    let r1 = unsafe { mapped.regions()[1].as_mut_slice() };
    r1[3 * ps] ^= 0xFF;
    r1[10 * ps] = 1;
    assert!(fs::read(&path).unwrap() == file_before);
    assert_eq!(mapped.on_demand_error(), None);
    drop(mapped); // stops the fault thread, then unmaps
}

#[test]
fn on_demand_pages_written_first_are_loaded_before_the_write() {
    let ps = host_page_size();
    let dir = template_dir();
    let regions = two_region_guest();
    let (path, layout) = save(&regions, dir.path(), PageScan::Pagemap);
    let Some(mapped) = map_on_demand(&path, &layout) else {
        return;
    };
    // SAFETY: test-owned mapping, no other access while the slice lives.
    let r0 = unsafe { mapped.regions()[0].as_mut_slice() };
    r0[5 * ps] = 0;
    assert_eq!(r0[5 * ps + 1], pattern(5, 1));
    assert_eq!(r0[5 * ps], 0);
}

#[test]
fn runs_crossing_scan_chunks_and_thread_pieces_are_saved_whole() {
    let ps = host_page_size();
    // 66 MiB: crosses the 16384-page pagemap chunk; with 3 threads the pieces are 22 MiB.
    let pages = (66 << 20) / ps;
    let piece = (22 << 20) / ps;
    let data = [piece - 1, piece, 16383, 16384, pages - 1];
    let region = guest_ram(0x10_0000, pages, &data, 7);
    let dir = template_dir();
    for threads in [1, 3] {
        let path = dir.path().join(format!("m{threads}"));
        let opts = SaveOptions {
            threads,
            ..SaveOptions::default()
        };
        // SAFETY: the mapping is live and not written while saving.
        let r = unsafe { GuestRegionRef::from_raw_parts(0x10_0000, region.as_ptr(), region.len()) };
        let layout = save_memory(&[r], &path, &opts).unwrap();
        assert_eq!(
            layout.data_bytes,
            (data.len() * ps) as u64,
            "threads {threads}"
        );
        let back = map_memory(&path, &layout, RestoreMode::Copy).unwrap();
        assert!(
            bytes(&back.regions()[0]) == bytes(&region),
            "threads {threads}"
        );
    }
}

#[test]
fn overlapping_guest_regions_are_refused_at_save() {
    let dir = template_dir();
    let a = guest_ram(0x1000_0000, 4, &[0], 1);
    let b = guest_ram(0x1000_2000, 4, &[0], 1);
    let err = save_memory(
        &refs(&[a, b]),
        &dir.path().join("m"),
        &SaveOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, MemoryFileError::OverlappingRegions { .. }),
        "{err:?}"
    );
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A page source that is not the memory file (as a memory server is for `remote` restore):
/// the file's bytes in a vector, counting reads.
struct VecSource {
    bytes: Vec<u8>,
    reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl revenant_template::PageSource for VecSource {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let start = offset as usize;
        let src = self
            .bytes
            .get(start..start + buf.len())
            .ok_or_else(|| std::io::Error::other("read past the end"))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[test]
fn any_page_source_serves_first_touches() {
    let ps = host_page_size();
    let dir = template_dir();
    let regions = two_region_guest();
    let (path, layout) = save(&regions, dir.path(), PageScan::Pagemap);
    let reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let source = VecSource {
        bytes: fs::read(&path).unwrap(),
        reads: reads.clone(),
    };
    let mapped = match revenant_template::map_memory_from(&layout, Box::new(source), &[]) {
        Ok(m) => m,
        Err(MapError::Userfaultfd(e)) => {
            eprintln!("SKIP: userfaultfd not available to this process: {e}");
            return;
        }
        Err(e) => panic!("map_memory_from failed: {e}"),
    };
    assert_eq!(
        reads.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing read up front"
    );
    let r0 = &mapped.regions()[0];
    // SAFETY: a read of a test-owned mapping, served by the fault thread.
    let b = unsafe { std::ptr::read_volatile(r0.as_ptr().add(100 * ps + 9)) };
    assert_eq!(b, pattern(100, 9));
    assert!(reads.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(mapped.on_demand_error().is_none());
}

#[test]
fn prefetched_pages_need_no_fault_and_faults_are_recorded() {
    let ps = host_page_size();
    let dir = template_dir();
    let regions = two_region_guest();
    let (path, layout) = save(&regions, dir.path(), PageScan::Pagemap);
    let base = layout.regions[0].file_offset;
    let prefetch: Vec<u64> = (100..104).map(|p| base + (p * ps) as u64).collect();
    let mapped = match revenant_template::map_memory_prefetched(
        &path,
        &layout,
        RestoreMode::OnDemand,
        &prefetch,
    ) {
        Ok(m) => m,
        Err(MapError::Userfaultfd(e)) => {
            eprintln!("SKIP: userfaultfd not available to this process: {e}");
            return;
        }
        Err(e) => panic!("map failed: {e}"),
    };
    mapped.wait_prefetched();
    let r0 = &mapped.regions()[0];
    let flags = page_flags(r0);
    assert!(
        (100..104).all(|p| flags[p].present),
        "prefetched pages are present"
    );
    // SAFETY: reads of a test-owned mapping.
    let (data, zero) = unsafe {
        (
            std::ptr::read_volatile(r0.as_ptr().add(100 * ps + 5)),
            std::ptr::read_volatile(r0.as_ptr().add(102 * ps + 5)),
        )
    };
    assert_eq!(
        (data, zero),
        (pattern(100, 5), 0),
        "page 100 holds data, 102 is a hole"
    );
    assert_eq!(mapped.faults(), 0, "a prefetched page must not fault");
    // A page outside the working set faults; it and its fault-around window are recorded.
    // SAFETY: as above.
    let _ = unsafe { std::ptr::read_volatile(r0.as_ptr().add(200 * ps)) };
    assert_eq!(mapped.faults(), 1);
    let recorded = mapped.faulted_offsets();
    assert_eq!(recorded.first(), Some(&(base + (200 * ps) as u64)));
    assert_eq!(
        recorded.len(),
        16,
        "the 16-page fault-around window: {recorded:?}"
    );
}
