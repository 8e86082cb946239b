//! The CPUID a vCPU sees: KVM's supported set, given a per-vCPU identity and trimmed of
//! paravirtual features that need hypercalls.
//!
//! Why trim: VMCALL/VMMCALL hang the vCPU on this host's PVM KVM instead of exiting (PVM.md),
//! so a guest told about PV_UNHALT, PV_SEND_IPI, PV_SCHED_YIELD, ... would lock up the first
//! time it uses them. The features kept (kvmclock, async PF over MSRs, steal time, PV EOI)
//! work through MSRs only.

use kvm_bindings::CpuId;
use serde::{Deserialize, Serialize};

/// Which CPUID a guest sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CpuProfile {
    /// `pvm-safe` on a PVM host, `host` elsewhere.
    #[default]
    Auto,
    /// Everything KVM supports (minus hypercall-based PV features).
    Host,
    /// Hides the features whose instructions this host's PVM emulator rejects at guest CPL0.
    PvmSafe,
}

impl CpuProfile {
    /// Resolves `Auto` for this host.
    pub fn resolve(self) -> CpuProfile {
        match self {
            CpuProfile::Auto if host_is_pvm() => CpuProfile::PvmSafe,
            CpuProfile::Auto => CpuProfile::Host,
            other => other,
        }
    }
}

/// PVM hosts load `kvm_pvm` instead of `kvm_intel`/`kvm_amd` (shared/PVM.md).
pub fn host_is_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

/// Features hidden by [`CpuProfile::PvmSafe`], as (leaf, register, bits kept or removed).
/// Measured on this host (shared/PVM.md): the CPL0 emulator rejects XSAVE/XRSTOR/XGETBV,
/// every SSE3+/AVX instruction tried, POPCNT, CMPXCHG16B, CRC32, BMI1/2, ADCX, RDTSCP,
/// STAC/CLAC, MONITOR/MWAIT, INVPCID and CLWB. A guest kernel picks code paths (alternatives,
/// crypto, memcpy variants) from CPUID, so hiding these keeps it off them.
mod pvm_safe {
    /// Leaf 1 ECX bits removed: SSE3 0, PCLMULQDQ 1, MONITOR 3, SSSE3 9, FMA 12, CX16 13,
    /// PCID 17, SSE4.1 19, SSE4.2 20, MOVBE 22, POPCNT 23, AES 25, XSAVE 26, OSXSAVE 27,
    /// AVX 28, F16C 29, RDRAND 30.
    pub const LEAF1_ECX_REMOVE: u32 = (1 << 0)
        | (1 << 1)
        | (1 << 3)
        | (1 << 9)
        | (1 << 12)
        | (1 << 13)
        | (1 << 17)
        | (1 << 19)
        | (1 << 20)
        | (1 << 22)
        | (1 << 23)
        | (1 << 25)
        | (1 << 26)
        | (1 << 27)
        | (1 << 28)
        | (1 << 29)
        | (1 << 30);
    /// Leaf 7.0 EBX bits kept: ERMS 9 (REP MOVS works), CLFLUSHOPT 23. Everything else
    /// (FSGSBASE, BMI1/2, AVX2, SMEP, INVPCID, RTM, AVX-512, RDSEED, ADX, SMAP, CLWB, SHA, ...)
    /// goes; leaf 7 ECX/EDX are cleared entirely (PKU, VAES, GFNI, RDPID, ...).
    pub const LEAF7_EBX_KEEP: u32 = (1 << 9) | (1 << 23);
    /// Leaf 0x8000_0001 ECX bits removed: ABM/LZCNT 5, SSE4A 6, MISALIGNSSE 7, XOP 11,
    /// FMA4 16, TBM 21, MONITORX 29. EDX: RDTSCP 27.
    pub const EXT1_ECX_REMOVE: u32 =
        (1 << 5) | (1 << 6) | (1 << 7) | (1 << 11) | (1 << 16) | (1 << 21) | (1 << 29);
    pub const EXT1_EDX_REMOVE: u32 = 1 << 27;
}

