//! Event-driven simulation of one policy over one trace. Events (departures, servers finishing a
//! transition, idle timers, samples) sit in a min-heap; arrivals are merged in from the sorted
//! trace. Nothing ticks: each server's energy account integrates between its own state changes.

mod fit;
mod server;

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap};

use crate::power::{HostState, PowerProfile, StateTotals};

use super::datacenter::Datacenter;
use super::policy::{Policy, RemoteSource};
use super::report::{PolicyRun, Sla, StateHours, Timeline};
use super::trace::{Request, Trace};
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

    // ----- arrivals -----

    fn arrive(&mut self, idx: usize) -> Result<(), SimError> {
        let req = self.trace.requests[idx];
        let min_local = self.policy.min_local_gib(&req).min(req.mem_gib);
        let mut tries = vec![min_local];
        if min_local < req.mem_gib - EPS {
            // Fallback when no remote memory is left: place the VM whole, as server-centric would.
            tries.push(req.mem_gib);
        }
        for need in tries {
            if let Some((host, local, remote)) = self.choose_host(&req, need) {
                return self.commit(idx, &req, host, local, remote);
            }
        }
        self.stats.rejected += 1;
        Ok(())
    }

    /// How much of `req` a host with `mem_free` keeps local. Disaggregating policies keep the VM's
    /// fair share (its cores' share of the server's memory, at least its hot part) so that servers
    /// fill up by CPU, which is the point of consolidating by CPU; the rest goes remote.
    fn split(&self, req: &Request, need_local: f64, mem_free: f64) -> (f64, f64) {
        let fair = req.cpus * self.dc.mem_gib_per_server / self.dc.cpus_per_server;
        let want = fair.max(need_local).min(req.mem_gib);
        let local = mem_free.min(want).max(0.0);
        (local, (req.mem_gib - local).max(0.0))
    }

    /// A powered-on (or waking) server that fits with remote memory available, else a sleeping
    /// one that would. Returns (host, local GiB, remote GiB).
    fn choose_host(&self, req: &Request, need_local: f64) -> Option<(u32, f64, f64)> {
        let try_host = |h: u32| {
            let (local, remote) = self.split(req, need_local, self.servers[h as usize].mem_free);
            (remote <= EPS || self.remote_available(h, remote)).then_some((h, local, remote))
        };
        let mut start = 0usize;
        while let Some(i) = self.fit.find_from(start, req.cpus, need_local) {
            if let Some(found) = try_host(i as u32) {
                return Some(found);
            }
            if self.policy.remote_source() != RemoteSource::RackBlade {
                break; // zombie memory does not depend on the host: no other server does better
            }
            // This rack's blade is full: go on with the next rack.
            let rack_size = self.dc.servers_per_rack as usize;
            start = (i / rack_size + 1) * rack_size;
        }
        if req.cpus > self.dc.cpus_per_server + EPS {
            return None;
        }
        // Zombies first: waking one puts its CPUs to use while its memory keeps serving.
        let zombie = self
            .asleep_sz
            .iter()
            .copied()
            .filter(|z| self.servers[*z as usize].mem_free >= need_local - EPS)
            .find_map(try_host);
        zombie.or_else(|| match self.policy.remote_source() {
            RemoteSource::RackBlade => self.asleep_s3.iter().copied().find_map(try_host),
            _ => self.asleep_s3.first().copied().and_then(try_host),
        })
    }

    fn remote_available(&self, host: u32, remote: f64) -> bool {
        match self.policy.remote_source() {
            RemoteSource::None => false,
            RemoteSource::RackBlade => {
                let rack = (host / self.dc.servers_per_rack) as usize;
                self.blade_used[rack] + remote <= self.dc.blade_gib_per_rack + EPS
            }
            RemoteSource::Zombies => {
                let host_is_s3 = self.asleep_s3.contains(&host);
                let host_lends = self.lenders.contains(&host);
                let spare_s3 = self.asleep_s3.len() - usize::from(host_is_s3);
                let mut lendable = self.lendable_gib;
                if host_lends {
                    lendable -= self.servers[host as usize].mem_free;
                }
                lendable + spare_s3 as f64 * self.dc.mem_gib_per_server >= remote - EPS
            }
        }
    }

    fn commit(
        &mut self,
        idx: usize,
        req: &Request,
        host: u32,
        local: f64,
        remote: f64,
    ) -> Result<(), SimError> {
        let t = self.now;
        if let Phase::Asleep(_) = self.servers[host as usize].phase {
            self.wake(host)?;
        }
        if let Phase::Waking { ready_at } = self.servers[host as usize].phase {
            let delay = ready_at - t;
            self.stats.delayed += 1;
            self.stats.delay_sum += delay;
            self.stats.delay_max = self.stats.delay_max.max(delay);
        }
        {
            let s = &mut self.servers[host as usize];
            s.cpu_free -= req.cpus;
            s.mem_free -= local;
            s.vms += 1;
            s.token += 1;
        }
        self.refit(host);
        self.reaccount(host)?;

        let mut placement = Placement {
            host,
            local_gib: local,
            blade_gib: 0.0,
            loans: Vec::new(),
        };
        if remote > EPS {
            match self.policy.remote_source() {
                RemoteSource::RackBlade => {
                    self.advance_blades();
                    let rack = (host / self.dc.servers_per_rack) as usize;
                    self.blade_used[rack] += remote;
                    self.blade_total_used += remote;
                    placement.blade_gib = remote;
                }
                RemoteSource::Zombies => placement.loans = self.borrow(remote)?,
                RemoteSource::None => {}
            }
        }
        let remote_fraction = (remote / req.mem_gib).clamp(0.0, 1.0);
        let slowdown = self.policy.slowdown(remote_fraction).max(1.0);
        self.stats.placed += 1;
        self.stats.slowdowns.push(slowdown);
        self.stats.remote_fraction_sum += remote_fraction;
        if remote > EPS {
            self.stats.with_remote += 1;
        }
        // Remote memory slows the VM: its CPUs stay busy for the stretched lifetime.
        let departure = req.arrival_s + (req.departure_s - req.arrival_s) * slowdown;
        self.placements[idx] = Some(placement);
        self.push(departure, Kind::Departure, idx as u32, 0);
        Ok(())
    }

    /// Takes `gib` from zombies, turning S3 servers into zombies when the current ones are full.
    fn borrow(&mut self, mut gib: f64) -> Result<Vec<(u32, f64)>, SimError> {
        let mut loans = Vec::new();
        while gib > EPS {
            if let Some(&z) = self.lenders.first() {
                let s = &mut self.servers[z as usize];
                let take = s.mem_free.min(gib);
                s.mem_free -= take;
                s.lent += take;
                self.lendable_gib -= take;
                gib -= take;
                loans.push((z, take));
                if self.servers[z as usize].mem_free <= EPS {
                    self.lenders.remove(&z);
                }
            } else if let Some(&z) = self.asleep_s3.last() {
                // Highest index: first fit packs VMs at the low end, so lenders come from the top.
                self.convert_to_zombie(z)?;
            } else {
                break; // remote_available() said enough; only rounding can leave a crumb
            }
        }
        Ok(loans)
    }

    /// S3 -> Sz: the server resumes and suspends again into Sz (charged as a transition).
    fn convert_to_zombie(&mut self, z: u32) -> Result<(), SimError> {
        self.asleep_s3.remove(&z);
        let t = self.now;
        let tr = &self.profile.transitions;
        let done = t + tr.resume_from_s3_s + tr.suspend_s;
        let s = &mut self.servers[z as usize];
        s.phase = Phase::Converting;
        s.account.begin_transition(t)?;
        self.lenders_insert(z);
        self.stats.conversions += 1;
        self.push(done, Kind::Asleep, z, 0);
        Ok(())
    }

    fn wake(&mut self, i: u32) -> Result<(), SimError> {
        let t = self.now;
        let Phase::Asleep(state) = self.servers[i as usize].phase else {
            return Ok(());
        };
        self.asleep_s3.remove(&i);
        self.asleep_sz.remove(&i);
        self.lenders_remove(i);
        let ready_at = t + self.profile.transitions.wake_s(state);
        let s = &mut self.servers[i as usize];
        s.phase = Phase::Waking { ready_at };
        s.account.begin_transition(t)?;
        self.stats.wakes += 1;
        self.refit(i);
        self.push(ready_at, Kind::Ready, i, 0);
        Ok(())
    }

    // ----- other events -----

    fn depart(&mut self, idx: usize) -> Result<(), SimError> {
        let Some(p) = self.placements[idx].take() else {
            return Ok(());
        };
        let req = self.trace.requests[idx];
        let host = p.host;
        {
            let s = &mut self.servers[host as usize];
            s.cpu_free = (s.cpu_free + req.cpus).min(self.dc.cpus_per_server);
            s.mem_free += p.local_gib;
            s.vms -= 1;
        }
        self.refit(host);
        self.reaccount(host)?;
        let s = &self.servers[host as usize];
        if s.vms == 0 && s.phase == Phase::On {
            let (token, at) = (s.token, self.now + self.dc.idle_before_sleep_s);
            self.push(at, Kind::SleepCheck, host, token);
        }
        if p.blade_gib > 0.0 {
            self.advance_blades();
            let rack = (host / self.dc.servers_per_rack) as usize;
            self.blade_used[rack] = (self.blade_used[rack] - p.blade_gib).max(0.0);
            self.blade_total_used = (self.blade_total_used - p.blade_gib).max(0.0);
        }
        for (z, gib) in p.loans {
            self.repay(z, gib)?;
        }
        Ok(())
    }

    fn repay(&mut self, z: u32, gib: f64) -> Result<(), SimError> {
        let in_lenders = self.lenders.contains(&z);
        {
            let s = &mut self.servers[z as usize];
            s.lent = (s.lent - gib).max(0.0);
            s.mem_free += gib;
        }
        let phase = self.servers[z as usize].phase;
        match phase {
            Phase::On | Phase::Waking { .. } => self.refit(z),
            Phase::Converting => {
                if in_lenders {
                    self.lendable_gib += gib;
                } else {
                    self.lenders_insert(z);
                }
            }
            Phase::Asleep(HostState::Sz) => {
                if self.servers[z as usize].lent <= EPS {
                    // Nothing lent any more: drop to S3. Only DRAM refresh mode and NIC power
                    // change, so no resume is charged (assumption, docs/energy.md).
                    self.lenders_remove(z);
                    self.asleep_sz.remove(&z);
                    self.asleep_s3.insert(z);
                    let s = &mut self.servers[z as usize];
                    s.lent = 0.0;
                    s.mem_free = self.dc.mem_gib_per_server;
                    s.phase = Phase::Asleep(HostState::S3);
                    s.account.enter(HostState::S3, self.now)?;
                } else if in_lenders {
                    self.lendable_gib += gib;
                } else {
                    self.lenders_insert(z);
                }
            }
            Phase::Suspending | Phase::Asleep(_) => {}
        }
        Ok(())
    }

    fn ready(&mut self, i: u32) -> Result<(), SimError> {
        if !matches!(self.servers[i as usize].phase, Phase::Waking { .. }) {
            return Ok(());
        }
        self.servers[i as usize].phase = Phase::On;
        self.reaccount(i)?;
        let s = &self.servers[i as usize];
        if s.vms == 0 {
            let (token, at) = (s.token, self.now + self.dc.idle_before_sleep_s);
            self.push(at, Kind::SleepCheck, i, token);
        }
        Ok(())
    }

    fn sleep_check(&mut self, i: u32, token: u64) -> Result<(), SimError> {
        let s = &mut self.servers[i as usize];
        if s.phase != Phase::On || s.vms != 0 || s.token != token {
            return Ok(());
        }
        s.phase = Phase::Suspending;
        s.account.begin_transition(self.now)?;
        self.refit(i);
        let at = self.now + self.profile.transitions.suspend_s;
        self.push(at, Kind::Asleep, i, 0);
        Ok(())
    }

    fn fall_asleep(&mut self, i: u32) -> Result<(), SimError> {
        if !matches!(
            self.servers[i as usize].phase,
            Phase::Suspending | Phase::Converting
        ) {
            return Ok(());
        }
        let lent = self.servers[i as usize].lent;
        let target = self.policy.sleep_state(if lent > EPS { lent } else { 0.0 });
        {
            let s = &mut self.servers[i as usize];
            s.phase = Phase::Asleep(target);
            s.account.enter(target, self.now)?;
        }
        if target == HostState::Sz {
            self.asleep_sz.insert(i);
            self.lenders_insert(i);
        } else {
            self.lenders_remove(i);
            self.asleep_s3.insert(i);
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
