//! Whole-template save -> open -> map round trips and refusals, on real files.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use revenant_template::{
    host_page_size, open_template, save_template, template_dir_from_url, GuestRegionRef, MapError,
    MappedRegion, RestoreMode, SnapshotOptions, StateFileError, Template, TemplateError,
    MEMORY_FILE_NAME, STATE_FILE_NAME,
};

/// Stand-in for the VMM's saved state: vCPU registers and a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct VmState {
    vcpus: Vec<Vec<u64>>,
    serial: Option<Vec<u8>>,
    clock_ns: u64,
}

fn vm_state() -> VmState {
    VmState {
        vcpus: vec![(0..40).collect(), (100..140).collect()],
        serial: Some(b"login: ".to_vec()),
        clock_ns: 123_456_789,
    }
}

fn tmpfs_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap())
}

fn guest() -> MappedRegion {
    let ps = host_page_size();
    let region = MappedRegion::anonymous(0, 64 * ps).unwrap();
    // SAFETY: the test owns the mapping.
    let mem = unsafe { region.as_mut_slice() };
    mem[0..8].copy_from_slice(b"bootsect");
    mem[33 * ps + 5] = 0x77;
    region
}

fn save(dir: &Path, region: &MappedRegion, opts: &SnapshotOptions) {
    // SAFETY: the mapping is live and not written during the save.
    let r = unsafe { GuestRegionRef::from_raw_parts(0, region.as_ptr(), region.len()) };
    let config = serde_json::json!({"cpus": {"boot_vcpus": 2}, "memory": {"size": 262144}});
    save_template(dir, &[r], &vm_state(), &config, opts).unwrap();
}

fn open(dir: &Path) -> Result<Template<VmState>, TemplateError> {
    open_template(dir)
}

#[test]
fn template_round_trips_state_config_and_memory() {
    let root = tmpfs_dir();
    let dir = root.path().join("tpl");
    let region = guest();
    save(&dir, &region, &SnapshotOptions::default());
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec![MEMORY_FILE_NAME, STATE_FILE_NAME]);

    let t = open(&dir).unwrap();
    assert_eq!(t.vm_state, vm_state());
    assert_eq!(t.manifest.memory_file, MEMORY_FILE_NAME);
    assert_eq!(t.manifest.memory.data_bytes, 2 * host_page_size() as u64);
    assert_eq!(t.manifest.source_config().unwrap()["cpus"]["boot_vcpus"], 2);
    assert!(t.manifest.created_unix_ms > 1_600_000_000_000);
    let mem = t.map_memory(RestoreMode::Cow).unwrap();
    // SAFETY: test-owned mappings, no concurrent writers.
    assert!(unsafe { mem.regions()[0].as_slice() == region.as_slice() });
}

#[test]
fn memory_file_can_live_outside_the_template_dir() {
    let disk = tempfile::tempdir().unwrap();
    let shm = tmpfs_dir();
    let mem_path = shm.path().join("guest.mem");
    let region = guest();
    let opts = SnapshotOptions {
        memory_file: Some(mem_path.clone()),
        sync_state: true,
        ..SnapshotOptions::default()
    };
    save(disk.path(), &region, &opts);
    let t = open(disk.path()).unwrap();
    assert_eq!(t.memory_path(), mem_path);
    let mem = t.map_memory(RestoreMode::Copy).unwrap();
    // SAFETY: test-owned mappings.
    assert!(unsafe { mem.regions()[0].as_slice() == region.as_slice() });

    let relative = SnapshotOptions {
        memory_file: Some("guest.mem".into()),
        ..SnapshotOptions::default()
    };
    // SAFETY: as in save().
    let r = unsafe { GuestRegionRef::from_raw_parts(0, region.as_ptr(), region.len()) };
    let err = save_template(
        disk.path(),
        &[r],
        &vm_state(),
        &serde_json::json!({}),
        &relative,
    )
    .unwrap_err();
    assert!(
        matches!(err, TemplateError::RelativeMemoryPath(_)),
        "{err:?}"
    );
}

