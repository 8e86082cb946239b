//! MSI-X (PCI Local Bus 3.0, 6.8.2): the capability in configuration space, the vector
//! table and the pending-bit array in a BAR, and what a trigger does with them.
//!
//! A vector fires only while MSI-X is enabled, the function is not masked and the vector is
//! not masked; otherwise its pending bit is set, and the message is sent when the vector
//! becomes deliverable again. Where a message goes is [`MsiVectors`]' business: with KVM,
//! each vector is a GSI with an MSI route and an irqfd ([`super::msi_routes`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::PciError;

/// Capability ID of MSI-X.
pub const MSIX_CAP_ID: u8 = 0x11;
/// Bytes of one table entry: message address (low, high), data, vector control.
pub const MSIX_ENTRY_SIZE: u64 = 16;
/// Message control: MSI-X enable.
pub const MSIX_ENABLE: u16 = 1 << 15;
/// Message control: function mask (every vector masked).
pub const MSIX_FUNCTION_MASK: u16 = 1 << 14;
/// Vector control: the vector is masked.
const VECTOR_MASKED: u32 = 1;
/// The PCI spec's limit on the table size.
pub const MAX_VECTORS: usize = 2048;
/// Offset of the message control word in the capability.
pub const CONTROL_OFFSET: usize = 2;

/// Where a vector's message goes: what the guest programmed into its table entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsiMessage {
    pub address_lo: u32,
    pub address_hi: u32,
    pub data: u32,
}

/// One table entry as a snapshot keeps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsixEntry {
    pub message: MsiMessage,
    pub control: u32,
}

/// The table and pending bits, for a snapshot. Enable and function mask live in the
/// capability's control word, which the configuration space keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsixState {
    pub entries: Vec<MsixEntry>,
    pub pba: Vec<u64>,
}

/// Delivers MSI-X vectors.
pub trait MsiVectors: Send + Sync {
    /// Vector `index` will be sent as `msg`: called when a deliverable vector's message
    /// changes and when a vector becomes deliverable with a message not yet given.
    fn program(&self, index: u16, msg: MsiMessage);
    /// Sends vector `index` (programmed and deliverable).
    fn fire(&self, index: u16);
}

/// What a trigger did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// MSI-X is off: the function signals through INTx instead.
    Disabled,
    /// The message was sent.
    Fired,
    /// The vector (or the function) is masked: its pending bit is set.
    Pending,
    /// No such vector (e.g. virtio's NO_VECTOR): nothing is sent.
    NoVector,
}

/// A function's MSI-X state.
pub struct Msix {
    entries: Vec<MsixEntry>,
    pba: Vec<u64>,
    enabled: bool,
    function_masked: bool,
    sink: Arc<dyn MsiVectors>,
    /// The message last given to `program` per vector, so unmasking an unchanged vector
    /// does not rebuild KVM's routing table (KVM_SET_GSI_ROUTING waits for an RCU grace
    /// period, milliseconds).
    programmed: Vec<Option<MsiMessage>>,
}

impl Msix {
    /// A table of `vectors` entries, all masked (their state after reset, 6.8.2.9).
    pub fn new(vectors: usize, sink: Arc<dyn MsiVectors>) -> Result<Self, PciError> {
        if vectors == 0 || vectors > MAX_VECTORS {
            return Err(PciError::MsixVectors(vectors));
        }
        Ok(Msix {
            entries: vec![
                MsixEntry {
                    message: MsiMessage::default(),
                    control: VECTOR_MASKED,
                };
                vectors
            ],
            pba: vec![0; vectors.div_ceil(64)],
            enabled: false,
            function_masked: false,
            sink,
            programmed: vec![None; vectors],
        })
    }

    pub fn vectors(&self) -> usize {
        self.entries.len()
    }

    /// Bytes the table takes in its BAR.
    pub fn table_len(&self) -> u64 {
        self.entries.len() as u64 * MSIX_ENTRY_SIZE
    }

    /// Bytes the pending-bit array takes in its BAR (whole qwords).
    pub fn pba_len(&self) -> u64 {
        self.pba.len() as u64 * 8
    }

