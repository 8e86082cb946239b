//! Memory hot-plug in the VM config: how big the virtio-mem region is, and which sizes a
//! resize (`vm.resize`'s `desired_ram`, or `memory.hotplugged_size` at create) may ask for.

use super::{ConfigError, MemoryConfig};
use crate::devices::virtio::mem::BLOCK_SIZE;

impl MemoryConfig {
    /// Bytes of hot-pluggable memory the VM gets: `hotplug_size` in whole virtio-mem
    /// blocks (0: no virtio-mem device).
    pub fn hotplug_region_size(&self) -> u64 {
        self.hotplug_size / BLOCK_SIZE * BLOCK_SIZE
    }

    /// What virtio-mem should plug for the guest to have `desired_ram` bytes in all:
    /// `desired_ram - size`, which must be whole blocks within the region. `field` names the
    /// request field in the error.
    pub fn hotplug_request(&self, field: &str, desired_ram: u64) -> Result<u64, ConfigError> {
        let region = self.hotplug_region_size();
        let boot = self.ram_size();
        if desired_ram == boot {
            return Ok(0);
        }
        if region == 0 {
            return Err(ConfigError::new(
                field,
                format!(
                    "this VM has no hot-pluggable memory (memory.hotplug_size must be at least {BLOCK_SIZE} at vm.create); only the boot RAM ({}) is accepted",
                    boot
                ),
            ));
        }
        let Some(extra) = desired_ram.checked_sub(boot) else {
            return Err(ConfigError::new(
                field,
                format!(
                    "must be at least the boot RAM ({}): boot memory cannot be unplugged",
                    boot
                ),
            ));
        };
        if extra > region {
            return Err(ConfigError::new(
                field,
                format!(
                    "must be at most the boot RAM + hotplug_size ({})",
                    boot + region
                ),
            ));
        }
        if extra % BLOCK_SIZE != 0 {
            return Err(ConfigError::new(
                field,
                format!(
                    "must be the boot RAM ({}) plus a multiple of {BLOCK_SIZE} bytes (the virtio-mem block size)",
                    boot
                ),
            ));
        }
        Ok(extra)
    }

    /// Memory plugged (or to be plugged) on top of `size`: `hotplugged_size`, 0 when absent.
    pub fn requested_hotplug(&self) -> u64 {
        self.hotplugged_size.unwrap_or(0)
    }
}

/// `memory.hotplugged_size` at create: a size a resize could ask for.
pub(super) fn validate(m: &MemoryConfig) -> Result<(), ConfigError> {
    let Some(extra) = m.hotplugged_size else {
        return Ok(());
    };
    let field = "memory.hotplugged_size";
    let total = m
        .ram_size()
        .checked_add(extra)
        .ok_or_else(|| ConfigError::new(field, "too large"))?;
    m.hotplug_request(field, total).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn memory(size: u64, hotplug: u64) -> MemoryConfig {
        MemoryConfig {
            size,
            hotplug_size: hotplug,
            ..Default::default()
        }
    }

    #[test]
    fn desired_ram_is_boot_size_plus_whole_blocks_within_the_region() {
        let m = memory(256 * MIB, 512 * MIB + 4096);
        assert_eq!(m.hotplug_region_size(), 512 * MIB);
        assert_eq!(m.hotplug_request("desired_ram", 256 * MIB), Ok(0));
        assert_eq!(m.hotplug_request("desired_ram", 512 * MIB), Ok(256 * MIB));
        assert_eq!(m.hotplug_request("desired_ram", 768 * MIB), Ok(512 * MIB));
        for bad in [128 * MIB, 768 * MIB + 2 * MIB, 257 * MIB, u64::MAX] {
            let e = m.hotplug_request("desired_ram", bad).unwrap_err();
            assert_eq!(e.field, "desired_ram", "{bad}");
        }
        let none = memory(256 * MIB, MIB);
        assert_eq!(none.hotplug_region_size(), 0);
        assert_eq!(none.hotplug_request("desired_ram", 256 * MIB), Ok(0));
        let e = none.hotplug_request("desired_ram", 258 * MIB).unwrap_err();
        assert!(e.reason.contains("no hot-pluggable memory"), "{e}");
    }

    #[test]
    fn hotplugged_size_at_create_is_checked() {
        let mut m = memory(256 * MIB, 256 * MIB);
        validate(&m).unwrap();
        m.hotplugged_size = Some(128 * MIB);
        validate(&m).unwrap();
        assert_eq!(m.requested_hotplug(), 128 * MIB);
        m.hotplugged_size = Some(MIB);
        assert_eq!(validate(&m).unwrap_err().field, "memory.hotplugged_size");
        m.hotplugged_size = Some(u64::MAX);
        assert_eq!(validate(&m).unwrap_err().field, "memory.hotplugged_size");
    }
}
