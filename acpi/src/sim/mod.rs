//! Datacenter energy simulator (`revenant-sim`): replays a trace of VM requests against a datacenter
//! under several placement policies and reports energy, per-state server-hours and an SLA proxy.
//!
//! Inputs: [`Datacenter`], a [`crate::power::PowerProfile`], a [`Trace`] (CSV,
//! converted Google cluster-data, or [`synthetic`]). Policies: [`policy`]. Engine: event-driven
//! (`engine`), deterministic for a given input.

pub mod datacenter;
mod engine;
pub mod google;
pub mod plot;
pub mod policy;
pub mod ramext;
pub mod report;
pub mod synthetic;
pub mod trace;

pub use datacenter::Datacenter;
pub use engine::{check_fits, simulate, TIMELINE_SAMPLES};
pub use ramext::RamExtCalibration;
pub use report::{PolicyRun, Summary};
pub use trace::{Request, Trace};

use crate::power::{PowerError, PowerProfile};

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// A trace CSV line is malformed.
    #[error("line {line}, column {column} ({name}): {reason}")]
    Csv {
        /// 1-based line number.
        line: usize,
        /// 1-based column number.
        column: usize,
        /// Column name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A TOML/JSON input file is malformed (the message names the field).
    #[error("malformed {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// Parser message.
        message: String,
    },
    /// A configuration field has an invalid value.
    #[error("invalid `{field}`: {reason}")]
    InvalidField {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A request can never fit on one server of this datacenter.
    #[error("request {id}: {field} = {value} exceeds a server's capacity {capacity}")]
    RequestTooLarge {
        /// Request id from the trace.
        id: u64,
        /// `cpus` or `mem_gib`.
        field: &'static str,
        /// Requested amount (for memory: the part that must be local under the policy).
        value: f64,
        /// Server capacity.
        capacity: f64,
    },
    /// Power model error (bad profile, accounting misuse).
    #[error(transparent)]
    Power(#[from] PowerError),
    /// A plot could not be drawn.
    #[error("plot {path}: {message}")]
    Plot {
        /// Output file.
        path: String,
        /// Drawing error.
        message: String,
    },
}

/// Runs each policy over the trace and assembles the summary (relative figures filled in).
pub fn run_policies(
    trace: &Trace,
    dc: &Datacenter,
    profile: &PowerProfile,
    policies: &[Box<dyn policy::Policy>],
    seed: Option<u64>,
    progress: &mut dyn FnMut(&str, usize),
) -> Result<Summary, SimError> {
    let mut runs = Vec::with_capacity(policies.len());
    for p in policies {
        let name = p.name();
        runs.push(simulate(trace, dc, profile, p.as_ref(), &mut |n| {
            progress(name, n)
        })?);
    }
    let mut summary = Summary {
        servers: dc.servers,
        trace_hours: trace.horizon_s / 3600.0,
        requests: trace.requests.len(),
        seed,
        ideal_energy_kwh: ideal_energy_kwh(trace, dc, profile),
        policies: runs,
    };
    summary.finish();
    Ok(summary)
}

/// Energy of a perfectly energy-proportional datacenter for the trace's CPU demand (see
/// [`Summary::ideal_energy_kwh`]).
pub fn ideal_energy_kwh(trace: &Trace, dc: &Datacenter, profile: &PowerProfile) -> f64 {
    let core_seconds: f64 = trace
        .requests
        .iter()
        .filter(|r| r.arrival_s < trace.horizon_s)
        .map(|r| r.cpus * (r.departure_s.min(trace.horizon_s) - r.arrival_s))
        .sum();
    core_seconds / dc.cpus_per_server * profile.power_w.s0_busy / 3.6e6
}
