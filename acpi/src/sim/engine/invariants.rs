//! Bookkeeping invariants, checked after every step when the crate's own tests run. A bug in
//! loans, lender sets or free capacity shows up at the event that caused it, not as a slightly
//! wrong energy total.

use std::collections::HashMap;

use super::server::Phase;
use super::Engine;
use crate::power::HostState;

const TOL: f64 = 1e-6;

impl Engine<'_> {
    pub(super) fn check_invariants(&self) {
        let mut local_used: HashMap<u32, f64> = HashMap::new();
        let mut lent_to: HashMap<u32, f64> = HashMap::new();
        let mut cpu_used: HashMap<u32, f64> = HashMap::new();
        let mut vms: HashMap<u32, u32> = HashMap::new();
        let mut blade = vec![0.0; self.blade_used.len()];
        for (idx, p) in self.placements.iter().enumerate() {
            let Some(p) = p else { continue };
            *local_used.entry(p.host).or_default() += p.local_gib;
            *cpu_used.entry(p.host).or_default() += self.trace.requests[idx].cpus;
            *vms.entry(p.host).or_default() += 1;
            blade[(p.host / self.dc.servers_per_rack) as usize] += p.blade_gib;
            for (z, g) in &p.loans {
                assert_ne!(*z, p.host, "a VM borrowed from its own host");
                *lent_to.entry(*z).or_default() += g;
            }
        }
        let mem = self.dc.mem_gib_per_server;
        for (i, s) in self.servers.iter().enumerate() {
            let i = i as u32;
            let local = local_used.get(&i).copied().unwrap_or(0.0);
            let lent = lent_to.get(&i).copied().unwrap_or(0.0);
            let cpu = cpu_used.get(&i).copied().unwrap_or(0.0);
            assert!(
                (s.lent - lent).abs() < TOL,
                "server {i}: lent {} vs loans {lent}",
                s.lent
            );
            assert!(
                (s.mem_free + lent + local - mem).abs() < TOL,
                "server {i}: free {} + lent {lent} + local {local} != {mem}",
                s.mem_free
            );
            assert!(
                s.mem_free > -TOL && s.cpu_free > -TOL,
                "server {i} overcommitted"
            );
            assert!((self.dc.cpus_per_server - s.cpu_free - cpu).abs() < TOL);
            assert_eq!(
                s.vms,
                vms.get(&i).copied().unwrap_or(0),
                "server {i} VM count"
            );
            if s.vms > 0 {
                assert!(
                    s.phase.takes_vms(),
                    "server {i} runs VMs while {:?}",
                    s.phase
                );
            }
            let asleep_in = |st| s.phase == Phase::Asleep(st);
            assert_eq!(
                self.asleep_s3.contains(&i),
                asleep_in(HostState::S3),
                "server {i} S3 set"
            );
            assert_eq!(
                self.asleep_sz.contains(&i),
                asleep_in(HostState::Sz),
                "server {i} Sz set"
            );
            if asleep_in(HostState::S3) {
                assert!(s.lent < TOL, "server {i} lends memory from S3");
            }
            if self.lenders.contains(&i) {
                assert!(matches!(
                    s.phase,
                    Phase::Converting | Phase::Asleep(HostState::Sz)
                ));
            }
        }
        let lendable: f64 = self
            .lenders
            .iter()
            .map(|z| self.servers[*z as usize].mem_free)
            .sum();
        assert!(
            (lendable - self.lendable_gib).abs() < 1e-4,
            "t={} lendable {lendable} vs {}; lenders {:?}; servers {:?}",
            self.now,
            self.lendable_gib,
            self.lenders,
            self.servers
                .iter()
                .map(|s| (s.phase, s.mem_free, s.lent))
                .collect::<Vec<_>>()
        );
        for (r, used) in blade.iter().enumerate() {
            assert!((used - self.blade_used[r]).abs() < TOL, "rack {r} blade");
            assert!(
                *used <= self.dc.blade_gib_per_rack + TOL,
                "rack {r} blade overfull"
            );
        }
    }
}
