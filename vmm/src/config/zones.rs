//! `memory.zones` (Cloud Hypervisor's `MemoryZoneConfig`): guest RAM made of pieces, each
//! anonymous or backed by a file. Kata's VM factory uses one zone whose RAM is a shared file
//! (`{size: 0, zones: [{id, size, file, shared: true}]}`), so the template's memory already is a
//! file when it is snapshotted (docs/template-format.md, "Zone-backed templates").
//!
//! Only `id`, `size`, `file` and `shared` are implemented; Cloud Hypervisor's other zone fields
//! (`hugepages`, `host_numa_node`, `hotplug_size`, ...) are ignored with the unknown-field
//! warning.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ConfigError, MemoryConfig, MAX_MEMORY, MIN_MEMORY};
use crate::vstate::memory::PAGE_SIZE;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryZoneConfig {
    pub id: String,
    /// Bytes; a multiple of 4096.
    pub size: u64,
    /// Backing file (created if missing, sized to `size`). Absent: anonymous memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Map the file MAP_SHARED (the guest's writes reach the file) instead of MAP_PRIVATE.
    #[serde(default)]
    pub shared: bool,
}

impl MemoryConfig {
    /// Bytes of boot RAM the guest gets: `size`, or with zones the sum of their sizes (then
    /// `size` is 0, as Cloud Hypervisor wants it). Everything that sizes the guest's RAM goes
    /// through this, never through `size` directly.
    pub fn ram_size(&self) -> u64 {
        if self.zones.is_empty() {
            self.size
        } else {
            self.zones
                .iter()
                .fold(0u64, |sum, z| sum.saturating_add(z.size))
        }
    }

    /// Drops every zone's `file` and `shared`: a clone restored from a template keeps the zone
    /// sizes (its guest layout) but never maps the template VM's zone files. Its memory comes
    /// from the template's memory file, and a reboot of the clone gets anonymous zones.
    pub fn forget_zone_files(&mut self) {
        for z in &mut self.zones {
            z.file = None;
            z.shared = false;
        }
    }
}

/// The rules for `memory.zones` (only called when there are zones), each violation naming its
/// field.
pub(super) fn validate(m: &MemoryConfig) -> Result<(), ConfigError> {
    if m.size != 0 {
        return Err(ConfigError::new(
            "memory.size",
            "must be 0 when memory.zones is given (the guest RAM is the sum of the zone sizes)",
        ));
    }
    let mut total = 0u64;
    for (i, z) in m.zones.iter().enumerate() {
        let field = |name: &str| format!("memory.zones[{i}].{name}");
        if z.id.trim().is_empty() {
            return Err(ConfigError::new(&field("id"), "must not be empty"));
        }
        if let Some(j) = m.zones[..i].iter().position(|o| o.id == z.id) {
            return Err(ConfigError::new(
                &field("id"),
                format!("{:?} is already the id of memory.zones[{j}]", z.id),
            ));
        }
        if z.size == 0 || z.size % PAGE_SIZE != 0 {
            return Err(ConfigError::new(
                &field("size"),
                "must be a non-zero multiple of 4096 bytes",
            ));
        }
        total = total
            .checked_add(z.size)
            .ok_or_else(|| ConfigError::new(&field("size"), "too large"))?;
        match &z.file {
            Some(file) => {
                check_zone_file(&field("file"), file)?;
                if let Some(j) = m.zones[..i].iter().position(|o| o.file.as_ref() == Some(file)) {
                    return Err(ConfigError::new(
                        &field("file"),
                        format!("is also the file of memory.zones[{j}]; each zone needs its own"),
                    ));
                }
            }
            None if z.shared => {
                return Err(ConfigError::new(
                    &field("shared"),
                    "shared: true needs a file (shared anonymous memory is not supported: give the zone a file)",
                ))
            }
            None => {}
        }
    }
    if total < MIN_MEMORY {
        return Err(ConfigError::new(
            "memory.zones",
            format!("the zones add up to {total} bytes; the guest needs at least {MIN_MEMORY}"),
        ));
    }
    if total > MAX_MEMORY {
        return Err(ConfigError::new(
            "memory.zones",
            format!("the zones add up to {total} bytes; at most {MAX_MEMORY} allowed"),
        ));
    }
    // RAM extension moves anonymous pages to memory servers; a file's pages are the file's.
    if m.remote.is_some() && m.zones.iter().any(|z| z.file.is_some()) {
        return Err(ConfigError::new(
            "memory.remote",
            "the RAM extension needs anonymous guest memory: not with file-backed memory.zones",
        ));
    }
    Ok(())
}

