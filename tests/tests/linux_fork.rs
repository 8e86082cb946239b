//! Tier 3, "boot once, fork forever": the lean kernel boots once into a cached template
//! (`tests/src/linux_template.rs`); clones restored from it in `cow` and `ondemand` modes get
//! their own console (`vm.restore {"serial": ...}`) and run a script handed to them on a
//! hot-plugged disk, within seconds of the restore instead of a ~35 s boot.

use std::time::{Duration, Instant};

use revenant_tests::linux_template::{linux_template, LinuxClone};

#[test]
fn clones_of_the_cached_linux_template_run_work_they_are_given() {
    let name = "clones_of_the_cached_linux_template_run_work_they_are_given";
    let Some(template) = linux_template(name) else {
        return;
    };
    for mode in ["cow", "ondemand"] {
        let t0 = Instant::now();
        let mut clone = LinuxClone::fork(&template, mode);
        let restored = t0.elapsed();
        clone.run_script(
            "echo \"REVENANT-ANSWER $((6 * 7)) $(cat /proc/sys/kernel/random/boot_id | wc -c)\"",
        );
        let line = clone.wait_for("REVENANT-ANSWER", Duration::from_secs(60));
        assert!(line.contains("REVENANT-ANSWER 42 37"), "{mode}: {line}");
        let exit = clone.wait_for("REVENANT-RUN", Duration::from_secs(30));
        assert!(exit.ends_with("EXIT 0"), "{mode}: {exit}");
        eprintln!(
            "{mode} clone: restored in {restored:?}, script output after {:?}",
            t0.elapsed()
        );
        // The console is the clone's own: the template's boot log is not in it.
        let text = std::fs::read_to_string(&clone.console).unwrap();
        assert!(!text.contains("REVENANT-READY"), "{mode}: {text}");
    }
}
