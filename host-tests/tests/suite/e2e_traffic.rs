//! Hostile traffic through a real Envoy 1.40 and a worker written for the test: junk
//! model names the worker refuses, a slow upload, bodiless answers (HEAD, 204), and a client
//! that breaks HTTP/2 framing mid-stream (a raw h2c client with hand-encoded HPACK).
//!
//! Every figure is compared with what the client and the worker observed for the same request
//! (never a fixed wall-clock window); every `llm_inflight_requests` series returns to 0.

use host_tests::envoy::{Envoy, EnvoyOptions};
use host_tests::prom::Scrape;
use host_tests::raw_http::{read_request, LoggingWorker};
use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHAT: &str = "/v1/chat/completions";
const SERVED: &str = "sim-model";

/// What the worker saw of one request (by `x-request-id`).
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    model: Option<String>,
    /// When the whole body had arrived, and just before the first token was written.
    body_done: Instant,
    first_token: Option<Instant>,
}

/// A vLLM-shaped worker on 127.0.0.1 serving one model: `sim-model` is streamed (`x-ttft-ms`
/// before the first token, `x-tokens` tokens `x-gap-ms` apart), any other model is a 404 as
/// vLLM answers it; a HEAD is a 200 with a JSON content type and no body, `x-case: 204` a 204.
/// Stopped when dropped.
type Worker = LoggingWorker<Seen>;

fn serve(conn: TcpStream, log: &Mutex<BTreeMap<String, Seen>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let Some(req) = read_request(&mut reader)? else {
            return Ok(());
        };
        let (method, h, body) = (req.method().to_string(), req.headers, req.body);
        let body_done = Instant::now();
        let model = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["model"].as_str().map(str::to_string));
        let id = h.get("x-request-id").cloned().unwrap_or_default();
        let num = |k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok());
        let mut seen = Seen {
            method: method.clone(),
            model: model.clone(),
            body_done,
            first_token: None,
        };
        if method == "HEAD" {
            log.lock().unwrap().insert(id, seen);
            out.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 57\r\n\r\n",
            )?;
            continue;
        }
        if h.get("x-case").map(String::as_str) == Some("204") {
            log.lock().unwrap().insert(id, seen);
            out.write_all(b"HTTP/1.1 204 No Content\r\ncontent-type: application/json\r\n\r\n")?;
            continue;
        }
        if model.as_deref() != Some(SERVED) {
            log.lock().unwrap().insert(id, seen);
            let msg = format!(
                r#"{{"object":"error","message":"The model `{}` does not exist.","type":"NotFoundError","param":null,"code":404}}"#,
                model.unwrap_or_default().replace(['"', '\\'], "")
            );
            let head = format!(
                "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                msg.len()
            );
            out.write_all(head.as_bytes())?;
            out.write_all(msg.as_bytes())?;
            continue;
        }
        out.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        )?;
        out.flush()?;
        std::thread::sleep(Duration::from_millis(num("x-ttft-ms").unwrap_or(0)));
        let chunk = |out: &mut TcpStream, data: &str| -> std::io::Result<()> {
            out.write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes())?;
            out.flush()
        };
        let tokens = num("x-tokens").unwrap_or(3);
        for i in 0..tokens {
            if i == 0 {
                seen.first_token = Some(Instant::now());
                log.lock().unwrap().insert(id.clone(), seen.clone());
            } else {
                std::thread::sleep(Duration::from_millis(num("x-gap-ms").unwrap_or(0)));
            }
            chunk(
                &mut out,
                &format!("data: {{\"id\":\"c\",\"model\":\"{SERVED}\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{i}\"}},\"finish_reason\":null}}]}}\n\n"),
            )?;
        }
        chunk(&mut out, "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")?;
        out.write_all(b"0\r\n\r\n")?;
        out.flush()?;
    }
}

fn start_envoy(worker: &Worker, plugin_config: &str) -> Envoy {
    Envoy::start(&EnvoyOptions {
        plugin_config: plugin_config.into(),
        concurrency: 2,
        ..EnvoyOptions::new(worker.addr)
    })
    .unwrap()
}

