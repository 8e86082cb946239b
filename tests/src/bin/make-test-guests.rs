//! Writes the harness's test guests into a directory (used by scripts/demo):
//! hello.bin and halt.bin (real mode); checksum.bin, ticker.bin, ged.bin and verify.bin (long
//! mode).

use revenant_tests::guests;

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: make-test-guests DIR");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    let images: [(&str, Vec<u8>); 6] = [
        (
            "hello.bin",
            guests::real_mode_hello("Hello from a Revenant real-mode guest\n"),
        ),
        ("halt.bin", guests::real_mode_halt()),
        ("checksum.bin", guests::long_mode_checksum(4096)),
        ("ticker.bin", guests::long_mode_ticker(26)),
        ("ged.bin", guests::long_mode_ged_poller()),
        ("verify.bin", guests::long_mode_fill_and_verify(16384)),
    ];
    for (name, code) in images {
        if let Err(e) = std::fs::write(dir.join(name), code) {
            eprintln!(
                "make-test-guests: cannot write {}: {e}",
                dir.join(name).display()
            );
            std::process::exit(1);
        }
    }
    println!(
        "expected checksum for checksum.bin: {:#010x}",
        guests::expected_checksum(4096)
    );
}
