//! Handlers of the device requests kata sends: `vm.add-disk`, `vm.add-device` (VFIO) and
//! `vm.remove-device`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::body;
use super::error::ApiError;
use super::handlers::{warn_ignored, ApiState};
use crate::config::DiskConfig;

type ApiResult = Result<Response, ApiError>;

/// `vm.add-disk`: Cloud Hypervisor's `DiskConfig` (kata's extra fields are ignored). Before
/// boot the disk joins the configuration: 204, as Cloud Hypervisor answers.
pub async fn vm_add_disk(State(state): State<ApiState>, raw: Bytes) -> ApiResult {
    let (disk, ignored) = body::parse::<DiskConfig>(&raw)?;
    warn_ignored("vm.add-disk", &ignored);
    let id = state.controller().add_disk(disk)?;
    tracing::info!("disk {id} added to the VM configuration");
    Ok(StatusCode::NO_CONTENT.into_response())
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
