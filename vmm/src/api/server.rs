//! Serving the API on a Unix socket until `vmm.shutdown`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::fd_passing::{ConnFds, FdListener};
use super::handlers::{router, ApiState};
use crate::controller::Controller;

#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    #[error("cannot start the API runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot listen on API socket {path}: {source}")]
    Bind {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("API server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Serves until a `vmm.shutdown` request has been answered.
pub fn serve(socket: &Path, controller: Arc<Mutex<Controller>>) -> Result<(), ApiServerError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(ApiServerError::Runtime)?;
    runtime.block_on(async {
        // A socket file left by a VMM that died is in the way; a live one would answer
        // connections, which binding over it can't detect cheaply, and kata gives every
        // sandbox its own path, so removing it is what Cloud Hypervisor does too.
        if socket.exists() {
            let _ = std::fs::remove_file(socket);
        }
        let listener =
            tokio::net::UnixListener::bind(socket).map_err(|source| ApiServerError::Bind {
                path: socket.display().to_string(),
                source,
            })?;
        let shutdown = Arc::new(Notify::new());
        let app = router(ApiState {
            controller,
            shutdown: shutdown.clone(),
        });
        // Connections are read with recvmsg, so fds kata passes (vm.add-net's tap) arrive.
        let listener = FdListener(listener);
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<ConnFds>(),
        )
        .with_graceful_shutdown(async move { shutdown.notified().await })
        .await
        .map_err(ApiServerError::Serve)
    })?;
    let _ = std::fs::remove_file(socket);
    Ok(())
}
