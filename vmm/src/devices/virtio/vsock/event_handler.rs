//! virtio-vsock on the event loop: its three queue notification eventfds, plus the muxer's
//! descriptors (listener, handshaking clients, connected host sockets, the deadline timer).
//! After every event the device moves what packets it can and the muxer brings the loop's
//! watch list up to date.

use std::time::Instant;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use super::device::Vsock;
use crate::devices::virtio::VirtioDevice;

impl MutEventSubscriber for Vsock {
    fn init(&mut self, ops: &mut EventOps) {
        for evt in self.queue_events() {
            if let Err(e) = ops.add(Events::new(evt, EventSet::IN)) {
                tracing::error!("virtio-vsock: cannot watch its queues: {e:?}");
            }
        }
        self.muxer.init(ops);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let now = Instant::now();
        self.handle(events.fd(), events.event_set(), now);
        self.muxer.sync(ops, now);
    }
}
