//! Hostile traffic through a real Envoy with the built filter. Bodies gpu-sim cannot produce
//! (a 10 MiB line, gzip and br bodies, invalid UTF-8, a reset mid-body) come from a tiny
//! purpose-built upstream in this file; model names built to break labels go to gpu-sim.
//!
//! In every case: the client receives exactly the worker's bytes (and the worker exactly the
//! client's), the VM never fails (Envoy logs no Wasm failure and still measures afterwards),
//! and every `llm_inflight_requests` series returns to 0.

use host_tests::envoy::{Envoy, EnvoyOptions};
use host_tests::prom::Scrape;
use host_tests::raw_http::read_request;
use host_tests::sim::client::request_blocking;
use host_tests::sim::{self, SimConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// What the upstream answers to a request whose `x-case` header names this reply.
#[derive(Clone, Default)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    /// Chunked transfer, this many bytes per chunk, `gap` apart.
    chunk: usize,
    gap: Duration,
    /// Send this many body bytes, then close the connection mid-body.
    close_after: Option<usize>,
}

/// Request bodies received, with their `x-case`.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A one-trick HTTP/1.1 upstream: answers each request with the reply its `x-case` names and
/// records every request body it received.
struct Upstream {
    addr: SocketAddr,
    received: Received,
}

impl Upstream {
    fn start(replies: BTreeMap<&'static str, Reply>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Received = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(replies);
        let log = Arc::clone(&received);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let replies = Arc::clone(&replies);
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    let _ = serve(conn, &replies, &log);
                });
            }
        });
        Upstream { addr, received }
    }

    fn received(&self, case: &str) -> Vec<Vec<u8>> {
        let log = self.received.lock().unwrap();
        log.iter()
            .filter(|(c, _)| c == case)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

fn serve(
    conn: TcpStream,
    replies: &BTreeMap<&'static str, Reply>,
    log: &Mutex<Vec<(String, Vec<u8>)>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let Some(req) = read_request(&mut reader)? else {
            return Ok(());
        };
        let case = req.header("x-case").unwrap_or_default().to_string();
        let body = req.body;
        log.lock().unwrap().push((case.clone(), body));
        let Some(r) = replies.get(case.as_str()) else {
            out.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")?;
            continue;
        };
        let mut head = format!("HTTP/1.1 {} X\r\n", r.status);
        for (k, v) in &r.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(n) = r.close_after {
            head.push_str(&format!("content-length: {}\r\n\r\n", r.body.len()));
            out.write_all(head.as_bytes())?;
            out.write_all(&r.body[..n])?;
            out.flush()?;
            std::thread::sleep(Duration::from_millis(100));
            return Ok(()); // dropped: the body is cut short
        }
        head.push_str("transfer-encoding: chunked\r\n\r\n");
        out.write_all(head.as_bytes())?;
        for piece in r.body.chunks(r.chunk.max(1)) {
            out.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
            out.write_all(piece)?;
            out.write_all(b"\r\n")?;
            out.flush()?;
            if !r.gap.is_zero() {
                std::thread::sleep(r.gap);
            }
        }
        out.write_all(b"0\r\n\r\n")?;
        out.flush()?;
    }
}

fn sse(body: impl Into<Vec<u8>>) -> Reply {
    Reply {
        status: 200,
        headers: vec![("content-type", "text/event-stream")],
        body: body.into(),
        chunk: 4096,
        ..Reply::default()
    }
}

fn chat_event(text: &str) -> String {
    format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n")
}

fn chat_stream(tokens: usize) -> String {
    let mut s = String::new();
    for i in 0..tokens {
        s.push_str(&chat_event(&format!("t{i}")));
    }
    s.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
    s
}

