//! Where the workspace's binaries are.
//!
//! `cargo test --workspace` builds every binary of a package that has integration tests
//! (vmm/tests, remote-mem/tests, acpi/tests), next to this test executable's `deps/` folder.

use std::path::PathBuf;

/// Path of workspace binary `name`, from `$REVENANT_BIN_DIR` or the running test's profile
/// directory. Panics with instructions when it was not built: a test that silently ran
/// something else would prove nothing.
pub fn binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os("REVENANT_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe().expect("current test executable");
            // target/<profile>/deps/<test> -> target/<profile>
            exe.parent()
                .and_then(|deps| deps.parent())
                .expect("test executable lives in target/<profile>/deps")
                .to_path_buf()
        }
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not found: run `cargo test --workspace` (or `cargo build --workspace --bins`) first",
        path.display()
    );
    path
}