/// Kernel parameters `pvm-safe` adds to a Linux guest's command line. On this host's PVM KVM
/// the guest sees the host's CPUID leaf 1 ECX, leaf 7 and leaf 0xD whatever the VMM sets
/// (measured, docs/pvm-notes.md), so masking CPUID cannot keep the kernel off XSAVE, POPCNT,
/// SSE4, AVX, BMI, SMAP/SMEP, PCID ...; `clearcpuid=` (feature names, Linux >= 5.19) and
/// `noxsave` clear them from the kernel's own feature set, which is what alternatives and
/// the crypto/memcpy choices read.
pub const PVM_SAFE_LINUX_CMDLINE: &str = "noxsave clearcpuid=popcnt,cx16,sse4_1,sse4_2,ssse3,avx,avx2,avx512f,fma,f16c,\
aes,pclmulqdq,movbe,rdrand,rdseed,bmi1,bmi2,adx,fsgsbase,smap,smep,pcid,invpcid,rdpid,rdtscp,clwb,sha_ni,erms";

const LEAF_STRUCTURED_EXT: u32 = 0x7;
const LEAF_XSAVE: u32 = 0xd;
const LEAF_EXT_FEATURES: u32 = 0x8000_0001;

/// Applies `profile` (already resolved) to `cpuid`.
pub fn apply_profile(cpuid: &mut CpuId, profile: CpuProfile) {
    if profile != CpuProfile::PvmSafe {
        return;
    }
    for entry in cpuid.as_mut_slice() {
        match (entry.function, entry.index) {
            (LEAF_FEATURES, _) => entry.ecx &= !pvm_safe::LEAF1_ECX_REMOVE,
            (LEAF_STRUCTURED_EXT, 0) => {
                entry.ebx &= pvm_safe::LEAF7_EBX_KEEP;
                (entry.ecx, entry.edx) = (0, 0);
            }
            (LEAF_STRUCTURED_EXT, _) | (LEAF_XSAVE, _) => {
                (entry.eax, entry.ebx, entry.ecx, entry.edx) = (0, 0, 0, 0);
            }
            (LEAF_EXT_FEATURES, _) => {
                entry.ecx &= !pvm_safe::EXT1_ECX_REMOVE;
                entry.edx &= !pvm_safe::EXT1_EDX_REMOVE;
            }
            _ => {}
        }
    }
}

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
    fn pvm_safe_hides_what_the_emulator_rejects() {
        let mut cpuid = CpuId::from_entries(&[
            entry(LEAF_FEATURES, 0, 0, u32::MAX),
            kvm_cpuid_entry2 {
                function: LEAF_STRUCTURED_EXT,
                ebx: u32::MAX,
                ecx: u32::MAX,
                edx: u32::MAX,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: LEAF_XSAVE,
                index: 1,
                eax: 0xf,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: LEAF_EXT_FEATURES,
                ecx: u32::MAX,
                edx: u32::MAX,
                ..Default::default()
            },
        ])
        .unwrap();
        let untouched = cpuid.clone();
        apply_profile(&mut cpuid, CpuProfile::Host);
        assert_eq!(cpuid.as_slice(), untouched.as_slice());
        apply_profile(&mut cpuid, CpuProfile::PvmSafe);
        let e = cpuid.as_slice();
        for bit in [23, 26, 13, 19, 20, 28] {
            assert_eq!(e[0].ecx & (1 << bit), 0, "leaf 1 ECX bit {bit}");
        }
        assert_ne!(e[0].ecx & (1 << 31), 0, "hypervisor bit stays");
        assert_eq!((e[1].ebx, e[1].ecx, e[1].edx), ((1 << 9) | (1 << 23), 0, 0));
        assert_eq!(e[2].eax, 0);
        assert_eq!(e[3].edx & (1 << 27), 0, "RDTSCP");
        assert_eq!(e[3].ecx & (1 << 5), 0, "LZCNT");
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
