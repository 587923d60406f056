//! End to end: real Envoy (2 worker threads, so 2 VMs) running the built filter in front of
//! gpu-sim. Checks the metric contract in `/stats/prometheus` and the exact per-request
//! figures in the access log.
//!
//! Tolerances: gpu-sim never sends a token early (it sleeps until an absolute schedule), so a
//! measured TTFT is at least the configured one; the upper margins cover scheduling delay on
//! a loaded 2-core machine (other tests run alongside). Envoy's histogram sums carry up to
//! ~5 % quantization (two significant digits), hence the wider band for means read from
//! Prometheus; exact values are read from the access log.

use host_tests::envoy::{Envoy, EnvoyOptions};
use host_tests::prom::Scrape;
use host_tests::sim::client::{request_blocking, Recorded};
use host_tests::sim::{self, SimConfig, SimHandle};
use std::time::Duration;

const MS: f64 = 1000.0; // µs per ms
const WAIT: Duration = Duration::from_secs(15);

fn start(cfg: SimConfig) -> (SimHandle, Envoy) {
    let sim = sim::spawn(cfg).expect("gpu-sim starts");
    let envoy = Envoy::start(&EnvoyOptions::new(sim.addr)).expect("Envoy starts");
    (sim, envoy)
}

fn post(envoy: &Envoy, path: &str, id: &str, headers: &[(&str, &str)], body: &str) -> Recorded {
    let mut h = vec![("content-type", "application/json"), ("x-request-id", id)];
    h.extend_from_slice(headers);
    request_blocking(envoy.listener, "POST", path, &h, body.to_string()).expect("request")
}

fn chat_body(model: &str, stream: &str) -> String {
    format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"hello there gpu"}}],{stream}}}"#
    )
}

/// What the client saw of one stream: TTFT (µs from just before sending to the first event
/// with a token) and the mean ITL by the filter's rule (the span from the first to the last
/// token event over the ITL samples).
fn client_ttft_itl(r: &Recorded, itl_samples: u64) -> (u64, f64) {
    let token_times: Vec<Duration> = r
        .events()
        .into_iter()
        .filter(|(_, data)| carries_token(data))
        .map(|(at, _)| at)
        .collect();
    let (first, last) = match (token_times.first(), token_times.last()) {
        (Some(f), Some(l)) => (*f, *l),
        _ => panic!("no token event in {:?}", r.events()),
    };
    let span_us = (last - first).as_micros() as f64;
    (first.as_micros() as u64, span_us / itl_samples as f64)
}

/// An OpenAI chunk with generated text (a role-only or usage-only chunk carries none).
fn carries_token(data: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
        return false;
    };
    let choice = &v["choices"][0];
    [&choice["delta"]["content"], &choice["text"]]
        .iter()
        .any(|t| t.as_str().is_some_and(|s| !s.is_empty()))
}

fn field_u64(entry: &serde_json::Value, key: &str) -> Option<u64> {
    entry[key].as_str().and_then(|s| s.parse().ok())
}

fn mean(scrape: &Scrape, metric: &str, model: &str) -> f64 {
    let l = [("model", model)];
    scrape.sum(&format!("{metric}_sum"), &l) / scrape.sum(&format!("{metric}_count"), &l)
}

struct StreamCase {
    model: &'static str,
    path: &'static str,
    stream: &'static str,
    tokens_per_chunk: u32,
    /// ITL samples per request: output tokens minus the first event's tokens, or events - 1
    /// when only a final usage reveals several tokens per event.
    itl_samples: u64,
    /// The mean ITL the filter can see (see `expected_itl_ms`).
    itl_ms: f64,
    input_tokens: Option<u64>,
}

/// gpu-sim sends chunk j (k tokens each, the last one fewer) at TTFT + j·k·ITL. By the ITL
/// rule the first event's k tokens get no sample, so the mean over the stream is the span of
/// the later chunks over the tokens they carry: exactly ITL when k = 1 or k divides N, a bit
/// more otherwise (16 tokens in chunks of 3: 5·60 ms / 13 = 23.1 ms). Without per-event counts
/// each event counts as one token: the mean is the chunk gap k·ITL.
fn expected_itl_ms(tokens: u32, k: u32, itl_ms: f64, per_event_counts: bool) -> f64 {
    let chunks = tokens.div_ceil(k);
    let span = f64::from(chunks - 1) * f64::from(k) * itl_ms;
    if per_event_counts {
        span / f64::from(tokens - k)
    } else {
        span / f64::from(chunks - 1)
    }
}

