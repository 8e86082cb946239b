//! Departures and server power transitions: repaying loans, waking up, idle timers, falling asleep.

use super::fit::EPS;
use super::server::Phase;
use super::{Engine, Kind};
use crate::power::HostState;
use crate::sim::SimError;

impl Engine<'_> {
    pub(super) fn depart(&mut self, idx: usize) -> Result<(), SimError> {
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

    pub(super) fn repay(&mut self, z: u32, gib: f64) -> Result<(), SimError> {
        {
            let s = &mut self.servers[z as usize];
            s.lent = (s.lent - gib).max(0.0);
            s.mem_free += gib;
        }
        if self.lenders.contains(&z) {
            // Keep `lendable_gib` equal to the lenders' free memory before touching the set.
            self.lendable_gib += gib;
        }
        let phase = self.servers[z as usize].phase;
        match phase {
            Phase::On | Phase::Waking { .. } => self.refit(z),
            Phase::Converting => self.lenders_insert(z),
            Phase::Asleep(HostState::Sz) if self.servers[z as usize].lent <= EPS => {
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
            }
            Phase::Asleep(HostState::Sz) => self.lenders_insert(z),
            Phase::Suspending | Phase::Asleep(_) => {}
        }
        Ok(())
    }

    pub(super) fn ready(&mut self, i: u32) -> Result<(), SimError> {
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

    pub(super) fn sleep_check(&mut self, i: u32, token: u64) -> Result<(), SimError> {
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

    pub(super) fn fall_asleep(&mut self, i: u32) -> Result<(), SimError> {
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
}
