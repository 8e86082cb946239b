//! A MAC address: parsed from and printed as `52:54:00:12:34:56`, serialized as that
//! string, and a random locally administered one for a device given none.

use std::fmt;
use std::str::FromStr;

/// An Ethernet (EUI-48) address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

/// Why a string or an address is not a usable MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    #[error("{0:?} is not a MAC address (six two-digit hex bytes separated by ':', as in 52:54:00:12:34:56)")]
    Syntax(String),
    #[error("{0} is a multicast address (the low bit of its first byte is set); a network card needs a unicast one")]
    Multicast(MacAddr),
    #[error("{0} is the all-zero address, which no network card may use")]
    Zero(MacAddr),
}

/// Bit 0 of the first byte: a group (multicast or broadcast) address.
const GROUP_BIT: u8 = 0x01;
/// Bit 1 of the first byte: a locally administered address (not from a vendor's OUI).
const LOCAL_BIT: u8 = 0x02;

impl MacAddr {
    pub const LEN: usize = 6;

    pub fn bytes(&self) -> [u8; 6] {
        self.0
    }

    pub fn is_multicast(&self) -> bool {
        self.0[0] & GROUP_BIT != 0
    }

    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & LOCAL_BIT != 0
    }

    /// Refuses an address a network card cannot have: a multicast (or broadcast) one, or
    /// all zeros.
    pub fn check_unicast(&self) -> Result<(), MacError> {
        if self.is_multicast() {
            Err(MacError::Multicast(*self))
        } else if self.0 == [0; 6] {
            Err(MacError::Zero(*self))
        } else {
            Ok(())
        }
    }

    /// A random unicast, locally administered address (first byte `x2`, `x6`, `xa` or
    /// `xe`), so it never collides with a vendor-assigned one. The bytes come from the
    /// kernel's random source (`getrandom(2)`, else `/dev/urandom`); if neither answers,
    /// from the clock and the process id, which still differs between VMMs started apart.
    pub fn random_local() -> MacAddr {
        let mut b = [0u8; 6];
        if !fill_random(&mut b) {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let mixed = nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15;
            b.copy_from_slice(&mixed.wrapping_mul(0xff51_afd7_ed55_8ccd).to_le_bytes()[..6]);
        }
        b[0] = (b[0] & !GROUP_BIT) | LOCAL_BIT;
        let mac = MacAddr(b);
        if mac.check_unicast().is_err() {
            // Unreachable: the local bit makes the first byte non-zero.
            return MacAddr([LOCAL_BIT, 0, 0, 0, 0, 1]);
        }
        mac
    }
}

/// Fills `buf` from `getrandom(2)`, falling back to `/dev/urandom`; false if neither could.
fn fill_random(buf: &mut [u8]) -> bool {
    // SAFETY: getrandom writes at most `buf.len()` bytes into `buf`, which we own.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if usize::try_from(n).is_ok_and(|n| n == buf.len()) {
        return true;
    }
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_ok()
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

impl FromStr for MacAddr {
    type Err = MacError;

    /// Exactly six groups of two hex digits separated by ':' (either case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacError::Syntax(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prints_and_round_trips_through_serde() {
        let mac: MacAddr = "52:54:00:12:34:56".parse().unwrap();
        assert_eq!(mac, MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        assert_eq!(mac.to_string(), "52:54:00:12:34:56");
        let upper: MacAddr = "AA:bb:0C:dd:EE:0f".parse().unwrap();
        assert_eq!(upper.to_string(), "aa:bb:0c:dd:ee:0f");
        let json = serde_json::to_string(&mac).unwrap();
        assert_eq!(json, "\"52:54:00:12:34:56\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&json).unwrap(), mac);
        let bytes = postcard::to_allocvec(&mac).unwrap();
        assert_eq!(postcard::from_bytes::<MacAddr>(&bytes).unwrap(), mac);
        assert!(serde_json::from_str::<MacAddr>("\"52:54:00\"").is_err());
    }

    #[test]
    fn malformed_strings_are_refused() {
        for bad in [
            "",
            "52:54:00:12:34",
            "52:54:00:12:34:56:78",
            "52:54:00:12:34:5",
            "52:54:00:12:34:567",
            "52-54-00-12-34-56",
            "52:54:00:12:34:5g",
            "52:54:00:12:34:+5",
            "52:54:00:12:34:56:",
            " 52:54:00:12:34:56",
        ] {
            let e = bad.parse::<MacAddr>().unwrap_err();
            assert_eq!(e, MacError::Syntax(bad.to_string()), "{bad:?}");
            assert!(e.to_string().contains("52:54:00:12:34:56"));
        }
    }

    #[test]
    fn only_unicast_addresses_pass() {
        let multicast: MacAddr = "01:00:5e:00:00:01".parse().unwrap();
        assert!(matches!(
            multicast.check_unicast(),
            Err(MacError::Multicast(_))
        ));
        let broadcast = MacAddr([0xff; 6]);
        assert!(broadcast.check_unicast().is_err());
        assert!(matches!(
            MacAddr([0; 6]).check_unicast(),
            Err(MacError::Zero(_))
        ));
        let e = multicast.check_unicast().unwrap_err().to_string();
        assert!(
            e.contains("01:00:5e:00:00:01") && e.contains("multicast"),
            "{e}"
        );
        assert!("52:54:00:12:34:56"
            .parse::<MacAddr>()
            .unwrap()
            .check_unicast()
            .is_ok());
    }

    #[test]
    fn random_addresses_are_local_unicast_and_differ() {
        let macs: Vec<MacAddr> = (0..16).map(|_| MacAddr::random_local()).collect();
        for m in &macs {
            assert!(m.check_unicast().is_ok(), "{m}");
            assert!(m.is_locally_administered(), "{m}");
        }
        let distinct: std::collections::HashSet<_> = macs.iter().collect();
        assert!(distinct.len() > 1, "16 random addresses are not all equal");
    }
}
