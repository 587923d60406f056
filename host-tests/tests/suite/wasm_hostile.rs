//! Hostile input on the built `.wasm` (the artifact Envoy runs), in the wasmtime host: invalid
//! JSON and UTF-8, SSE split at every byte, 10 MiB lines and prompts, compressed bodies, error
//! events, resets, disconnects and model names built to break labels.
//!
//! Every case checks the same three promises (docs/design.md, "Untrusted input"): the bytes
//! leaving the filter are the bytes that came in, in both directions, and nothing paused; the VM
//! never traps; every `inflight_requests` and `queued_requests` gauge is back to 0. Every metric
//! name stays well formed.

use host_tests::artifacts::llm_pulse_host;
use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Result};
use wasm_host::{Host, StreamRecord};

const CHAT: &str = "/v1/chat/completions";
const SSE: &str = "text/event-stream";
const JSON: &str = "application/json";
const MIB: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum End {
    /// The response ends normally.
    Complete,
    /// The upstream resets the stream mid-response.
    Reset,
    /// The client goes away mid-response.
    Disconnect,
}

struct Exchange<'a> {
    path: &'a str,
    request: Vec<&'a [u8]>,
    status: u16,
    response_headers: Vec<(&'a str, &'a str)>,
    response: Vec<&'a [u8]>,
    end: End,
    /// Test-clock time before each response chunk.
    gap: Duration,
}

impl<'a> Exchange<'a> {
    fn new(request: &'a [u8], content_type: &'a str, response: Vec<&'a [u8]>) -> Self {
        Exchange {
            path: CHAT,
            request: vec![request],
            status: 200,
            response_headers: vec![("content-type", content_type)],
            response,
            end: End::Complete,
            gap: Duration::from_millis(5),
        }
    }
}

/// Runs one exchange on a fresh stream; checks byte identity and that nothing paused.
fn exchange(host: &mut Host, x: &Exchange<'_>) -> Result<StreamRecord> {
    let s = host.new_stream()?;
    host.send_request_headers(
        s,
        &[
            (":method", "POST"),
            (":path", x.path),
            (":authority", "llm"),
            (":scheme", "http"),
            ("content-type", "application/json"),
        ],
        false,
    )?;
    let n = x.request.len();
    for (i, c) in x.request.iter().enumerate() {
        host.send_request_body(s, c, i + 1 == n)?;
    }
    if n == 0 {
        host.send_request_body(s, b"", true)?;
    }
    host.advance(Duration::from_millis(20))?;
    let status = x.status.to_string();
    let mut headers = vec![(":status", status.as_str())];
    headers.extend(x.response_headers.iter().copied());
    host.send_response_headers(s, &headers, false)?;
    for c in &x.response {
        host.advance(x.gap)?;
        host.send_response_body(s, c, false)?;
    }
    match x.end {
        End::Complete => {
            host.send_response_body(s, b"", true)?;
            host.complete_stream(s)?;
        }
        End::Reset => host.reset_stream(s)?,
        End::Disconnect => host.disconnect(s)?,
    }
    let rec = host.stream(s)?;
    ensure!(rec.never_paused(), "a callback paused");
    ensure!(
        rec.request_body == x.request.concat(),
        "request bytes changed ({} in, {} out)",
        x.request.iter().map(|c| c.len()).sum::<usize>(),
        rec.request_body.len()
    );
    ensure!(
        rec.response_body == x.response.concat(),
        "response bytes changed ({} in, {} out)",
        x.response.iter().map(|c| c.len()).sum::<usize>(),
        rec.response_body.len()
    );
    Ok(rec)
}

const KEYS: &[&str] = &["model", "endpoint", "request_type", "status", "error_type"];
const BASES: &[&str] = &[
    "llm_requests_total",
    "llm_inflight_requests",
    "llm_queued_requests",
    "llm_output_tokens_total",
    "llm_time_to_first_token_microseconds",
    "llm_inter_token_latency_microseconds",
    "llm_request_duration_microseconds",
    "llm_input_sequence_tokens",
    "llm_output_sequence_tokens",
    "llm_cached_tokens",
    "llm_time_to_first_token_microseconds_total",
    "llm_inter_token_latency_microseconds_total",
    "llm_request_duration_microseconds_total",
    "llm_input_sequence_tokens_total",
    "llm_output_sequence_tokens_total",
];

fn assert_model_label_safe(v: &str) {
    assert!(!v.is_empty() && v.len() <= 128, "model label {v:?}");
    assert!(
        !v.chars().any(|c| c == ';' || c == '=' || c.is_control()),
        "unsafe model label {v:?}"
    );
}

