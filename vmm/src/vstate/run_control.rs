//! Starting, pausing and stopping all vCPU threads of a VM together.
//!
//! A vCPU thread checks the requested state before every KVM_RUN. To get a thread out of
//! KVM_RUN (including a guest halted in the in-kernel LAPIC) the controller sends it a
//! real-time signal, which makes KVM_RUN return EINTR. A signal that lands just before the
//! thread enters KVM_RUN would be missed, so `pause` keeps re-sending it until every thread
//! has reported that it is parked.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

/// How long `pause` waits for all vCPUs to park before reporting failure.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(2);
const KICK_INTERVAL: Duration = Duration::from_millis(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Requested {
    Run,
    Pause,
    Stop,
}

struct State {
    requested: Requested,
    parked: usize,
    /// Set by a wake from a guest-initiated sleep: the boot vCPU restarts in real mode here.
    wake_vector: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunControlError {
    #[error("cannot install the vCPU kick signal handler: {0}")]
    Signal(#[source] vmm_sys_util::errno::Error),
    #[error("{parked} of {total} vCPUs paused within {PAUSE_TIMEOUT:?}")]
    PauseTimeout { parked: usize, total: usize },
}

/// What a vCPU thread should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Run,
    Exit,
}

pub struct RunControl {
    state: Mutex<State>,
    changed: Condvar,
}

/// The kick signal only needs to interrupt the ioctl; the handler has nothing to do.
extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

pub fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

/// Installs the (process-wide) kick handler; idempotent.
pub fn install_kick_handler() -> Result<(), RunControlError> {
    register_signal_handler(kick_signal(), on_kick).map_err(RunControlError::Signal)
}

impl Default for RunControl {
    fn default() -> Self {
        RunControl {
            state: Mutex::new(State {
                requested: Requested::Run,
                parked: 0,
                wake_vector: None,
            }),
            changed: Condvar::new(),
        }
    }
}

impl RunControl {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called by a vCPU thread before entering the guest: blocks while paused.
    pub fn gate(&self) -> Next {
        let mut s = self.lock();
        loop {
            match s.requested {
                Requested::Run => return Next::Run,
                Requested::Stop => return Next::Exit,
                Requested::Pause => {
                    s.parked += 1;
                    self.changed.notify_all();
                    while s.requested == Requested::Pause {
                        s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
                    }
                    s.parked -= 1;
                }
            }
        }
    }

    /// Called by a vCPU thread that must not run again (the guest stopped): waits for stop.
    pub fn wait_for_stop(&self) {
        let mut s = self.lock();
        while s.requested != Requested::Stop {
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub fn pause<T>(&self, threads: &[JoinHandle<T>]) -> Result<(), RunControlError> {
        self.lock().requested = Requested::Pause;
        self.changed.notify_all();
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        loop {
            let live: Vec<_> = threads.iter().filter(|t| !t.is_finished()).collect();
            let parked = self.lock().parked;
            if parked >= live.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(RunControlError::PauseTimeout {
                    parked,
                    total: live.len(),
                });
            }
            kick(&live);
            let s = self.lock();
            let _ = self.changed.wait_timeout(s, KICK_INTERVAL);
        }
    }

    pub fn resume(&self) {
        self.lock().requested = Requested::Run;
        self.changed.notify_all();
    }

    /// Asks every vCPU to park at its next gate, without waiting: used from a vCPU thread (a
    /// guest's sleep request) so that thread stops before its next guest instruction. The
    /// VM's owner then calls [`RunControl::pause`] to kick and wait for the others.
    pub fn request_pause(&self) {
        let mut s = self.lock();
        if s.requested == Requested::Run {
            s.requested = Requested::Pause;
            self.changed.notify_all();
        }
    }

    /// Resumes after a guest-initiated sleep: the boot vCPU first restarts at `vector`.
    pub fn resume_at(&self, vector: u64) {
        let mut s = self.lock();
        s.wake_vector = Some(vector);
        s.requested = Requested::Run;
        self.changed.notify_all();
    }

    /// Taken by the boot vCPU after its gate opens.
    pub fn take_wake_vector(&self) -> Option<u64> {
        self.lock().wake_vector.take()
    }

    /// Asks every thread to exit and joins them, kicking until they have.
    pub fn stop<T>(&self, threads: Vec<JoinHandle<T>>) {
        self.lock().requested = Requested::Stop;
        self.changed.notify_all();
        for t in threads {
            while !t.is_finished() {
                kick(std::slice::from_ref(&&t));
                std::thread::sleep(KICK_INTERVAL);
            }
            let _ = t.join();
        }
    }
}

fn kick<T>(threads: &[&JoinHandle<T>]) {
    for t in threads {
        // ESRCH only means the thread is already gone, which is what we want anyway.
        let _ = t.kill(kick_signal());
    }
}
