//! The HTTP server (HTTP/1.1 and h2c): accept loops (main and admin), routing, fault modes, and the
//! non-streaming answers.
//!
//! The main listener lives in [`Shared`] rather than in the accept loop so that a switch to
//! [`Mode::Down`] closes it synchronously, inside [`Shared::set_mode`]: once that returns,
//! connect() is refused. The accept loop polls whatever listener the slot holds and re-polls
//! on every mode switch.

use std::convert::Infallible;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};

use super::config::SimConfig;
use super::images;
use super::mode::Mode;
use super::openai::{self, Shapes};
use super::plan::{self, Api};
use super::sglang;
use super::stats::{Arrival, InflightGuard, Stats};
use super::stream;

/// Every response body: fixed bytes or a generated stream.
pub type SimBody = BoxBody<Bytes, io::Error>;

/// Re-binding the main port after `Down`: attempts, and the pause between them.
const REBIND_ATTEMPTS: u32 = 20;
const REBIND_PAUSE: Duration = Duration::from_millis(50);

/// State all connections share.
#[derive(Debug)]
pub struct Shared {
    pub config: RwLock<SimConfig>,
    pub stats: Arc<Stats>,
    pub created: u64,
    /// The main listener's address; `Down` -> up re-binds exactly this.
    pub addr: SocketAddr,
    /// The main listener: `None` while `Down` and once stopped.
    listener: Mutex<Option<TcpListener>>,
    mode: watch::Sender<Mode>,
    /// Bumped by every switch to `Down`: connections accepted before it are dropped.
    epoch: watch::Sender<u64>,
    /// Serializes mode switches and shutdown.
    switching: Mutex<()>,
    /// Set on shutdown: the listener is never re-bound after that.
    stopped: AtomicBool,
    /// The runtime the sim serves on: listeners are registered with it.
    runtime: tokio::runtime::Handle,
}

impl Shared {
    /// `listener` must be registered with `runtime`.
    pub fn new(
        config: SimConfig,
        listener: TcpListener,
        runtime: tokio::runtime::Handle,
    ) -> io::Result<Self> {
        Ok(Self {
            config: RwLock::new(config),
            stats: Arc::default(),
            created: openai::created(),
            addr: listener.local_addr()?,
            listener: Mutex::new(Some(listener)),
            mode: watch::Sender::new(Mode::Normal),
            epoch: watch::Sender::new(0),
            switching: Mutex::new(()),
            stopped: AtomicBool::new(false),
            runtime,
        })
    }

