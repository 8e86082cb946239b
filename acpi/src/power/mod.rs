//! Power/energy model of one host: the ACPI power states a server can be in, what each state costs
//! (watts) and how long switching between them takes, plus an accounting type that integrates time
//! and energy per state.
//!
//! The default numbers ([`PowerProfile::default`]) follow the ZombieLand paper's model as summarised
//! in `shared/ZOMBIELAND.md` ("Energy model basics"); every field says where its value comes from and
//! a TOML/JSON profile file overrides any of them.

mod accounting;
mod profile;
mod state;

pub use accounting::{EnergyAccount, StateTotals};
pub use profile::{PowerProfile, StatePower, TransitionCosts};
pub use state::HostState;

/// Errors of the power model.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    /// The profile file could not be read.
    #[error("cannot read power profile {path}: {source}")]
    Read {
        /// File that was read.
        path: String,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The profile file is not valid TOML/JSON for a power profile (the message names the field).
    #[error("malformed power profile {path}: {message}")]
    Parse {
        /// File that was parsed.
        path: String,
        /// Parser message, naming the offending field.
        message: String,
    },
    /// A field has a value outside its allowed range.
    #[error("invalid power profile field `{field}`: {reason}")]
    Invalid {
        /// Dotted path of the field, e.g. `power_w.sz`.
        field: &'static str,
        /// What is wrong with the value.
        reason: String,
    },
    /// Time went backwards in an energy account.
    #[error("energy account: time {at_s} s is before the last event at {last_s} s")]
    TimeWentBack {
        /// Time passed by the caller.
        at_s: f64,
        /// Time of the previous event.
        last_s: f64,
    },
    /// A utilisation outside 0..=1 (or not a number) was passed to an energy account.
    #[error("energy account: utilisation {0} is not within 0..=1")]
    BadUtilisation(f64),
}
