//! virtio-net on the event loop: the rx and tx queue notifications, and the tap.
//!
//! The tap is watched edge-triggered: each readable edge (every frame the kernel queues
//! raises one) makes the device read until the tap is empty or the guest's rx buffers run
//! out. In the second case frames stay in the tap, unread, and the driver's next rx queue
//! notification (enabled when the buffers ran out) resumes reading; a level-triggered
//! watch would instead wake the loop over and over while the guest has no buffers.

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use super::device::Net;
use super::{NUM_QUEUES, RX_QUEUE, TX_QUEUE};
use crate::devices::virtio::VirtioDevice;

/// Event data of the tap (queues use their index).
const TAP: u32 = NUM_QUEUES as u32;

impl MutEventSubscriber for Net {
    fn init(&mut self, ops: &mut EventOps) {
        for (i, evt) in self.queue_events().iter().enumerate() {
            if let Err(e) = ops.add(Events::with_data(evt, i as u32, EventSet::IN)) {
                tracing::error!("virtio-net {}: cannot watch queue {i}: {e:?}", self.id());
            }
        }
        let tap = Events::with_data(self.tap(), TAP, EventSet::IN | EventSet::EDGE_TRIGGERED);
        if let Err(e) = ops.add(tap) {
            tracing::error!("virtio-net {}: cannot watch its tap: {e:?}", self.id());
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        match events.data() {
            TAP => self.process_rx(),
            q => {
                if let Some(evt) = self.queue_events().get(q as usize) {
                    // The count is irrelevant: the queue is drained whatever the kicks.
                    let _ = evt.read();
                }
                match q as usize {
                    RX_QUEUE => self.process_rx(),
                    TX_QUEUE => self.process_tx(),
                    _ => {}
                }
            }
        }
    }
}
