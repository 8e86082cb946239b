//! The slab store: memory, ownership, capacity/quota accounting and counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde::Serialize;

use revenant_acpi::power::{HostState, PowerProfile};

use crate::power::PowerState;
use crate::protocol::{ClientKey, Status};

/// One slab: its bytes and the client that owns it.
pub struct Slab {
    owner: ClientKey,
    /// Readers (READ replies) write straight from this memory to the socket
    /// while holding the read lock; writers copy in under the write lock.
    pub data: RwLock<Box<[u8]>>,
}

/// Sizes the store enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes per slab.
    pub slab_size: u64,
    /// Total bytes of slabs the server hands out.
    pub capacity: u64,
    /// Most bytes of slabs one client key may hold.
    pub quota: u64,
}

/// Monotonic counters, exported in the STAT reply.
#[derive(Default)]
pub struct Counters {
    /// READ requests served.
    pub reads: AtomicU64,
    /// WRITE requests served.
    pub writes: AtomicU64,
    /// Bytes returned by READs.
    pub bytes_read: AtomicU64,
    /// Bytes stored by WRITEs.
    pub bytes_written: AtomicU64,
    /// Slabs allocated.
    pub allocs: AtomicU64,
    /// Slabs freed.
    pub frees: AtomicU64,
    /// Requests answered with a non-OK status.
    pub errors: AtomicU64,
    /// Connections closed because of a malformed frame or failed handshake.
    pub protocol_errors: AtomicU64,
    /// Connections currently open.
    pub connections: AtomicU64,
}

/// Seconds spent in each power state, for the energy model.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct StateSeconds {
    /// Seconds in S0.
    pub s0: f64,
    /// Seconds in Sz.
    pub sz: f64,
    /// Seconds in S3.
    pub s3: f64,
}

struct PowerClock {
    since: Instant,
    spent: StateSeconds,
}

/// Joules spent in each power state, from the acpi power model: S0 at idle power (memd does
/// not measure its host's CPU load), Sz and S3 at their sleep-state power.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct StateJoules {
    /// Joules in S0.
    pub s0: f64,
    /// Joules in Sz.
    pub sz: f64,
    /// Joules in S3.
    pub s3: f64,
    /// All states together.
    pub total: f64,
}

impl StateJoules {
    fn from_seconds(s: &StateSeconds, profile: &PowerProfile) -> Self {
        let w = |state| profile.power_w.watts(state);
        let (s0, sz, s3) = (
            s.s0 * w(HostState::S0Idle),
            s.sz * w(HostState::Sz),
            s.s3 * w(HostState::S3),
        );
        StateJoules {
            s0,
            sz,
            s3,
            total: s0 + sz + s3,
        }
    }
}

/// The STAT reply body.
#[derive(Debug, Serialize)]
pub struct StatsReport {
    /// Current power state.
    pub power_state: PowerState,
    /// Time spent per state since start (current state included up to now).
    pub seconds_in_state: StateSeconds,
    /// Energy spent per state since start, from the host's power profile.
    pub joules_in_state: StateJoules,
    /// Bytes per slab.
    pub slab_size: u64,
    /// Total capacity in bytes.
    pub capacity: u64,
    /// Bytes allocated to slabs.
    pub used: u64,
    /// `capacity - used`.
    pub free: u64,
    /// Per-client quota in bytes.
    pub quota: u64,
    /// Slabs allocated now.
    pub slabs: u64,
    /// Distinct client keys holding slabs.
    pub clients: u64,
    /// Counters (see [`Counters`]).
    pub reads: u64,
    #[allow(missing_docs)]
    pub writes: u64,
    #[allow(missing_docs)]
    pub bytes_read: u64,
    #[allow(missing_docs)]
    pub bytes_written: u64,
    #[allow(missing_docs)]
    pub allocs: u64,
    #[allow(missing_docs)]
    pub frees: u64,
    #[allow(missing_docs)]
    pub errors: u64,
    #[allow(missing_docs)]
    pub protocol_errors: u64,
    #[allow(missing_docs)]
    pub connections: u64,
}

