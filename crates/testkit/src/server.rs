//! The WebSocket server: accepts connections, routes them by path, and runs one protocol
//! session per connection against a shared [`Store`].
//!
//! Paths, as taosAdapter serves them: `/ws` (query protocol, tried first by taos-ws 0.12.3),
//! `/rest/ws` (its fallback, and the path for `?token=` DSNs), `/rest/tmq` (TMQ data
//! subscription, see `server/tmq.rs` and `docs/emulator-tmq.md`). Anything else is answered
//! `404 Not Found` during the HTTP upgrade, which is what makes the client fall back.

mod fault;
mod net;
mod query;
mod tmq;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::error::EmuError;
use crate::store::{Store, StoreConfig};

pub use fault::{Fault, FaultAction, FaultPoint, FaultStats, Trigger};

/// How to run an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Version reported in the handshake and by `SELECT SERVER_VERSION()`. Versions from
    /// 3.3.0.8 on select the binary query protocol (actions 6/7); older ones the JSON
    /// `query`/`fetch`/`fetch_block` protocol.
    pub server_version: String,
    /// User accepted at login.
    pub user: String,
    /// Password accepted at login.
    pub password: String,
    /// Token accepted in `?token=` DSNs; `None` accepts no token.
    pub token: Option<String>,
    /// Serve only the legacy `/rest/ws` path, answering `/ws` with 404, as older taosAdapters
    /// do; exercises the client's fallback.
    pub legacy_paths_only: bool,
    /// Maximum rows per raw block in fetch replies.
    pub block_rows: usize,
    /// Acknowledge every read at once (`TCP_QUICKACK`), which taosAdapter does not do: a
    /// leniency that hides the ~40 ms a request waits for a delayed ACK when its client
    /// leaves Nagle's algorithm on (see `server/net.rs`). Off by default.
    pub quick_ack: bool,
}

/// The environment variable that picks the server version (and so the behaviour set) of the
/// emulators the end-to-end tests and the demo start: `TAOS_EMU_SERVER_VERSION=3.4.0.0`.
pub const SERVER_VERSION_ENV: &str = "TAOS_EMU_SERVER_VERSION";

impl EmulatorConfig {
    /// The default configuration with the server version of [`SERVER_VERSION_ENV`] when it
    /// is set (the suite runs its end-to-end tests once per behaviour set this way).
    pub fn from_env() -> EmulatorConfig {
        let mut c = EmulatorConfig::default();
        if let Ok(v) = std::env::var(SERVER_VERSION_ENV) {
            if !v.trim().is_empty() {
                c.server_version = v.trim().to_string();
            }
        }
        c
    }
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            server_version: "3.3.6.0".into(),
            user: "root".into(),
            password: "taosdata".into(),
            token: None,
            legacy_paths_only: false,
            block_rows: 4096,
            quick_ack: false,
        }
    }
}

/// Counters and controls shared by the server's connections.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Result sets currently held open by clients.
    pub(crate) open_results: AtomicUsize,
    /// Connections currently open.
    pub(crate) open_connections: AtomicUsize,
    /// Requests served, all kinds.
    pub(crate) requests: AtomicU64,
    /// Next result id.
    pub(crate) next_result_id: AtomicU64,
    /// Programmed faults.
    pub(crate) faults: fault::Plan,
}

/// Entry point: start an emulator.
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// Binds the listener and serves on a background thread with its own runtime, so the
    /// emulator works the same under sync and async tests. Returns once the socket is bound.
    pub fn start(config: EmulatorConfig) -> std::io::Result<EmulatorHandle> {
        // Bind synchronously so the caller knows the port, and so `start` works from inside
        // a runtime as well as outside one.
        let std_listener = std::net::TcpListener::bind(config.listen)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("taos-emu")
            .enable_all()
            .build()?;
        let store = Arc::new(Store::new(StoreConfig {
            user: config.user.clone(),
            password: config.password.clone(),
            server_version: config.server_version.clone(),
        }));
        let shared = Arc::new(Shared::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let (kick_tx, kick_rx) = watch::channel(0u64);
        let server = Server {
            config: Arc::new(config),
            store: store.clone(),
            shared: shared.clone(),
            kick: kick_rx,
        };
        let thread = std::thread::Builder::new()
            .name("taos-emu-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(std_listener) {
                        Ok(listener) => server.serve(listener, stop_rx).await,
                        Err(err) => tracing::error!(%err, "cannot register the listener"),
                    }
                });
                // Connection tasks may still hold sockets; do not wait for them.
                runtime.shutdown_background();
            })?;
        Ok(EmulatorHandle {
            addr,
            store,
            shared,
            stop: stop_tx,
            kick: kick_tx,
            thread: Some(thread),
        })
    }
}

