//! Templates whose memory lives on memory servers (`revenant-memd`), ZombieLand style: the
//! snapshot's memory file is uploaded once into memd slabs, and clones restored in `remote`
//! mode fault each page in from there (userfaultfd) instead of from a local file.
//!
//! `remote.json` next to the template records where the slabs are and the client key that
//! owns them. The key is a capability (with the token, it reads and writes those slabs), so
//! the file is created readable by its owner only; the token itself stays in its own file.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use revenant_remote_mem::client::{ClientConfig, MemClient, SlabTable};
use revenant_remote_mem::endpoint::Endpoint;
use revenant_remote_mem::space::SlabSpace;
use revenant_template::{PageSource, TemplateManifest};
use serde::{Deserialize, Serialize};

/// Name of the remote-memory record inside a template directory.
pub const REMOTE_RECORD: &str = "remote.json";
/// Upload granularity: chunks that are all zero are not sent (slabs start zeroed).
const UPLOAD_CHUNK: usize = 1 << 20;
/// A memory server silent this long counts as dead (the client then fails over).
const SERVER_TIMEOUT: Duration = Duration::from_secs(5);

/// `memory_servers` in `vm.snapshot`: where to put the template's memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryServers {
    /// Comma-separated memd endpoints, e.g. `tcp://10.0.0.2:7600,tcp://10.0.0.3:7600`.
    pub servers: String,
    /// File holding the memd shared-secret token.
    pub token_file: PathBuf,
    /// Replicas per slab (default: 2 with two or more servers).
    #[serde(default)]
    pub replicas: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RemoteRecord {
    servers: String,
    token_file: PathBuf,
    replicas: Option<usize>,
    key: String,
    table: SlabTable,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteTemplateError {
    #[error("memory_servers.servers: {0}")]
    Servers(String),
    #[error("cannot read the memd token {path}: {source}")]
    Token {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("memory server: {0}")]
    Client(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a valid remote-memory record: {reason}")]
    Record { path: String, reason: String },
}

pub(crate) fn client_config(
    servers: &str,
    token_file: &Path,
    replicas: Option<usize>,
    key: Option<[u8; 16]>,
) -> Result<ClientConfig, RemoteTemplateError> {
    let endpoints = Endpoint::parse_list(servers).map_err(|e| RemoteTemplateError::Servers(e.0))?;
    let token = std::fs::read(token_file).map_err(|source| RemoteTemplateError::Token {
        path: token_file.display().to_string(),
        source,
    })?;
    Ok(ClientConfig {
        endpoints,
        token: trim_token(token),
        replicas,
        timeout: SERVER_TIMEOUT,
        backup_file: None,
        key,
    })
}

/// Token files usually end with a newline that is not part of the secret.
fn trim_token(mut token: Vec<u8>) -> Vec<u8> {
    while token.last().is_some_and(|b| b.is_ascii_whitespace()) {
        token.pop();
    }
    token
}

fn memory_file_path(dir: &Path, manifest: &TemplateManifest) -> PathBuf {
    let p = Path::new(&manifest.memory_file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// Copies the template's memory file into new memd slabs and writes `remote.json`.
pub fn upload(
    dir: &Path,
    manifest: &TemplateManifest,
    servers: &MemoryServers,
) -> Result<(), RemoteTemplateError> {
    let cfg = client_config(
        &servers.servers,
        &servers.token_file,
        servers.replicas,
        None,
    )?;
    let client =
        MemClient::connect(&cfg).map_err(|e| RemoteTemplateError::Client(e.to_string()))?;
    let space = SlabSpace::new(std::sync::Arc::new(client));
    let path = memory_file_path(dir, manifest);
    let io_err = |what| {
        let path = path.display().to_string();
        move |source| RemoteTemplateError::Io { what, path, source }
    };
    let file = File::open(&path).map_err(io_err("cannot open"))?;
    let len = manifest.memory.file_len;
    space
        .allocate(len)
        .map_err(|e| RemoteTemplateError::Client(e.to_string()))?;
    let mut chunk = vec![0u8; UPLOAD_CHUNK];
    let mut offset = 0u64;
    while offset < len {
        let n = (len - offset).min(UPLOAD_CHUNK as u64) as usize;
        file.read_exact_at(&mut chunk[..n], offset)
            .map_err(io_err("cannot read"))?;
        if chunk[..n].iter().any(|b| *b != 0) {
            space
                .write_at(&chunk[..n], offset)
                .map_err(|e| RemoteTemplateError::Client(e.to_string()))?;
        }
        offset += n as u64;
    }
    let client = space.client();
    let record = RemoteRecord {
        servers: servers.servers.clone(),
        token_file: servers.token_file.clone(),
        replicas: servers.replicas,
        key: hex(&client.key()),
        table: client.slab_table(),
    };
    let record_path = dir.join(REMOTE_RECORD);
    let text = serde_json::to_vec_pretty(&record).map_err(|e| RemoteTemplateError::Record {
        path: record_path.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&record_path)
        .map_err(|source| RemoteTemplateError::Io {
            what: "cannot write",
            path: record_path.display().to_string(),
            source,
        })?;
    io::Write::write_all(&mut out, &text).map_err(|source| RemoteTemplateError::Io {
        what: "cannot write",
        path: record_path.display().to_string(),
        source,
    })
}

/// A template's memory on memory servers, as the on-demand pager reads it.
#[derive(Clone)]
pub struct MemdPageSource(SlabSpace);

impl PageSource for MemdPageSource {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0
            .read_at(buf, offset)
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

/// Connects to the template's memory servers as the key that owns its slabs.
pub fn open(dir: &Path) -> Result<MemdPageSource, RemoteTemplateError> {
    let path = dir.join(REMOTE_RECORD);
    let bad = |reason: String| RemoteTemplateError::Record {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read(&path).map_err(|e| {
        bad(format!(
            "cannot read it ({e}); was the template uploaded with memory_servers?"
        ))
    })?;
    let record: RemoteRecord = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    let key = unhex(&record.key).ok_or_else(|| bad("key is not 32 hex digits".into()))?;
    let cfg = client_config(
        &record.servers,
        &record.token_file,
        record.replicas,
        Some(key),
    )?;
    let client = MemClient::attach(&cfg, &record.table)
        .map_err(|e| RemoteTemplateError::Client(e.to_string()))?;
    Ok(MemdPageSource(SlabSpace::with_slab_size(
        std::sync::Arc::new(client),
        record.table.slab_size,
    )))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    if s.len() != 32 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_hex() {
        let key = [
            0u8, 1, 0xab, 0xff, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 0x80,
        ];
        assert_eq!(unhex(&hex(&key)), Some(key));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex(&"zz".repeat(16)), None);
        assert_eq!(trim_token(b"secret\n".to_vec()), b"secret");
    }
}