/// All slabs of one server.
pub struct SlabStore {
    limits: Limits,
    slabs: RwLock<HashMap<u64, Arc<Slab>>>,
    /// Bytes held per client; the sum is `used`. Guarded together so that the
    /// capacity and quota checks and the increment are one atomic step.
    usage: Mutex<(u64, HashMap<ClientKey, u64>)>,
    next_id: AtomicU64,
    power: AtomicU8,
    clock: Mutex<PowerClock>,
    /// Watts per power state, for the energy in STAT.
    profile: Mutex<PowerProfile>,
    /// Counters, updated by connections.
    pub counters: Counters,
}

impl SlabStore {
    /// An empty store in power state `power`.
    pub fn new(limits: Limits, power: PowerState) -> Self {
        Self {
            limits,
            slabs: RwLock::new(HashMap::new()),
            usage: Mutex::new((0, HashMap::new())),
            next_id: AtomicU64::new(1),
            profile: Mutex::new(PowerProfile::default()),
            power: AtomicU8::new(power.code()),
            clock: Mutex::new(PowerClock {
                since: Instant::now(),
                spent: StateSeconds::default(),
            }),
            counters: Counters::default(),
        }
    }

    /// The limits this store enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Current power state.
    pub fn power(&self) -> PowerState {
        PowerState::from_code(self.power.load(Relaxed).into()).unwrap_or(PowerState::S0)
    }

    /// Changes the power state, closing the time interval of the old one.
    pub fn set_power(&self, state: PowerState) {
        let mut clock = self.clock.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.power();
        let secs = clock.since.elapsed().as_secs_f64();
        add_seconds(&mut clock.spent, old, secs);
        clock.since = Instant::now();
        self.power.store(state.code(), Relaxed);
        tracing::info!(from = ?old, to = ?state, "power state changed");
    }

    /// Bytes not yet allocated.
    pub fn free_bytes(&self) -> u64 {
        let usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        self.limits.capacity.saturating_sub(usage.0)
    }

