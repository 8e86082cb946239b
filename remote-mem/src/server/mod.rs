//! `revenant-memd`'s server: listeners and a thread per connection.
//!
//! Blocking sockets with one thread per connection keep the 4 KiB read path to
//! one `recv` and one `writev` with no hand-off between threads, which is what
//! the latency target (within 1.5x of a bare TCP round trip) needs.

mod connection;
pub mod store;

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

pub use connection::{serve as serve_stream, ConnError};
use store::SlabStore;

/// Most simultaneous connections; more are closed at accept, so a flood of
/// connections cannot exhaust threads.
pub const MAX_CONNECTIONS: u64 = 1024;

/// A peer must complete the handshake within this time, so half-open or
/// silent connections cannot pin threads forever before authenticating.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Per-connection thread stack: the handler is shallow and buffers live on the heap.
const CONN_STACK: usize = 256 * 1024;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Could not bind a listener.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: io::Error,
    },
    /// Could not start a thread.
    #[error("cannot start listener thread: {0}")]
    Thread(io::Error),
}

/// A running server: its bound addresses and store.
pub struct Server {
    /// Bound TCP address (with the real port if 0 was asked for).
    pub tcp_addr: Option<std::net::SocketAddr>,
    /// Bound Unix socket path.
    pub unix_path: Option<PathBuf>,
    /// The slab store (shared with connection threads).
    pub store: Arc<SlabStore>,
    handles: Vec<thread::JoinHandle<()>>,
}

impl Server {
    /// Binds the listeners and starts accepting in background threads.
    pub fn start(
        tcp: Option<&str>,
        unix: Option<PathBuf>,
        store: Arc<SlabStore>,
        token: Vec<u8>,
    ) -> Result<Self, ServerError> {
        let token: Arc<[u8]> = token.into();
        let mut handles = Vec::new();
        let mut tcp_addr = None;
        if let Some(addr) = tcp {
            let l = TcpListener::bind(addr).map_err(|source| ServerError::Bind {
                addr: addr.into(),
                source,
            })?;
            tcp_addr = l.local_addr().ok();
            let (store, token) = (Arc::clone(&store), Arc::clone(&token));
            handles.push(
                thread::Builder::new()
                    .name("memd-accept-tcp".into())
                    .spawn(move || accept_tcp(l, store, token))
                    .map_err(ServerError::Thread)?,
            );
        }
        if let Some(path) = &unix {
            // A stale socket file from a previous run would make bind fail.
            let _ = std::fs::remove_file(path);
            let l = UnixListener::bind(path).map_err(|source| ServerError::Bind {
                addr: path.display().to_string(),
                source,
            })?;
            let (store, token) = (Arc::clone(&store), Arc::clone(&token));
            handles.push(
                thread::Builder::new()
                    .name("memd-accept-unix".into())
                    .spawn(move || accept_unix(l, store, token))
                    .map_err(ServerError::Thread)?,
            );
        }
        Ok(Self {
            tcp_addr,
            unix_path: unix,
            store,
            handles,
        })
    }

    /// Blocks until the listeners stop (they normally run until the process exits).
    pub fn wait(self) {
        for h in self.handles {
            let _ = h.join();
        }
    }
}

fn accept_tcp(l: TcpListener, store: Arc<SlabStore>, token: Arc<[u8]>) {
    for conn in l.incoming() {
        let s: TcpStream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        // Small frames (requests, 40-byte replies) must not wait for Nagle.
        let _ = s.set_nodelay(true);
        let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        let _ = s.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
        match (s.try_clone(), s.try_clone()) {
            (Ok(r), Ok(t)) => spawn_conn(r, s, peer, &store, &token, move || {
                let _ = t.set_read_timeout(None);
            }),
            (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "cannot clone socket"),
        }
    }
}

fn accept_unix(l: UnixListener, store: Arc<SlabStore>, token: Arc<[u8]>) {
    for conn in l.incoming() {
        let s: UnixStream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let _ = s.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
        match (s.try_clone(), s.try_clone()) {
            (Ok(r), Ok(t)) => spawn_conn(r, s, "unix".into(), &store, &token, move || {
                let _ = t.set_read_timeout(None);
            }),
            (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "cannot clone socket"),
        }
    }
}

fn spawn_conn<S, F>(
    r: S,
    w: S,
    peer: String,
    store: &Arc<SlabStore>,
    token: &Arc<[u8]>,
    authenticated: F,
) where
    S: io::Read + io::Write + Send + 'static,
    F: FnOnce() + Send + 'static,
{
    if store.counters.connections.load(Relaxed) >= MAX_CONNECTIONS {
        tracing::warn!(%peer, "connection refused: {MAX_CONNECTIONS} connections open");
        return;
    }
    store.counters.connections.fetch_add(1, Relaxed);
    let (store, token) = (Arc::clone(store), Arc::clone(token));
    let store2 = Arc::clone(&store);
    let spawned = thread::Builder::new()
        .name("memd-conn".into())
        .stack_size(CONN_STACK)
        .spawn(move || {
            match connection::serve(r, w, &store, &token, authenticated) {
                Ok(()) => tracing::debug!(%peer, "connection closed"),
                Err(ConnError::Io(e)) => tracing::info!(%peer, error = %e, "connection dropped"),
                Err(e) => {
                    store.counters.protocol_errors.fetch_add(1, Relaxed);
                    tracing::warn!(%peer, reason = %e, "closing connection");
                }
            }
            store.counters.connections.fetch_sub(1, Relaxed);
        });
    if let Err(e) = spawned {
        store2.counters.connections.fetch_sub(1, Relaxed);
        tracing::warn!(error = %e, "cannot start connection thread");
    }
}
