//! Command-line flags: direct boot, or API mode exactly as kata starts Cloud Hypervisor.

use std::path::PathBuf;

use clap::Parser;

use crate::boot::cpuid::CpuProfile;
use crate::boot::test_guest::TestGuestMode;
use crate::config::{
    BalloonConfig, ConsoleConfig, ConsoleMode, CpusConfig, DiskConfig, MemoryConfig, NetConfig,
    PayloadConfig, RngConfig, TestGuestConfig, VmConfig, VsockConfig,
};

const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=1";

#[derive(Debug, Parser)]
#[command(
    name = "revenant",
    version,
    about = "Revenant: a lightweight KVM VMM with copy-on-write template forking, memory disaggregation and an ACPI Sz sleep state",
    after_help = "Examples:\n  \
        revenant --kernel vmlinux --initramfs initrd.cpio --memory 256M --cpus 2\n  \
        revenant --test-guest hello.bin --test-guest-mode real --serial file:/tmp/serial.log\n  \
        revenant --api-socket /run/vc/vm/sandbox/clh-api.sock -v"
)]
pub struct Cli {
    /// Serve the REST API on this Unix socket and wait for vm.create/vm.boot (how kata
    /// starts its VMM); no VM is booted from flags in this mode.
    /// Example: --api-socket /tmp/revenant.sock
    #[arg(long, value_name = "PATH")]
    pub api_socket: Option<PathBuf>,

    /// Fork pool: with --api-socket, create the KVM VM and reserve this much guest RAM before
    /// any request, so a later vm.restore of a template of that memory size only maps the
    /// template and sets state (other sizes, remote restores and vm.create ignore it).
    /// Example: --api-socket /tmp/pool-1.sock --prepare-vm-memory 128M
    #[arg(long, value_parser = parse_size, value_name = "SIZE", requires = "api_socket")]
    pub prepare_vm_memory: Option<u64>,

    /// Kernel to boot directly: an ELF vmlinux (PVH entry when present, else 64-bit entry) or
    /// a bzImage. Example: --kernel ~/.cache/revenant/images/<hash>/vmlinux
    #[arg(long, value_name = "FILE", conflicts_with_all = ["api_socket", "test_guest"])]
    pub kernel: Option<PathBuf>,

    /// initramfs (cpio archive) handed to the kernel. Example: --initramfs initramfs.cpio.gz
    #[arg(long, value_name = "FILE", requires = "kernel")]
    pub initramfs: Option<PathBuf>,

    /// Kernel command line. Example: --cmdline "console=ttyS0 reboot=k panic=1 quiet"
    #[arg(long, value_name = "STRING", default_value = DEFAULT_CMDLINE, requires = "kernel")]
    pub cmdline: String,

    /// Raw machine-code test guest to run instead of a kernel (see --test-guest-mode).
    /// Example: --test-guest guest.bin
    #[arg(long, value_name = "FILE", conflicts_with = "api_socket")]
    pub test_guest: Option<PathBuf>,

    /// CPU mode the test guest starts in: `real` (loaded at 0x10000, CS=0x1000 IP=0) or
    /// `long` (64-bit, loaded and entered at 0x100000, RDI = RAM size).
    /// Example: --test-guest-mode long
    #[arg(long, value_enum, default_value = "real", requires = "test_guest")]
    pub test_guest_mode: TestGuestMode,

    /// Number of vCPUs. Example: --cpus 2
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub cpus: u32,

    /// Most vCPUs the VM may have after hot-plug (default: --cpus); the extra ones are in the
    /// ACPI tables as present but disabled. Example: --max-cpus 8
    #[arg(long, value_name = "N")]
    pub max_cpus: Option<u32>,

    /// Write the ACPI tables a VM with these flags would get into DIR as <SIGNATURE>.dat
    /// files (inspect with `iasl -d DIR/DSDT.dat`) and exit.
    /// Example: --dump-acpi /tmp/acpi --cpus 2 --max-cpus 8
    #[arg(long, value_name = "DIR", conflicts_with = "api_socket")]
    pub dump_acpi: Option<PathBuf>,

    /// Guest RAM with an optional K/M/G suffix (binary units). Example: --memory 256M
    #[arg(long, default_value = "256M", value_parser = parse_size, value_name = "SIZE")]
    pub memory: u64,

    /// Where the guest's serial console (COM1) goes: `stdout`, `file:PATH`, `socket:PATH`
    /// (the VMM listens; one client at a time) or `off`. Example: --serial file:/tmp/console.log
    #[arg(long, default_value = "stdout", value_parser = parse_serial, value_name = "DEST")]
    pub serial: ConsoleConfig,

    /// A virtio-blk disk (repeatable), Cloud Hypervisor style: `path=FILE` plus optional
    /// `readonly=on|off`, `id=NAME`, `serial=STRING`.
    /// Example: --disk path=/tmp/rootfs.img,readonly=on
    #[arg(long = "disk", value_parser = parse_disk, value_name = "SPEC")]
    pub disks: Vec<DiskConfig>,

