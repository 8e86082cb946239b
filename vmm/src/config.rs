//! VM configuration: Cloud Hypervisor's `VmConfig` field names (what kata sends), the
//! subset Revenant implements, and validation that names the offending field.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::boot::cpuid::CpuProfile;
use crate::boot::layout::CMDLINE_MAX_SIZE;
use crate::boot::test_guest::TestGuestMode;
use crate::vstate::memory::PAGE_SIZE;

mod balloon;
mod disks;
mod hotplug;
mod net;
mod rng;
mod vsock;
mod zones;
pub use balloon::BalloonConfig;
pub use disks::{DiskConfig, RemoteSwapConfig, MAX_DISKS};
pub use net::{NetConfig, TapFd};
pub use rng::RngConfig;
pub use vsock::{validate as validate_vsock, VsockConfig};
pub use zones::MemoryZoneConfig;

/// xAPIC IDs are 8 bits and 0xff is the broadcast ID.
pub const MAX_VCPUS: u32 = 254;
/// Guest RAM is mapped lazily, but an absurd size is almost always a unit mistake.
pub const MAX_MEMORY: u64 = 1 << 40;
/// Smallest useful guest: the boot structures and a real-mode test guest fit in 1 MiB.
pub const MIN_MEMORY: u64 = 1 << 20;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VmConfig {
    #[serde(default)]
    pub cpus: CpusConfig,
    #[serde(default)]
    pub memory: MemoryConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<PayloadConfig>,
    #[serde(default = "ConsoleConfig::tty")]
    pub serial: ConsoleConfig,
    #[serde(default)]
    pub console: ConsoleConfig,
    /// Revenant extension: what the guest's S3 request becomes (`s3`, or `sz` for the
    /// ZombieLand state in which the VM's memory may move to remote memory).
    #[serde(default)]
    pub sleep_mode: SleepState,
    /// Revenant extension: the CPUID profile (`auto`, `host`, `pvm-safe`).
    #[serde(default)]
    pub cpu_profile: CpuProfile,
    /// virtio-blk disks: image files (Cloud Hypervisor's `path`, `readonly`, `id`) or, as a
    /// Revenant extension, a swap device in remote memory (`remote_swap`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DiskConfig>,
    /// virtio-vsock in hybrid mode (Cloud Hypervisor's `cid` and `socket`): kata's agent
    /// channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsock: Option<VsockConfig>,
    /// virtio-balloon (Cloud Hypervisor's `balloon`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balloon: Option<BalloonConfig>,
    /// virtio-rng (Cloud Hypervisor's `rng`): entropy from a host file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rng: Option<RngConfig>,
    /// virtio-net devices on taps (Cloud Hypervisor's `net`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub net: Vec<NetConfig>,
}

/// A VM-level sleep state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SleepState {
    #[default]
    S3,
    Sz,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpusConfig {
    pub boot_vcpus: u32,
    pub max_vcpus: u32,
}

