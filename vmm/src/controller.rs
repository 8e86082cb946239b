//! The VM lifecycle behind the API and the CLI: which request is allowed in which state.

use std::sync::mpsc::Sender;

use serde::Serialize;

use crate::config::{ConfigError, VmConfig};
use crate::devices::exit::{ExitSignal, GuestExit};
use crate::vm::{Vm, VmCounters, VmError};

/// State names exactly as Cloud Hypervisor reports them (kata compares the strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum VmState {
    Created,
    Running,
    Paused,
    Shutdown,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The request is fine but not in this state (HTTP 409).
    #[error("{0}")]
    WrongState(String),
    /// The request or configuration is wrong (HTTP 400), naming the field.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The VMM failed to do something it should have been able to do (HTTP 500).
    #[error(transparent)]
    Vm(VmError),
}

impl From<VmError> for ControlError {
    fn from(e: VmError) -> Self {
        match e.config_error() {
            Some(c) => ControlError::Config(c),
            None => ControlError::Vm(e),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct VmInfo {
    pub config: VmConfig,
    pub state: VmState,
    pub memory_actual_size: u64,
}

/// A guest stop, tagged with the boot it belongs to so a late message from a VM that has
/// already been replaced cannot stop its successor.
pub type TaggedExit = (u64, GuestExit);

pub struct Controller {
    config: Option<VmConfig>,
    vm: Option<Vm>,
    state: VmState,
    exits: Sender<TaggedExit>,
    generation: u64,
    last_exit: Option<GuestExit>,
}

impl Controller {
    pub fn new(exits: Sender<TaggedExit>) -> Self {
        Controller {
            config: None,
            vm: None,
            state: VmState::Created,
            exits,
            generation: 0,
            last_exit: None,
        }
    }

    fn wrong_state(&self, action: &str) -> ControlError {
        match &self.config {
            None => ControlError::WrongState(format!(
                "cannot {action}: no VM has been created (call vm.create first)"
            )),
            Some(_) => {
                ControlError::WrongState(format!("cannot {action}: the VM is {:?}", self.state))
            }
        }
    }

    pub fn create(&mut self, config: VmConfig) -> Result<(), ControlError> {
        if self.config.is_some() {
            return Err(ControlError::WrongState(
                "a VM has already been created".into(),
            ));
        }
        config.validate()?;
        self.config = Some(config);
        self.state = VmState::Created;
        Ok(())
    }

    pub fn boot(&mut self) -> Result<(), ControlError> {
        let config = match (&self.config, self.state) {
            (Some(c), VmState::Created | VmState::Shutdown) => c,
            _ => return Err(self.wrong_state("boot")),
        };
        self.generation += 1;
        let exit = ExitSignal::new(self.exits.clone(), self.generation);
        self.vm = Some(Vm::boot(config, exit)?);
        self.state = VmState::Running;
        self.last_exit = None;
        Ok(())
    }

    pub fn pause(&mut self) -> Result<(), ControlError> {
        match (&self.vm, self.state) {
            (Some(vm), VmState::Running) => {
                vm.pause()?;
                self.state = VmState::Paused;
                Ok(())
            }
            _ => Err(self.wrong_state("pause")),
        }
    }

    pub fn resume(&mut self) -> Result<(), ControlError> {
        match (&self.vm, self.state) {
            (Some(vm), VmState::Paused) => {
                vm.resume();
                self.state = VmState::Running;
                Ok(())
            }
            _ => Err(self.wrong_state("resume")),
        }
    }

    /// Stops the VM; its configuration stays, so `vm.boot` can start it again.
    pub fn shutdown(&mut self) -> Result<(), ControlError> {
        match self.state {
            VmState::Running | VmState::Paused if self.vm.is_some() => {
                self.vm = None;
                self.state = VmState::Shutdown;
                Ok(())
            }
            _ => Err(self.wrong_state("shut down")),
        }
    }

    pub fn info(&self) -> Result<VmInfo, ControlError> {
        let config = self
            .config
            .clone()
            .ok_or_else(|| self.wrong_state("report info"))?;
        let memory_actual_size = config.memory.size;
        Ok(VmInfo {
            config,
            state: self.state,
            memory_actual_size,
        })
    }

    pub fn counters(&self) -> Result<VmCounters, ControlError> {
        match &self.vm {
            Some(vm) => Ok(vm.counters()),
            None => Err(self.wrong_state("report counters")),
        }
    }

    /// The guest stopped on its own (power off, reset, crash): tear the VM down.
    pub fn on_guest_exit(&mut self, (generation, exit): TaggedExit) {
        if generation != self.generation || self.vm.is_none() {
            return;
        }
        match &exit {
            GuestExit::Crash(why) => tracing::error!("guest crashed: {why}"),
            other => tracing::info!("guest stopped: {other:?}"),
        }
        self.vm = None;
        self.state = VmState::Shutdown;
        self.last_exit = Some(exit);
    }

    pub fn last_exit(&self) -> Option<&GuestExit> {
        self.last_exit.as_ref()
    }
}