/// An HTTP/1.1 request on its own connection: the body in `pieces` writes `gap` apart.
/// Returns (status, body, when the last body byte was written, when the first token arrived).
fn http1(
    envoy: &Envoy,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    pieces: usize,
    gap: Duration,
) -> (u16, Vec<u8>, Instant, Option<Instant>) {
    let mut c = TcpStream::connect(envoy.listener).unwrap();
    let mut head = format!("{method} {CHAT} HTTP/1.1\r\nhost: llm\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if method != "HEAD" {
        head.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    c.write_all(head.as_bytes()).unwrap();
    let size = body.len().div_ceil(pieces.max(1)).max(1);
    let mut body_end = Instant::now();
    for (i, piece) in body.chunks(size).enumerate() {
        if i > 0 {
            std::thread::sleep(gap);
        }
        // Read before the last byte leaves: a descheduled test thread cannot then place the
        // body's end after the worker already had it.
        body_end = Instant::now();
        c.write_all(piece).unwrap();
    }
    let mut got = Vec::new();
    let mut first_token = None;
    let mut buf = [0u8; 4096];
    loop {
        let n = c.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if first_token.is_none() && String::from_utf8_lossy(&got).contains("\"content\"") {
            first_token = Some(Instant::now());
        }
        if method == "HEAD" && got.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, got, body_end, first_token)
}

/// Waits for every in-flight gauge to be 0 (the last `on_log`) and for `ready`; returns the
/// scrape. Fails when a gauge stays off 0.
fn settled(envoy: &Envoy, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let scrape = envoy
        .prometheus_when(Duration::from_secs(20), |s| {
            ready(s)
                && s.samples
                    .iter()
                    .filter(|x| x.name == "llm_inflight_requests")
                    .all(|x| x.value == 0.0)
        })
        .unwrap();
    for x in scrape
        .samples
        .iter()
        .filter(|x| x.name == "llm_inflight_requests")
    {
        assert_eq!(x.value, 0.0, "{:?} did not return to 0", x.labels);
    }
    assert!(!envoy.log().contains("Wasm VM failed"), "{}", envoy.log());
    scrape
}

fn requests(s: &Scrape, want: &[(&str, &str)]) -> f64 {
    s.sum("llm_requests_total", want)
}

/// A filter-state value of the access-log line, as a number.
pub(crate) fn logged_u64(entry: &serde_json::Value, key: &str) -> Option<u64> {
    match &entry[key] {
        serde_json::Value::String(s) => s.parse().ok(),
        v => v.as_u64(),
    }
}

/// 32 made-up names the worker answers 404 filled `max_models` (32) at request
/// end, and every later `sim-model` request was labelled `other` until Envoy restarted.
#[test]
fn junk_models_answered_404_do_not_blind_real_ones() {
    let worker = Worker::start(serve).unwrap();
    let envoy = start_envoy(&worker, r#"{"max_models":32}"#);
    for i in 0..40 {
        let body = format!(r#"{{"model":"junk-{i}","stream":true}}"#);
        let id = format!("junk-{i}");
        let (status, ..) = http1(
            &envoy,
            "POST",
            &[("x-request-id", &id)],
            body.as_bytes(),
            1,
            Duration::ZERO,
        );
        assert_eq!(status, 404);
        assert_eq!(worker.logged(&id).model.as_deref(), Some(id.as_str()));
        // The one verdict reaches the access log too.
        let entry = envoy
            .access_log_entry(&id, Duration::from_secs(10))
            .unwrap();
        assert_eq!(entry["error_type"], "not_found", "{entry}");
    }
    for i in 0..5 {
        let body = br#"{"model":"sim-model","stream":true}"#;
        let id = format!("real-{i}");
        let (status, got, ..) = http1(
            &envoy,
            "POST",
            &[("x-request-id", &id)],
            body,
            1,
            Duration::ZERO,
        );
        assert_eq!(status, 200);
        assert!(String::from_utf8_lossy(&got).contains("[DONE]"));
    }
    let scrape = settled(&envoy, |s| requests(s, &[]) >= 45.0);
    assert_eq!(
        requests(&scrape, &[("model", SERVED), ("status", "success")]),
        5.0
    );
    assert_eq!(
        requests(&scrape, &[("model", "other"), ("error_type", "not_found")]),
        40.0
    );
    assert_eq!(requests(&scrape, &[]), 45.0);
    let junk: Vec<_> = scrape
        .samples
        .iter()
        .filter(|x| {
            x.labels
                .get("model")
                .is_some_and(|m| m.starts_with("junk-"))
        })
        .collect();
    assert!(junk.is_empty(), "junk labels: {junk:?}");
    assert_eq!(
        scrape.sum("llm_output_tokens_total", &[("model", SERVED)]),
        15.0
    );
}

/// A worker that answers 200 to any model name and says in its answer which model it served
/// (gpu-sim `x-sim-served-model`, as llama.cpp's `llama-server` answers): 40 requests naming
/// junk models, streamed and unary, then 10 naming the served one. Labels come from the
/// answer, so no junk name enters the cap and all 50 count under the served model (before:
/// 32 junk labels held the cap and the served model's 10 were `other`).
#[test]
fn junk_names_a_permissive_worker_answers_are_labelled_by_the_served_model() {
    let sim = host_tests::sim::spawn(host_tests::sim::SimConfig::default()).expect("gpu-sim");
    let mut opts = EnvoyOptions::new(sim.addr);
    opts.plugin_config = r#"{"max_models":32}"#.into();
    let envoy = Envoy::start(&opts).unwrap();
    let served = [("x-sim-served-model", "tiny"), ("x-sim-tokens", "3")];
    let send = |model: &str, stream: bool, id: &str| {
        let body = format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
        );
        let mut h = vec![("content-type", "application/json"), ("x-request-id", id)];
        h.extend_from_slice(&served);
        let r = host_tests::sim::client::request_blocking(envoy.listener, "POST", CHAT, &h, body)
            .unwrap();
        assert_eq!(r.status, 200, "{id}");
        // The worker did answer with its own name.
        let text = String::from_utf8_lossy(&r.body()).to_string();
        assert!(text.contains(r#""model":"tiny""#), "{text}");
    };
    for i in 0..40 {
        send(&format!("junk-{i}"), i % 2 == 0, &format!("junk-{i}"));
    }
    for i in 0..10 {
        send("tiny", i % 2 == 0, &format!("tiny-{i}"));
    }
    // Histograms reach the scrape at Envoy's stats flush: wait for the 50th TTFT as well.
    let scrape = settled(&envoy, |s| {
        requests(s, &[]) >= 50.0 && s.sum("llm_time_to_first_token_microseconds_count", &[]) >= 50.0
    });
    let by_type = |t: &str| {
        requests(
            &scrape,
            &[
                ("model", "tiny"),
                ("request_type", t),
                ("status", "success"),
            ],
        )
    };
    assert_eq!((by_type("stream"), by_type("unary")), (25.0, 25.0));
    assert_eq!(requests(&scrape, &[]), 50.0);
    let junk: Vec<_> = scrape
        .samples
        .iter()
        .filter(|x| {
            x.labels
                .get("model")
                .is_some_and(|m| m.starts_with("junk-") || (m == "other" && x.value != 0.0))
        })
        .collect();
    assert!(junk.is_empty(), "junk or other series: {junk:?}");
    // Every request's TTFT is under the served model, and every token.
    assert_eq!(
        scrape.value(
            "llm_time_to_first_token_microseconds_count",
            &[("model", "tiny")]
        ),
        Some(50.0)
    );
    assert_eq!(
        scrape.sum("llm_output_tokens_total", &[("model", "tiny")]),
        150.0
    );
}

/// A 60-byte body uploaded in 6 pieces 250 ms apart. TTFT starts at the end of
/// the body, so the filter's TTFT lies between the worker's (body received -> first token
/// written) and the client's (last byte sent -> first token read); before, it held the upload.
#[test]
fn a_slow_upload_is_not_time_to_first_token() {
    let worker = Worker::start(serve).unwrap();
    let envoy = start_envoy(&worker, "{}");
    let body = br#"{"model":"sim-model","stream":true,"messages":[],"n":1}     "#;
    assert_eq!(body.len(), 60);
    let sent = Instant::now();
    let (status, got, body_end, first) = http1(
        &envoy,
        "POST",
        &[
            ("x-request-id", "slow-1"),
            ("x-ttft-ms", "40"),
            ("x-tokens", "4"),
            ("x-gap-ms", "5"),
        ],
        body,
        6,
        Duration::from_millis(250),
    );
    let done = Instant::now();
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&got).contains("[DONE]"));
    let upload = body_end - sent;
    let client_ttft = first.unwrap() - body_end;
    let seen = worker.logged("slow-1");
    let worker_ttft = seen.first_token.unwrap() - seen.body_done;
    let entry = envoy
        .access_log_entry("slow-1", Duration::from_secs(10))
        .unwrap();
    let ttft = Duration::from_micros(logged_u64(&entry, "ttft_us").unwrap());
    println!(
        "upload {upload:?}, worker ttft {worker_ttft:?}, filter {ttft:?}, client {client_ttft:?}"
    );
    // 1 ms: Envoy's wall clock and this process's monotonic one, rounded to a microsecond.
    let slack = Duration::from_millis(1);
    assert!(
        ttft + slack >= worker_ttft,
        "filter {ttft:?} < worker {worker_ttft:?}"
    );
    assert!(
        ttft <= client_ttft + slack,
        "filter {ttft:?} > client {client_ttft:?} (upload {upload:?})"
    );
    // The request duration starts at the same point: at most what the client saw from its last
    // body byte to the end (plus Envoy's histogram quantization, up to ~5 %).
    let scrape = settled(&envoy, |s| {
        s.sum("llm_request_duration_microseconds_count", &[]) >= 1.0
    });
    let duration_us = scrape.sum("llm_request_duration_microseconds_sum", &[]);
    let client_us = (done - body_end).as_micros() as f64;
    assert!(
        duration_us <= client_us * 1.06 + 1_000.0,
        "duration {duration_us} µs > client's {client_us} µs after its upload of {upload:?}"
    );
    assert_eq!(requests(&scrape, &[("status", "success")]), 1.0);
}

/// A HEAD answered 200 with a JSON content type and no body, and a 204 with a
/// JSON content type, were `bad_response` (an empty body does not parse).
#[test]
fn head_and_204_answers_are_not_bad_responses() {
    let worker = Worker::start(serve).unwrap();
    let envoy = start_envoy(&worker, "{}");
    let (status, ..) = http1(
        &envoy,
        "HEAD",
        &[("x-request-id", "head-1")],
        b"",
        1,
        Duration::ZERO,
    );
    assert_eq!(status, 200);
    assert_eq!(worker.logged("head-1").method, "HEAD");
    let body = br#"{"model":"sim-model"}"#;
    let (status, ..) = http1(
        &envoy,
        "POST",
        &[("x-request-id", "nc-1"), ("x-case", "204")],
        body,
        1,
        Duration::ZERO,
    );
    assert_eq!(status, 204);
    for id in ["head-1", "nc-1"] {
        let entry = envoy.access_log_entry(id, Duration::from_secs(10)).unwrap();
        assert!(
            entry["error_type"].is_null()
                || entry["error_type"] == "-"
                || entry["error_type"] == "",
            "{entry}"
        );
    }
    let scrape = settled(&envoy, |s| requests(s, &[]) >= 2.0);
    assert_eq!(requests(&scrape, &[("error_type", "bad_response")]), 0.0);
    assert_eq!(requests(&scrape, &[("status", "success")]), 2.0);
}

/// One verdict for the counter and the access log. A 503 Envoy answers itself
/// for a circuit breaker (`UO`) was logged `unavailable` (the filter state was decided at the
/// response end without Envoy's flags) while `requests_total` said `overload`.
#[test]
fn an_overflow_503_is_overload_in_the_counter_and_the_access_log() {
    let worker = Worker::start(serve).unwrap();
    // One request at a time to the workers, none waiting: a second concurrent one overflows.
    let breaker = "      type: STATIC\n      connect_timeout: 2s\n      load_assignment:\n        cluster_name: workers";
    let envoy = Envoy::start(&EnvoyOptions {
        concurrency: 1,
        yaml_patches: vec![(
            breaker.into(),
            breaker.replace(
                "connect_timeout: 2s",
                "connect_timeout: 2s\n      circuit_breakers:\n        thresholds:\n          - { max_requests: 1, max_pending_requests: 1, max_connections: 1 }",
            ),
        )],
        ..EnvoyOptions::new(worker.addr)
    })
    .unwrap();
    let envoy = Arc::new(envoy);
    let hold = |id: &'static str| {
        let envoy = Arc::clone(&envoy);
        std::thread::spawn(move || {
            let body = br#"{"model":"sim-model","stream":true}"#;
            let headers = [
                ("x-request-id", id),
                ("x-tokens", "20"),
                ("x-gap-ms", "100"),
            ];
            http1(&envoy, "POST", &headers, body, 1, Duration::ZERO).0
        })
    };
    // The first request holds the one connection (the worker streams it), the second waits in
    // the one pending place (Envoy's own gauge says so): a third overflows.
    let first = hold("hold-1");
    let deadline = Instant::now() + Duration::from_secs(20);
    while worker
        .try_logged("hold-1")
        .and_then(|s| s.first_token)
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "first request never reached the worker"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = hold("hold-2");
    let pending = || {
        let text = envoy
            .admin_get("/stats?filter=^cluster.workers.upstream_rq_pending_active$")
            .unwrap_or_default();
        text.trim().ends_with(": 1")
    };
    while !pending() {
        assert!(Instant::now() < deadline, "second request never pending");
        std::thread::sleep(Duration::from_millis(10));
    }
    let body = br#"{"model":"sim-model","stream":true}"#;
    let (status, ..) = http1(
        &envoy,
        "POST",
        &[("x-request-id", "over")],
        body,
        1,
        Duration::ZERO,
    );
    assert_eq!(status, 503);
    assert!(worker.try_logged("over").is_none(), "reached the worker");
    assert_eq!(first.join().unwrap(), 200);
    assert_eq!(second.join().unwrap(), 200);
    let entry = envoy
        .access_log_entry("over", Duration::from_secs(10))
        .unwrap();
    println!("{entry}");
    assert!(
        entry["flags"].as_str().unwrap_or_default().contains("UO"),
        "{entry}"
    );
    assert_eq!(entry["error_type"], "overload", "{entry}");
    let scrape = settled(&envoy, |s| requests(s, &[]) >= 3.0);
    assert_eq!(requests(&scrape, &[("error_type", "overload")]), 1.0);
    assert_eq!(requests(&scrape, &[("error_type", "unavailable")]), 0.0);
    assert_eq!(requests(&scrape, &[("status", "success")]), 2.0);
}

// ----- a raw HTTP/2 (h2c, prior knowledge) client (also e2e_unfinished's) -----

pub(crate) const DATA: u8 = 0;
pub(crate) const HEADERS: u8 = 1;
pub(crate) const SETTINGS: u8 = 4;
pub(crate) const END_STREAM: u8 = 1;
pub(crate) const END_HEADERS: u8 = 4;

pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK "literal header field without indexing, new name" (RFC 7541 6.2.2), no Huffman.
pub(crate) fn hpack(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in headers {
        assert!(k.len() < 127 && v.len() < 127);
        out.push(0x00);
        out.push(k.len() as u8);
        out.extend_from_slice(k.as_bytes());
        out.push(v.len() as u8);
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Reads frames until `want` holds for one: (type, flags, stream, payload).
fn read_until(c: &mut TcpStream, want: impl Fn(u8, u32, &[u8]) -> bool) -> bool {
    loop {
        let mut head = [0u8; 9];
        if c.read_exact(&mut head).is_err() {
            return false;
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0; len];
        if c.read_exact(&mut payload).is_err() {
            return false;
        }
        if head[3] == SETTINGS && head[4] & 1 == 0 {
            let _ = c.write_all(&frame(SETTINGS, 1, 0, &[]));
        }
        if want(head[3], stream, &payload) {
            return true;
        }
    }
}

/// How the client breaks its connection once the first token arrived.
#[derive(Debug, Clone, Copy)]
enum Breakage {
    /// A DATA frame on stream 0: a connection error (PROTOCOL_ERROR), RFC 9113 6.1.
    DataOnStreamZero,
    /// Empty DATA frames on the open stream: Envoy's inbound flood limit
    /// (`max_consecutive_inbound_frames_with_empty_payload`, 1 by default) closes it.
    EmptyFrameFlood,
}

/// One streaming request over h2c; the client breaks framing after the first token. Returns
/// the access-log line.
fn h2_break(envoy: &Envoy, id: &str, how: Breakage) -> serde_json::Value {
    let mut c = TcpStream::connect(envoy.listener).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    c.write_all(&frame(SETTINGS, 0, 0, &[])).unwrap();
    let body = br#"{"model":"sim-model","stream":true}"#;
    let len = body.len().to_string();
    let block = hpack(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", CHAT),
        (":authority", "llm"),
        ("content-type", "application/json"),
        ("content-length", &len),
        ("x-request-id", id),
        ("x-tokens", "40"),
        ("x-gap-ms", "100"),
    ]);
    c.write_all(&frame(HEADERS, END_HEADERS, 1, &block))
        .unwrap();
    // The flood needs the request stream still open: its body does not end it.
    let end = match how {
        Breakage::DataOnStreamZero => END_STREAM,
        Breakage::EmptyFrameFlood => 0,
    };
    c.write_all(&frame(DATA, end, 1, body)).unwrap();
    let token = read_until(&mut c, |kind, stream, p| {
        kind == DATA && stream == 1 && String::from_utf8_lossy(p).contains("\"content\"")
    });
    assert!(token, "no first token over h2c:\n{}", envoy.log());
    match how {
        Breakage::DataOnStreamZero => c.write_all(&frame(DATA, 0, 0, b"x")).unwrap(),
        Breakage::EmptyFrameFlood => {
            for _ in 0..4 {
                let _ = c.write_all(&frame(DATA, 0, 1, &[]));
            }
        }
    }
    // Envoy answers with GOAWAY and closes; drain until then.
    let _ = read_until(&mut c, |_, _, _| false);
    envoy.access_log_entry(id, Duration::from_secs(20)).unwrap()
}

/// A client that breaks HTTP/2 framing mid-stream was `truncated_stream`, which
/// blames the worker. Envoy flags such a stream DPE; the filter counts it `cancelled`.
#[test]
fn a_client_breaking_http2_framing_mid_stream_is_cancelled() {
    let worker = Worker::start(serve).unwrap();
    // Usage editing off: the flood case keeps its request stream open after the body, and an
    // edited request goes upstream without `content-length` (chunked), so this worker would
    // wait for the body's end and never send the first token the case needs (README, "Exact
    // tokens": what the worker may see).
    let envoy = start_envoy(&worker, r#"{"usage_stats":"off"}"#);
    let cases = [
        ("h2-bad-frame", Breakage::DataOnStreamZero),
        ("h2-flood", Breakage::EmptyFrameFlood),
    ];
    for (id, how) in cases {
        let entry = h2_break(&envoy, id, how);
        println!("{how:?}: {entry}");
        let flags = entry["flags"].as_str().unwrap_or_default();
        assert!(flags.split(',').any(|f| f == "DPE"), "{how:?}: {entry}");
        assert_eq!(entry["status"], 200, "{entry}");
        // The access log has the counter's verdict (set at `on_log`, before the HCM's log).
        assert_eq!(entry["error_type"], "cancelled", "{how:?}: {entry}");
        // The worker did start streaming: the break came after its first token.
        assert!(worker.logged(id).first_token.is_some());
    }
    let scrape = settled(&envoy, |s| requests(s, &[]) >= 2.0);
    assert_eq!(requests(&scrape, &[("error_type", "cancelled")]), 2.0);
    assert_eq!(
        requests(&scrape, &[("error_type", "truncated_stream")]),
        0.0
    );
    assert_eq!(requests(&scrape, &[]), 2.0);
}
