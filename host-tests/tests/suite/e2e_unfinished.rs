//! Streams that never finish, through a real Envoy 1.40: clients that leave mid-stream
//! (HTTP/1.1 by closing the connection, HTTP/2 by RST_STREAM on a connection that stays
//! open), a worker that cuts its stream (HTTP/1.1 and HTTP/2 clients), and streams the route's
//! idle timeout or deadline cuts.
//!
//! Each one's access-log line must carry the verdict `requests_total` counted for it: the
//! filter can only make it at `on_log`, and Envoy 1.40 runs the filters' access loggers
//! (`on_log`) before the HCM's. The line's token figures are held to what the client and the
//! worker saw of the same request, never to a wall-clock window.

use super::e2e_traffic::{
    frame, hpack, logged_u64, DATA, END_HEADERS, END_STREAM, HEADERS, SETTINGS,
};
use host_tests::envoy::{Envoy, EnvoyOptions};
use host_tests::prom::Scrape;
use host_tests::raw_http::{read_request, LoggingWorker};
use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::Duration;

const CHAT: &str = "/v1/chat/completions";
const BODY: &[u8] = br#"{"model":"sim-model","stream":true}"#;
const RST_STREAM: u8 = 3;
const WINDOW_UPDATE: u8 = 8;
const CANCEL: u32 = 8;
/// The route's idle timeout in this test's Envoy (the shipped one is 300 s): tokens here come
/// 50 ms apart, so only a stalled stream reaches it.
const IDLE_TIMEOUT: &str = "2s";

/// How a request's stream ended at the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Streaming,
    /// All tokens and `[DONE]` written.
    Finished,
    /// Envoy went away (a write failed, or the stalled connection closed).
    Gone,
    /// The worker closed its connection mid-stream (`x-cut-after`).
    Cut,
}

/// What the worker did for one request (by `x-request-id`).
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// Token events written.
    tokens: u32,
    end: End,
}

/// A vLLM-shaped worker on 127.0.0.1: streams `x-tokens` token events (default 40)
/// `x-gap-ms` apart (default 50), then `[DONE]`; `x-cut-after: n` closes the connection after
/// n events, `x-stall-after: n` sends nothing more after n events and holds the connection
/// until Envoy closes it. Stopped when dropped.
type Worker = LoggingWorker<Sent>;

fn serve(conn: TcpStream, log: &Mutex<BTreeMap<String, Sent>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let Some(req) = read_request(&mut reader)? else {
            return Ok(());
        };
        let id = req.header("x-request-id").unwrap_or_default().to_string();
        let num = |k: &str| req.header(k).and_then(|v| v.parse::<u32>().ok());
        let record = |tokens, end| {
            log.lock().unwrap().insert(id.clone(), Sent { tokens, end });
        };
        record(0, End::Streaming);
        out.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        )?;
        out.flush()?;
        let chunk = |out: &mut TcpStream, data: &str| -> std::io::Result<()> {
            out.write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes())?;
            out.flush()
        };
        let gap = Duration::from_millis(num("x-gap-ms").unwrap_or(50).into());
        let (cut, stall) = (num("x-cut-after"), num("x-stall-after"));
        for i in 0..num("x-tokens").unwrap_or(40) {
            if cut == Some(i) {
                record(i, End::Cut);
                return Ok(()); // dropped: the stream is cut short
            }
            if stall == Some(i) {
                // Silent until Envoy gives up and closes the connection.
                let mut buf = [0u8; 64];
                while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
                record(i, End::Gone);
                return Ok(());
            }
            if i > 0 {
                std::thread::sleep(gap);
            }
            let event = format!("data: {{\"id\":\"c\",\"model\":\"sim-model\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{i}\"}},\"finish_reason\":null}}]}}\n\n");
            if chunk(&mut out, &event).is_err() {
                record(i, End::Gone);
                return Ok(());
            }
            record(i + 1, End::Streaming);
        }
        let tokens = num("x-tokens").unwrap_or(40);
        chunk(&mut out, "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")?;
        out.write_all(b"0\r\n\r\n")?;
        out.flush()?;
        record(tokens, End::Finished);
    }
}

/// Token events in a piece of the answer (each carries one `"content"`).
fn tokens_in(bytes: &[u8]) -> u32 {
    let text = String::from_utf8_lossy(bytes);
    text.matches("\"content\":\"t").count() as u32
}