#[test]
fn streams_report_ttft_itl_and_tokens() {
    let (_sim, envoy) = start(SimConfig::default()); // TTFT 150 ms, ITL 20 ms, 16 tokens
    let cases = [
        StreamCase {
            model: "chat-k1",
            path: "/v1/chat/completions",
            stream: r#""stream":true"#,
            tokens_per_chunk: 1,
            itl_samples: 15,
            itl_ms: expected_itl_ms(16, 1, 20.0, true),
            input_tokens: Some(3), // the usage the filter asks for (usage_stats: final)
        },
        StreamCase {
            model: "chat-k1-usage",
            path: "/v1/chat/completions",
            stream: r#""stream":true,"stream_options":{"include_usage":true}"#,
            tokens_per_chunk: 1,
            itl_samples: 15,
            itl_ms: expected_itl_ms(16, 1, 20.0, true),
            input_tokens: Some(3),
        },
        StreamCase {
            model: "chat-k3-continuous",
            path: "/v1/chat/completions",
            stream: r#""stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}"#,
            tokens_per_chunk: 3,
            itl_samples: 13,
            itl_ms: expected_itl_ms(16, 3, 20.0, true),
            input_tokens: Some(3),
        },
        StreamCase {
            model: "chat-k3-final-usage",
            path: "/v1/chat/completions",
            stream: r#""stream":true,"stream_options":{"include_usage":true}"#,
            tokens_per_chunk: 3,
            itl_samples: 5,
            itl_ms: expected_itl_ms(16, 3, 20.0, false),
            input_tokens: Some(3),
        },
        StreamCase {
            model: "cmpl-k1",
            path: "/v1/completions",
            stream: r#""stream":true"#,
            tokens_per_chunk: 1,
            itl_samples: 15,
            itl_ms: expected_itl_ms(16, 1, 20.0, true),
            input_tokens: Some(3), // likewise
        },
        StreamCase {
            model: "cmpl-k3-continuous",
            path: "/v1/completions",
            stream: r#""stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}"#,
            tokens_per_chunk: 3,
            itl_samples: 13,
            itl_ms: expected_itl_ms(16, 3, 20.0, true),
            input_tokens: Some(3),
        },
    ];
    const PER_CASE: usize = 2; // in parallel, so both Envoy worker threads serve
                               // What the client saw of each request, by request id.
    let seen: std::collections::BTreeMap<String, Recorded> = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for case in &cases {
            for i in 0..PER_CASE {
                let envoy = &envoy;
                handles.push(scope.spawn(move || {
                    let body = if case.path.ends_with("chat/completions") {
                        chat_body(case.model, case.stream)
                    } else {
                        format!(
                            r#"{{"model":"{}","prompt":"hello there gpu",{}}}"#,
                            case.model, case.stream
                        )
                    };
                    let k = case.tokens_per_chunk.to_string();
                    let id = format!("{}-{i}", case.model);
                    let r = post(
                        envoy,
                        case.path,
                        &id,
                        &[("x-sim-tokens-per-chunk", &k)],
                        &body,
                    );
                    assert_eq!(r.status, 200, "{id}");
                    assert!(r.body_error.is_none(), "{id}: {:?}", r.body_error);
                    (id, r)
                }));
            }
        }
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let total = (cases.len() * PER_CASE) as f64;
    let scrape = envoy
        .prometheus_when(WAIT, |s| {
            s.sum("llm_inter_token_latency_microseconds_count", &[])
                >= cases.iter().map(|c| c.itl_samples as f64).sum::<f64>() * PER_CASE as f64
                && s.sum("llm_requests_total", &[]) >= total
                // Not between one request's counter update and its inflight -1 (below).
                && s.sum("llm_inflight_requests", &[]) == 0.0
        })
        .unwrap();
    for case in &cases {
        let m = case.model;
        let endpoint = if case.path.ends_with("chat/completions") {
            "chat_completions"
        } else {
            "completions"
        };
        let n = PER_CASE as f64;
        let ok = [
            ("model", m),
            ("endpoint", endpoint),
            ("request_type", "stream"),
            ("status", "success"),
            ("error_type", ""),
        ];
        assert_eq!(
            scrape.value("llm_requests_total", &ok),
            Some(n),
            "{m}: requests_total"
        );
        assert_eq!(
            scrape.value("llm_output_tokens_total", &[("model", m)]),
            Some(16.0 * n),
            "{m}: output tokens"
        );
        assert_eq!(
            scrape.value(
                "llm_time_to_first_token_microseconds_count",
                &[("model", m)]
            ),
            Some(n),
            "{m}"
        );
        assert_eq!(
            scrape.value(
                "llm_inter_token_latency_microseconds_count",
                &[("model", m)]
            ),
            Some(case.itl_samples as f64 * n),
            "{m}: ITL samples"
        );
        assert_eq!(
            scrape.value("llm_output_sequence_tokens_count", &[("model", m)]),
            Some(n),
            "{m}"
        );
        assert_eq!(
            scrape.value("llm_inflight_requests", &[("model", m)]),
            Some(0.0),
            "{m}"
        );
        match case.input_tokens {
            Some(_) => assert_eq!(
                scrape.value("llm_input_sequence_tokens_count", &[("model", m)]),
                Some(n),
                "{m}"
            ),
            None => assert_eq!(
                scrape.value("llm_input_sequence_tokens_count", &[("model", m)]),
                None,
                "{m}"
            ),
        }
        // The filter against what the client observed for the same requests: TTFT at least
        // gpu-sim's (its first token is sent 150 ms after the request arrived, never earlier)
        // and at most the client's (the client started its clock before sending, and saw the
        // token after Envoy did); ITL over the same token events as the client saw them.
        let observed: Vec<(u64, f64)> = (0..PER_CASE)
            .map(|i| client_ttft_itl(&seen[&format!("{m}-{i}")], case.itl_samples))
            .collect();
        let client_ttft_mean =
            observed.iter().map(|(t, _)| *t as f64).sum::<f64>() / PER_CASE as f64;
        let client_itl_mean = observed.iter().map(|(_, i)| *i).sum::<f64>() / PER_CASE as f64;
        // Envoy's histograms keep two significant digits: sums read back within ~5 %.
        let ttft_mean = mean(&scrape, "llm_time_to_first_token_microseconds", m);
        assert!(
            (150.0 * MS * 0.95..=client_ttft_mean * 1.05).contains(&ttft_mean),
            "{m}: TTFT mean {ttft_mean} µs, client saw {client_ttft_mean} µs"
        );
        let itl_mean = mean(&scrape, "llm_inter_token_latency_microseconds", m);
        assert!(
            (itl_mean - client_itl_mean).abs() <= client_itl_mean * 0.05 + 3.0 * MS,
            "{m}: ITL mean {itl_mean} µs, client saw {client_itl_mean} µs (gpu-sim's schedule: {} ms)",
            case.itl_ms
        );

        for (i, (client_ttft, client_itl)) in observed.iter().enumerate() {
            let e = envoy.access_log_entry(&format!("{m}-{i}"), WAIT).unwrap();
            let ttft = field_u64(&e, "ttft_us").unwrap_or_else(|| panic!("{m}: no ttft_us in {e}"));
            assert!(
                (150_000..=client_ttft + 1_000).contains(&ttft),
                "{m}-{i}: ttft_us {ttft}, client saw {client_ttft} µs"
            );
            let itl = field_u64(&e, "itl_avg_us").unwrap() as f64;
            // A late delivery to the client on a loaded machine shifts its mean over the few
            // gaps of a 3-token-chunk stream: the same bound as the Prometheus mean's.
            assert!(
                (itl - client_itl).abs() <= client_itl * 0.05 + 3.0 * MS,
                "{m}-{i}: itl_avg_us {itl}, client saw {client_itl} µs"
            );
            eprintln!("{m}-{i}: ttft_us {ttft} itl_avg_us {itl} (client: TTFT {client_ttft} µs, ITL {client_itl:.0} µs; prometheus means: TTFT {ttft_mean:.0} µs, ITL {itl_mean:.0} µs)");
            assert_eq!(field_u64(&e, "output_tokens"), Some(16), "{m}-{i}: {e}");
            assert_eq!(
                field_u64(&e, "input_tokens"),
                case.input_tokens,
                "{m}-{i}: {e}"
            );
            assert!(e["error_type"].is_null(), "{m}-{i}: {e}");
        }
    }
}

