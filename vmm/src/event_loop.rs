//! The device event loop: one thread running an `event-manager` until told to stop. It can
//! be paused: while the VM is paused (and so while a snapshot is taken) no device touches
//! guest memory or its own state, so what is saved is consistent.
//!
//! Devices can join and leave a running loop (PCI hot-plug): the change is handed to the
//! loop thread, which makes it between two rounds, so no handler of a leaving device runs
//! after [`EventLoop::remove`] returns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use event_manager::{
    EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberId, SubscriberOps,
};
use vmm_sys_util::eventfd::EventFd;

pub type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// How long `pause` waits for a device handler to finish before giving up.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum EventLoopError {
    #[error("cannot create the event loop: {0}")]
    Create(String),
    #[error("cannot start the event loop thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the device event loop did not stop within {0:?} (a device handler is stuck)")]
    PauseTimeout(Duration),
    #[error(
        "the device event loop did not take the change within {0:?} (it is paused, stuck or gone)"
    )]
    ChangeTimeout(Duration),
    #[error("the device event loop refused the change: {0}")]
    Change(String),
}

/// A subscriber joining or leaving, with where the loop thread answers.
enum Change {
    Add(Subscriber, std::sync::mpsc::Sender<SubscriberId>),
    Remove(SubscriberId, std::sync::mpsc::Sender<Result<(), String>>),
}

/// Whether the loop should park, and whether it has.
#[derive(Default)]
struct GateState {
    pause: bool,
    parked: bool,
}

#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called by the loop between rounds: parks while a pause is asked for.
    fn park_if_asked(&self, stopped: &AtomicBool) {
        let mut s = self.lock();
        if !s.pause {
            return;
        }
        s.parked = true;
        self.changed.notify_all();
        while s.pause && !stopped.load(Ordering::SeqCst) {
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.parked = false;
    }
}

/// Wakes the loop (to stop, or to park) and tells it to return.
struct WakeHandler {
    evt: EventFd,
}

impl MutEventSubscriber for WakeHandler {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.evt, EventSet::IN)) {
            tracing::error!("event loop cannot watch its wake-up event: {e:?}");
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.evt.read();
    }
}

pub struct EventLoop {
    wake: EventFd,
    stopped: Arc<AtomicBool>,
    gate: Arc<Gate>,
    changes: Arc<Mutex<Vec<Change>>>,
    thread: Option<JoinHandle<()>>,
}

impl EventLoop {
    pub fn start(subscribers: Vec<Subscriber>) -> Result<Self, EventLoopError> {
        let mut manager = EventManager::<Subscriber>::new()
            .map_err(|e| EventLoopError::Create(format!("{e:?}")))?;
        let wake =
            EventFd::new(libc::EFD_NONBLOCK).map_err(|e| EventLoopError::Create(e.to_string()))?;
        let stopped = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(Gate::default());
        let handler = WakeHandler {
            evt: wake
                .try_clone()
                .map_err(|e| EventLoopError::Create(e.to_string()))?,
        };
        manager.add_subscriber(Arc::new(Mutex::new(handler)));
        for s in subscribers {
            manager.add_subscriber(s);
        }
        let changes: Arc<Mutex<Vec<Change>>> = Arc::default();
        let (loop_stopped, loop_gate, loop_changes) =
            (stopped.clone(), gate.clone(), changes.clone());
        let thread = std::thread::Builder::new()
            .name("event-loop".into())
            .spawn(move || {
                while !loop_stopped.load(Ordering::SeqCst) {
                    loop_gate.park_if_asked(&loop_stopped);
                    if loop_stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    apply_changes(&mut manager, &loop_changes);
                    if let Err(e) = manager.run() {
                        tracing::error!("event loop failed: {e:?}");
                        return;
                    }
                }
            })
            .map_err(EventLoopError::Spawn)?;
        Ok(EventLoop {
            wake,
            stopped,
            gate,
            changes,
            thread: Some(thread),
        })
    }

