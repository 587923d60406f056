//! The traffic the microbenchmark and the call counts send through the wasmtime harness:
//! vLLM-shaped streamed chat requests, a 100 KiB prompt, and many streams held open.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use wasm_host::{Host, HostBuilder, StreamId};

use crate::upstreams::{answer_tail, chat_event, JsonStyle, UsageAsk};

pub const REQUEST_HEADERS: &[(&str, &str)] = &[
    (":method", "POST"),
    (":path", "/v1/chat/completions"),
    (":authority", "llm"),
    (":scheme", "http"),
    ("content-type", "application/json"),
];
pub const RESPONSE_HEADERS: &[(&str, &str)] =
    &[(":status", "200"), ("content-type", "text/event-stream")];
pub const ROLE: &[u8] = b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"bench-model\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n";
pub const DONE: &[u8] = b"data: [DONE]\n\n";
/// llm-pulse as (c) runs it: the usage edits are counted apart (`--usage`).
pub const PULSE_OFF: &str = r#"{"usage_stats":"off"}"#;
/// The cluster Envoy names to the filter (`xds.cluster_name`): the usage edit needs one.
pub const CLUSTER: &str = "workers";

/// One vLLM-shaped chat chunk (as gpu-sim sends them).
pub fn token_event(i: u32) -> Vec<u8> {
    format!("data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"bench-model\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" t{i}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n").into_bytes()
}

pub struct Sample {
    /// Seconds for: request side + response headers + [DONE] + end of stream.
    pub fixed: f64,
    /// Seconds for the token events.
    pub events: f64,
}

/// One complete streamed request; the token events go `per_chunk` to a body callback.
pub fn request(host: &mut Host, events: &[Vec<u8>], per_chunk: usize) -> Result<Sample> {
    let body = br#"{"model":"bench-model","messages":[{"role":"user","content":"hello"}],"stream":true,"max_tokens":256}"#;
    let chunks: Vec<Vec<u8>> = events.chunks(per_chunk).map(|c| c.concat()).collect();
    let t0 = Instant::now();
    let s = host.new_stream()?;
    host.send_request_headers(s, REQUEST_HEADERS, false)?;
    host.send_request_body(s, body, true)?;
    host.send_response_headers(s, RESPONSE_HEADERS, false)?;
    host.send_response_body(s, ROLE, false)?;
    let t1 = Instant::now();
    for c in &chunks {
        host.send_response_body(s, c, false)?;
    }
    let t2 = Instant::now();
    host.send_response_body(s, DONE, true)?;
    host.complete_stream(s)?;
    let t3 = Instant::now();
    Ok(Sample {
        fixed: (t1 - t0 + (t3 - t2)).as_secs_f64(),
        events: (t2 - t1).as_secs_f64(),
    })
}

/// A request with a large body fed in `slice`-byte chunks; seconds for the body only.
pub fn big_request(host: &mut Host, body: &[u8], slice: usize) -> Result<f64> {
    let s = host.new_stream()?;
    host.send_request_headers(s, REQUEST_HEADERS, false)?;
    let chunks: Vec<&[u8]> = body.chunks(slice).collect();
    let t0 = Instant::now();
    for (i, c) in chunks.iter().enumerate() {
        host.send_request_body(s, c, i + 1 == chunks.len())?;
    }
    let t = t0.elapsed().as_secs_f64();
    host.send_response_headers(s, RESPONSE_HEADERS, false)?;
    host.send_response_body(s, DONE, true)?;
    host.complete_stream(s)?;
    Ok(t)
}

/// Bytes of VM memory per open stream: `n` streams mid-response at once.
pub fn memory_per_stream(wasm: &Path, config: &str, n: usize) -> Result<f64> {
    let mut host = HostBuilder::new(wasm)
        .plugin_config(config)
        .property(&["xds", "cluster_name"], CLUSTER)
        .start()?;
    let events: Vec<Vec<u8>> = (0..4).map(token_event).collect();
    // Warm: metric ids, allocator, the SDK's context map.
    request(&mut host, &events, 1)?;
    let before = host.memory_size(0)?;
    let mut open: Vec<StreamId> = Vec::with_capacity(n);
    let big = prompt_body(100 * 1024);
    for i in 0..n {
        let s = host.new_stream()?;
        host.send_request_headers(s, REQUEST_HEADERS, false)?;
        // Every 16th stream sent a 100 KiB prompt: state must not grow with it.
        if i % 16 == 0 {
            for c in big.chunks(16 * 1024) {
                host.send_request_body(s, c, false)?;
            }
            host.send_request_body(s, b"", true)?;
        } else {
            host.send_request_body(s, br#"{"model":"bench-model","stream":true}"#, true)?;
        }
        host.send_response_headers(s, RESPONSE_HEADERS, false)?;
        host.send_response_body(s, ROLE, false)?;
        host.send_response_body(s, &events[1], false)?;
        open.push(s);
    }
    let after = host.memory_size(0)?;
    for s in open {
        host.complete_stream(s)?;
    }
    Ok((after - before) as f64 / n as f64)
}

pub fn prompt_body(size: usize) -> Vec<u8> {
    let words = "word ".repeat(size / 5);
    serde_json::json!({
        "model": "bench-model",
        "messages": [{"role": "user", "content": words}],
        "stream": true,
    })
    .to_string()
    .into_bytes()
}

/// One streamed request whose worker answers with `usage` in its events: the client's
/// `body`, the role event, `events` (`per_chunk` to a body callback), then the usage
/// event if any and `[DONE]` in the last callback, as the bench's workers write them.
pub fn usage_request(
    host: &mut Host,
    body: &[u8],
    usage: UsageAsk,
    tokens: u32,
    per_chunk: usize,
) -> Result<()> {
    let style = JsonStyle::Compact;
    let events: Vec<Vec<u8>> = (0..tokens)
        .map(|i| chat_event(Some(&format!(" t{i}")), style, usage, i + 1).into_bytes())
        .collect();
    let s = host.new_stream()?;
    host.send_request_headers(s, REQUEST_HEADERS, false)?;
    host.send_request_body(s, body, true)?;
    host.send_response_headers(s, RESPONSE_HEADERS, false)?;
    host.send_response_body(s, chat_event(None, style, usage, 0).as_bytes(), false)?;
    for c in events.chunks(per_chunk) {
        host.send_response_body(s, &c.concat(), false)?;
    }
    host.send_response_body(s, answer_tail(tokens, style, usage).as_bytes(), true)?;
    host.complete_stream(s)?;
    Ok(())
}
