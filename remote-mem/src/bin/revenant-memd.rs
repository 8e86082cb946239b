//! `revenant-memd`: the memory server, plus operator subcommands.
//!
//! `revenant-memd --listen 127.0.0.1:7600 --capacity 8G --token-file F` serves;
//! `revenant-memd stat|bench|power --servers LIST --token-file F` operate on servers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use revenant_remote_mem::bench::{self, BenchParams};
use revenant_remote_mem::client::{random_key, ClientConfig, HostConn};
use revenant_remote_mem::endpoint::Endpoint;
use revenant_remote_mem::power::PowerState;
use revenant_remote_mem::protocol::MAX_TOKEN;
use revenant_remote_mem::server::store::{Limits, SlabStore};
use revenant_remote_mem::server::Server;
use revenant_remote_mem::size::parse_size;

#[derive(Parser)]
#[command(
    name = "revenant-memd",
    version,
    about = "Revenant remote-memory server",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Args)]
struct ServeArgs {
    /// TCP address to listen on (host:port).
    #[arg(long)]
    listen: Option<String>,
    /// Unix socket path to listen on (in addition to or instead of TCP).
    #[arg(long)]
    unix: Option<PathBuf>,
    /// Memory served, e.g. 8G.
    #[arg(long, default_value = "1G")]
    capacity: String,
    /// Bytes per slab, e.g. 64M.
    #[arg(long, default_value = "64M")]
    slab_size: String,
    /// Most memory one client may hold (default: the whole capacity).
    #[arg(long)]
    quota: Option<String>,
    /// File holding the shared-secret token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Initial power state of the host.
    #[arg(long, value_enum, default_value = "s0")]
    power_state: PowerState,
    /// Power profile (TOML or JSON, see revenant-acpi's power model) for the energy STAT
    /// reports; default: the built-in profile.
    #[arg(long)]
    power_profile: Option<PathBuf>,
    /// Register in etcd (comma-separated client URLs); needs the `etcd` feature.
    #[arg(long)]
    etcd: Option<String>,
    /// Lease TTL of the etcd registration, seconds.
    #[arg(long, default_value_t = 10)]
    etcd_ttl: i64,
    /// Endpoint published in etcd (default: the bound TCP address).
    #[arg(long)]
    advertise: Option<String>,
}

#[derive(Args)]
struct Target {
    /// Comma-separated servers: tcp://h:p, unix:///path or h:p.
    #[arg(long, required_unless_present = "etcd")]
    servers: Option<String>,
    /// Take the servers from the etcd directory instead (comma-separated client
    /// URLs; needs the `etcd` feature).
    #[arg(long, conflicts_with = "servers")]
    etcd: Option<String>,
    /// File holding the shared-secret token.
    #[arg(long)]
    token_file: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Print each server's statistics as JSON.
    Stat(Target),
    /// Run the latency/throughput benchmark; prints one JSON line.
    Bench {
        #[command(flatten)]
        target: Target,
        /// Timed 4 KiB reads.
        #[arg(long, default_value_t = 20000)]
        samples: usize,
        /// Remote memory covered by the benchmark.
        #[arg(long, default_value = "256M")]
        working_set: String,
        /// Sequential passes over the working set.
        #[arg(long, default_value_t = 4)]
        seq_passes: usize,
    },
    /// Set the servers' power state (control frame).
    Power {
        #[command(flatten)]
        target: Target,
        /// New state.
        #[arg(long, value_enum)]
        state: PowerState,
    },
}

fn main() -> Result<()> {
    use tracing_subscriber::{filter, layer::SubscriberExt, util::SubscriberInitExt};
    // RUST_LOG as `level` or `target=level,...` directives; info when unset or unreadable.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<filter::Targets>().ok())
        .unwrap_or_else(|| filter::Targets::new().with_default(filter::LevelFilter::INFO));
    // Open the fmt subscriber's own ceiling (INFO) so that RUST_LOG=debug reaches Targets.
    tracing_subscriber::fmt()
        .with_max_level(filter::LevelFilter::TRACE)
        .with_writer(std::io::stderr)
        .finish()
        .with(filter)
        .init();
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Stat(t)) => {
            let token = read_token(&t.token_file)?;
            let mut out = Vec::new();
            for ep in servers(&t)? {
                let c = HostConn::connect(&ep, &token, random_key()?, Duration::from_secs(5))
                    .with_context(|| format!("connecting to {ep}"))?;
                let mut s = c.stat()?;
                if let Some(o) = s.as_object_mut() {
                    o.insert("server".into(), ep.to_string().into());
                }
                out.push(s);
            }
            println!("{}", serde_json::to_string(&out)?);
            Ok(())
        }
        Some(Command::Power { target, state }) => {
            let token = read_token(&target.token_file)?;
            for ep in servers(&target)? {
                HostConn::connect(&ep, &token, random_key()?, Duration::from_secs(5))?
                    .set_power(state)
                    .with_context(|| format!("setting power state on {ep}"))?;
            }
            Ok(())
        }
        Some(Command::Bench {
            target,
            samples,
            working_set,
            seq_passes,
        }) => {
            let cfg = ClientConfig {
                endpoints: servers(&target)?,
                token: read_token(&target.token_file)?,
                replicas: Some(1),
                timeout: Duration::from_secs(10),
                backup_file: None,
                key: None,
            };
            let p = BenchParams {
                samples,
                working_set: parse_size(&working_set)?,
                seq_passes,
            };
            let report = bench::run(&cfg, p)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}

