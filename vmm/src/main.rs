use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::Parser;
use revenant_vmm::api::server;
use revenant_vmm::cli::Cli;
use revenant_vmm::controller::Controller;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("revenant: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    // RUST_LOG as `level` or `target=level,...` directives (tracing's Targets: no regex
    // engine in the binary, which keeps the VMM's resident text smaller).
    let (filter, bad_rust_log) = match std::env::var("RUST_LOG").map(|s| s.parse::<Targets>()) {
        Ok(Ok(t)) => (t, None),
        Ok(Err(e)) => (Targets::new().with_default(level), Some(e)),
        Err(_) => (Targets::new().with_default(level), None),
    };
    // The fmt subscriber's own ceiling (INFO unless raised) would hide -vv's debug events
    // before the Targets filter sees them: open it fully and let Targets decide.
    tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_writer(std::io::stderr)
        .with_target(false)
        .finish()
        .with(filter)
        .init();
    if let Some(e) = bad_rust_log {
        tracing::warn!("RUST_LOG ignored ({e}): logging at {level}");
    }
}

fn run(cli: Cli) -> Result<i32> {
    if !cli.seccomp {
        tracing::info!(
            "--seccomp false: nothing to disable, seccomp filters are not implemented yet"
        );
    }
    let (exit_tx, exit_rx) = channel();
    let controller = Arc::new(Mutex::new(Controller::new(exit_tx)));

    if let Some(size) = cli.prepare_vm_memory {
        controller
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .prepare_vm(size)
            .context("--prepare-vm-memory")?;
    }
    if let Some(socket) = &cli.api_socket {
        // Guest-initiated stops arrive on their own thread and just update the VM's state.
        let watched = controller.clone();
        std::thread::Builder::new()
            .name("vm-exit".into())
            .spawn(move || {
                for exit in exit_rx {
                    watched
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .on_guest_exit(exit);
                }
            })
            .context("cannot start the VM exit watcher")?;
        server::serve(socket, controller.clone())?;
        // Stop the VM (if any) before leaving; its threads must not outlive the process' state.
        let _ = controller
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .shutdown();
        return Ok(0);
    }

    if let Some(dir) = &cli.dump_acpi {
        let config = cli.vm_config();
        config.validate()?;
        let virtio = revenant_vmm::vm::virtio_layout(&config)?;
        let tables = revenant_vmm::boot::acpi::tables_for(&config, &virtio)?;
        let names = revenant_vmm::boot::acpi::dump(&tables, dir)
            .with_context(|| format!("cannot write to {}", dir.display()))?;
        println!("wrote {} to {}", names.join(", "), dir.display());
        return Ok(0);
    }
    if cli.kernel.is_none() && cli.test_guest.is_none() {
        anyhow::bail!("nothing to run: give --kernel or --test-guest to boot, or --api-socket to wait for API calls (see --help)");
    }
    let mut ctl = controller.lock().unwrap_or_else(|p| p.into_inner());
    ctl.create(cli.vm_config())?;
    ctl.boot()?;
    drop(ctl);
    // Wait for the guest to stop for good; a sleeping guest stays asleep (there is no API to
    // wake it in this mode), like a suspended machine.
    let ctl = loop {
        let exit = exit_rx.recv().context("VM exit channel closed")?;
        let mut ctl = controller.lock().unwrap_or_else(|p| p.into_inner());
        ctl.on_guest_exit(exit);
        if ctl.last_exit().is_some() {
            break ctl;
        }
        eprintln!(
            "revenant: the guest went to sleep; nothing can wake it without --api-socket (vm.wake)"
        );
    };
    let code = ctl.last_exit().map(|e| e.exit_code()).unwrap_or(1);
    if let Some(revenant_vmm::devices::exit::GuestExit::Crash(why)) = ctl.last_exit() {
        eprintln!("revenant: guest crashed: {why}");
    }
    Ok(code)
}
