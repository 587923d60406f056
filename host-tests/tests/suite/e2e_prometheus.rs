//! The Prometheus and Grafana examples against the real tools: promtool checks and unit-tests
//! examples/prometheus/, then a real Prometheus (loopback, free port, 1 s scrapes) scrapes a
//! real Envoy running llm-pulse in front of gpu-sim under a mixed load (streams, unary
//! requests, errors, a hung GPU worker), and every PromQL expression of
//! examples/grafana/dashboard.json and examples/prometheus/alerts.yml is evaluated through
//! Prometheus's HTTP API: each must parse, each dashboard query must return data.
//!
//! Needs `prometheus` and `promtool` (Debian's `prometheus` package; scripts/test installs
//! it), or `$PROMETHEUS_BIN` / `$PROMTOOL_BIN`.

use host_tests::envoy::{repo_root, Envoy, EnvoyOptions};
use host_tests::sim::client::{request_blocking, Recorded};
use host_tests::sim::{self, Mode, SimConfig, SimHandle};
use serde::Deserialize;
use serde_json::Value;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn prom_dir() -> PathBuf {
    repo_root().join("examples/prometheus")
}

fn dashboard_path() -> PathBuf {
    repo_root().join("examples/grafana/dashboard.json")
}

fn tool(env: &str, default: &str) -> PathBuf {
    match std::env::var_os(env) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(default),
    }
}

fn promtool(args: &[&str], cwd: &Path) -> Output {
    let bin = tool("PROMTOOL_BIN", "promtool");
    Command::new(&bin)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): install Debian's `prometheus` package (scripts/test does), \
                 or set PROMTOOL_BIN",
                bin.display()
            )
        })
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = serde_yaml::Deserializer::from_str(&text)
        .next()
        .unwrap_or_else(|| panic!("{}: empty", path.display()));
    Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (alert name, expression) of every rule in alerts.yml.
fn alert_rules() -> Vec<(String, String)> {
    let rules = yaml(&prom_dir().join("alerts.yml"));
    let mut out = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            out.push((
                rule["alert"]
                    .as_str()
                    .expect("alerting rules only")
                    .to_string(),
                rule["expr"].as_str().expect("expr").to_string(),
            ));
        }
    }
    out
}

/// Every PromQL expression in the dashboard, with the panel title.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                panel["title"].as_str().unwrap_or("?").to_string(),
                target["expr"]
                    .as_str()
                    .expect("a Prometheus expr")
                    .to_string(),
            ));
        }
    }
    out
}

/// Grafana's variables as Prometheus sees them with "All" selected.
fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$model", ".*")
        .replace("$target", ".*")
        .replace("$gpu_host", ".*")
}