/// A running emulator. Dropping it stops the server and closes every connection.
#[derive(Debug)]
pub struct EmulatorHandle {
    addr: SocketAddr,
    store: Arc<Store>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    kick: watch::Sender<u64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmulatorHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A DSN for the `taos` crate: `ws://127.0.0.1:PORT`.
    pub fn dsn(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The store behind the server, for direct inspection and setup in tests.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Result sets currently held open by clients.
    pub fn open_results(&self) -> usize {
        self.shared.open_results.load(Ordering::SeqCst)
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections.load(Ordering::SeqCst)
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Drops every open connection at once (their TCP sockets are closed without a close
    /// frame), as a crashed or restarted taosAdapter would. New connections are accepted.
    pub fn disconnect_all(&self) {
        self.kick.send_modify(|g| *g += 1);
    }

    /// Programs a fault (see `docs/emulator.md`, "Fault injection"); returns its index for
    /// [`EmulatorHandle::fault_stats`]. Faults are checked in the order they were injected;
    /// the first that fires on a request acts, and every matching fault counts the request.
    pub fn inject(&self, fault: Fault) -> usize {
        self.shared.faults.add(fault)
    }

    /// Removes every programmed fault (their counters too).
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// Counters of each programmed fault, by injection index.
    pub fn fault_stats(&self) -> Vec<FaultStats> {
        self.shared.faults.stats()
    }

    /// Times any programmed fault fired.
    pub fn faults_fired(&self) -> u64 {
        self.fault_stats().iter().map(|s| s.fired).sum()
    }

    /// Stops the server and waits for it.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// A server-side WebSocket over the server's TCP stream.
pub(crate) type Ws = tokio_tungstenite::WebSocketStream<net::QuickAckStream>;

/// One protocol's per-connection state: answers each text or binary frame with at most one
/// reply.
pub(crate) trait Protocol {
    /// Whether this is the TMQ protocol (for classifying requests for fault injection).
    const TMQ: bool;

    /// Handles one data frame (text or binary; never ping, pong or close).
    async fn on_frame(&mut self, frame: Message) -> Option<Message>;

    /// The error reply to `req` in this protocol's shape, for an injected error.
    fn fault_reply(req: &fault::Request, err: &EmuError) -> Message;
}

/// The frame loop every protocol shares: runs `conn` until the client leaves, the server
/// stops, or the emulator is told to drop every connection.
pub(crate) async fn serve<P: Protocol>(
    server: &Server,
    ws: Ws,
    mut stop: watch::Receiver<bool>,
    mut conn: P,
) {
    use futures::{SinkExt, StreamExt};
    let (mut sink, mut stream) = ws.split();
    let mut kick = server.kick.clone();
    kick.mark_unchanged();
    // The SQL of the connection's latest statement, for `Fault::matching` on fetches.
    let mut last_sql = String::new();
    loop {
        let msg = tokio::select! {
            msg = stream.next() => msg,
            _ = stop.changed() => return,
            // Dropping the socket without a close frame, as a crashed server would.
            _ = kick.changed() => return,
        };
        let reply = match msg {
            Some(Ok(frame @ (Message::Text(_) | Message::Binary(_)))) => {
                let req = fault::classify(&frame, P::TMQ);
                let action = req.as_ref().and_then(|req| {
                    if req.point == FaultPoint::Query {
                        last_sql.clone_from(&req.text);
                    }
                    server.shared.faults.check(req, &last_sql)
                });
                match (action, req) {
                    (Some(FaultAction::Drop), _) => return,
                    (Some(FaultAction::Error { code, message }), Some(req)) => {
                        Some(P::fault_reply(&req, &EmuError::new(code, message)))
                    }
                    (Some(FaultAction::Stall(d)), _) => {
                        tokio::select! {
                            _ = tokio::time::sleep(d) => {}
                            _ = stop.changed() => return,
                            _ = kick.changed() => return,
                        }
                        conn.on_frame(frame).await
                    }
                    _ => conn.on_frame(frame).await,
                }
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
            Some(Ok(_)) => None, // ping/pong are answered by tungstenite
        };
        server.shared.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(reply) = reply {
            if sink.send(reply).await.is_err() {
                return;
            }
        }
    }
}

/// What each connection task needs.
#[derive(Clone)]
pub(crate) struct Server {
    pub(crate) config: Arc<EmulatorConfig>,
    pub(crate) store: Arc<Store>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) kick: watch::Receiver<u64>,
}

/// The protocol a connection asked for by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Query,
    Tmq,
}

impl Server {
    async fn serve(self, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let server = self.clone();
                        let stop = stop.clone();
                        tasks.spawn(async move { server.connection(stream, peer, stop).await });
                    }
                    Err(err) => {
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                },
                _ = stop.changed() => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }

    // The handshake callback's error type (a whole HTTP response) is fixed by tungstenite.
    #[allow(clippy::result_large_err)]
    async fn connection(self, stream: TcpStream, peer: SocketAddr, stop: watch::Receiver<bool>) {
        let stream = net::quick_ack_stream(stream, self.config.quick_ack);
        let mut route = None;
        let legacy_only = self.config.legacy_paths_only;
        let token = self.config.token.clone();
        let callback = |req: &Request, resp: Response| {
            let path = req.uri().path();
            let query = req.uri().query().unwrap_or("");
            let given_token = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("token="))
                .map(str::to_owned);
            let r = match path.trim_end_matches('/') {
                "/ws" if !legacy_only => Some(Route::Query),
                "/rest/ws" => Some(Route::Query),
                "/rest/tmq" => Some(Route::Tmq),
                _ => None,
            };
            if let Some(given) = given_token {
                if token.as_deref() != Some(given.as_str()) {
                    return Err(http_error(StatusCode::UNAUTHORIZED));
                }
            }
            match r {
                Some(r) => {
                    route = Some(r);
                    Ok(resp)
                }
                None => Err(http_error(StatusCode::NOT_FOUND)),
            }
        };
        // Raw-block writes and fetches can be large; TDengine has no frame limit either.
        // tungstenite zero-fills its read buffer up to `read_buffer_size` before every read
        // (`FrameCodec::read_in`); its default, 128 KiB, is far more than one read of a
        // loopback socket returns, and the zero-filling was ~2% of the emulator's CPU while
        // a restore wrote into it. 32 KiB, as the tool's own client reads
        // (taosbackup-source `wsquery`).
        let ws_config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None)
            .read_buffer_size(32 * 1024);
        let ws = match tokio_tungstenite::accept_hdr_async_with_config(
            stream,
            callback,
            Some(ws_config),
        )
        .await
        {
            Ok(ws) => ws,
            Err(err) => {
                tracing::debug!(%peer, %err, "websocket handshake refused");
                return;
            }
        };
        self.shared.open_connections.fetch_add(1, Ordering::SeqCst);
        match route {
            Some(Route::Query) => query::run(self.clone(), ws, stop).await,
            Some(Route::Tmq) => tmq::run(self.clone(), ws, stop).await,
            None => {}
        }
        self.shared.open_connections.fetch_sub(1, Ordering::SeqCst);
    }
}

fn http_error(
    status: StatusCode,
) -> tokio_tungstenite::tungstenite::handshake::server::ErrorResponse {
    let mut resp = tokio_tungstenite::tungstenite::handshake::server::ErrorResponse::new(Some(
        status.canonical_reason().unwrap_or("error").to_string(),
    ));
    *resp.status_mut() = status;
    resp
}