/// No Wasm failure in Envoy's log, every in-flight gauge at 0 (waiting for the last `on_log`),
/// every `llm_` line of `/stats/prometheus` parses and its model label is safe.
fn assert_clean(envoy: &Envoy) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    let scrape = loop {
        let s = envoy.prometheus().unwrap();
        let inflight: f64 = s
            .samples
            .iter()
            .filter(|x| x.name == "llm_inflight_requests")
            .map(|x| x.value.abs())
            .sum();
        if inflight == 0.0 || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for x in scrape
        .samples
        .iter()
        .filter(|x| x.name == "llm_inflight_requests")
    {
        assert_eq!(x.value, 0.0, "{:?} did not return to 0", x.labels);
    }
    let log = envoy.log();
    for bad in [
        "panicked",
        "Wasm VM failed",
        "unreachable",
        "Function: proxy_on",
    ] {
        assert!(!log.contains(bad), "Envoy log has {bad:?}:\n{log}");
    }
    let text = envoy.admin_get("/stats/prometheus").unwrap();
    for line in text.lines().filter(|l| l.starts_with("llm_")) {
        let one = Scrape::parse(line);
        assert_eq!(one.samples.len(), 1, "unparseable line {line:?}");
        let labels = &one.samples[0].labels;
        if let Some(m) = labels.get("model") {
            assert!(
                !m.is_empty() && m.len() <= 128,
                "model label {m:?} in {line:?}"
            );
            assert!(
                !m.chars().any(|c| c == ';' || c == '=' || c.is_control()),
                "unsafe model label {m:?}"
            );
        }
        if let Some(e) = labels.get("endpoint") {
            assert!(
                [
                    "chat_completions",
                    "completions",
                    "responses",
                    "embeddings",
                    "generate",
                    "other"
                ]
                .contains(&e.as_str()),
                "endpoint {e:?} in {line:?}"
            );
        }
    }
    scrape
}

fn requests(scrape: &Scrape, want: &[(&str, &str)]) -> f64 {
    scrape.sum("llm_requests_total", want)
}

fn post(
    envoy: &Envoy,
    case: &str,
    body: impl Into<bytes::Bytes>,
) -> host_tests::sim::client::Recorded {
    request_blocking(
        envoy.listener,
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json"), ("x-case", case)],
        body,
    )
    .unwrap()
}

const STREAM_REQ: &str = r#"{"model":"m","stream":true}"#;

