//! Event-driven simulation of one policy over one trace. Events (departures, servers finishing a
//! transition, idle timers, samples) sit in a min-heap; arrivals are merged in from the sorted
//! trace. Nothing ticks: each server's energy account integrates between its own state changes.

mod fit;
#[cfg(test)]
mod invariants;
mod lifecycle;
mod placement;
mod server;

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap};

use crate::power::{HostState, PowerProfile, StateTotals};

use super::datacenter::Datacenter;
use super::policy::{Policy, RemoteSource};
use super::report::{PolicyRun, Sla, StateHours, Timeline};
use super::trace::Trace;
use super::SimError;
use fit::{FirstFit, EPS};
use server::{Phase, Server};

/// Samples in the servers-over-time timeline.
pub const TIMELINE_SAMPLES: usize = 200;

/// What happens at an event; the order is the tie-break at equal times (free capacity first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Departure,
    Ready,
    Asleep,
    SleepCheck,
    Sample,
}

#[derive(Debug, Clone, Copy)]
struct Event {
    t: f64,
    kind: Kind,
    seq: u64,
    /// Request index (departure), server index (others) or sample index.
    who: u32,
    /// Token of a sleep check.
    token: u64,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    fn cmp(&self, other: &Self) -> Ordering {
        self.t
            .total_cmp(&other.t)
            .then(self.kind.cmp(&other.kind))
            .then(self.seq.cmp(&other.seq))
    }
}

/// Where a placed VM's memory lives.
#[derive(Debug, Clone)]
struct Placement {
    host: u32,
    local_gib: f64,
    blade_gib: f64,
    loans: Vec<(u32, f64)>,
}

/// Checks every request can fit on an empty server; a request that never fits is an input error,
/// not something to drop silently.
pub fn check_fits(trace: &Trace, dc: &Datacenter, policy: &dyn Policy) -> Result<(), SimError> {
    for r in &trace.requests {
        if r.cpus > dc.cpus_per_server + EPS {
            return Err(SimError::RequestTooLarge {
                id: r.id,
                field: "cpus",
                value: r.cpus,
                capacity: dc.cpus_per_server,
            });
        }
        let local = policy.min_local_gib(r);
        if local > dc.mem_gib_per_server + EPS {
            return Err(SimError::RequestTooLarge {
                id: r.id,
                field: "mem_gib",
                value: local,
                capacity: dc.mem_gib_per_server,
            });
        }
    }
    Ok(())
}

/// Runs `policy` over `trace`. `progress` is called now and then with the number of arrivals done.
pub fn simulate(
    trace: &Trace,
    dc: &Datacenter,
    profile: &PowerProfile,
    policy: &dyn Policy,
    progress: &mut dyn FnMut(usize),
) -> Result<PolicyRun, SimError> {
    dc.validate()?;
    profile.validate()?;
    check_fits(trace, dc, policy)?;
    let mut engine = Engine::new(trace, dc, profile, policy);
    engine.run(progress)?;
    engine.finish()
}

struct Engine<'a> {
    trace: &'a Trace,
    dc: &'a Datacenter,
    profile: &'a PowerProfile,
    policy: &'a dyn Policy,
    servers: Vec<Server>,
    fit: FirstFit,
    asleep_s3: BTreeSet<u32>,
    asleep_sz: BTreeSet<u32>,
    /// Zombies (or servers becoming zombies) with memory left to lend.
    lenders: BTreeSet<u32>,
    /// Sum of the lenders' free memory.
    lendable_gib: f64,
    blade_used: Vec<f64>,
    blade_total_used: f64,
    blade_gib_s: f64,
    blade_since: f64,
    placements: Vec<Option<Placement>>,
    heap: BinaryHeap<Reverse<Event>>,
    seq: u64,
    now: f64,
    stats: Stats,
    timeline: Timeline,
}

#[derive(Default)]
struct Stats {
    placed: u64,
    rejected: u64,
    wakes: u64,
    conversions: u64,
    slowdowns: Vec<f64>,
    remote_fraction_sum: f64,
    with_remote: u64,
    delayed: u64,
    delay_sum: f64,
    delay_max: f64,
}

