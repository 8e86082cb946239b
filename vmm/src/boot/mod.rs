//! Putting a guest into memory and choosing the state the boot vCPU starts in.

pub mod acpi;
pub mod cpuid;
pub mod entry;
pub mod gdt;
pub mod layout;
pub mod linux;
pub mod memory_map;
pub mod msrs;
pub mod paging;
pub mod test_guest;
