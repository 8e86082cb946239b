//! Arrivals: choosing a host, splitting a VM's memory into local and remote, borrowing zombie
//! memory, waking servers.

use super::fit::EPS;
use super::server::Phase;
use super::{Engine, Kind, Placement};
use crate::sim::policy::RemoteSource;
use crate::sim::trace::Request;
use crate::sim::SimError;

impl Engine<'_> {
    pub(super) fn arrive(&mut self, idx: usize) -> Result<(), SimError> {
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
    pub(super) fn split(&self, req: &Request, need_local: f64, mem_free: f64) -> (f64, f64) {
        let fair = req.cpus * self.dc.mem_gib_per_server / self.dc.cpus_per_server;
        let want = fair.max(need_local).min(req.mem_gib);
        let local = mem_free.min(want).max(0.0);
        (local, (req.mem_gib - local).max(0.0))
    }

    /// A powered-on (or waking) server that fits with remote memory available, else a sleeping
    /// one that would. Returns (host, local GiB, remote GiB).
    pub(super) fn choose_host(&self, req: &Request, need_local: f64) -> Option<(u32, f64, f64)> {
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
        if zombie.is_some() {
            return zombie;
        }
        if self.policy.remote_source() != RemoteSource::RackBlade {
            return self.asleep_s3.first().copied().and_then(try_host);
        }
        // Rack-scale: the first sleeping server whose rack's blade has room; one try per rack.
        let rack_size = self.dc.servers_per_rack;
        let mut from = 0u32;
        while let Some(&h) = self.asleep_s3.range(from..).next() {
            if let Some(found) = try_host(h) {
                return Some(found);
            }
            from = (h / rack_size + 1) * rack_size;
        }
        None
    }

    pub(super) fn remote_available(&self, host: u32, remote: f64) -> bool {
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

    pub(super) fn commit(
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
    pub(super) fn borrow(&mut self, mut gib: f64) -> Result<Vec<(u32, f64)>, SimError> {
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
                    self.lenders_remove(z);
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
    pub(super) fn convert_to_zombie(&mut self, z: u32) -> Result<(), SimError> {
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

    pub(super) fn wake(&mut self, i: u32) -> Result<(), SimError> {
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
}
