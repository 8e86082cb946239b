//! Counters of the RAM-ext engine and the remote-fault latency histogram.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Upper bounds (microseconds) of the latency buckets; the last bucket has no bound.
pub const LATENCY_BOUNDS_US: [u64; 12] = [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384];

/// Live counters, updated by the engine's threads.
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) remote_faults: AtomicU64,
    pub(crate) zero_faults: AtomicU64,
    pub(crate) write_protect_faults: AtomicU64,
    pub(crate) prefetched_pages: AtomicU64,
    pub(crate) evicted_pages: AtomicU64,
    pub(crate) written_back_pages: AtomicU64,
    pub(crate) zero_pages_dropped: AtomicU64,
    pub(crate) discarded_pages: AtomicU64,
    pub(crate) evictions_cancelled: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) stall_ns: AtomicU64,
    pub(crate) errors: AtomicU64,
    latency: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
}

impl Counters {
    /// Records one remote fault that kept a thread waiting `ns` nanoseconds.
    pub(crate) fn record_remote_fault(&self, ns: u64) {
        self.remote_faults.fetch_add(1, Relaxed);
        self.stall_ns.fetch_add(ns, Relaxed);
        let us = ns / 1000;
        let bucket = LATENCY_BOUNDS_US
            .iter()
            .position(|&b| us < b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.latency[bucket].fetch_add(1, Relaxed);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> RamExtCounters {
        let l = |c: &AtomicU64| c.load(Relaxed);
        RamExtCounters {
            resident_pages: 0,
            remote_pages: 0,
            budget_pages: 0,
            remote_faults: l(&self.remote_faults),
            zero_faults: l(&self.zero_faults),
            write_protect_faults: l(&self.write_protect_faults),
            prefetched_pages: l(&self.prefetched_pages),
            evicted_pages: l(&self.evicted_pages),
            written_back_pages: l(&self.written_back_pages),
            zero_pages_dropped: l(&self.zero_pages_dropped),
            discarded_pages: l(&self.discarded_pages),
            evictions_cancelled: l(&self.evictions_cancelled),
            bytes_in: l(&self.bytes_in),
            bytes_out: l(&self.bytes_out),
            stall_ns: l(&self.stall_ns),
            errors: l(&self.errors),
            fault_latency_us: LatencyHistogram {
                bounds_us: LATENCY_BOUNDS_US.to_vec(),
                counts: self.latency.iter().map(l).collect(),
            },
        }
    }
}

/// Remote-fault latencies: `counts[i]` faults took less than `bounds_us[i]` (and at least
/// the previous bound); the last count is everything slower than the last bound.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LatencyHistogram {
    /// Bucket upper bounds in microseconds.
    pub bounds_us: Vec<u64>,
    /// Faults per bucket (one more than the bounds).
    pub counts: Vec<u64>,
}

impl LatencyHistogram {
    /// The bucket bound under which fraction `q` (0..=1) of the faults fall: an upper bound
    /// on the `q` quantile, in microseconds (None without faults, or past the last bound).
    pub fn quantile_bound_us(&self, q: f64) -> Option<u64> {
        let total: u64 = self.counts.iter().sum();
        if total == 0 {
            return None;
        }
        let want = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return self.bounds_us.get(i).copied();
            }
        }
        None
    }
}

/// What `vm.counters` shows of a VM's RAM extension.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RamExtCounters {
    /// Guest pages mapped in the VMM process now.
    pub resident_pages: u64,
    /// Guest pages whose copy is on the memory servers.
    pub remote_pages: u64,
    /// Resident pages the engine keeps at most (its current budget).
    pub budget_pages: u64,
    /// Faults served from the memory servers.
    pub remote_faults: u64,
    /// Faults on never-written pages, served with zeros and no network round trip.
    pub zero_faults: u64,
    /// First writes to clean pages (the dirty tracking).
    pub write_protect_faults: u64,
    /// Pages fetched ahead of a fault (Leap-style trend prefetch).
    pub prefetched_pages: u64,
    /// Pages dropped from the VMM process.
    pub evicted_pages: u64,
    /// Dirty pages written to the memory servers.
    pub written_back_pages: u64,
    /// Dirty pages that turned out all zero: dropped without shipping.
    pub zero_pages_dropped: u64,
    /// Pages the guest gave up (balloon, free page reporting): dropped or their remote copy
    /// forgotten, never written back.
    pub discarded_pages: u64,
    /// Evictions undone because the guest wrote the page while it was being written back.
    pub evictions_cancelled: u64,
    /// Bytes read from the memory servers.
    pub bytes_in: u64,
    /// Bytes written to the memory servers.
    pub bytes_out: u64,
    /// Total time faulting threads waited for remote pages, in nanoseconds.
    pub stall_ns: u64,
    /// Failed remote operations (the engine retried or kept the page).
    pub errors: u64,
    /// Remote-fault latency histogram.
    pub fault_latency_us: LatencyHistogram,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_buckets() {
        let c = Counters::default();
        for ns in [500, 3_000, 3_500, 20_000, 100_000_000] {
            c.record_remote_fault(ns);
        }
        let s = c.snapshot();
        assert_eq!(s.remote_faults, 5);
        assert_eq!(s.stall_ns, 100_027_000);
        let h = &s.fault_latency_us;
        assert_eq!(h.counts[0], 1); // < 2 us
        assert_eq!(h.counts[1], 2); // < 4 us
        assert_eq!(h.counts[4], 1); // < 32 us
        assert_eq!(*h.counts.last().unwrap(), 1); // 100 ms
        assert_eq!(h.quantile_bound_us(0.5), Some(4));
        assert_eq!(h.quantile_bound_us(0.8), Some(32));
        assert_eq!(h.quantile_bound_us(1.0), None);
    }
}
