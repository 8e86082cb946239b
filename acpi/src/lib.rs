//! ACPI tables, sleep states (S0/S3/S4/S5/Sz) and the power/energy model.
//!
//! - [`platform`]: guest-visible ports, addresses and values the tables and the VMM share.
//! - [`power`]: per-host power states, the power profile (watts and transition latencies) and energy
//!   accounting.
//! - [`tables`]: the ACPI tables (RSDP, XSDT, FADT, FACS, MADT, DSDT) the VMM puts in guest
//!   memory.
//! - [`sim`]: the datacenter energy simulator behind the `revenant-sim` binary.

pub mod platform;
pub mod power;
#[cfg(feature = "sim")]
pub mod sim;
pub mod tables;

/// Errors of the `revenant-acpi` crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The power profile could not be loaded or is invalid.
    #[error(transparent)]
    Power(#[from] power::PowerError),
    /// The simulator's inputs are invalid or a simulation failed.
    #[cfg(feature = "sim")]
    #[error(transparent)]
    Sim(#[from] sim::SimError),
}