#[test]
fn unary_requests_time_the_whole_answer() {
    let (_sim, envoy) = start(SimConfig::default());
    let chat = post(
        &envoy,
        "/v1/chat/completions",
        "u-chat",
        &[],
        &chat_body("u-chat", r#""stream":false"#),
    );
    let client_us = |r: &Recorded| r.frames.last().map_or(0, |(at, _)| at.as_micros() as u64);
    let client_seen = [("u-chat", client_us(&chat))];
    assert_eq!(chat.status, 200);
    let cmpl = post(
        &envoy,
        "/v1/completions",
        "u-cmpl",
        &[],
        r#"{"model":"u-cmpl","prompt":"one two three four"}"#,
    );
    assert_eq!(cmpl.status, 200);
    let client_seen = [client_seen[0], ("u-cmpl", client_us(&cmpl))];

    let scrape = envoy
        .prometheus_when(WAIT, |s| {
            s.sum("llm_time_to_first_token_microseconds_count", &[]) >= 2.0
        })
        .unwrap();
    for (model, endpoint, input) in [
        ("u-chat", "chat_completions", 3),
        ("u-cmpl", "completions", 4),
    ] {
        let ok = [
            ("model", model),
            ("endpoint", endpoint),
            ("request_type", "unary"),
            ("status", "success"),
        ];
        assert_eq!(
            scrape.value("llm_requests_total", &ok),
            Some(1.0),
            "{model}"
        );
        assert_eq!(
            scrape.value("llm_output_tokens_total", &[("model", model)]),
            Some(16.0)
        );
        assert_eq!(
            scrape.value(
                "llm_inter_token_latency_microseconds_count",
                &[("model", model)]
            ),
            None
        );
        // TTFT = the whole answer: at least gpu-sim's 150 ms + 15 × 20 ms, at most what the
        // client waited for the whole body.
        let e = envoy.access_log_entry(model, WAIT).unwrap();
        let ttft = field_u64(&e, "ttft_us").unwrap();
        let client = client_seen.iter().find(|(m, _)| *m == model).unwrap().1;
        assert!(
            (450_000..=client + 1_000).contains(&ttft),
            "{model}: ttft_us {ttft}, client saw {client} µs"
        );
        assert_eq!(field_u64(&e, "output_tokens"), Some(16));
        assert_eq!(field_u64(&e, "input_tokens"), Some(input));
        assert_eq!(
            scrape.value(
                "llm_request_duration_microseconds_count",
                &[("model", model), ("request_type", "unary")]
            ),
            Some(1.0)
        );
    }
}

/// Reads a stream until the first content token, then drops the connection.
fn disconnect_after_first_token(envoy: &Envoy, id: &str, body: &str) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(envoy.listener).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-request-id: {id}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"content\":\" t") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended before the first token");
        seen.extend_from_slice(&buf[..n]);
    }
    drop(s);
}