    /// Adds a device to the running loop (its `init` registers its events); returns its id
    /// for [`EventLoop::remove`]. Waits until the loop thread has made the change.
    pub fn add(&self, subscriber: Subscriber) -> Result<SubscriberId, EventLoopError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.submit(Change::Add(subscriber, tx));
        rx.recv_timeout(PAUSE_TIMEOUT)
            .map_err(|_| EventLoopError::ChangeTimeout(PAUSE_TIMEOUT))
    }

    /// Takes a device off the loop; once this returns none of its handlers runs again.
    pub fn remove(&self, id: SubscriberId) -> Result<(), EventLoopError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.submit(Change::Remove(id, tx));
        rx.recv_timeout(PAUSE_TIMEOUT)
            .map_err(|_| EventLoopError::ChangeTimeout(PAUSE_TIMEOUT))?
            .map_err(EventLoopError::Change)
    }

    fn submit(&self, change: Change) {
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(change);
        let _ = self.wake.write(1);
    }

    /// Stops device processing: returns once the loop is between rounds and parked, so no
    /// device handler runs until [`EventLoop::resume`]. Events arriving meanwhile wait.
    pub fn pause(&self) -> Result<(), EventLoopError> {
        let mut s = self.gate.lock();
        s.pause = true;
        let _ = self.wake.write(1);
        let (s, timeout) = self
            .gate
            .changed
            .wait_timeout_while(s, PAUSE_TIMEOUT, |s| !s.parked)
            .unwrap_or_else(|p| p.into_inner());
        if timeout.timed_out() && !s.parked {
            drop(s);
            self.resume();
            return Err(EventLoopError::PauseTimeout(PAUSE_TIMEOUT));
        }
        Ok(())
    }

    /// Lets the loop run again (nothing happens if it was not paused).
    pub fn resume(&self) {
        self.gate.lock().pause = false;
        self.gate.changed.notify_all();
    }

    /// Whether the loop is parked now.
    pub fn is_paused(&self) -> bool {
        self.gate.lock().parked
    }
}

/// Makes the changes asked for since the last round (on the loop thread, between rounds).
fn apply_changes(manager: &mut EventManager<Subscriber>, changes: &Mutex<Vec<Change>>) {
    let pending = std::mem::take(&mut *changes.lock().unwrap_or_else(|p| p.into_inner()));
    for change in pending {
        match change {
            Change::Add(s, reply) => {
                let _ = reply.send(manager.add_subscriber(s));
            }
            Change::Remove(id, reply) => {
                let _ = reply.send(
                    manager
                        .remove_subscriber(id)
                        .map(drop)
                        .map_err(|e| format!("{e:?}")),
                );
            }
        }
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = self.wake.write(1);
        self.gate.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    /// Counts the events it sees on its eventfd.
    struct Counter {
        evt: EventFd,
        seen: Arc<AtomicU64>,
    }

    impl MutEventSubscriber for Counter {
        fn init(&mut self, ops: &mut EventOps) {
            ops.add(Events::new(&self.evt, EventSet::IN)).unwrap();
        }

        fn process(&mut self, _events: Events, _ops: &mut EventOps) {
            let _ = self.evt.read();
            self.seen.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn wait_for(what: impl Fn() -> bool) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            if what() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn a_paused_loop_handles_nothing_until_resumed() {
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Counter {
            evt: evt.try_clone().unwrap(),
            seen: seen.clone(),
        };
        let lp = EventLoop::start(vec![Arc::new(Mutex::new(counter))]).unwrap();
        evt.write(1).unwrap();
        assert!(wait_for(|| seen.load(Ordering::SeqCst) == 1));
        lp.pause().unwrap();
        assert!(lp.is_paused());
        evt.write(1).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(seen.load(Ordering::SeqCst), 1, "handled while paused");
        // Pausing twice is fine.
        lp.pause().unwrap();
        lp.resume();
        assert!(wait_for(|| seen.load(Ordering::SeqCst) == 2));
        assert!(!lp.is_paused());
        // Dropping a paused loop does not hang.
        lp.pause().unwrap();
        drop(lp);
    }

    #[test]
    fn devices_join_and_leave_a_running_loop() {
        let lp = EventLoop::start(Vec::new()).unwrap();
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Counter {
            evt: evt.try_clone().unwrap(),
            seen: seen.clone(),
        };
        let id = lp.add(Arc::new(Mutex::new(counter))).unwrap();
        evt.write(1).unwrap();
        assert!(
            wait_for(|| seen.load(Ordering::SeqCst) == 1),
            "added device not run"
        );
        lp.remove(id).unwrap();
        evt.write(1).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "removed device still handled"
        );
        assert!(lp.remove(id).is_err(), "removing twice is an error");
    }
}
