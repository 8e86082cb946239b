//! The CPUID a vCPU sees: KVM's supported set, given a per-vCPU identity and trimmed of
//! paravirtual features that need hypercalls.
//!
//! Why trim: VMCALL/VMMCALL hang the vCPU on this host's PVM KVM instead of exiting (PVM.md),
//! so a guest told about PV_UNHALT, PV_SEND_IPI, PV_SCHED_YIELD, ... would lock up the first
//! time it uses them. The features kept (kvmclock, async PF over MSRs, steal time, PV EOI)
//! work through MSRs only.

use kvm_bindings::CpuId;

/// KVM paravirtual feature bits (leaf 0x4000_0001 EAX) that are driven by hypercalls.
const KVM_PV_FEATURES_USING_HYPERCALLS: &[(u32, &str)] = &[
    (7, "PV_UNHALT"),
    (11, "PV_SEND_IPI"),
    (13, "PV_SCHED_YIELD"),
    (16, "HC_MAP_GPA_RANGE"),
    (17, "MIGRATION_CONTROL"),
];

const LEAF_FEATURES: u32 = 0x1;
const LEAF_EXT_TOPOLOGY: u32 = 0xb;
const LEAF_EXT_TOPOLOGY_V2: u32 = 0x1f;
const LEAF_KVM_FEATURES: u32 = 0x4000_0001;
const LEAF_AMD_EXT_APIC_ID: u32 = 0x8000_001e;
const ECX_HYPERVISOR: u32 = 1 << 31;

/// Adjusts `cpuid` (from KVM_GET_SUPPORTED_CPUID) for vCPU `id` of `count`.
pub fn filter(cpuid: &mut CpuId, id: u8, count: u8) {
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            LEAF_FEATURES => {
                // EBX[31:24] initial APIC ID, EBX[23:16] logical processors per package.
                entry.ebx =
                    (entry.ebx & 0x0000_ffff) | (u32::from(id) << 24) | (u32::from(count) << 16);
                entry.ecx |= ECX_HYPERVISOR;
            }
            LEAF_EXT_TOPOLOGY | LEAF_EXT_TOPOLOGY_V2 => entry.edx = u32::from(id),
            LEAF_AMD_EXT_APIC_ID => entry.eax = u32::from(id),
            LEAF_KVM_FEATURES => {
                for (bit, _) in KVM_PV_FEATURES_USING_HYPERCALLS {
                    entry.eax &= !(1 << bit);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn entry(function: u32, eax: u32, ebx: u32, ecx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            eax,
            ebx,
            ecx,
            ..Default::default()
        }
    }

    #[test]
    fn sets_identity_and_trims_hypercall_features() {
        let mut cpuid = CpuId::from_entries(&[
            entry(LEAF_FEATURES, 0, 0xff00_1234, 0),
            entry(LEAF_KVM_FEATURES, 0x0100_7efb, 0, 0),
            entry(LEAF_EXT_TOPOLOGY, 0, 0, 0),
        ])
        .unwrap();
        filter(&mut cpuid, 3, 4);
        let e = cpuid.as_slice();
        assert_eq!(e[0].ebx, 0x0304_1234);
        assert_ne!(e[0].ecx & ECX_HYPERVISOR, 0);
        // 0x01007efb is what this host's KVM offers (PVM.md): PV_UNHALT (7), PV_SEND_IPI (11)
        // and PV_SCHED_YIELD (13) go; bits 16 and 17 are not offered in the first place.
        assert_eq!(e[1].eax, 0x0100_7efb & !(1 << 7) & !(1 << 11) & !(1 << 13));
        assert_eq!(e[2].edx, 3);
    }
}
