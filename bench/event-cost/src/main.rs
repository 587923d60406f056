//! llm-pulse's own work (core's `StreamMeter`: SSE framing, the JSON scan, timing, metric ids)
//! on `requests` streamed chat answers of `tokens` vLLM-shaped events, natively, with a host
//! whose calls do nothing: what is left is the filter's own computation, without the ABI.
//! Meant for instruction counts (docs/benchmarks.md, "Instructions per event"):
//!
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!       target/bench-event-cost/release/event-cost <compact|spaced> <tokens> <events per chunk> \
//!       <requests> [streams] [off|final|continuous]
//!
//! Instructions per event = (Ir at T tokens − Ir at 0 tokens) / (T × requests): start-up and
//! per-request work cancel. `streams` > 1 (5th argument) interleaves that many streams, one
//! event each in turn, as a busy Envoy worker does (the footprint a cache simulation sees).
//! The 6th argument is `usage_stats` (default `off`): with `final` or `continuous` the request
//! is edited as the glue does it in Envoy, and the answer carries the usage vLLM then sends
//! (`"usage": null` or the running count on every event, a usage-only event before `[DONE]`),
//! which the meter cuts again.

use llm_pulse_core::config::Config;
use llm_pulse_core::host::{EnvoyEnd, Host, HostError, MetricKind};
use llm_pulse_core::meter::{ResponseHead, StreamMeter, VmMeter};
use llm_pulse_core::usage::UsageMode;
use std::cell::Cell;

/// A host whose calls cost (almost) nothing; the clock advances 20 ms per read.
struct NullHost {
    now: Cell<u64>,
    next_id: Cell<u32>,
}

impl Host for NullHost {
    fn now_ns(&self) -> u64 {
        let t = self.now.get() + 20_000_000;
        self.now.set(t);
        t
    }
    fn define_metric(&self, _: MetricKind, _: &str) -> Result<u32, HostError> {
        self.next_id.set(self.next_id.get() + 1);
        Ok(self.next_id.get())
    }
    fn increment_metric(&self, id: u32, delta: i64) {
        std::hint::black_box((id, delta));
    }
    fn record_metric(&self, id: u32, value: u64) {
        std::hint::black_box((id, value));
    }
    fn get_shared_data(&self, _: &str) -> (Option<Vec<u8>>, Option<u32>) {
        (None, None)
    }
    fn set_shared_data(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), HostError> {
        Ok(())
    }
    fn set_property(&self, path: &str, value: &[u8]) {
        std::hint::black_box((path, value));
    }
    fn log_warn(&self, _: &str) {}
    fn dispatch_http_call(
        &self,
        _: &str,
        _: &[(&str, &str)],
        _: Option<&[u8]>,
        _: u64,
    ) -> Result<u32, HostError> {
        Err(HostError::Refused("dispatch_http_call", "not here".into()))
    }
    fn envoy_end(&self) -> EnvoyEnd {
        EnvoyEnd::default()
    }
    fn upstream_address(&self) -> Option<Vec<u8>> {
        Some(b"127.0.0.1:8000".to_vec())
    }
    fn call_response_body(&self, _: usize, _: usize) -> Vec<u8> {
        Vec::new()
    }
}

/// vLLM's usage object, 8 prompt tokens.
fn usage_json(completion: usize) -> String {
    format!(
        r#"{{"prompt_tokens":8,"total_tokens":{},"completion_tokens":{completion}}}"#,
        8 + completion
    )
}

fn sse(json: String, spaced: bool) -> Vec<u8> {
    let json = if spaced {
        json.replace(':', ": ").replace(',', ", ")
    } else {
        json
    };
    format!("data: {json}\n\n").into_bytes()
}

/// One chat chunk, with the `usage` member vLLM adds in `usage` mode (`completion`: tokens so
/// far).
fn event(content: Option<&str>, spaced: bool, usage: UsageMode, completion: usize) -> Vec<u8> {
    let delta = match content {
        None => r#"{"role":"assistant","content":""}"#.to_string(),
        Some(c) => format!(r#"{{"content":"{c}"}}"#),
    };
    let usage = match usage {
        UsageMode::Off => String::new(),
        UsageMode::Final => r#","usage":null"#.to_string(),
        UsageMode::Continuous => format!(r#","usage":{}"#, usage_json(completion)),
    };
    sse(
        format!(
            r#"{{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"bench-model","choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":null}}]{usage}}}"#
        ),
        spaced,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(default);
    let spaced = args.get(1).map(String::as_str) == Some("spaced");
    let tokens = arg(2, 256);
    let per_chunk = arg(3, 1).max(1);
    let requests = arg(4, 100);
    let streams = arg(5, 1).max(1);
    let usage_name = args.get(6).map(String::as_str).unwrap_or("off");
    let Some(usage) = UsageMode::from_name(usage_name) else {
        eprintln!("usage_stats: want off, final or continuous, got {usage_name}");
        std::process::exit(2);
    };

    let host = NullHost {
        now: Cell::new(1_700_000_000_000_000_000),
        next_id: Cell::new(0),
    };
    let config = match Config::parse(b"{}", None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("config: {e}");
            std::process::exit(2);
        }
    };
    let mut vm = VmMeter::new(&config);
    let mut body = event(None, spaced, usage, 0);
    for i in 0..tokens {
        body.extend(event(Some(&format!(" t{i}")), spaced, usage, i + 1));
    }
    if usage != UsageMode::Off {
        body.extend(sse(
            format!(
                r#"{{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"bench-model","choices":[],"usage":{}}}"#,
                usage_json(tokens)
            ),
            spaced,
        ));
    }
    body.extend_from_slice(b"data: [DONE]\n\n");
    // Chunks of `per_chunk` events (the role chunk and [DONE] count as events).
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut seen = 0;
    let mut i = 0;
    while i + 1 < body.len() {
        if body[i] == b'\n' && body[i + 1] == b'\n' {
            seen += 1;
            if seen % per_chunk == 0 {
                chunks.push(&body[start..i + 2]);
                start = i + 2;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    if start < body.len() {
        chunks.push(&body[start..]);
    }
    let request =
        br#"{"model":"bench-model","messages":[{"role":"user","content":"hello"}],"stream":true}"#;
    let head = ResponseHead {
        status: 200,
        content_type: b"text/event-stream",
        content_encoding: b"",
    };
    let mut done = 0;
    while done < requests {
        let n = streams.min(requests - done);
        let mut open: Vec<StreamMeter> = (0..n)
            .map(|_| {
                let mut s = StreamMeter::start(b"POST", b"/v1/chat/completions", false);
                // As the glue does once it dropped the request's content-length.
                if s.may_edit_usage(usage, b"POST") {
                    s.edit_usage(usage, "workers".to_string());
                }
                s.on_request_body(&mut vm, &host, request, true);
                s.on_response_headers(&mut vm, &host, head, false);
                s
            })
            .collect();
        for (k, chunk) in chunks.iter().enumerate() {
            let end = k + 1 == chunks.len();
            for s in open.iter_mut() {
                // The edited chunk is what Envoy would send on: kept from being optimized away.
                std::hint::black_box(s.on_response_body(&mut vm, &host, chunk, end));
            }
        }
        for s in open.iter_mut() {
            s.on_log(&mut vm, &host);
        }
        done += n;
    }
}
