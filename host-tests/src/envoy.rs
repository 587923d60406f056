//! Runs a real Envoy with the shipped `envoy/envoy.yaml` (rendered) in front of a worker, for
//! end-to-end tests and `scripts/run`. Ports are chosen by Envoy itself (port 0) and read back
//! from the admin API, so parallel tests never race for a port. The process is killed on drop.

use anyhow::{anyhow, bail, Context as _};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use crate::artifacts::{envoy_bin, module_path, repo_root, wasm_path};

/// Which build of llm-pulse Envoy loads: the tests run one harness on either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Artifact {
    /// `llm_pulse.wasm` in the wasm filter (`envoy/envoy.yaml`).
    Wasm,
    /// `libllm_pulse_module.so` in the dynamic-modules filter (`envoy/envoy-module.yaml`).
    Module,
}

impl Artifact {
    /// `LLM_PULSE_ARTIFACT=module` runs the Envoy tests on the dynamic module; anything else
    /// (or nothing) on the `.wasm`.
    pub fn from_env() -> Artifact {
        match std::env::var("LLM_PULSE_ARTIFACT").as_deref() {
            Ok("module") => Artifact::Module,
            _ => Artifact::Wasm,
        }
    }

    /// The shipped Envoy config template that loads it.
    pub fn template(self) -> &'static str {
        match self {
            Artifact::Wasm => "envoy/envoy.yaml",
            Artifact::Module => "envoy/envoy-module.yaml",
        }
    }
}

/// Replaces every `${NAME}` in `template`; a placeholder left unfilled is an error.
pub fn render(template: &str, vars: &[(&str, String)]) -> anyhow::Result<String> {
    let mut out = template.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    // Comments may mention placeholders; only uncommented lines must be complete.
    for line in out.lines() {
        let code = line.split('#').next().unwrap_or("");
        if let Some(start) = code.find("${") {
            bail!("unfilled placeholder in Envoy config: {}", &code[start..]);
        }
    }
    Ok(out)
}

/// Removes the llm-pulse filter (between its begin/end markers): the same Envoy without it.
pub fn without_filter(config: &str) -> String {
    without_block(config, "llm-pulse")
}

/// Removes every block between the lines `# <name> begin` and `# <name> end` (markers
/// included): the shipped templates mark what a test may switch off that way.
pub fn without_block(config: &str, name: &str) -> String {
    let (begin, end) = (format!("# {name} begin"), format!("# {name} end"));
    let mut out = String::new();
    let mut skipping = false;
    for line in config.lines() {
        let t = line.trim();
        if t == begin {
            skipping = true;
        } else if t == end {
            skipping = false;
        } else if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    pub worker: SocketAddr,
    /// The plugin's JSON configuration.
    pub plugin_config: String,
    /// Envoy worker threads: each runs its own copy of the VM.
    pub concurrency: u32,
    pub with_filter: bool,
    pub stats_flush: Duration,
    /// Fixed ports (0: Envoy picks).
    pub listen_port: u16,
    pub admin_port: u16,
    /// Extra environment for the Envoy process (e.g. `DYN_METRICS_PREFIX`).
    pub env: Vec<(String, String)>,
    pub log_level: String,
    /// The `.wasm` or the dynamic module ([`Artifact::from_env`] by default).
    pub artifact: Artifact,
    /// The `.wasm` Envoy loads in place of llm-pulse (e.g. the no-op filter `scripts/bench`
    /// compares against); `None`: [`wasm_path`].
    pub wasm_override: Option<PathBuf>,
    /// Run with hot restart enabled in this epoch instead of `--disable-hot-restart`.
    pub hot_restart: Option<HotRestart>,
    /// Text replacements on the rendered `envoy.yaml` (each `from` must occur), for a test
    /// that needs Envoy configured otherwise (e.g. a circuit breaker).
    pub yaml_patches: Vec<(String, String)>,
}

/// Envoy hot restart: the Envoy of epoch N+1 with the same `base_id` takes the listen sockets
/// (and, as Envoy allows, the stats) of epoch N, which drains and exits. The listener port
/// must be fixed ([`EnvoyOptions::listen_port`]): a port-0 listener matches no parent socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotRestart {
    /// `--base-id`: keep it unique per test, Envoys of one base id share domain sockets.
    pub base_id: u32,
    /// `--restart-epoch`: 0 for the first Envoy, 1 for its successor.
    pub epoch: u32,
    /// `--drain-time-s` and `--parent-shutdown-time-s` of the successor.
    pub drain_s: u32,
    pub parent_shutdown_s: u32,
}

