//! A hung GPU taken out of rotation, end to end with real processes: three gpu-sim workers
//! (child processes) under steady load (20 requests/s), one frozen with `SIGSTOP` mid-run and
//! resumed with `SIGCONT`, in both deployments llm-pulse ships:
//!
//! - one Envoy in front of the pool (`envoy/pool.yaml`): Envoy's active health checker asks
//!   llm-pulse about each worker (`health.target_path`);
//! - a caller Envoy (`envoy/caller.yaml`) in front of one llm-pulse Envoy per worker
//!   (`envoy/envoy.yaml`): the caller health-checks each sidecar's `/health`, or, as an Istio
//!   caller would, ejects a sidecar whose fail-fast 503s it sees (outlier detection) and
//!   retries those requests on another worker;
//!
//! and, for comparison, the pool with Envoy's outlier detection alone (no llm-pulse).
//!
//! What is measured, on the test's own clock: `SIGSTOP` and `SIGCONT` are timestamped by the
//! test; a sampler reads, every 50 ms, how many requests the Envoy next to the frozen worker
//! has sent that worker (`/clusters` `rq_total` of its host), and the sample at which that count
//! last grew during the freeze is when the worker last received a request (an upper bound: the
//! request was sent after the previous sample). gpu-sim's own count confirms that this count is
//! the worker's traffic: it received every request Envoy says it sent, but those sent around
//! the freeze that Envoy gave up on before gpu-sim could read them. The bound on leaving
//! rotation is probe interval × unhealthy_threshold + probe timeout + the health-check
//! interval + 1 s.

use host_tests::envoy::{Envoy, EnvoyOptions};
use host_tests::sim::client::request_blocking;
use host_tests::sim_process::SimProcess;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PROBE_INTERVAL_MS: u64 = 300;
const PROBE_TIMEOUT_MS: u64 = 200;
/// The targets' `unhealthy_threshold` (envoy/pool.yaml's, and the sidecars' below).
const UNHEALTHY_THRESHOLD: u64 = 2;
/// The prober's tick (interval / 10, at least 50 ms): a due probe starts within one.
const TICK_MS: u64 = 50;
const HC_INTERVAL_MS: u64 = 300;
/// Requests to a frozen worker end here (504) when nothing took it out of rotation first.
const ROUTE_TIMEOUT_MS: u64 = 3_000;
const FREEZE: Duration = Duration::from_secs(6);
const RATE_PER_S: u64 = 20;
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
const FROZEN: usize = 1;

/// One freeze at a time: the figures are the mechanism's, not a neighbour scenario's load.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn workers() -> Vec<SimProcess> {
    (0..3)
        .map(|_| {
            SimProcess::start(
                Path::new(env!("CARGO_BIN_EXE_gpu-sim")),
                &["--ttft-ms", "20", "--itl-ms", "2", "--tokens", "4"],
            )
            .unwrap()
        })
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A duration as the plugin config writes it.
fn ms(v: u64) -> String {
    format!("{v}ms")
}

/// A duration as Envoy's YAML writes it (seconds only).
fn secs(v: u64) -> String {
    format!("{}s", v as f64 / 1000.0)
}

/// A `host` of `cluster` in an Envoy whose requests to it are watched.
#[derive(Clone, Copy)]
struct Watch<'a> {
    envoy: &'a Envoy,
    cluster: &'a str,
    host: SocketAddr,
}

impl Watch<'_> {
    /// `(rq_total, health_flags)` of the host, from `/clusters`.
    fn read(&self) -> Option<(u64, String)> {
        let text = self.envoy.admin_get("/clusters").ok()?;
        let prefix = format!("{}::{}::", self.cluster, self.host);
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix)?.strip_prefix(name))
                .map(str::to_string)
        };
        Some((field("rq_total::")?.parse().ok()?, field("health_flags::")?))
    }
}

