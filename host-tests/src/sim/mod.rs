//! `gpu-sim`: a simulated GPU worker speaking vLLM's OpenAI-compatible API (or trtllm-serve's,
//! see [`Flavor`]) and SGLang's native `/generate`, with controllable timing and faults, for
//! testing the filter against a real HTTP upstream.
//!
//! - `POST /v1/chat/completions`, `POST /v1/completions`: streamed or unary, shapes in
//!   [`openai`] (and [`trtllm`]), timing and prompt-token rules in [`plan`], per-request
//!   `x-sim-*` overrides.
//! - `POST /generate`: SGLang's native API, shapes in [`sglang`], same timing and overrides.
//! - `POST /v1/images/generations`: an image-diffusion worker (vLLM-Omni's shapes), in
//!   [`images`]: the config's timing and faults, no `x-sim-*` overrides.
//! - `GET /v1/models`, `GET /health` (200, empty), `GET /sim/stats` ([`StatsSnapshot`]:
//!   counts, and per path the last arrivals, body and headers).
//! - Fault modes switched at run time ([`Mode`]: hang, slow, error, down) with
//!   [`SimHandle::set_mode`] or `POST /sim/mode/<mode|recover>`, also on an optional admin
//!   listener ([`SimHandle::start_admin`]) that stays up when the main port is down.
//!
//! Start it in-process with [`start`] (async) or [`spawn`] (own runtime thread, for sync
//! tests); either way the server stops when its [`SimHandle`] drops. [`client`] is a small
//! recording HTTP client for the tests that talk to it.

pub mod client;
pub mod config;
pub mod images;
pub mod mode;
pub mod openai;
pub mod plan;
mod server;
pub mod sglang;
mod stats;
mod stream;
pub mod trtllm;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, PoisonError};
use std::thread;
use std::time::Instant;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Flavor, SimConfig};
pub use mode::Mode;
pub use plan::count_words;
pub use stats::{PathLog, StatsSnapshot, LOG_ARRIVALS};

use server::Shared;

/// A running sim. Dropping it stops the server and closes its connections.
#[derive(Debug)]
pub struct SimHandle {
    /// Where it listens (the real port when bound to port 0).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    runner: Runner,
    /// The admin listener's address and accept task, once started.
    admin: Option<(SocketAddr, JoinHandle<()>)>,
}

/// What runs the accept loop: a task on the caller's runtime, or a thread owning a runtime.
#[derive(Debug)]
enum Runner {
    Task(Option<JoinHandle<()>>),
    Thread(Option<thread::JoinHandle<()>>),
}

/// Binds `addr` and serves on the current tokio runtime.
pub async fn start(addr: SocketAddr, cfg: SimConfig) -> anyhow::Result<SimHandle> {
    cfg.validate()?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("gpu-sim: cannot bind {addr}"))?;
    let shared = Arc::new(Shared::new(
        cfg,
        listener,
        tokio::runtime::Handle::current(),
    )?);
    let (shutdown, stop) = watch::channel(false);
    let task = tokio::spawn(server::serve(Arc::clone(&shared), stop));
    Ok(SimHandle {
        addr: shared.addr,
        shared,
        shutdown,
        runner: Runner::Task(Some(task)),
        admin: None,
    })
}

/// Serves on `127.0.0.1:0` from a thread with its own runtime; for tests without one.
pub fn spawn(cfg: SimConfig) -> anyhow::Result<SimHandle> {
    SimHandle::spawn_blocking(cfg)
}