/// A zone file must be a regular file (or not exist yet) in an existing directory.
fn check_zone_file(field: &str, file: &Path) -> Result<(), ConfigError> {
    let dir = match file.parent() {
        Some(d) if d.as_os_str().is_empty() => Path::new("."),
        Some(d) => d,
        None => return Err(ConfigError::new(field, "must name a file, not /")),
    };
    if file.file_name().is_none() {
        return Err(ConfigError::new(
            field,
            format!("{} does not name a file", file.display()),
        ));
    }
    if !dir.is_dir() {
        return Err(ConfigError::new(
            field,
            format!("directory {} does not exist", dir.display()),
        ));
    }
    match std::fs::metadata(file) {
        Ok(m) if !m.is_file() => Err(ConfigError::new(
            field,
            format!("{} exists and is not a regular file", file.display()),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VmConfig;

    const MIB: u64 = 1 << 20;

    fn zone(id: &str, size: u64, file: Option<&Path>, shared: bool) -> MemoryZoneConfig {
        MemoryZoneConfig {
            id: id.into(),
            size,
            file: file.map(Path::to_path_buf),
            shared,
        }
    }

    fn with_zones(zones: Vec<MemoryZoneConfig>) -> VmConfig {
        let mut c = VmConfig::default();
        c.memory.size = 0;
        c.memory.zones = zones;
        c
    }

    fn field_of(c: &VmConfig) -> String {
        c.validate().unwrap_err().field
    }

    #[test]
    fn ram_is_the_sum_of_the_zones() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory");
        let c = with_zones(vec![
            zone("mem0", 32 * MIB, Some(&file), true),
            zone("mem1", 16 * MIB, None, false),
        ]);
        c.validate().unwrap();
        assert_eq!(c.memory.ram_size(), 48 * MIB);
        assert_eq!(c.memory.size, 0);
        let plain = VmConfig::default();
        assert_eq!(plain.memory.ram_size(), plain.memory.size);
    }

    #[test]
    fn each_rule_names_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory");
        let other = dir.path().join("other");
        let ok = zone("mem0", 32 * MIB, Some(&file), true);

        let mut c = with_zones(vec![ok.clone()]);
        c.memory.size = 32 * MIB;
        assert_eq!(field_of(&c), "memory.size");

        let mut no_zones = VmConfig::default();
        no_zones.memory.size = 0;
        assert_eq!(field_of(&no_zones), "memory.size");

        let cases: Vec<(Vec<MemoryZoneConfig>, &str)> = vec![
            (vec![zone("", MIB, None, false)], "memory.zones[0].id"),
            (
                vec![ok.clone(), zone("mem0", MIB, None, false)],
                "memory.zones[1].id",
            ),
            (vec![zone("mem0", 0, None, false)], "memory.zones[0].size"),
            (
                vec![ok.clone(), zone("mem1", MIB + 1, None, false)],
                "memory.zones[1].size",
            ),
            (
                vec![zone("mem0", 32 * MIB, None, true)],
                "memory.zones[0].shared",
            ),
            (
                vec![zone(
                    "mem0",
                    32 * MIB,
                    Some(&dir.path().join("missing/memory")),
                    true,
                )],
                "memory.zones[0].file",
            ),
            (
                vec![zone("mem0", 32 * MIB, Some(dir.path()), true)],
                "memory.zones[0].file",
            ),
            (
                vec![ok.clone(), zone("mem1", MIB, Some(&file), false)],
                "memory.zones[1].file",
            ),
            (vec![zone("mem0", 4096, None, false)], "memory.zones"),
            (
                vec![
                    zone("a", MAX_MEMORY, None, false),
                    zone("b", 4096, None, false),
                ],
                "memory.zones",
            ),
            (
                vec![
                    zone("a", u64::MAX - 4095, None, false),
                    zone("b", 8192, None, false),
                ],
                "memory.zones[1].size",
            ),
        ];
        for (zones, field) in cases {
            let c = with_zones(zones.clone());
            assert_eq!(field_of(&c), field, "{zones:?}");
        }

        // Hot-plug with zones: the virtio-mem region goes after the zones' total.
        let mut c = with_zones(vec![ok.clone()]);
        c.memory.hotplug_size = 256 * MIB;
        c.validate().unwrap();
        let mut big = with_zones(vec![
            zone("a", 3 << 30, None, false),
            zone("b", 64 * MIB, Some(&other), false),
        ]);
        big.memory.hotplug_size = 256 * MIB;
        big.validate().unwrap();

        // RAM extension only over anonymous zones.
        let remote = crate::config::RemoteRamConfig {
            servers: "tcp://127.0.0.1:7600".into(),
            directory: vec![],
            token_file: "t".into(),
            replicas: None,
            local_budget: None,
            prefetch: true,
            controller: None,
        };
        let mut c = with_zones(vec![ok]);
        c.memory.remote = Some(remote.clone());
        assert_eq!(field_of(&c), "memory.remote");
        let mut c = with_zones(vec![zone("mem0", 32 * MIB, None, false)]);
        c.memory.remote = Some(remote.clone());
        // With zones, memory.shared has no effect (kata sends it with them).
        c.memory.shared = Some(true);
        c.validate().unwrap();
        // Without zones, memory.shared RAM is a file too.
        let mut c = VmConfig::default();
        c.memory.size = 32 * MIB;
        c.memory.shared = Some(true);
        c.memory.remote = Some(remote);
        assert_eq!(field_of(&c), "memory.remote");
    }

    #[test]
    fn ch_zone_fields_are_accepted_and_the_extra_ones_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let body = format!(
            r#"{{"memory": {{"size": 0, "hotplug_size": 0, "shared": true, "zones": [{{"id": "mem0", "size": 33554432, "file": "{}", "shared": true, "hugepages": false, "host_numa_node": 0}}]}}}}"#,
            dir.path().join("memory").display()
        );
        let (c, ignored) = crate::api::body::parse::<VmConfig>(body.as_bytes()).unwrap();
        c.validate().unwrap();
        assert_eq!(c.memory.zones[0].id, "mem0");
        assert!(c.memory.zones[0].shared);
        assert_eq!(c.memory.ram_size(), 32 * MIB);
        assert_eq!(
            ignored,
            vec![
                "memory.zones.0.hugepages".to_string(),
                "memory.zones.0.host_numa_node".to_string()
            ]
        );
        // A clone forgets the files; vm.info then shows neither file nor shared: true.
        let mut m = c.memory.clone();
        m.forget_zone_files();
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json["zones"][0],
            serde_json::json!({"id": "mem0", "size": 33554432, "shared": false})
        );
    }
}