/// No VM trapped, every in-flight gauge is 0, every metric name parses into the contract's
/// labels with safe values. Returns the model label values seen.
fn assert_clean(host: &Host) -> BTreeSet<String> {
    for vm in 0..host.vm_count() {
        assert_eq!(host.vm_failure(vm), None, "VM {vm} failed");
    }
    let mut models = BTreeSet::new();
    // Set at configure, not by traffic: `llm_build_info{version,commit}` (wasm_llm_pulse_smoke).
    for m in host
        .metrics()
        .into_iter()
        .filter(|m| m.base_name() != "llm_build_info")
    {
        let base = m.base_name();
        assert!(BASES.contains(&base), "unexpected metric {:?}", m.name);
        let labels = m.labels();
        assert!(!labels.is_empty(), "{:?} lost its labels", m.name);
        assert_eq!(labels[0].0, "model", "{:?}", m.name);
        for (k, v) in &labels {
            assert!(KEYS.contains(&k.as_str()), "label {k:?} in {:?}", m.name);
            if k == "model" {
                assert_model_label_safe(v);
                models.insert(v.clone());
            } else {
                assert!(
                    v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                    "{k}={v:?} in {:?}",
                    m.name
                );
            }
        }
        if base == "llm_requests_total" {
            let keys: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, KEYS, "{:?}", m.name);
        }
        if base == "llm_inflight_requests" || base == "llm_queued_requests" {
            assert_eq!(m.gauge(), Some(0), "{:?} did not return to 0", m.name);
        }
    }
    models
}

fn llm() -> Result<Host> {
    llm_pulse_host()?.plugin_config("{}").start()
}