#[test]
fn missing_memory_file_is_refused_at_open() {
    let dir = tmpfs_dir();
    save(dir.path(), &guest(), &SnapshotOptions::default());
    fs::remove_file(dir.path().join(MEMORY_FILE_NAME)).unwrap();
    let err = open(dir.path()).unwrap_err();
    assert!(
        matches!(err, TemplateError::Map(MapError::MissingFile { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains(MEMORY_FILE_NAME), "{err}");
}

#[test]
fn truncated_memory_file_is_refused_at_open() {
    let dir = tmpfs_dir();
    save(dir.path(), &guest(), &SnapshotOptions::default());
    let f = fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join(MEMORY_FILE_NAME))
        .unwrap();
    f.set_len(4096).unwrap();
    let err = open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            TemplateError::Map(MapError::TooShort { found: 4096, .. })
        ),
        "{err:?}"
    );
}

#[test]
fn corrupt_or_foreign_state_files_are_refused_at_open() {
    let dir = tmpfs_dir();
    save(dir.path(), &guest(), &SnapshotOptions::default());
    let state = dir.path().join(STATE_FILE_NAME);
    let good = fs::read(&state).unwrap();

    let mut flipped = good.clone();
    let mid = good.len() / 2;
    flipped[mid] ^= 0x10;
    fs::write(&state, &flipped).unwrap();
    assert!(matches!(
        open(dir.path()),
        Err(TemplateError::State(
            StateFileError::ChecksumMismatch { .. }
        ))
    ));

    let mut future = good.clone();
    let next = revenant_template::state_file::STATE_FORMAT_VERSION + 1;
    future[8..12].copy_from_slice(&next.to_le_bytes());
    fs::write(&state, &future).unwrap();
    assert!(matches!(
        open(dir.path()),
        Err(TemplateError::State(StateFileError::UnsupportedVersion {
            found,
            ..
        })) if found == next
    ));

    fs::write(&state, &good[..good.len() - 1]).unwrap();
    assert!(matches!(
        open(dir.path()),
        Err(TemplateError::State(StateFileError::Truncated { .. }))
    ));

    // A state file for a different VM state type: intact, but it does not decode.
    fs::write(&state, &good).unwrap();
    let err = open_template::<Vec<String>>(dir.path()).unwrap_err();
    assert!(
        matches!(err, TemplateError::State(StateFileError::Decode { .. })),
        "{err:?}"
    );

    fs::remove_file(&state).unwrap();
    assert!(matches!(
        open(dir.path()),
        Err(TemplateError::State(StateFileError::Io { .. }))
    ));
}

#[test]
fn snapshot_again_into_the_same_directory_replaces_the_template() {
    let dir = tmpfs_dir();
    let region = guest();
    save(dir.path(), &region, &SnapshotOptions::default());
    let first = open(dir.path()).unwrap();
    let clone = first.map_memory(RestoreMode::Cow).unwrap();
    // SAFETY: test-owned mapping.
    let mem = unsafe { region.as_mut_slice() };
    mem[0] = b'B';
    save(dir.path(), &region, &SnapshotOptions::default());
    let second = open(dir.path()).unwrap();
    let mem = second.map_memory(RestoreMode::Cow).unwrap();
    // SAFETY: test-owned mappings.
    unsafe {
        assert_eq!(mem.regions()[0].as_slice()[0], b'B');
        // The clone of the first template still sees the first template's memory.
        assert_eq!(clone.regions()[0].as_slice()[0], b'b');
    }
}

#[test]
fn only_local_absolute_file_urls_are_accepted() {
    assert_eq!(
        template_dir_from_url("file:///dev/shm/tpl").unwrap(),
        Path::new("/dev/shm/tpl")
    );
    for url in [
        "http://host/tpl",
        "file://host/tpl",
        "file://relative",
        "/dev/shm/tpl",
        "file:///a%20b",
        "file:///",
    ] {
        assert!(
            matches!(
                template_dir_from_url(url),
                Err(TemplateError::BadUrl { .. })
            ),
            "{url}"
        );
    }
}
