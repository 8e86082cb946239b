//! Replicated client over three real memd processes, one killed with SIGKILL
//! in the middle of a write pass: every page must read back exactly.

mod common;

use std::time::Duration;

use common::{client_config, page_bytes, scratch, token_file, Memd};
use revenant_remote_mem::client::{MemClient, PageRead, PageWrite, SlabId};

const PAGE: usize = 4096;
/// Pages per write batch (one pipelined batch per host).
const BATCH: usize = 64;

/// Writes `total` bytes twice (second pass overwrites with new contents and
/// has a server killed half-way), lets re-replication finish, checks every
/// page, then kills a second server and checks every page again: the only
/// server left must hold every slab, including the copies re-replication made.
fn write_kill_verify(name: &str, total: u64, slab: &str, slab_bytes: u64) {
    let dir = scratch(name);
    let tok = token_file(&dir);
    let cap = format!("{}M", 2 * total / (1 << 20) + 64);
    let mut servers: Vec<Memd> = (0..3).map(|_| Memd::start(&tok, &cap, slab, &[])).collect();
    let client =
        MemClient::connect(&client_config(&servers.iter().collect::<Vec<_>>(), None)).unwrap();
    assert_eq!(client.replication(), 2, "r defaults to 2 with >= 2 hosts");

    let pages = total / PAGE as u64;
    let pages_per_slab = slab_bytes / PAGE as u64;
    let nslabs = pages.div_ceil(pages_per_slab) as usize;
    let slabs: Vec<SlabId> = (0..nslabs).map(|_| client.alloc_slab().unwrap()).collect();
    for s in &slabs {
        assert_eq!(client.replica_hosts(*s).unwrap().len(), 2);
    }
    let locate = |p: u64| {
        (
            slabs[(p / pages_per_slab) as usize],
            (p % pages_per_slab) * PAGE as u64,
        )
    };

    let mut buf = vec![0u8; BATCH * PAGE];
    for (pass, seed) in [(0, 0xA11CE), (1, 0xB0B)] {
        let mut p = 0u64;
        let mut batch_no = 0;
        while p < pages {
            if pass == 1 && p >= pages / 2 && servers[1].running() {
                servers[1].kill9();
            }
            let n = (pages - p).min(BATCH as u64) as usize;
            for i in 0..n {
                page_bytes(seed, p + i as u64, &mut buf[i * PAGE..(i + 1) * PAGE]);
            }
            if batch_no % 8 == 7 {
                // Exercise the single-page path too.
                for i in 0..n {
                    let (s, off) = locate(p + i as u64);
                    client
                        .write(s, off, &buf[i * PAGE..(i + 1) * PAGE])
                        .unwrap();
                }
            } else {
                let ops: Vec<PageWrite<'_>> = (0..n)
                    .map(|i| {
                        let (slab, offset) = locate(p + i as u64);
                        PageWrite {
                            slab,
                            offset,
                            data: &buf[i * PAGE..(i + 1) * PAGE],
                        }
                    })
                    .collect();
                client.write_batch(&ops).unwrap();
            }
            p += n as u64;
            batch_no += 1;
        }
    }
    assert!(
        !client.host_alive(1),
        "the client noticed the killed server"
    );
    assert!(
        client.wait_replicated(Duration::from_secs(120)),
        "re-replication did not finish"
    );
    for s in &slabs {
        let hosts = client.replica_hosts(*s).unwrap();
        assert_eq!(hosts.len(), 2, "slab {s:?} has copies on {hosts:?}");
        assert!(!hosts.contains(&1), "slab {s:?} still uses the dead host");
    }

    let verify = |label: &str| {
        let mut wrong = 0u64;
        let mut want = vec![0u8; PAGE];
        let mut got = vec![0u8; BATCH * PAGE];
        let mut p = 0u64;
        while p < pages {
            let n = (pages - p).min(BATCH as u64) as usize;
            if (p / BATCH as u64) % 2 == 0 {
                for (i, chunk) in got.chunks_mut(PAGE).take(n).enumerate() {
                    let (s, off) = locate(p + i as u64);
                    client.read_page(s, off, chunk).unwrap();
                }
            } else {
                let mut ops: Vec<PageRead<'_>> = got
                    .chunks_mut(PAGE)
                    .take(n)
                    .enumerate()
                    .map(|(i, b)| {
                        let (slab, offset) = locate(p + i as u64);
                        PageRead {
                            slab,
                            offset,
                            buf: b,
                        }
                    })
                    .collect();
                client.read_batch(&mut ops).unwrap();
            }
            for i in 0..n {
                page_bytes(0xB0B, p + i as u64, &mut want);
                if got[i * PAGE..(i + 1) * PAGE] != want[..] {
                    wrong += 1;
                }
            }
            p += n as u64;
        }
        assert_eq!(wrong, 0, "{label}: {wrong} of {pages} pages lost or wrong");
    };
    verify("after first kill");
    servers[2].kill9();
    verify("only one server left");
    assert!(servers[0].running());
}