    /// Allocates a zeroed slab for `owner`. The memory comes from calloc, which
    /// maps fresh zero pages lazily, so an allocation costs no page touching.
    pub fn alloc(&self, owner: &ClientKey) -> Result<u64, Status> {
        if !self.power().serves_alloc() {
            return Err(Status::PowerState);
        }
        let size = self.limits.slab_size;
        {
            let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
            if usage.0.saturating_add(size) > self.limits.capacity {
                return Err(Status::NoCapacity);
            }
            let mine = usage.1.entry(*owner).or_insert(0);
            if mine.saturating_add(size) > self.limits.quota {
                return Err(Status::QuotaExceeded);
            }
            *mine += size;
            usage.0 += size;
        }
        let len = usize::try_from(size).map_err(|_| Status::NoCapacity)?;
        let slab = Arc::new(Slab {
            owner: *owner,
            data: RwLock::new(vec![0u8; len].into_boxed_slice()),
        });
        let id = self.next_id.fetch_add(1, Relaxed);
        self.slabs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, slab);
        self.counters.allocs.fetch_add(1, Relaxed);
        Ok(id)
    }

    /// Frees `owner`'s slab `id`.
    pub fn free(&self, owner: &ClientKey, id: u64) -> Result<(), Status> {
        if !self.power().serves_alloc() {
            return Err(Status::PowerState);
        }
        {
            let mut slabs = self.slabs.write().unwrap_or_else(|p| p.into_inner());
            match slabs.get(&id) {
                Some(s) if s.owner == *owner => slabs.remove(&id),
                _ => return Err(Status::NoSuchSlab),
            };
        }
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        usage.0 = usage.0.saturating_sub(self.limits.slab_size);
        if let Some(mine) = usage.1.get_mut(owner) {
            *mine = mine.saturating_sub(self.limits.slab_size);
            if *mine == 0 {
                usage.1.remove(owner);
            }
        }
        self.counters.frees.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Looks up `owner`'s slab `id` for I/O of `len` bytes at `offset` and
    /// returns it with the byte range to touch. Another client's slab is
    /// reported exactly like a missing one.
    pub fn for_io(
        &self,
        owner: &ClientKey,
        id: u64,
        offset: u64,
        len: u32,
    ) -> Result<(Arc<Slab>, std::ops::Range<usize>), Status> {
        if !self.power().serves_io() {
            return Err(Status::PowerState);
        }
        let slab = {
            let slabs = self.slabs.read().unwrap_or_else(|p| p.into_inner());
            match slabs.get(&id) {
                Some(s) if s.owner == *owner => Arc::clone(s),
                _ => return Err(Status::NoSuchSlab),
            }
        };
        let end = offset
            .checked_add(u64::from(len))
            .ok_or(Status::OutOfRange)?;
        if end > self.limits.slab_size {
            return Err(Status::OutOfRange);
        }
        // Both fit in usize: end <= slab_size, which was allocated as a usize.
        Ok((slab, offset as usize..end as usize))
    }

    /// The power profile energy is computed with (the acpi crate's default until set).
    pub fn power_profile(&self) -> PowerProfile {
        *self.profile.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Uses `profile` for the energy STAT reports from now on (past seconds included).
    pub fn set_power_profile(&self, profile: PowerProfile) {
        *self.profile.lock().unwrap_or_else(|p| p.into_inner()) = profile;
    }

    /// Snapshot of everything STAT reports.
    pub fn report(&self) -> StatsReport {
        let (used, clients) = {
            let usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
            (usage.0, usage.1.len() as u64)
        };
        let seconds = {
            let clock = self.clock.lock().unwrap_or_else(|p| p.into_inner());
            let mut s = clock.spent;
            add_seconds(&mut s, self.power(), clock.since.elapsed().as_secs_f64());
            s
        };
        let c = &self.counters;
        StatsReport {
            power_state: self.power(),
            seconds_in_state: seconds,
            joules_in_state: StateJoules::from_seconds(&seconds, &self.power_profile()),
            slab_size: self.limits.slab_size,
            capacity: self.limits.capacity,
            used,
            free: self.limits.capacity.saturating_sub(used),
            quota: self.limits.quota,
            slabs: self.slabs.read().unwrap_or_else(|p| p.into_inner()).len() as u64,
            clients,
            reads: c.reads.load(Relaxed),
            writes: c.writes.load(Relaxed),
            bytes_read: c.bytes_read.load(Relaxed),
            bytes_written: c.bytes_written.load(Relaxed),
            allocs: c.allocs.load(Relaxed),
            frees: c.frees.load(Relaxed),
            errors: c.errors.load(Relaxed),
            protocol_errors: c.protocol_errors.load(Relaxed),
            connections: c.connections.load(Relaxed),
        }
    }
}

fn add_seconds(s: &mut StateSeconds, state: PowerState, secs: f64) {
    match state {
        PowerState::S0 => s.s0 += secs,
        PowerState::Sz => s.sz += secs,
        PowerState::S3 => s.s3 += secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> SlabStore {
        SlabStore::new(
            Limits {
                slab_size: 4096,
                capacity: 3 * 4096,
                quota: 2 * 4096,
            },
            PowerState::S0,
        )
    }

    #[test]
    fn quota_capacity_and_ownership_are_enforced() {
        let s = store();
        let (a, b) = ([1u8; 16], [2u8; 16]);
        let a1 = s.alloc(&a).unwrap();
        s.alloc(&a).unwrap();
        assert_eq!(s.alloc(&a), Err(Status::QuotaExceeded));
        s.alloc(&b).unwrap();
        assert_eq!(s.alloc(&b), Err(Status::NoCapacity));
        assert_eq!(s.for_io(&b, a1, 0, 8).err(), Some(Status::NoSuchSlab));
        assert_eq!(s.free(&b, a1), Err(Status::NoSuchSlab));
        assert_eq!(s.for_io(&a, a1, 4090, 8).err(), Some(Status::OutOfRange));
        assert_eq!(
            s.for_io(&a, a1, u64::MAX, 8).err(),
            Some(Status::OutOfRange)
        );
        assert_eq!(s.for_io(&a, a1, 8, 8).unwrap().1, 8..16);
        s.free(&a, a1).unwrap();
        assert_eq!(s.free_bytes(), 4096);
        assert!(s.alloc(&b).is_ok());
    }

    #[test]
    fn power_states_gate_requests() {
        let s = store();
        let a = [1u8; 16];
        let id = s.alloc(&a).unwrap();
        s.set_power(PowerState::Sz);
        assert_eq!(s.alloc(&a), Err(Status::PowerState));
        assert!(s.for_io(&a, id, 0, 8).is_ok());
        s.set_power(PowerState::S3);
        assert_eq!(s.for_io(&a, id, 0, 8).err(), Some(Status::PowerState));
        assert_eq!(s.report().power_state, PowerState::S3);
    }
}
