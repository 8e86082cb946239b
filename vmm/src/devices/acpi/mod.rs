//! ACPI fixed-hardware equivalents of HW-reduced ACPI: the sleep control/status and reset
//! registers the FADT points at (ports in `revenant_acpi::platform`).

pub mod cpu_hotplug;
pub mod ged;
pub mod sleep;
