//! The whole `StreamMeter` (one VM, several interleaved streams) driven by arbitrary callbacks
//! in Envoy's order, with arbitrary bodies, statuses, content types and clock steps.
//! Invariants: every metric name is well formed with safe label values; at most `max_models`
//! model values (plus `other`); counters never go down; when every stream has ended each
//! in-flight gauge is back to 0 and `requests_total` counts each stream once; no callback
//! makes an unbounded number of host calls.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use llm_pulse_core::config::Config;
use llm_pulse_core::host::fake::FakeHost;
use llm_pulse_core::host::MetricKind;
use llm_pulse_core::meter::{ResponseHead, StreamMeter, VmMeter};
use llm_pulse_fuzz::parse_stat_name;
use std::collections::BTreeSet;

#[derive(Arbitrary, Debug)]
enum Op {
    Start {
        path: u8,
        encoded: bool,
    },
    RequestBody {
        stream: u8,
        chunk: Vec<u8>,
        end: bool,
    },
    RequestEnd {
        stream: u8,
    },
    ResponseHeaders {
        stream: u8,
        status: u16,
        content_type: u8,
        encoding: u8,
        end: bool,
    },
    ResponseBody {
        stream: u8,
        chunk: Vec<u8>,
        end: bool,
    },
    Advance {
        us: u32,
        back: bool,
    },
    Log {
        stream: u8,
        status: u16,
        flags: u64,
        details: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    max_models: u8,
    ops: Vec<Op>,
}

const PATHS: &[&[u8]] = &[
    b"/v1/chat/completions",
    b"/v1/completions",
    b"/v1/responses",
    b"/v1/embeddings",
    b"/generate",
    b"/v1/models",
    b"/openai/v1/chat/completions?x=1",
];
const CONTENT_TYPES: &[&[u8]] = &[
    b"text/event-stream",
    b"application/json",
    b"text/event-stream; charset=utf-8",
    b"APPLICATION/JSON ; charset=x",
    b"text/plain",
    b"",
];
const ENCODINGS: &[&[u8]] = &[b"", b"identity", b"gzip", b"br"];
const DETAILS: &[&str] = &[
    "",
    "via_upstream",
    "upstream_reset_before_response_started{remote_reset}",
    "response_timeout",
];

#[derive(Default)]
struct Stream {
    meter: Option<StreamMeter>,
    response_started: bool,
    response_ended: bool,
    request_ended: bool,
}

fn pick<T: Copy>(list: &[T], i: u8) -> T {
    list[usize::from(i) % list.len()]
}

fuzz_target!(|input: Input| {
    let max_models = u32::from(input.max_models % 4) + 1;
    let config = Config::parse(format!(r#"{{"max_models":{max_models}}}"#).as_bytes(), None)
        .expect("config");
    let host = FakeHost::default();
    host.clock_ns.set(1_700_000_000_000_000_000);
    let mut vm = VmMeter::new(&config);
    let mut streams: Vec<Stream> = Vec::new();
    let mut logged = 0i64;

    for op in input.ops.into_iter().take(64) {
        host.host_calls.set(0);
        match op {
            Op::Start { path, encoded } => {
                if streams.len() < 6 {
                    streams.push(Stream {
                        meter: Some(StreamMeter::start(b"POST", pick(PATHS, path), encoded)),
                        ..Stream::default()
                    });
                }
            }
            Op::Advance { us, back } => {
                let now = host.clock_ns.get();
                let d = u64::from(us) * 1000;
                host.clock_ns
                    .set(if back { now.saturating_sub(d) } else { now + d });
            }
            Op::RequestBody { stream, chunk, end } => {
                let n = streams.len().max(1);
                if let Some(s) = streams.get_mut(usize::from(stream) % n) {
                    if let Some(m) = s.meter.as_mut() {
                        if !s.request_ended {
                            m.on_request_body(&mut vm, &host, &chunk, end);
                            s.request_ended = end;
                        }
                    }
                }
            }
            Op::RequestEnd { stream } => {
                let n = streams.len().max(1);
                if let Some(s) = streams.get_mut(usize::from(stream) % n) {
                    if let Some(m) = s.meter.as_mut() {
                        m.on_request_end(&mut vm, &host);
                    }
                }
            }
            Op::ResponseHeaders {
                stream,
                status,
                content_type,
                encoding,
                end,
            } => {
                let n = streams.len().max(1);
                if let Some(s) = streams.get_mut(usize::from(stream) % n) {
                    if let (Some(m), false) = (s.meter.as_mut(), s.response_started) {
                        let head = ResponseHead {
                            status: u32::from(status % 700),
                            content_type: pick(CONTENT_TYPES, content_type),
                            content_encoding: pick(ENCODINGS, encoding),
                        };
                        m.on_response_headers(&mut vm, &host, head, end);
                        s.response_started = true;
                        s.response_ended = end;
                    }
                }
            }
            Op::ResponseBody { stream, chunk, end } => {
                let n = streams.len().max(1);
                if let Some(s) = streams.get_mut(usize::from(stream) % n) {
                    if let (Some(m), true, false) =
                        (s.meter.as_mut(), s.response_started, s.response_ended)
                    {
                        m.on_response_body(&mut vm, &host, &chunk, end);
                        s.response_ended = end;
                    }
                }
            }
            Op::Log {
                stream,
                status,
                flags,
                details,
            } => {
                let n = streams.len().max(1);
                if let Some(s) = streams.get_mut(usize::from(stream) % n) {
                    if let Some(mut m) = s.meter.take() {
                        host.envoy_end.replace(llm_pulse_core::host::EnvoyEnd {
                            status: u32::from(status % 700),
                            flags,
                            details: pick(DETAILS, details).to_string(),
                        });
                        m.on_log(&mut vm, &host);
                        logged += 1;
                    }
                }
            }
        }
    }
    // Envoy logs every stream in the end.
    for s in &mut streams {
        if let Some(mut m) = s.meter.take() {
            host.envoy_end.take();
            m.on_log(&mut vm, &host);
            logged += 1;
        }
    }

    let mut models = BTreeSet::new();
    for (kind, name) in host.names.borrow().iter() {
        let (_, labels) = parse_stat_name("llm", name);
        models.insert(labels[0].1.to_string());
        // The meter sets no gauge: every sample it recorded went to a histogram.
        if host.histograms.borrow().contains_key(name) {
            assert_eq!(
                *kind,
                MetricKind::Histogram,
                "record on non-histogram {name}"
            );
        }
    }
    models.remove("other");
    assert!(
        models.len() <= max_models as usize,
        "{} models over a cap of {max_models}",
        models.len()
    );
    let mut requests = 0;
    for (name, v) in host.counters.borrow().iter() {
        let (suffix, _) = parse_stat_name("llm", name);
        match suffix {
            "inflight_requests" => assert_eq!(*v, 0, "{name} left at {v}"),
            "requests_total" => requests += v,
            _ => assert!(*v >= 0, "{name} = {v}"),
        }
    }
    assert_eq!(requests, logged, "requests_total vs streams ended");
});
