//! Health probes end to end: real Envoy (4 worker threads, so 4 VMs compete for each probe)
//! with the built filter, probing gpu-sim with the smallest real inference.
//!
//! Timing bounds. With interval I, timeout T, tick period K (I/10, here 100 ms) and threshold
//! N: after a worker hangs, the next probe starts within I + K, and N probes in a row must
//! time out, each T after its start, probes starting I (+K) apart: detection takes at most
//! I + (N-1)(I + K) + T + K. Recovery takes at most I + K (the next probe succeeds; with
//! healthy_threshold 1). The margin on top (MARGIN) covers the /health polling period (50 ms)
//! and scheduling on a loaded 2-core machine.

use host_tests::envoy::{Envoy, EnvoyOptions};
use host_tests::sim::client::request_blocking;
use host_tests::sim::{self, Mode, SimConfig, SimHandle};
use std::time::{Duration, Instant};

const INTERVAL_MS: u64 = 1_000;
const TIMEOUT_MS: u64 = 500;
const TICK_MS: u64 = INTERVAL_MS / 10;
const MARGIN_MS: u64 = 500;

fn fast_sim() -> SimHandle {
    sim::spawn(SimConfig {
        ttft: Duration::from_millis(5),
        itl: Duration::from_millis(1),
        tokens: 4,
        ..SimConfig::default()
    })
    .unwrap()
}

fn target(name: &str, extra: &str) -> String {
    format!(
        r#"{{"name":"{name}","cluster":"workers","backend":"vllm","interval":"{INTERVAL_MS}ms","timeout":"{TIMEOUT_MS}ms"{extra}}}"#
    )
}

fn envoy(worker: std::net::SocketAddr, targets: &[String], concurrency: u32) -> Envoy {
    Envoy::start(&EnvoyOptions {
        // These tests read the internals (`last_error`, `host`): details on.
        plugin_config: format!(
            r#"{{"health":{{"details":true,"targets":[{}]}}}}"#,
            targets.join(",")
        ),
        concurrency,
        ..EnvoyOptions::new(worker)
    })
    .unwrap()
}

fn health(envoy: &Envoy) -> (u16, serde_json::Value) {
    let r = request_blocking(envoy.listener, "GET", "/health", &[], "").unwrap();
    let body = serde_json::from_slice(&r.body()).unwrap_or(serde_json::Value::Null);
    (r.status, body)
}

/// Polls `/health` every 50 ms until `done`; returns how long it took.
fn wait_health(
    envoy: &Envoy,
    limit: Duration,
    done: impl Fn(u16, &serde_json::Value) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let (status, body) = health(envoy);
        if done(status, &body) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "/health did not change within {limit:?}: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn gauge(envoy: &Envoy, target: &str) -> Option<f64> {
    envoy
        .prometheus()
        .unwrap()
        .value("llm_health_status", &[("target", target)])
}