#[test]
fn failures_land_in_their_error_type() {
    // A name enters the model cap only once a worker answered it 2xx; the models answered only
    // with errors are pinned, so each case keeps a series of its own (the others are admitted
    // by their 200).
    let sim = sim::spawn(SimConfig::default()).expect("gpu-sim starts");
    let envoy = Envoy::start(&EnvoyOptions {
        plugin_config: r#"{"models":["e-500","e-501","e-429","e-404"]}"#.into(),
        ..EnvoyOptions::new(sim.addr)
    })
    .expect("Envoy starts");
    let stream = r#""stream":true"#;
    type Headers = &'static [(&'static str, &'static str)];
    let cases: [(&str, Headers, u16, &str); 7] = [
        ("e-500", &[("x-sim-fail-status", "500")], 500, "internal"),
        (
            "e-501",
            &[("x-sim-fail-status", "501")],
            501,
            "not_implemented",
        ),
        ("e-429", &[("x-sim-fail-status", "429")], 429, "overload"),
        ("e-404", &[("x-sim-fail-status", "404")], 404, "not_found"),
        (
            "e-event",
            &[("x-sim-error-after", "3")],
            200,
            "backend_error",
        ),
        (
            "e-reset",
            &[("x-sim-reset-after", "3")],
            200,
            "truncated_stream",
        ),
        (
            "e-garbage",
            &[("x-sim-unary-garbage", "1")],
            200,
            "bad_response",
        ),
    ];
    for (model, headers, status, _) in cases {
        let s = if model == "e-garbage" {
            r#""stream":false"#
        } else {
            stream
        };
        let r = post(
            &envoy,
            "/v1/chat/completions",
            model,
            headers,
            &chat_body(model, s),
        );
        assert_eq!(r.status, status, "{model}");
        if model == "e-reset" {
            assert!(r.body_error.is_some(), "the client must see the reset too");
        }
    }
    disconnect_after_first_token(&envoy, "e-cancel", &chat_body("e-cancel", stream));

    // Both conditions: a scrape can land between one request's counter update and its
    // inflight -1 (the worker thread makes them one host call after the other while the
    // admin thread reads). A gauge that never returns to 0 still fails below, after WAIT.
    let scrape = envoy
        .prometheus_when(WAIT, |s| {
            s.sum("llm_requests_total", &[]) >= 8.0
                && s.sum("llm_inflight_requests", &[]) == 0.0
                && s.sum("llm_queued_requests", &[]) == 0.0
        })
        .unwrap();
    let mut all = cases
        .iter()
        .map(|(m, _, _, e)| (*m, *e))
        .collect::<Vec<_>>();
    all.push(("e-cancel", "cancelled"));
    for (model, error_type) in all {
        let request_type = if model == "e-garbage" {
            "unary"
        } else {
            "stream"
        };
        let want = [
            ("model", model),
            ("endpoint", "chat_completions"),
            ("request_type", request_type),
            ("status", "error"),
            ("error_type", error_type),
        ];
        assert_eq!(
            scrape.value("llm_requests_total", &want),
            Some(1.0),
            "{model} should be {error_type}; series: {:?}",
            scrape
                .find("llm_requests_total", &[("model", model)])
                .collect::<Vec<_>>()
        );
        assert_eq!(
            scrape.value("llm_inflight_requests", &[("model", model)]),
            Some(0.0),
            "{model}"
        );
        assert_eq!(
            scrape.value("llm_queued_requests", &[("model", model)]),
            Some(0.0),
            "{model}"
        );
    }
    // Tokens that did stream before a failure still count.
    assert_eq!(
        scrape.value("llm_output_tokens_total", &[("model", "e-event")]),
        Some(3.0)
    );
    assert_eq!(
        scrape.value("llm_output_tokens_total", &[("model", "e-reset")]),
        Some(3.0)
    );
}

