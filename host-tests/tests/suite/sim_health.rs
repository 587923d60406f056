//! gpu-sim: run-time fault modes for health-probe tests (hang, slow, error, down, recover),
//! the admin endpoints, and the request log.
//!
//! Every sim here is owned by a `SimHandle` (or a child-process guard) that stops it on drop,
//! so a failing assertion does not leave a server behind.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use host_tests::sim::client::{request, Recorded};
use host_tests::sim::{self, Mode, SimConfig, SimHandle, LOG_ARRIVALS};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};

const INFERENCE: [(&str, &str); 4] = [
    (
        "/v1/chat/completions",
        r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":1}"#,
    ),
    (
        "/v1/completions",
        r#"{"prompt":[1],"max_tokens":1,"temperature":0}"#,
    ),
    (
        "/generate",
        r#"{"input_ids":[1],"sampling_params":{"max_new_tokens":1,"temperature":0}}"#,
    ),
    (
        "/v1/images/generations",
        r#"{"prompt":"test","n":1,"size":"512x512","num_inference_steps":1,"response_format":"b64_json"}"#,
    ),
];

fn cfg(ttft_ms: u64, itl_ms: u64, tokens: u32) -> SimConfig {
    SimConfig {
        ttft: Duration::from_millis(ttft_ms),
        itl: Duration::from_millis(itl_ms),
        tokens,
        ..SimConfig::default()
    }
}

async fn start(cfg: SimConfig) -> SimHandle {
    sim::start("127.0.0.1:0".parse().expect("addr"), cfg)
        .await
        .expect("sim starts")
}

async fn send(addr: SocketAddr, method: &str, path: &str, body: &str) -> Recorded {
    request(addr, method, path, &[], body.to_owned())
        .await
        .expect("request")
}

/// `send` with a deadline: `None` when no complete answer came within `limit`.
async fn send_within(
    limit: Duration,
    addr: SocketAddr,
    path: &str,
    body: &str,
) -> Option<Recorded> {
    timeout(limit, request(addr, "POST", path, &[], body.to_owned()))
        .await
        .ok()
        .map(|res| res.expect("request"))
}

async fn wait_inflight(sim: &SimHandle, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = sim.stats().inflight;
        if now == want || Instant::now() > deadline {
            return now;
        }
        sleep(Duration::from_millis(10)).await;
    }
}

