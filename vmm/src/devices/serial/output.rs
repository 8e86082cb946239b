//! Where the guest's serial output goes.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

/// Output produced while no client is connected to a socket console is kept (up to this
/// much, oldest dropped first) and replayed when one connects, so boot messages aren't lost.
const SOCKET_BACKLOG_LIMIT: usize = 256 * 1024;

pub enum SerialOutput {
    Stdout,
    File(File),
    Socket(Arc<Mutex<SocketConsole>>),
    /// The master side of a pseudo-terminal (non-blocking: output nobody reads is dropped
    /// once the terminal's buffer is full, rather than stopping the vCPU).
    Pty(File),
    Sink,
}

impl Write for SerialOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            // Unbuffered on purpose: each byte reaches the reader as the guest writes it,
            // which is also what the start-latency benchmark measures.
            SerialOutput::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(buf)?;
                out.flush()?;
                Ok(buf.len())
            }
            SerialOutput::File(f) => f.write(buf),
            SerialOutput::Socket(c) => {
                c.lock().unwrap_or_else(|p| p.into_inner()).write(buf);
                Ok(buf.len())
            }
            SerialOutput::Pty(f) => match f.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(buf.len()),
                other => other,
            },
            SerialOutput::Sink => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            SerialOutput::File(f) => f.flush(),
            _ => Ok(()),
        }
    }
}

/// The client currently attached to a socket console, and what it missed.
#[derive(Default)]
pub struct SocketConsole {
    client: Option<UnixStream>,
    backlog: Vec<u8>,
}

impl SocketConsole {
    fn write(&mut self, buf: &[u8]) {
        if let Some(client) = &mut self.client {
            if client.write_all(buf).is_ok() {
                return;
            }
            tracing::info!("serial console client went away");
            self.client = None;
        }
        self.backlog.extend_from_slice(buf);
        if self.backlog.len() > SOCKET_BACKLOG_LIMIT {
            let excess = self.backlog.len() - SOCKET_BACKLOG_LIMIT;
            self.backlog.drain(..excess);
        }
    }

    /// Makes `client` the console, first sending it what was printed while nobody listened.
    pub fn attach(&mut self, mut client: UnixStream) -> io::Result<()> {
        client.write_all(&self.backlog)?;
        self.backlog.clear();
        self.client = Some(client);
        Ok(())
    }

    pub fn detach(&mut self) {
        self.client = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn socket_console_replays_backlog_then_streams() {
        let console = Arc::new(Mutex::new(SocketConsole::default()));
        let mut out = SerialOutput::Socket(console.clone());
        out.write_all(b"early ").unwrap();
        let (host, mut client) = UnixStream::pair().unwrap();
        console.lock().unwrap().attach(host).unwrap();
        out.write_all(b"late").unwrap();
        let mut got = [0u8; 10];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"early late");
    }

    #[test]
    fn backlog_is_bounded() {
        let mut c = SocketConsole::default();
        for _ in 0..(SOCKET_BACKLOG_LIMIT / 1000 + 10) {
            c.write(&[b'x'; 1000]);
        }
        assert_eq!(c.backlog.len(), SOCKET_BACKLOG_LIMIT);
    }
}
