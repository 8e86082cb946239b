//! Seeded synthetic workload generator. Distributions and their sources:
//!
//! - **VM sizes** (cores 1/2/4/8/16 with weights 0.35/0.30/0.20/0.10/0.05): shaped after the VM-size
//!   CDFs of Azure's public VM trace, Cortez et al., "Resource Central", SOSP 2017 (most VMs have
//!   1-2 cores, few are large). The weights are our reading of those CDFs, not a table of the
//!   paper: approximate.
//! - **Lifetimes**: a two-class mixture, 60% short VMs (exponential, mean 20 min) and 40% long VMs
//!   (exponential, mean 6 h): Resource Central reports that most VMs live less than an hour while
//!   long-lived VMs hold most of the core-hours; Reiss et al., "Heterogeneity and dynamicity of
//!   clouds at scale: Google trace analysis", SoCC 2012 report the same short-task/long-tail shape.
//!   Class weights and means are our approximation.
//! - **Memory per core**: `mem_per_core_gib` x uniform(0.5, 1.5), capped at a server's memory. The
//!   default (12 GiB/core against 4 GiB/core servers) makes server-centric consolidation memory-bound
//!   by the factor the ZombieLand paper's headline implies (see docs/energy.md): this is the
//!   "workload shaped like the paper's" knob, not an independent statistic.
//! - **Hot (touched) fraction**: uniform(`hot_min`, `hot_max`), default (0.1, 0.9), so that half of the VMs touch less than half of
//!   their memory, as Pond (Li et al., ASPLOS 2023) reports for Azure ("~50% of VMs never touch 50%
//!   of their rented memory").
//! - **Arrivals**: Poisson with a diurnal rate `1 + 0.3 sin(2 pi t / 24 h)` (assumption: cluster
//!   traces show a daily cycle of this order), starting from the steady-state population.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::datacenter::Datacenter;
use super::trace::{Request, Trace};
use super::SimError;

/// Knobs of the generator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyntheticParams {
    /// Simulated hours.
    pub hours: f64,
    /// RNG seed: same seed, same trace.
    pub seed: u64,
    /// Mean memory asked per core, GiB.
    pub mem_per_core_gib: f64,
    /// Mean share of the datacenter's memory asked by running VMs.
    pub memory_load: f64,
    /// Hot fraction is drawn uniformly from `hot_min..hot_max`.
    pub hot_min: f64,
    /// Upper end of the hot fraction range (at most 1).
    pub hot_max: f64,
}

impl Default for SyntheticParams {
    fn default() -> Self {
        SyntheticParams {
            hours: 24.0,
            seed: 7,
            mem_per_core_gib: 12.0,
            memory_load: 0.5,
            hot_min: 0.1,
            hot_max: 0.9,
        }
    }
}

const CORES: [(f64, f64); 5] = [
    (1.0, 0.35),
    (2.0, 0.30),
    (4.0, 0.20),
    (8.0, 0.10),
    (16.0, 0.05),
];
/// (weight, mean lifetime in seconds) of the lifetime classes.
const LIFETIMES: [(f64, f64); 2] = [(0.6, 20.0 * 60.0), (0.4, 6.0 * 3600.0)];
const DIURNAL_AMPLITUDE: f64 = 0.3;
const DAY_S: f64 = 86_400.0;

fn pick(
    rng: &mut ChaCha8Rng,
    table: &[(f64, f64)],
    weight_of: impl Fn(&(f64, f64)) -> f64,
) -> usize {
    let total: f64 = table.iter().map(&weight_of).sum();
    let mut x = rng.gen::<f64>() * total;
    for (i, e) in table.iter().enumerate() {
        x -= weight_of(e);
        if x < 0.0 {
            return i;
        }
    }
    table.len() - 1
}

fn exponential(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    // 1 - U is in (0, 1], so ln never sees 0.
    -(1.0 - rng.gen::<f64>()).ln() * mean
}

