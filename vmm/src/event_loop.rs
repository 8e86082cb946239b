//! The device event loop: one thread running an `event-manager` until told to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::eventfd::EventFd;

pub type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum EventLoopError {
    #[error("cannot create the event loop: {0}")]
    Create(String),
    #[error("cannot start the event loop thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Wakes the loop and tells it to return.
struct StopHandler {
    evt: EventFd,
    stopped: Arc<AtomicBool>,
}

impl MutEventSubscriber for StopHandler {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.evt, EventSet::IN)) {
            tracing::error!("event loop cannot watch its stop event: {e:?}");
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.evt.read();
        self.stopped.store(true, Ordering::SeqCst);
    }
}

pub struct EventLoop {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl EventLoop {
    pub fn start(subscribers: Vec<Subscriber>) -> Result<Self, EventLoopError> {
        let mut manager = EventManager::<Subscriber>::new()
            .map_err(|e| EventLoopError::Create(format!("{e:?}")))?;
        let stop =
            EventFd::new(libc::EFD_NONBLOCK).map_err(|e| EventLoopError::Create(e.to_string()))?;
        let stopped = Arc::new(AtomicBool::new(false));
        let handler = StopHandler {
            evt: stop
                .try_clone()
                .map_err(|e| EventLoopError::Create(e.to_string()))?,
            stopped: stopped.clone(),
        };
        manager.add_subscriber(Arc::new(Mutex::new(handler)));
        for s in subscribers {
            manager.add_subscriber(s);
        }
        let thread = std::thread::Builder::new()
            .name("event-loop".into())
            .spawn(move || {
                while !stopped.load(Ordering::SeqCst) {
                    if let Err(e) = manager.run() {
                        tracing::error!("event loop failed: {e:?}");
                        return;
                    }
                }
            })
            .map_err(EventLoopError::Spawn)?;
        Ok(EventLoop {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
