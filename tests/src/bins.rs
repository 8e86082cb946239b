//! Where the workspace's binaries are.
//!
//! `cargo test --workspace` builds every binary of a package that has integration tests
//! (vmm/tests, remote-mem/tests, acpi/tests), next to this test executable's `deps/` folder.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The crates whose sources end up in each workspace binary (a binary is stale when one of
/// them changed after it was built; cargo leaves binaries alone whose crates didn't change).
fn source_dirs(binary: &str) -> &'static [&'static str] {
    match binary {
        "revenant-memd" => &["remote-mem"],
        "revenant-sim" => &["acpi"],
        _ => &["vmm", "acpi", "remote-mem", "template"],
    }
}

/// Path of workspace binary `name`, from `$REVENANT_BIN_DIR` or the running test's profile
/// directory. Panics with instructions when it was not built: a test that silently ran
/// something else would prove nothing.
pub fn binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os("REVENANT_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            // Tests run from target/<profile>/deps/, bench drivers from target/<profile>/.
            let exe = std::env::current_exe().expect("current executable");
            let dir = exe.parent().expect("executable has a directory");
            match dir.file_name() {
                Some(n) if n == "deps" => dir.parent().unwrap_or(dir).to_path_buf(),
                _ => dir.to_path_buf(),
            }
        }
    };
    let path = dir.join(name);
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap_or_else(|_| {
        panic!(
            "{} not found: run `cargo test --workspace` (or `cargo build --workspace --bins`) first",
            path.display()
        )
    });
    // `cargo test -p revenant-tests` alone does not rebuild other packages' binaries; a
    // test of a stale binary would check old code, so refuse it.
    if std::env::var_os("REVENANT_BIN_DIR").is_none() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        if let Some((newest, file)) = source_dirs(name)
            .iter()
            .filter_map(|d| newest_source(&root.join(d)))
            .max()
        {
            assert!(
                newest <= built,
                "{} is older than {}: run `cargo build --workspace --bins` (or `cargo test --workspace`)",
                path.display(),
                file.display()
            );
        }
    }
    path
}

fn newest_source(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        let candidate = if p.is_dir() {
            if p.file_name()
                .is_some_and(|n| n == "target" || n == "tests" || n == "fuzz")
            {
                continue;
            }
            newest_source(&p)
        } else if p.file_name().is_some_and(|n| n == "tests.rs") {
            // Unit-test modules (`#[cfg(test)]` by convention): no binary contains them, so
            // changing one leaves the binaries as they were.
            continue;
        } else if p.extension().is_some_and(|e| e == "rs")
            || p.file_name().is_some_and(|n| n == "Cargo.toml")
        {
            entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .map(|t| (t, p))
        } else {
            None
        };
        if let Some(c) = candidate {
            if newest.as_ref().is_none_or(|n| c.0 > n.0) {
                newest = Some(c);
            }
        }
    }
    newest
}
