//! Simulation results: per-policy figures, the summary written to `summary.json`, and the one-screen
//! text table.

use std::fmt::Write;

use serde::Serialize;

/// Server-hours per state, summed over all servers.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct StateHours {
    /// S0 weighted by utilisation (see `power::HostState`).
    pub s0_busy: f64,
    /// S0 weighted by idleness.
    pub s0_idle: f64,
    /// Suspend to RAM.
    pub s3: f64,
    /// Zombie.
    pub sz: f64,
    /// Soft off.
    pub s5: f64,
    /// Suspending, resuming, converting S3 -> Sz.
    pub transition: f64,
}

/// SLA proxy: what disaggregation and sleeping cost the VMs.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Sla {
    /// VMs with some memory remote.
    pub vms_with_remote_memory: u64,
    /// Mean share of a VM's memory that is remote (over placed VMs).
    pub mean_remote_fraction: f64,
    /// Mean run-time multiplier from remote memory.
    pub mean_slowdown: f64,
    /// 99th percentile run-time multiplier.
    pub p99_slowdown: f64,
    /// Largest run-time multiplier.
    pub max_slowdown: f64,
    /// VMs that waited for a server to wake.
    pub vms_delayed_by_wake: u64,
    /// Mean wait of the delayed VMs, seconds.
    pub mean_wake_delay_s: f64,
    /// Longest wait, seconds.
    pub max_wake_delay_s: f64,
}

/// Number of servers per power phase over time (for the states-over-time plot).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Timeline {
    /// Sample times, seconds.
    pub t_s: Vec<f64>,
    /// Servers in S0.
    pub on: Vec<u32>,
    /// Servers in a transition.
    pub transition: Vec<u32>,
    /// Servers in Sz.
    pub sz: Vec<u32>,
    /// Servers in S3.
    pub s3: Vec<u32>,
}

/// Results of one policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyRun {
    /// Policy name.
    pub policy: String,
    /// Total energy (servers + memory blades), kWh.
    pub energy_kwh: f64,
    /// Servers' energy, kWh (transitions included).
    pub server_energy_kwh: f64,
    /// Memory blades' energy (rack-scale only), kWh.
    pub blade_energy_kwh: f64,
    /// Part of the servers' energy spent in transitions, kWh.
    pub transition_energy_kwh: f64,
    /// Energy without what spare servers draw asleep in S3/S5, kWh: the part of the datacenter
    /// that runs or serves the workload (the paper's normalisation appears to count only this).
    pub active_energy_kwh: f64,
    /// Energy as a multiple of the ideal energy-proportional datacenter (see `Summary`).
    pub energy_vs_ideal: f64,
    /// `active_energy_kwh` as a multiple of the ideal energy.
    pub active_energy_vs_ideal: f64,
    /// Saving vs the server-centric run, percent (absent when that policy was not run).
    pub savings_vs_server_centric_pct: Option<f64>,
    /// Server-hours per state.
    pub server_hours: StateHours,
    /// Sleeping servers woken to host VMs.
    pub wakes: u64,
    /// S3 servers turned into zombies to lend memory.
    pub zombie_conversions: u64,
    /// VMs placed.
    pub vms_placed: u64,
    /// VMs that found no room anywhere (datacenter full).
    pub vms_rejected: u64,
    /// SLA proxy.
    pub sla: Sla,
    /// Servers per phase over time.
    pub timeline: Timeline,
}

/// Everything `summary.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Servers simulated.
    pub servers: u32,
    /// Simulated period, hours.
    pub trace_hours: f64,
    /// Requests in the trace.
    pub requests: usize,
    /// Seed of the synthetic generator (absent for CSV traces).
    pub seed: Option<u64>,
    /// Energy of an ideal, perfectly energy-proportional datacenter: the trace's CPU demand served
    /// by fully busy servers at peak power, nothing else drawing power. `energy_vs_ideal` divides by
    /// it (our reading of the paper's "Emax" normalisation, see docs/energy.md).
    pub ideal_energy_kwh: f64,
    /// Per-policy results in report order.
    pub policies: Vec<PolicyRun>,
}

impl Summary {
    /// Fills the relative figures (vs ideal, vs server-centric).
    pub fn finish(&mut self) {
        let baseline = self
            .policies
            .iter()
            .find(|p| p.policy == "server_centric")
            .map(|p| p.energy_kwh);
        for p in &mut self.policies {
            let ratio = |e: f64| {
                if self.ideal_energy_kwh > 0.0 {
                    e / self.ideal_energy_kwh
                } else {
                    0.0
                }
            };
            p.energy_vs_ideal = ratio(p.energy_kwh);
            p.active_energy_vs_ideal = ratio(p.active_energy_kwh);
            p.savings_vs_server_centric_pct = baseline
                .filter(|b| *b > 0.0)
                .map(|b| 100.0 * (1.0 - p.energy_kwh / b));
        }
    }

    /// One-screen text table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} servers, {:.1} h, {} requests, ideal energy {:.1} kWh",
            self.servers, self.trace_hours, self.requests, self.ideal_energy_kwh
        );
        let _ = writeln!(
            s,
            "{:<15} {:>11} {:>8} {:>9} {:>8} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8}",
            "policy",
            "energy kWh",
            "x ideal",
            "act x id",
            "saving%",
            "S0 h",
            "Sz h",
            "S3 h",
            "wakes",
            "rejected",
            "p99 slow",
            "max wait"
        );
        for p in &self.policies {
            let h = &p.server_hours;
            let _ = writeln!(
                s,
                "{:<15} {:>11.1} {:>8.2} {:>9.2} {:>8} {:>9.0} {:>9.0} {:>9.0} {:>7} {:>8} {:>8.3} {:>7.1}s",
                p.policy,
                p.energy_kwh,
                p.energy_vs_ideal,
                p.active_energy_vs_ideal,
                p.savings_vs_server_centric_pct
                    .map_or("-".to_string(), |v| format!("{v:.1}")),
                h.s0_busy + h.s0_idle,
                h.sz,
                h.s3,
                p.wakes,
                p.vms_rejected,
                p.sla.p99_slowdown,
                p.sla.max_wake_delay_s
            );
        }
        s
    }
}
