//! virtio-mem on the event loop: a queue notification (the KVM ioeventfd on QueueNotify, or
//! the transport forwarding a trapped write) makes the device answer its requests.

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use super::device::VirtioMem;
use crate::devices::virtio::VirtioDevice;

impl MutEventSubscriber for VirtioMem {
    fn init(&mut self, ops: &mut EventOps) {
        for evt in self.queue_events() {
            if let Err(e) = ops.add(Events::new(evt, EventSet::IN)) {
                tracing::error!("virtio-mem: cannot watch its queue: {e:?}");
            }
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        // One queue, so any event is its notification; the queue is drained whatever the
        // number of kicks.
        if let Some(evt) = self.queue_events().first() {
            let _ = evt.read();
        }
        self.process_queue();
    }
}