/// Whether connecting to `addr` is refused within about 2 s (polled: once in a CI run a
/// connect right after the listener closed still got through).
fn refused(addr: SocketAddr) -> bool {
    for _ in 0..40 {
        if StdTcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[tokio::test]
async fn hang_holds_inference_while_health_and_models_answer() {
    let sim = start(cfg(5, 1, 2)).await;
    sim.set_mode(Mode::Hang).expect("hang");
    assert_eq!(sim.mode(), Mode::Hang);
    for (path, body) in INFERENCE {
        // A client with a 1 s timeout gives up: no answer, not even a status line.
        assert!(
            send_within(Duration::from_secs(1), sim.addr, path, body)
                .await
                .is_none(),
            "{path} answered while hung"
        );
    }
    // The whole point: a hung GPU whose /health still passes.
    let health = send(sim.addr, "GET", "/health", "").await;
    assert_eq!(health.status, 200);
    assert_eq!(send(sim.addr, "GET", "/v1/models", "").await.status, 200);
    let mode = send(sim.addr, "GET", "/sim/mode", "").await;
    assert_eq!(mode.json().expect("json"), json!({"mode": "hang"}));
    // The hung requests were accepted (counted) and released when their clients left.
    for (path, _) in INFERENCE {
        assert_eq!(sim.stats().requests.get(path), Some(&1), "{path}");
    }
    assert_eq!(wait_inflight(&sim, 0).await, 0);

    // Not one byte comes back on the raw connection either.
    let mut tcp = TcpStream::connect(sim.addr).await.expect("connect");
    let body = INFERENCE[1].1;
    let req = format!(
        "POST /v1/completions HTTP/1.1\r\nhost: sim\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut buf = [0u8; 256];
    assert!(
        timeout(Duration::from_secs(1), tcp.read(&mut buf))
            .await
            .is_err(),
        "hung request got bytes"
    );

    // A request hung at recover time is released and answered.
    let waiting = tokio::spawn(request(
        sim.addr,
        "POST",
        "/generate",
        &[],
        INFERENCE[2].1.to_owned(),
    ));
    assert_eq!(wait_inflight(&sim, 2).await, 2);
    sleep(Duration::from_millis(300)).await;
    sim.set_mode(Mode::Normal).expect("recover");
    let released = timeout(Duration::from_secs(10), waiting)
        .await
        .expect("answered after recover")
        .expect("task")
        .expect("request");
    assert_eq!(released.status, 200);
    assert_eq!(released.json().expect("json")["text"], " t0");
    assert!(released.frames[0].0 >= Duration::from_millis(300));
    // The raw connection's request is answered too.
    let n = timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("answered after recover")
        .expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
    // And new requests answer normally.
    for (path, body) in INFERENCE {
        let rec = send_within(Duration::from_secs(10), sim.addr, path, body)
            .await
            .expect("answer");
        assert_eq!(rec.status, 200, "{path}");
    }
}

#[tokio::test]
async fn slow_multiplies_ttft() {
    let sim = start(SimConfig {
        slow_factor: 8,
        ..cfg(50, 0, 1)
    })
    .await;
    let normal = send(sim.addr, "POST", INFERENCE[1].0, INFERENCE[1].1).await;
    assert!(normal.frames[0].0 >= Duration::from_millis(50));
    sim.set_mode(Mode::Slow).expect("slow");
    for (path, body) in INFERENCE {
        let rec = send(sim.addr, "POST", path, body).await;
        assert_eq!(rec.status, 200, "{path}");
        // Lower bound only: 8 x 50 ms.
        assert!(
            rec.frames[0].0 >= Duration::from_millis(400),
            "{path}: {:?}",
            rec.frames[0].0
        );
    }
    // Streams too: the first token is what is late.
    let rec = send(
        sim.addr,
        "POST",
        "/v1/completions",
        r#"{"prompt":"a","stream":true}"#,
    )
    .await;
    assert!(rec.events()[0].0 >= Duration::from_millis(400));
    // Health is not slowed (generous sanity bound).
    let health = send(sim.addr, "GET", "/health", "").await;
    assert_eq!(health.status, 200);
    sim.set_mode(Mode::Normal).expect("recover");
    let rec = send(sim.addr, "POST", INFERENCE[1].0, INFERENCE[1].1).await;
    assert_eq!(rec.status, 200);
    assert!(rec.frames[0].0 < Duration::from_secs(30));
}

#[tokio::test]
async fn error_mode_answers_500() {
    let sim = start(SimConfig {
        // At once, not after this TTFT.
        ttft: Duration::from_secs(60),
        ..cfg(0, 0, 1)
    })
    .await;
    sim.set_mode(Mode::Error).expect("error");
    for (path, body) in INFERENCE {
        let rec = send_within(Duration::from_secs(30), sim.addr, path, body)
            .await
            .expect("answered at once");
        assert_eq!(rec.status, 500, "{path}");
        assert_eq!(rec.headers["content-type"], "application/json");
        let v = rec.json().expect("json");
        if path == "/generate" {
            assert_eq!(
                v,
                json!({"error": {"message": "simulated engine failure (mode error)"}})
            );
        } else {
            assert_eq!(
                v,
                json!({"object": "error", "message": "simulated engine failure (mode error)",
                       "type": "InternalServerError", "param": null, "code": 500})
            );
        }
    }
    assert_eq!(send(sim.addr, "GET", "/health", "").await.status, 200);
    sim.set_mode(Mode::Normal).expect("recover");
    sim.update_config(|c| c.ttft = Duration::ZERO).expect("cfg");
    for (path, body) in INFERENCE {
        assert_eq!(
            send(sim.addr, "POST", path, body).await.status,
            200,
            "{path}"
        );
    }
}

#[tokio::test]
async fn down_refuses_connections_and_recover_rebinds_the_same_port() {
    let sim = start(cfg(1, 1, 100_000)).await;
    let addr = sim.addr;
    // An open connection: a stream that would run for minutes.
    let mut stream = Some(tokio::spawn(request(
        addr,
        "POST",
        "/v1/completions",
        &[],
        r#"{"prompt":"a","stream":true}"#.to_owned(),
    )));
    assert_eq!(wait_inflight(&sim, 1).await, 1);
    for round in 0..3 {
        sim.set_mode(Mode::Down).expect("down");
        assert_eq!(sim.mode(), Mode::Down);
        assert!(refused(addr), "round {round}: connect succeeded while down");
        assert!(
            request(addr, "GET", "/health", &[], "").await.is_err(),
            "round {round}"
        );
        if let Some(stream) = stream.take() {
            // The open stream is dropped, not finished.
            let rec = timeout(Duration::from_secs(5), stream)
                .await
                .expect("stream cut after down")
                .expect("task")
                .expect("request");
            assert_eq!(rec.status, 200);
            assert!(rec.body_error.is_some(), "stream was cut, not finished");
            assert_eq!(wait_inflight(&sim, 0).await, 0);
        }
        // Setting the same mode twice is harmless.
        sim.set_mode(Mode::Down).expect("down again");
        sim.set_mode(Mode::Normal).expect("recover re-binds");
        assert_eq!(sim.addr, addr);
        let health = send(addr, "GET", "/health", "").await;
        assert_eq!(health.status, 200, "round {round}");
        // Connections closed by the server sit in TIME_WAIT: the next round re-binds anyway.
        let rec = send(
            addr,
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","max_tokens":2}"#,
        )
        .await;
        assert_eq!(rec.status, 200);
    }
    // Counters survive going down.
    assert_eq!(sim.stats().requests.get("/health"), Some(&3));

    // A request hung when the sim goes down is dropped with its connection.
    sim.set_mode(Mode::Hang).expect("hang");
    let hung = tokio::spawn(request(
        addr,
        "POST",
        "/generate",
        &[],
        INFERENCE[2].1.to_owned(),
    ));
    assert_eq!(wait_inflight(&sim, 1).await, 1);
    sim.set_mode(Mode::Down).expect("down");
    let res = timeout(Duration::from_secs(5), hung)
        .await
        .expect("hung request ends after down")
        .expect("task");
    assert!(res.is_err(), "no response may come: {res:?}");
    sim.set_mode(Mode::Normal).expect("recover");
    assert_eq!(send(addr, "GET", "/health", "").await.status, 200);
}

#[tokio::test]
async fn dropping_a_down_sim_leaves_nothing_listening() {
    let sim = start(cfg(1, 1, 1)).await;
    let addr = sim.addr;
    sim.set_mode(Mode::Down).expect("down");
    drop(sim);
    assert!(refused(addr));
}

#[tokio::test]
async fn mode_endpoints_on_admin_and_main_port() {
    let mut sim = start(cfg(1, 1, 1)).await;
    let admin = sim
        .start_admin("127.0.0.1:0".parse().expect("addr"))
        .expect("admin listener");
    assert_eq!(sim.admin_addr(), Some(admin));
    assert_ne!(admin, sim.addr);
    assert!(sim
        .start_admin("127.0.0.1:0".parse().expect("addr"))
        .is_err());

    let rec = send(admin, "POST", "/sim/mode/down", "").await;
    assert_eq!(rec.status, 200);
    assert_eq!(rec.json().expect("json"), json!({"mode": "down"}));
    assert!(refused(sim.addr));
    // The admin port stays up: mode, stats, nothing else.
    let mode = send(admin, "GET", "/sim/mode", "").await;
    assert_eq!(mode.json().expect("json"), json!({"mode": "down"}));
    assert_eq!(send(admin, "GET", "/sim/stats", "").await.status, 200);
    assert_eq!(send(admin, "GET", "/health", "").await.status, 404);
    let bad = send(admin, "POST", "/sim/mode/sideways", "").await;
    assert_eq!(bad.status, 400);
    let rec = send(admin, "POST", "/sim/mode/recover", "").await;
    assert_eq!(rec.json().expect("json"), json!({"mode": "normal"}));
    assert_eq!(send(sim.addr, "GET", "/health", "").await.status, 200);

    // The main port answers the same endpoints while it is up.
    for mode in ["hang", "slow", "error", "recover"] {
        let rec = send(sim.addr, "POST", &format!("/sim/mode/{mode}"), "").await;
        assert_eq!(rec.status, 200, "{mode}");
        let want = if mode == "recover" { "normal" } else { mode };
        assert_eq!(sim.mode().as_str(), want);
    }
    assert_eq!(send(sim.addr, "GET", "/sim/mode", "").await.status, 200);
    // Down through the main port: answered first, then the port closes.
    let rec = send(sim.addr, "POST", "/sim/mode/down", "").await;
    assert_eq!(rec.status, 200);
    assert_eq!(rec.headers["connection"], "close");
    let deadline = Instant::now() + Duration::from_secs(5);
    while sim.mode() != Mode::Down && Instant::now() < deadline {
        sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.mode(), Mode::Down);
    assert!(refused(sim.addr));
    // /sim/* is not counted.
    assert!(sim.stats().requests.keys().all(|p| !p.starts_with("/sim/")));
    sim.set_mode(Mode::Normal).expect("recover");
    assert_eq!(send(sim.addr, "GET", "/health", "").await.status, 200);
}

#[tokio::test]
async fn request_log_has_arrivals_bodies_and_headers() {
    let sim = start(cfg(0, 0, 1)).await;
    let t0 = Instant::now();
    for _ in 0..3 {
        send(sim.addr, "GET", "/health", "").await;
    }
    let t1 = Instant::now();
    for _ in 0..2 {
        send(sim.addr, "GET", "/health", "").await;
    }
    assert_eq!(sim.requests_since("/health", t0), 5);
    assert_eq!(sim.requests_since("/health", t1), 2);
    assert_eq!(sim.requests_since("/health", Instant::now()), 0);
    assert_eq!(sim.requests_since("/v1/completions", t0), 0);

    let body = INFERENCE[1].1;
    let rec = request(
        sim.addr,
        "POST",
        "/v1/completions",
        &[
            ("host", "llm-backend:8000"),
            ("x-envoy-original-dst-host", "10.1.2.3:8000"),
            ("content-type", "application/json"),
        ],
        body.to_owned(),
    )
    .await
    .expect("request");
    assert_eq!(rec.status, 200);
    let log = sim.request_log("/v1/completions").expect("logged");
    assert_eq!(log.last_body, body.as_bytes());
    assert_eq!(
        log.last_headers["x-envoy-original-dst-host"],
        "10.1.2.3:8000"
    );
    assert_eq!(log.last_headers["host"], "llm-backend:8000");
    assert_eq!(log.last_headers[":authority"], "llm-backend:8000");
    assert_eq!(log.arrivals.len(), 1);

    let health = sim.request_log("/health").expect("logged");
    assert_eq!(health.arrivals.len(), 5);
    assert!(health.arrivals.windows(2).all(|w| w[0] <= w[1]));
    let since_start = |at: Instant| at.into_std().duration_since(sim.started());
    assert_eq!(health.count_since(since_start(t1)), 2);
    assert!(*health.arrivals.last().expect("arrival") <= sim.started().elapsed());
    assert!(health.last_body.is_empty());

    // Over HTTP: the same log, arrivals in integer microseconds, the body as text.
    let v = send(sim.addr, "GET", "/sim/stats", "")
        .await
        .json()
        .expect("json");
    let entry = &v["log"]["/v1/completions"];
    assert_eq!(entry["last_body"], body);
    assert_eq!(
        entry["last_headers"]["x-envoy-original-dst-host"],
        "10.1.2.3:8000"
    );
    assert_eq!(
        v["log"]["/health"]["arrivals_us"].as_array().map(Vec::len),
        Some(5)
    );
    assert!(v["log"]["/health"]["arrivals_us"][0].is_u64());
    let parsed: sim::StatsSnapshot = serde_json::from_value(v).expect("snapshot");
    assert_eq!(parsed.log["/health"], health);

    // Only the last LOG_ARRIVALS arrivals are kept; the counter keeps counting.
    let t2 = Instant::now();
    let extra = LOG_ARRIVALS + 5;
    for _ in 0..extra {
        send(sim.addr, "GET", "/v1/models", "").await;
    }
    assert_eq!(sim.stats().requests["/v1/models"], extra as u64);
    assert_eq!(
        sim.request_log("/v1/models").expect("log").arrivals.len(),
        LOG_ARRIVALS
    );
    assert_eq!(sim.requests_since("/v1/models", t2), LOG_ARRIVALS);
}

#[test]
fn blocking_sim_switches_modes_from_a_plain_thread() {
    let sim = sim::spawn(cfg(1, 1, 1)).expect("spawn");
    let addr = sim.addr;
    sim.set_mode(Mode::Down).expect("down");
    assert!(refused(addr));
    sim.set_mode(Mode::Normal).expect("recover");
    let rec = sim::client::request_blocking(addr, "GET", "/health", &[], "").expect("health");
    assert_eq!(rec.status, 200);
    drop(sim);
    assert!(refused(addr));
}

/// The `gpu-sim` binary, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn url_addr(line: &str, prefix: &str) -> SocketAddr {
    line.trim()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .parse()
        .expect("address")
}

#[tokio::test]
async fn binary_serves_an_admin_port() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpu-sim"))
        .args([
            "--admin-port",
            "0",
            "--slow-factor",
            "3",
            "--flavor",
            "trtllm",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("gpu-sim runs");
    let stdout = child.stdout.take().expect("stdout");
    let proc = Proc(child);
    let mut lines = BufReader::new(stdout).lines();
    let main = url_addr(
        &lines.next().expect("line").expect("read"),
        "gpu-sim listening on http://",
    );
    let admin = url_addr(
        &lines.next().expect("line").expect("read"),
        "gpu-sim admin on http://",
    );
    let models = send(main, "GET", "/v1/models", "")
        .await
        .json()
        .expect("json");
    assert_eq!(models["data"][0]["owned_by"], "tensorrt_llm");
    assert_eq!(send(admin, "POST", "/sim/mode/down", "").await.status, 200);
    assert!(refused(main));
    assert_eq!(
        send(admin, "POST", "/sim/mode/recover", "").await.status,
        200
    );
    assert_eq!(send(main, "GET", "/health", "").await.status, 200);
    let probe = send(main, "POST", INFERENCE[1].0, INFERENCE[1].1).await;
    assert_eq!(probe.status, 200);
    drop(proc);
}
