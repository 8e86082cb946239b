//! One handler per endpoint; each parses its body, calls the controller, answers.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::Notify;

use super::error::ApiError;
use super::{body, device_handlers};
use crate::config::VmConfig;
use crate::controller::Controller;

#[derive(Clone)]
pub struct ApiState {
    pub controller: Arc<Mutex<Controller>>,
    /// Notified by `vmm.shutdown` once its answer is on its way.
    pub shutdown: Arc<Notify>,
}

impl ApiState {
    pub(super) fn controller(&self) -> MutexGuard<'_, Controller> {
        self.controller.lock().unwrap_or_else(|p| p.into_inner())
    }
}

type ApiResult = Result<Response, ApiError>;

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/vmm.ping", get(vmm_ping))
        .route("/api/v1/vmm.shutdown", put(vmm_shutdown))
        .route("/api/v1/vm.create", put(vm_create))
        .route("/api/v1/vm.boot", put(vm_boot))
        .route("/api/v1/vm.info", get(vm_info))
        .route("/api/v1/vm.pause", put(vm_pause))
        .route("/api/v1/vm.resume", put(vm_resume))
        .route("/api/v1/vm.shutdown", put(vm_shutdown))
        .route("/api/v1/vm.counters", get(vm_counters))
        .route("/api/v1/vm.snapshot", put(vm_snapshot))
        .route("/api/v1/vm.restore", put(vm_restore))
        .route("/api/v1/vm.sleep", put(vm_sleep))
        .route("/api/v1/vm.wake", put(vm_wake))
        .route("/api/v1/vm.power-button", put(vm_power_button))
        .route("/api/v1/vm.resize", put(vm_resize))
        .route("/api/v1/vm.save-working-set", put(vm_save_working_set))
        .route("/api/v1/vm.add-disk", put(device_handlers::vm_add_disk))
        .route("/api/v1/vm.add-net", put(device_handlers::vm_add_net))
        .route("/api/v1/vm.add-device", put(device_handlers::vm_add_device))
        .route(
            "/api/v1/vm.remove-device",
            put(device_handlers::vm_remove_device),
        )
        .fallback(unknown_endpoint)
        .with_state(state)
}

#[derive(Serialize)]
struct Ping {
    build_version: &'static str,
    version: &'static str,
    pid: u32,
    features: Vec<&'static str>,
}

async fn vmm_ping() -> Json<Ping> {
    Json(Ping {
        build_version: env!("CARGO_PKG_VERSION"),
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        features: vec![],
    })
}

async fn vmm_shutdown(State(state): State<ApiState>) -> StatusCode {
    // The server stops after this answer is written (graceful shutdown), never before: kata
    // treats an unanswered vmm.shutdown as a failed stop.
    state.shutdown.notify_one();
    StatusCode::NO_CONTENT
}

