//! Deciding whether a test can run on this machine.
//!
//! A test that cannot run prints `SKIP: <reason>` and returns; it never passes silently.
//! On a machine that has `/dev/kvm`, CI sets `REVENANT_REQUIRE_KVM=1`, and then a test
//! that needs nothing but KVM fails instead of skipping.

use std::path::Path;

/// Whether the tests may use KVM; prints the SKIP line (or panics under
/// `REVENANT_REQUIRE_KVM=1`) when they can't.
pub fn kvm_available(test: &str) -> bool {
    let reason = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => return true,
        Err(e) => format!("/dev/kvm cannot be opened ({e})"),
    };
    if std::env::var("REVENANT_REQUIRE_KVM").as_deref() == Ok("1") {
        panic!("{test}: {reason}, but REVENANT_REQUIRE_KVM=1 says this machine must run KVM tests");
    }
    announce(test, &reason);
    false
}

/// Skip with a reason that does not depend on KVM (a missing guest kernel, say).
pub fn skip(test: &str, reason: &str) {
    announce(test, reason);
}

/// Writes the SKIP line to the process' stderr directly: libtest captures `println!` and
/// `eprintln!` of passing tests, and a skip must never go unseen.
fn announce(test: &str, reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIP: {test}: {reason}");
}

/// True when this host's KVM is PVM (shadow paging, no VMX/SVM): see shared/PVM.md.
pub fn host_is_pvm() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
        || !std::fs::read_to_string("/proc/cpuinfo")
            .map(|c| c.contains(" vmx") || c.contains(" svm"))
            .unwrap_or(false)
}
