//! Loading a Linux kernel (ELF vmlinux or bzImage), initramfs and command line.

use std::fs::File;
use std::path::Path;

use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};
use linux_loader::loader::{self, KernelLoader, KernelLoaderResult};
use vm_memory::{Bytes, GuestAddress};

use super::entry::EntryPoint;
use super::layout::{CMDLINE_ADDR, CMDLINE_MAX_SIZE, HIMEM_START, PVH_INFO_ADDR, ZERO_PAGE_ADDR};
use super::memory_map::memory_map;
use crate::vstate::memory::{low_ram_end, GuestMemoryMmap, PAGE_SIZE};

const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
/// Boot protocol constants from Documentation/x86/boot.rst.
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;
/// The 64-bit entry of a bzImage's protected-mode code is 0x200 bytes past its load address.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
const E820_MAX_ENTRIES: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum LinuxBootError {
    #[error("cannot open kernel {path}: {source}")]
    OpenKernel {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel {path} is neither a loadable ELF vmlinux nor a bzImage ({elf}; {bzimage})")]
    UnknownKernelFormat {
        path: String,
        elf: loader::Error,
        bzimage: loader::Error,
    },
    #[error("cannot open initramfs {path}: {source}")]
    OpenInitramfs {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("initramfs of {size} bytes does not fit in guest RAM between the kernel end ({kernel_end:#x}) and {ram_end:#x}")]
    InitramfsTooLarge {
        size: u64,
        kernel_end: u64,
        ram_end: u64,
    },
    #[error("cannot copy the initramfs into guest memory: {0}")]
    InitramfsCopy(#[source] vm_memory::GuestMemoryError),
    #[error("invalid kernel command line: {0}")]
    Cmdline(String),
    #[error("cannot write boot information: {0}")]
    BootInfo(String),
}

/// Where the initramfs ended up.
struct Initramfs {
    addr: u64,
    size: u64,
}

/// Loads the kernel, initramfs and command line; returns how the boot vCPU enters it.
pub fn load(
    mem: &GuestMemoryMmap,
    kernel: &Path,
    initramfs: Option<&Path>,
    cmdline: &str,
    rsdp_addr: u64,
) -> Result<EntryPoint, LinuxBootError> {
    let path = kernel.display().to_string();
    let mut file = File::open(kernel).map_err(|source| LinuxBootError::OpenKernel {
        path: path.clone(),
        source,
    })?;
    let (loaded, is_elf) = match Elf::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START))) {
        Ok(r) => (r, true),
        Err(elf) => match BzImage::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START))) {
            Ok(r) => (r, false),
            Err(bzimage) => return Err(LinuxBootError::UnknownKernelFormat { path, elf, bzimage }),
        },
    };
    let initramfs = initramfs
        .map(|p| load_initramfs(mem, p, loaded.kernel_end))
        .transpose()?;
    let cmdline_len = write_cmdline(mem, cmdline)?;

    match loaded.pvh_boot_cap {
        PvhBootCapability::PvhEntryPresent(entry) if is_elf => {
            write_pvh_start_info(mem, initramfs.as_ref(), rsdp_addr)?;
            Ok(EntryPoint::Pvh {
                entry: entry.0,
                start_info: PVH_INFO_ADDR,
            })
        }
        _ => {
            write_boot_params(mem, &loaded, initramfs.as_ref(), cmdline_len, rsdp_addr)?;
            let entry = if is_elf {
                loaded.kernel_load.0
            } else {
                loaded.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET
            };
            Ok(EntryPoint::Linux64 {
                entry,
                boot_params: ZERO_PAGE_ADDR,
            })
        }
    }
}

