//! Smoke test: the real llm-pulse `.wasm` (the artifact Envoy runs) in the wasm_host, one
//! streaming chat request, then every metric the plugin defined, printed.
//!
//! Needs `target/wasm32-wasip1/release/llm_pulse.wasm` (`scripts/test` builds it). Only what
//! docs/design.md ("A request's life", "Metrics") promises is asserted; the filter's own tests go
//! further.

use host_tests::artifacts::llm_pulse_host;
use std::time::Duration;

use anyhow::Result;
use wasm_host::{Action, Callback, EndReason};

const CONTENT_CHUNK: &[u8] =
    b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}\n\n";
const ROLE_CHUNK: &[u8] =
    b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\n\n";
const DONE: &[u8] = b"data: [DONE]\n\n";

#[test]
fn streaming_chat_request_through_llm_pulse() -> Result<()> {
    let mut host = llm_pulse_host()?.plugin_config("{}").start()?;
    let s = host.new_stream()?;
    let request_body = br#"{"model":"m","stream":true}"#;
    host.send_request_headers(
        s,
        &[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "llm"),
            (":scheme", "http"),
            ("content-type", "application/json"),
        ],
        false,
    )?;
    host.send_request_body(s, request_body, true)?;

    host.advance(Duration::from_millis(50))?;
    host.send_response_headers(
        s,
        &[(":status", "200"), ("content-type", "text/event-stream")],
        false,
    )?;
    host.send_response_body(s, ROLE_CHUNK, false)?;
    // TTFT 100 ms, then 10 ms between tokens.
    host.advance(Duration::from_millis(50))?;
    host.send_response_body(s, CONTENT_CHUNK, false)?;
    for _ in 0..2 {
        host.advance(Duration::from_millis(10))?;
        host.send_response_body(s, CONTENT_CHUNK, false)?;
    }
    host.send_response_body(s, DONE, true)?;
    host.complete_stream(s)?;

    let rec = host.stream(s)?;
    println!("callbacks:");
    for c in &rec.callbacks {
        println!("  {:?} -> {:?}", c.callback, c.action);
    }
    println!("metrics:");
    for m in host.metrics() {
        println!(
            "  {:?} {} {:?} = {:?}",
            m.kind,
            m.envoy_name(),
            m.labels(),
            m.value
        );
    }
    println!(
        "filter state: {:?}",
        rec.filter_state.keys().collect::<Vec<_>>()
    );
    for l in host.logs() {
        println!("log [{}] {}", l.level, l.message);
    }

    // §2: never pause; bodies pass untouched; on_log runs.
    for cb in [
        Callback::RequestHeaders,
        Callback::RequestBody,
        Callback::ResponseHeaders,
        Callback::ResponseBody,
    ] {
        assert!(
            rec.actions(cb).iter().all(|a| *a == Action::Continue),
            "{cb:?} paused"
        );
    }
    assert_eq!(rec.request_body, request_body);
    let response: Vec<u8> = [
        ROLE_CHUNK,
        CONTENT_CHUNK,
        CONTENT_CHUNK,
        CONTENT_CHUNK,
        DONE,
    ]
    .concat();
    assert_eq!(rec.response_body, response);
    assert_eq!(rec.end, Some(EndReason::Completed));
    assert!(rec.callbacks.iter().any(|c| c.callback == Callback::Log));
    // §3: every metric name starts with the prefix (default `llm`).
    for m in host.metrics() {
        assert!(
            m.name.starts_with("llm_"),
            "{} lacks the llm_ prefix",
            m.name
        );
    }
    // Which build runs: one `llm_build_info{version,commit}` gauge at 1, as the version line.
    let info = host.metrics_named("llm_build_info");
    assert_eq!(info.len(), 1, "{info:?}");
    let labels = info[0].labels();
    assert_eq!(
        labels.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["version", "commit"]
    );
    assert_eq!(info[0].gauge(), Some(1));
    let line = format!("llm-pulse {} ({}) configured:", labels[0].1, labels[1].1);
    assert!(
        host.logs().iter().any(|l| l.message.starts_with(&line)),
        "{line:?} not in {:?}",
        host.logs()
    );
    Ok(())
}
