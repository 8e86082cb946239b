//! Giving guest pages back to the host: pages a balloon inflated over, or free pages the
//! guest reported. Their contents no longer matter to the guest, so they are dropped from
//! the VMM's memory (`MADV_DONTNEED`: anonymous memory reads as zero afterwards, a private
//! file mapping of a template as the template; `MADV_REMOVE` for a shared zone file, whose
//! pages read as zero afterwards and leave the file). Pages under RAM extension go through its
//! engine instead, which also forgets their remote copies so they are never written back
//! nor fetched again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use revenant_remote_mem::ram_ext::PageDiscarder;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::vstate::memory::GuestMemoryMmap;

#[derive(Debug, thiserror::Error)]
pub enum DiscardError {
    #[error("guest range {0:#x}+{1:#x} is not inside guest memory")]
    OutOfRange(u64, u64),
    #[error("cannot drop guest pages at {addr:#x}+{len:#x}: {source}")]
    Madvise {
        addr: u64,
        len: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("RAM extension: {0}")]
    RamExt(String),
}

/// The VM's page discarding, shared by the devices that discard (the balloon) and the VM,
/// which plugs in the RAM-ext engine when it starts one.
#[derive(Default)]
pub struct GuestDiscard {
    ram_ext: Mutex<Option<PageDiscarder>>,
    /// Set once a linked snapshot remapped the VM's shared file RAM MAP_PRIVATE
    /// ([`crate::vstate::zone_memory::make_private`]); the regions still say MAP_SHARED.
    files_private: AtomicBool,
}

impl GuestDiscard {
    /// Routes discards of RAM-ext pages through `engine` (None: the engine is gone).
    pub fn set_ram_ext(&self, engine: Option<PageDiscarder>) {
        *self.ram_ext.lock().unwrap_or_else(|p| p.into_inner()) = engine;
    }

    /// Records that the VM's shared file mappings are private mappings of their files now.
    pub fn mark_files_private(&self) {
        self.files_private.store(true, Ordering::SeqCst);
    }

    /// Whether [`GuestDiscard::mark_files_private`] was called: the guest's RAM is no longer
    /// its files' contents.
    pub fn files_private(&self) -> bool {
        self.files_private.load(Ordering::SeqCst)
    }

