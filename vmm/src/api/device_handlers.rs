//! Handlers of the device requests kata sends: `vm.add-disk`, `vm.add-net` (with its tap
//! fd passed by SCM_RIGHTS), `vm.add-device` (VFIO) and `vm.remove-device`.

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::body;
use super::error::ApiError;
use super::fd_passing::ConnFds;
use super::handlers::{warn_ignored, ApiState};
use crate::config::{DiskConfig, NetConfig, TapFd};
use crate::controller::Added;
use crate::devices::virtio::net::Tap;

type ApiResult = Result<Response, ApiError>;

/// `vm.add-disk`: Cloud Hypervisor's `DiskConfig` (kata's extra fields are ignored). Before
/// boot the disk joins the configuration: 204, as Cloud Hypervisor answers; in a booted VM
/// it is hot-plugged: 200 with `{id, bdf}`.
pub async fn vm_add_disk(State(state): State<ApiState>, raw: Bytes) -> ApiResult {
    let (disk, ignored) = body::parse::<DiskConfig>(&raw)?;
    warn_ignored("vm.add-disk", &ignored);
    let added = state.controller().add_disk(disk)?;
    Ok(answer("disk", added))
}

/// 204 for a device added to the configuration, 200 `{id, bdf}` for one hot-plugged.
fn answer(what: &str, added: Added) -> Response {
    match added.plugged {
        Some(p) => {
            tracing::info!("{what} {} hot-plugged at {}", p.id, p.bdf);
            Json(p).into_response()
        }
        None => {
            tracing::info!("{what} {} added to the VM configuration", added.id);
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

/// `vm.add-net`: Cloud Hypervisor's `NetConfig`. kata passes the tap as an fd with the
/// request (one per queue pair: one here) and sends `"tap": ""`; a named tap needs none.
/// Before boot the card joins the configuration: 204.
pub async fn vm_add_net(
    State(state): State<ApiState>,
    ConnectInfo(conn): ConnectInfo<ConnFds>,
    raw: Bytes,
) -> ApiResult {
    // Taken first, so the fds of a refused request are closed rather than left for the
    // next request on the connection.
    let mut fds = conn.take_all();
    let (mut net, ignored) = body::parse::<NetConfig>(&raw)?;
    warn_ignored("vm.add-net", &ignored);
    if fds.len() > 1 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "fds",
            format!(
                "{} tap fds passed; Revenant's virtio-net has one queue pair, so one fd",
                fds.len()
            ),
        ));
    }
    if let Some(fd) = fds.pop() {
        // Checked now (a duplicate, adopted and dropped), so a wrong fd fails this request
        // rather than the boot.
        let probe = fd
            .try_clone()
            .map_err(|e| e.to_string())
            .and_then(|dup| Tap::from_fd(dup).map_err(|e| e.to_string()));
        if let Err(reason) = probe {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "fds", reason));
        }
        net.fd = Some(TapFd(std::sync::Arc::new(fd)));
    }
    let added = state.controller().add_net(net)?;
    Ok(answer("network card", added))
}

/// `vm.add-device` body: Cloud Hypervisor's `DeviceConfig` (a VFIO device).
#[derive(serde::Deserialize)]
struct DeviceRequest {
    path: std::path::PathBuf,
}

/// `vm.add-device`: VFIO pass-through, which Revenant does not do; the answer says so
/// rather than pretending, so kata reports a clear error.
pub async fn vm_add_device(raw: Bytes) -> ApiResult {
    let (req, _ignored) = body::parse::<DeviceRequest>(&raw)?;
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "path",
        format!(
            "cannot pass through {}: VFIO devices are not supported by Revenant",
            req.path.display()
        ),
    ))
}

/// `vm.remove-device` body: `{"id": ...}`.
#[derive(serde::Deserialize)]
struct RemoveRequest {
    id: String,
}

pub async fn vm_remove_device(State(state): State<ApiState>, raw: Bytes) -> ApiResult {
    let (req, ignored) = body::parse::<RemoveRequest>(&raw)?;
    warn_ignored("vm.remove-device", &ignored);
    state.controller().remove_device(&req.id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