/// `requests_total` summed over the series whose labels include all of `want`.
fn requests(host: &Host, want: &[(&str, &str)]) -> u64 {
    host.metrics_named("llm_requests_total")
        .iter()
        .filter(|m| {
            let l = m.labels();
            want.iter()
                .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .filter_map(|m| m.counter())
        .sum()
}

/// Samples of a histogram summed over every series of its base name.
fn samples(host: &Host, base: &str) -> usize {
    host.metrics_named(base)
        .iter()
        .filter_map(|m| m.histogram().map(<[u64]>::len))
        .sum()
}

fn chat_event(text: &str) -> String {
    format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n")
}

fn chat_stream(tokens: usize) -> String {
    let mut body = String::from(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
    );
    for i in 0..tokens {
        body.push_str(&chat_event(&format!("t{i}")));
    }
    body.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":4}}\r\n\r\n: keep-alive\n\ndata: [DONE]\n\n");
    body
}

const STREAM_REQ: &[u8] = br#"{"model":"m","stream":true}"#;

#[test]
fn invalid_json_and_utf8_in_requests_and_responses() -> Result<()> {
    let mut host = llm()?;
    let requests_bodies: &[&[u8]] = &[
        br#"{"model": "m", "stream": tr"#,
        b"{\"model\":\"\xff\xfe\x80bad\",\"stream\":true}",
        b"\xff\xfe\xfd\x00\x01{{{{[[[[",
        br#"{"model":"m","messages":[{"content":"\ud800 unpaired"}],"stream":true}"#,
        br#"["model","m"]"#,
        b"",
    ];
    let stream = chat_stream(3);
    for req in requests_bodies {
        exchange(&mut host, &Exchange::new(req, SSE, vec![stream.as_bytes()]))?;
    }
    let responses: &[(&str, &[u8])] = &[
        (JSON, br#"{"id":"c","choices":[{"message":{"content":"x"}}],"usage":{"completion_tokens":"#),
        (JSON, b"\xff\xfe not json at all \x00"),
        (JSON, b"{\"choices\":[{\"message\":{\"content\":\"\xff\xfe\xc0\xaf\"}}],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1}}"),
        (SSE, b"data: {not json}\n\ndata: \xff\xfe\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"\xc3\x28\"}}]}\n\ndata: [DONE]\n\n"),
        (SSE, b"\xff\xfe\xfd\r\r\n\n\0\0data\0: x\n\n"),
    ];
    for (ct, body) in responses {
        exchange(&mut host, &Exchange::new(STREAM_REQ, ct, vec![body]))?;
    }
    assert_clean(&host);
    // Unparseable answers are counted, not guessed at: two unary bodies and the stream whose
    // events do not parse (it ended with [DONE]); the one without [DONE] is truncated.
    assert_eq!(requests(&host, &[("error_type", "bad_response")]), 3);
    assert_eq!(requests(&host, &[("error_type", "truncated_stream")]), 1);
    // The six odd requests were answered by a good stream; the unary body with invalid UTF-8
    // inside a string is still JSON the scanner reads.
    assert_eq!(requests(&host, &[("status", "success")]), 6 + 1);
    Ok(())
}

#[test]
fn sse_split_at_every_byte_gives_the_same_metrics() -> Result<()> {
    let body = chat_stream(4);
    let bytes = body.as_bytes();
    let mut host = llm()?;
    let mut streams = 0;
    for i in 0..=bytes.len() {
        let x = Exchange::new(STREAM_REQ, SSE, vec![&bytes[..i], &bytes[i..]]);
        exchange(&mut host, &x)?;
        streams += 1;
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    let mut x = Exchange::new(STREAM_REQ, SSE, singles);
    x.gap = Duration::from_micros(10);
    exchange(&mut host, &x)?;
    streams += 1;
    assert_clean(&host);
    let ok = [("model", "m"), ("status", "success")];
    assert_eq!(requests(&host, &ok), streams);
    assert_eq!(
        host.counter("llm_output_tokens_total.model=.=m;.;"),
        Some(4 * streams)
    );
    assert_eq!(
        samples(&host, "llm_time_to_first_token_microseconds"),
        streams as usize
    );
    assert_eq!(
        samples(&host, "llm_inter_token_latency_microseconds"),
        3 * streams as usize
    );
    Ok(())
}

#[test]
fn ten_mib_lines_and_a_ten_mib_prompt() -> Result<()> {
    let mut host = llm()?;
    let memory_before = host.memory_size(0)?;

    // A 10 MiB prompt, the model after it: found, and the VM's memory does not follow the body.
    let prompt = "p".repeat(10 * MIB);
    let request = format!(
        r#"{{"messages":[{{"role":"user","content":"{prompt}"}}],"model":"big","stream":true}}"#
    );
    let chunks: Vec<&[u8]> = request.as_bytes().chunks(64 * 1024).collect();
    let stream = chat_stream(2);
    let mut x = Exchange::new(b"", SSE, vec![stream.as_bytes()]);
    x.request = chunks;
    exchange(&mut host, &x)?;
    assert_eq!(
        requests(&host, &[("model", "big"), ("status", "success")]),
        1
    );

    // One SSE event whose data line is 10 MiB: one token, in 64 KiB chunks.
    let line = format!(
        "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}]}}\n\ndata: [DONE]\n\n",
        "x".repeat(10 * MIB)
    );
    let chunks: Vec<&[u8]> = line.as_bytes().chunks(64 * 1024).collect();
    let mut x = Exchange::new(STREAM_REQ, SSE, chunks);
    x.gap = Duration::from_micros(1);
    exchange(&mut host, &x)?;

    // 10 MiB with no line ending at all, then the stream ends: no event, a truncated stream.
    let endless = vec![b'z'; 10 * MIB];
    let chunks: Vec<&[u8]> = endless.chunks(64 * 1024).collect();
    let mut x = Exchange::new(STREAM_REQ, SSE, chunks);
    x.gap = Duration::from_micros(1);
    exchange(&mut host, &x)?;

    // A 10 MiB unary answer.
    let unary = format!(
        r#"{{"choices":[{{"message":{{"content":"{}"}}}}],"usage":{{"prompt_tokens":3,"completion_tokens":7}}}}"#,
        "y".repeat(10 * MIB)
    );
    let chunks: Vec<&[u8]> = unary.as_bytes().chunks(64 * 1024).collect();
    let mut x = Exchange::new(br#"{"model":"m"}"#, JSON, chunks);
    x.gap = Duration::from_micros(1);
    exchange(&mut host, &x)?;

    assert_clean(&host);
    assert_eq!(
        host.counter("llm_output_tokens_total.model=.=m;.;"),
        Some(1 + 7)
    );
    assert_eq!(requests(&host, &[("error_type", "truncated_stream")]), 1);
    let grown = host.memory_size(0)?.saturating_sub(memory_before);
    assert!(
        grown < 4 * MIB,
        "VM memory grew by {grown} bytes over 40 MiB of bodies"
    );
    Ok(())
}

#[test]
fn compressed_responses_pass_untouched_timed_but_not_parsed() -> Result<()> {
    let mut host = llm()?;
    // A gzip member header and bytes that would read as tokens if they were parsed.
    let mut gzip = vec![0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03];
    gzip.extend_from_slice(chat_stream(3).as_bytes());
    gzip.extend((0..=255u8).cycle().take(4096));
    let br = chat_stream(5);
    for (encoding, ct, body) in [
        ("gzip", SSE, &gzip[..]),
        ("br", SSE, br.as_bytes()),
        ("gzip", JSON, &gzip[..]),
        ("GZIP, br", SSE, br.as_bytes()),
    ] {
        let chunks: Vec<&[u8]> = body.chunks(97).collect();
        let mut x = Exchange::new(STREAM_REQ, ct, chunks);
        x.response_headers.push(("content-encoding", encoding));
        exchange(&mut host, &x)?;
    }
    assert_clean(&host);
    // Timed (duration recorded, counted) but no token figures made up from encoded bytes.
    assert_eq!(samples(&host, "llm_request_duration_microseconds"), 4);
    assert_eq!(requests(&host, &[("model", "m"), ("status", "success")]), 4);
    for base in [
        "llm_time_to_first_token_microseconds",
        "llm_inter_token_latency_microseconds",
        "llm_output_sequence_tokens",
        "llm_input_sequence_tokens",
    ] {
        assert_eq!(samples(&host, base), 0, "{base}");
    }
    assert_eq!(host.counter("llm_output_tokens_total.model=.=m;.;"), None);
    Ok(())
}

#[test]
fn error_event_reset_and_disconnect_mid_stream() -> Result<()> {
    let mut host = llm()?;
    let first = chat_stream(0);
    let mid = format!("{}{}", chat_event("a"), chat_event("b"));
    let error = "event: error\ndata: {\"error\":{\"message\":\"CUDA error: an illegal memory access\",\"code\":500}}\n\ndata: [DONE]\n\n";

    let x = Exchange::new(STREAM_REQ, SSE, vec![mid.as_bytes(), error.as_bytes()]);
    exchange(&mut host, &x)?;

    // Reset and disconnect after two tokens, the second one mid-event.
    let half = &mid.as_bytes()[..mid.len() - 20];
    for end in [End::Reset, End::Disconnect] {
        let mut x = Exchange::new(STREAM_REQ, SSE, vec![&first.as_bytes()[..60], half]);
        x.end = end;
        exchange(&mut host, &x)?;
    }
    // And before any response byte.
    let mut x = Exchange::new(STREAM_REQ, SSE, vec![]);
    x.end = End::Disconnect;
    exchange(&mut host, &x)?;

    assert_clean(&host);
    assert_eq!(requests(&host, &[("error_type", "backend_error")]), 1);
    assert_eq!(requests(&host, &[("error_type", "truncated_stream")]), 1);
    assert_eq!(requests(&host, &[("error_type", "cancelled")]), 2);
    Ok(())
}

#[test]
fn model_names_built_to_break_labels() -> Result<()> {
    let mut host = llm()?;
    let long = "L".repeat(10 * 1024);
    let names: Vec<String> = vec![
        "a;b".into(),
        "a=b".into(),
        ".;".into(),
        "x;.;endpoint=.=evil;.;".into(),
        "line\nbreak\r\n".into(),
        "tab\tnul\u{0}esc\u{1b}".into(),
        "quote\"back\\slash".into(),
        long.clone(),
        "   ".into(),
        "模型/名前".into(),
    ];
    let stream = chat_stream(1);
    for name in &names {
        let req = serde_json::json!({"model": name, "stream": true}).to_string();
        exchange(
            &mut host,
            &Exchange::new(req.as_bytes(), SSE, vec![stream.as_bytes()]),
        )?;
    }
    let models = assert_clean(&host);
    assert!(models.contains("a_b"), "{models:?}");
    assert!(models.contains("x_._endpoint_._evil_._"), "{models:?}");
    assert!(models.contains("line_break__"), "{models:?}");
    assert!(
        models.contains(&"L".repeat(128)),
        "10 KiB name not cut to 128"
    );
    assert!(models.contains("unknown"), "blank name");
    // Nothing forged an endpoint label.
    assert_eq!(requests(&host, &[("endpoint", "evil")]), 0);
    assert_eq!(
        requests(&host, &[("endpoint", "chat_completions")]),
        names.len() as u64
    );
    Ok(())
}

#[test]
fn ten_thousand_model_names_stay_capped() -> Result<()> {
    // Two VMs (two Envoy worker threads) share the cap through shared data.
    let mut host = llm_pulse_host()?
        .plugin_config(r#"{"max_models":8}"#)
        .vms(2)
        .start()?;
    let stream = chat_stream(1);
    let mut sent = 0u64;
    for i in 0..10_000 {
        let name = if i % 1000 == 0 {
            "keep".to_string()
        } else {
            format!("flood-{i}")
        };
        let req = format!(r#"{{"model":"{name}","stream":true}}"#);
        let s = host.new_stream_on(i % 2)?;
        host.send_request_headers(
            s,
            &[(":method", "POST"), (":path", CHAT), ("content-type", JSON)],
            false,
        )?;
        host.send_request_body(s, req.as_bytes(), true)?;
        host.send_response_headers(s, &[(":status", "200"), ("content-type", SSE)], false)?;
        host.send_response_body(s, stream.as_bytes(), true)?;
        host.complete_stream(s)?;
        ensure!(host.stream(s)?.response_body == stream.as_bytes());
        sent += 1;
    }
    let models = assert_clean(&host);
    assert!(
        models.len() <= 8 + 1,
        "{} model values: {models:?}",
        models.len()
    );
    assert!(
        models.contains("keep") && models.contains("other"),
        "{models:?}"
    );
    assert_eq!(requests(&host, &[]), sent);
    assert_eq!(requests(&host, &[("model", "keep")]), 10);
    let series = host.metrics().len();
    assert!(series < 200, "{series} series for 10,000 model names");
    Ok(())
}

#[test]
fn a_cumulative_count_jumping_by_billions_stays_bounded() -> Result<()> {
    // Continuous usage that jumps from 1 to 4e9 tokens in one event: the filter caps the ITL
    // samples of one event (each is a host call) instead of spinning for minutes.
    let mut host = llm()?;
    let event = |text: &str, n: u64| {
        format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}}}}],\"usage\":{{\"prompt_tokens\":4,\"completion_tokens\":{n}}}}}\n\n")
    };
    let body = format!(
        "{}{}data: [DONE]\n\n",
        event("a", 1),
        event("b", 4_000_000_001)
    );
    exchange(
        &mut host,
        &Exchange::new(
            STREAM_REQ,
            SSE,
            body.split_inclusive("\n\n").map(str::as_bytes).collect(),
        ),
    )?;
    assert_clean(&host);
    assert_eq!(
        host.counter("llm_output_tokens_total.model=.=m;.;"),
        Some(4_000_000_001)
    );
    assert_eq!(samples(&host, "llm_inter_token_latency_microseconds"), 4096);
    Ok(())
}

