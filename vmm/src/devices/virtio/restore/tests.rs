//! Tier-1 tests of transport restore: a device driven to DRIVER_OK by the host-side driver,
//! its state saved (through the state file's encoding), a new device and transport restored
//! from it, and the queue carrying on where it was; crafted states refused, never a panic.

use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_blk::{VIRTIO_BLK_S_OK, VIRTIO_BLK_T_GET_ID};
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::{RestoreError, RunningQueues};
use crate::devices::virtio::blk::persist::VirtioBlkSnapshot;
use crate::devices::virtio::blk::testbed::{MemDisk, Testbed, DATA};
use crate::devices::virtio::blk::{Block, BlockOptions};
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::persist::MmioTransportState;
use crate::devices::virtio::testing::Desc;
use crate::devices::virtio::vsock::persist::VirtioVsockSnapshot;
use crate::devices::virtio::vsock::testbed::{Testbed as VsockBed, SCRATCH};
use crate::devices::virtio::vsock::{Vsock, EVENT_QUEUE};

const OK: u8 = VIRTIO_BLK_S_OK as u8;
const QUEUE: u16 = 16;

fn options() -> BlockOptions {
    BlockOptions {
        id: "disk0".into(),
        read_only: false,
        serial: Some("SERIAL-7".into()),
    }
}

fn block() -> Arc<Mutex<Block>> {
    Arc::new(Mutex::new(
        Block::new(options(), Box::new(MemDisk(vec![0; 1 << 20]))).unwrap(),
    ))
}

/// GET_ID into `DATA`: (status, used length), or None if nothing came back.
fn get_id(bed: &mut Testbed) -> Option<(u8, u32)> {
    bed.mem.write_slice(&[0u8; 20], GuestAddress(DATA)).unwrap();
    bed.request(VIRTIO_BLK_T_GET_ID, 0, Some(Desc::writable(DATA, 20)))
}

/// A started disk that answered `requests` requests, and its snapshot after a trip through
/// postcard (the state file's encoding).
fn started(requests: u16) -> (Testbed, VirtioBlkSnapshot) {
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let mut bed = Testbed::unstarted(
        Box::new(MemDisk(vec![0; 1 << 20])),
        options(),
        16 << 20,
        irq,
    )
    .unwrap();
    bed.start(QUEUE).unwrap();
    for _ in 0..requests {
        assert_eq!(get_id(&mut bed), Some((OK, 21)));
    }
    let snapshot = VirtioBlkSnapshot {
        transport: bed.transport.state(),
        device: bed.block.lock().unwrap().state(),
    };
    let bytes = postcard::to_allocvec(&snapshot).unwrap();
    (bed, postcard::from_bytes(&bytes).unwrap())
}

fn restore(
    bed: &Testbed,
    transport: &MmioTransportState,
    running: RunningQueues<'_>,
) -> (Arc<Mutex<Block>>, Result<MmioTransport, RestoreError>) {
    let device = block();
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let result = MmioTransport::restore(bed.mem.clone(), device.clone(), irq, transport, running);
    (device, result)
}

fn running(s: &VirtioBlkSnapshot) -> RunningQueues<'_> {
    RunningQueues {
        acked_features: s.device.acked_features,
        queues: s.device.queue.as_slice(),
    }
}

#[test]
fn a_restored_running_disk_continues_its_queue() {
    let (mut bed, saved) = started(3);
    let queue = saved.device.queue.expect("the device was running");
    assert_eq!((queue.next_avail, queue.next_used), (3, 3));
    assert!(queue.event_idx_enabled, "bring-up negotiates EVENT_IDX");

    let (device, transport) = restore(&bed, &saved.transport, running(&saved));
    let transport = transport.unwrap();
    assert!(device.lock().unwrap().is_active());
    assert_ne!(transport.device_status() & VIRTIO_CONFIG_S_DRIVER_OK, 0);
    assert_eq!(transport.state(), saved.transport);
    // The driver carries on with the same rings, as a resumed guest would.
    bed.transport = transport;
    bed.block = device;
    assert_eq!(get_id(&mut bed), Some((OK, 21)));
    let mut id = [0u8; 8];
    bed.mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id, b"SERIAL-7");
    let used: u16 = bed
        .mem
        .read_obj(GuestAddress(bed.queue.used_ring.0 + 2))
        .unwrap();
    assert_eq!(used, 4, "the used index continues from the snapshot");
    let queue = bed.block.lock().unwrap().state().queue.unwrap();
    assert_eq!((queue.next_avail, queue.next_used), (4, 4));
}

#[test]
fn a_transport_no_driver_started_is_restored_idle() {
    let (bed, _) = started(0);
    let fresh = block();
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let mut t = MmioTransport::new(bed.mem.clone(), fresh, irq).unwrap();
    crate::devices::virtio::testing::MmioDriver { dev: &mut t }
        .set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE);
    crate::devices::virtio::testing::MmioDriver { dev: &mut t }
        .set_status(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    let state = t.state();
    let (device, restored) = restore(&bed, &state, RunningQueues::default());
    let restored = restored.unwrap();
    assert_eq!(restored.state(), state);
    assert!(!device.lock().unwrap().is_active());
}