    /// Discards guest-physical `addr..addr + len` (4 KiB aligned). Returns the bytes given
    /// back to the host.
    pub fn discard(&self, mem: &GuestMemoryMmap, addr: u64, len: u64) -> Result<u64, DiscardError> {
        let ram_ext = self
            .ram_ext
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut at = addr;
        let end = addr
            .checked_add(len)
            .ok_or(DiscardError::OutOfRange(addr, len))?;
        let mut freed = 0;
        while at < end {
            let region = mem
                .find_region(GuestAddress(at))
                .ok_or(DiscardError::OutOfRange(addr, len))?;
            let offset = at - region.start_addr().0;
            let n = (region.len() - offset).min(end - at);
            let host = region
                .get_host_address(vm_memory::MemoryRegionAddress(offset))
                .map_err(|_| DiscardError::OutOfRange(addr, len))? as usize;
            freed += match &ram_ext {
                Some(engine) if engine.covers(host) => {
                    let done = engine
                        .discard(host, n as usize)
                        .map_err(|e| DiscardError::RamExt(e.to_string()))?;
                    (done.dropped + done.forgotten) * crate::vstate::memory::PAGE_SIZE
                }
                _ => {
                    // A shared file mapping (a `shared` memory zone) keeps its pages in the
                    // file: only punching them out of it (MADV_REMOVE) frees them. Once made
                    // private after a linked snapshot the file is a template's: never punched.
                    let advice = if region.file_offset().is_some()
                        && region.flags() & libc::MAP_SHARED != 0
                        && !self.files_private()
                    {
                        libc::MADV_REMOVE
                    } else {
                        libc::MADV_DONTNEED
                    };
                    // SAFETY: `host..host + n` lies inside one mapped guest memory region
                    // (checked above); the guest gave these pages up and reads whatever the
                    // mapping provides afterwards (zeros, or a template's page for a private
                    // file mapping), so no Rust reference into them is invalidated.
                    let rc =
                        unsafe { libc::madvise(host as *mut libc::c_void, n as usize, advice) };
                    if rc != 0 {
                        return Err(DiscardError::Madvise {
                            addr: at,
                            len: n,
                            source: std::io::Error::last_os_error(),
                        });
                    }
                    n
                }
            };
            at += n;
        }
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::Bytes;

    use super::*;
    use crate::vstate::memory::create_guest_memory;

    #[test]
    fn discarded_anonymous_pages_read_as_zero_and_the_rest_is_kept() {
        let mem = create_guest_memory(4 << 20).unwrap();
        mem.write_slice(&[0xAB; 3 * 4096], GuestAddress(0x10000))
            .unwrap();
        let d = GuestDiscard::default();
        assert_eq!(d.discard(&mem, 0x11000, 4096).unwrap(), 4096);
        let mut page = [0u8; 4096];
        mem.read_slice(&mut page, GuestAddress(0x11000)).unwrap();
        assert!(page.iter().all(|&b| b == 0));
        mem.read_slice(&mut page, GuestAddress(0x12000)).unwrap();
        assert!(page.iter().all(|&b| b == 0xAB));
        assert!(matches!(
            d.discard(&mem, 4 << 20, 4096),
            Err(DiscardError::OutOfRange(..))
        ));
    }

    /// 4 MiB of guest RAM in a shared zone file `memory` in `dir`.
    fn shared_zone(dir: &std::path::Path) -> (std::path::PathBuf, GuestMemoryMmap) {
        let path = dir.join("memory");
        let zone = crate::config::MemoryZoneConfig {
            id: "mem0".into(),
            size: 4 << 20,
            file: Some(path.clone()),
            shared: true,
        };
        let mem = crate::vstate::zone_memory::create_zone_memory(&[zone]).unwrap();
        (path, mem)
    }

    #[test]
    fn discarded_pages_of_a_shared_zone_leave_its_file() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let (path, mem) = shared_zone(dir.path());
        mem.write_slice(&[0xAB; 4 * 4096], GuestAddress(0x10000))
            .unwrap();
        let before = std::fs::metadata(&path).unwrap().blocks();
        let d = GuestDiscard::default();
        assert_eq!(d.discard(&mem, 0x10000, 2 * 4096).unwrap(), 2 * 4096);
        let mut page = [0u8; 4096];
        mem.read_slice(&mut page, GuestAddress(0x11000)).unwrap();
        assert!(page.iter().all(|&b| b == 0));
        mem.read_slice(&mut page, GuestAddress(0x12000)).unwrap();
        assert!(page.iter().all(|&b| b == 0xAB));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!((bytes[0x10000], bytes[0x12000]), (0, 0xAB));
        assert!(std::fs::metadata(&path).unwrap().blocks() < before);
    }

    #[test]
    fn once_made_private_a_shared_file_is_never_punched() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mem) = shared_zone(dir.path());
        mem.write_slice(&[0xAB; 2 * 4096], GuestAddress(0x10000))
            .unwrap();
        // What a linked snapshot does: the file is a template's now.
        let d = GuestDiscard::default();
        assert!(!d.files_private());
        d.mark_files_private();
        crate::vstate::zone_memory::make_private(&mem).unwrap();
        mem.write_slice(&[0xCD; 4096], GuestAddress(0x10000))
            .unwrap();
        assert_eq!(d.discard(&mem, 0x10000, 2 * 4096).unwrap(), 2 * 4096);
        // The private copy is dropped: the page reads the file again, which kept its data.
        let mut page = [0u8; 4096];
        mem.read_slice(&mut page, GuestAddress(0x10000)).unwrap();
        assert!(page.iter().all(|&b| b == 0xAB));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!((bytes[0x10000], bytes[0x11000]), (0xAB, 0xAB));
    }
}
