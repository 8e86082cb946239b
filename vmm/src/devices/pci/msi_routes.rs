//! The VM's GSI routing table, and MSI-X vectors delivered through it.
//!
//! Each MSI-X vector of each device is one KVM GSI: an MSI route (the address and data the
//! guest programmed) and an irqfd, so a device signals a vector by writing an eventfd and
//! the interrupt never leaves the kernel. KVM_SET_GSI_ROUTING *replaces* the whole table,
//! so [`MsiRouting`] owns it: every update installs the default IOAPIC/PIC routes KVM set up
//! with the irqchip (GSIs 0..24, which the serial port, virtio-mmio devices and the GED
//! raise through their irqfds) plus every MSI route.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1, kvm_irq_routing_irqchip,
    kvm_irq_routing_msi, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI, KVM_MAX_IRQ_ROUTES,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::EventFd;

use super::msix::{MsiMessage, MsiVectors};
use super::PciError;

/// IOAPIC pins, each GSI routed to the pin of the same number.
pub const IOAPIC_PINS: u32 = 24;
/// The first 16 GSIs are routed to the PICs too (8 pins each), as KVM's default table does.
pub const PIC_PINS: u32 = 16;
/// MSI routes take the GSIs above the IOAPIC's.
pub const FIRST_MSI_GSI: u32 = IOAPIC_PINS;
/// KVM refuses GSIs at or above its table's size.
pub const GSI_LIMIT: u32 = KVM_MAX_IRQ_ROUTES as u32;

/// Where the table goes: a VM fd, or a recorder in tests.
pub trait GsiRoutingTable: Send + Sync {
    fn set_gsi_routing(&self, routing: &KvmIrqRouting) -> Result<(), kvm_ioctls::Error>;
}

impl GsiRoutingTable for VmFd {
    fn set_gsi_routing(&self, routing: &KvmIrqRouting) -> Result<(), kvm_ioctls::Error> {
        VmFd::set_gsi_routing(self, routing)
    }
}

#[derive(Default)]
struct Table {
    /// GSIs handed out for MSI vectors.
    allocated: BTreeSet<u32>,
    /// The routes of those that have a message.
    msi: BTreeMap<u32, MsiMessage>,
}

/// The VM's GSI routing table.
pub struct MsiRouting {
    kvm: Arc<dyn GsiRoutingTable>,
    table: Mutex<Table>,
}