impl Default for CpusConfig {
    fn default() -> Self {
        CpusConfig {
            boot_vcpus: 1,
            max_vcpus: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryConfig {
    /// Bytes of boot RAM; 0 with `zones` (then the zones make up the RAM). What the guest
    /// gets is [`MemoryConfig::ram_size`].
    pub size: u64,
    /// How much memory may be hot-plugged on top of `size`; 0 for none. Always an integer in
    /// `vm.info` (kata's client decodes it as one).
    #[serde(default)]
    pub hotplug_size: u64,
    /// Memory the host wants plugged on top of `size` through virtio-mem (Cloud
    /// Hypervisor's field): set by `vm.resize`'s `desired_ram`, or at create for a VM that
    /// should start bigger. What the guest actually plugged is in `vm.info`'s
    /// `memory_hotplug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotplugged_size: Option<u64>,
    /// Revenant extension (RAM extension): memory servers that hold the guest RAM beyond a
    /// local budget, and all of it while the VM is in Sz. Not with templates' copy-on-write
    /// clones (file-backed memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteRamConfig>,
    /// Cloud Hypervisor's memory zones: the guest RAM as pieces laid out one after the other
    /// in guest-physical order, each anonymous or backed by a file (kata's VM templating).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<MemoryZoneConfig>,
    /// Cloud Hypervisor's `memory.shared` (kata sets it with virtio-fs). `true`: the `size`
    /// bytes of RAM are MAP_SHARED from an unnamed file in /dev/shm (a memfd if /dev/shm
    /// cannot hold it), so a snapshot into a template directory on /dev/shm links that file
    /// instead of copying the RAM. `false`: private anonymous memory. Unset: the /dev/shm
    /// file when /dev/shm has room for the RAM and `remote` is not set, else anonymous
    /// memory (see [`RamBacking`](crate::vstate::memory::RamBacking)). `true` is refused with
    /// `remote`; no effect with zones (each zone has its own `shared`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
}

/// `memory.remote`: where the guest's RAM goes beyond the local budget and in Sz.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemoteRamConfig {
    /// Comma-separated memd endpoints, e.g. `tcp://10.0.0.2:7600,tcp://10.0.0.3:7600` (a JSON
    /// list of them is accepted too). Either this or `directory`.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "server_list::joined"
    )]
    pub servers: String,
    /// etcd endpoints (e.g. `["http://10.0.0.1:2379"]`) of the memd host directory: the
    /// memory servers in S0 registered there when the engine starts are used. Needs a
    /// `revenant` built with the `etcd` feature.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directory: Vec<String>,
    /// File holding the memd shared-secret token.
    pub token_file: PathBuf,
    /// Replicas per slab (default: 2 with two or more servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<usize>,
    /// Guest RAM kept resident at most, in bytes; the rest lives on the servers. Absent: all
    /// of it stays local until the VM enters Sz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_budget: Option<u64>,
    /// Fetch the pages a fault trend predicts along with the faulting one (Leap-style).
    #[serde(default = "default_true")]
    pub prefetch: bool,
    /// Pressure-driven budget (TMO/Senpai): starts from `local_budget` (or all of RAM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<revenant_remote_mem::ram_ext::ControllerConfig>,
}

fn validate_remote(r: &RemoteRamConfig, size: u64) -> Result<(), ConfigError> {
    match (r.servers.trim().is_empty(), r.directory.is_empty()) {
        (true, true) => {
            return Err(ConfigError::new(
                "memory.remote.servers",
                "at least one memd endpoint is needed (or a host directory)",
            ))
        }
        (false, false) => {
            return Err(ConfigError::new(
                "memory.remote.directory",
                "give servers or directory, not both",
            ))
        }
        (true, false) if !cfg!(feature = "etcd") => {
            return Err(ConfigError::new(
                "memory.remote.directory",
                "this revenant was built without the etcd feature (cargo build --features etcd)",
            ))
        }
        _ => {}
    }
    if r.replicas == Some(0) {
        return Err(ConfigError::new(
            "memory.remote.replicas",
            "must be at least 1",
        ));
    }
    if let Some(b) = r.local_budget {
        if b % PAGE_SIZE != 0 {
            return Err(ConfigError::new(
                "memory.remote.local_budget",
                "must be a multiple of 4096 bytes",
            ));
        }
        if b > size {
            return Err(ConfigError::new(
                "memory.remote.local_budget",
                "must be at most the guest's RAM (memory.size or the zones)",
            ));
        }
    }
    if let Some(c) = &r.controller {
        c.validate().map_err(|(field, reason)| {
            ConfigError::new(&format!("memory.remote.controller.{field}"), reason)
        })?;
        if c.min_budget > size {
            return Err(ConfigError::new(
                "memory.remote.controller.min_budget",
                "must be at most the guest's RAM (memory.size or the zones)",
            ));
        }
    }
    Ok(())
}

fn default_true() -> bool {
    true
}

