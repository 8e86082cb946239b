//! Link flags for the `revenant` binary.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link/hot-functions.txt");
    println!("cargo:rerun-if-changed=link/cc-hot-first");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-linux-gnu") {
        // DT_RELR: the binary's ~7,000 relative relocations packed into a few KiB instead of
        // a 166 KiB table that the dynamic loader reads, and keeps resident, at every start
        // (glibc >= 2.36; lld, or GNU ld >= 2.38).
        println!("cargo:rustc-link-arg-bin=revenant=-Wl,-z,pack-relative-relocs");
    }
}