/// What the client saw of one request.
#[derive(Debug)]
struct Seen {
    tokens: u32,
    /// The stream's `[DONE]` arrived.
    done: bool,
}

/// An HTTP/1.1 streaming request on its own connection. `leave`: the client closes the
/// connection once the first token arrived; else it reads until Envoy ends the answer.
fn http1(envoy: &Envoy, id: &str, headers: &[(&str, &str)], leave: bool) -> Seen {
    let mut c = TcpStream::connect(envoy.listener).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "POST {CHAT} HTTP/1.1\r\nhost: llm\r\ncontent-type: application/json\r\nx-request-id: {id}\r\ncontent-length: {}\r\n",
        BODY.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(BODY).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = c.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if leave && tokens_in(&got) > 0 {
            break; // dropped: the client leaves mid-stream
        }
    }
    Seen {
        tokens: tokens_in(&got),
        done: String::from_utf8_lossy(&got).contains("[DONE]"),
    }
}

/// One h2c (prior knowledge) connection carrying many streams, one at a time.
struct H2 {
    c: TcpStream,
    next_stream: u32,
}

impl H2 {
    fn connect(envoy: &Envoy) -> H2 {
        let mut c = TcpStream::connect(envoy.listener).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        c.write_all(&frame(SETTINGS, 0, 0, &[])).unwrap();
        // A connection window that the answers of every stream here cannot use up.
        c.write_all(&frame(WINDOW_UPDATE, 0, 0, &(1u32 << 30).to_be_bytes()))
            .unwrap();
        H2 { c, next_stream: 1 }
    }

    /// The next frame: (type, flags, stream, payload); SETTINGS are acknowledged.
    fn next_frame(&mut self) -> Option<(u8, u8, u32, Vec<u8>)> {
        let mut head = [0u8; 9];
        self.c.read_exact(&mut head).ok()?;
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0; len];
        self.c.read_exact(&mut payload).ok()?;
        if head[3] == SETTINGS && head[4] & 1 == 0 {
            self.c.write_all(&frame(SETTINGS, 1, 0, &[])).ok()?;
        }
        Some((head[3], head[4], stream, payload))
    }

    /// One streaming request. `leave`: the client resets its stream (RST_STREAM CANCEL) once
    /// the first token arrived; else it reads until Envoy ends or resets the stream.
    fn request(&mut self, id: &str, extra: &[(&str, &str)], leave: bool) -> Seen {
        let sid = self.next_stream;
        self.next_stream += 2;
        let len = BODY.len().to_string();
        let mut headers = vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":path", CHAT),
            (":authority", "llm"),
            ("content-type", "application/json"),
            ("content-length", &len),
            ("x-request-id", id),
        ];
        headers.extend_from_slice(extra);
        self.c
            .write_all(&frame(HEADERS, END_HEADERS, sid, &hpack(&headers)))
            .unwrap();
        self.c
            .write_all(&frame(DATA, END_STREAM, sid, BODY))
            .unwrap();
        let mut got = Vec::new();
        while let Some((kind, flags, stream, payload)) = self.next_frame() {
            if stream != sid {
                continue;
            }
            if kind == DATA {
                got.extend_from_slice(&payload);
                if leave && tokens_in(&got) > 0 {
                    self.c
                        .write_all(&frame(RST_STREAM, 0, sid, &CANCEL.to_be_bytes()))
                        .unwrap();
                    break;
                }
            }
            if kind == RST_STREAM || flags & END_STREAM != 0 {
                break;
            }
        }
        Seen {
            tokens: tokens_in(&got),
            done: String::from_utf8_lossy(&got).contains("[DONE]"),
        }
    }
}

