//! `scripts/hot-functions`: which functions of a `revenant` binary an idle VMM runs, from
//! process start through `vm.create`, `vm.boot` and a halted guest (the path
//! `scripts/bench vmm-start` measures), with their demangled names without hashes;
//! `vmm/link/cc-hot-first` places them first in the text whenever it links `revenant`, so an
//! idle VMM touches fewer 64 KiB fault-around windows of its binary.
//!
//! Usage: `hot-functions SCENARIO PROBE_BINARY`, SCENARIO one of `idle` (the above), `api`
//! (the same VM then `vm.info`, `vm.pause`, `vm.resume`, `vm.counters`, as a shim polls it),
//! `curl` (`api` sent by curl instead of Rust's hyper client) or `cli` (`--test-guest` boot
//! from flags, as `scripts/bench vmm-start` times it). Prints `ADDRESS<TAB>NAME` lines (address
//! as 16 hex digits): `scripts/hot-functions` merges the scenarios in address order.
//!
//! The probe must be built with every function on its own page
//! (`-C llvm-args=-align-all-functions=12`), copied to a file whose page cache is empty, on a
//! device with readahead off: then a page of its text is mapped only if the VMM executed code
//! on it, so the mapped pages name exactly the functions that ran.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use revenant_tests::bench::{idle_vmm, BenchVmm};

const PAGE: u64 = 4096;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [scenario, probe] = args.as_slice() else {
        eprintln!("usage: hot-functions idle|api|curl|cli PROBE_BINARY");
        std::process::exit(2);
    };
    let probe = PathBuf::from(probe).canonicalize().expect("probe binary");
    let dir = tempfile::tempdir().expect("tempdir");
    let vmm = run_scenario(scenario, &probe, dir.path());
    let (base, executed) = executed_pages(vmm.pid(), &probe);
    drop(vmm);
    eprintln!("{scenario}: {} text pages executed", executed.len());

    let mut out = std::io::stdout().lock();
    let (mut count, mut bytes) = (0, 0);
    for (addr, size, name) in functions(&probe) {
        let (first, last) = ((base + addr) / PAGE, (base + addr + size - 1) / PAGE);
        if (first..=last).any(|p| executed.contains(&p)) {
            (count, bytes) = (count + 1, bytes + size);
            writeln!(out, "{addr:016x}\t{name}").expect("stdout");
        }
    }
    eprintln!("{scenario}: {count} functions ({} KiB) ran", bytes / 1024);
}

/// The probe VMM of a scenario, killed when dropped.
enum Running {
    Api(BenchVmm),
    Flags(Child),
}

impl Running {
    fn pid(&self) -> u32 {
        match self {
            Running::Api(vmm) => vmm.child.id(),
            Running::Flags(child) => child.id(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Running::Flags(child) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the probe VMM and drives it through `scenario`; returns it still running.
fn run_scenario(scenario: &str, probe: &Path, dir: &Path) -> Running {
    match scenario {
        "idle" => Running::Api(idle_vmm(probe, dir)),
        "api" | "curl" => {
            let mut vmm = idle_vmm(probe, dir);
            let socket = dir.join("idle.sock");
            for (method, action) in [
                ("GET", "vm.info"),
                ("PUT", "vm.pause"),
                ("GET", "vm.info"),
                ("PUT", "vm.resume"),
                ("GET", "vm.counters"),
                ("GET", "vmm.ping"),
            ] {
                if scenario == "curl" {
                    curl(&socket, method, action);
                } else {
                    let r = vmm
                        .client
                        .request(method, action, None)
                        .expect("API request");
                    assert!(r.status < 300, "{action}: {}", r.status);
                }
            }
            Running::Api(vmm)
        }
        "cli" => {
            let halt = dir.join("halt.bin");
            std::fs::write(&halt, revenant_tests::guests::real_mode_halt()).expect("guest");
            let child = Command::new(probe)
                .arg("--test-guest")
                .arg(&halt)
                .args(["--memory", "256M"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn revenant");
            std::thread::sleep(Duration::from_millis(300));
            Running::Flags(child)
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn curl(socket: &Path, method: &str, action: &str) {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method])
        .arg("--unix-socket")
        .arg(socket)
        .arg(format!("http://localhost/api/v1/{action}"))
        .output()
        .expect("curl");
    let code = String::from_utf8_lossy(&out.stdout);
    assert!(code.starts_with('2'), "curl {action}: {code}");
}

/// The load base of `binary` in process `pid` and the page numbers (virtual address / 4096)
/// of its executable mappings that are present.
fn executed_pages(pid: u32, binary: &std::path::Path) -> (u64, HashSet<u64>) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let pagemap = File::open(format!("/proc/{pid}/pagemap")).expect("pagemap (needs root)");
    let path = binary.to_string_lossy();
    let (mut base, mut pages) = (None, HashSet::new());
    for line in maps.lines().filter(|l| l.ends_with(path.as_ref())) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (start, end) = f[0].split_once('-').expect("range");
        let (start, end) = (hex(start), hex(end));
        if hex(f[2]) == 0 {
            base.get_or_insert(start);
        }
        if !f[1].contains('x') {
            continue;
        }
        for page in start / PAGE..end / PAGE {
            let mut entry = [0u8; 8];
            pagemap
                .read_exact_at(&mut entry, page * 8)
                .expect("pagemap entry");
            if u64::from_le_bytes(entry) >> 63 == 1 {
                pages.insert(page);
            }
        }
    }
    (base.expect("the probe binary is mapped"), pages)
}

/// (link-time address, size, demangled name without its hash) of every function in `binary`.
fn functions(binary: &std::path::Path) -> Vec<(u64, u64, String)> {
    let nm = Command::new("nm")
        .args(["-S", "--defined-only"])
        .arg(binary)
        .output()
        .expect("nm");
    let mut symbols: Vec<(u64, u64, &str)> = Vec::new();
    let text = String::from_utf8_lossy(&nm.stdout).into_owned();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 4 && "tTwW".contains(f[2]) && hex(f[1]) > 0 {
            symbols.push((hex(f[0]), hex(f[1]), f[3]));
        }
    }
    symbols.sort();
    let names = demangle(symbols.iter().map(|s| s.2));
    symbols
        .iter()
        .zip(names)
        .map(|(&(a, s, _), n)| (a, s, n))
        .collect()
}

/// Demangled names (c++filt) without the `::h0123456789abcdef` hash of legacy Rust symbols:
/// the same as `vmm/link/cc-hot-first` matches them at link time.
fn demangle<'a>(mangled: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut filt = Command::new("c++filt")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("c++filt");
    let input: String = mangled.map(|m| format!("{m}\n")).collect();
    let mut stdin = filt.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = filt.wait_with_output().expect("c++filt output");
    writer.join().expect("writer").expect("write to c++filt");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| strip_hash(l).to_string())
        .collect()
}

fn strip_hash(name: &str) -> &str {
    match name.rsplit_once("::h") {
        Some((head, h)) if h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()) => head,
        _ => name,
    }
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s, 16).expect("hex number")
}