#[test]
fn purpose_built_bodies_pass_byte_identical() {
    let ten_mib_line = format!(
        "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}]}}\n\ndata: [DONE]\n\n",
        "x".repeat(10 * MIB)
    );
    let mut gzip = vec![0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03];
    gzip.extend_from_slice(chat_stream(3).as_bytes());
    gzip.extend((0..=255u8).cycle().take(8192));
    let error_in_200 = format!(
        "{}event: error\ndata: {{\"error\":{{\"message\":\"CUDA error\",\"code\":500}}}}\n\ndata: [DONE]\n\n",
        chat_event("a")
    );
    let bad_utf8 = b"data: {\"choices\":[{\"delta\":{\"content\":\"\xff\xfe\xc3\x28\"}}]}\n\ndata: \xff\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n".to_vec();
    let odd_splits = chat_stream(6);
    let mut cases: BTreeMap<&'static str, Reply> = BTreeMap::new();
    cases.insert(
        "line",
        Reply {
            chunk: 256 * 1024,
            ..sse(ten_mib_line.clone())
        },
    );
    cases.insert(
        "gzip",
        Reply {
            headers: vec![
                ("content-type", "text/event-stream"),
                ("content-encoding", "gzip"),
            ],
            chunk: 333,
            ..sse(gzip.clone())
        },
    );
    cases.insert(
        "br",
        Reply {
            headers: vec![
                ("content-type", "application/json"),
                ("content-encoding", "br"),
            ],
            ..sse(&b"\x8b\x02\x80{\"usage\":{\"completion_tokens\":99}}\x03"[..])
        },
    );
    cases.insert("bad-utf8", sse(bad_utf8.clone()));
    cases.insert(
        "bad-json",
        Reply {
            headers: vec![("content-type", "application/json")],
            ..sse(&br#"{"choices":[{"message":{"content":"x"}}],"usage":{"completion_tokens":"#[..])
        },
    );
    cases.insert("error-200", sse(error_in_200.clone()));
    cases.insert(
        "splits",
        Reply {
            chunk: 7,
            gap: Duration::from_millis(1),
            ..sse(odd_splits.clone())
        },
    );
    cases.insert("prompt", sse(chat_stream(2)));
    let reset_body = chat_stream(8);
    cases.insert(
        "reset",
        Reply {
            close_after: Some(reset_body.len() / 2),
            ..sse(reset_body.clone())
        },
    );
    let upstream = Upstream::start(cases);
    let envoy = Envoy::start(&EnvoyOptions {
        concurrency: 2,
        ..EnvoyOptions::new(upstream.addr)
    })
    .unwrap();

    for (case, want) in [
        ("line", ten_mib_line.as_bytes()),
        ("gzip", &gzip[..]),
        ("bad-utf8", &bad_utf8[..]),
        ("error-200", error_in_200.as_bytes()),
        ("splits", odd_splits.as_bytes()),
    ] {
        let r = post(&envoy, case, STREAM_REQ);
        assert_eq!(r.status, 200, "{case}");
        assert!(
            r.body() == want,
            "{case}: client bytes differ from the worker's"
        );
    }
    let r = post(&envoy, "br", r#"{"model":"m"}"#);
    assert_eq!(
        &r.body()[..],
        b"\x8b\x02\x80{\"usage\":{\"completion_tokens\":99}}\x03"
    );
    let r = post(&envoy, "bad-json", r#"{"model":"m"}"#);
    assert_eq!(
        &r.body()[..],
        br#"{"choices":[{"message":{"content":"x"}}],"usage":{"completion_tokens":"#
    );

    // Invalid JSON and invalid UTF-8 in requests, and a 10 MiB prompt: the worker gets them
    // byte for byte.
    let prompt = format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}}],"model":"big","stream":true}}"#,
        "p".repeat(10 * MIB)
    );
    let odd_requests: Vec<Vec<u8>> = vec![
        prompt.into_bytes(),
        b"{\"model\":\"\xff\xfe\",\"stream\":true".to_vec(),
        b"\x00\x01\x02 not json {{{{".to_vec(),
    ];
    for req in &odd_requests {
        let r = post(&envoy, "prompt", req.clone());
        assert_eq!(r.status, 200);
        assert_eq!(r.body(), chat_stream(2).as_bytes());
    }
    // The one valid streamed chat among them gets the `stream_options` the filter asks for
    // (`usage_stats`, on by default), before its closing brace; the others pass as they are.
    let mut want = odd_requests.clone();
    let added = br#","stream_options":{"include_usage":true}}"#;
    want[0].pop();
    want[0].extend_from_slice(added);
    assert!(
        upstream.received("prompt") == want,
        "the worker did not receive the client's bytes (with the usage edit)"
    );

    // The worker closes mid-body: the client gets exactly what was sent before, up to the
    // last whole event: the filter asked for usage (`usage_stats`), so it holds an event split
    // across reads until it ends (it may be one to take out), and this one never ends (an SSE
    // client discards an unfinished event anyway).
    let r = post(&envoy, "reset", STREAM_REQ);
    assert!(r.body_error.is_some(), "a cut body must not look complete");
    let sent = &reset_body[..reset_body.len() / 2];
    let whole_events = sent.rfind("\n\n").map_or(0, |i| i + 2);
    assert_eq!(&r.body()[..], &reset_body.as_bytes()[..whole_events]);

    let scrape = envoy
        .prometheus_when(Duration::from_secs(10), |s| {
            s.sum("llm_request_duration_microseconds_count", &[]) >= 11.0
        })
        .unwrap();
    let scrape2 = assert_clean(&envoy);
    assert_eq!(requests(&scrape2, &[]), 11.0);
    assert_eq!(requests(&scrape2, &[("error_type", "backend_error")]), 1.0);
    assert_eq!(requests(&scrape2, &[("error_type", "bad_response")]), 2.0);
    assert_eq!(
        requests(&scrape2, &[("error_type", "truncated_stream")]),
        1.0
    );
    // Compressed bodies: counted and timed, no token figures (br's "99" is not read).
    assert_eq!(
        scrape.sum("llm_request_duration_microseconds_count", &[]),
        11.0
    );
    assert!(scrape2.sum("llm_output_tokens_total", &[]) < 99.0);
    // The 10 MiB line is one token; the prompt's model was found after 10 MiB.
    assert_eq!(
        scrape2.value("llm_output_tokens_total", &[("model", "big")]),
        Some(2.0)
    );
}

