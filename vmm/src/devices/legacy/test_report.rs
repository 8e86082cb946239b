//! A port a test guest writes results to (checksums, counters, its CPL): each 1/2/4-byte
//! write becomes one line on stderr and one entry in `vm.counters`. Only attached when the
//! VM runs a raw test guest, so Linux never sees it.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::devices::bus::BusDevice;

pub const TEST_REPORT_PORT: u64 = 0xf4;
pub const TEST_REPORT_LEN: u64 = 4;
/// Reports kept for the API; a chatty guest must not grow VMM memory without bound.
const MAX_KEPT_REPORTS: usize = 1024;

#[derive(Default)]
pub struct TestReport {
    values: Arc<Mutex<Vec<u32>>>,
}

impl TestReport {
    /// Shared view of the reported values, newest last.
    pub fn values(&self) -> Arc<Mutex<Vec<u32>>> {
        self.values.clone()
    }
}

impl BusDevice for TestReport {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        let mut raw = [0u8; 4];
        let n = data.len().min(4);
        raw[..n].copy_from_slice(&data[..n]);
        let value = u32::from_le_bytes(raw);
        // Tests parse this line; keep its format stable.
        let _ = writeln!(std::io::stderr(), "revenant: test-report {value:#010x}");
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        if values.len() < MAX_KEPT_REPORTS {
            values.push(value);
        }
    }
}
