//! virtio-rng on the event loop: a queue notification makes the device answer its requests.

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use super::device::Rng;
use crate::devices::virtio::VirtioDevice;

impl MutEventSubscriber for Rng {
    fn init(&mut self, ops: &mut EventOps) {
        for evt in self.queue_events() {
            if let Err(e) = ops.add(Events::new(evt, EventSet::IN)) {
                tracing::error!("virtio-rng: cannot watch its queue: {e:?}");
            }
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        if let Some(evt) = self.queue_events().first() {
            let _ = evt.read();
        }
        self.process_queue();
    }
}
