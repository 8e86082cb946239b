//! `balloon`: the virtio-balloon device in the VM config (Cloud Hypervisor's `size`,
//! `deflate_on_oom`, `free_page_reporting`, plus Revenant's statistics polling interval),
//! and its validation.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The longest statistics polling interval accepted: a day.
const MAX_STATS_INTERVAL_S: u64 = 86_400;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BalloonConfig {
    /// Bytes the guest is asked to put into the balloon from boot (whole 4 KiB pages);
    /// `vm.resize`'s `desired_balloon` changes it.
    #[serde(default)]
    pub size: u64,
    /// The guest may take pages back from the balloon when it runs out of memory.
    #[serde(default)]
    pub deflate_on_oom: bool,
    /// The guest reports free pages, which the VMM gives back to the host (and, under RAM
    /// extension, never ships to the memory servers).
    #[serde(default)]
    pub free_page_reporting: bool,
    /// Revenant extension: ask the guest for new memory statistics every this many
    /// seconds; 0 asks only when `vm.counters` is read.
    #[serde(default)]
    pub statistics_polling_interval_s: u64,
}

pub(super) fn validate(b: &BalloonConfig, memory_size: u64) -> Result<(), ConfigError> {
    if b.size % 4096 != 0 {
        return Err(ConfigError::new(
            "balloon.size",
            format!("{} is not a whole number of 4 KiB pages", b.size),
        ));
    }
    if b.size > memory_size {
        return Err(ConfigError::new(
            "balloon.size",
            format!("{} is more than the guest's RAM ({memory_size})", b.size),
        ));
    }
    if b.statistics_polling_interval_s > MAX_STATS_INTERVAL_S {
        return Err(ConfigError::new(
            "balloon.statistics_polling_interval_s",
            format!("must be at most {MAX_STATS_INTERVAL_S}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_must_be_whole_pages_within_memory() {
        let ok = BalloonConfig {
            size: 64 << 20,
            ..Default::default()
        };
        assert!(validate(&ok, 256 << 20).is_ok());
        let e = validate(
            &BalloonConfig {
                size: 100,
                ..ok.clone()
            },
            256 << 20,
        )
        .unwrap_err();
        assert_eq!(e.field, "balloon.size");
        let e = validate(&ok, 32 << 20).unwrap_err();
        assert_eq!(e.field, "balloon.size");
        let slow = BalloonConfig {
            statistics_polling_interval_s: 1 << 40,
            ..ok
        };
        let e = validate(&slow, 256 << 20).unwrap_err();
        assert_eq!(e.field, "balloon.statistics_polling_interval_s");
    }
}