#[test]
fn crafted_states_are_refused_with_a_reason() {
    let (bed, saved) = started(3);
    let q = saved.device.queue.unwrap();
    type Craft = Box<dyn Fn(&mut MmioTransportState, &mut VirtioBlkSnapshot)>;
    let cases: Vec<(&str, Craft)> = vec![
        ("status", Box::new(|t, _| t.device_status = 0xff)),
        (
            "status",
            Box::new(|t, _| t.device_status = VIRTIO_CONFIG_S_DRIVER_OK),
        ),
        ("queues", Box::new(|t, _| t.queues.push(t.queues[0]))),
        ("features", Box::new(|t, _| t.acked_features |= 1 << 60)),
        ("maximum size", Box::new(|t, _| t.queues[0].max_size = 8)),
        ("queue 0", Box::new(|t, _| t.queues[0].size = 7)),
        ("no running queues", Box::new(|_, s| s.device.queue = None)),
        (
            "negotiated features",
            Box::new(|_, s| s.device.acked_features = 0),
        ),
        (
            "differs from the one the driver configured",
            Box::new(move |_, s| {
                s.device.queue = Some(crate::devices::virtio::persist::QueueSnapshot {
                    used_ring: q.used_ring + 0x1000,
                    ..q
                })
            }),
        ),
        (
            "EVENT_IDX",
            Box::new(move |_, s| {
                s.device.queue = Some(crate::devices::virtio::persist::QueueSnapshot {
                    event_idx_enabled: false,
                    ..q
                })
            }),
        ),
        (
            "not in guest memory",
            Box::new(move |t, s| {
                let far = 1 << 40;
                t.queues[0].desc_table = far;
                s.device.queue = Some(crate::devices::virtio::persist::QueueSnapshot {
                    desc_table: far,
                    ..q
                });
            }),
        ),
        (
            "used index",
            Box::new(move |_, s| {
                s.device.queue =
                    Some(crate::devices::virtio::persist::QueueSnapshot { next_used: 7, ..q })
            }),
        ),
        (
            "pending",
            Box::new(move |_, s| {
                s.device.queue = Some(crate::devices::virtio::persist::QueueSnapshot {
                    next_avail: 103,
                    ..q
                })
            }),
        ),
        (
            "never set DRIVER_OK",
            Box::new(|t, _| {
                t.device_status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
            }),
        ),
    ];
    for (want, craft) in cases {
        let mut t = saved.transport.clone();
        let mut s = saved.clone();
        craft(&mut t, &mut s);
        let (device, result) = restore(&bed, &t, running(&s));
        let err = result.err().unwrap_or_else(|| panic!("{want}: restored"));
        assert!(err.to_string().contains(want), "{want}: {err}");
        assert!(
            !device.lock().unwrap().is_active(),
            "{want}: device started"
        );
    }
}

#[test]
fn a_restored_vsock_tells_its_driver_every_connection_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let mut bed = VsockBed::start(&dir.path().join("v.sock"), 4).unwrap();
    // The driver keeps event buffers posted (Linux does from probe on).
    bed.mem
        .write_obj(0xffff_ffffu32, GuestAddress(SCRATCH))
        .unwrap();
    bed.evq
        .add_chain(&bed.mem, &[Desc::writable(SCRATCH, 8)])
        .unwrap();
    let saved = VirtioVsockSnapshot {
        transport: bed.transport.state(),
        device: bed.device().state(),
    };
    let bytes = postcard::to_allocvec(&saved).unwrap();
    let saved: VirtioVsockSnapshot = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(saved.device.queues.len(), 3);

    let clone = dir.path().join("clone.sock");
    let device = Arc::new(Mutex::new(Vsock::new(saved.device.cid, &clone).unwrap()));
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let running = RunningQueues {
        acked_features: saved.device.acked_features,
        queues: &saved.device.queues,
    };
    let transport = MmioTransport::restore(
        bed.mem.clone(),
        device.clone(),
        irq.try_clone().unwrap(),
        &saved.transport,
        running,
    )
    .unwrap();
    assert_eq!(transport.state().queues, saved.transport.queues);
    let mut device = device.lock().unwrap();
    assert!(device.is_active());
    assert!(device.send_transport_reset());
    assert_eq!(bed.evq.take_used(&bed.mem).unwrap(), vec![(0, 4)]);
    assert_eq!(bed.mem.read_obj::<u32>(GuestAddress(SCRATCH)).unwrap(), 0);
    assert_eq!(irq.read().unwrap(), 1, "the driver is interrupted");
    assert_eq!(device.state().queues[EVENT_QUEUE].next_used, 1);
}
