//! Revenant's VMM: KVM VM and vCPUs, guest boot, devices, and the REST API.

pub mod api;
pub mod boot;
pub mod cli;
pub mod clone_identity;
pub mod config;
pub mod controller;
pub mod devices;
pub mod energy;
pub mod event_loop;
pub mod ram_ext;
pub mod remote_template;
pub mod snapshot;
pub mod vm;
pub mod vstate;
