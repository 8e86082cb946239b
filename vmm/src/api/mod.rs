//! The REST API on a Unix socket: Cloud Hypervisor's `/api/v1/` paths and JSON fields, so
//! kata's runtime can drive Revenant unchanged. `openapi.yaml` beside this file describes
//! exactly what is implemented.

pub mod body;
mod device_handlers;
pub mod error;
pub mod fd_passing;
pub mod handlers;
pub mod server;