/// memd endpoint lists, written either way: `"tcp://a:7600,tcp://b:7600"` or
/// `["tcp://a:7600", "tcp://b:7600"]` (`memory.remote.servers` and `remote_swap.servers`).
pub(crate) mod server_list {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        List(Vec<String>),
    }

    fn items<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match Either::deserialize(d)? {
            Either::Text(t) => t
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            Either::List(l) => l,
        })
    }

    /// As one comma-separated string.
    pub fn joined<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(items(d)?.join(","))
    }

    /// As a list.
    pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        items(d)
    }
}

impl RemoteRamConfig {
    /// Whether the engine runs from boot (a budget to keep), not only from the first Sz.
    pub fn runs_from_boot(&self) -> bool {
        self.local_budget.is_some() || self.controller.is_some()
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            size: 512 << 20,
            hotplug_size: 0,
            hotplugged_size: None,
            remote: None,
            zones: Vec::new(),
            shared: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PayloadConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initramfs: Option<PathBuf>,
    /// Revenant extension: a raw machine-code guest instead of a kernel (test harness).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_guest: Option<TestGuestConfig>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestGuestConfig {
    pub path: PathBuf,
    pub mode: TestGuestMode,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsoleMode {
    #[default]
    Off,
    Pty,
    Tty,
    File,
    Socket,
    Null,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsoleConfig {
    pub mode: ConsoleMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
}

impl ConsoleConfig {
    pub fn tty() -> Self {
        ConsoleConfig {
            mode: ConsoleMode::Tty,
            ..Default::default()
        }
    }
}

/// A configuration problem, with the JSON path of the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

/// What the VM will run, once the payload has been checked.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload<'a> {
    Linux {
        kernel: &'a Path,
        initramfs: Option<&'a Path>,
        cmdline: &'a str,
    },
    TestGuest(&'a TestGuestConfig),
}

impl VmConfig {
    /// Checks everything that can be checked before boot (`vm.create` time).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_cpus()?;
        self.validate_memory()?;
        if let Some(p) = &self.payload {
            validate_payload(p)?;
        }
        validate_console("serial", &self.serial, true)?;
        validate_console("console", &self.console, false)?;
        disks::validate(&self.disks)?;
        if let Some(v) = &self.vsock {
            vsock::validate(v)?;
            // One interrupt line each from the shared pool; disks take theirs first.
            if self.disks.len() >= MAX_DISKS {
                return Err(ConfigError::new(
                    "vsock",
                    format!("no interrupt line left after {} disks", self.disks.len()),
                ));
            }
        }
        if let Some(b) = &self.balloon {
            balloon::validate(b, self.memory.ram_size())?;
        }
        if let Some(r) = &self.rng {
            rng::validate(r)?;
        }
        let disk_ids: Vec<String> = (self.disks.iter().enumerate())
            .map(|(i, d)| d.id_or_default(i))
            .collect();
        net::validate(&self.net, &disk_ids)?;
        if self.virtio_device_count() > MAX_DISKS {
            return Err(ConfigError::new(
                match (&self.net.last(), &self.rng, &self.balloon) {
                    (Some(_), _, _) => "net",
                    (None, Some(_), _) => "rng",
                    (None, None, Some(_)) => "balloon",
                    _ => "memory.hotplug_size",
                },
                format!(
                    "{} virtio devices; there are interrupt lines for {MAX_DISKS}",
                    self.virtio_device_count()
                ),
            ));
        }
        Ok(())
    }

    /// The checks a disk or network card added through the API must pass: each disk and card
    /// as in `vm.create`, ids unique across both, and an interrupt line for each at the next
    /// boot. The rest of the config was checked at `vm.create` and may legitimately fail a
    /// fresh check now (a running VM listens on its own vsock socket).
    pub fn validate_devices(&self) -> Result<(), ConfigError> {
        disks::validate(&self.disks)?;
        let disk_ids: Vec<String> = (self.disks.iter().enumerate())
            .map(|(i, d)| d.id_or_default(i))
            .collect();
        net::validate(&self.net, &disk_ids)?;
        if self.virtio_device_count() > MAX_DISKS {
            return Err(ConfigError::new(
                "body",
                format!(
                    "{} virtio devices; there are interrupt lines for {MAX_DISKS}",
                    self.virtio_device_count()
                ),
            ));
        }
        Ok(())
    }

    /// Number of virtio-mmio devices the config asks for (each takes an interrupt line).
    pub fn virtio_device_count(&self) -> usize {
        self.disks.len()
            + usize::from(self.vsock.is_some())
            + usize::from(self.memory.hotplug_region_size() > 0)
            + usize::from(self.balloon.is_some())
            + usize::from(self.rng.is_some())
            + self.net.len()
    }

    fn validate_cpus(&self) -> Result<(), ConfigError> {
        let c = &self.cpus;
        if c.boot_vcpus == 0 {
            return Err(ConfigError::new("cpus.boot_vcpus", "must be at least 1"));
        }
        if c.boot_vcpus > MAX_VCPUS {
            return Err(ConfigError::new(
                "cpus.boot_vcpus",
                format!("must be at most {MAX_VCPUS}"),
            ));
        }
        if c.max_vcpus < c.boot_vcpus {
            return Err(ConfigError::new(
                "cpus.max_vcpus",
                format!("must be at least boot_vcpus ({})", c.boot_vcpus),
            ));
        }
        if c.max_vcpus > MAX_VCPUS {
            return Err(ConfigError::new(
                "cpus.max_vcpus",
                format!("must be at most {MAX_VCPUS}"),
            ));
        }
        Ok(())
    }

    fn validate_memory(&self) -> Result<(), ConfigError> {
        let m = &self.memory;
        if m.zones.is_empty() {
            validate_memory_size(m.size)?;
        } else {
            zones::validate(m)?;
        }
        // With zones (kata sends shared: true with them too) each zone's own `shared` decides.
        if m.shared == Some(true) && m.zones.is_empty() && m.remote.is_some() {
            return Err(ConfigError::new(
                "memory.remote",
                "the RAM extension needs anonymous guest memory: not with memory.shared",
            ));
        }
        let ram = m.ram_size();
        if m.hotplug_size % PAGE_SIZE != 0 {
            return Err(ConfigError::new(
                "memory.hotplug_size",
                "must be a multiple of 4096 bytes",
            ));
        }
        if ram.saturating_add(m.hotplug_size) > MAX_MEMORY {
            return Err(ConfigError::new(
                "memory.hotplug_size",
                format!("the guest's RAM + hotplug_size must be at most {MAX_MEMORY} bytes"),
            ));
        }
        hotplug::validate(m)?;
        if let Some(r) = &m.remote {
            validate_remote(r, ram)?;
        }
        Ok(())
    }

    /// The payload to boot, or why there is none.
    pub fn payload(&self) -> Result<Payload<'_>, ConfigError> {
        let p = self.payload.as_ref().ok_or_else(|| {
            ConfigError::new("payload", "a kernel (or test_guest) is needed to boot")
        })?;
        validate_payload(p)?;
        match (&p.kernel, &p.test_guest) {
            (Some(kernel), None) => Ok(Payload::Linux {
                kernel,
                initramfs: p.initramfs.as_deref(),
                cmdline: p.cmdline.as_deref().unwrap_or(""),
            }),
            (None, Some(t)) => Ok(Payload::TestGuest(t)),
            _ => Err(ConfigError::new(
                "payload.kernel",
                "a kernel (or test_guest) is needed to boot",
            )),
        }
    }
}

/// `memory.size` without zones: the guest's RAM.
fn validate_memory_size(size: u64) -> Result<(), ConfigError> {
    if size % PAGE_SIZE != 0 {
        return Err(ConfigError::new(
            "memory.size",
            "must be a multiple of 4096 bytes",
        ));
    }
    if size < MIN_MEMORY {
        return Err(ConfigError::new(
            "memory.size",
            format!("must be at least {MIN_MEMORY} bytes (0 only with memory.zones)"),
        ));
    }
    if size > MAX_MEMORY {
        return Err(ConfigError::new(
            "memory.size",
            format!("must be at most {MAX_MEMORY} bytes"),
        ));
    }
    Ok(())
}

fn validate_payload(p: &PayloadConfig) -> Result<(), ConfigError> {
    if let Some(t) = &p.test_guest {
        if p.kernel.is_some() || p.initramfs.is_some() {
            return Err(ConfigError::new(
                "payload.test_guest",
                "cannot be combined with kernel or initramfs",
            ));
        }
        check_readable_file("payload.test_guest.path", &t.path)?;
    }
    if let Some(k) = &p.kernel {
        check_readable_file("payload.kernel", k)?;
    }
    if let Some(i) = &p.initramfs {
        check_readable_file("payload.initramfs", i)?;
    }
    if let Some(c) = &p.cmdline {
        if c.len() >= CMDLINE_MAX_SIZE {
            return Err(ConfigError::new(
                "payload.cmdline",
                format!(
                    "is {} bytes; at most {} allowed",
                    c.len(),
                    CMDLINE_MAX_SIZE - 1
                ),
            ));
        }
        if c.bytes()
            .any(|b| b == 0 || !(b.is_ascii_graphic() || b == b' '))
        {
            return Err(ConfigError::new(
                "payload.cmdline",
                "must be printable ASCII",
            ));
        }
    }
    Ok(())
}

fn check_readable_file(field: &str, path: &Path) -> Result<(), ConfigError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => std::fs::File::open(path)
            .map(|_| ())
            .map_err(|e| ConfigError::new(field, format!("cannot open {}: {e}", path.display()))),
        Ok(_) => Err(ConfigError::new(
            field,
            format!("{} is not a regular file", path.display()),
        )),
        Err(e) => Err(ConfigError::new(
            field,
            format!("cannot open {}: {e}", path.display()),
        )),
    }
}