/// On the `.wasm`, two VMs sharing the cap: 32 made-up names the worker
/// answers 404 no longer fill `max_models` (they were admitted at request end, and every later
/// real model was `other`); a client naming a reserved bucket or escaping its `model` cannot
/// forge a series.
#[test]
fn refused_junk_names_do_not_blind_real_models() -> Result<()> {
    let mut host = llm_pulse_host()?
        .plugin_config(r#"{"max_models":32}"#)
        .vms(2)
        .start()?;
    let stream = chat_stream(2);
    let send = |host: &mut Host, vm: usize, body: &str, status: &str| -> Result<()> {
        let s = host.new_stream_on(vm)?;
        host.send_request_headers(
            s,
            &[(":method", "POST"), (":path", CHAT), ("content-type", JSON)],
            false,
        )?;
        host.send_request_body(s, body.as_bytes(), true)?;
        let ok = status == "200";
        let ct = if ok { SSE } else { JSON };
        host.send_response_headers(s, &[(":status", status), ("content-type", ct)], false)?;
        let answer = if ok {
            stream.as_str()
        } else {
            r#"{"object":"error"}"#
        };
        host.send_response_body(s, answer.as_bytes(), true)?;
        host.complete_stream(s)?;
        Ok(())
    };
    for i in 0..32 {
        send(
            &mut host,
            i % 2,
            &format!(r#"{{"model":"junk-{i}","stream":true}}"#),
            "404",
        )?;
    }
    for i in 0..4 {
        send(
            &mut host,
            i % 2,
            r#"{"model":"\u0073im-model","stream":true}"#,
            "200",
        )?;
        send(
            &mut host,
            i % 2,
            r#"{"mod\u0065l":"other","stream":true}"#,
            "200",
        )?;
        send(
            &mut host,
            i % 2,
            r#"{"model":"unknown","stream":true}"#,
            "200",
        )?;
    }
    let models = assert_clean(&host);
    assert_eq!(
        models,
        ["other", "sim-model"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        "no junk name, no `?im-model`, no client-made `unknown`"
    );
    assert_eq!(
        requests(&host, &[("model", "sim-model"), ("status", "success")]),
        4
    );
    assert_eq!(
        requests(&host, &[("model", "other"), ("error_type", "not_found")]),
        32
    );
    assert_eq!(
        requests(&host, &[("model", "other"), ("status", "success")]),
        8
    );
    Ok(())
}