    /// The capability's body (after ID and next pointer) and which of its bits the guest
    /// may write: message control (table size - 1, enable, function mask), table offset
    /// and BAR, PBA offset and BAR. Offsets must be 8-byte aligned.
    pub fn capability(
        &self,
        table_bar: u8,
        table_offset: u32,
        pba_bar: u8,
        pba_offset: u32,
    ) -> ([u8; 10], [u8; 10]) {
        let control = (self.entries.len() - 1) as u16;
        let mut body = [0u8; 10];
        body[0..2].copy_from_slice(&control.to_le_bytes());
        body[2..6].copy_from_slice(&(table_offset | u32::from(table_bar & 7)).to_le_bytes());
        body[6..10].copy_from_slice(&(pba_offset | u32::from(pba_bar & 7)).to_le_bytes());
        let mut writable = [0u8; 10];
        writable[0..2].copy_from_slice(&(MSIX_ENABLE | MSIX_FUNCTION_MASK).to_le_bytes());
        (body, writable)
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn function_masked(&self) -> bool {
        self.function_masked
    }

    /// The guest wrote the capability's message control word.
    pub fn set_control(&mut self, control: u16) {
        self.enabled = control & MSIX_ENABLE != 0;
        self.function_masked = control & MSIX_FUNCTION_MASK != 0;
        for i in 0..self.entries.len() {
            self.deliver_if_pending(i);
        }
    }

    fn deliverable(&self, i: usize) -> bool {
        self.enabled
            && !self.function_masked
            && self
                .entries
                .get(i)
                .is_some_and(|e| e.control & VECTOR_MASKED == 0)
    }

    /// Hands a deliverable vector's message to the sink if it changed.
    fn program(&mut self, i: usize) {
        if !self.deliverable(i) {
            return;
        }
        let msg = self.entries[i].message;
        if self.programmed[i] != Some(msg) {
            self.programmed[i] = Some(msg);
            self.sink.program(i as u16, msg);
        }
    }

    /// Programs vector `i` if deliverable, and sends it if it was pending.
    fn deliver_if_pending(&mut self, i: usize) {
        if !self.deliverable(i) {
            return;
        }
        self.program(i);
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        if self.pba[word] & bit != 0 {
            self.pba[word] &= !bit;
            self.sink.fire(i as u16);
        }
    }

    /// Signals vector `vector`.
    pub fn trigger(&mut self, vector: u16) -> Delivery {
        if !self.enabled {
            return Delivery::Disabled;
        }
        let i = usize::from(vector);
        if i >= self.entries.len() {
            return Delivery::NoVector;
        }
        if !self.deliverable(i) {
            self.pba[i / 64] |= 1 << (i % 64);
            return Delivery::Pending;
        }
        self.program(i);
        self.sink.fire(vector);
        Delivery::Fired
    }

    /// Reads the table. Entries are accessed as aligned dwords or qwords (6.8.2); anything
    /// else reads as all ones.
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if !matches!(data.len(), 4 | 8) || offset % data.len() as u64 != 0 {
            return;
        }
        for (k, chunk) in data.chunks_mut(4).enumerate() {
            if let Some(v) = self.table_dword(offset + 4 * k as u64) {
                chunk.copy_from_slice(&v.to_le_bytes());
            }
        }
    }

    fn table_dword(&self, offset: u64) -> Option<u32> {
        let e = self
            .entries
            .get(usize::try_from(offset / MSIX_ENTRY_SIZE).ok()?)?;
        Some(match offset % MSIX_ENTRY_SIZE {
            0 => e.message.address_lo,
            4 => e.message.address_hi,
            8 => e.message.data,
            _ => e.control,
        })
    }