impl<'a> Engine<'a> {
    fn new(
        trace: &'a Trace,
        dc: &'a Datacenter,
        profile: &'a PowerProfile,
        policy: &'a dyn Policy,
    ) -> Self {
        let n = dc.servers as usize;
        // Every server starts asleep in S3; the first arrivals wake what they need.
        let servers = (0..n)
            .map(|_| Server::asleep(profile, dc.cpus_per_server, dc.mem_gib_per_server))
            .collect();
        let mut engine = Engine {
            trace,
            dc,
            profile,
            policy,
            servers,
            fit: FirstFit::new(n),
            asleep_s3: (0..dc.servers).collect(),
            asleep_sz: BTreeSet::new(),
            lenders: BTreeSet::new(),
            lendable_gib: 0.0,
            blade_used: vec![0.0; dc.racks() as usize],
            blade_total_used: 0.0,
            blade_gib_s: 0.0,
            blade_since: 0.0,
            placements: vec![None; trace.requests.len()],
            heap: BinaryHeap::new(),
            seq: 0,
            now: 0.0,
            stats: Stats::default(),
            timeline: Timeline::default(),
        };
        for k in 0..=TIMELINE_SAMPLES {
            let t = trace.horizon_s * k as f64 / TIMELINE_SAMPLES as f64;
            engine.push(t, Kind::Sample, k as u32, 0);
        }
        engine
    }

    fn push(&mut self, t: f64, kind: Kind, who: u32, token: u64) {
        self.seq += 1;
        self.heap.push(Reverse(Event {
            t,
            kind,
            seq: self.seq,
            who,
            token,
        }));
    }

    fn run(&mut self, progress: &mut dyn FnMut(usize)) -> Result<(), SimError> {
        let horizon = self.trace.horizon_s;
        let requests = self.trace.requests.len();
        let mut next = 0usize;
        loop {
            let arrival = self
                .trace
                .requests
                .get(next)
                .map(|r| r.arrival_s)
                .filter(|t| *t < horizon);
            let event_t = self
                .heap
                .peek()
                .map(|Reverse(e)| e.t)
                .filter(|t| *t <= horizon);
            match (arrival, event_t) {
                (None, None) => break,
                (Some(a), Some(e)) if e <= a => self.pop_event()?,
                (Some(a), _) => {
                    self.now = a;
                    self.arrive(next)?;
                    next += 1;
                    if next % 65_536 == 0 {
                        progress(next);
                    }
                }
                (None, Some(_)) => self.pop_event()?,
            }
            #[cfg(test)]
            self.check_invariants();
        }
        progress(requests);
        Ok(())
    }

    fn pop_event(&mut self) -> Result<(), SimError> {
        let Some(Reverse(ev)) = self.heap.pop() else {
            return Ok(());
        };
        self.now = ev.t;
        match ev.kind {
            Kind::Departure => self.depart(ev.who as usize)?,
            Kind::Ready => self.ready(ev.who)?,
            Kind::Asleep => self.fall_asleep(ev.who)?,
            Kind::SleepCheck => self.sleep_check(ev.who, ev.token)?,
            Kind::Sample => self.sample(),
        }
        Ok(())
    }

    fn sample(&mut self) {
        let (mut on, mut tr, mut sz, mut s3) = (0, 0, 0, 0);
        for s in &self.servers {
            match s.phase {
                Phase::On => on += 1,
                Phase::Waking { .. } | Phase::Suspending | Phase::Converting => tr += 1,
                Phase::Asleep(HostState::Sz) => sz += 1,
                Phase::Asleep(_) => s3 += 1,
            }
        }
        let tl = &mut self.timeline;
        tl.t_s.push(self.now);
        tl.on.push(on);
        tl.transition.push(tr);
        tl.sz.push(sz);
        tl.s3.push(s3);
    }

    // ----- lender bookkeeping: `lendable_gib` always equals the lenders' free memory -----

    fn lenders_insert(&mut self, z: u32) {
        let free = self.servers[z as usize].mem_free;
        if free > EPS && self.lenders.insert(z) {
            self.lendable_gib += free;
        }
    }