fn serve(a: ServeArgs) -> Result<()> {
    let Some(token_file) = a.token_file else {
        bail!("--token-file is required to serve")
    };
    if a.listen.is_none() && a.unix.is_none() {
        bail!("give --listen HOST:PORT and/or --unix PATH");
    }
    let token = read_token(&token_file)?;
    let capacity = parse_size(&a.capacity)?;
    let slab_size = parse_size(&a.slab_size)?;
    let quota = a
        .quota
        .as_deref()
        .map(parse_size)
        .transpose()?
        .unwrap_or(capacity);
    if slab_size == 0 || slab_size % 4096 != 0 || usize::try_from(slab_size).is_err() {
        bail!("--slab-size must be a non-zero multiple of 4096");
    }
    let store = Arc::new(SlabStore::new(
        Limits {
            slab_size,
            capacity,
            quota,
        },
        a.power_state,
    ));
    if let Some(path) = &a.power_profile {
        let profile = revenant_acpi::power::PowerProfile::load(path)
            .with_context(|| format!("--power-profile {}", path.display()))?;
        store.set_power_profile(profile);
    }
    let server = Server::start(a.listen.as_deref(), a.unix, store, token)?;
    tracing::info!(
        tcp = ?server.tcp_addr,
        unix = ?server.unix_path,
        capacity,
        slab_size,
        quota,
        power = ?a.power_state,
        "revenant-memd serving"
    );
    // Machine-readable readiness line: tests and scripts pass port 0 and read
    // the real address here.
    let _registration = register(&a.etcd, a.etcd_ttl, a.advertise, &server)?;
    // One line, written once; a reader that went away is not an error.
    let mut eps: Vec<String> = server
        .tcp_addr
        .iter()
        .map(|a| format!("tcp://{a}"))
        .collect();
    eps.extend(
        server
            .unix_path
            .iter()
            .map(|p| format!("unix://{}", p.display())),
    );
    let _ = writeln!(std::io::stdout(), "listening {}", eps.join(" "));
    server.wait();
    Ok(())
}

#[cfg(feature = "etcd")]
fn register(
    etcd: &Option<String>,
    ttl: i64,
    advertise: Option<String>,
    server: &Server,
) -> Result<Option<revenant_remote_mem::directory::Registration>> {
    use revenant_remote_mem::directory::{HostRecord, Registration};
    let Some(urls) = etcd else { return Ok(None) };
    let urls: Vec<String> = urls.split(',').map(|u| u.trim().to_string()).collect();
    let endpoint = match (advertise, server.tcp_addr) {
        (Some(a), _) => Endpoint::parse(&a)?.to_string(),
        (None, Some(addr)) => format!("tcp://{addr}"),
        (None, None) => bail!("--etcd needs --listen or --advertise"),
    };
    let store = Arc::clone(&server.store);
    let reg = Registration::start(&urls, ttl, move || HostRecord {
        endpoint: endpoint.clone(),
        capacity: store.limits().capacity,
        free: store.free_bytes(),
        power_state: store.power(),
    })?;
    Ok(Some(reg))
}

#[cfg(not(feature = "etcd"))]
fn register(
    etcd: &Option<String>,
    _ttl: i64,
    _advertise: Option<String>,
    _server: &Server,
) -> Result<Option<()>> {
    if etcd.is_some() {
        bail!("--etcd: this revenant-memd was built without the `etcd` feature");
    }
    Ok(None)
}

/// The servers a subcommand acts on: the static list, or etcd's current view.
fn servers(t: &Target) -> Result<Vec<Endpoint>> {
    if let Some(list) = &t.servers {
        return Ok(Endpoint::parse_list(list)?);
    }
    let Some(urls) = &t.etcd else {
        bail!("give --servers or --etcd")
    };
    from_etcd(urls)
}

#[cfg(feature = "etcd")]
fn from_etcd(urls: &str) -> Result<Vec<Endpoint>> {
    let urls: Vec<String> = urls.split(',').map(|u| u.trim().to_string()).collect();
    let eps = revenant_remote_mem::directory::DirectoryWatch::start(&urls)?.endpoints();
    if eps.is_empty() {
        bail!("no memd registered in etcd");
    }
    Ok(eps)
}

#[cfg(not(feature = "etcd"))]
fn from_etcd(_urls: &str) -> Result<Vec<Endpoint>> {
    bail!("--etcd: this revenant-memd was built without the `etcd` feature")
}

fn read_token(path: &Path) -> Result<Vec<u8>> {
    let raw =
        std::fs::read(path).with_context(|| format!("reading token file {}", path.display()))?;
    let token = raw.trim_ascii().to_vec();
    if token.is_empty() || token.len() > MAX_TOKEN {
        bail!("token in {} must be 1..={MAX_TOKEN} bytes", path.display());
    }
    Ok(token)
}