#[test]
fn worker_down_is_unavailable() {
    // Bind and drop: a port with nothing listening.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let envoy = Envoy::start(&EnvoyOptions::new(dead)).unwrap();
    let r = post(
        &envoy,
        "/v1/chat/completions",
        "down",
        &[],
        &chat_body("down", r#""stream":true"#),
    );
    assert_eq!(r.status, 503);
    let scrape = envoy
        .prometheus_when(WAIT, |s| s.sum("llm_requests_total", &[]) >= 1.0)
        .unwrap();
    // No worker ever accepted `down`: it is counted under `other`, outside the model cap.
    let want = [
        ("model", "other"),
        ("status", "error"),
        ("error_type", "unavailable"),
    ];
    assert_eq!(
        scrape.value("llm_requests_total", &want),
        Some(1.0),
        "{:?}",
        scrape.find("llm_requests_total", &[]).collect::<Vec<_>>()
    );
}

/// `queued_requests` through Envoy: 1 while the worker holds the first token back (gpu-sim
/// `x-sim-ttft-ms`), seen by a scrape made before the client had that token; 0 once it
/// streamed.
#[test]
fn a_request_waiting_for_its_first_token_is_queued() {
    let (_sim, envoy) = start(SimConfig::default());
    let listener = envoy.listener;
    let sent = std::time::Instant::now();
    let client = std::thread::spawn(move || {
        let h = [
            ("content-type", "application/json"),
            ("x-request-id", "queued"),
            ("x-sim-ttft-ms", "2500"),
        ];
        let body = chat_body("q-model", r#""stream":true"#);
        request_blocking(listener, "POST", "/v1/chat/completions", &h, body).expect("request")
    });
    let scrape = envoy
        .prometheus_when(WAIT, |s| {
            s.value("llm_queued_requests", &[("model", "q-model")]) == Some(1.0)
                || s.value("llm_queued_requests", &[("model", "other")]) == Some(1.0)
        })
        .expect("a scrape showing the request queued");
    let seen_queued = sent.elapsed();
    let r = client.join().unwrap();
    let (first_token, _) = r
        .events()
        .into_iter()
        .find(|(_, d)| d.contains("\"content\":\"") && !d.contains("\"content\":\"\""))
        .expect("a token");
    assert!(
        seen_queued < first_token,
        "the queued scrape ended {seen_queued:?} after sending, the client's first token came at {first_token:?}"
    );
    assert_eq!(scrape.sum("llm_inflight_requests", &[]), 1.0);
    envoy
        .prometheus_when(WAIT, |s| {
            s.sum("llm_queued_requests", &[]) == 0.0
                && s.sum("llm_inflight_requests", &[]) == 0.0
                && s.sum("llm_requests_total", &[]) == 1.0
        })
        .expect("queued and inflight back to 0");
}