#[test]
fn one_probe_per_interval_whatever_the_worker_count() {
    let sim = fast_sim();
    let envoy = envoy(
        sim.addr,
        &[target("w0", r#","model":"sim-model","mode":"always""#)],
        4,
    );
    wait_health(&envoy, Duration::from_secs(5), |s, _| s == 200);
    std::thread::sleep(Duration::from_millis(5_200));
    let log = sim.request_log("/v1/completions").expect("probes arrived");
    let arrivals = &log.arrivals;
    assert!(arrivals.len() >= 5, "{} probes in > 5 s", arrivals.len());
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        // 4 VMs tick; a second prober would show as a gap far below the interval.
        assert!(
            gap >= Duration::from_millis(INTERVAL_MS - 50)
                && gap <= Duration::from_millis(INTERVAL_MS + 2 * TICK_MS + MARGIN_MS),
            "probe gaps {:?}",
            arrivals.windows(2).map(|p| p[1] - p[0]).collect::<Vec<_>>()
        );
    }
    // The probe is the smallest real inference, exactly.
    assert_eq!(
        String::from_utf8_lossy(&log.last_body),
        r#"{"ignore_eos":false,"max_tokens":1,"model":"sim-model","prompt":[1],"stream":false,"temperature":0}"#
    );
    assert_eq!(
        log.last_headers.get("user-agent").map(String::as_str),
        Some("llm-pulse-health-probe")
    );
    let scrape = envoy.prometheus().unwrap();
    assert_eq!(
        scrape.value("llm_health_status", &[("target", "w0")]),
        Some(1.0)
    );
    let successes = scrape
        .value(
            "llm_health_checks_total",
            &[("target", "w0"), ("result", "success")],
        )
        .unwrap();
    assert!(
        successes as usize >= arrivals.len() - 1,
        "{successes} successes for {} probes",
        arrivals.len()
    );
}

#[test]
fn a_hung_gpu_that_still_answers_health_is_caught_and_recovery_seen() {
    let sim = fast_sim();
    let envoy = envoy(
        sim.addr,
        &[target(
            "w0",
            r#","unhealthy_threshold":2,"healthy_threshold":1"#,
        )],
        4,
    );
    wait_health(&envoy, Duration::from_secs(5), |s, _| s == 200);
    assert_eq!(gauge(&envoy, "w0"), Some(1.0));

    sim.set_mode(Mode::Hang).unwrap();
    // The worker's own /health still passes: that is the point.
    let own = request_blocking(sim.addr, "GET", "/health", &[], "").unwrap();
    assert_eq!(own.status, 200);
    let n = 2;
    let bound = INTERVAL_MS + (n - 1) * (INTERVAL_MS + TICK_MS) + TIMEOUT_MS + TICK_MS + MARGIN_MS;
    let detected = wait_health(&envoy, Duration::from_millis(bound), |s, b| {
        s == 503 && b["targets"]["w0"]["status"] == "notready"
    });
    eprintln!("hang detected after {detected:?} (bound {bound} ms)");
    let (_, body) = health(&envoy);
    assert_eq!(body["status"], "notready");
    assert!(
        body["targets"]["w0"]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("timeout"),
        "{body}"
    );
    assert!(
        body["targets"]["w0"]["consecutive_failures"]
            .as_u64()
            .unwrap()
            >= 2
    );
    assert_eq!(gauge(&envoy, "w0"), Some(0.0));
    let scrape = envoy.prometheus().unwrap();
    assert!(
        scrape
            .value(
                "llm_health_checks_total",
                &[("target", "w0"), ("result", "timeout")]
            )
            .unwrap()
            >= 2.0
    );

    sim.set_mode(Mode::Normal).unwrap();
    let bound = INTERVAL_MS + TICK_MS + MARGIN_MS;
    let recovered = wait_health(&envoy, Duration::from_millis(bound), |s, _| s == 200);
    eprintln!("recovery seen after {recovered:?} (bound {bound} ms)");
    assert_eq!(gauge(&envoy, "w0"), Some(1.0));
}

#[test]
fn two_workers_behind_one_cluster_are_probed_and_reported_separately() {
    let a = fast_sim();
    let b = fast_sim();
    let probe = |name: &str, addr: std::net::SocketAddr| {
        format!(
            r#"{{"name":"{name}","cluster":"llm_pulse_probe","host":"{addr}","backend":"vllm","model":"sim-model","interval":"{INTERVAL_MS}ms","timeout":"{TIMEOUT_MS}ms","unhealthy_threshold":1}}"#
        )
    };
    let envoy = envoy(a.addr, &[probe("gpu-a", a.addr), probe("gpu-b", b.addr)], 2);
    wait_health(&envoy, Duration::from_secs(5), |s, _| s == 200);
    b.set_mode(Mode::Hang).unwrap();
    wait_health(&envoy, Duration::from_secs(5), |s, body| {
        s == 503
            && body["targets"]["gpu-b"]["status"] == "notready"
            && body["targets"]["gpu-a"]["status"] == "ready"
    });
    assert_eq!(gauge(&envoy, "gpu-a"), Some(1.0));
    assert_eq!(gauge(&envoy, "gpu-b"), Some(0.0));
    // Each worker got its own probes, routed by the original-destination header.
    for (sim, addr) in [(&a, a.addr), (&b, b.addr)] {
        let log = sim.request_log("/v1/completions").unwrap();
        assert_eq!(
            log.last_headers.get("x-envoy-original-dst-host"),
            Some(&addr.to_string())
        );
    }
    let (_, body) = health(&envoy);
    assert_eq!(body["targets"]["gpu-b"]["host"], b.addr.to_string());
}

#[test]
fn model_discovery_backends_and_live() {
    let sim = fast_sim();
    let targets = [
        target("vllm-discovered", r#","mode":"always""#),
        target("sglang", r#","backend":"sglang","mode":"always""#)
            .replace(r#""backend":"vllm","#, ""),
        target(
            "chat",
            r#","backend":"openai","mode":"always","model":"sim-model""#,
        )
        .replace(r#""backend":"vllm","#, ""),
    ];
    let envoy = envoy(sim.addr, &targets, 2);
    let waited = wait_health(&envoy, Duration::from_secs(6), |s, _| s == 200);
    eprintln!("all three targets ready after {waited:?}");
    let (_, body) = health(&envoy);
    assert_eq!(body["targets"]["vllm-discovered"]["model"], "sim-model");
    assert!(body["uptime_seconds"].as_u64().is_some());
    assert!(
        sim.request_log("/v1/models").is_some(),
        "the model was discovered"
    );
    let generate = sim.request_log("/generate").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&generate.last_body),
        r#"{"input_ids":[1],"sampling_params":{"ignore_eos":false,"max_new_tokens":1,"temperature":0},"stream":false}"#
    );
    let chat = sim.request_log("/v1/chat/completions").unwrap();
    assert!(String::from_utf8_lossy(&chat.last_body)
        .contains(r#""messages":[{"content":"Test","role":"user"}]"#));

    let live = request_blocking(envoy.listener, "GET", "/live", &[], "").unwrap();
    assert_eq!(live.status, 200);
    assert_eq!(live.json().unwrap()["status"], "live");
    // Our answers are not inference traffic.
    assert_eq!(
        envoy.prometheus().unwrap().sum("llm_requests_total", &[]),
        0.0
    );
}

#[test]
fn without_health_config_the_workers_own_health_passes_through() {
    let sim = fast_sim();
    let envoy = Envoy::start(&EnvoyOptions::new(sim.addr)).unwrap();
    let r = request_blocking(envoy.listener, "GET", "/health", &[], "").unwrap();
    assert_eq!(
        (r.status, r.body().len()),
        (200, 0),
        "gpu-sim's own empty 200"
    );
    assert_eq!(sim.stats().requests.get("/health"), Some(&1));
}

/// An image-diffusion worker probed on `/v1/images/generations`: ready on its image, not
/// ready on an engine error and on an answer that is no image, ready again after. Compared
/// with what the worker saw: the exact probe it received, and one success per probe.
#[test]
fn an_image_worker_is_probed_by_its_image() {
    let sim = sim::spawn(SimConfig {
        ttft: Duration::from_millis(5),
        itl: Duration::from_millis(1),
        // A 512x512 PNG of incompressible pixels, base64-encoded: the largest answer the
        // built-in probe can get, through Envoy's callout buffer and the default cap.
        image_b64_len: Some(1_049_432),
        ..SimConfig::default()
    })
    .unwrap();
    let image_target = target("img", r#","mode":"always","unhealthy_threshold":1"#)
        .replace(r#""backend":"vllm""#, r#""backend":"diffusion""#);
    let envoy = envoy(sim.addr, &[image_target], 2);
    wait_health(&envoy, Duration::from_secs(5), |s, b| {
        s == 200 && b["targets"]["img"]["status"] == "ready"
    });
    let (_, body) = health(&envoy);
    assert_eq!(body["targets"]["img"]["backend"], "diffusion");
    let log = sim
        .request_log("/v1/images/generations")
        .expect("the image probe arrived");
    assert_eq!(
        String::from_utf8_lossy(&log.last_body),
        r#"{"n":1,"num_inference_steps":1,"prompt":"test","response_format":"b64_json","size":"512x512"}"#
    );
    assert!(
        sim.request_log("/v1/models").is_none(),
        "no model discovery"
    );
    let successes = envoy
        .prometheus()
        .unwrap()
        .value(
            "llm_health_checks_total",
            &[("target", "img"), ("result", "success")],
        )
        .unwrap();
    // Read after the counter: every success counted had arrived at the worker by then.
    let probes = sim
        .request_log("/v1/images/generations")
        .unwrap()
        .arrivals
        .len() as u64;
    assert!(
        successes >= 1.0 && successes as u64 <= probes,
        "{successes} successes for {probes} probes"
    );

    // The engine fails: a 500, quoted with details on.
    sim.set_mode(Mode::Error).unwrap();
    wait_health(&envoy, Duration::from_secs(5), |s, b| {
        s == 503 && b["targets"]["img"]["status"] == "notready"
    });
    let (_, body) = health(&envoy);
    let error = body["targets"]["img"]["last_error"].as_str().unwrap();
    assert!(error.starts_with("status 500"), "{body}");
    assert_eq!(gauge(&envoy, "img"), Some(0.0));
    sim.set_mode(Mode::Normal).unwrap();
    wait_health(&envoy, Duration::from_secs(5), |s, _| s == 200);

    // A 200 that is no image is a failure too: the judge, not the status, decides.
    sim.update_config(|c| c.unary_garbage = true).unwrap();
    wait_health(&envoy, Duration::from_secs(5), |s, b| {
        s == 503 && b["targets"]["img"]["last_error"] == "answer is not JSON"
    });
    assert_eq!(gauge(&envoy, "img"), Some(0.0));
}