    fn lenders_remove(&mut self, z: u32) {
        if self.lenders.remove(&z) {
            self.lendable_gib -= self.servers[z as usize].mem_free;
        }
    }

    /// Updates the first-fit index for a server that can take VMs.
    fn refit(&mut self, i: u32) {
        let s = &self.servers[i as usize];
        if s.phase.takes_vms() {
            self.fit.set(i as usize, s.cpu_free, s.mem_free);
        } else {
            self.fit.remove(i as usize);
        }
    }

    fn utilisation(&self, i: u32) -> f64 {
        let s = &self.servers[i as usize];
        ((self.dc.cpus_per_server - s.cpu_free) / self.dc.cpus_per_server).clamp(0.0, 1.0)
    }

    /// Re-accounts a powered-on server after its load changed.
    fn reaccount(&mut self, i: u32) -> Result<(), SimError> {
        if self.servers[i as usize].phase == Phase::On {
            let u = self.utilisation(i);
            self.servers[i as usize].account.enter_on(u, self.now)?;
        }
        Ok(())
    }

    fn advance_blades(&mut self) {
        self.blade_gib_s += self.blade_total_used * (self.now - self.blade_since);
        self.blade_since = self.now;
    }

    fn finish(mut self) -> Result<PolicyRun, SimError> {
        let horizon = self.trace.horizon_s;
        self.now = horizon;
        self.advance_blades();
        let mut totals = StateTotals::default();
        for s in &self.servers {
            totals.add(&s.account.totals_at(horizon)?);
        }
        const J_PER_KWH: f64 = 3.6e6;
        let blade_j = self.dc.blade_base_w
            * f64::from(self.dc.racks())
            * horizon
            * f64::from(u8::from(
                self.policy.remote_source() == RemoteSource::RackBlade,
            ))
            + self.dc.blade_w_per_gib * self.blade_gib_s;
        let server_j = totals.total_joules();
        let hours = |st: HostState| totals.seconds_in(st) / 3600.0;
        let st = &mut self.stats;
        let placed = st.placed.max(1) as f64;
        st.slowdowns.sort_by(f64::total_cmp);
        let p99 = percentile(&st.slowdowns, 0.99);
        let sla = Sla {
            vms_with_remote_memory: st.with_remote,
            mean_remote_fraction: st.remote_fraction_sum / placed,
            mean_slowdown: if st.slowdowns.is_empty() {
                1.0
            } else {
                st.slowdowns.iter().sum::<f64>() / st.slowdowns.len() as f64
            },
            p99_slowdown: p99,
            max_slowdown: st.slowdowns.last().copied().unwrap_or(1.0),
            vms_delayed_by_wake: st.delayed,
            mean_wake_delay_s: if st.delayed > 0 {
                st.delay_sum / st.delayed as f64
            } else {
                0.0
            },
            max_wake_delay_s: st.delay_max,
        };
        Ok(PolicyRun {
            policy: self.policy.name().to_string(),
            energy_kwh: (server_j + blade_j) / J_PER_KWH,
            server_energy_kwh: server_j / J_PER_KWH,
            blade_energy_kwh: blade_j / J_PER_KWH,
            transition_energy_kwh: totals.transition_joules / J_PER_KWH,
            active_energy_kwh: (server_j + blade_j
                - totals.joules_in(HostState::S3)
                - totals.joules_in(HostState::S5))
                / J_PER_KWH,
            energy_vs_ideal: 0.0,
            active_energy_vs_ideal: 0.0,
            savings_vs_server_centric_pct: None,
            server_hours: StateHours {
                s0_busy: hours(HostState::S0Busy),
                s0_idle: hours(HostState::S0Idle),
                s3: hours(HostState::S3),
                sz: hours(HostState::Sz),
                s5: hours(HostState::S5),
                transition: totals.transition_seconds / 3600.0,
            },
            wakes: st.wakes,
            zombie_conversions: st.conversions,
            vms_placed: st.placed,
            vms_rejected: st.rejected,
            sla,
            timeline: std::mem::take(&mut self.timeline),
        })
    }
}

/// Nearest-rank percentile of sorted values (1.0 for none).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 1.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests;
