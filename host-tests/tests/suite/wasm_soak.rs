//! Soak: 10,000 streaming requests through one VM of the built `.wasm`. The linear memory after
//! them is no larger than after the first 100: nothing grows per request.

use host_tests::artifacts::llm_pulse_host;
use std::time::Duration;

use anyhow::Result;
use llm_pulse_cases::{chat, usage, DONE, INFLIGHT, ROLE};
use wasm_host::{Host, StreamId};

const STREAMS: u64 = 10_000;
const WARM_UP: u64 = 100;

/// One streaming chat request of 8 tokens; every 7th disconnects mid-stream, every 5th ends
/// in a 500, so the error paths soak too.
fn one(host: &mut Host, i: u64, events: &[Vec<u8>]) -> Result<StreamId> {
    let s = host.new_stream()?;
    host.send_request_headers(
        s,
        &[(":method", "POST"), (":path", "/v1/chat/completions")],
        false,
    )?;
    host.send_request_body(
        s,
        br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
        true,
    )?;
    host.advance(Duration::from_micros(20_000 + i % 997))?;
    if i % 5 == 4 {
        host.send_response_headers(
            s,
            &[(":status", "500"), ("content-type", "application/json")],
            false,
        )?;
        host.send_response_body(s, br#"{"object":"error"}"#, true)?;
        host.complete_stream(s)?;
        return Ok(s);
    }
    host.send_response_headers(
        s,
        &[(":status", "200"), ("content-type", "text/event-stream")],
        false,
    )?;
    for (n, e) in events.iter().enumerate() {
        host.advance(Duration::from_micros(5_000 + n as u64))?;
        host.send_response_body(s, e, false)?;
        if i % 7 == 3 && n == 4 {
            host.disconnect(s)?;
            return Ok(s);
        }
    }
    host.send_response_body(s, b"", true)?;
    host.complete_stream(s)?;
    Ok(s)
}

#[test]
fn ten_thousand_streams_do_not_grow_memory() -> Result<()> {
    let mut host = llm_pulse_host()?.plugin_config("{}").start()?;
    let mut events: Vec<Vec<u8>> = vec![ROLE.as_bytes().to_vec()];
    events.extend((0..8).map(|i| chat(&format!("tok{i}")).into_bytes()));
    events.push(usage(12, 8).into_bytes());
    events.push(DONE.as_bytes().to_vec());
    // Events split across chunks too: the framer keeps state between chunks.
    let joined: Vec<u8> = events.concat();
    let split: Vec<Vec<u8>> = joined.chunks(37).map(<[u8]>::to_vec).collect();

    let mut after_warm_up = 0;
    for i in 0..STREAMS {
        let body = if i % 2 == 0 { &events } else { &split };
        one(&mut host, i, body)?;
        if i + 1 == WARM_UP {
            after_warm_up = host.memory_size(0)?;
        }
    }
    let after_all = host.memory_size(0)?;
    println!(
        "wasm linear memory: {after_warm_up} bytes after {WARM_UP} streams, {after_all} bytes after {STREAMS}"
    );
    assert!(
        after_all <= after_warm_up,
        "memory grew from {after_warm_up} to {after_all} bytes"
    );
    assert_eq!(host.gauge(INFLIGHT), Some(0));
    let total: u64 = host
        .metrics_named("llm_requests_total")
        .iter()
        .filter_map(|m| m.counter())
        .sum();
    assert_eq!(total, STREAMS);
    assert!(host.vm_failure(0).is_none());
    Ok(())
}