/// The full size: 1 GiB (262,144 pages) with r = 2 over 3 servers.
/// About 40 s in a debug build on the 2-core dev machine.
#[test]
fn replicated_1gib_survives_kill_9_of_one_server() {
    write_kill_verify("repl1g", 1 << 30, "4M", 4 << 20);
}

/// Small slabs (many more slabs than hosts) and a smaller size: exercises
/// placement and re-replication of many slabs quickly.
#[test]
fn replicated_small_slabs_survive_kill_9_of_one_server() {
    write_kill_verify("repl64", 64 << 20, "256K", 256 << 10);
}

/// One host: r = 1 plus a local backup file. After the only memd is killed,
/// every page still reads back (from the backup).
#[test]
fn single_host_with_backup_file_survives_its_loss() {
    let dir = scratch("backup");
    let tok = token_file(&dir);
    let mut m = Memd::start(&tok, "64M", "1M", &[]);
    let mut cfg = client_config(&[&m], None);
    cfg.backup_file = Some(dir.join("backup.img"));
    let client = MemClient::connect(&cfg).unwrap();
    assert_eq!(client.replication(), 1, "r defaults to 1 with one host");
    let slabs: Vec<SlabId> = (0..4).map(|_| client.alloc_slab().unwrap()).collect();
    let mut page = vec![0u8; PAGE];
    for (i, s) in slabs.iter().enumerate() {
        for p in 0..64u64 {
            page_bytes(3, i as u64 * 1000 + p, &mut page);
            client.write(*s, p * PAGE as u64, &page).unwrap();
        }
    }
    m.kill9();
    let mut got = vec![0u8; PAGE];
    for (i, s) in slabs.iter().enumerate() {
        for p in 0..64u64 {
            page_bytes(3, i as u64 * 1000 + p, &mut page);
            client.read_page(*s, p * PAGE as u64, &mut got).unwrap();
            assert!(got == page, "slab {i} page {p} wrong after losing the host");
        }
        // Never-written pages read as zeros from the sparse backup.
        client.read_page(*s, 100 * PAGE as u64, &mut got).unwrap();
        assert!(got.iter().all(|&b| b == 0));
    }
    // Writes keep working against the backup alone.
    client.write(slabs[0], 0, &[0xEE; PAGE]).unwrap();
    client.read_page(slabs[0], 0, &mut got).unwrap();
    assert_eq!(got, vec![0xEE; PAGE]);
}

/// Several threads share one client (as the RAM-ext fault handler and the
/// evictor will), mixing single and batch I/O on shared slabs while a server
/// is killed: no deadlock, no wrong page.
#[test]
fn concurrent_threads_share_a_client_through_a_failure() {
    let dir = scratch("threads");
    let tok = token_file(&dir);
    let mut servers: Vec<Memd> = (0..3)
        .map(|_| Memd::start(&tok, "128M", "1M", &[]))
        .collect();
    let client =
        MemClient::connect(&client_config(&servers.iter().collect::<Vec<_>>(), None)).unwrap();
    let slabs: Vec<SlabId> = (0..8).map(|_| client.alloc_slab().unwrap()).collect();
    const THREADS: u64 = 4;
    const PAGES_PER_THREAD: u64 = 512;
    // Thread t owns pages t, t+THREADS, ... spread over all slabs.
    let locate = |p: u64| {
        (
            slabs[(p % slabs.len() as u64) as usize],
            (p / slabs.len() as u64) * PAGE as u64,
        )
    };
    let run = |t: u64, seed: u64| {
        let mut page = vec![0u8; PAGE];
        let mut got = vec![0u8; PAGE];
        for k in 0..PAGES_PER_THREAD {
            let p = k * THREADS + t;
            let (s, off) = locate(p);
            page_bytes(seed, p, &mut page);
            if k % 2 == 0 {
                client.write(s, off, &page).unwrap();
            } else {
                client
                    .write_batch(&[PageWrite {
                        slab: s,
                        offset: off,
                        data: &page,
                    }])
                    .unwrap();
            }
            client.read_page(s, off, &mut got).unwrap();
            assert!(got == page, "thread {t} page {p} read back wrong");
        }
    };
    std::thread::scope(|sc| {
        for t in 0..THREADS {
            sc.spawn(move || run(t, 1));
        }
    });
    std::thread::scope(|sc| {
        for t in 0..THREADS {
            sc.spawn(move || run(t, 2));
        }
        std::thread::sleep(Duration::from_millis(50));
        servers[0].kill9();
    });
    assert!(
        !client.host_alive(0),
        "the kill happened while the threads were running"
    );
    assert!(client.wait_replicated(Duration::from_secs(60)));
    let mut want = vec![0u8; PAGE];
    let mut got = vec![0u8; PAGE];
    for p in 0..THREADS * PAGES_PER_THREAD {
        let (s, off) = locate(p);
        page_bytes(2, p, &mut want);
        client.read_page(s, off, &mut got).unwrap();
        assert!(got == want, "page {p} wrong at the end");
    }
}
