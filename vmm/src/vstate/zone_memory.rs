//! Guest RAM made of `memory.zones`: each zone anonymous or backed by its file, MAP_SHARED
//! (the guest's writes go to the file: kata's VM templating) or MAP_PRIVATE.
//!
//! The zones are laid out one after the other in guest-physical order over the same RAM
//! ranges a VM of the same total size gets without zones (RAM up to the MMIO gap, the rest
//! from 4 GiB), so the guest sees the same memory map either way; a zone that straddles the
//! gap becomes two mappings of its file at different offsets.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryRegion, MmapRegion};

use super::memory::{GuestMemoryMmap, GuestRegionMmap, MMIO_GAP_END, MMIO_GAP_START};
use crate::config::{ConfigError, MemoryZoneConfig};

#[derive(Debug, thiserror::Error)]
pub enum ZoneMemoryError {
    #[error("cannot open {path}: {source}")]
    Open {
        zone: usize,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot size {path} to {size} bytes: {source}")]
    Size {
        zone: usize,
        path: PathBuf,
        size: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot map memory.zones[{zone}] ({size:#x} bytes at guest address {guest_addr:#x}): {source}")]
    Map {
        zone: usize,
        guest_addr: u64,
        size: u64,
        #[source]
        source: vm_memory::mmap::MmapRegionError,
    },
    #[error("cannot create the file for shared guest RAM ({size} bytes) in {dir} or as a memfd: {source}", dir = SHARED_RAM_DIR)]
    SharedFile {
        size: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("guest memory layout of the zones: {0}")]
    Layout(#[source] vm_memory::GuestRegionCollectionError),
    #[error("cannot remap guest memory at {guest_addr:#x} copy-on-write: {source}")]
    Remap {
        guest_addr: u64,
        #[source]
        source: std::io::Error,
    },
}

impl ZoneMemoryError {
    /// A zone file that cannot be opened or sized is the request's fault: name the field.
    pub fn config_error(&self) -> Option<ConfigError> {
        match self {
            ZoneMemoryError::Open { zone, .. } | ZoneMemoryError::Size { zone, .. } => Some(
                ConfigError::new(&format!("memory.zones[{zone}].file"), self.to_string()),
            ),
            _ => None,
        }
    }
}

/// One mapping of a zone: `size` bytes at `guest_addr`, from `zone_offset` into the zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZonePiece {
    pub zone: usize,
    pub guest_addr: u64,
    pub size: u64,
    pub zone_offset: u64,
}

/// Where zones of `sizes` go: one after the other from guest address 0, skipping the MMIO
/// gap (a zone that reaches it continues at 4 GiB, as a second piece).
pub fn zone_pieces(sizes: &[u64]) -> Vec<ZonePiece> {
    let mut pieces = Vec::with_capacity(sizes.len() + 1);
    // Offset into the guest's RAM (all zones together), before the gap is skipped.
    let mut ram = 0u64;
    for (zone, &size) in sizes.iter().enumerate() {
        let mut done = 0;
        while done < size {
            let at = ram + done;
            let (guest_addr, room) = if at < MMIO_GAP_START {
                (at, MMIO_GAP_START - at)
            } else {
                (at - MMIO_GAP_START + MMIO_GAP_END, u64::MAX)
            };
            let n = (size - done).min(room);
            pieces.push(ZonePiece {
                zone,
                guest_addr,
                size: n,
                zone_offset: done,
            });
            done += n;
        }
        ram += size;
    }
    pieces
}

/// Maps the zones (validated config: sizes page aligned, files in existing directories).
/// Zone files are created if missing and sized to the zone.
pub fn create_zone_memory(zones: &[MemoryZoneConfig]) -> Result<GuestMemoryMmap, ZoneMemoryError> {
    let backing = zones
        .iter()
        .enumerate()
        .map(|(i, z)| {
            z.file
                .as_deref()
                .map(|p| open_zone_file(i, p, z.size).map(|f| (Arc::new(f), z.shared)))
                .transpose()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sizes: Vec<u64> = zones.iter().map(|z| z.size).collect();
    map_zones(&sizes, &backing)
}

/// Where `memory.shared` RAM lives: an unnamed file on this tmpfs, which a snapshot into a
/// template directory on the same filesystem turns into the template's memory file by a link.
pub const SHARED_RAM_DIR: &str = "/dev/shm";

/// `memory.shared: true` without zones (Cloud Hypervisor's field, which kata sets with
/// virtio-fs): `size` bytes of guest RAM mapped MAP_SHARED from an unnamed file in
/// [`SHARED_RAM_DIR`] (`O_TMPFILE`, so it can still be linked), or from a memfd where that
/// directory can't hold one (then snapshots copy it in the kernel instead of linking it).
pub fn create_shared_memory(size: u64) -> Result<GuestMemoryMmap, ZoneMemoryError> {
    let file = match linkable_ram_file(size) {
        Some(f) => f,
        None => {
            memfd("revenant-ram").map_err(|source| ZoneMemoryError::SharedFile { size, source })?
        }
    };
    map_shared_ram_file(file, size)
}

/// `memory.shared` unset: like [`create_shared_memory`] when [`SHARED_RAM_DIR`] can hold the
/// RAM (a snapshot there links it), else `None` (the caller maps anonymous memory: a memfd
/// would be no cheaper to snapshot).
pub fn create_linkable_memory(size: u64) -> Result<Option<GuestMemoryMmap>, ZoneMemoryError> {
    linkable_ram_file(size)
        .map(|file| map_shared_ram_file(file, size))
        .transpose()
}

/// Sizes the (new, empty) `file` to the RAM and maps all of it MAP_SHARED as the guest RAM.
fn map_shared_ram_file(file: File, size: u64) -> Result<GuestMemoryMmap, ZoneMemoryError> {
    file.set_len(size)
        .map_err(|source| ZoneMemoryError::SharedFile { size, source })?;
    map_zones(&[size], &[Some((Arc::new(file), true))])
}

/// An unnamed (`O_TMPFILE`), still linkable file in [`SHARED_RAM_DIR`], if that filesystem
/// has room for `size` bytes now. A full tmpfs would SIGBUS the guest's first touch of a page
/// it cannot hold, so less room than all of the RAM means no file.
fn linkable_ram_file(size: u64) -> Option<File> {
    let tmpfile = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(SHARED_RAM_DIR);
    match tmpfile.and_then(|f| room_for(&f, size).map(|room| (f, room))) {
        Ok((f, true)) => Some(f),
        Ok((_, false)) => {
            tracing::info!("{SHARED_RAM_DIR} has less than {size} bytes free: guest RAM not in a linkable file (snapshots copy it)");
            None
        }
        Err(e) => {
            tracing::debug!(
                "no O_TMPFILE in {SHARED_RAM_DIR} ({e}): guest RAM not in a linkable file"
            );
            None
        }
    }
}

/// Whether the filesystem of `file` has `size` bytes free for an unprivileged user.
fn room_for(file: &File, size: u64) -> std::io::Result<bool> {
    Ok(free_bytes(file)? >= size)
}

/// Bytes free for an unprivileged user on the filesystem of `file` (a file or a directory).
pub(crate) fn free_bytes(file: &File) -> std::io::Result<u64> {
    // SAFETY: statvfs is plain data; all-zero is a valid value for fstatvfs to overwrite.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open for the call and `st` is a valid, writable statvfs.
    if unsafe { libc::fstatvfs(file.as_raw_fd(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

fn memfd(name: &str) -> std::io::Result<File> {
    let name = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call, which only reads it.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and nothing else owns it.
    Ok(unsafe { <File as std::os::unix::io::FromRawFd>::from_raw_fd(fd) })
}

/// Maps zones of `sizes` (see [`zone_pieces`]), each anonymous (None) or a range of its file,
/// MAP_SHARED when the flag is set and MAP_PRIVATE otherwise.
fn map_zones(
    sizes: &[u64],
    backing: &[Option<(Arc<File>, bool)>],
) -> Result<GuestMemoryMmap, ZoneMemoryError> {
    let regions = zone_pieces(sizes)
        .into_iter()
        .map(|p| {
            let map_err = |source| ZoneMemoryError::Map {
                zone: p.zone,
                guest_addr: p.guest_addr,
                size: p.size,
                source,
            };
            let len = usize::try_from(p.size)
                .map_err(|_| map_err(vm_memory::mmap::MmapRegionError::InvalidOffsetLength))?;
            let prot = libc::PROT_READ | libc::PROT_WRITE;
            let mapping = match backing.get(p.zone).and_then(Option::as_ref) {
                Some((file, shared)) => {
                    let share = if *shared {
                        libc::MAP_SHARED
                    } else {
                        libc::MAP_PRIVATE
                    };
                    MmapRegion::build(
                        Some(FileOffset::from_arc(file.clone(), p.zone_offset)),
                        len,
                        prot,
                        share | libc::MAP_NORESERVE,
                    )
                }
                None => MmapRegion::build(
                    None,
                    len,
                    prot,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                ),
            }
            .map_err(map_err)?;
            GuestRegionMmap::new(mapping, GuestAddress(p.guest_addr))
                .ok_or_else(|| map_err(vm_memory::mmap::MmapRegionError::InvalidOffsetLength))
        })
        .collect::<Result<Vec<_>, _>>()?;
    GuestMemoryMmap::from_regions(regions).map_err(ZoneMemoryError::Layout)
}

fn open_zone_file(zone: usize, path: &Path, size: u64) -> Result<File, ZoneMemoryError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| ZoneMemoryError::Open {
            zone,
            path: path.to_path_buf(),
            source,
        })?;
    let size_err = |source| ZoneMemoryError::Size {
        zone,
        path: path.to_path_buf(),
        size,
        source,
    };
    // A file that already has the zone's size is left alone (no metadata change).
    if file.metadata().map_err(size_err)?.len() != size {
        file.set_len(size).map_err(size_err)?;
    }
    Ok(file)
}

/// A guest RAM region whose bytes are a range of a file it maps MAP_SHARED.
#[derive(Clone, Debug)]
pub struct SharedFileRegion {
    pub guest_addr: u64,
    pub size: u64,
    pub file: Arc<File>,
    pub file_offset: u64,
}

/// The regions of `mem` as file ranges, when every one of them is a MAP_SHARED file mapping
/// (then the files hold all of guest RAM and a snapshot needs no copy through memory); None
/// when any region is anonymous or private.
pub fn shared_file_regions(mem: &GuestMemoryMmap) -> Option<Vec<SharedFileRegion>> {
    mem.iter()
        .map(|r| {
            let f = r.file_offset()?;
            (r.flags() & libc::MAP_SHARED != 0).then(|| SharedFileRegion {
                guest_addr: r.start_addr().0,
                size: r.len(),
                file: f.arc().clone(),
                file_offset: f.start(),
            })
        })
        .collect()
}

/// Whether any region of `mem` is a file mapping (whose pages may hold data the process never
/// touched: a page scan must read them all).
pub fn has_file_regions(mem: &GuestMemoryMmap) -> bool {
    mem.iter().any(|r| r.file_offset().is_some())
}

/// Replaces every MAP_SHARED file mapping of `mem` by a MAP_PRIVATE mapping of the same file
/// range at the same address. After a snapshot linked the guest's file into a template, this
/// VMM (and the guest, which may run on) can then no longer change the template through its
/// own mapping: writes land in private copies of the pages. The contents do not change: a
/// fresh private mapping reads the file.
///
/// KVM's memory slots keep pointing at the same host addresses; KVM drops its old translations
/// through its MMU notifier. vm-memory still reports the regions' original flags (MAP_SHARED),
/// so the caller records the change ([`crate::vstate::discard::GuestDiscard`]): a later
/// snapshot must copy, and discarding a page must not punch it out of the template's file.
pub fn make_private(mem: &GuestMemoryMmap) -> Result<(), ZoneMemoryError> {
    for r in mem.iter() {
        let Some(f) = r.file_offset() else { continue };
        if r.flags() & libc::MAP_SHARED == 0 {
            continue;
        }
        let remap_err = |source| ZoneMemoryError::Remap {
            guest_addr: r.start_addr().0,
            source,
        };
        let offset = libc::off_t::try_from(f.start())
            .map_err(|_| remap_err(std::io::Error::from_raw_os_error(libc::EOVERFLOW)))?;
        // SAFETY: `r.as_ptr()..+r.len()` is exactly one live mapping owned by the region (it
        // unmaps that same range when dropped, which then unmaps this replacement). MAP_FIXED
        // swaps it atomically for a private mapping of the same file range, so every byte
        // reads the same before and after for any thread (the file holds what the shared
        // mapping showed); no Rust reference into guest memory exists (it is only accessed
        // through volatile slices and raw pointers).
        let addr = unsafe {
            libc::mmap(
                r.as_ptr().cast(),
                r.len() as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_NORESERVE,
                f.file().as_raw_fd(),
                offset,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(remap_err(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// A file's identity (device and inode): what a hard link shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(file: &File) -> std::io::Result<FileId> {
        let m = file.metadata()?;
        Ok(FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// The file at `path` and its number of hard links; None when there is none.
    pub fn at(path: &Path) -> Option<(FileId, u64)> {
        let m = std::fs::metadata(path).ok()?;
        Some((
            FileId {
                dev: m.dev(),
                ino: m.ino(),
            },
            m.nlink(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use vm_memory::Bytes;

    use super::*;
    use crate::vstate::memory::ram_ranges;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn zone(id: &str, size: u64, file: Option<&Path>, shared: bool) -> MemoryZoneConfig {
        MemoryZoneConfig {
            id: id.into(),
            size,
            file: file.map(Path::to_path_buf),
            shared,
        }
    }

    #[test]
    fn zones_fill_the_same_ram_ranges_split_around_the_gap() {
        let p = zone_pieces(&[GIB, 3 * GIB, MIB]);
        let piece = |zone, guest_addr, size, zone_offset| ZonePiece {
            zone,
            guest_addr,
            size,
            zone_offset,
        };
        assert_eq!(
            p,
            vec![
                piece(0, 0, GIB, 0),
                piece(1, GIB, 2 * GIB, 0),
                piece(1, MMIO_GAP_END, GIB, 2 * GIB),
                piece(2, MMIO_GAP_END + GIB, MIB, 0),
            ]
        );
        // Merged, the pieces are exactly the ranges a VM of the same size gets without zones.
        for sizes in [vec![32 * MIB], vec![GIB, 3 * GIB, MIB], vec![3 * GIB, 4096]] {
            let total: u64 = sizes.iter().sum();
            let mut merged: Vec<(GuestAddress, u64)> = Vec::new();
            for p in zone_pieces(&sizes) {
                match merged.last_mut() {
                    Some((a, l)) if a.0 + *l == p.guest_addr => *l += p.size,
                    _ => merged.push((GuestAddress(p.guest_addr), p.size)),
                }
            }
            assert_eq!(merged, ram_ranges(total), "{sizes:?}");
        }
    }

    #[test]
    fn file_zones_map_their_files_at_the_right_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let (shared, private) = (dir.path().join("shared"), dir.path().join("private"));
        std::fs::write(&private, vec![0x77u8; 4096]).unwrap();
        // 2 GiB anonymous, then 1.5 GiB shared across the gap, then 4 MiB private.
        let zones = [
            zone("a", 2 * GIB, None, false),
            zone("b", 3 * GIB / 2, Some(&shared), true),
            zone("c", 4 * MIB, Some(&private), false),
        ];
        let mem = create_zone_memory(&zones).unwrap();
        let regions: Vec<(u64, u64, Option<u64>)> = mem
            .iter()
            .map(|r| {
                (
                    r.start_addr().0,
                    r.len(),
                    r.file_offset().map(|f| f.start()),
                )
            })
            .collect();
        assert_eq!(
            regions,
            vec![
                (0, 2 * GIB, None),
                (2 * GIB, GIB, Some(0)),
                (MMIO_GAP_END, GIB / 2, Some(GIB)),
                (MMIO_GAP_END + GIB / 2, 4 * MIB, Some(0)),
            ]
        );
        // Files are sized to their zones; a private zone starts with its file's contents.
        assert_eq!(std::fs::metadata(&shared).unwrap().len(), 3 * GIB / 2);
        assert_eq!(std::fs::metadata(&private).unwrap().len(), 4 * MIB);
        let c = GuestAddress(MMIO_GAP_END + GIB / 2);
        assert_eq!(mem.read_obj::<u8>(c).unwrap(), 0x77);
        // Shared: the guest's writes are the file's bytes, on both sides of the gap.
        mem.write_obj(0x1122_3344u32, GuestAddress(2 * GIB + 8))
            .unwrap();
        mem.write_obj(0x5566_7788u32, GuestAddress(MMIO_GAP_END + 16))
            .unwrap();
        let f = File::open(&shared).unwrap();
        let word = |at| {
            let mut b = [0u8; 4];
            f.read_exact_at(&mut b, at).unwrap();
            u32::from_le_bytes(b)
        };
        assert_eq!(word(8), 0x1122_3344);
        assert_eq!(word(GIB + 16), 0x5566_7788);
        // Private: the file never changes.
        mem.write_obj(0x99u8, c).unwrap();
        assert_eq!(std::fs::read(&private).unwrap()[0], 0x77);
        assert!(shared_file_regions(&mem).is_none(), "mixed memory");
        assert!(has_file_regions(&mem));
    }

    #[test]
    fn made_private_the_guest_can_no_longer_change_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory");
        let mem = create_zone_memory(&[zone("mem0", 8 * MIB, Some(&path), true)]).unwrap();
        let regions = shared_file_regions(&mem).unwrap();
        assert_eq!(regions.len(), 1);
        assert_eq!((regions[0].guest_addr, regions[0].size), (0, 8 * MIB));
        assert_eq!(
            FileId::of(&regions[0].file).unwrap(),
            FileId::at(&path).unwrap().0
        );
        let at = GuestAddress(5 * MIB);
        mem.write_obj(0xabu8, at).unwrap();
        assert_eq!(std::fs::read(&path).unwrap()[5 << 20], 0xab);
        make_private(&mem).unwrap();
        // Same contents, but writes stay in this process.
        assert_eq!(mem.read_obj::<u8>(at).unwrap(), 0xab);
        mem.write_obj(0xcdu8, at).unwrap();
        assert_eq!(mem.read_obj::<u8>(at).unwrap(), 0xcd);
        assert_eq!(std::fs::read(&path).unwrap()[5 << 20], 0xab);
    }

    #[test]
    fn shared_memory_is_an_unnamed_file_that_a_snapshot_can_link() {
        let size = 8 * MIB;
        let mem = create_shared_memory(size).unwrap();
        let regions = shared_file_regions(&mem).unwrap();
        assert_eq!(regions.len(), 1);
        assert_eq!((regions[0].guest_addr, regions[0].size), (0, size));
        let meta = regions[0].file.metadata().unwrap();
        assert_eq!((meta.len(), meta.nlink()), (size, 0), "not an unnamed file");
        mem.write_obj(0x5au8, GuestAddress(MIB)).unwrap();
        // Linked by its descriptor (what the template writer does), the file holds the RAM.
        let dir = tempfile::tempdir_in(SHARED_RAM_DIR).unwrap();
        let to = dir.path().join("memory.bin");
        let from = format!("/proc/self/fd/{}", regions[0].file.as_raw_fd());
        let (from, to_c) = (
            std::ffi::CString::new(from).unwrap(),
            std::ffi::CString::new(to.to_str().unwrap()).unwrap(),
        );
        // SAFETY: both paths are NUL-terminated and outlive the call.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to_c.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        assert_eq!(std::fs::read(&to).unwrap()[MIB as usize], 0x5a);
        // Bigger than the gap: the file continues at 4 GiB, as zones do.
        let big = create_shared_memory(MMIO_GAP_START + MIB).unwrap();
        let r = shared_file_regions(&big).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[1].guest_addr, r[1].file_offset),
            (MMIO_GAP_END, MMIO_GAP_START)
        );
    }

    #[test]
    fn an_unusable_zone_file_names_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let e = create_zone_memory(&[
            zone("a", 4 * MIB, None, false),
            zone("b", 4 * MIB, Some(dir.path()), true),
        ])
        .unwrap_err();
        assert_eq!(e.config_error().unwrap().field, "memory.zones[1].file");
    }
}