    /// Writes the table (aligned dwords or qwords; others are ignored). A changed message
    /// of a deliverable vector is programmed at once; an unmasked vector with its pending
    /// bit set is sent.
    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        if !matches!(data.len(), 4 | 8) || offset % data.len() as u64 != 0 {
            return;
        }
        for (k, chunk) in data.chunks(4).enumerate() {
            let Ok(bytes) = <[u8; 4]>::try_from(chunk) else {
                return;
            };
            self.write_table_dword(offset + 4 * k as u64, u32::from_le_bytes(bytes));
        }
    }

    fn write_table_dword(&mut self, offset: u64, v: u32) {
        let Some(i) = usize::try_from(offset / MSIX_ENTRY_SIZE)
            .ok()
            .filter(|&i| i < self.entries.len())
        else {
            return;
        };
        let e = &mut self.entries[i];
        match offset % MSIX_ENTRY_SIZE {
            // The address is dword aligned: its low two bits are read-only zero.
            0 => e.message.address_lo = v & !3,
            4 => e.message.address_hi = v,
            8 => e.message.data = v,
            _ => e.control = v & VECTOR_MASKED,
        }
        self.deliver_if_pending(i);
    }

    /// Reads the pending bits (aligned dwords or qwords); writes to them are ignored.
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if !matches!(data.len(), 4 | 8) || offset % data.len() as u64 != 0 {
            return;
        }
        let Some(&word) = usize::try_from(offset / 8)
            .ok()
            .and_then(|w| self.pba.get(w))
        else {
            return;
        };
        let bytes = word.to_le_bytes();
        let start = (offset % 8) as usize;
        data.copy_from_slice(&bytes[start..start + data.len()]);
    }

    pub fn state(&self) -> MsixState {
        MsixState {
            entries: self.entries.clone(),
            pba: self.pba.clone(),
        }
    }

    /// Takes back a snapshot's table, then applies `control` (the capability's control
    /// word from the restored configuration space), which programs every deliverable vector.
    pub fn restore(&mut self, s: &MsixState, control: u16) -> Result<(), PciError> {
        if s.entries.len() != self.entries.len() || s.pba.len() != self.pba.len() {
            return Err(PciError::State("the MSI-X table has another size"));
        }
        let n = self.entries.len();
        if n % 64 != 0 && s.pba[n / 64] >> (n % 64) != 0 {
            return Err(PciError::State(
                "pending bits set for vectors that do not exist",
            ));
        }
        self.entries = s
            .entries
            .iter()
            .map(|e| MsixEntry {
                message: MsiMessage {
                    address_lo: e.message.address_lo & !3,
                    ..e.message
                },
                control: e.control & VECTOR_MASKED,
            })
            .collect();
        self.pba.copy_from_slice(&s.pba);
        self.programmed.fill(None);
        self.set_control(control);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Log(Mutex<Vec<(char, u16, u32)>>);
    impl MsiVectors for Log {
        fn program(&self, index: u16, msg: MsiMessage) {
            self.0.lock().unwrap().push(('p', index, msg.data));
        }
        fn fire(&self, index: u16) {
            self.0.lock().unwrap().push(('f', index, 0));
        }
    }
    impl Log {
        fn take(&self) -> Vec<(char, u16, u32)> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }

    fn entry(msix: &mut Msix, i: u64, data: u32, masked: bool) {
        msix.write_table(16 * i, &0xfee0_0000u32.to_le_bytes());
        msix.write_table(16 * i + 4, &0u32.to_le_bytes());
        msix.write_table(16 * i + 8, &data.to_le_bytes());
        msix.write_table(16 * i + 12, &u32::from(masked).to_le_bytes());
    }

    #[test]
    fn masked_vectors_pend_and_fire_when_unmasked() {
        let log = Arc::new(Log::default());
        let mut m = Msix::new(3, log.clone()).unwrap();
        assert_eq!(m.trigger(0), Delivery::Disabled);
        m.set_control(MSIX_ENABLE | MSIX_FUNCTION_MASK);
        entry(&mut m, 0, 0x41, false);
        entry(&mut m, 1, 0x42, true);
        assert!(log.take().is_empty(), "function masked: nothing programmed");
        assert_eq!(m.trigger(0), Delivery::Pending);
        m.set_control(MSIX_ENABLE);
        assert_eq!(log.take(), vec![('p', 0, 0x41), ('f', 0, 0)]);
        assert_eq!(m.trigger(0), Delivery::Fired);
        assert_eq!(log.take(), vec![('f', 0, 0)], "programmed once");
        assert_eq!(m.trigger(1), Delivery::Pending);
        let mut pba = [0u8; 8];
        m.read_pba(0, &mut pba);
        assert_eq!(u64::from_le_bytes(pba), 0b10);
        m.write_table(16 + 12, &0u32.to_le_bytes());
        assert_eq!(log.take(), vec![('p', 1, 0x42), ('f', 1, 0)]);
        m.read_pba(0, &mut pba);
        assert_eq!(u64::from_le_bytes(pba), 0);
        // A new message for a live vector is programmed at once.
        m.write_table(8, &0x51u32.to_le_bytes());
        assert_eq!(log.take(), vec![('p', 0, 0x51)]);
        assert_eq!(m.trigger(3), Delivery::NoVector);
        assert_eq!(m.trigger(0xffff), Delivery::NoVector);
    }

    #[test]
    fn table_accesses_are_checked() {
        let log = Arc::new(Log::default());
        let mut m = Msix::new(2, log.clone()).unwrap();
        let mut q = [0u8; 8];
        m.read_table(8, &mut q);
        assert_eq!(u64::from_le_bytes(q), 1 << 32, "data 0, masked");
        m.write_table(0, &0x1122_3344_fee0_0003u64.to_le_bytes());
        let mut d = [0u8; 4];
        m.read_table(0, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0xfee0_0000);
        m.read_table(4, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x1122_3344);
        for (off, len) in [
            (2u64, 4usize),
            (4, 8),
            (0, 2),
            (0, 1),
            (32, 4),
            (u64::MAX - 3, 4),
        ] {
            let mut b = vec![0u8; len];
            m.read_table(off, &mut b);
            assert!(b.iter().all(|&x| x == 0xff), "{off} {len}");
            m.write_table(off, &b);
        }
        m.write_table(12, &0xffff_fffeu32.to_le_bytes());
        m.read_table(12, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0, "reserved control bits stay 0");
        m.read_pba(8, &mut q);
        assert_eq!(q, [0xff; 8], "past the PBA");
        assert!(Msix::new(0, log.clone()).is_err());
        assert!(Msix::new(2049, log).is_err());
    }

    #[test]
    fn state_round_trips_and_reprograms() {
        let log = Arc::new(Log::default());
        let mut m = Msix::new(2, log.clone()).unwrap();
        m.set_control(MSIX_ENABLE);
        entry(&mut m, 1, 0x77, false);
        log.take();
        let s = m.state();
        let log2 = Arc::new(Log::default());
        let mut m2 = Msix::new(2, log2.clone()).unwrap();
        m2.restore(&s, MSIX_ENABLE).unwrap();
        assert_eq!(log2.take(), vec![('p', 1, 0x77)]);
        assert_eq!(m2.state(), s);
        let mut bad = s.clone();
        bad.pba[0] = 1 << 5;
        assert!(m2.restore(&bad, MSIX_ENABLE).is_err());
        bad.pba.push(0);
        assert!(m2.restore(&bad, MSIX_ENABLE).is_err());
    }
}
