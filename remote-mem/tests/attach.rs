//! Slabs uploaded by one client, read by others that attach with its key and
//! slab table (a template's memory read by its clones), over real memd
//! processes: exact data, failover after kill -9, nothing freed on drop, and
//! a wrong key gets an error, never the data.

mod common;

use std::time::Duration;

use common::{client_config, page_bytes, scratch, token_file, Memd};
use revenant_remote_mem::client::{random_key, ClientError, SlabId};
use revenant_remote_mem::{ClientConfig, MemClient, SlabTable};

const SLAB: &str = "1M";
const SLAB_BYTES: u64 = 1 << 20;
const NSLABS: usize = 3;
/// Bytes per write/read call (several per slab).
const CHUNK: usize = 256 << 10;
const SEED: u64 = 0x7E3_71A7E;

fn servers(name: &str, n: usize) -> Vec<Memd> {
    let dir = scratch(name);
    let tok = token_file(&dir);
    (0..n)
        .map(|_| Memd::start(&tok, "64M", SLAB, &[]))
        .collect()
}

fn config(servers: &[Memd], replicas: Option<usize>, key: Option<[u8; 16]>) -> ClientConfig {
    ClientConfig {
        key,
        ..client_config(&servers.iter().collect::<Vec<_>>(), replicas)
    }
}

/// Fills every slab with the deterministic pattern.
fn write_pattern(c: &MemClient, slabs: &[SlabId]) {
    let mut buf = vec![0u8; CHUNK];
    for s in slabs {
        for (i, off) in (0..SLAB_BYTES).step_by(CHUNK).enumerate() {
            page_bytes(SEED, (s.0 * 64 + i) as u64, &mut buf);
            c.write(*s, off, &buf).unwrap();
        }
    }
}

/// Reads every slab back and compares with the pattern.
fn check_pattern(c: &MemClient, slabs: &[SlabId]) {
    let (mut got, mut want) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    for s in slabs {
        for (i, off) in (0..SLAB_BYTES).step_by(CHUNK).enumerate() {
            page_bytes(SEED, (s.0 * 64 + i) as u64, &mut want);
            c.read(*s, off, &mut got).unwrap();
            assert!(got == want, "slab {} offset {off} differs", s.0);
        }
    }
}

/// Slabs held by a memd now, from its STAT reply.
fn slabs_on(m: &Memd) -> u64 {
    m.conn().stat().unwrap()["slabs"].as_u64().unwrap()
}

/// (slabs held now, slabs ever allocated) of a memd.
fn slabs_and_allocs(m: &Memd) -> (u64, u64) {
    let s = m.conn().stat().unwrap();
    (s["slabs"].as_u64().unwrap(), s["allocs"].as_u64().unwrap())
}

/// Client A (r = 2 over the servers) uploads the pattern into 3 slabs and
/// returns its key and its table after a JSON round trip; A is dropped.
fn upload(servers: &[Memd]) -> ([u8; 16], SlabTable, Vec<SlabId>) {
    let a = MemClient::connect(&config(servers, Some(2), None)).unwrap();
    let slabs: Vec<SlabId> = (0..NSLABS).map(|_| a.alloc_slab().unwrap()).collect();
    write_pattern(&a, &slabs);
    let table = a.slab_table();
    assert_eq!(table.slab_size, SLAB_BYTES);
    assert_eq!(table.slabs.len(), NSLABS);
    for reps in &table.slabs {
        assert_eq!(reps.len(), 2, "{table:?}");
        assert!(reps
            .iter()
            .all(|r| r.endpoint.starts_with("tcp://127.0.0.1:")));
    }
    let json = serde_json::to_string(&table).unwrap();
    let back: SlabTable = serde_json::from_str(&json).unwrap();
    assert_eq!(back, table);
    (a.key(), back, slabs)
}

#[test]
fn attached_client_reads_the_owners_slabs_and_fails_over_after_kill9() {
    let mut ms = servers("attach-failover", 2);
    let (key, table, slabs) = upload(&ms);
    // Dropping the owner freed nothing.
    assert_eq!(slabs_on(&ms[0]) + slabs_on(&ms[1]), 2 * NSLABS as u64);

    let b = MemClient::attach(&config(&ms, None, Some(key)), &table).unwrap();
    assert_eq!(b.key(), key);
    assert_eq!(b.slab_table(), table);
    for s in &slabs {
        assert_eq!(b.replica_hosts(*s).unwrap().len(), 2);
    }
    check_pattern(&b, &slabs);

    // The memd that slab 0 reads from first: its reads must fail over.
    let victim = b.replica_hosts(slabs[0]).unwrap()[0];
    ms[victim].kill9();
    check_pattern(&b, &slabs);
    assert!(!b.host_alive(victim), "the reads must have found it dead");
    for s in &slabs {
        assert_eq!(b.replica_hosts(*s).unwrap(), vec![1 - victim]);
    }
    // The shared slabs are not the attached client's to repair.
    assert_eq!(b.under_replicated(), 0);
    assert_eq!(slabs_on(&ms[1 - victim]), NSLABS as u64);
}