impl MsiRouting {
    pub fn new(kvm: Arc<dyn GsiRoutingTable>) -> Self {
        MsiRouting {
            kvm,
            table: Mutex::new(Table::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `n` GSIs for MSI vectors (the lowest free ones).
    pub fn allocate(&self, n: usize) -> Result<Vec<u32>, PciError> {
        let mut t = self.lock();
        let free: Vec<u32> = (FIRST_MSI_GSI..GSI_LIMIT)
            .filter(|g| !t.allocated.contains(g))
            .take(n)
            .collect();
        if free.len() < n {
            return Err(PciError::NoGsi(n));
        }
        t.allocated.extend(&free);
        Ok(free)
    }

    /// Gives back GSIs (a device was unplugged) and drops their routes from KVM's table.
    pub fn release(&self, gsis: &[u32]) -> Result<(), PciError> {
        let mut t = self.lock();
        let mut had_route = false;
        for g in gsis {
            t.allocated.remove(g);
            had_route |= t.msi.remove(g).is_some();
        }
        if had_route {
            self.install(&t)?;
        }
        Ok(())
    }

    /// Routes `gsi` (one [`MsiRouting::allocate`] returned) to `msg` and installs the table.
    pub fn set_msi(&self, gsi: u32, msg: MsiMessage) -> Result<(), PciError> {
        let mut t = self.lock();
        if !t.allocated.contains(&gsi) {
            return Err(PciError::NoGsi(1));
        }
        if t.msi.insert(gsi, msg) == Some(msg) {
            return Ok(());
        }
        self.install(&t)
    }

    /// The whole table as KVM gets it: default routes, then MSI routes by GSI.
    pub fn entries(&self) -> Vec<kvm_irq_routing_entry> {
        table_entries(&self.lock())
    }

    fn install(&self, t: &Table) -> Result<(), PciError> {
        let entries = table_entries(t);
        // The table is bounded by GSI_LIMIT GSIs plus the 16 PIC duplicates; the FAM
        // wrapper refuses more than KVM_MAX_IRQ_ROUTES entries.
        let routing = KvmIrqRouting::from_entries(&entries).map_err(|_| PciError::NoGsi(1))?;
        self.kvm
            .set_gsi_routing(&routing)
            .map_err(PciError::Routing)
    }
}

fn table_entries(t: &Table) -> Vec<kvm_irq_routing_entry> {
    let mut out = default_routes();
    out.extend(t.msi.iter().map(|(&gsi, m)| msi_route(gsi, m)));
    out
}

/// KVM's default x86 table (`kvm_setup_default_irq_routing`): GSI n to IOAPIC pin n for
/// n < 24, and for n < 16 also to pin n % 8 of the master (n < 8) or slave PIC.
pub fn default_routes() -> Vec<kvm_irq_routing_entry> {
    let mut out = Vec::with_capacity((IOAPIC_PINS + PIC_PINS) as usize);
    for gsi in 0..IOAPIC_PINS {
        out.push(irqchip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi));
        if gsi < PIC_PINS {
            let chip = if gsi < 8 {
                KVM_IRQCHIP_PIC_MASTER
            } else {
                KVM_IRQCHIP_PIC_SLAVE
            };
            out.push(irqchip_route(gsi, chip, gsi % 8));
        }
    }
    out
}

fn irqchip_route(gsi: u32, irqchip: u32, pin: u32) -> kvm_irq_routing_entry {
    kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        u: kvm_irq_routing_entry__bindgen_ty_1 {
            irqchip: kvm_irq_routing_irqchip { irqchip, pin },
        },
        ..Default::default()
    }
}

fn msi_route(gsi: u32, m: &MsiMessage) -> kvm_irq_routing_entry {
    kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        u: kvm_irq_routing_entry__bindgen_ty_1 {
            msi: kvm_irq_routing_msi {
                address_lo: m.address_lo,
                address_hi: m.address_hi,
                data: m.data,
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

/// A device's MSI-X vectors in KVM: one GSI and one registered irqfd each.
pub struct KvmMsiVectors {
    routing: Arc<MsiRouting>,
    gsis: Vec<u32>,
    irqfds: Vec<EventFd>,
}

impl KvmMsiVectors {
    /// Reserves `count` GSIs and registers an irqfd on each. The routes come when the
    /// guest programs the vectors; an irqfd on a GSI without a route injects nothing.
    pub fn new(vm: &VmFd, routing: Arc<MsiRouting>, count: usize) -> Result<Self, PciError> {
        let gsis = routing.allocate(count)?;
        let mut irqfds: Vec<EventFd> = Vec::with_capacity(count);
        let registered = gsis.iter().try_for_each(|&gsi| {
            let irqfd = EventFd::new(libc::EFD_NONBLOCK)
                .map_err(|source| PciError::Irqfd { gsi, source })?;
            vm.register_irqfd(&irqfd, gsi)
                .map_err(|e| PciError::Irqfd {
                    gsi,
                    source: std::io::Error::from_raw_os_error(e.errno()),
                })?;
            irqfds.push(irqfd);
            Ok(())
        });
        if let Err(e) = registered {
            for (fd, &gsi) in irqfds.iter().zip(&gsis) {
                let _ = vm.unregister_irqfd(fd, gsi);
            }
            let _ = routing.release(&gsis);
            return Err(e);
        }
        Ok(KvmMsiVectors {
            routing,
            gsis,
            irqfds,
        })
    }

    /// The GSI of each vector.
    pub fn gsis(&self) -> &[u32] {
        &self.gsis
    }

    /// The irqfd of each vector.
    pub fn irqfds(&self) -> &[EventFd] {
        &self.irqfds
    }

    /// Takes the vectors out of KVM (hot-unplug): irqfds unregistered, GSIs and routes
    /// given back.
    pub fn unregister(&self, vm: &VmFd) -> Result<(), PciError> {
        for (fd, &gsi) in self.irqfds.iter().zip(&self.gsis) {
            if let Err(e) = vm.unregister_irqfd(fd, gsi) {
                tracing::warn!("cannot unregister the irqfd of GSI {gsi}: {e}");
            }
        }
        self.routing.release(&self.gsis)
    }
}

impl MsiVectors for KvmMsiVectors {
    fn program(&self, index: u16, msg: MsiMessage) {
        let Some(&gsi) = self.gsis.get(usize::from(index)) else {
            return;
        };
        if let Err(e) = self.routing.set_msi(gsi, msg) {
            tracing::warn!("MSI-X vector {index} (GSI {gsi}) not routed: {e}");
        }
    }

    fn fire(&self, index: u16) {
        if let Some(fd) = self.irqfds.get(usize::from(index)) {
            if let Err(e) = fd.write(1) {
                tracing::warn!("MSI-X vector {index} lost: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps every table it was given.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<Vec<kvm_irq_routing_entry>>>);
    impl GsiRoutingTable for Recorder {
        fn set_gsi_routing(&self, routing: &KvmIrqRouting) -> Result<(), kvm_ioctls::Error> {
            self.0.lock().unwrap().push(routing.as_slice().to_vec());
            Ok(())
        }
    }

    fn msg(data: u32) -> MsiMessage {
        MsiMessage {
            address_lo: 0xfee0_0000,
            address_hi: 0,
            data,
        }
    }

    #[test]
    fn every_table_keeps_the_default_routes() {
        let rec = Arc::new(Recorder::default());
        let routing = MsiRouting::new(rec.clone());
        let gsis = routing.allocate(3).unwrap();
        assert_eq!(gsis, vec![24, 25, 26]);
        routing.set_msi(25, msg(0x31)).unwrap();
        routing.set_msi(25, msg(0x31)).unwrap();
        routing.set_msi(24, msg(0x30)).unwrap();
        assert!(routing.set_msi(99, msg(1)).is_err(), "not allocated");
        let tables = rec.0.lock().unwrap().clone();
        assert_eq!(tables.len(), 2, "an unchanged route is not reinstalled");
        let last = &tables[1];
        assert_eq!(last.len(), 24 + 16 + 2);
        let ioapic: Vec<u32> = last
            .iter()
            .filter(|e| e.type_ == KVM_IRQ_ROUTING_IRQCHIP)
            // SAFETY: irqchip entries carry the irqchip member.
            .filter(|e| unsafe { e.u.irqchip.irqchip } == KVM_IRQCHIP_IOAPIC)
            .map(|e| e.gsi)
            .collect();
        assert_eq!(ioapic, (0..24).collect::<Vec<_>>());
        let pic12 = last.iter().filter(|e| e.gsi == 12).nth(1).unwrap();
        assert_eq!(pic12.type_, KVM_IRQ_ROUTING_IRQCHIP);
        assert_eq!(
            // SAFETY: an irqchip entry (checked above) carries the irqchip member.
            unsafe { (pic12.u.irqchip.irqchip, pic12.u.irqchip.pin) },
            (KVM_IRQCHIP_PIC_SLAVE, 4)
        );
        let msi: Vec<(u32, u32)> = last
            .iter()
            .filter(|e| e.type_ == KVM_IRQ_ROUTING_MSI)
            // SAFETY: MSI entries carry the msi member.
            .map(|e| (e.gsi, unsafe { e.u.msi.data }))
            .collect();
        assert_eq!(msi, vec![(24, 0x30), (25, 0x31)]);
        // Released GSIs lose their routes and are handed out again.
        routing.release(&[24]).unwrap();
        assert_eq!(routing.entries().len(), 24 + 16 + 1);
        assert_eq!(routing.allocate(2).unwrap(), vec![24, 27]);
        assert!(routing.allocate(GSI_LIMIT as usize).is_err());
    }

    /// With real KVM: the table (defaults plus MSI routes) is accepted, irqfds are
    /// registered on the vectors' GSIs and taken off again on unplug.
    #[test]
    fn kvm_takes_the_table_and_the_irqfds() {
        let kvm = match kvm_ioctls::Kvm::new() {
            Ok(k) => k,
            Err(e) => {
                println!("SKIP: cannot open /dev/kvm: {e}");
                return;
            }
        };
        let vm = Arc::new(kvm.create_vm().unwrap());
        vm.create_irq_chip().unwrap();
        let routing = Arc::new(MsiRouting::new(vm.clone()));
        let vectors = KvmMsiVectors::new(&vm, routing.clone(), 3).unwrap();
        assert_eq!(vectors.gsis(), &[24, 25, 26]);
        // KVM refuses an eventfd already serving as an irqfd: proof that it is one.
        assert!(vm.register_irqfd(&vectors.irqfds()[1], 40).is_err());
        // Routes go in through the vectors and directly; both reach KVM and succeed.
        vectors.program(0, msg(0x30));
        routing.set_msi(25, msg(0x31)).unwrap();
        routing.set_msi(26, msg(0x32)).unwrap();
        assert_eq!(routing.entries().len(), 24 + 16 + 3);
        vectors.fire(0);
        assert_eq!(
            vectors.irqfds()[0].read().ok(),
            None,
            "KVM consumed the signal"
        );
        // KVM checks what it is given: a table with a bad IOAPIC pin is refused, so
        // the successes above were KVM's.
        let mut bad = default_routes();
        bad.push(irqchip_route(30, KVM_IRQCHIP_IOAPIC, 99));
        let bad = KvmIrqRouting::from_entries(&bad).unwrap();
        assert!(GsiRoutingTable::set_gsi_routing(&*vm, &bad).is_err());
        // Unplugged: the irqfds are free to register again, the routes are gone.
        vectors.unregister(&vm).unwrap();
        assert_eq!(routing.entries().len(), 24 + 16);
        vm.register_irqfd(&vectors.irqfds()[1], 40).unwrap();
        assert_eq!(routing.allocate(1).unwrap(), vec![24]);
    }
}
