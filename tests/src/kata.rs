//! What kata's runtime sends, for the conformance test and the kata-start benchmark.

/// kata's `vm.create` body (clh.go createVM) with a raw test guest (`mode` "real" or
/// "long") in place of its kernel and the hybrid vsock socket in `dir`.
pub fn vm_config(image: &std::path::Path, mode: &str, dir: &std::path::Path) -> String {
    // The body of kata's clh.go createVM, with a test guest in place of its kernel. Every
    // field kata sets is here, including those Revenant does not implement (ignored with a
    // warning, as Cloud Hypervisor ignores unknown fields).
    format!(
        r#"{{"payload":{{"test_guest":{{"path":"{image}","mode":"{mode}"}}}},"cpus":{{"boot_vcpus":1,"max_vcpus":4,"kvm_hyperv":false,"nested":false,"topology":{{"threads_per_core":1,"cores_per_die":1,"dies_per_package":1,"packages":1}}}},"memory":{{"size":33554432,"hotplug_size":0,"hotplug_method":"Acpi","shared":true,"hugepages":false,"mergeable":false,"prefault":false,"thp":true}},"rng":{{"src":"/dev/urandom"}},"serial":{{"mode":"Off"}},"console":{{"mode":"Off"}},"vsock":{{"cid":3,"socket":"{dir}/clh.sock"}},"platform":{{"num_pci_segments":2}},"iommu":false,"watchdog":false,"pvpanic":false,"landlock_enable":false,"balloon":{{"size":0,"free_page_reporting":true}},"tdx":null,"sev_snp":null}}"#,
        image = image.display(),
        dir = dir.display()
    )
}
