//! Server addresses as written on command lines and in directories:
//! `tcp://host:port`, `unix:///path`, or a bare `host:port`.

use std::fmt;
use std::path::PathBuf;

/// Where a memd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// TCP `host:port`.
    Tcp(String),
    /// Unix stream socket path.
    Unix(PathBuf),
}

/// An address string that is not a memd endpoint.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad memd address {0:?}: expected tcp://HOST:PORT, unix:///PATH or HOST:PORT")]
pub struct BadEndpoint(pub String);

impl Endpoint {
    /// Parses one address.
    pub fn parse(s: &str) -> Result<Self, BadEndpoint> {
        let s = s.trim();
        if let Some(p) = s.strip_prefix("unix://") {
            if p.is_empty() {
                return Err(BadEndpoint(s.into()));
            }
            return Ok(Self::Unix(p.into()));
        }
        let hp = s.strip_prefix("tcp://").unwrap_or(s);
        match hp.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok(Self::Tcp(hp.into())),
            _ => Err(BadEndpoint(s.into())),
        }
    }

    /// Parses a comma-separated list (the static directory).
    pub fn parse_list(s: &str) -> Result<Vec<Self>, BadEndpoint> {
        s.split(',')
            .filter(|x| !x.trim().is_empty())
            .map(Self::parse)
            .collect()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "tcp://{a}"),
            Self::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        assert_eq!(
            Endpoint::parse("tcp://h1:7600"),
            Ok(Endpoint::Tcp("h1:7600".into()))
        );
        assert_eq!(
            Endpoint::parse("127.0.0.1:1"),
            Ok(Endpoint::Tcp("127.0.0.1:1".into()))
        );
        assert_eq!(
            Endpoint::parse("unix:///tmp/s"),
            Ok(Endpoint::Unix("/tmp/s".into()))
        );
        assert!(Endpoint::parse("h1").is_err());
        assert!(Endpoint::parse("tcp://:99999").is_err());
        assert_eq!(Endpoint::parse_list("a:1, b:2").unwrap().len(), 2);
    }
}