/// Waits until every host of the watches is healthy in its Envoy's eyes.
fn wait_healthy(watches: &[Watch<'_>]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let flags: Vec<_> = watches.iter().map(|w| w.read()).collect();
        if flags
            .iter()
            .all(|f| f.as_ref().is_some_and(|(_, h)| h == "healthy"))
        {
            return;
        }
        assert!(Instant::now() < deadline, "hosts not healthy: {flags:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One client request: when it was sent, how long it took, its status (0: no answer).
#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    took: Duration,
    status: u16,
}

/// Sends a unary chat completion to `entry` every 1/RATE s, each from its own thread, until
/// stopped.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<Sent>>>,
    pacer: Option<JoinHandle<Vec<JoinHandle<()>>>>,
}

impl Load {
    fn start(entry: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (stop_, sent_) = (Arc::clone(&stop), Arc::clone(&sent));
        let pacer = std::thread::spawn(move || {
            let mut threads = Vec::new();
            let start = Instant::now();
            let mut n = 0u32;
            while !stop_.load(Ordering::SeqCst) {
                let sent = Arc::clone(&sent_);
                threads.push(std::thread::spawn(move || {
                    let at = Instant::now();
                    let status = request_blocking(
                        entry,
                        "POST",
                        "/v1/chat/completions",
                        &[("content-type", "application/json")],
                        r#"{"model":"sim-model","messages":[{"role":"user","content":"hi"}]}"#,
                    )
                    .map(|r| if r.body_error.is_some() { 0 } else { r.status })
                    .unwrap_or(0);
                    let took = at.elapsed();
                    sent.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Sent { at, took, status });
                }));
                n += 1;
                let next = start + Duration::from_millis(1_000 / RATE_PER_S) * n;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            threads
        });
        Load {
            stop,
            sent,
            pacer: Some(pacer),
        }
    }

    /// Stops sending and waits for every request sent to end (at most the route timeout).
    fn finish(mut self) -> Vec<Sent> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(pacer) = self.pacer.take() {
            for t in pacer.join().unwrap_or_default() {
                let _ = t.join();
            }
        }
        let sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        sent.clone()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// When a sample was taken, and each watched host's `rq_total` then.
type Sample = (Instant, Vec<Option<u64>>);

/// `rq_total` of each watched host every [`SAMPLE_EVERY`], on the test's clock.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Sample>>>,
}

impl Sampler {
    fn start(watches: Vec<(SocketAddr, String, SocketAddr)>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_ = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop_.load(Ordering::SeqCst) {
                let counts = watches
                    .iter()
                    .map(|(admin, cluster, host)| {
                        let text = host_tests::envoy::http_get(*admin, "/clusters").ok()?;
                        let prefix = format!("{cluster}::{host}::rq_total::");
                        text.lines()
                            .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
                    })
                    .collect();
                samples.push((Instant::now(), counts));
                std::thread::sleep(SAMPLE_EVERY);
            }
            samples
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What one watched host showed around the freeze.
#[derive(Debug)]
struct Seen {
    /// From `SIGSTOP` to the sample at which the count last grew before `SIGCONT`.
    left_after: Duration,
    /// From `SIGCONT` to the first sample at which it grew again.
    back_after: Option<Duration>,
    /// Requests sent to the host from `SIGSTOP` to `SIGCONT`.
    during_freeze: u64,
    /// The same from a quarter second before `SIGSTOP`: a request sent just before the freeze
    /// may not have been read yet.
    around_freeze: u64,
}

fn seen(samples: &[Sample], i: usize, stopped: Instant, resumed: Instant) -> Seen {
    let series: Vec<(Instant, u64)> = samples
        .iter()
        .filter_map(|(at, c)| Some((*at, (*c.get(i)?)?)))
        .collect();
    let before = |t: Instant| {
        series
            .iter()
            .take_while(|(at, _)| *at <= t)
            .last()
            .map_or(0, |(_, c)| *c)
    };
    let at_stop = before(stopped);
    let at_resume = before(resumed);
    let last_growth = series
        .windows(2)
        .filter(|w| w[1].0 > stopped && w[1].0 <= resumed && w[1].1 > w[0].1)
        .map(|w| w[1].0)
        .next_back()
        .unwrap_or(stopped);
    let back = series
        .iter()
        .find(|(at, c)| *at > resumed && *c > at_resume)
        .map(|(at, _)| *at - resumed);
    let just_before = stopped
        .checked_sub(Duration::from_millis(250))
        .map_or(0, before);
    Seen {
        left_after: last_growth - stopped,
        back_after: back,
        during_freeze: at_resume - at_stop,
        around_freeze: at_resume - just_before,
    }
}

/// The figures of one run.
struct Figures {
    /// One per watch, in order.
    seen: Vec<Seen>,
    /// Client requests sent from `SIGSTOP` until the frozen worker's last request (the first
    /// watch's): all of them, and those that failed or waited past a second.
    window_sent: usize,
    window_hurt: usize,
    /// Failed client requests sent outside `[SIGSTOP - 0.5 s, window end]`: a request the
    /// worker was still answering at the freeze fails too (it answers in ~30 ms).
    failed_outside: usize,
    /// Client requests that failed over the whole run.
    failed: usize,
    sent: usize,
}

/// Runs the load, freezes worker [`FROZEN`], resumes it, and reads the watches. The first
/// watch is the Envoy next to the frozen worker; `worker_paths` are the paths whose requests
/// through that Envoy's host count (gpu-sim's own counts must add up to its `rq_total`).
fn freeze_and_resume(
    entry: SocketAddr,
    workers: &[SimProcess],
    watches: &[Watch<'_>],
    worker_paths: &[&str],
) -> Figures {
    let sampler = Sampler::start(
        watches
            .iter()
            .map(|w| (w.envoy.admin, w.cluster.to_string(), w.host))
            .collect(),
    );
    let load = Load::start(entry);
    std::thread::sleep(Duration::from_secs(2));
    for (i, w) in workers.iter().enumerate() {
        let got = w
            .stats()
            .unwrap()
            .requests
            .get("/v1/chat/completions")
            .copied();
        assert!(
            got.unwrap_or(0) > 0,
            "worker {i} got no load before the freeze"
        );
    }
    let frozen = &workers[FROZEN];
    let stopped = Instant::now();
    frozen.freeze().unwrap();
    std::thread::sleep(FREEZE);
    let resumed = Instant::now();
    frozen.resume().unwrap();
    // Back in rotation: the first watch's count grows again (or give up after 15 s).
    let deadline = resumed + Duration::from_secs(15);
    let at_resume = watches[0].read().map_or(0, |(c, _)| c);
    while Instant::now() < deadline {
        if watches[0].read().is_some_and(|(c, _)| c > at_resume) {
            break;
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    std::thread::sleep(Duration::from_millis(500));
    let sent = load.finish();
    let samples = sampler.finish();

    let seen: Vec<Seen> = (0..watches.len())
        .map(|i| seen(&samples, i, stopped, resumed))
        .collect();
    // The count is the worker's traffic: gpu-sim received every request its Envoy sent it
    // but some of those sent around the freeze, which Envoy gave up on (route timeout) before
    // gpu-sim could read them (a request abandoned while gpu-sim was stopped is not counted).
    let routed = watches[0].read().map_or(0, |(c, _)| c);
    let deadline = Instant::now() + Duration::from_secs(10);
    let received = loop {
        let stats = frozen.stats().unwrap();
        let n: u64 = worker_paths
            .iter()
            .map(|p| stats.requests.get(*p).copied().unwrap_or(0))
            .sum();
        if n + seen[0].around_freeze >= routed || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        received <= routed && received + seen[0].around_freeze >= routed,
        "the frozen worker received {received} requests; its Envoy sent it {routed}, {} of \
         them around the freeze",
        seen[0].around_freeze
    );
    let window_end = stopped + seen[0].left_after;
    let window: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.at >= stopped && s.at <= window_end)
        .collect();
    let hurt = |s: &&&Sent| s.status != 200 || s.took > Duration::from_secs(1);
    let failed_outside = sent
        .iter()
        .filter(|s| s.status != 200)
        .filter(|s| s.at + Duration::from_millis(500) < stopped || s.at > window_end)
        .count();
    Figures {
        failed_outside,
        window_sent: window.len(),
        window_hurt: window.iter().filter(hurt).count(),
        failed: sent.iter().filter(|s| s.status != 200).count(),
        sent: sent.len(),
        seen,
    }
}

fn report(name: &str, f: &Figures, bound: Option<Duration>) {
    let s = &f.seen[0];
    eprintln!(
        "EJECT {name}: out of rotation {:.2} s after SIGSTOP{}; {} of {} requests sent in that \
         window failed or waited > 1 s; {} requests reached it during the {} s freeze; back \
         {} after SIGCONT; {} of {} requests failed in the run",
        s.left_after.as_secs_f64(),
        bound.map_or(String::new(), |b| format!(
            " (bound {:.2} s)",
            b.as_secs_f64()
        )),
        f.window_hurt,
        f.window_sent,
        s.during_freeze,
        FREEZE.as_secs(),
        s.back_after
            .map_or("never".to_string(), |d| format!("{:.2} s", d.as_secs_f64())),
        f.failed,
        f.sent,
    );
}

/// probe interval × unhealthy_threshold + probe timeout + the health-check interval + 1 s.
/// What every deployment with llm-pulse must show: the frozen worker (as `f.seen[watch]`
/// saw it) back within `back` of `SIGCONT`, and no request sent after it left rotation
/// failed.
fn assert_back_and_nothing_lost(f: &Figures, watch: usize, back: Duration) {
    let s = &f.seen[watch];
    assert!(
        s.back_after.is_some_and(|b| b <= back),
        "{s:?}, bound {back:?}"
    );
    assert_eq!(
        f.failed_outside, 0,
        "a request sent after the worker left rotation failed"
    );
}

fn leave_bound(hc_interval_ms: u64) -> Duration {
    Duration::from_millis(
        PROBE_INTERVAL_MS * UNHEALTHY_THRESHOLD + PROBE_TIMEOUT_MS + hc_interval_ms + 1_000,
    )
}

/// The next probe after `SIGCONT` succeeds (within an interval, a tick, and a probe in flight
/// answered late), then the next health check passes: + 1 s.
fn back_bound(extra_ms: u64) -> Duration {
    Duration::from_millis(PROBE_INTERVAL_MS + PROBE_TIMEOUT_MS + TICK_MS + extra_ms + 1_000)
}

fn pool_vars(workers: &[SimProcess], health_port: u16, ejection_ms: u64) -> Vec<(&str, String)> {
    let mut vars = vec![
        ("HEALTH_PORT", health_port.to_string()),
        ("PROBE_INTERVAL", ms(PROBE_INTERVAL_MS)),
        ("PROBE_TIMEOUT", ms(PROBE_TIMEOUT_MS)),
        ("HC_INTERVAL", secs(HC_INTERVAL_MS)),
        ("ROUTE_TIMEOUT", secs(ROUTE_TIMEOUT_MS)),
        ("OUTLIER_INTERVAL", secs(250)),
        ("EJECTION_TIME", secs(ejection_ms)),
    ];
    let names = [
        ["WORKER_0", "WORKER_0_HOST", "WORKER_0_PORT"],
        ["WORKER_1", "WORKER_1_HOST", "WORKER_1_PORT"],
        ["WORKER_2", "WORKER_2_HOST", "WORKER_2_PORT"],
    ];
    for (w, [both, host, port]) in workers.iter().zip(names) {
        vars.push((both, w.addr.to_string()));
        vars.push((host, w.addr.ip().to_string()));
        vars.push((port, w.addr.port().to_string()));
    }
    vars
}

/// The pool's Envoy and its llm_pulse_health listener.
fn pool(workers: &[SimProcess], without: &[&str], ejection_ms: u64) -> (Envoy, SocketAddr) {
    let health = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let envoy = Envoy::start_template(
        &EnvoyOptions::new(workers[0].addr),
        "pool.yaml",
        &pool_vars(workers, health.port(), ejection_ms),
        without,
    )
    .unwrap();
    (envoy, health)
}

/// The fail-fast answer itself, on a worker whose inference hangs: a 503 with `retry-after`
/// (the probe interval, rounded up) for inference paths; other paths pass to the worker.
#[test]
fn fail_fast_answers_inference_with_a_local_503_while_not_ready() {
    let sim = host_tests::sim::spawn(host_tests::sim::SimConfig::default()).unwrap();
    let envoy = Envoy::start(&EnvoyOptions {
        plugin_config: r#"{"health":{"fail_fast":true,"targets":[{"name":"w","cluster":"workers","backend":"vllm","model":"sim-model","mode":"always","interval":"1500ms","timeout":"300ms","unhealthy_threshold":1}]}}"#.into(),
        ..EnvoyOptions::new(sim.addr)
    })
    .unwrap();
    let chat = || {
        request_blocking(
            envoy.listener,
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            r#"{"model":"sim-model","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap()
    };
    let health = || {
        request_blocking(envoy.listener, "GET", "/health", &[], "")
            .unwrap()
            .status
    };
    let wait_for = |want: u16| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while health() != want {
            assert!(Instant::now() < deadline, "/health never {want}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(200);
    // One tick after /health turned, the answers follow it.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(chat().status, 200);
    let served = sim.stats().requests.get("/v1/chat/completions").copied();
    assert_eq!(served, Some(1));

    sim.set_mode(host_tests::sim::Mode::Hang).unwrap();
    wait_for(503);
    std::thread::sleep(Duration::from_millis(200));
    let r = chat();
    assert_eq!(r.status, 503);
    assert_eq!(
        r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("2")
    );
    assert_eq!(r.json().unwrap()["error"]["type"], "unavailable");
    assert_eq!(
        sim.stats().requests.get("/v1/chat/completions").copied(),
        served,
        "the refused request never reached the worker"
    );
    // Not inference: passes to the worker, whose own answers work in hang mode.
    let models = request_blocking(envoy.listener, "GET", "/v1/models", &[], "").unwrap();
    assert_eq!(models.status, 200);

    sim.set_mode(host_tests::sim::Mode::Normal).unwrap();
    wait_for(200);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(chat().status, 200);
}

#[test]
fn pool_health_check_through_llm_pulse_takes_a_frozen_worker_out() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let workers = workers();
    let (envoy, health) = pool(&workers, &["outlier detection"], 0);
    let watch = |i: usize| Watch {
        envoy: &envoy,
        cluster: "workers",
        host: workers[i].addr,
    };
    wait_healthy(&[watch(0), watch(1), watch(2)]);

    // The per-target answer: the Host names the worker; another Host passes to the 404 route.
    let ask = |host: &str| {
        request_blocking(health, "GET", "/llm-pulse/target", &[("host", host)], "").unwrap()
    };
    let r = ask("worker-1");
    assert_eq!(r.status, 200);
    assert_eq!(r.json().unwrap()["target"], "worker-1");
    assert_eq!(ask("someone-else").status, 404);

    let f = freeze_and_resume(
        envoy.listener,
        &workers,
        &[watch(FROZEN)],
        &["/v1/chat/completions"],
    );
    let bound = leave_bound(HC_INTERVAL_MS);
    report("pool, active health check via llm-pulse", &f, Some(bound));
    // pool.yaml's worker_label: the targets' names name the workers that served.
    let scrape = envoy.prometheus().unwrap();
    for name in ["worker-0", "worker-1", "worker-2"] {
        let served = scrape.sum("llm_requests_total", &[("worker", name)]);
        assert!(served > 0.0, "no requests labelled worker={name}");
    }
    let s = &f.seen[0];
    assert!(s.left_after <= bound, "{s:?}, bound {bound:?}");
    assert_back_and_nothing_lost(&f, 0, back_bound(HC_INTERVAL_MS));
}

#[test]
fn pool_outlier_detection_alone_is_the_baseline() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let workers = workers();
    let ejection_ms = 5_000;
    let (envoy, _) = pool(&workers, &["llm-pulse", "active health check"], ejection_ms);
    let watch = Watch {
        envoy: &envoy,
        cluster: "workers",
        host: workers[FROZEN].addr,
    };
    wait_healthy(&[watch]);
    let f = freeze_and_resume(
        envoy.listener,
        &workers,
        &[watch],
        &["/v1/chat/completions"],
    );
    report("pool, outlier detection alone (no llm-pulse)", &f, None);
    // Outlier detection acts only once requests to the frozen worker time out, so it cannot
    // leave rotation before the route timeout.
    let s = &f.seen[0];
    // (Requests go round robin, one in three to the frozen worker: the last one before the
    // ejection may leave a few hundred milliseconds before it.)
    assert!(
        s.left_after >= Duration::from_millis(ROUTE_TIMEOUT_MS - 500),
        "{s:?}"
    );
    assert!(s.back_after.is_some(), "{s:?}");
}

/// One llm-pulse Envoy per worker (the shipped envoy/envoy.yaml, one target: its worker).
/// The probes go through envoy.yaml's `llm_pulse_probe` cluster, so the `workers` cluster's
/// request count is the callers' traffic alone.
fn sidecars(workers: &[SimProcess], fail_fast: bool) -> Vec<Envoy> {
    workers
        .iter()
        .map(|w| {
            Envoy::start(&EnvoyOptions {
                plugin_config: format!(
                    r#"{{"health":{{"fail_fast":{fail_fast},"targets":[{{"name":"worker","cluster":"llm_pulse_probe","host":"{}","backend":"vllm","interval":"{}","timeout":"{}","unhealthy_threshold":{UNHEALTHY_THRESHOLD}}}]}}}}"#,
                    w.addr,
                    ms(PROBE_INTERVAL_MS),
                    ms(PROBE_TIMEOUT_MS)
                ),
                concurrency: 1,
                ..EnvoyOptions::new(w.addr)
            })
            .unwrap()
        })
        .collect()
}

fn caller(sidecars: &[Envoy], without: &[&str], ejection_ms: u64) -> Envoy {
    let mut vars = vec![
        ("HC_INTERVAL", secs(HC_INTERVAL_MS)),
        ("ROUTE_TIMEOUT", secs(ROUTE_TIMEOUT_MS)),
        ("OUTLIER_INTERVAL", secs(250)),
        ("EJECTION_TIME", secs(ejection_ms)),
    ];
    let names = [
        ["SIDECAR_0_HOST", "SIDECAR_0_PORT"],
        ["SIDECAR_1_HOST", "SIDECAR_1_PORT"],
        ["SIDECAR_2_HOST", "SIDECAR_2_PORT"],
    ];
    for (s, [host, port]) in sidecars.iter().zip(names) {
        vars.push((host, s.listener.ip().to_string()));
        vars.push((port, s.listener.port().to_string()));
    }
    Envoy::start_template(
        &EnvoyOptions::new(sidecars[0].listener),
        "caller.yaml",
        &vars,
        without,
    )
    .unwrap()
}

#[test]
fn caller_health_check_of_sidecars_takes_a_frozen_worker_out() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let workers = workers();
    let sidecars = sidecars(&workers, false);
    let caller = caller(&sidecars, &["fail-fast callers"], 0);
    let at_caller = |i: usize| Watch {
        envoy: &caller,
        cluster: "workers",
        host: sidecars[i].listener,
    };
    wait_healthy(&[at_caller(0), at_caller(1), at_caller(2)]);
    let next_to_worker = Watch {
        envoy: &sidecars[FROZEN],
        cluster: "workers",
        host: workers[FROZEN].addr,
    };
    let f = freeze_and_resume(
        caller.listener,
        &workers,
        &[next_to_worker, at_caller(FROZEN)],
        &["/v1/chat/completions"],
    );
    let bound = leave_bound(HC_INTERVAL_MS);
    report(
        "caller -> sidecars, caller's active health check",
        &f,
        Some(bound),
    );
    for s in &f.seen {
        assert!(s.left_after <= bound, "{s:?}, bound {bound:?}");
    }
    assert_back_and_nothing_lost(&f, 1, back_bound(HC_INTERVAL_MS));
}

#[test]
fn fail_fast_sidecars_with_outlier_detection_and_retries_take_a_frozen_worker_out() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let workers = workers();
    let sidecars = sidecars(&workers, true);
    let ejection_ms = 1_000;
    let caller = caller(&sidecars, &["active health check"], ejection_ms);
    let at_caller = |i: usize| Watch {
        envoy: &caller,
        cluster: "workers",
        host: sidecars[i].listener,
    };
    // Not ready yet: the sidecars refuse inference until their first probe passes.
    let deadline = Instant::now() + Duration::from_secs(30);
    for s in &sidecars {
        while request_blocking(s.listener, "GET", "/health", &[], "")
            .map_or(true, |r| r.status != 200)
        {
            assert!(Instant::now() < deadline, "a sidecar never got ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    wait_healthy(&[at_caller(0), at_caller(1), at_caller(2)]);
    let next_to_worker = Watch {
        envoy: &sidecars[FROZEN],
        cluster: "workers",
        host: workers[FROZEN].addr,
    };
    let f = freeze_and_resume(
        caller.listener,
        &workers,
        &[next_to_worker, at_caller(FROZEN)],
        &["/v1/chat/completions"],
    );
    // No health checker in this path: the sidecar refuses as soon as the probes fail.
    let bound = leave_bound(0);
    report(
        "caller -> fail-fast sidecars, outlier detection + retry",
        &f,
        Some(bound),
    );
    let s = &f.seen[0];
    assert!(s.left_after <= bound, "{s:?}, bound {bound:?}");
    // Back once ready, and once the caller's ejection (if any) has run out.
    assert_back_and_nothing_lost(&f, 0, back_bound(ejection_ms + 250));
    // The sidecar's refusals were retried on another worker: the client saw none of them
    // (failed_outside above).
    let retried = caller
        .admin_get("/stats?filter=^cluster.workers.upstream_rq_retry$")
        .unwrap();
    eprintln!("EJECT caller -> fail-fast sidecars: {}", retried.trim());
}

/// Envoy Gateway's example (examples/envoy-gateway/backend-traffic-policy.yaml) asks what
/// envoy/caller.yaml's `active health check` asks, which the runs above measure: the
/// sidecar's `/health`, one failed answer out, one passed answer back.
#[test]
fn envoy_gateway_policy_checks_what_the_caller_checks() {
    let root = host_tests::envoy::repo_root();
    let read = |p: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(root.join(p)).unwrap();
        let mut text = host_tests::envoy::without_block(&text, "fail-fast callers");
        // Placeholders (ports, durations) are not compared: any value will do.
        while let Some(start) = text.find("${") {
            let end = start + text[start..].find('}').unwrap();
            text.replace_range(start..=end, "1");
        }
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let btp = read("examples/envoy-gateway/backend-traffic-policy.yaml");
    assert_eq!(btp["apiVersion"], "gateway.envoyproxy.io/v1alpha1");
    assert_eq!(btp["kind"], "BackendTrafficPolicy");
    let active = &btp["spec"]["healthCheck"]["active"];
    let caller = read("envoy/caller.yaml");
    let hc = &caller["static_resources"]["clusters"][0]["health_checks"][0];
    assert_eq!(active["type"], "HTTP");
    assert_eq!(active["http"]["path"], hc["http_health_check"]["path"]);
    assert_eq!(active["http"]["expectedStatuses"], serde_json::json!([200]));
    assert_eq!(active["unhealthyThreshold"], hc["unhealthy_threshold"]);
    assert_eq!(active["healthyThreshold"], hc["healthy_threshold"]);
}
