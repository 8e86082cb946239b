//! The balloon on the event loop: a queue notification (the KVM ioeventfd on QueueNotify,
//! or the transport forwarding a trapped write) makes the device handle that queue; the
//! statistics timer, when there is one, asks the guest for new statistics.

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use super::device::Balloon;
use crate::devices::virtio::VirtioDevice;

/// Event data of the statistics timer (queues use their index).
const TIMER: u32 = u32::MAX;

impl MutEventSubscriber for Balloon {
    fn init(&mut self, ops: &mut EventOps) {
        for (i, evt) in self.queue_events().iter().enumerate() {
            if let Err(e) = ops.add(Events::with_data(evt, i as u32, EventSet::IN)) {
                tracing::error!("virtio-balloon: cannot watch queue {i}: {e:?}");
            }
        }
        if let Some(timer) = &self.stats_timer {
            if let Err(e) = ops.add(Events::with_data(timer, TIMER, EventSet::IN)) {
                tracing::error!("virtio-balloon: cannot watch the statistics timer: {e:?}");
            }
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        match events.data() {
            TIMER => {
                if let Some(timer) = &mut self.stats_timer {
                    let _ = timer.wait();
                }
                self.request_stats();
            }
            i => {
                let i = i as usize;
                if let Some(evt) = self.queue_events().get(i) {
                    let _ = evt.read();
                }
                self.process_queue(i);
            }
        }
    }
}
