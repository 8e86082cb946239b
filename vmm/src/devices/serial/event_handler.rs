//! Host input for the serial console, on the event loop.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use super::device::SerialDevice;
use super::output::SocketConsole;

/// The UART's receive FIFO holds 64 bytes; reading more at once would only drop input.
const READ_CHUNK: usize = 64;

pub enum InputSource {
    /// The VMM's stdin, used only when it is a terminal.
    Stdin,
    /// A Unix socket; one client at a time is the console (a new one replaces the old).
    Socket {
        listener: UnixListener,
        console: Arc<Mutex<SocketConsole>>,
        client: Option<UnixStream>,
    },
    /// The console's pseudo-terminal (its master side is read).
    Pty(crate::devices::serial::pty::Pty),
}

pub struct SerialInput {
    serial: Arc<Mutex<SerialDevice>>,
    source: InputSource,
}

impl SerialInput {
    pub fn new(serial: Arc<Mutex<SerialDevice>>, source: InputSource) -> Self {
        SerialInput { serial, source }
    }

    fn forward(&self, bytes: &[u8]) {
        let mut serial = self.serial.lock().unwrap_or_else(|p| p.into_inner());
        let taken = serial.enqueue_input(bytes);
        if taken < bytes.len() {
            tracing::warn!(
                "serial receive FIFO full: {} input bytes dropped",
                bytes.len() - taken
            );
        }
    }
}

fn read_chunk(reader: &mut impl Read) -> Option<Vec<u8>> {
    let mut buf = [0u8; READ_CHUNK];
    match reader.read(&mut buf) {
        Ok(0) => None,
        Ok(n) => Some(buf[..n].to_vec()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
            ) =>
        {
            Some(Vec::new())
        }
        Err(e) => {
            tracing::warn!("serial input read failed: {e}");
            None
        }
    }
}

impl MutEventSubscriber for SerialInput {
    fn init(&mut self, ops: &mut EventOps) {
        let result = match &self.source {
            InputSource::Stdin => ops.add(Events::new(&std::io::stdin(), EventSet::IN)),
            InputSource::Socket { listener, .. } => ops.add(Events::new(listener, EventSet::IN)),
            InputSource::Pty(pty) => ops.add(Events::new(&pty.master, EventSet::IN)),
        };
        if let Err(e) = result {
            tracing::warn!("serial input not available: {e:?}");
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        match &mut self.source {
            InputSource::Pty(pty) => match read_chunk(&mut pty.master) {
                Some(bytes) => self.forward(&bytes),
                // EIO: no client has the slave open (the VMM's own copy keeps it alive, so
                // this is rare); stop watching rather than spin.
                None => {
                    let _ = ops.remove(events);
                }
            },
            InputSource::Stdin => match read_chunk(&mut std::io::stdin()) {
                Some(bytes) => self.forward(&bytes),
                None => {
                    let _ = ops.remove(events);
                }
            },
            InputSource::Socket {
                listener,
                console,
                client,
            } => {
                if fd == listener.as_raw_fd() {
                    let Ok((stream, _)) = listener.accept() else {
                        return;
                    };
                    let attached = stream.try_clone().and_then(|out| {
                        console
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .attach(out)
                    });
                    if let Err(e) = attached {
                        tracing::warn!("serial console client rejected: {e}");
                        return;
                    }
                    if let Some(old) = client.take() {
                        let _ = ops.remove(Events::new(&old, EventSet::IN));
                    }
                    if ops.add(Events::new(&stream, EventSet::IN)).is_ok() {
                        *client = Some(stream);
                    }
                    return;
                }
                let Some(stream) = client.as_mut().filter(|s| s.as_raw_fd() == fd) else {
                    return;
                };
                match read_chunk(stream) {
                    Some(bytes) => {
                        let mut serial = self.serial.lock().unwrap_or_else(|p| p.into_inner());
                        serial.enqueue_input(&bytes);
                    }
                    None => {
                        let _ = ops.remove(events);
                        console.lock().unwrap_or_else(|p| p.into_inner()).detach();
                        *client = None;
                    }
                }
            }
        }
    }
}
