//! Creating files so that readers never see a half-written one.
//!
//! Template files are always written under a temporary name in the target directory and renamed
//! into place. Besides crash safety this matters for the memory file: forked VMs map the old
//! memory file MAP_PRIVATE, and overwriting it in place would change (or, if shortened, SIGBUS)
//! their untouched pages. A rename leaves the old inode alive for as long as it is mapped.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A failed step: which operation, and the OS error.
pub(crate) type StepError = (&'static str, io::Error);

/// Temporary name next to `path`: same directory (rename must not cross filesystems), unique per
/// process so two processes snapshotting to the same place don't write into each other's file.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Creates (truncating) the temporary file for `path`.
pub(crate) fn create_temp(path: &Path) -> Result<(File, PathBuf), StepError> {
    let tmp = temp_path(path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| ("create temporary file", e))?;
    Ok((file, tmp))
}

/// Renames the finished temporary file over `path`; with `sync`, fsyncs the file first and the
/// directory after so the rename itself is durable. Removes the temporary file on failure.
pub(crate) fn commit(file: File, tmp: &Path, path: &Path, sync: bool) -> Result<(), StepError> {
    let result = (|| {
        if sync {
            file.sync_all().map_err(|e| ("fsync", e))?;
        }
        drop(file);
        fs::rename(tmp, path).map_err(|e| ("rename into place", e))?;
        if sync {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            let dir = dir.unwrap_or_else(|| Path::new("."));
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| ("fsync directory", e))?;
        }
        Ok(())
    })();
    if result.is_err() {
        // Best effort: the error being returned is the one that matters.
        let _ = fs::remove_file(tmp);
    }
    result
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8], sync: bool) -> Result<(), StepError> {
    let (mut file, tmp) = create_temp(path)?;
    if let Err(e) = file.write_all(bytes) {
        let _ = fs::remove_file(&tmp);
        return Err(("write", e));
    }
    commit(file, &tmp, path, sync)
}