#[test]
fn promtool_checks_config_and_rules_and_runs_the_rule_tests() {
    let dir = prom_dir();
    assert_ok(
        &promtool(&["check", "config", "prometheus.yml"], &dir),
        "promtool check config",
    );
    assert_ok(
        &promtool(&["check", "rules", "alerts.yml"], &dir),
        "promtool check rules",
    );
    assert_ok(
        &promtool(&["test", "rules", "alerts_test.yml"], &dir),
        "promtool test rules",
    );
    // Every alert has a case where it fires and one where it does not.
    let tests = yaml(&dir.join("alerts_test.yml"));
    for (alert, _) in alert_rules() {
        let cases: Vec<&Value> = tests["tests"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
            .filter(|c| c["alertname"] == alert.as_str())
            .collect();
        let firing = |c: &&Value| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
        assert!(cases.iter().any(firing), "{alert}: no firing case");
        assert!(
            cases.iter().any(|c| !firing(c)),
            "{alert}: no case where it stays quiet"
        );
    }
}

#[test]
fn the_dashboard_has_the_panels_units_and_variables() {
    let d: Value = serde_json::from_str(&std::fs::read_to_string(dashboard_path()).unwrap())
        .expect("dashboard.json is JSON");
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for v in ["datasource", "model", "target", "gpu_host"] {
        assert!(vars.contains(&v), "variable {v} in {vars:?}");
    }
    let panels: Vec<&Value> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
        .collect();
    for p in &panels {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let exprs: Vec<&str> = p["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["expr"].as_str().unwrap())
            .collect();
        assert!(!exprs.is_empty(), "{}", p["title"]);
        // Microsecond histograms are shown in Grafana's µs unit.
        if exprs.iter().any(|e| e.contains("_microseconds")) {
            assert_eq!(p["fieldConfig"]["defaults"]["unit"], "µs", "{}", p["title"]);
        }
        // Filtered by the model, target or GPU host variable; the build panel counts Envoys
        // per build, whatever they serve.
        assert!(
            exprs.iter().all(|e| e.contains("model=~\"$model\"")
                || e.contains("target=~\"$target\"")
                || e.contains("Hostname=~\"$gpu_host\"")
                || *e == "count by (version, commit) (llm_build_info)"),
            "{}: {exprs:?}",
            p["title"]
        );
        // The GPU row reads dcgm-exporter's own metric names.
        if exprs.iter().any(|e| e.contains("DCGM_")) {
            for e in &exprs {
                for name in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if name.starts_with("DCGM_") {
                        assert!(DCGM_METRICS.contains(&name), "{}: {name}", p["title"]);
                    }
                }
            }
        }
    }
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for want in [
        "Request rate by model and status",
        "Time to first token p50 / p95 / p99",
        "Inter-token latency p50 / p95 / p99",
        "Time to first token p90 by worker (slowest first)",
        "Inter-token latency p90 by worker (slowest first)",
        "Request duration p50 / p95 / p99",
        "Input / output tokens per request (mean)",
        "Output tokens per second",
        "Error rate by type",
        "In-flight requests",
        "Health status per target",
        "Probe latency p50 / p95 / p99",
        "llm-pulse build",
        "GPU utilization",
        "GPU memory used / free",
        "GPU power draw",
    ] {
        assert!(titles.contains(&want), "panel {want:?} in {titles:?}");
    }
    let quantiles: Vec<String> = dashboard_queries(&d)
        .into_iter()
        .filter(|(t, _)| t.starts_with("Time to first") || t.starts_with("Inter-token"))
        .map(|(_, e)| e)
        .collect();
    for q in ["0.5", "0.95", "0.99"] {
        let n = quantiles
            .iter()
            .filter(|e| e.starts_with(&format!("histogram_quantile({q},")))
            .count();
        assert_eq!(n, 2, "p{q} of TTFT and ITL");
    }
}

/// The dcgm-exporter fields the dashboard's GPU row reads (etc/default-counters.csv of
/// NVIDIA/dcgm-exporter: all in its default set).
const DCGM_METRICS: [&str; 4] = [
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_POWER_USAGE",
];

/// What dcgm-exporter (3.x/4.x) serves on :9400/metrics for two GPUs of one node: its
/// template writes `gpu`, `UUID`, `pci_bus_id`, `device`, `modelName`, `Hostname`, then the
/// Kubernetes pod labels when it maps GPUs to pods; gauges, with HELP and TYPE from its
/// counters CSV. Values move with `n` so a scrape is never identical to the last.
fn dcgm_text(n: u64) -> String {
    let gpus = [
        (
            "0",
            "GPU-7b3f1a2c-9d41-4e5f-8a6b-1c2d3e4f5a6b",
            "00000000:3B:00.0",
        ),
        (
            "1",
            "GPU-a2c89f31-5b7e-4c8d-9e0f-a1b2c3d4e5f6",
            "00000000:86:00.0",
        ),
    ];
    let fields = [
        (
            "DCGM_FI_DEV_GPU_UTIL",
            "GPU utilization (in %).",
            80 + n % 10,
            "",
        ),
        (
            "DCGM_FI_DEV_FB_FREE",
            "Framebuffer memory free (in MiB).",
            4_211,
            "",
        ),
        (
            "DCGM_FI_DEV_FB_USED",
            "Framebuffer memory used (in MiB).",
            76_706,
            "",
        ),
        (
            "DCGM_FI_DEV_POWER_USAGE",
            "Power draw (in W).",
            300 + n % 7,
            ".118000",
        ),
    ];
    let mut out = String::new();
    for (name, help, value, frac) in fields {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (gpu, uuid, bus) in gpus {
            out.push_str(&format!(
                "{name}{{gpu=\"{gpu}\",UUID=\"{uuid}\",pci_bus_id=\"{bus}\",device=\"nvidia{gpu}\",\
                 modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"gpu-node-1\",container=\"vllm\",\
                 namespace=\"llm\",pod=\"vllm-0\"}} {value}{frac}\n"
            ));
        }
    }
    out
}

/// A stand-in for dcgm-exporter on a free loopback port: answers every GET with
/// [`dcgm_text`]. Stopped (and its thread joined) on drop, so a failing test leaves nothing.
struct DcgmExporter {
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DcgmExporter {
    fn start() -> DcgmExporter {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut scrapes = 0u64;
            while !stopping.load(Ordering::SeqCst) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                scrapes += 1;
                let body = dcgm_text(scrapes);
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        DcgmExporter {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for DcgmExporter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A Prometheus process with its scratch directory; killed and removed on drop, so a failing
/// test leaves nothing running.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Starts Prometheus on `config` at a free loopback port (retrying if another process
    /// takes the port first) and waits until it is ready.
    fn start(dir: &Path, config: &Path) -> Prometheus {
        let bin = tool("PROMETHEUS_BIN", "prometheus");
        let mut last_log = String::new();
        for attempt in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let log_path = dir.join(format!("prometheus-{attempt}.log"));
            let log = std::fs::File::create(&log_path).unwrap();
            let child = Command::new(&bin)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join(format!("data-{attempt}")).display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run {} ({e}): install Debian's `prometheus` package \
                         (scripts/test does), or set PROMETHEUS_BIN",
                        bin.display()
                    )
                });
            let mut prom = Prometheus {
                child,
                dir: dir.to_path_buf(),
                addr,
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = prom.child.try_wait() {
                    break;
                }
                if get(addr, "/-/ready").is_ok_and(|r| r.status == 200) {
                    return prom;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
            // Keep the directory for the next attempt: forget this guard's cleanup of it.
            let _ = prom.child.kill();
            let _ = prom.child.wait();
            prom.dir = dir.join(format!("data-{attempt}"));
        }
        panic!("Prometheus did not start:\n{last_log}");
    }

    /// An instant query; the parsed `data` on success, Prometheus's error otherwise.
    fn query(&self, promql: &str) -> Result<Value, String> {
        let r = get(
            self.addr,
            &format!("/api/v1/query?query={}", encode(promql)),
        )
        .map_err(|e| e.to_string())?;
        let body: Value = serde_json::from_slice(&r.body()).map_err(|e| e.to_string())?;
        if r.status != 200 || body["status"] != "success" {
            return Err(format!("{} {}", r.status, body));
        }
        Ok(body["data"].clone())
    }

    /// The first value of an instant query; 0 when it has none or fails (not scraped yet).
    fn scalar(&self, promql: &str) -> f64 {
        self.query(promql)
            .map(|d| values(&d).first().copied().unwrap_or(0.0))
            .unwrap_or(0.0)
    }

    /// Waits until Prometheus has scraped `job` once: it scrapes a new target only after its
    /// discovery settles (about 5 s), and load sent before would not show as growth.
    fn wait_for_first_scrape(&self, job: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self
            .query(&format!("up{{job=\"{job}\"}} == 1"))
            .is_ok_and(|d| !values(&d).is_empty())
        {
            assert!(Instant::now() < deadline, "Prometheus never scraped Envoy");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn api(&self, path: &str) -> Value {
        let r = get(self.addr, path).unwrap();
        assert_eq!(r.status, 200, "{path}");
        serde_json::from_slice(&r.body()).unwrap()
    }
}

fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Recorded> {
    request_blocking(addr, "GET", path, &[], "")
}

/// Percent-encoding for a query-string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The sample values of an instant-query result.
fn values(data: &Value) -> Vec<f64> {
    data["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|s| s["value"][1].as_str().and_then(|v| v.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

fn fast_sim() -> SimHandle {
    sim::spawn(SimConfig {
        ttft: Duration::from_millis(20),
        itl: Duration::from_millis(5),
        tokens: 8,
        ..SimConfig::default()
    })
    .unwrap()
}

/// Path, body, extra headers.
type LoadCase = (&'static str, String, Vec<(&'static str, &'static str)>);

/// One wave of mixed traffic: streams and unary requests on both OpenAI endpoints, worker
/// errors (500, 429), an error event inside a 200 stream. Two client threads.
fn send_load(envoy: &Envoy) -> usize {
    let chat = |model: &str, extra: &str| {
        format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"hello gpu"}}]{extra}}}"#
        )
    };
    let cases: Vec<LoadCase> = vec![
        (
            "/v1/chat/completions",
            chat(
                "model-a",
                r#","stream":true,"stream_options":{"include_usage":true}"#,
            ),
            vec![],
        ),
        ("/v1/chat/completions", chat("model-a", ""), vec![]),
        (
            "/v1/completions",
            r#"{"model":"model-b","prompt":"hello gpu","stream":true,"stream_options":{"include_usage":true}}"#.to_string(),
            vec![],
        ),
        (
            "/v1/completions",
            r#"{"model":"model-b","prompt":"hello gpu"}"#.to_string(),
            vec![],
        ),
        (
            "/v1/chat/completions",
            chat("model-a", r#","stream":true"#),
            vec![("x-sim-fail-status", "500")],
        ),
        (
            "/v1/chat/completions",
            chat("model-b", ""),
            vec![("x-sim-fail-status", "429")],
        ),
        (
            "/v1/chat/completions",
            chat("model-b", r#","stream":true"#),
            vec![("x-sim-error-after", "2")],
        ),
    ];
    std::thread::scope(|scope| {
        for half in [0, 1] {
            let cases = &cases;
            scope.spawn(move || {
                for (path, body, headers) in cases.iter().skip(half).step_by(2) {
                    let mut h = vec![("content-type", "application/json")];
                    h.extend_from_slice(headers);
                    request_blocking(envoy.listener, "POST", path, &h, body.clone())
                        .expect("request through Envoy");
                }
            });
        }
    });
    cases.len()
}

#[test]
fn prometheus_evaluates_every_dashboard_and_alert_expression_on_live_traffic() {
    let dir = std::env::temp_dir().join(format!("llm-pulse-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // A healthy worker taking the traffic, and a GPU that hangs (connection open, no token).
    let worker = fast_sim();
    let hung = fast_sim();
    hung.set_mode(Mode::Hang).unwrap();
    let target = |name: &str, cluster: &str, host: &str| {
        format!(
            r#"{{"name":"{name}","cluster":"{cluster}"{host},"backend":"vllm","model":"sim-model","interval":"1s","timeout":"500ms","unhealthy_threshold":1}}"#
        )
    };
    let envoy = Envoy::start(&EnvoyOptions {
        plugin_config: format!(
            r#"{{"worker_label":true,"health":{{"targets":[{},{}]}}}}"#,
            target("gpu-ok", "workers", ""),
            target(
                "gpu-hung",
                "llm_pulse_probe",
                &format!(r#","host":"{}""#, hung.addr)
            ),
        ),
        ..EnvoyOptions::new(worker.addr)
    })
    .expect("Envoy starts");

    // The shipped prometheus.yml, pointed at this Envoy, scraping every second.
    let mut config = yaml(&prom_dir().join("prometheus.yml"));
    config["global"]["scrape_interval"] = "1s".into();
    config["global"]["evaluation_interval"] = "1s".into();
    config["rule_files"] = serde_json::json!([prom_dir().join("alerts.yml").display().to_string()]);
    let job = &mut config["scrape_configs"][0];
    assert_eq!(job["metrics_path"], "/stats/prometheus");
    job["static_configs"][0]["targets"] = serde_json::json!([envoy.admin.to_string()]);
    let job_name = job["job_name"].as_str().unwrap().to_string();
    // The GPUs: the shipped dcgm-exporter job, pointed at a server speaking its format.
    let dcgm = DcgmExporter::start();
    let gpu_job = config["scrape_configs"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|j| j["job_name"] == "dcgm-exporter")
        .expect("a dcgm-exporter job in prometheus.yml");
    assert_eq!(gpu_job["metrics_path"], "/metrics");
    gpu_job["static_configs"][0]["targets"] = serde_json::json!([dcgm.addr.to_string()]);
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, serde_yaml::to_string(&config).unwrap()).unwrap();
    assert_ok(
        &promtool(&["check", "config", "prometheus.yml"], &dir),
        "promtool check config (rendered)",
    );
    let prom = Prometheus::start(&dir, &config_path);

    // The load below must show as growth between scrapes (rate > 0).
    prom.wait_for_first_scrape(&job_name);
    // Two waves of load a few scrapes apart, so every counter grows between scrapes.
    let mut sent = send_load(&envoy);
    std::thread::sleep(Duration::from_secs(3));
    sent += send_load(&envoy);

    // Wait until Prometheus has scraped it all (histograms reach Envoy's /stats/prometheus at
    // its stats flush, every 250 ms here), and the hung GPU has failed a few probes.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let total = prom.scalar(&format!("sum(llm_requests_total{{job=\"{job_name}\"}})"));
        let timeouts =
            prom.scalar(r#"sum(llm_health_checks_total{target="gpu-hung",result="timeout"})"#);
        let gpus = prom.scalar("count(DCGM_FI_DEV_POWER_USAGE)");
        if total >= sent as f64 && timeouts >= 5.0 && gpus == 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has {total} of {sent} requests, {timeouts} probe timeouts, {gpus} \
             GPUs; Envoy's /stats/prometheus:\n{}",
            envoy.admin_get("/stats/prometheus").unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // One more scrape after the last flush, so the histograms have their final counts.
    std::thread::sleep(Duration::from_secs(2));

    // Every dashboard query parses and returns data (a number, not only NaN).
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard_path()).unwrap()).unwrap();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let mut failures = Vec::new();
    for (panel, expr) in &queries {
        let promql = grafana_to_promql(expr);
        match prom.query(&promql) {
            Err(e) => failures.push(format!("{panel}: {promql}: {e}")),
            Ok(data) => {
                let v = values(&data);
                if !v.iter().any(|v| v.is_finite()) {
                    failures.push(format!("{panel}: {promql}: no data ({data})"));
                }
            }
        }
    }
    // The variables' label_values(metric, label) queries list values.
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        let Some(def) = var["definition"].as_str() else {
            continue;
        };
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .expect("label_values(metric, label)");
        let (metric, label) = inner.split_once(',').unwrap();
        let data = prom.api(&format!(
            "/api/v1/label/{}/values?match[]={}",
            label.trim(),
            encode(metric.trim())
        ));
        if data["data"].as_array().is_none_or(|a| a.is_empty()) {
            failures.push(format!("variable {def}: no values ({data})"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Every alert expression parses; the hung GPU shows where it should.
    let mut alert_results = std::collections::BTreeMap::new();
    for (alert, expr) in alert_rules() {
        let data = prom
            .query(&expr)
            .unwrap_or_else(|e| panic!("{alert}: {expr}: {e}"));
        alert_results.insert(alert, data);
    }
    for alert in ["LLMTargetUnhealthy", "LLMHealthProbeFailuresRising"] {
        let result = &alert_results[alert]["result"];
        assert!(
            result
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["metric"]["target"] == "gpu-hung"),
            "{alert} should see gpu-hung: {result}"
        );
        assert!(
            result
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["metric"]["target"] != "gpu-ok"),
            "{alert} must not see gpu-ok: {result}"
        );
    }
    // 3 errors in 7 requests: over the 5 % error ratio.
    assert!(
        !values(&alert_results["LLMErrorRatioHigh"]).is_empty(),
        "{}",
        alert_results["LLMErrorRatioHigh"]
    );
    // The hung GPU makes not every target healthy: no "no traffic" alert.
    assert!(values(&alert_results["LLMNoTraffic"]).is_empty());

    // Prometheus itself loaded and evaluates the rules without error.
    let rules = prom.api("/api/v1/rules");
    let loaded: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert_eq!(loaded.len(), alert_rules().len(), "{rules}");
    for r in &loaded {
        assert_ne!(r["health"], "err", "{}: {}", r["name"], r["lastError"]);
    }
    let unhealthy = loaded
        .iter()
        .find(|r| r["name"] == "LLMTargetUnhealthy")
        .unwrap();
    assert!(
        unhealthy["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["labels"]["target"] == "gpu-hung")),
        "LLMTargetUnhealthy pending or firing for gpu-hung: {unhealthy}"
    );
    // The GPU row shows both GPUs of the node, by the labels dcgm-exporter writes.
    for (panel, expr) in queries.iter().filter(|(_, e)| e.contains("DCGM_")) {
        let data = prom.query(&grafana_to_promql(expr)).unwrap();
        let series = data["result"].as_array().unwrap();
        assert_eq!(series.len(), 2, "{panel}: {data}");
        for s in series {
            assert_eq!(s["metric"]["Hostname"], "gpu-node-1", "{panel}: {s}");
            assert_eq!(
                s["metric"]["modelName"], "NVIDIA H100 80GB HBM3",
                "{panel}: {s}"
            );
        }
    }
    // The build panel names the build Envoy runs, as its log line does.
    let build = prom
        .query("count by (version, commit) (llm_build_info)")
        .unwrap();
    let build = &build["result"][0]["metric"];
    assert!(
        envoy.log().contains(&format!(
            "llm-pulse {} ({}) configured:",
            build["version"].as_str().unwrap(),
            build["commit"].as_str().unwrap()
        )),
        "{build}"
    );
    drop(prom);
    drop(dcgm);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `worker_label` on, three workers behind one cluster, one slowed (its TTFT x10): each
/// worker's `requests_total` is what that worker received; the dashboard's "by worker" panel
/// (its own expression, through a real Prometheus) puts the slow one first, and the
/// LLMWorkerSlow alert's expression names it and no other. The slow worker is named by the
/// health target whose `host` it is, the others by their `ip:port`.
#[test]
fn the_worker_panel_and_alert_name_the_slow_worker() {
    let dir = std::env::temp_dir().join(format!("llm-pulse-prom-workers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sims: Vec<SimHandle> = (0..3).map(|_| fast_sim()).collect();
    sims[2].set_mode(Mode::Slow).unwrap();
    // Probed through /generate (SGLang), so the chat path counts only the clients' requests.
    let plugin_config = format!(
        r#"{{"worker_label":true,"health":{{"targets":[{{"name":"gpu-slow","cluster":"llm_pulse_probe","host":"{}","backend":"sglang","interval":"2s","timeout":"2s"}}]}}}}"#,
        sims[2].addr
    );
    let first = format!(
        "socket_address: {{ address: 127.0.0.1, port_value: {} }}",
        sims[0].addr.port()
    );
    let mut endpoints = first.clone();
    for sim in &sims[1..] {
        endpoints.push_str(&format!(
            "\n              - endpoint:\n                  address:\n                    \
             socket_address: {{ address: 127.0.0.1, port_value: {} }}",
            sim.addr.port()
        ));
    }
    let envoy = Envoy::start(&EnvoyOptions {
        plugin_config,
        yaml_patches: vec![(first, endpoints)],
        ..EnvoyOptions::new(sims[0].addr)
    })
    .expect("Envoy starts");

    let mut config = yaml(&prom_dir().join("prometheus.yml"));
    config["global"]["scrape_interval"] = "1s".into();
    config["global"]["evaluation_interval"] = "1s".into();
    let mut job = config["scrape_configs"][0].clone();
    job["static_configs"][0]["targets"] = serde_json::json!([envoy.admin.to_string()]);
    let job_name = job["job_name"].as_str().unwrap().to_string();
    config["scrape_configs"] = serde_json::json!([job]);
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, serde_yaml::to_string(&config).unwrap()).unwrap();
    let prom = Prometheus::start(&dir, &config_path);
    prom.wait_for_first_scrape(&job_name);

    // Streams from three clients; Envoy spreads them over the workers (round robin).
    const PER_CLIENT: usize = 12;
    let body = r#"{"model":"sim-model","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                for _ in 0..PER_CLIENT {
                    let r = request_blocking(
                        envoy.listener,
                        "POST",
                        "/v1/chat/completions",
                        &[("content-type", "application/json")],
                        body,
                    )
                    .expect("request through Envoy");
                    assert_eq!(r.status, 200);
                }
            });
        }
    });
    let sent = 3 * PER_CLIENT;
    let labels: Vec<String> = vec![
        sims[0].addr.to_string(),
        sims[1].addr.to_string(),
        "gpu-slow".to_string(),
    ];
    let received: Vec<u64> = sims
        .iter()
        .map(|s| {
            s.stats()
                .requests
                .get("/v1/chat/completions")
                .copied()
                .unwrap_or(0)
        })
        .collect();
    assert_eq!(received.iter().sum::<u64>(), sent as u64, "{received:?}");
    // The filter's count per worker is what each worker received.
    let scrape = envoy
        .prometheus_when(Duration::from_secs(30), |s| {
            s.sum("llm_requests_total", &[]) >= sent as f64
        })
        .expect("Envoy's requests_total reaches the requests sent");
    for (label, got) in labels.iter().zip(&received) {
        assert_eq!(
            scrape.sum("llm_requests_total", &[("worker", label)]),
            *got as f64,
            "worker {label}"
        );
        assert!(*got > 0, "worker {label} received nothing: {received:?}");
    }
    // Every in-flight +1 found its -1, on whichever worker series it moved to.
    let inflight: Vec<_> = scrape.find("llm_inflight_requests", &[]).collect();
    assert!(inflight.iter().all(|s| s.value == 0.0), "{inflight:?}");

    // Prometheus has every request (histograms reach /stats/prometheus at the stats flush).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ttfts = prom.scalar("sum(llm_time_to_first_token_microseconds_count)");
        if ttfts >= sent as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has {ttfts} of {sent} TTFTs"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard_path()).unwrap()).unwrap();
    let (_, panel) = dashboard_queries(&dashboard)
        .into_iter()
        .find(|(t, _)| t == "Time to first token p90 by worker (slowest first)")
        .expect("the TTFT by worker panel");
    let data = prom.query(&grafana_to_promql(&panel)).unwrap();
    let ranked: Vec<&str> = data["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metric"]["worker"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ranked.len(), 3, "{data}");
    assert_eq!(ranked[0], "gpu-slow", "the slowest first: {data}");
    let (_, alert) = alert_rules()
        .into_iter()
        .find(|(a, _)| a == "LLMWorkerSlow")
        .expect("LLMWorkerSlow in alerts.yml");
    let data = prom.query(&alert).unwrap();
    let named: Vec<&str> = data["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metric"]["worker"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(named, ["gpu-slow"], "{data}");
    drop(prom);
    let _ = std::fs::remove_dir_all(&dir);
}
