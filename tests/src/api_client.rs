//! A real HTTP/1.1 client (hyper) on the VMM's Unix socket, one keep-alive connection,
//! as kata's runtime uses it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::runtime::Runtime;

pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

pub struct ApiClient {
    runtime: Runtime,
    socket: PathBuf,
    sender: Option<SendRequest<Full<Bytes>>>,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl ApiClient {
    pub fn new(socket: &Path) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        ApiClient {
            runtime,
            socket: socket.to_path_buf(),
            sender: None,
        }
    }

    /// Sends one request on the shared connection (reconnecting if the VMM closed it).
    pub fn request(
        &mut self,
        method: &str,
        action: &str,
        body: Option<&str>,
    ) -> Result<Response, String> {
        let socket = self.socket.clone();
        let uri = format!("http://localhost/api/v1/{action}");
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header("Host", "localhost");
        let payload = match body {
            Some(b) => {
                builder = builder.header("Content-Type", "application/json");
                // kata's client adds a trailing newline after the JSON.
                Bytes::from(format!("{b}\n"))
            }
            None => Bytes::new(),
        };
        let request = builder
            .header("Content-Length", payload.len())
            .body(Full::new(payload))
            .map_err(|e| e.to_string())?;
        let mut sender = self.sender.take();
        let result = self.runtime.block_on(async {
            tokio::time::timeout(REQUEST_TIMEOUT, async {
                let mut s = match sender.take() {
                    Some(s) if s.is_ready() => s,
                    _ => connect(&socket).await?,
                };
                let resp = s.send_request(request).await.map_err(|e| e.to_string())?;
                let status = resp.status().as_u16();
                let content_type = resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes()
                    .to_vec();
                Ok::<_, String>((
                    s,
                    Response {
                        status,
                        content_type,
                        body,
                    },
                ))
            })
            .await
            .map_err(|_| "request timed out".to_string())?
        })?;
        self.sender = Some(result.0);
        Ok(result.1)
    }

    pub fn get(&mut self, action: &str) -> Response {
        self.request("GET", action, None)
            .unwrap_or_else(|e| panic!("GET {action}: {e}"))
    }

    pub fn put(&mut self, action: &str, body: Option<&str>) -> Response {
        self.request("PUT", action, body)
            .unwrap_or_else(|e| panic!("PUT {action}: {e}"))
    }
}

async fn connect(socket: &Path) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("connect {}: {e}", socket.display()))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