    /// The config at this instant; a request keeps the one it arrived with.
    pub fn config(&self) -> SimConfig {
        self.config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Switches the fault mode. Into `Down`: the listener is closed before this returns and
    /// open connections are dropped (asynchronously, by their tasks). Out of `Down`: the same
    /// address is bound again (`SO_REUSEADDR`, a few attempts over about a second; this
    /// blocks meanwhile); if that fails the sim stays `Down` and the error comes back.
    pub fn set_mode(&self, mode: Mode) -> anyhow::Result<()> {
        let _switching = self
            .switching
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.stopped.load(Ordering::SeqCst) {
            anyhow::bail!("gpu-sim: the server has stopped");
        }
        let old = *self.mode.borrow();
        if mode == Mode::Down && old != Mode::Down {
            let mut slot = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
            // Dropping the listener closes the socket: connect() is refused from here on.
            drop(slot.take());
            // Under the listener lock, so an accepted connection's epoch is never stale.
            self.epoch.send_modify(|epoch| *epoch += 1);
        } else if mode != Mode::Down && old == Mode::Down {
            let listener = self.rebind()?;
            *self.listener.lock().unwrap_or_else(PoisonError::into_inner) = Some(listener);
        }
        // Wakes hung requests and the accept loop (which re-polls the listener slot).
        self.mode.send_replace(mode);
        Ok(())
    }

    /// Closes the main listener for good (shutdown).
    pub fn close(&self) {
        let _switching = self
            .switching
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.stopped.store(true, Ordering::SeqCst);
        drop(
            self.listener
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    fn rebind(&self) -> anyhow::Result<TcpListener> {
        // Registering the new listener needs the sim's runtime, whoever calls.
        let _runtime = self.runtime.enter();
        let mut attempt = 1;
        loop {
            match bind_reusing(self.addr) {
                Ok(listener) => return Ok(listener),
                Err(e) if attempt >= REBIND_ATTEMPTS => {
                    return Err(e).with_context(|| {
                        format!(
                            "gpu-sim: cannot re-bind {} after {attempt} attempts",
                            self.addr
                        )
                    })
                }
                Err(_) => {
                    attempt += 1;
                    std::thread::sleep(REBIND_PAUSE);
                }
            }
        }
    }

    /// Accepts from the current main listener, with the epoch the connection belongs to.
    /// Pending without a waker while there is no listener: a mode switch wakes the loop.
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, u64)>> {
        let slot = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_ref() {
            None => Poll::Pending,
            Some(listener) => listener
                .poll_accept(cx)
                .map_ok(|(tcp, _peer)| (tcp, *self.epoch.borrow())),
        }
    }
}

fn bind_reusing(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    Main,
    /// Only `/sim/*`.
    Admin,
}

/// Accepts connections on the main listener until `shutdown` turns true (or its sender is
/// gone). Connection tasks live in a `JoinSet`, so returning from here aborts every open
/// connection, and the stream generators stop when their bodies drop.
pub async fn serve(shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    let mut modes = shared.mode.subscribe();
    let stop = stopped(shutdown);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            // The listener slot may have changed: loop to poll it afresh.
            changed = modes.changed() => if changed.is_err() { break },
            accepted = poll_fn(|cx| shared.poll_accept(cx)) => match accepted {
                Ok((tcp, epoch)) => {
                    connections.spawn(serve_connection(tcp, Arc::clone(&shared), Port::Main, epoch));
                }
                Err(e) => {
                    // Out of descriptors and the like: back off rather than spin.
                    eprintln!("gpu-sim: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections so the set does not grow for the server's life.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    shared.close();
}

/// The admin listener: `/sim/*` only, unaffected by modes.
pub async fn serve_admin(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let stop = stopped(shutdown);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    connections.spawn(serve_connection(tcp, Arc::clone(&shared), Port::Admin, 0));
                }
                Err(e) => {
                    eprintln!("gpu-sim: admin accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Resolves once shutdown is asked for or the handle is gone. A separate function so the
/// watch guard `wait_for` returns is dropped at once instead of living inside the select.
async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&stop| stop).await;
}

/// Resolves once the sim went `Down` after connection epoch `epoch`.
async fn went_down(mut epochs: watch::Receiver<u64>, epoch: u64) {
    let _ = epochs.wait_for(|&now| now != epoch).await;
}

/// Resolves once the mode is no longer `mode`.
async fn mode_leaves(mut modes: watch::Receiver<Mode>, mode: Mode) {
    let _ = modes.wait_for(|&now| now != mode).await;
}

/// Per connection: a mode switch to apply once the connection is closed (`POST
/// /sim/mode/down` on the main port must answer before its own connection drops).
type Deferred = Arc<Mutex<Option<Mode>>>;

async fn serve_connection(tcp: TcpStream, shared: Arc<Shared>, port: Port, epoch: u64) {
    // Each SSE event is a small write; Nagle would hold it back until the previous one is
    // acknowledged and skew the timing the proxy measures.
    if let Err(e) = tcp.set_nodelay(true) {
        eprintln!("gpu-sim: set_nodelay failed: {e}");
    }
    let deferred = Deferred::default();
    let service = {
        let shared = Arc::clone(&shared);
        let deferred = Arc::clone(&deferred);
        service_fn(move |req| handle(req, Arc::clone(&shared), port, Arc::clone(&deferred)))
    };
    // HTTP/1.1, or h2c with prior knowledge (an Envoy cluster with http2_protocol_options).
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(tcp), service);
    // Errors here are clients leaving and simulated resets: both expected.
    match port {
        Port::Admin => {
            let _ = connection.await;
        }
        Port::Main => {
            tokio::select! {
                _ = connection => {}
                // `Down` drops every connection of the epoch before it.
                () = went_down(shared.epoch.subscribe(), epoch) => {}
            }
        }
    }
    let pending = deferred
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(mode) = pending {
        if let Err(e) = switch_mode(&shared, mode).await {
            eprintln!("{e:#}");
        }
    }
}

/// [`Shared::set_mode`] off the async workers (re-binding may sleep between attempts).
async fn switch_mode(shared: &Arc<Shared>, mode: Mode) -> anyhow::Result<()> {
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || shared.set_mode(mode))
        .await
        .context("gpu-sim: mode switch task failed")?
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    port: Port,
    deferred: Deferred,
) -> Result<Response<SimBody>, Infallible> {
    let arrived = Instant::now();
    let path = req.uri().path().to_owned();
    if let Some(rest) = path.strip_prefix("/sim/") {
        return Ok(admin(req.method(), rest, &shared, port, &deferred).await);
    }
    if port == Port::Admin {
        return Ok(error(
            404,
            &format!("Not Found: {} {path} (admin port)", req.method()),
        ));
    }
    let (parts, body) = req.into_parts();
    // Read the whole body first, even when failing on purpose: it is logged, and the
    // connection stays reusable.
    let body = body.collect().await.map(|c| c.to_bytes());
    let inflight = shared.stats.begin(&Arrival {
        path: &path,
        at: arrived.into_std(),
        authority: parts.uri.authority().map(|a| a.as_str()),
        headers: &parts.headers,
        body: body.as_ref().map_or(&[][..], |b| &b[..]),
    });
    let api = if parts.method == Method::POST {
        Api::from_path(&path)
    } else {
        None
    };
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            let message = format!("could not read request body: {e}");
            return Ok(api_error(api, 400, &message));
        }
    };
    let response = match (api, &parts.method, path.as_str()) {
        (Some(api), _, _) => {
            inference(api, &parts.headers, &body, &shared, arrived, inflight).await
        }
        (None, &Method::POST, images::PATH) => image(&body, &shared, arrived, inflight).await,
        (None, &Method::GET, "/v1/models") => {
            let cfg = shared.config();
            json(
                StatusCode::OK,
                openai::models_body_for(cfg.flavor, &cfg.model, shared.created),
            )
        }
        (None, &Method::GET, "/health") => Response::new(Empty::new().map_err(never).boxed()),
        _ => error(404, &format!("Not Found: {} {path}", parts.method)),
    };
    Ok(response)
}

/// `/sim/*`: `GET stats`, `GET mode`, `POST mode/<hang|slow|error|down|recover|normal>`.
async fn admin(
    method: &Method,
    route: &str,
    shared: &Arc<Shared>,
    port: Port,
    deferred: &Deferred,
) -> Response<SimBody> {
    match (method, route) {
        (&Method::GET, "stats") => {
            let body = serde_json::to_vec(&shared.stats.snapshot()).unwrap_or_default();
            json(StatusCode::OK, Bytes::from(body))
        }
        (&Method::GET, "mode") => mode_body(shared.mode()),
        (&Method::POST, route) if route.starts_with("mode/") => {
            let mode: Mode = match route["mode/".len()..].parse() {
                Ok(mode) => mode,
                Err(message) => return error(400, &message),
            };
            if port == Port::Main && mode == Mode::Down {
                // Answer first, then go down once this connection is closed.
                *deferred.lock().unwrap_or_else(PoisonError::into_inner) = Some(mode);
                let mut response = mode_body(mode);
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
            match switch_mode(shared, mode).await {
                Ok(()) => mode_body(mode),
                Err(e) => error(500, &format!("{e:#}")),
            }
        }
        _ => error(404, &format!("Not Found: {method} /sim/{route}")),
    }
}

fn mode_body(mode: Mode) -> Response<SimBody> {
    json(
        StatusCode::OK,
        Bytes::from(format!(r#"{{"mode":"{}"}}"#, mode.as_str())),
    )
}

/// The fault mode an inference request is answered in, and when it counts as arrived: in
/// `Hang` it is accepted and never answered while the hang lasts (no status line, the
/// connection held; if the client leaves, hyper drops the future and the inflight guard),
/// then answered as a request arriving at the release.
async fn wait_out_hang(shared: &Shared, arrived: Instant) -> (Mode, Instant) {
    let mut modes = shared.mode.subscribe();
    let mode = *modes.borrow_and_update();
    if mode != Mode::Hang {
        return (mode, arrived);
    }
    mode_leaves(modes.clone(), Mode::Hang).await;
    let mode = *modes.borrow_and_update();
    (mode, Instant::now())
}

async fn inference(
    api: Api,
    headers: &HeaderMap,
    body: &[u8],
    shared: &Shared,
    arrived: Instant,
    inflight: InflightGuard,
) -> Response<SimBody> {
    let (mode, arrived) = wait_out_hang(shared, arrived).await;
    if mode == Mode::Error {
        return api_error(Some(api), 500, "simulated engine failure (mode error)");
    }
    let cfg = shared.config();
    let mut overrides = match plan::overrides(headers, &cfg) {
        Ok(o) => o,
        Err(message) => return api_error(Some(api), 400, &message),
    };
    if let Some(status) = overrides.fail_status {
        return api_error(Some(api), status, "simulated failure");
    }
    if mode == Mode::Slow {
        overrides.ttft = overrides.ttft.saturating_mul(cfg.slow_factor);
    }
    let plan = match plan::plan(api, body, &overrides, &cfg.model) {
        Ok(p) => p,
        Err(message) => return api_error(Some(api), 400, &message),
    };
    let shapes = Shapes::new(&plan, shared.created).arrived_at(arrived);
    if plan.stream {
        let body = stream::start(plan, shapes, arrived, inflight);
        let mut response = Response::new(body.boxed());
        // What vLLM and SGLang (Starlette) send for their StreamingResponse.
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        return response;
    }
    // Unary: answer when the last token would have been generated. If the client leaves
    // meanwhile, hyper drops this future and the inflight guard with it.
    match plan.unary_offset().and_then(|d| arrived.checked_add(d)) {
        Some(due) => sleep_until(due).await,
        None => std::future::pending().await,
    }
    if plan.unary_garbage {
        return json(StatusCode::OK, Bytes::from_static(b"{\"id\": broken"));
    }
    json(StatusCode::OK, shapes.unary(plan.tokens))
}

/// `POST /v1/images/generations`, in every fault mode but `Down` (the listener's): held while
/// hung, a 500 in `Error`, `slow_factor` times the TTFT in `Slow`; the config's
/// `fail_status` and `unary_garbage` apply too.
async fn image(
    body: &[u8],
    shared: &Shared,
    arrived: Instant,
    _inflight: InflightGuard,
) -> Response<SimBody> {
    let (mode, arrived) = wait_out_hang(shared, arrived).await;
    if mode == Mode::Error {
        return error(500, "simulated engine failure (mode error)");
    }
    let cfg = shared.config();
    if let Some(status) = cfg.fail_status {
        return error(status, "simulated failure");
    }
    let request = match images::parse(body) {
        Ok(r) => r,
        Err(message) => return error(400, &message),
    };
    let mut ttft = cfg.ttft;
    if mode == Mode::Slow {
        ttft = ttft.saturating_mul(cfg.slow_factor);
    }
    if let Some(due) = arrived.checked_add(request.duration(ttft, cfg.itl)) {
        sleep_until(due).await;
    }
    if cfg.unary_garbage {
        return json(StatusCode::OK, Bytes::from_static(b"{\"created\": broken"));
    }
    let body = images::answer_body(&request, openai::created(), cfg.image_b64_len);
    json(StatusCode::OK, body)
}

fn json(status: StatusCode, body: Bytes) -> Response<SimBody> {
    let mut response = Response::new(Full::new(body).map_err(never).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A vLLM-shaped error answer.
fn error(status: u16, message: &str) -> Response<SimBody> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(code, openai::error_body(code.as_u16(), message))
}

/// An error answer in the shape of the API asked: SGLang's `{"error":{"message":..}}` on
/// `/generate`, vLLM's otherwise.
fn api_error(api: Option<Api>, status: u16, message: &str) -> Response<SimBody> {
    if api == Some(Api::Generate) {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return json(code, sglang::error_body(message));
    }
    error(status, message)
}

fn never(never: Infallible) -> io::Error {
    match never {}
}
