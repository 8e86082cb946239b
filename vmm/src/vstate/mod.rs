//! KVM-facing state: guest memory, the VM file descriptor and vCPUs.

pub mod discard;
pub mod fallback;
pub mod hotplug_memory;
pub mod memory;
pub mod persist;
pub mod run_control;
pub mod syscall_bridge;
pub mod vcpu;
pub mod vm_fd;
pub mod zone_memory;
