//! `revenant-sim`: datacenter energy simulation of server-centric, rack-scale, ZombieLand and
//! Revenant-calibrated placement policies. See `revenant-sim --help` and docs/energy.md.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use revenant_acpi::power::PowerProfile;
use revenant_acpi::sim::google::{self, GoogleScale};
use revenant_acpi::sim::policy::{
    Policy, RackScale, RevenantCalibrated, ServerCentric, ZombieLand, POLICY_NAMES,
};
use revenant_acpi::sim::synthetic::{self, SyntheticParams};
use revenant_acpi::sim::{plot, run_policies, Datacenter, RamExtCalibration, Trace};

/// The bundled EXAMPLE RAM-ext calibration (not a measurement).
const EXAMPLE_RAM_EXT: &str = include_str!("../../data/ram-ext-example.json");

/// Datacenter energy simulator: do zombie (Sz) servers pay off?
///
/// Replays VM requests against a datacenter under each placement policy and writes
/// OUT/summary.json, OUT/energy.svg and OUT/states-POLICY.svg, and prints a table.
///
/// Examples:
///   revenant-sim --synthetic --servers 1000 --hours 24 --seed 7 --policy all --out out/
///   revenant-sim --trace acpi/data/sample-trace.csv --servers 20 --out out/
///   revenant-sim --google-task-events part-00000.csv --google-task-usage usage.csv --out out/
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// Generate a seeded synthetic trace (default when no trace is given).
    /// Example: --synthetic --hours 24 --seed 7
    #[arg(long, conflicts_with_all = ["trace", "google_task_events"])]
    synthetic: bool,

    /// Trace CSV (columns id,arrival_s,departure_s,cpus,mem_gib,hot_fraction; docs/energy.md).
    /// Example: --trace acpi/data/sample-trace.csv
    #[arg(long, value_name = "FILE.csv", conflicts_with = "google_task_events")]
    trace: Option<PathBuf>,

    /// Google cluster-data 2011 task_events CSV to convert and simulate.
    /// Example: --google-task-events task_events/part-00000-of-00500.csv
    #[arg(long, value_name = "FILE")]
    google_task_events: Option<PathBuf>,

    /// Google task_usage CSV giving each task's touched (hot) memory fraction.
    /// Example: --google-task-usage task_usage/part-00000-of-00500.csv
    #[arg(long, value_name = "FILE", requires = "google_task_events")]
    google_task_usage: Option<PathBuf>,

    /// Datacenter description (TOML; every field optional, flags below override it).
    /// Example: --datacenter dc.toml
    #[arg(long, value_name = "FILE")]
    datacenter: Option<PathBuf>,

    /// Number of servers [default: 1000]. Example: --servers 10000
    #[arg(long)]
    servers: Option<u32>,

    /// Cores per server [default: 32]. Example: --cpus-per-server 48
    #[arg(long)]
    cpus_per_server: Option<f64>,

    /// Memory per server, GiB [default: 128]. Example: --mem-gib-per-server 256
    #[arg(long)]
    mem_gib_per_server: Option<f64>,

    /// Servers per rack (rack-scale policy: one memory blade per rack) [default: 40].
    /// Example: --servers-per-rack 42
    #[arg(long)]
    servers_per_rack: Option<u32>,

    /// Simulated hours: length of the synthetic trace [default: 24], or where a CSV/Google trace
    /// is cut [default: its last departure]. Example: --hours 24
    #[arg(long)]
    hours: Option<f64>,

    /// Seed of the synthetic generator (same seed + same input = byte-identical JSON).
    /// Example: --seed 7
    #[arg(long, default_value_t = 7)]
    seed: u64,

    /// Synthetic: mean GiB asked per core (12 = memory-heavy, like the paper's workload).
    /// Example: --mem-per-core-gib 4
    #[arg(long, default_value_t = 12.0)]
    mem_per_core_gib: f64,

    /// Synthetic: mean share of the datacenter's memory asked by running VMs.
    /// Example: --memory-load 0.5
    #[arg(long, default_value_t = 0.5)]
    memory_load: f64,

    /// Synthetic: smallest hot (touched) memory fraction of a VM. Example: --hot-min 0.05
    #[arg(long, default_value_t = 0.1)]
    hot_min: f64,

    /// Synthetic: largest hot (touched) memory fraction of a VM. Example: --hot-max 0.35
    #[arg(long, default_value_t = 0.9)]
    hot_max: f64,

    /// Policies: all, or a comma list of server_centric, rack_scale, zombieland, revenant.
    /// Example: --policy server_centric,zombieland
    #[arg(long, default_value = "all")]
    policy: String,

    /// Power profile (TOML, or JSON if it ends in .json) overriding the built-in one.
    /// Example: --power-profile my-servers.toml
    #[arg(long, value_name = "FILE")]
    power_profile: Option<PathBuf>,

    /// RAM-ext results from `scripts/bench ram-ext` for the revenant policy
    /// [default: the bundled EXAMPLE acpi/data/ram-ext-example.json, not a measurement].
    /// Example: --ram-ext-json ram-ext.json
    #[arg(long, value_name = "FILE")]
    ram_ext_json: Option<PathBuf>,

    /// Revenant policy: use the fixed-budget RAM-ext slowdown (`slowdown_at_50pct_local`) instead
    /// of the controller's (`slowdown_at_50pct_local_controller`). Example: --ram-ext-fixed-budget
    #[arg(long)]
    ram_ext_fixed_budget: bool,

    /// Revenant policy: largest run-time multiplier remote memory may cause a VM.
    /// Example: --max-slowdown 1.05
    #[arg(long, default_value_t = 1.05)]
    max_slowdown: f64,

    /// Output directory (created). Example: --out results/
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// Also write the trace that was simulated as CSV. Example: --write-trace out/trace.csv
    #[arg(long, value_name = "FILE")]
    write_trace: Option<PathBuf>,

    /// Skip the SVG plots.
    #[arg(long)]
    no_plots: bool,

    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn datacenter(cli: &Cli) -> Result<Datacenter> {
    let mut dc = match &cli.datacenter {
        Some(p) => Datacenter::load(p)?,
        None => Datacenter::default(),
    };
    if let Some(v) = cli.servers {
        dc.servers = v;
    }
    if let Some(v) = cli.cpus_per_server {
        dc.cpus_per_server = v;
    }
    if let Some(v) = cli.mem_gib_per_server {
        dc.mem_gib_per_server = v;
    }
    if let Some(v) = cli.servers_per_rack {
        dc.servers_per_rack = v;
    }
    dc.validate()?;
    Ok(dc)
}

