//! Faults around a real Envoy with the built filter: the worker dies mid-stream or is down when
//! Envoy starts, probe answers arrive after their timeout, two targets flap, and Envoy is
//! hot-restarted. Through all of it requests are measured, no VM fails, and every
//! `llm_inflight_requests` series returns to 0.

use host_tests::envoy::{Envoy, EnvoyOptions, HotRestart};
use host_tests::prom::Scrape;
use host_tests::sim::client::{request_blocking, Recorded};
use host_tests::sim::{self, Mode, SimConfig, SimHandle};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

const MODEL: &str = r#""model":"sim-model""#;

fn sim_with(ttft_ms: u64, itl_ms: u64, tokens: u32) -> SimHandle {
    sim::spawn(SimConfig {
        ttft: Duration::from_millis(ttft_ms),
        itl: Duration::from_millis(itl_ms),
        tokens,
        ..SimConfig::default()
    })
    .unwrap()
}

fn chat(envoy: &Envoy, stream: bool) -> Recorded {
    request_blocking(
        envoy.listener,
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        format!(r#"{{"model":"m","stream":{stream}}}"#),
    )
    .unwrap()
}

fn requests(s: &Scrape, want: &[(&str, &str)]) -> f64 {
    s.sum("llm_requests_total", want)
}

/// Waits until `ready` holds on a scrape; panics with the last one after `limit`.
fn scrape_until(envoy: &Envoy, limit: Duration, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let s = envoy.prometheus_when(limit, &ready).unwrap();
    assert!(
        ready(&s),
        "condition not met within {limit:?}: {:?}",
        s.samples
            .iter()
            .filter(|x| x.name.starts_with("llm_"))
            .collect::<Vec<_>>()
    );
    s
}

/// No Wasm failure logged; every in-flight gauge back at 0.
fn assert_clean(envoy: &Envoy) {
    let s = scrape_until(envoy, Duration::from_secs(10), |s| {
        s.samples
            .iter()
            .filter(|x| x.name == "llm_inflight_requests")
            .all(|x| x.value == 0.0)
    });
    assert!(s.samples.iter().any(|x| x.name.starts_with("llm_")));
    let log = envoy.log();
    for bad in [
        "panicked",
        "Wasm VM failed",
        "unreachable",
        "Function: proxy_on",
    ] {
        assert!(!log.contains(bad), "Envoy log has {bad:?}:\n{log}");
    }
}

fn health(envoy: &Envoy) -> (u16, serde_json::Value) {
    let r = request_blocking(envoy.listener, "GET", "/health", &[], "").unwrap();
    let body = serde_json::from_slice(&r.body()).unwrap_or(serde_json::Value::Null);
    (r.status, body)
}

fn wait_health(
    envoy: &Envoy,
    limit: Duration,
    what: &str,
    done: impl Fn(u16, &serde_json::Value) -> bool,
) {
    let start = Instant::now();
    loop {
        let (status, body) = health(envoy);
        if done(status, &body) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: /health did not get there in {limit:?}: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn checks(s: &Scrape, target: &str, result: &str) -> f64 {
    s.sum(
        "llm_health_checks_total",
        &[("target", target), ("result", result)],
    )
}

/// Starts a streaming request on a thread and returns once the worker has received it and
/// had time to stream its first tokens.
fn stream_in_background(envoy: &Envoy, sim: &SimHandle) -> std::thread::JoinHandle<Recorded> {
    let listener = envoy.listener;
    let path = "/v1/chat/completions";
    let before = sim.request_log(path).map_or(0, |l| l.arrivals.len());
    let handle = std::thread::spawn(move || {
        request_blocking(
            listener,
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            r#"{"model":"m","stream":true}"#,
        )
        .unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.request_log(path).map_or(0, |l| l.arrivals.len()) == before
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(150));
    handle
}

#[test]
fn worker_killed_during_a_stream() {
    // 40 tokens, 25 ms apart: a second of streaming to cut into.
    let sim = sim_with(5, 25, 40);
    let envoy = Envoy::start(&EnvoyOptions {
        concurrency: 1,
        ..EnvoyOptions::new(sim.addr)
    })
    .unwrap();

    // Down: listener closed, open connections dropped mid-body.
    let client = stream_in_background(&envoy, &sim);
    sim.set_mode(Mode::Down).unwrap();
    let r = client.join().unwrap();
    assert_eq!(r.status, 200);
    let body = String::from_utf8_lossy(&r.body()).into_owned();
    assert!(
        body.starts_with("data: ") && !body.contains("[DONE]"),
        "{body}"
    );
    let s = scrape_until(&envoy, Duration::from_secs(10), |s| {
        requests(s, &[("error_type", "truncated_stream")]) >= 1.0
    });
    assert_eq!(requests(&s, &[]), 1.0);

    // While down: connection refused, `unavailable`.
    let r = chat(&envoy, true);
    assert_eq!(r.status, 503);
    scrape_until(&envoy, Duration::from_secs(10), |s| {
        requests(s, &[("error_type", "unavailable")]) >= 1.0
    });

    // Back up: measured as before.
    sim.set_mode(Mode::Normal).unwrap();
    let r = chat(&envoy, true);
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body()).contains("[DONE]"));

    // The worker process gone for good (its handle dropped) mid-stream.
    let client = stream_in_background(&envoy, &sim);
    drop(sim);
    let r = client.join().unwrap();
    assert!(!String::from_utf8_lossy(&r.body()).contains("[DONE]"));
    let s = scrape_until(&envoy, Duration::from_secs(10), |s| {
        requests(s, &[("error_type", "truncated_stream")]) >= 2.0
    });
    assert_eq!(requests(&s, &[("status", "success")]), 1.0);
    assert_eq!(requests(&s, &[]), 4.0);
    assert_clean(&envoy);
}

fn target(
    name: &str,
    cluster: &str,
    host: Option<SocketAddr>,
    interval_ms: u64,
    timeout_ms: u64,
) -> String {
    let host = host
        .map(|h| format!(r#","host":"{h}""#))
        .unwrap_or_default();
    format!(
        r#"{{"name":"{name}","cluster":"{cluster}"{host},"backend":"vllm",{MODEL},"interval":"{interval_ms}ms","timeout":"{timeout_ms}ms","unhealthy_threshold":1,"mode":"always"}}"#
    )
}

/// These tests read `last_error`: details on.
fn health_config(targets: &[String]) -> String {
    format!(
        r#"{{"health":{{"details":true,"targets":[{}]}}}}"#,
        targets.join(",")
    )
}

#[test]
fn worker_down_at_envoy_start_then_recovering() {
    let sim = sim_with(5, 1, 4);
    sim.set_mode(Mode::Down).unwrap();
    let envoy = Envoy::start(&EnvoyOptions {
        plugin_config: health_config(&[target("w0", "workers", None, 300, 200)]),
        concurrency: 2,
        ..EnvoyOptions::new(sim.addr)
    })
    .unwrap();
    let r = chat(&envoy, true);
    assert_eq!(r.status, 503);
    let s = scrape_until(&envoy, Duration::from_secs(10), |s| {
        requests(s, &[("error_type", "unavailable")]) >= 1.0 && checks(s, "w0", "failure") >= 2.0
    });
    assert_eq!(checks(&s, "w0", "success"), 0.0);
    let (status, body) = health(&envoy);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["targets"]["w0"]["status"], "notready");

    sim.set_mode(Mode::Normal).unwrap();
    wait_health(&envoy, Duration::from_secs(5), "recovery", |st, _| {
        st == 200
    });
    let r = chat(&envoy, true);
    assert_eq!(r.status, 200);
    let s = scrape_until(&envoy, Duration::from_secs(10), |s| {
        requests(s, &[("status", "success")]) >= 1.0
    });
    assert_eq!(s.value("llm_health_status", &[("target", "w0")]), Some(1.0));
    assert_clean(&envoy);
}

#[test]
fn probe_answers_after_their_timeout_are_timeouts() {
    // Every probe is answered, but 600 ms after it was sent: 400 ms after its timeout.
    let sim = sim_with(600, 1, 1);
    let envoy = Envoy::start(&EnvoyOptions {
        plugin_config: health_config(&[target("slow", "workers", None, 1000, 200)]),
        concurrency: 2,
        ..EnvoyOptions::new(sim.addr)
    })
    .unwrap();
    let s = scrape_until(&envoy, Duration::from_secs(10), |s| {
        checks(s, "slow", "timeout") >= 3.0
    });
    // The late answers count for nothing: no success, no failure, not ready.
    assert_eq!(checks(&s, "slow", "success"), 0.0);
    assert_eq!(checks(&s, "slow", "failure"), 0.0);
    assert!(sim.request_log("/v1/completions").unwrap().arrivals.len() >= 3);
    let (status, body) = health(&envoy);
    assert_eq!(status, 503, "{body}");
    let last_error = body["targets"]["slow"]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(last_error.starts_with("timeout"), "{body}");

    // Fast again: ready, and the count of timeouts stops growing.
    sim.update_config(|c| c.ttft = Duration::from_millis(5))
        .unwrap();
    wait_health(&envoy, Duration::from_secs(5), "recovery", |st, _| {
        st == 200
    });
    assert_clean(&envoy);
}

#[test]
fn two_targets_flapping_are_tracked_apart() {
    let a = sim_with(2, 1, 1);
    let b = sim_with(2, 1, 1);
    let envoy = Envoy::start(&EnvoyOptions {
        plugin_config: health_config(&[
            target("a", "llm_pulse_probe", Some(a.addr), 200, 150),
            target("b", "llm_pulse_probe", Some(b.addr), 200, 150),
        ]),
        concurrency: 2,
        ..EnvoyOptions::new(a.addr)
    })
    .unwrap();
    wait_health(&envoy, Duration::from_secs(5), "both ready", |st, _| {
        st == 200
    });
    for round in 0..3 {
        for (down, up, dn, un) in [(&a, &b, "a", "b"), (&b, &a, "b", "a")] {
            down.set_mode(Mode::Error).unwrap();
            up.set_mode(Mode::Normal).unwrap();
            wait_health(
                &envoy,
                Duration::from_secs(5),
                &format!("round {round}: {dn} down, {un} up"),
                |st, v| {
                    st == 503
                        && v["targets"][dn]["status"] == "notready"
                        && v["targets"][un]["status"] == "ready"
                },
            );
        }
    }
    a.set_mode(Mode::Normal).unwrap();
    b.set_mode(Mode::Normal).unwrap();
    wait_health(&envoy, Duration::from_secs(5), "both back", |st, _| {
        st == 200
    });
    let s = envoy.prometheus().unwrap();
    for t in ["a", "b"] {
        assert!(checks(&s, t, "failure") >= 3.0, "{t}");
        assert!(checks(&s, t, "success") >= 3.0, "{t}");
        assert_eq!(s.value("llm_health_status", &[("target", t)]), Some(1.0));
    }
    let log = envoy.log();
    assert!(!log.contains("Wasm VM failed") && !log.contains("panicked"));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Envoy 1.40 hot restart (`--restart-epoch 1`, same `--base-id`): the new Envoy takes the
/// listener and serves at once; its VMs start fresh (shared data is per process: probe state
/// starts over, not ready until its own first probe succeeds); counters continue only with
/// what Envoy transfers (deltas since the parent's last stats flush); in-flight ends at 0.
/// (A static bootstrap cannot reload its listener; a hot restart is how it gets new config.)
#[test]
fn hot_restart_keeps_serving_and_starts_probe_state_over() {
    let sim = sim_with(5, 1, 4);
    let base_id = 40_000 + std::process::id() % 20_000;
    let first_opts = EnvoyOptions {
        plugin_config: health_config(&[target("w0", "workers", None, 300, 200)]),
        concurrency: 1,
        // Both epochs listen on the same fixed port: the successor takes the parent's socket.
        listen_port: free_port(),
        hot_restart: Some(HotRestart {
            base_id,
            epoch: 0,
            drain_s: 1,
            parent_shutdown_s: 3,
        }),
        ..EnvoyOptions::new(sim.addr)
    };
    let mut first = Envoy::start(&first_opts).unwrap();
    wait_health(&first, Duration::from_secs(5), "first ready", |st, _| {
        st == 200
    });
    for _ in 0..3 {
        assert_eq!(chat(&first, true).status, 200);
    }
    scrape_until(&first, Duration::from_secs(5), |s| {
        requests(s, &[("status", "success")]) == 3.0
    });

    let second = Envoy::start(&EnvoyOptions {
        hot_restart: Some(HotRestart {
            epoch: 1,
            ..first_opts.hot_restart.unwrap()
        }),
        ..first_opts.clone()
    })
    .unwrap();
    assert_eq!(second.listener, first.listener, "the listener moved over");
    // Right after the restart the new VMs have no probe result of their own yet.
    let (_, body) = health(&second);
    println!("/health right after the hot restart: {body}");
    for _ in 0..2 {
        assert_eq!(chat(&second, true).status, 200);
    }
    wait_health(&second, Duration::from_secs(5), "second ready", |st, _| {
        st == 200
    });
    // The parent exits after --parent-shutdown-time-s.
    let deadline = Instant::now() + Duration::from_secs(10);
    while first.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!first.is_running(), "the old Envoy did not exit");
    let s = scrape_until(&second, Duration::from_secs(5), |s| {
        requests(s, &[("status", "success")]) >= 2.0
    });
    let carried = requests(&s, &[("status", "success")]);
    println!("requests_total after the hot restart: {carried} (3 before it, 2 after)");
    // Envoy hands counters over as deltas latched since the parent's last stats flush: with
    // a flush every 250 ms the parent's 3 were latched long before, so the count restarts
    // (Prometheus `rate()` treats it as a counter reset). Never more than both together.
    assert!(
        (2.0..=5.0).contains(&carried),
        "counters after hot restart: {carried}"
    );
    assert_clean(&second);
}