pub(crate) fn validate_console(
    field: &str,
    c: &ConsoleConfig,
    is_serial: bool,
) -> Result<(), ConfigError> {
    match c.mode {
        ConsoleMode::Off | ConsoleMode::Null => Ok(()),
        ConsoleMode::Tty if is_serial => Ok(()),
        ConsoleMode::File if is_serial => match &c.file {
            Some(_) => Ok(()),
            None => Err(ConfigError::new(
                &format!("{field}.file"),
                "required when mode is File",
            )),
        },
        ConsoleMode::Socket if is_serial => match &c.socket {
            Some(_) => Ok(()),
            None => Err(ConfigError::new(
                &format!("{field}.socket"),
                "required when mode is Socket",
            )),
        },
        ConsoleMode::Pty if is_serial => Ok(()),
        _ => Err(ConfigError::new(
            &format!("{field}.mode"),
            "only Off and Null are supported (virtio-console is not implemented yet; use serial)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists_are_accepted_as_text_or_list() {
        let remote = |servers: &str| -> RemoteRamConfig {
            serde_json::from_str(&format!(r#"{{"servers":{servers},"token_file":"t"}}"#)).unwrap()
        };
        let want = "tcp://a:1,tcp://b:2";
        assert_eq!(remote(r#""tcp://a:1, tcp://b:2""#).servers, want);
        assert_eq!(remote(r#"["tcp://a:1","tcp://b:2"]"#).servers, want);
        let swap = |servers: &str| -> RemoteSwapConfig {
            serde_json::from_str(&format!(
                r#"{{"size":4096,"servers":{servers},"token_file":"t"}}"#
            ))
            .unwrap()
        };
        let want = vec!["tcp://a:1".to_string(), "tcp://b:2".to_string()];
        assert_eq!(swap(r#""tcp://a:1,tcp://b:2""#).servers, want);
        assert_eq!(swap(r#"["tcp://a:1","tcp://b:2"]"#).servers, want);
        assert!(
            serde_json::from_str::<RemoteRamConfig>(r#"{"servers":7,"token_file":"t"}"#).is_err()
        );
    }

    fn field_of(c: &VmConfig) -> String {
        c.validate().unwrap_err().field
    }

    /// The properties listed under `schema:` in openapi.yaml (two-space YAML nesting).
    fn openapi_properties(schema: &str) -> Vec<String> {
        let spec = include_str!("../api/openapi.yaml");
        let start = spec
            .find(&format!("\n    {schema}:\n"))
            .unwrap_or_else(|| panic!("no {schema} schema"));
        let mut out = Vec::new();
        let mut in_properties = false;
        for line in spec[start + 1..].lines().skip(1) {
            if !line.starts_with("      ") {
                break;
            }
            if line.trim_end() == "      properties:" {
                in_properties = true;
            } else if in_properties && !line.starts_with("         ") {
                if let Some((name, _)) = line.trim().split_once(':') {
                    out.push(name.to_string());
                }
            }
        }
        out
    }

    #[test]
    fn openapi_lists_the_vm_config_and_vsock_fields() {
        let config = VmConfig {
            vsock: Some(VsockConfig {
                cid: 3,
                socket: "/tmp/v.sock".into(),
            }),
            disks: vec![DiskConfig::default()],
            payload: Some(PayloadConfig::default()),
            balloon: Some(BalloonConfig::default()),
            ..Default::default()
        };
        let json = serde_json::to_value(&config).unwrap();
        let documented = openapi_properties("VmConfig");
        for key in json.as_object().unwrap().keys() {
            if key == "cpu_profile" {
                continue; // not in openapi.yaml yet: a gap older than this check
            }
            assert!(
                documented.contains(key),
                "VmConfig.{key} missing: {documented:?}"
            );
        }
        let vsock = serde_json::to_value(config.vsock.unwrap()).unwrap();
        let documented = openapi_properties("VsockConfig");
        let keys: Vec<&String> = vsock.as_object().unwrap().keys().collect();
        assert_eq!(keys, documented.iter().collect::<Vec<_>>());
        let balloon = serde_json::to_value(config.balloon.unwrap()).unwrap();
        let mut documented = openapi_properties("BalloonConfig");
        documented.sort();
        let keys: Vec<&String> = balloon.as_object().unwrap().keys().collect();
        assert_eq!(keys, documented.iter().collect::<Vec<_>>());
    }

    #[test]
    fn names_the_bad_field() {
        let mut c = VmConfig::default();
        c.validate().unwrap();
        c.cpus.boot_vcpus = 0;
        assert_eq!(field_of(&c), "cpus.boot_vcpus");
        c.cpus = CpusConfig {
            boot_vcpus: 4,
            max_vcpus: 2,
        };
        assert_eq!(field_of(&c), "cpus.max_vcpus");
        c.cpus = CpusConfig::default();
        c.memory.size = (64 << 20) + 1;
        assert_eq!(field_of(&c), "memory.size");
        c.memory.size = 64 << 20;
        c.payload = Some(PayloadConfig {
            kernel: Some("/nonexistent/vmlinux".into()),
            ..Default::default()
        });
        assert_eq!(field_of(&c), "payload.kernel");
        c.payload = None;
        c.serial.mode = ConsoleMode::File;
        assert_eq!(field_of(&c), "serial.file");
        c.serial = ConsoleConfig::tty();
        c.console.mode = ConsoleMode::Tty;
        assert_eq!(field_of(&c), "console.mode");
    }

    #[test]
    fn payload_needs_a_kernel_to_boot() {
        let c = VmConfig::default();
        assert_eq!(c.payload().unwrap_err().field, "payload");
        let c = VmConfig {
            payload: Some(PayloadConfig {
                cmdline: Some("console=ttyS0".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(c.payload().unwrap_err().field, "payload.kernel");
    }
}
