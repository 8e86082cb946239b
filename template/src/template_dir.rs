//! A template directory: the state file (manifest + the VMM's state) and the memory file.
//!
//! The manifest travels inside the checksummed state file rather than as a separate file, so
//! one read verifies everything restore needs and there is no pair of files to get out of step.
//! The memory file is written first and the state file last: a directory with a state file is
//! a complete template (the state file is the commit record).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::file_memory::{save_memory_from_files, FileRegionRef, MemoryFileOrigin};
use crate::memory_file::{save_memory, GuestRegionRef, MemoryFileError, MemoryLayout, SaveOptions};
use crate::memory_map::{map_memory, GuestMemoryMapping, MapError, RestoreMode};
use crate::state_file::{read_state, write_state, Durability, StateFileError};

/// Name of the state file inside a template directory.
pub const STATE_FILE_NAME: &str = "state.bin";
/// Default name of the memory file inside a template directory.
pub const MEMORY_FILE_NAME: &str = "memory.bin";

/// What a template holds besides the VMM's own state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateManifest {
    /// The memory file: a bare name is relative to the template directory; an absolute path
    /// points elsewhere (memory on tmpfs, state on disk).
    pub memory_file: String,
    /// Where each guest region is in the memory file.
    pub memory: MemoryLayout,
    /// When the snapshot was taken, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Version of the revenant-template crate that wrote the template (informational; the
    /// state file's format version is what restore checks).
    pub writer_version: String,
    /// The source VM's configuration as JSON text (opaque to this crate). Text rather than a
    /// `serde_json::Value` because the payload encoding is not self-describing.
    pub source_config_json: String,
}

impl TemplateManifest {
    /// The source VM configuration, parsed.
    pub fn source_config(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.source_config_json)
    }
}

/// How [`save_template`] writes.
#[derive(Debug, Clone, Default)]
pub struct SnapshotOptions {
    /// Page scan, writer threads and fsync of the memory file.
    pub memory: SaveOptions,
    /// Put the memory file at this absolute path instead of `<dir>/memory.bin`.
    pub memory_file: Option<PathBuf>,
    /// fsync the state file (and directory).
    pub sync_state: bool,
}