/// Puts the initramfs at the top of low RAM, page aligned, as bootloaders do.
fn load_initramfs(
    mem: &GuestMemoryMmap,
    path: &Path,
    kernel_end: u64,
) -> Result<Initramfs, LinuxBootError> {
    let open_err = |source| LinuxBootError::OpenInitramfs {
        path: path.display().to_string(),
        source,
    };
    let mut file = File::open(path).map_err(open_err)?;
    let size = file.metadata().map_err(open_err)?.len();
    let ram_end = low_ram_end(mem);
    let too_large = LinuxBootError::InitramfsTooLarge {
        size,
        kernel_end,
        ram_end,
    };
    let addr = ram_end.checked_sub(size).ok_or(too_large)? & !(PAGE_SIZE - 1);
    if addr < kernel_end {
        return Err(LinuxBootError::InitramfsTooLarge {
            size,
            kernel_end,
            ram_end,
        });
    }
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, size as usize)
        .map_err(LinuxBootError::InitramfsCopy)?;
    Ok(Initramfs { addr, size })
}

fn write_cmdline(mem: &GuestMemoryMmap, cmdline: &str) -> Result<usize, LinuxBootError> {
    let mut cl =
        Cmdline::new(CMDLINE_MAX_SIZE).map_err(|e| LinuxBootError::Cmdline(e.to_string()))?;
    cl.insert_str(cmdline)
        .map_err(|e| LinuxBootError::Cmdline(e.to_string()))?;
    loader::load_cmdline(mem, GuestAddress(CMDLINE_ADDR), &cl)
        .map_err(|e| LinuxBootError::Cmdline(e.to_string()))?;
    Ok(cmdline.len())
}

fn write_pvh_start_info(
    mem: &GuestMemoryMmap,
    initramfs: Option<&Initramfs>,
    rsdp_addr: u64,
) -> Result<(), LinuxBootError> {
    let map: Vec<hvm_memmap_table_entry> = memory_map(mem)
        .into_iter()
        .map(|e| hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        })
        .collect();
    let modlist_addr = PVH_INFO_ADDR + std::mem::size_of::<hvm_start_info>() as u64;
    let memmap_addr = modlist_addr + std::mem::size_of::<hvm_modlist_entry>() as u64;
    let start_info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE_ADDR,
        nr_modules: u32::from(initramfs.is_some()),
        modlist_paddr: if initramfs.is_some() { modlist_addr } else { 0 },
        memmap_paddr: memmap_addr,
        memmap_entries: map.len() as u32,
        rsdp_paddr: rsdp_addr,
        ..Default::default()
    };
    let mut params = BootParams::new(&start_info, GuestAddress(PVH_INFO_ADDR));
    if let Some(i) = initramfs {
        let module = hvm_modlist_entry {
            paddr: i.addr,
            size: i.size,
            ..Default::default()
        };
        params.set_modules(&[module], GuestAddress(modlist_addr));
    }
    params.set_sections(&map, GuestAddress(memmap_addr));
    PvhBootConfigurator::write_bootparams::<GuestMemoryMmap>(&params, mem)
        .map_err(|e| LinuxBootError::BootInfo(e.to_string()))
}

fn write_boot_params(
    mem: &GuestMemoryMmap,
    loaded: &KernelLoaderResult,
    initramfs: Option<&Initramfs>,
    cmdline_len: usize,
    rsdp_addr: u64,
) -> Result<(), LinuxBootError> {
    let mut params = boot_params::default();
    if let Some(hdr) = loaded.setup_header {
        params.hdr = hdr;
    } else {
        params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
        params.hdr.header = KERNEL_HDR_MAGIC;
        params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.acpi_rsdp_addr = rsdp_addr;
    params.hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    if let Some(i) = initramfs {
        params.hdr.ramdisk_image = i.addr as u32;
        params.hdr.ramdisk_size = i.size as u32;
    }
    let map = memory_map(mem);
    if map.len() > E820_MAX_ENTRIES {
        return Err(LinuxBootError::BootInfo(format!(
            "{} e820 entries exceed {E820_MAX_ENTRIES}",
            map.len()
        )));
    }
    for (slot, e) in params.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    params.e820_entries = map.len() as u8;
    mem.write_obj(params, GuestAddress(ZERO_PAGE_ADDR))
        .map_err(|e| LinuxBootError::BootInfo(e.to_string()))
}
