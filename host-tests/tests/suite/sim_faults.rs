//! gpu-sim: fault injection (error statuses, in-stream errors, resets, garbage bodies) and
//! client disconnects.

use std::time::Duration;

use host_tests::sim::client::{request, Recorded};
use host_tests::sim::{self, SimConfig, SimHandle};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};

async fn start(tokens: u32, per_chunk: u32) -> SimHandle {
    let cfg = SimConfig {
        ttft: Duration::from_millis(10),
        itl: Duration::from_millis(2),
        tokens,
        tokens_per_chunk: per_chunk,
        ..SimConfig::default()
    };
    sim::start("127.0.0.1:0".parse().expect("addr"), cfg)
        .await
        .expect("sim starts")
}

async fn post(sim: &SimHandle, path: &str, headers: &[(&str, &str)], body: &Value) -> Recorded {
    request(sim.addr, "POST", path, headers, body.to_string())
        .await
        .expect("request")
}

#[tokio::test]
async fn fail_status_answers_with_vllm_error_body() {
    let sim = start(4, 1).await;
    for (status, kind) in [
        (500, "InternalServerError"),
        (400, "BadRequestError"),
        (404, "NotFoundError"),
        (429, "RateLimitError"),
        (503, "ServiceUnavailableError"),
    ] {
        let s = status.to_string();
        let rec = post(
            &sim,
            "/v1/chat/completions",
            &[("x-sim-fail-status", &s), ("x-sim-ttft-ms", "60000")],
            &json!({"stream": true}),
        )
        .await;
        assert_eq!(rec.status, status);
        assert_eq!(rec.headers["content-type"], "application/json");
        assert_eq!(
            rec.body(),
            format!(
                r#"{{"object":"error","message":"simulated failure","type":"{kind}","param":null,"code":{status}}}"#
            )
            .as_bytes()
        );
        // "At once": not after the (huge) TTFT.
        assert!(rec.frames[0].0 < Duration::from_secs(30));
    }
    // Even a body that is not JSON gets the simulated status, not a 400.
    let rec = request(
        sim.addr,
        "POST",
        "/v1/completions",
        &[("x-sim-fail-status", "502")],
        "{",
    )
    .await
    .expect("request");
    assert_eq!(rec.status, 502);
}

#[tokio::test]
async fn bad_requests_get_400() {
    let sim = start(4, 1).await;
    let rec = request(sim.addr, "POST", "/v1/completions", &[], "not json")
        .await
        .expect("request");
    assert_eq!(rec.status, 400);
    assert_eq!(rec.json().expect("json")["type"], "BadRequestError");
    let rec = post(
        &sim,
        "/v1/completions",
        &[("x-sim-tokens", "many")],
        &json!({}),
    )
    .await;
    assert_eq!(rec.status, 400);
    assert!(rec.json().expect("json")["message"]
        .as_str()
        .expect("message")
        .contains("x-sim-tokens"));
    let rec = post(
        &sim,
        "/v1/completions",
        &[("x-sim-fail-status", "302")],
        &json!({}),
    )
    .await;
    assert_eq!(rec.status, 400);
    let rec = post(&sim, "/v1/completions", &[], &json!({"max_tokens": 0})).await;
    assert_eq!(rec.status, 400);
}