    /// A virtio-vsock device in hybrid mode, Cloud Hypervisor style: `cid=N` (3 or more)
    /// and `socket=PATH`, where host clients connect and send `CONNECT <port>\n`.
    /// Example: --vsock cid=3,socket=/tmp/vm.vsock
    #[arg(long, value_parser = parse_vsock, value_name = "SPEC")]
    pub vsock: Option<VsockConfig>,

    /// A virtio-balloon device, Cloud Hypervisor style: `size=SIZE` (bytes the guest is
    /// asked to give back from boot) plus optional `deflate_on_oom=on`,
    /// `free_page_reporting=on` (free guest pages are returned to the host) and
    /// `statistics_polling_interval_s=N`.
    /// Example: --balloon size=0,free_page_reporting=on
    #[arg(long, value_parser = parse_balloon, value_name = "SPEC")]
    pub balloon: Option<BalloonConfig>,

    /// A virtio-rng entropy device, Cloud Hypervisor style: `src=FILE` (default
    /// /dev/urandom).
    /// Example: --rng src=/dev/urandom
    #[arg(long, value_parser = parse_rng, value_name = "SPEC")]
    pub rng: Option<RngConfig>,

    /// A virtio-net device on a host tap (repeatable), Cloud Hypervisor style:
    /// `tap=NAME` (created if missing; needs CAP_NET_ADMIN) plus optional `mac=MAC`
    /// (a random local address otherwise) and `id=NAME`.
    /// Example: --net tap=tap0,mac=52:54:00:12:34:56
    #[arg(long, value_parser = parse_net, value_name = "SPEC")]
    pub net: Vec<NetConfig>,

    /// CPUID the guest sees: `auto` (pvm-safe on a PVM host, else host), `host`, or
    /// `pvm-safe` (hides XSAVE, SSE3+/AVX, POPCNT, CX16, BMI, SMAP/SMEP, PCID, RDTSCP, ...
    /// whose instructions a PVM host cannot emulate in guest kernel mode).
    /// Example: --cpu-profile pvm-safe
    #[arg(long, value_enum, default_value = "auto", value_name = "PROFILE")]
    pub cpu_profile: CpuProfile,

    /// Accepted for compatibility with kata's Cloud Hypervisor driver, which passes
    /// `--seccomp false` when seccomp is disabled. Example: --seccomp false
    #[arg(long, value_name = "true|false", default_value = "true")]
    pub seccomp: bool,

    /// More logging on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Cli {
    /// The VM the flags describe (direct-boot mode).
    pub fn vm_config(&self) -> VmConfig {
        let payload = if let Some(path) = &self.test_guest {
            PayloadConfig {
                test_guest: Some(TestGuestConfig {
                    path: path.clone(),
                    mode: self.test_guest_mode,
                }),
                ..Default::default()
            }
        } else {
            PayloadConfig {
                kernel: self.kernel.clone(),
                initramfs: self.initramfs.clone(),
                cmdline: Some(self.cmdline.clone()),
                ..Default::default()
            }
        };
        VmConfig {
            cpus: CpusConfig {
                boot_vcpus: self.cpus,
                max_vcpus: self.max_cpus.unwrap_or(self.cpus),
            },
            memory: MemoryConfig {
                size: self.memory,
                hotplug_size: 0,
                hotplugged_size: None,
                remote: None,
                zones: Vec::new(),
                // A VM booted from flags has no API socket, so it is never snapshotted: a
                // linkable /dev/shm file would buy nothing over private anonymous RAM.
                shared: Some(false),
            },
            payload: Some(payload),
            serial: self.serial.clone(),
            console: ConsoleConfig::default(),
            sleep_mode: Default::default(),
            cpu_profile: self.cpu_profile,
            disks: self.disks.clone(),
            vsock: self.vsock.clone(),
            balloon: self.balloon.clone(),
            rng: self.rng.clone(),
            net: self.net.clone(),
        }
    }
}

/// `path=FILE[,readonly=on|off][,id=NAME][,serial=STRING]`.
fn parse_disk(s: &str) -> Result<DiskConfig, String> {
    let mut disk = DiskConfig::default();
    for (key, value) in key_values(s)? {
        match key {
            "path" => disk.path = Some(PathBuf::from(value)),
            "readonly" => {
                disk.readonly = match value {
                    "on" | "true" => true,
                    "off" | "false" => false,
                    _ => return Err(format!("readonly={value}: use on or off")),
                }
            }
            "id" => disk.id = Some(value.to_string()),
            "serial" => disk.serial = Some(value.to_string()),
            _ => {
                return Err(format!(
                    "unknown disk option `{key}` (path, readonly, id, serial)"
                ))
            }
        }
    }
    if disk.path.is_none() {
        return Err("path=FILE is required".into());
    }
    Ok(disk)
}

/// `key=value,key=value`, Cloud Hypervisor's device syntax.
fn key_values(s: &str) -> Result<Vec<(&str, &str)>, String> {
    s.split(',')
        .map(|part| {
            part.split_once('=')
                .ok_or_else(|| format!("`{part}` is not key=value"))
        })
        .collect()
}