#[test]
fn client_disconnect_mid_stream_is_cancelled() {
    let body = chat_stream(30);
    let mut cases = BTreeMap::new();
    cases.insert(
        "slow",
        Reply {
            chunk: 80,
            gap: Duration::from_millis(50),
            ..sse(body)
        },
    );
    let upstream = Upstream::start(cases);
    let envoy = Envoy::start(&EnvoyOptions {
        concurrency: 1,
        ..EnvoyOptions::new(upstream.addr)
    })
    .unwrap();
    let mut c = TcpStream::connect(envoy.listener).unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-case: slow\r\ncontent-length: {}\r\n\r\n{STREAM_REQ}",
        STREAM_REQ.len()
    );
    c.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("data: ") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    drop(c);
    let scrape = envoy
        .prometheus_when(Duration::from_secs(10), |s| {
            requests(s, &[("error_type", "cancelled")]) >= 1.0
        })
        .unwrap();
    assert_eq!(requests(&scrape, &[("error_type", "cancelled")]), 1.0);
    assert_clean(&envoy);
}

#[test]
fn model_names_built_to_break_labels_stay_contained() {
    let sim = sim::spawn(SimConfig {
        ttft: Duration::from_millis(1),
        itl: Duration::from_millis(0),
        tokens: 2,
        ..SimConfig::default()
    })
    .unwrap();
    let envoy = Envoy::start(&EnvoyOptions {
        plugin_config: r#"{"max_models":8}"#.into(),
        concurrency: 2,
        ..EnvoyOptions::new(sim.addr)
    })
    .unwrap();
    let long = "L".repeat(10 * 1024);
    let hostile = [
        "keep",
        "a;b",
        "a=b",
        ".;",
        "x;.;endpoint=.=evil;.;",
        "line\nbreak",
        "quote\"back\\slash",
        &long,
    ];
    let mut sent = 0.0;
    for name in hostile {
        let body = serde_json::json!({"model": name, "stream": true}).to_string();
        let r = request_blocking(
            envoy.listener,
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            body,
        )
        .unwrap();
        assert_eq!(r.status, 200);
        sent += 1.0;
    }
    // Past the cap: a flood of distinct names, all `other`.
    for i in 0..1000 {
        let body = format!(r#"{{"model":"flood-{i}","stream":false}}"#);
        let r = request_blocking(
            envoy.listener,
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            body,
        )
        .unwrap();
        assert_eq!(r.status, 200);
        sent += 1.0;
    }
    let scrape = assert_clean(&envoy);
    assert_eq!(requests(&scrape, &[]), sent);
    let models: BTreeSet<&str> = scrape
        .samples
        .iter()
        .filter(|s| s.name.starts_with("llm_"))
        .filter_map(|s| s.labels.get("model").map(String::as_str))
        .collect();
    assert!(models.len() <= 8 + 1, "{models:?}");
    for want in ["keep", "a_b", ".;"] {
        let want = if want == ".;" { "._" } else { want };
        assert!(models.contains(want), "{want} missing from {models:?}");
    }
    assert!(models.contains("x_._endpoint_._evil_._"), "{models:?}");
    assert_eq!(requests(&scrape, &[("model", "keep")]), 1.0);
    // `a;b` and `a=b` are one series (`a_b`): 7 hostile values and one flood name fill the cap.
    assert_eq!(requests(&scrape, &[("model", "a_b")]), 2.0);
    assert_eq!(requests(&scrape, &[("model", "other")]), 999.0);
    assert_eq!(requests(&scrape, &[("endpoint", "chat_completions")]), sent);
}