impl EnvoyOptions {
    pub fn new(worker: SocketAddr) -> EnvoyOptions {
        EnvoyOptions {
            worker,
            plugin_config: "{}".to_string(),
            concurrency: 2,
            with_filter: true,
            stats_flush: Duration::from_millis(250),
            listen_port: 0,
            admin_port: 0,
            env: Vec::new(),
            log_level: "info".to_string(),
            artifact: Artifact::from_env(),
            wasm_override: None,
            hot_restart: None,
            yaml_patches: Vec::new(),
        }
    }

    fn wasm(&self) -> anyhow::Result<PathBuf> {
        match &self.wasm_override {
            Some(path) if path.is_file() => Ok(path.clone()),
            Some(path) => bail!("{} is missing", path.display()),
            None => wasm_path(),
        }
    }

    /// The shipped `envoy/envoy.yaml` (`envoy/envoy-module.yaml` for the module) with these
    /// options filled in.
    pub fn render(&self, dir: &Path) -> anyhow::Result<String> {
        let template_path = repo_root().join(self.artifact.template());
        let template = std::fs::read_to_string(&template_path)
            .with_context(|| format!("reading {}", template_path.display()))?;
        if self.plugin_config.contains('\'') {
            bail!("plugin config must not contain a single quote (YAML quoting)");
        }
        let artifact = match self.artifact {
            Artifact::Wasm => ("WASM_PATH", self.wasm()?),
            Artifact::Module => ("MODULE_PATH", module_path()?),
        };
        let vars = [
            ("LISTEN_PORT", self.listen_port.to_string()),
            ("ADMIN_PORT", self.admin_port.to_string()),
            ("WORKER_HOST", self.worker.ip().to_string()),
            ("WORKER_PORT", self.worker.port().to_string()),
            (artifact.0, artifact.1.display().to_string()),
            ("PLUGIN_CONFIG", self.plugin_config.clone()),
            (
                "ACCESS_LOG_PATH",
                dir.join("access.log").display().to_string(),
            ),
            (
                "STATS_FLUSH",
                format!("{}s", self.stats_flush.as_secs_f64()),
            ),
        ];
        let mut config = render(&template, &vars)?;
        for (from, to) in &self.yaml_patches {
            if !config.contains(from.as_str()) {
                bail!(
                    "yaml patch: {from:?} is not in {}",
                    self.artifact.template()
                );
            }
            config = config.replace(from.as_str(), to);
        }
        Ok(if self.with_filter {
            config
        } else {
            without_filter(&config)
        })
    }
}