async fn vm_create(State(state): State<ApiState>, raw: Bytes) -> ApiResult {
    let (config, ignored) = body::parse::<VmConfig>(&raw)?;
    if !ignored.is_empty() {
        tracing::warn!(
            "vm.create: ignoring unknown or unsupported fields: {}",
            ignored.join(", ")
        );
    }
    state.controller().create(config)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn vm_boot(State(state): State<ApiState>) -> ApiResult {
    state.controller().boot()?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn vm_info(State(state): State<ApiState>) -> ApiResult {
    Ok(Json(state.controller().info()?).into_response())
}

async fn vm_pause(State(state): State<ApiState>) -> ApiResult {
    state.controller().pause()?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn vm_resume(State(state): State<ApiState>) -> ApiResult {
    state.controller().resume()?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn vm_shutdown(State(state): State<ApiState>) -> ApiResult {
    state.controller().shutdown()?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn vm_counters(State(state): State<ApiState>) -> ApiResult {
    Ok(Json(state.controller().counters()?).into_response())
}

/// `vm.snapshot` body (Cloud Hypervisor's `VmSnapshotConfig`).
#[derive(serde::Deserialize)]
struct SnapshotRequest {
    destination_url: String,
    /// Revenant extension: also upload the memory to these memory servers (for `remote`
    /// restores).
    #[serde(default)]
    memory_servers: Option<crate::remote_template::MemoryServers>,
}

async fn vm_snapshot(State(state): State<ApiState>, raw: Bytes) -> ApiResult {
    let (req, ignored) = body::parse::<SnapshotRequest>(&raw)?;
    warn_ignored("vm.snapshot", &ignored);
    state
        .controller()
        .snapshot(&req.destination_url, req.memory_servers.as_ref())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `vm.restore` body: Cloud Hypervisor's `RestoreConfig` (`source_url`, `prefault`) plus
/// Revenant's `memory_restore_mode`.
#[derive(serde::Deserialize)]
struct RestoreRequest {
    source_url: String,
    #[serde(default)]
    memory_restore_mode: crate::snapshot::MemoryRestoreMode,
    /// Accepted for Cloud Hypervisor compatibility; `copy` mode is the prefaulted one.
    #[serde(default)]
    #[allow(dead_code)]
    prefault: bool,
    /// Revenant extension: the clone's own vsock CID and socket path.
    #[serde(default)]
    vsock: Option<crate::config::VsockConfig>,
    /// Revenant extension: each network card's own tap (and MAC) in the clone.
    #[serde(default)]
    net: Vec<crate::clone_identity::NetIdentity>,
    /// Revenant extension: where the clone's serial console goes.
    #[serde(default)]
    serial: Option<crate::config::ConsoleConfig>,
}

async fn vm_restore(State(state): State<ApiState>, raw: Bytes) -> ApiResult {
    let (req, ignored) = body::parse::<RestoreRequest>(&raw)?;
    warn_ignored("vm.restore", &ignored);
    state.controller().restore(
        &req.source_url,
        req.memory_restore_mode,
        &crate::clone_identity::CloneIdentity {
            vsock: req.vsock,
            net: req.net,
            serial: req.serial,
        },
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) fn warn_ignored(action: &str, ignored: &[String]) {
    if !ignored.is_empty() {
        tracing::warn!("{action}: ignoring unknown fields: {}", ignored.join(", "));
    }
}

/// `vm.sleep` body: `{"state": "s3" | "sz"}`.
#[derive(serde::Deserialize)]
struct SleepRequest {
    state: crate::config::SleepState,
}

async fn vm_sleep(State(state): State<ApiState>, raw: Bytes) -> ApiResult {
    let (req, ignored) = body::parse::<SleepRequest>(&raw)?;
    warn_ignored("vm.sleep", &ignored);
    state.controller().sleep(req.state)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn vm_wake(State(state): State<ApiState>) -> ApiResult {
    state.controller().wake()?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `vm.resize` body (Cloud Hypervisor's `VmResize`).
#[derive(serde::Deserialize)]
struct ResizeRequest {
    desired_vcpus: Option<u32>,
    desired_ram: Option<u64>,
    desired_balloon: Option<u64>,
}

async fn vm_resize(State(state): State<ApiState>, raw: Bytes) -> ApiResult {
    let (req, ignored) = body::parse::<ResizeRequest>(&raw)?;
    warn_ignored("vm.resize", &ignored);
    state
        .controller()
        .resize(req.desired_vcpus, req.desired_ram, req.desired_balloon)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(serde::Serialize)]
struct WorkingSetSaved {
    pages: usize,
}

async fn vm_save_working_set(State(state): State<ApiState>) -> ApiResult {
    let pages = state.controller().save_working_set()?;
    Ok(Json(WorkingSetSaved { pages }).into_response())
}

async fn vm_power_button(State(state): State<ApiState>) -> ApiResult {
    state.controller().power_button()?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn unknown_endpoint(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "path",
        format!("no endpoint {}", uri.path()),
    )
}