#[tokio::test]
async fn error_after_sends_vllm_error_event_then_done() {
    let sim = start(8, 2).await;
    let rec = post(
        &sim,
        "/v1/chat/completions",
        &[("x-sim-error-after", "3")],
        &json!({"stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(rec.status, 200);
    assert!(rec.body_error.is_none(), "the stream ends cleanly");
    let events: Vec<String> = rec.events().into_iter().map(|(_, d)| d).collect();
    // role, 2 tokens, 1 token (cut at K=3), error, [DONE]; no finish_reason, no usage chunk.
    assert_eq!(events.len(), 5, "{events:#?}");
    let content: String = events[1..3]
        .iter()
        .map(|e| {
            let v: Value = serde_json::from_str(e).expect("json");
            assert_eq!(v["choices"][0]["finish_reason"], Value::Null);
            v["choices"][0]["delta"]["content"]
                .as_str()
                .expect("content")
                .to_owned()
        })
        .collect();
    assert_eq!(content, " t0 t1 t2");
    assert_eq!(
        events[3],
        r#"{"error":{"object":"error","message":"simulated engine failure","type":"InternalServerError","param":null,"code":500}}"#
    );
    assert_eq!(events[4], "[DONE]");

    // K=0: the error replaces the first token, after the role chunk.
    let rec = post(
        &sim,
        "/v1/completions",
        &[("x-sim-error-after", "0")],
        &json!({"stream": true}),
    )
    .await;
    let events: Vec<String> = rec.events().into_iter().map(|(_, d)| d).collect();
    assert_eq!(events.len(), 2);
    assert!(events[0].starts_with(r#"{"error":"#));
    // K >= tokens: the stream completes before the fault would fire.
    let rec = post(
        &sim,
        "/v1/completions",
        &[("x-sim-error-after", "8")],
        &json!({"stream": true}),
    )
    .await;
    assert!(!rec.events().iter().any(|(_, d)| d.contains("error")));
}

/// Sends a raw HTTP/1.1 request and reads until the server closes (or resets) the socket.
async fn raw_exchange(sim: &SimHandle, head_extra: &str, body: &str) -> (Vec<u8>, bool) {
    let mut tcp = TcpStream::connect(sim.addr).await.expect("connect");
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: sim\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n{head_extra}\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = timeout(Duration::from_secs(10), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or(false);
    (received, closed)
}

#[tokio::test]
async fn reset_after_drops_the_connection_mid_body() {
    let sim = start(6, 1).await;
    let body = r#"{"stream":true}"#;
    let (bytes, closed) = raw_exchange(&sim, "x-sim-reset-after: 2\r\n", body).await;
    let text = String::from_utf8_lossy(&bytes);
    assert!(closed, "the socket must close");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(
        text.contains(r#""content":" t0""#) && text.contains(r#""content":" t1""#),
        "{text}"
    );
    assert!(!text.contains(" t2"), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    assert!(!text.ends_with("0\r\n\r\n"), "no terminating chunk: {text}");

    // The control: the same exchange without the fault ends with the last chunk... and the
    // connection stays open (keep-alive), so read only until the terminator.
    let mut tcp = TcpStream::connect(sim.addr).await.expect("connect");
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: sim\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    timeout(Duration::from_secs(10), async {
        while !got.ends_with(b"0\r\n\r\n") {
            let n = tcp.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before the end");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("clean stream ends with 0\\r\\n\\r\\n");
    // Every SSE event travels as its own HTTP chunk (written and flushed on its own).
    let text = String::from_utf8_lossy(&got);
    let (_, chunked) = text.split_once("\r\n\r\n").expect("head");
    let chunks = dechunk(chunked);
    assert_eq!(chunks.len(), 1 + 6 + 1, "{chunks:#?}");
    for chunk in &chunks {
        assert!(
            chunk.starts_with("data: ") && chunk.ends_with("\n\n"),
            "{chunk:?}"
        );
        assert_eq!(chunk.matches("data: ").count(), 1, "{chunk:?}");
    }

    // Through the recording client the reset shows as a body error.
    let rec = request(
        sim.addr,
        "POST",
        "/v1/completions",
        &[("x-sim-reset-after", "1")],
        body,
    )
    .await
    .expect("request");
    assert_eq!(rec.status, 200);
    assert!(rec.body_error.is_some(), "{rec:?}");
    assert_eq!(rec.events().len(), 1);
}

/// Payloads of an HTTP/1.1 chunked body, terminator excluded.
fn dechunk(mut body: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size, 16).expect("chunk size");
        if size == 0 {
            break;
        }
        chunks.push(rest[..size].to_owned());
        body = &rest[size + 2..];
    }
    chunks
}

#[tokio::test]
async fn unary_garbage_is_200_json_that_does_not_parse() {
    let sim = start(2, 1).await;
    let rec = post(
        &sim,
        "/v1/completions",
        &[("x-sim-unary-garbage", "1")],
        &json!({}),
    )
    .await;
    assert_eq!(rec.status, 200);
    assert_eq!(rec.headers["content-type"], "application/json");
    assert_eq!(rec.body(), "{\"id\": broken".as_bytes());
    assert!(rec.json().is_err());
}

#[tokio::test]
async fn config_faults_apply_without_headers() {
    // Health probes cannot carry test headers: faults also come from the config.
    let sim = start(2, 1).await;
    sim.update_config(|c| c.fail_status = Some(503))
        .expect("valid");
    let rec = post(&sim, "/v1/completions", &[], &json!({"max_tokens": 1})).await;
    assert_eq!(rec.status, 503);
    sim.update_config(|c| c.fail_status = None).expect("valid");
    let rec = post(&sim, "/v1/completions", &[], &json!({"max_tokens": 1})).await;
    assert_eq!(rec.status, 200);
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

#[tokio::test]
async fn client_disconnect_stops_the_stream_and_inflight_drops() {
    let sim = start(100_000, 1).await;
    let mut tcp = TcpStream::connect(sim.addr).await.expect("connect");
    let body = r#"{"stream":true}"#;
    let req = format!(
        "POST /v1/completions HTTP/1.1\r\nhost: sim\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains(" t3") {
        let n = tcp.read(&mut buf).await.expect("read");
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(sim.stats().inflight, 1);
    drop(tcp);
    assert_eq!(wait_inflight(&sim, 0).await, 0);

    // A unary request abandoned before its answer is no longer inflight either.
    let mut tcp = TcpStream::connect(sim.addr).await.expect("connect");
    let body = r#"{"max_tokens":100000}"#;
    let req = format!(
        "POST /v1/completions HTTP/1.1\r\nhost: sim\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    assert_eq!(wait_inflight(&sim, 1).await, 1);
    drop(tcp);
    assert_eq!(wait_inflight(&sim, 0).await, 0);
}

#[tokio::test]
async fn dropping_the_handle_closes_open_streams() {
    let sim = start(100_000, 1).await;
    let addr = sim.addr;
    let reader = tokio::spawn(request(
        addr,
        "POST",
        "/v1/completions",
        &[],
        r#"{"stream":true}"#,
    ));
    sleep(Duration::from_millis(100)).await;
    drop(sim);
    let rec = timeout(Duration::from_secs(5), reader)
        .await
        .expect("stream ends after shutdown")
        .expect("task")
        .expect("request");
    assert!(rec.body_error.is_some(), "stream was cut, not finished");
    assert!(TcpStream::connect(addr).await.is_err());
}