#[test]
fn attach_with_another_key_gets_an_error_not_the_data() {
    let ms = servers("attach-wrong-key", 2);
    let (key, table, _) = upload(&ms);
    let other = random_key().unwrap();
    assert_ne!(other, key);
    match MemClient::attach(&config(&ms, None, Some(other)), &table) {
        Err(ClientError::AttachSlab { slab: 0, reason }) => {
            assert!(reason.contains("key"), "{reason}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("attached with a key that owns none of the slabs"),
    }
    // The server side of it: another key's READ of those slabs is refused.
    let rep = &table.slabs[0][0];
    let m = ms
        .iter()
        .find(|m| m.endpoint.to_string() == rep.endpoint)
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(matches!(
        m.conn().read(rep.slab, 0, &mut buf),
        Err(ClientError::Status(
            revenant_remote_mem::protocol::Status::NoSuchSlab
        ))
    ));
    // Nothing was harmed: the right key still reads the data.
    let b = MemClient::attach(&config(&ms, None, Some(key)), &table).unwrap();
    check_pattern(&b, &(0..NSLABS).map(SlabId).collect::<Vec<_>>());
}

#[test]
fn attached_clients_share_writes_and_dropping_one_frees_nothing() {
    let ms = servers("attach-share", 2);
    let (key, table, slabs) = upload(&ms);
    let page = [0x5Au8; 4096];
    {
        let b = MemClient::attach(&config(&ms, None, Some(key)), &table).unwrap();
        b.write(slabs[2], 8192, &page).unwrap();
    }
    assert_eq!(slabs_on(&ms[0]) + slabs_on(&ms[1]), 2 * NSLABS as u64);
    let d = MemClient::attach(&config(&ms, None, Some(key)), &table).unwrap();
    let mut got = [0u8; 4096];
    d.read(slabs[2], 8192, &mut got).unwrap();
    assert_eq!(got, page);
    d.read(slabs[2], 0, &mut got).unwrap();
    let mut want = vec![0u8; CHUNK];
    page_bytes(SEED, (slabs[2].0 * 64) as u64, &mut want);
    assert_eq!(&got[..], &want[..4096]);
}

#[test]
fn attach_leaves_out_unconfigured_hosts_and_names_a_slab_without_replicas() {
    let ms = servers("attach-partial", 2);
    let (key, table, slabs) = upload(&ms);

    // Only memd 1 configured: its copies are enough.
    let only1 = config(&ms[1..], None, Some(key));
    let b = MemClient::attach(&only1, &table).unwrap();
    for s in &slabs {
        assert_eq!(b.replica_hosts(*s).unwrap(), vec![0]);
    }
    check_pattern(&b, &slabs);
    drop(b);

    // Slab 1's copies moved to a host nobody configured: an error naming it.
    let mut moved = table.clone();
    for r in &mut moved.slabs[1] {
        r.endpoint = "tcp://127.0.0.1:1".into();
    }
    match MemClient::attach(&config(&ms, None, Some(key)), &moved) {
        Err(ClientError::AttachSlab { slab: 1, .. }) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("attached a slab with no reachable replica"),
    }

    // Without a key there is nothing to attach as.
    assert!(matches!(
        MemClient::attach(&config(&ms, None, None), &table),
        Err(ClientError::AttachWithoutKey)
    ));
}

#[test]
fn attached_client_does_not_rereplicate_shared_slabs() {
    let mut ms = servers("attach-norepair", 3);
    let (key, table, slabs) = upload(&ms);
    let b = MemClient::attach(&config(&ms, None, Some(key)), &table).unwrap();
    // Kill the memd slab 0 reads from first, then make b notice.
    let victim = b.replica_hosts(slabs[0]).unwrap()[0];
    let survivors: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let before: Vec<(u64, u64)> = survivors
        .iter()
        .map(|&i| slabs_and_allocs(&ms[i]))
        .collect();
    ms[victim].kill9();
    check_pattern(&b, &slabs);
    assert!(!b.host_alive(victim));
    // Give the worker several retry rounds (500 ms each) to misbehave.
    std::thread::sleep(Duration::from_millis(1500));
    let after: Vec<(u64, u64)> = survivors
        .iter()
        .map(|&i| slabs_and_allocs(&ms[i]))
        .collect();
    assert_eq!(after, before, "no new copies, and nothing freed");
    assert!(b.replica_hosts(slabs[0]).unwrap().len() == 1);
    check_pattern(&b, &slabs);

    // A slab b allocates itself is its own: repaired as usual.
    let own = b.alloc_slab().unwrap();
    assert_eq!(b.replica_hosts(own).unwrap().len(), 2);
    assert!(b.wait_replicated(Duration::from_secs(10)));
}
