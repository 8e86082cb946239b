//! A network namespace a test makes for itself (with iproute2's `ip netns`), so traffic
//! between a guest and "the host" stays inside it: an interface moved in (a VMM's tap keeps
//! working through its fd) gets an address there. Deleted on drop.

use std::io;
use std::process::Command;

pub struct NetNamespace {
    name: String,
}

/// iproute2's `ip` (a non-root PATH often lacks /usr/sbin and /sbin).
fn ip_command() -> Command {
    let found = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    Command::new(found.unwrap_or("ip"))
}

fn ip(args: &[&str]) -> io::Result<()> {
    let out = ip_command().args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl NetNamespace {
    pub fn create(name: &str) -> io::Result<NetNamespace> {
        ip(&["netns", "add", name])?;
        let ns = NetNamespace {
            name: name.to_string(),
        };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Moves interface `ifname` into the namespace, gives it `cidr` and brings it up.
    pub fn adopt(&self, ifname: &str, cidr: &str) -> io::Result<()> {
        ip(&["link", "set", ifname, "netns", &self.name])?;
        ip(&["-n", &self.name, "addr", "add", cidr, "dev", ifname])?;
        ip(&["-n", &self.name, "link", "set", ifname, "up"])
    }
}

impl Drop for NetNamespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}