fn trace(cli: &Cli, dc: &Datacenter) -> Result<(Trace, Option<u64>)> {
    if let Some(path) = &cli.trace {
        let t = Trace::read_csv(path).with_context(|| format!("trace {}", path.display()))?;
        return Ok((with_hours(t, cli.hours)?, None));
    }
    if let Some(events) = &cli.google_task_events {
        let read = |p: &Path| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        let usage = match &cli.google_task_usage {
            Some(p) => Some(
                google::parse_task_usage(&read(p)?).with_context(|| format!("{}", p.display()))?,
            ),
            None => None,
        };
        let scale = GoogleScale {
            largest_machine_cpus: dc.cpus_per_server,
            largest_machine_mem_gib: dc.mem_gib_per_server,
            ..GoogleScale::default()
        };
        let t = google::convert(&read(events)?, usage.as_ref(), &scale)
            .with_context(|| format!("{}", events.display()))?;
        return Ok((with_hours(t, cli.hours)?, None));
    }
    let params = SyntheticParams {
        hours: cli.hours.unwrap_or(24.0),
        seed: cli.seed,
        mem_per_core_gib: cli.mem_per_core_gib,
        memory_load: cli.memory_load,
        hot_min: cli.hot_min,
        hot_max: cli.hot_max,
    };
    Ok((synthetic::generate(dc, &params)?, Some(cli.seed)))
}

/// Cuts a file trace at `hours` when given.
fn with_hours(mut t: Trace, hours: Option<f64>) -> Result<Trace> {
    if let Some(h) = hours {
        if !(h.is_finite() && h > 0.0) {
            bail!("--hours {h} must be a number > 0");
        }
        t.horizon_s = h * 3600.0;
    }
    Ok(t)
}

fn policies(cli: &Cli) -> Result<Vec<Box<dyn Policy>>> {
    let names: Vec<&str> = if cli.policy == "all" {
        POLICY_NAMES.to_vec()
    } else {
        cli.policy.split(',').map(str::trim).collect()
    };
    let mut out: Vec<Box<dyn Policy>> = Vec::new();
    for name in names {
        out.push(match name {
            "server_centric" => Box::new(ServerCentric),
            "rack_scale" => Box::new(RackScale),
            "zombieland" => Box::new(ZombieLand),
            "revenant" => {
                let cal = match &cli.ram_ext_json {
                    Some(p) => RamExtCalibration::load(p)?,
                    None => {
                        eprintln!(
                            "revenant-sim: no --ram-ext-json, using the bundled EXAMPLE calibration"
                        );
                        RamExtCalibration::from_json_str(EXAMPLE_RAM_EXT)?
                    }
                };
                if !(cli.max_slowdown.is_finite() && cli.max_slowdown >= 1.0) {
                    bail!("--max-slowdown {} must be a number >= 1", cli.max_slowdown);
                }
                Box::new(RevenantCalibrated::with_budget(
                    cal,
                    cli.max_slowdown,
                    !cli.ram_ext_fixed_budget,
                ))
            }
            other => bail!(
                "--policy: unknown policy `{other}` (use all or {})",
                POLICY_NAMES.join(", ")
            ),
        });
    }
    Ok(out)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let profile = match &cli.power_profile {
        Some(p) => PowerProfile::load(p)?,
        None => PowerProfile::default(),
    };
    let dc = datacenter(&cli)?;
    let policies = policies(&cli)?;
    let (trace, seed) = trace(&cli, &dc)?;
    if let Some(p) = &cli.write_trace {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        );
        trace.write_csv(&mut f)?;
    }
    std::fs::create_dir_all(&cli.out).with_context(|| format!("creating {}", cli.out.display()))?;

    let total = (trace.requests.len() * policies.len()) as u64;
    let bar = if cli.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template("{msg:>15} [{bar:40}] {pos}/{len} requests ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let requests = trace.requests.len() as u64;
    let mut done_before = 0u64;
    let mut current = String::new();
    let summary = run_policies(&trace, &dc, &profile, &policies, seed, &mut |name, n| {
        if name != current {
            if !current.is_empty() {
                done_before += requests;
            }
            current = name.to_string();
            bar.set_message(name.to_string());
        }
        bar.set_position(done_before + n as u64);
    })?;
    bar.finish_and_clear();

    let json = serde_json::to_string_pretty(&summary)?;
    let summary_path = cli.out.join("summary.json");
    std::fs::write(&summary_path, json + "\n")
        .with_context(|| format!("writing {}", summary_path.display()))?;
    if !cli.no_plots {
        plot::energy_per_policy(&summary, &cli.out.join("energy.svg"))?;
        for run in &summary.policies {
            let path = cli.out.join(format!("states-{}.svg", run.policy));
            plot::states_over_time(run, summary.servers, &path)?;
        }
    }
    print!("{}", summary.table());
    println!("wrote {}", summary_path.display());
    Ok(())
}