/// 10 clients leaving and 5 worker cuts per client protocol, and streams cut by the route's
/// idle timeout and deadline: every access-log line carries the verdict the counter got.
#[test]
fn unfinished_streams_carry_their_verdict_in_the_access_log() {
    let worker = Worker::start(serve).unwrap();
    // Requests with `x-case: deadline` take a route with a 1 s deadline; the others keep the
    // shipped route, its idle timeout shortened.
    let route = "                        - match: { prefix: \"/\" }\n                          route:\n                            cluster: workers\n";
    let deadline_route = "                        - match: { prefix: \"/\", headers: [{ name: x-case, string_match: { exact: deadline } }] }\n                          route: { cluster: workers, timeout: 1s }\n";
    let envoy = Envoy::start(&EnvoyOptions {
        yaml_patches: vec![
            (route.into(), format!("{deadline_route}{route}")),
            (
                "idle_timeout: 300s".into(),
                format!("idle_timeout: {IDLE_TIMEOUT}"),
            ),
        ],
        ..EnvoyOptions::new(worker.addr)
    })
    .unwrap();

    // (id, what the client saw, the verdict the filter must give)
    let mut runs: Vec<(String, Seen, &str)> = Vec::new();
    for i in 0..10 {
        let id = format!("h1-leave-{i}");
        let seen = http1(&envoy, &id, &[], true);
        runs.push((id, seen, "cancelled"));
    }
    for i in 0..5 {
        let id = format!("h1-cut-{i}");
        let seen = http1(&envoy, &id, &[("x-cut-after", "3")], false);
        runs.push((id, seen, "truncated_stream"));
    }
    let mut h2 = H2::connect(&envoy);
    for i in 0..10 {
        let id = format!("h2-leave-{i}");
        let seen = h2.request(&id, &[], true);
        runs.push((id, seen, "cancelled"));
    }
    for i in 0..5 {
        let id = format!("h2-cut-{i}");
        let seen = h2.request(&id, &[("x-cut-after", "3")], false);
        runs.push((id, seen, "truncated_stream"));
    }
    for i in 0..2 {
        let id = format!("idle-{i}");
        let seen = http1(&envoy, &id, &[("x-stall-after", "2")], false);
        runs.push((id, seen, "response_timeout"));
        let id = format!("deadline-{i}");
        let headers = [("x-case", "deadline"), ("x-gap-ms", "100")];
        let seen = http1(&envoy, &id, &headers, false);
        runs.push((id, seen, "response_timeout"));
    }
    drop(h2);

    let mut carried: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    let mut logged_verdicts: BTreeMap<String, f64> = BTreeMap::new();
    let mut wrong_figures = Vec::new();
    for (id, seen, want) in &runs {
        let entry = envoy.access_log_entry(id, Duration::from_secs(20)).unwrap();
        println!(
            "{id}: client {seen:?}, worker {:?}: {entry}",
            worker.logged(id)
        );
        // No run finished: the client left, or never got the stream's end.
        assert!(!seen.done, "{id}: the stream finished: {entry}");
        assert!(seen.tokens >= 1, "{id}: no token reached the client");
        let kind = id.rsplit_once('-').map_or(id.as_str(), |(k, _)| k);
        let slot = carried.entry(kind).or_default();
        slot.1 += 1;
        if entry["error_type"] == *want {
            slot.0 += 1;
        }
        let logged = entry["error_type"].as_str().unwrap_or_default().to_string();
        *logged_verdicts.entry(logged).or_default() += 1.0;
        // The filter saw at least what the client got and at most what the worker sent.
        let sent = worker.logged(id);
        let tokens = logged_u64(&entry, "output_tokens");
        if !tokens.is_some_and(|t| u64::from(seen.tokens) <= t && t <= u64::from(sent.tokens)) {
            wrong_figures.push(format!(
                "{id}: output_tokens {tokens:?}, client {}, worker {}",
                seen.tokens, sent.tokens
            ));
        }
        if logged_u64(&entry, "ttft_us").is_none() {
            wrong_figures.push(format!("{id}: no ttft_us"));
        }
        if id.contains("cut") {
            assert_eq!(sent.end, End::Cut, "{id}");
        }
    }
    println!("access-log lines with the verdict, of all: {carried:?}");
    for (kind, (with, all)) in &carried {
        assert_eq!(with, all, "{kind}: {with} of {all} lines carry the verdict");
    }
    assert!(wrong_figures.is_empty(), "{wrong_figures:#?}");
    // One verdict: the counter holds exactly what the access log says.
    let scrape = envoy
        .prometheus_when(Duration::from_secs(20), |s| {
            s.sum("llm_requests_total", &[]) >= runs.len() as f64
                && s.sum("llm_inflight_requests", &[]) == 0.0
        })
        .unwrap();
    for (verdict, lines) in &logged_verdicts {
        assert_eq!(
            requests(&scrape, verdict),
            *lines,
            "error_type {verdict:?}: counter vs access log"
        );
    }
    assert_eq!(scrape.sum("llm_requests_total", &[]), runs.len() as f64);
}

fn requests(scrape: &Scrape, error_type: &str) -> f64 {
    scrape.sum("llm_requests_total", &[("error_type", error_type)])
}