/// A running Envoy; killed (and its scratch directory removed) on drop.
pub struct Envoy {
    child: Child,
    pub admin: SocketAddr,
    pub listener: SocketAddr,
    dir: PathBuf,
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

fn scratch_dir() -> anyhow::Result<PathBuf> {
    let n = INSTANCE.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("llm-pulse-envoy-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

impl Envoy {
    pub fn start(opts: &EnvoyOptions) -> anyhow::Result<Envoy> {
        Envoy::start_config(opts, |dir| opts.render(dir))
    }

    /// Starts Envoy on another template of `envoy/` (e.g. `pool.yaml`): `vars` fill its own
    /// placeholders, the options fill those it shares with `envoy.yaml` (ports, `.wasm`, access
    /// log, stats flush), and the blocks named in `without` are removed ([`without_block`]).
    /// The options' process settings (concurrency, log level, environment) apply.
    pub fn start_template(
        opts: &EnvoyOptions,
        template: &str,
        vars: &[(&str, String)],
        without: &[&str],
    ) -> anyhow::Result<Envoy> {
        let path = repo_root().join("envoy").join(template);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Envoy::start_config(opts, |dir| {
            let mut all: Vec<(&str, String)> = vec![
                ("LISTEN_PORT", opts.listen_port.to_string()),
                ("ADMIN_PORT", opts.admin_port.to_string()),
                ("WASM_PATH", opts.wasm()?.display().to_string()),
                (
                    "ACCESS_LOG_PATH",
                    dir.join("access.log").display().to_string(),
                ),
                (
                    "STATS_FLUSH",
                    format!("{}s", opts.stats_flush.as_secs_f64()),
                ),
            ];
            all.extend(vars.iter().cloned());
            let mut config = text.clone();
            for name in without {
                config = without_block(&config, name);
            }
            render(&config, &all)
        })
    }

    /// Starts Envoy on the config `config` writes (given the scratch directory).
    pub fn start_config(
        opts: &EnvoyOptions,
        config: impl FnOnce(&Path) -> anyhow::Result<String>,
    ) -> anyhow::Result<Envoy> {
        let dir = scratch_dir()?;
        let config_path = dir.join("envoy.yaml");
        std::fs::write(&config_path, config(&dir)?)?;
        let admin_path = dir.join("admin-address");
        let log = std::fs::File::create(dir.join("envoy.log"))?;
        let mut cmd = Command::new(envoy_bin()?);
        cmd.arg("-c")
            .arg(&config_path)
            .args(["--concurrency", &opts.concurrency.to_string()])
            .arg("--admin-address-path")
            .arg(&admin_path)
            // Access-log lines are read by tests: flush them promptly (default 10 s).
            .args(["--file-flush-interval-msec", "100"])
            .args(["--log-level", &opts.log_level])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        match opts.hot_restart {
            // Parallel Envoys would otherwise share a hot-restart domain socket.
            None => {
                cmd.arg("--disable-hot-restart");
            }
            Some(h) => {
                cmd.args(["--base-id", &h.base_id.to_string()])
                    .args(["--restart-epoch", &h.epoch.to_string()])
                    .args(["--drain-time-s", &h.drain_s.to_string()])
                    .args(["--parent-shutdown-time-s", &h.parent_shutdown_s.to_string()]);
            }
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("starting Envoy")?;
        let mut envoy = Envoy {
            child,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            listener: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
        };
        envoy.wait_ready(&admin_path)?;
        Ok(envoy)
    }

    fn wait_ready(&mut self, admin_path: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "Envoy exited with {status} during start-up:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                bail!("Envoy did not become ready in 60 s:\n{}", self.log());
            }
            if let Ok(addr) = std::fs::read_to_string(admin_path) {
                if let Ok(addr) = addr.trim().parse::<SocketAddr>() {
                    self.admin = addr;
                    if let Ok(listener) = self.read_listener() {
                        let ready = self.admin_get("/ready").unwrap_or_default();
                        if ready.trim() == "LIVE" {
                            self.listener = listener;
                            return Ok(());
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn read_listener(&self) -> anyhow::Result<SocketAddr> {
        let body = self.admin_get("/listeners?format=json")?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        let port = v["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
            .as_u64()
            .ok_or_else(|| anyhow!("no listener port in {body}"))?;
        Ok(SocketAddr::from(([127, 0, 0, 1], port as u16)))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.listener, path)
    }

    /// GET on the admin interface.
    pub fn admin_get(&self, path: &str) -> anyhow::Result<String> {
        http_get(self.admin, path)
    }

    pub fn prometheus(&self) -> anyhow::Result<crate::prom::Scrape> {
        Ok(crate::prom::Scrape::parse(
            &self.admin_get("/stats/prometheus")?,
        ))
    }

    /// Polls `/stats/prometheus` until `ready` holds (histograms appear only at stats
    /// flushes), up to `timeout`; returns the last scrape either way.
    pub fn prometheus_when(
        &self,
        timeout: Duration,
        ready: impl Fn(&crate::prom::Scrape) -> bool,
    ) -> anyhow::Result<crate::prom::Scrape> {
        let deadline = Instant::now() + timeout;
        loop {
            let scrape = self.prometheus()?;
            if ready(&scrape) || Instant::now() > deadline {
                return Ok(scrape);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The JSON access-log lines written so far.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until an access-log line with this `x-request-id` appears.
    pub fn access_log_entry(
        &self,
        request_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self
                .access_log()
                .into_iter()
                .find(|e| e["request_id"] == request_id)
            {
                return Ok(e);
            }
            if Instant::now() > deadline {
                bail!("no access-log line for request id {request_id}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Envoy's own log (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("LLM_PULSE_KEEP_ENVOY_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `envoy --mode validate` on a config; returns Envoy's output on failure.
pub fn validate(config: &str) -> anyhow::Result<()> {
    let dir = scratch_dir()?;
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, config)?;
    let out = Command::new(envoy_bin()?)
        .args(["--mode", "validate", "-c"])
        .arg(&path)
        .output()
        .context("running envoy --mode validate")?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        bail!(
            "envoy --mode validate failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A plain HTTP/1.1 GET on a fresh connection (`connection: close`: read to the end).
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP answer from {addr}{path}"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    if !head.starts_with("http/1.1 200") {
        bail!("GET {addr}{path}: {}", head.lines().next().unwrap_or(""));
    }
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn dechunk(mut raw: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunked body"))?;
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size + 2 {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}