/// `cid=N,socket=PATH`.
fn parse_vsock(s: &str) -> Result<VsockConfig, String> {
    let (mut cid, mut socket) = (None, None);
    for (key, value) in key_values(s)? {
        match key {
            "cid" => {
                cid = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| format!("cid={value}: not a number"))?,
                )
            }
            "socket" => socket = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown vsock option `{key}` (cid, socket)")),
        }
    }
    match (cid, socket) {
        (Some(cid), Some(socket)) => Ok(VsockConfig { cid, socket }),
        _ => Err("cid=N and socket=PATH are both required".into()),
    }
}

/// `size=SIZE[,deflate_on_oom=on|off][,free_page_reporting=on|off][,statistics_polling_interval_s=N]`.
fn parse_balloon(s: &str) -> Result<BalloonConfig, String> {
    let mut b = BalloonConfig::default();
    let on_off = |key: &str, value: &str| match value {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("{key}={value}: use on or off")),
    };
    for (key, value) in key_values(s)? {
        match key {
            "size" => b.size = parse_size(value)?,
            "deflate_on_oom" => b.deflate_on_oom = on_off(key, value)?,
            "free_page_reporting" => b.free_page_reporting = on_off(key, value)?,
            "statistics_polling_interval_s" => {
                b.statistics_polling_interval_s = value
                    .parse()
                    .map_err(|_| format!("{key}={value}: not a number of seconds"))?
            }
            _ => {
                return Err(format!(
                    "unknown balloon option `{key}` (size, deflate_on_oom, free_page_reporting, statistics_polling_interval_s)"
                ))
            }
        }
    }
    Ok(b)
}

/// `src=FILE`.
fn parse_rng(s: &str) -> Result<RngConfig, String> {
    let mut rng = RngConfig::default();
    for (key, value) in key_values(s)? {
        match key {
            "src" => rng.src = PathBuf::from(value),
            _ => return Err(format!("unknown rng option `{key}` (src)")),
        }
    }
    Ok(rng)
}

/// `tap=NAME[,mac=MAC][,id=NAME]`.
fn parse_net(s: &str) -> Result<NetConfig, String> {
    let mut net = NetConfig {
        num_queues: 2,
        ..Default::default()
    };
    for (key, value) in key_values(s)? {
        match key {
            "tap" => net.tap = Some(value.to_string()),
            "mac" => net.mac = Some(value.parse().map_err(|e| format!("mac={value}: {e}"))?),
            "id" => net.id = Some(value.to_string()),
            _ => return Err(format!("unknown net option `{key}` (tap, mac, id)")),
        }
    }
    if net.tap.is_none() {
        return Err("tap=NAME is required".into());
    }
    Ok(net)
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, shift) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 10),
        Some((i, 'M' | 'm')) => (&s[..i], 20),
        Some((i, 'G' | 'g')) => (&s[..i], 30),
        _ => (s, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size (examples: 4096, 512K, 256M, 2G)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

fn parse_serial(s: &str) -> Result<ConsoleConfig, String> {
    let (mode, file, socket) = match s.split_once(':') {
        Some(("file", p)) if !p.is_empty() => (ConsoleMode::File, Some(p.into()), None),
        Some(("socket", p)) if !p.is_empty() => (ConsoleMode::Socket, None, Some(p.into())),
        None if s == "stdout" => (ConsoleMode::Tty, None, None),
        None if s == "off" => (ConsoleMode::Off, None, None),
        _ => {
            return Err(format!(
                "`{s}` is not one of stdout, file:PATH, socket:PATH, off"
            ))
        }
    };
    Ok(ConsoleConfig { mode, file, socket })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn vsock_specs() {
        let v = parse_vsock("cid=3,socket=/tmp/v.sock").unwrap();
        assert_eq!((v.cid, v.socket), (3, PathBuf::from("/tmp/v.sock")));
        assert!(parse_vsock("cid=3").is_err());
        assert!(parse_vsock("socket=/x").is_err());
        assert!(parse_vsock("cid=x,socket=/x").is_err());
        assert!(parse_vsock("cid=3,socket=/x,port=1").is_err());
        assert!(parse_vsock("cid").is_err());
    }

    #[test]
    fn serial_destinations() {
        assert_eq!(parse_serial("stdout").unwrap().mode, ConsoleMode::Tty);
        let f = parse_serial("file:/tmp/x").unwrap();
        assert_eq!((f.mode, f.file), (ConsoleMode::File, Some("/tmp/x".into())));
        assert!(parse_serial("file:").is_err());
        assert!(parse_serial("tcp:1").is_err());
    }

    #[test]
    fn flags_become_a_config() {
        let cli = Cli::try_parse_from([
            "revenant",
            "--test-guest",
            "g.bin",
            "--memory",
            "64M",
            "--cpus",
            "2",
        ])
        .unwrap();
        let c = cli.vm_config();
        assert_eq!((c.cpus.boot_vcpus, c.memory.size), (2, 64 << 20));
        assert!(Cli::try_parse_from(["revenant", "--api-socket", "/s", "--kernel", "k"]).is_err());
    }
}
