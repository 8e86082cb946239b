//! Devices and the buses that route guest accesses to them.

pub mod acpi;
pub mod bus;
pub mod exit;
pub mod legacy;
pub mod pci;
pub mod resources;
pub mod serial;
pub mod virtio;
