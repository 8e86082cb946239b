//! virtio-blk on the event loop: a queue notification (the KVM ioeventfd on QueueNotify, or
//! the transport forwarding a trapped write) makes the device drain its queue.

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use super::device::Block;
use crate::devices::virtio::VirtioDevice;

impl MutEventSubscriber for Block {
    fn init(&mut self, ops: &mut EventOps) {
        for evt in self.queue_events() {
            if let Err(e) = ops.add(Events::new(evt, EventSet::IN)) {
                tracing::error!("virtio-blk {}: cannot watch its queue: {e:?}", self.id());
            }
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        // One queue, so any event is its notification. The count is irrelevant: the queue
        // is drained whatever number of kicks arrived.
        if let Some(evt) = self.queue_events().first() {
            let _ = evt.read();
        }
        self.process_queue();
    }
}