/// Why a template could not be saved or opened.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error(transparent)]
    State(#[from] StateFileError),
    #[error(transparent)]
    Memory(#[from] MemoryFileError),
    #[error(transparent)]
    Map(#[from] MapError),
    /// The template directory could not be created.
    #[error("template directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A memory file path that is neither a bare file name nor absolute would silently depend
    /// on the restoring process's working directory.
    #[error("memory file path {0} must be absolute")]
    RelativeMemoryPath(PathBuf),
    /// The VM configuration could not be turned into JSON text.
    #[error("source VM configuration does not serialize: {0}")]
    Config(#[source] serde_json::Error),
    /// A snapshot/restore URL this crate cannot use.
    #[error("template URL {url:?}: {reason}")]
    BadUrl { url: String, reason: &'static str },
}

/// The state file as written: borrowed parts, encoded exactly like [`StateFileIn`].
#[derive(Serialize)]
struct StateFileOut<'a, S> {
    manifest: &'a TemplateManifest,
    vm: &'a S,
}

#[derive(Deserialize)]
struct StateFileIn<S> {
    manifest: TemplateManifest,
    vm: S,
}

/// Saves a paused VM as a template in `dir` (created if needed): the guest memory `regions`,
/// then the VMM's `vm_state` and `source_config` in the state file. Returns the manifest.
///
/// The VM must stay paused for the whole call: pages written during the save may be captured
/// half-way.
pub fn save_template<S: Serialize>(
    dir: &Path,
    regions: &[GuestRegionRef<'_>],
    vm_state: &S,
    source_config: &serde_json::Value,
    opts: &SnapshotOptions,
) -> Result<TemplateManifest, TemplateError> {
    let (manifest, ()) = save_with(dir, vm_state, source_config, opts, |path| {
        Ok((save_memory(regions, path, &opts.memory)?, ()))
    })?;
    Ok(manifest)
}

/// [`save_template`] for a VM whose guest memory is held in files it maps MAP_SHARED: the
/// memory file is a hard link to the guest's file when that file already has the template
/// layout, else a copy of the files' data (see [`crate::file_memory`]). Returns the manifest
/// and which of the two it was; after [`MemoryFileOrigin::Linked`] the guest's memory IS the
/// template's memory file, and the guest must never write it again.
///
/// `opts.memory.sync` applies; its page scan and threads do not (nothing is scanned).
pub fn save_template_from_files<S: Serialize>(
    dir: &Path,
    regions: &[FileRegionRef<'_>],
    vm_state: &S,
    source_config: &serde_json::Value,
    opts: &SnapshotOptions,
) -> Result<(TemplateManifest, MemoryFileOrigin), TemplateError> {
    save_with(dir, vm_state, source_config, opts, |path| {
        Ok(save_memory_from_files(regions, path, opts.memory.sync)?)
    })
}

/// The template directory around a memory writer: creates `dir`, has `write_memory` produce
/// the memory file at its path, then writes the state file (last: it commits the template).
fn save_with<S: Serialize, T>(
    dir: &Path,
    vm_state: &S,
    source_config: &serde_json::Value,
    opts: &SnapshotOptions,
    write_memory: impl FnOnce(&Path) -> Result<(MemoryLayout, T), TemplateError>,
) -> Result<(TemplateManifest, T), TemplateError> {
    fs::create_dir_all(dir).map_err(|source| TemplateError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let (memory_path, memory_file) = match &opts.memory_file {
        Some(p) if p.is_absolute() => (p.clone(), p.to_string_lossy().into_owned()),
        Some(p) => return Err(TemplateError::RelativeMemoryPath(p.clone())),
        None => (dir.join(MEMORY_FILE_NAME), MEMORY_FILE_NAME.to_string()),
    };
    let source_config_json = serde_json::to_string(source_config).map_err(TemplateError::Config)?;
    let (memory, how) = write_memory(&memory_path)?;
    let created_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let manifest = TemplateManifest {
        memory_file,
        memory,
        created_unix_ms,
        writer_version: env!("CARGO_PKG_VERSION").to_string(),
        source_config_json,
    };
    let durability = if opts.sync_state {
        Durability::Sync
    } else {
        Durability::NoSync
    };
    write_state(
        &dir.join(STATE_FILE_NAME),
        &StateFileOut {
            manifest: &manifest,
            vm: vm_state,
        },
        durability,
    )?;
    Ok((manifest, how))
}

/// An opened, verified template.
#[derive(Debug)]
pub struct Template<S> {
    pub dir: PathBuf,
    pub manifest: TemplateManifest,
    /// The VMM's state as saved.
    pub vm_state: S,
}

/// Reads and verifies the template in `dir`: state file checks (magic, version, checksums,
/// decode), layout sanity, and that the memory file exists and is long enough. Nothing is
/// mapped yet.
pub fn open_template<S: DeserializeOwned>(dir: &Path) -> Result<Template<S>, TemplateError> {
    let template = open_template_state::<S>(dir)?;
    let path = template.memory_path();
    let found = match fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(MapError::MissingFile { path }.into())
        }
        Err(source) => {
            return Err(MapError::Io {
                path,
                op: "stat",
                source,
            }
            .into())
        }
    };
    if found < template.manifest.memory.file_len {
        return Err(MapError::TooShort {
            path,
            expected: template.manifest.memory.file_len,
            found,
        }
        .into());
    }
    Ok(template)
}

/// Like [`open_template`] without requiring the memory file: for restores whose memory comes
/// from elsewhere (memory servers holding the same bytes).
pub fn open_template_state<S: DeserializeOwned>(dir: &Path) -> Result<Template<S>, TemplateError> {
    let state: StateFileIn<S> = read_state(&dir.join(STATE_FILE_NAME))?;
    let template = Template {
        dir: dir.to_path_buf(),
        manifest: state.manifest,
        vm_state: state.vm,
    };
    template.manifest.memory.validate()?;
    Ok(template)
}

impl<S> Template<S> {
    /// Where the memory file is.
    pub fn memory_path(&self) -> PathBuf {
        // Joining an absolute path replaces the directory, which is what an absolute
        // `memory_file` means.
        self.dir.join(&self.manifest.memory_file)
    }

    /// Maps the guest memory for a restore, loading the `prefetch` pages (memory-file offsets)
    /// first in on-demand mode.
    pub fn map_memory_prefetched(
        &self,
        mode: RestoreMode,
        prefetch: &[u64],
    ) -> Result<GuestMemoryMapping, TemplateError> {
        Ok(crate::memory_map::map_memory_prefetched(
            &self.memory_path(),
            &self.manifest.memory,
            mode,
            prefetch,
        )?)
    }

    /// [`Self::map_memory_prefetched`] into memory reserved by a prepared VM (see
    /// [`crate::memory_map::map_memory_into`]).
    pub fn map_memory_into(
        &self,
        mode: RestoreMode,
        prefetch: &[u64],
        reserved: Vec<crate::MappedRegion>,
    ) -> Result<GuestMemoryMapping, TemplateError> {
        Ok(crate::memory_map::map_memory_into(
            &self.memory_path(),
            &self.manifest.memory,
            mode,
            prefetch,
            Some(reserved),
        )?)
    }

    /// Maps the guest memory for a restore.
    pub fn map_memory(&self, mode: RestoreMode) -> Result<GuestMemoryMapping, TemplateError> {
        Ok(map_memory(
            &self.memory_path(),
            &self.manifest.memory,
            mode,
        )?)
    }
}

/// The directory named by a snapshot `destination_url` or restore `source_url`: only
/// `file:///absolute/path` (no host part, no percent-escapes) is accepted.
pub fn template_dir_from_url(url: &str) -> Result<PathBuf, TemplateError> {
    let bad = |reason| TemplateError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let rest = url
        .strip_prefix("file://")
        .ok_or_else(|| bad("only file:// URLs are supported"))?;
    if !rest.starts_with('/') {
        return Err(bad("expected file:///absolute/path (no host part)"));
    }
    if rest.contains('%') {
        return Err(bad("percent-escapes are not supported"));
    }
    if rest.len() == 1 {
        return Err(bad("the root directory cannot be a template directory"));
    }
    Ok(PathBuf::from(rest))
}