/// Generates a trace for `dc`.
pub fn generate(dc: &Datacenter, params: &SyntheticParams) -> Result<Trace, SimError> {
    dc.validate()?;
    for (field, v) in [
        ("hours", params.hours),
        ("mem_per_core_gib", params.mem_per_core_gib),
        ("memory_load", params.memory_load),
    ] {
        if !v.is_finite() || v <= 0.0 {
            return Err(SimError::InvalidField {
                field,
                reason: format!("{v} must be a finite number > 0"),
            });
        }
    }
    if !(params.hot_min > 0.0 && params.hot_min <= params.hot_max && params.hot_max <= 1.0) {
        return Err(SimError::InvalidField {
            field: "hot_min/hot_max",
            reason: format!(
                "need 0 < hot_min <= hot_max <= 1, got {}..{}",
                params.hot_min, params.hot_max
            ),
        });
    }
    let horizon = params.hours * 3600.0;
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mean_cores: f64 = CORES.iter().map(|(c, w)| c * w).sum();
    let mean_mem = mean_cores * params.mem_per_core_gib; // before the cap; close enough for sizing
    let mean_life: f64 = LIFETIMES.iter().map(|(w, m)| w * m).sum();
    let population = params.memory_load * f64::from(dc.servers) * dc.mem_gib_per_server / mean_mem;
    let rate = population / mean_life;

    let mut requests = Vec::new();
    let make = |rng: &mut ChaCha8Rng, id: u64, arrival: f64, life_mean: f64| {
        let cpus = CORES[pick(rng, &CORES, |e| e.1)].0.min(dc.cpus_per_server);
        let mem =
            (cpus * params.mem_per_core_gib * rng.gen_range(0.5..1.5)).min(dc.mem_gib_per_server);
        let hot = params.hot_min + (params.hot_max - params.hot_min) * rng.gen::<f64>();
        let life = exponential(rng, life_mean).max(1.0);
        Request {
            id,
            arrival_s: arrival,
            departure_s: arrival + life,
            cpus,
            mem_gib: (mem * 1024.0).round() / 1024.0,
            hot_fraction: ((hot * 1000.0f64).round() / 1000.0).clamp(0.001, 1.0),
        }
    };
    // Steady-state population at t=0: a running VM's class is weighted by how long it lives, and
    // its remaining life is again exponential with the class mean (memorylessness).
    let mut id = 0u64;
    for _ in 0..population.round() as u64 {
        let class = pick(&mut rng, &LIFETIMES, |(w, m)| w * m);
        requests.push(make(&mut rng, id, 0.0, LIFETIMES[class].1));
        id += 1;
    }
    // Diurnal Poisson arrivals by thinning.
    let peak = rate * (1.0 + DIURNAL_AMPLITUDE);
    let mut t = 0.0;
    loop {
        t += exponential(&mut rng, 1.0 / peak);
        if t >= horizon {
            break;
        }
        let accept = (1.0 + DIURNAL_AMPLITUDE * (2.0 * std::f64::consts::PI * t / DAY_S).sin())
            / (1.0 + DIURNAL_AMPLITUDE);
        if rng.gen::<f64>() >= accept {
            continue;
        }
        let class = pick(&mut rng, &LIFETIMES, |(w, _)| *w);
        requests.push(make(&mut rng, id, t, LIFETIMES[class].1));
        id += 1;
    }
    Ok(Trace::new(requests, Some(horizon)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Datacenter {
        Datacenter {
            servers: 50,
            ..Datacenter::default()
        }
    }

    #[test]
    fn same_seed_same_trace_different_seed_differs() {
        let p = SyntheticParams {
            hours: 2.0,
            ..SyntheticParams::default()
        };
        let a = generate(&small(), &p).unwrap();
        let b = generate(&small(), &p).unwrap();
        assert_eq!(a, b);
        let c = generate(&small(), &SyntheticParams { seed: 8, ..p }).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn requests_are_valid_and_sized_to_load() {
        let dc = small();
        let p = SyntheticParams::default();
        let t = generate(&dc, &p).unwrap();
        assert_eq!(t.horizon_s, 24.0 * 3600.0);
        for r in &t.requests {
            assert!(r.cpus > 0.0 && r.cpus <= dc.cpus_per_server);
            assert!(r.mem_gib > 0.0 && r.mem_gib <= dc.mem_gib_per_server);
            assert!(r.hot_fraction > 0.0 && r.hot_fraction <= 1.0);
            assert!(r.departure_s > r.arrival_s);
        }
        // Memory asked at t=0 is near the target load (50% of 50 x 128 GiB = 3200 GiB).
        let at0: f64 = t
            .requests
            .iter()
            .filter(|r| r.arrival_s == 0.0)
            .map(|r| r.mem_gib)
            .sum();
        assert!((2000.0..4500.0).contains(&at0), "{at0}");
    }

    #[test]
    fn bad_params_name_the_field() {
        let p = SyntheticParams {
            hours: 0.0,
            ..SyntheticParams::default()
        };
        assert!(generate(&small(), &p)
            .unwrap_err()
            .to_string()
            .contains("hours"));
    }
}