impl SimHandle {
    /// Same as [`spawn`].
    pub fn spawn_blocking(cfg: SimConfig) -> anyhow::Result<Self> {
        Self::spawn_blocking_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), cfg)
    }

    /// Binds `addr` on the caller's thread (so bind errors come back here), then serves from
    /// a thread that owns a small multi-thread runtime.
    pub fn spawn_blocking_on(addr: SocketAddr, cfg: SimConfig) -> anyhow::Result<Self> {
        cfg.validate()?;
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("gpu-sim: cannot bind {addr}"))?;
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gpu-sim-worker")
            .enable_all()
            .build()
            .context("gpu-sim: cannot build tokio runtime")?;
        let listener = {
            let _runtime = runtime.enter();
            TcpListener::from_std(listener).context("gpu-sim: cannot register listener")?
        };
        let shared = Arc::new(Shared::new(cfg, listener, runtime.handle().clone())?);
        let addr = shared.addr;
        let (shutdown, stop) = watch::channel(false);
        let serve_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name(format!("gpu-sim-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(server::serve(serve_shared, stop));
                // Dropping the runtime here cancels the stream generators still running
                // (and the admin listener's task).
            })
            .context("gpu-sim: cannot spawn server thread")?;
        Ok(Self {
            addr,
            shared,
            shutdown,
            runner: Runner::Thread(Some(thread)),
            admin: None,
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests per path, the request log and the inflight count, as `GET /sim/stats`
    /// reports them.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// How many requests to `path` arrived at or after `since` (of the last
    /// [`LOG_ARRIVALS`] to that path), e.g. the health probes in a test's window. Takes a
    /// `std` or `tokio` `Instant`.
    pub fn requests_since(&self, path: &str, since: impl Into<Instant>) -> usize {
        self.shared.stats.requests_since(path, since.into())
    }

    /// The log of `path`: recent arrivals, last body and headers.
    pub fn request_log(&self, path: &str) -> Option<PathLog> {
        self.stats().log.remove(path)
    }

    /// When the sim started; [`PathLog::arrivals`] are measured from it.
    pub fn started(&self) -> Instant {
        self.shared.stats.started()
    }

    /// The current fault mode.
    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    /// Switches the fault mode for requests from now on (see [`Mode`]). Synchronous: when it
    /// returns, `Down` has closed the listener (connect() is refused; open connections are
    /// dropped promptly), and leaving `Down` has re-bound the same port, retrying for about
    /// a second if it is busy (blocking meanwhile; an error leaves the sim `Down`).
    /// Requests hung by `Hang` are released by any other mode.
    pub fn set_mode(&self, mode: Mode) -> anyhow::Result<()> {
        self.shared.set_mode(mode)
    }

    /// Starts the admin listener on `addr` (port 0: any free one) and returns its address:
    /// `GET /sim/stats`, `GET /sim/mode`, `POST /sim/mode/<hang|slow|error|down|recover>`,
    /// nothing else. It ignores the mode, so it can bring the sim back from `Down`, and
    /// stops with the sim. Fails if one is already running.
    pub fn start_admin(&mut self, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
        if let Some((running, _)) = &self.admin {
            anyhow::bail!("gpu-sim: admin listener already running on {running}");
        }
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("gpu-sim: cannot bind admin {addr}"))?;
        listener.set_nonblocking(true)?;
        let runtime = self.shared.runtime().clone();
        let listener = {
            let _runtime = runtime.enter();
            TcpListener::from_std(listener).context("gpu-sim: cannot register admin listener")?
        };
        let bound = listener.local_addr()?;
        let task = runtime.spawn(server::serve_admin(
            listener,
            Arc::clone(&self.shared),
            self.shutdown.subscribe(),
        ));
        self.admin = Some((bound, task));
        Ok(bound)
    }

    /// The admin listener's address, once [`Self::start_admin`] ran.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(addr, _)| *addr)
    }

    /// The current config.
    pub fn config(&self) -> SimConfig {
        self.shared.config()
    }

    /// Changes the config for requests that arrive from now on (e.g. make the worker fail
    /// or hang mid-test). An invalid result is rejected and the old config kept.
    pub fn update_config(&self, change: impl FnOnce(&mut SimConfig)) -> anyhow::Result<()> {
        let mut guard = self
            .shared
            .config
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut next = guard.clone();
        change(&mut next);
        next.validate()?;
        *guard = next;
        Ok(())
    }

    /// Stops the server and waits until the accept loop is gone.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some((_, admin)) = self.admin.take() {
            let _ = admin.await;
        }
        match &mut self.runner {
            Runner::Task(task) => {
                if let Some(task) = task.take() {
                    let _ = task.await;
                }
            }
            Runner::Thread(thread) => {
                if let Some(thread) = thread.take() {
                    // Joining blocks: do it off the async worker.
                    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
                }
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        // No receiver left means the server already stopped: nothing to do.
        let _ = self.shutdown.send(true);
        // Close the main listener now, not when the accept loop next runs.
        self.shared.close();
        match &mut self.runner {
            // The task sees the signal on its next poll; if its runtime is gone, so is it.
            Runner::Task(_) => {}
            Runner::Thread(thread) => {
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
            }
        }
    }
}
