//! Identity page tables for 64-bit entry: the first 4 GiB mapped with 2 MiB pages.
//!
//! Linux replaces them early; a 64-bit test guest keeps them, and asks for user-accessible
//! entries so it can run its workload at CPL3 (which runs natively on PVM, see PVM.md).

use vm_memory::{Bytes, GuestAddress};

use super::layout::PML4_ADDR;
use crate::vstate::memory::GuestMemoryMmap;

const PRESENT_WRITABLE: u64 = 0x3;
const USER: u64 = 0x4;
const HUGE_PAGE: u64 = 0x80;
/// Page directories needed to map 4 GiB with 2 MiB pages.
const PAGE_DIRECTORIES: u64 = 4;

pub const PDPT_ADDR: u64 = PML4_ADDR + 0x1000;
pub const PD_ADDR: u64 = PDPT_ADDR + 0x1000;
/// First byte after the page tables.
pub const PAGE_TABLES_END: u64 = PD_ADDR + PAGE_DIRECTORIES * 0x1000;

/// Writes the tables into guest memory and returns the value for CR3.
pub fn write_identity_map(
    mem: &GuestMemoryMmap,
    user_accessible: bool,
) -> Result<u64, vm_memory::GuestMemoryError> {
    let flags = PRESENT_WRITABLE | if user_accessible { USER } else { 0 };
    mem.write_obj(PDPT_ADDR | flags, GuestAddress(PML4_ADDR))?;
    for dir in 0..PAGE_DIRECTORIES {
        let pd = PD_ADDR + dir * 0x1000;
        mem.write_obj(pd | flags, GuestAddress(PDPT_ADDR + dir * 8))?;
        let entries: Vec<u8> = (0..512u64)
            .flat_map(|i| (((dir * 512 + i) << 21) | flags | HUGE_PAGE).to_le_bytes())
            .collect();
        mem.write_slice(&entries, GuestAddress(pd))?;
    }
    Ok(PML4_ADDR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::memory::create_guest_memory;

    #[test]
    fn maps_addresses_to_themselves() {
        let mem = create_guest_memory(64 << 20).unwrap();
        let cr3 = write_identity_map(&mem, true).unwrap();
        // Walk the tables for a few addresses, as the MMU would.
        for addr in [0u64, 0x20_0000, 0x3fff_ffff, 0xbfe0_0000, 0xffff_ffff] {
            let pml4e: u64 = mem
                .read_obj(GuestAddress(cr3 + ((addr >> 39) & 511) * 8))
                .unwrap();
            let pdpte: u64 = mem
                .read_obj(GuestAddress((pml4e & !0xfff) + ((addr >> 30) & 511) * 8))
                .unwrap();
            let pde: u64 = mem
                .read_obj(GuestAddress((pdpte & !0xfff) + ((addr >> 21) & 511) * 8))
                .unwrap();
            assert_eq!(pde & HUGE_PAGE, HUGE_PAGE);
            assert_eq!(pde & USER, USER);
            assert_eq!(
                (pde & !0x1f_ffff & 0x000f_ffff_ffff_f000) | (addr & 0x1f_ffff),
                addr
            );
        }
    }
}
