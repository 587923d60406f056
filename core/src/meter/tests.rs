use super::*;
use crate::host::fake::FakeHost;
use crate::host::EnvoyEnd;
use crate::outcome::flags;

const CHAT: &str = "/v1/chat/completions";

struct Rig {
    host: FakeHost,
    vm: VmMeter,
}

impl Rig {
    fn new() -> Rig {
        // `m` is pinned: these tests are about figures, not the cap's admission.
        let config = Config::parse(br#"{"models":["m"]}"#, None).unwrap();
        Rig {
            host: FakeHost::default(),
            vm: VmMeter::new(&config),
        }
    }

    fn start(&mut self, path: &str, body: &str) -> StreamMeter {
        let mut s = StreamMeter::start(b"POST", path.as_bytes(), false);
        s.on_request_body(&mut self.vm, &self.host, body.as_bytes(), true);
        s
    }

    fn respond(&mut self, s: &mut StreamMeter, status: u32, content_type: &str) {
        let head = ResponseHead {
            status,
            content_type: content_type.as_bytes(),
            content_encoding: b"",
        };
        s.on_response_headers(&mut self.vm, &self.host, head, false);
    }

    fn chunk(&mut self, s: &mut StreamMeter, after_ms: u64, bytes: &str) {
        self.host.advance_ms(after_ms);
        s.on_response_body(&mut self.vm, &self.host, bytes.as_bytes(), false);
    }

    fn end(&mut self, s: &mut StreamMeter) {
        s.on_response_body(&mut self.vm, &self.host, b"", true);
        s.on_log(&mut self.vm, &self.host);
    }

    fn requests(&self, labels: &str) -> i64 {
        self.host.value(&format!("llm_requests_total.{labels}"))
    }
}

// Streaming TTFT/ITL, tokens per event and every error type with inflight back to 0 are cases
// of the shared table in `crate::cases` (run here and on the .wasm by host-tests).

fn content(text: &str) -> String {
    format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n")
}

fn with_usage(text: &str, completion: u64) -> String {
    format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}}}}],\"usage\":{{\"prompt_tokens\":4,\"completion_tokens\":{completion}}}}}\n\n")
}

const ROLE: &str =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
const DONE: &str = "data: [DONE]\n\n";
const OK_STREAM: &str = "model=.=m;.;endpoint=.=chat_completions;.;request_type=.=stream;.;status=.=success;.;error_type=.=;.;";

fn err_labels(endpoint: &str, request_type: &str, error: &str) -> String {
    format!("model=.=m;.;endpoint=.={endpoint};.;request_type=.={request_type};.;status=.=error;.;error_type=.={error};.;")
}

#[test]
fn final_usage_makes_the_output_count_exact() {
    let mut r = Rig::new();
    let mut s = r.start(
        CHAT,
        r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
    );
    r.respond(&mut s, 200, "text/event-stream");
    r.chunk(&mut s, 100, &content("abc"));
    r.chunk(&mut s, 60, &content("def"));
    r.chunk(
        &mut s,
        0,
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":6,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n",
    );
    r.chunk(&mut s, 0, DONE);
    r.end(&mut s);
    let h = &r.host;
    assert_eq!(h.value("llm_output_tokens_total.model=.=m;.;"), 6);
    assert_eq!(
        h.samples("llm_output_sequence_tokens.model=.=m;.;"),
        vec![6]
    );
    assert_eq!(
        h.samples("llm_inter_token_latency_microseconds.model=.=m;.;"),
        vec![60_000]
    );
    assert_eq!(h.samples("llm_cached_tokens.model=.=m;.;"), vec![2]);
}

#[test]
fn unary_ttft_is_the_duration() {
    let mut r = Rig::new();
    let mut s = r.start("/v1/completions", r#"{"model":"m","prompt":"hi"}"#);
    r.respond(&mut s, 200, "application/json");
    r.chunk(
        &mut s,
        300,
        r#"{"choices":[{"text":"x","finish_reason":"length"}],"#,
    );
    r.chunk(
        &mut s,
        0,
        r#""usage":{"prompt_tokens":1,"completion_tokens":16}}"#,
    );
    r.end(&mut s);
    let h = &r.host;
    assert_eq!(
        h.samples("llm_time_to_first_token_microseconds.model=.=m;.;"),
        vec![300_000]
    );
    assert!(h
        .samples("llm_inter_token_latency_microseconds.model=.=m;.;")
        .is_empty());
    assert_eq!(h.value("llm_output_tokens_total.model=.=m;.;"), 16);
    assert_eq!(
        h.samples("llm_output_sequence_tokens.model=.=m;.;"),
        vec![16]
    );
    assert_eq!(h.samples("llm_input_sequence_tokens.model=.=m;.;"), vec![1]);
    assert_eq!(
        r.requests("model=.=m;.;endpoint=.=completions;.;request_type=.=unary;.;status=.=success;.;error_type=.=;.;"),
        1
    );
}

#[test]
fn a_client_gone_before_any_response_is_cancelled() {
    let mut r = Rig::new();
    let mut s = StreamMeter::start(b"POST", CHAT.as_bytes(), false);
    s.on_request_body(&mut r.vm, &r.host, br#"{"model":"m","str"#, false);
    r.host.envoy_end.replace(EnvoyEnd {
        status: 0,
        flags: flags::DOWNSTREAM_CONNECTION_TERMINATION,
        details: "downstream_remote_disconnect".into(),
    });
    s.on_log(&mut r.vm, &r.host);
    assert_eq!(
        r.requests(&err_labels("chat_completions", "unary", "cancelled")),
        1
    );
    assert_eq!(r.host.value("llm_inflight_requests.model=.=m;.;"), 0);
    assert_eq!(
        r.host.property("llm_pulse.error_type").as_deref(),
        Some("cancelled")
    );
}

/// A stream that never ends gets its verdict at `on_log`, and its access-log figures with it
/// (Envoy 1.40 runs `on_log` before the HCM's access logs): the same error type as the counter.
#[test]
fn an_unfinished_stream_publishes_its_verdict_at_on_log() {
    let cases = [
        (
            flags::DOWNSTREAM_REMOTE_RESET,
            "http2.remote_reset",
            "cancelled",
        ),
        (
            flags::UPSTREAM_CONNECTION_TERMINATION,
            "upstream_reset_after_response_started{connection_termination}",
            "truncated_stream",
        ),
        (
            flags::STREAM_IDLE_TIMEOUT,
            "stream_idle_timeout",
            "response_timeout",
        ),
    ];
    for (flag, details, want) in cases {
        let mut r = Rig::new();
        let mut s = r.start(CHAT, r#"{"model":"m","stream":true}"#);
        r.respond(&mut s, 200, "text/event-stream");
        r.chunk(&mut s, 10, &content("a"));
        r.chunk(&mut s, 10, &content("b"));
        assert_eq!(r.host.property("llm_pulse.error_type"), None, "{want}");
        r.host.envoy_end.replace(EnvoyEnd {
            status: 200,
            flags: flag,
            details: details.into(),
        });
        s.on_log(&mut r.vm, &r.host);
        assert_eq!(
            r.requests(&err_labels("chat_completions", "stream", want)),
            1
        );
        let property = |name: &str| r.host.property(&format!("llm_pulse.{name}"));
        assert_eq!(property("error_type").as_deref(), Some(want));
        assert_eq!(property("output_tokens").as_deref(), Some("2"), "{want}");
        assert_eq!(property("ttft_us").as_deref(), Some("10000"), "{want}");
        assert_eq!(property("token_source").as_deref(), Some("counted"));
    }
}

#[test]
fn malformed_worker_bodies_are_bad_responses() {
    let mut r = Rig::new();
    let mut s = r.start(CHAT, r#"{"model":"m"}"#);
    r.respond(&mut s, 200, "application/json");
    r.chunk(&mut s, 5, "{\"id\": broken");
    r.end(&mut s);
    assert_eq!(
        r.requests(&err_labels("chat_completions", "unary", "bad_response")),
        1
    );
    assert!(r
        .host
        .samples("llm_time_to_first_token_microseconds.model=.=m;.;")
        .is_empty());
}

#[test]
fn other_paths_are_counted_but_not_parsed() {
    let mut r = Rig::new();
    let mut s = StreamMeter::start(b"GET", b"/v1/models", false);
    s.on_request_end(&mut r.vm, &r.host);
    r.respond(&mut s, 200, "application/json");
    assert!(!s.wants_response_body());
    r.chunk(
        &mut s,
        2,
        r#"{"data":[{"id":"m"}],"usage":{"completion_tokens":9}}"#,
    );
    r.end(&mut s);
    assert_eq!(
        r.host.value("llm_requests_total.model=.=unknown;.;endpoint=.=other;.;request_type=.=unary;.;status=.=success;.;error_type=.=;.;"),
        1
    );
    assert_eq!(
        r.host
            .histograms
            .borrow()
            .keys()
            .filter(|k| !k.contains("duration"))
            .count(),
        0
    );
    assert!(r.host.properties.borrow().is_empty());
}

#[test]
fn encoded_responses_pass_unparsed_but_timed() {
    let mut r = Rig::new();
    let mut s = r.start(CHAT, r#"{"model":"m","stream":true}"#);
    let head = ResponseHead {
        status: 200,
        content_type: b"text/event-stream",
        content_encoding: b"gzip",
    };
    s.on_response_headers(&mut r.vm, &r.host, head, false);
    assert!(!s.wants_response_body());
    r.chunk(&mut s, 50, "\x1f\u{8b}binary");
    r.end(&mut s);
    assert!(r
        .host
        .samples("llm_time_to_first_token_microseconds.model=.=m;.;")
        .is_empty());
    assert_eq!(
        r.host
            .samples("llm_request_duration_microseconds.model=.=m;.;request_type=.=stream;.;"),
        vec![50_000]
    );
    assert_eq!(r.requests(OK_STREAM), 1);
}

#[test]
fn models_past_the_cap_report_as_other() {
    let config = Config::parse(br#"{"max_models":1}"#, None).unwrap();
    let host = FakeHost::default();
    let mut vm = VmMeter::new(&config);
    for model in ["a", "b", "c"] {
        let mut s = StreamMeter::start(b"POST", CHAT.as_bytes(), false);
        s.on_request_body(
            &mut vm,
            &host,
            format!(r#"{{"model":"{model}"}}"#).as_bytes(),
            true,
        );
        let head = ResponseHead {
            status: 200,
            content_type: b"application/json",
            content_encoding: b"",
        };
        s.on_response_headers(&mut vm, &host, head, false);
        // The answer names no model: the request's name is the one the worker accepted.
        s.on_response_body(&mut vm, &host, br#"{"choices":[]}"#, true);
        host.envoy_end.replace(EnvoyEnd {
            status: 200,
            flags: flags::DOWNSTREAM_CONNECTION_TERMINATION,
            details: String::new(),
        });
        s.on_log(&mut vm, &host);
    }
    let names: Vec<String> = host.names.borrow().iter().map(|(_, n)| n.clone()).collect();
    assert!(names.iter().any(|n| n.contains("model=.=a;.;")));
    assert!(names.iter().any(|n| n.contains("model=.=other;.;")));
    assert!(!names
        .iter()
        .any(|n| n.contains("model=.=b;.;") || n.contains("model=.=c;.;")));
    assert_eq!(host.value("llm_inflight_requests.model=.=other;.;"), 0);
}

#[test]
fn about_one_host_call_per_token() {
    let mut r = Rig::new();
    // Warm the metric-id cache, as any VM that has served one request has.
    for _ in 0..2 {
        let mut s = r.start(CHAT, r#"{"model":"m","stream":true}"#);
        r.respond(&mut s, 200, "text/event-stream");
        let before = r.host.host_calls.get();
        let mut body = String::from(ROLE);
        for _ in 0..256 {
            body.push_str(&content("tok"));
        }
        body.push_str(DONE);
        // One event per chunk, as a worker streams them.
        for event in body.split_inclusive("\n\n") {
            r.chunk(&mut s, 1, event);
        }
        r.end(&mut s);
        let calls = r.host.host_calls.get() - before;
        // 255 ITL records, the output-token counter and the ITL exact sum every 32 tokens, a
        // handful per request; no define_metric after the first stream.
        assert!(
            calls <= 256 + 40,
            "{calls} metric host calls for 256 tokens"
        );
    }
}

/// Hardening finding: a worker whose cumulative count jumps (continuous usage
/// `completion_tokens` 1 -> 4e9) made one event record ~4e9 ITL samples, one host call each:
/// the worker thread spun for minutes. Samples per event are now capped; the token count and
/// the access-log ITL average stay exact.
#[test]
fn a_huge_cumulative_jump_records_a_bounded_number_of_itl_samples() {
    let mut r = Rig::new();
    let mut s = r.start(CHAT, r#"{"model":"m","stream":true}"#);
    r.respond(&mut s, 200, "text/event-stream");
    r.chunk(&mut s, 10, &with_usage("a", 1));
    let before = r.host.host_calls.get();
    r.chunk(&mut s, 10, &with_usage("b", 4_000_000_001));
    let calls = r.host.host_calls.get() - before;
    assert!(
        calls <= u64::from(MAX_ITL_SAMPLES_PER_EVENT) + 8,
        "{calls} host calls for one event"
    );
    r.chunk(&mut s, 0, DONE);
    r.end(&mut s);
    assert_eq!(
        r.host.value("llm_output_tokens_total.model=.=m;.;"),
        4_000_000_001
    );
    let itl = r
        .host
        .samples("llm_inter_token_latency_microseconds.model=.=m;.;");
    assert_eq!(itl.len(), MAX_ITL_SAMPLES_PER_EVENT as usize);
    assert_eq!(r.host.value("llm_inflight_requests.model=.=m;.;"), 0);
}

/// Envoy's account (three property reads) is asked for only when it can change the verdict:
/// a complete response below 400 is classified from what the filter saw; anything else needs
/// the flags and details (cancelled, timeouts, overflow), and it is read once per request.
#[test]
fn envoy_outcome_is_read_only_when_it_can_matter() {
    let mut r = Rig::new();
    r.host.envoy_end.replace(EnvoyEnd {
        status: 200,
        flags: flags::UPSTREAM_OVERFLOW | flags::DOWNSTREAM_GONE,
        details: "downstream_remote_disconnect".into(),
    });
    let mut s = r.start(CHAT, r#"{"model":"m","stream":true}"#);
    r.respond(&mut s, 200, "text/event-stream");
    r.chunk(&mut s, 10, &content("a"));
    r.chunk(&mut s, 10, DONE);
    r.end(&mut s);
    assert_eq!(r.host.envoy_end_reads.get(), 0);
    assert_eq!(r.requests(OK_STREAM), 1);

    for status in [429, 500, 503] {
        let reads = r.host.envoy_end_reads.get();
        let mut s = r.start(CHAT, r#"{"model":"m"}"#);
        r.respond(&mut s, status, "application/json");
        r.chunk(&mut s, 1, "{}");
        r.end(&mut s);
        assert_eq!(r.host.envoy_end_reads.get(), reads + 1, "{status}");
    }
}

/// 32 made-up names a worker refused (404) filled the cap at request end, and
/// every later real model was `other`. Names now enter the cap on a 2xx only; the in-flight
/// +1 of a name accepted mid-request moves with it, so the -1 finds it.
#[test]
fn refused_names_do_not_fill_the_cap() {
    let config = Config::parse(br#"{"max_models":32}"#, None).unwrap();
    let host = FakeHost::default();
    let mut vm = VmMeter::new(&config);
    let mut run = |model: &str, status: u32| {
        let mut s = StreamMeter::start(b"POST", CHAT.as_bytes(), false);
        let body = format!(r#"{{"model":"{model}","stream":true}}"#);
        s.on_request_body(&mut vm, &host, body.as_bytes(), true);
        let head = ResponseHead {
            status,
            content_type: b"text/event-stream",
            content_encoding: b"",
        };
        s.on_response_headers(&mut vm, &host, head, false);
        let inflight = |name: &str| host.value(&format!("llm_inflight_requests.model=.={name};.;"));
        s.on_response_body(&mut vm, &host, content("a").as_bytes(), false);
        let mid = (inflight(model), inflight("other"));
        s.on_response_body(&mut vm, &host, DONE.as_bytes(), true);
        s.on_log(&mut vm, &host);
        mid
    };
    for i in 0..32 {
        assert_eq!(run(&format!("junk-{i}"), 404), (0, 1));
    }
    // In flight under its own name once the worker accepted it.
    assert_eq!(run("sim-model", 200), (1, 0));
    assert_eq!(
        host.value("llm_requests_total.model=.=sim-model;.;endpoint=.=chat_completions;.;request_type=.=stream;.;status=.=success;.;error_type=.=;.;"),
        1
    );
    assert_eq!(
        host.samples("llm_time_to_first_token_microseconds.model=.=sim-model;.;")
            .len(),
        1
    );
    assert_eq!(
        host.value("llm_requests_total.model=.=other;.;endpoint=.=chat_completions;.;request_type=.=stream;.;status=.=error;.;error_type=.=not_found;.;"),
        32
    );
    for (kind, name) in host.names.borrow().iter() {
        assert!(!name.contains("junk-"), "{name}");
        if *kind == crate::host::MetricKind::Gauge {
            assert_eq!(host.value(name), 0, "{name}");
        }
    }
}

/// A client naming a reserved bucket lands in `other`; pinned names are labelled
/// at once, outside the cap.
#[test]
fn reserved_and_pinned_models() {
    let config = Config::parse(br#"{"max_models":1,"models":["p1","p2"]}"#, None).unwrap();
    let host = FakeHost::default();
    let mut vm = VmMeter::new(&config);
    for model in ["other", "unknown", "p1", "p2", "x", "y"] {
        let mut s = StreamMeter::start(b"POST", CHAT.as_bytes(), false);
        let body = format!(r#"{{"model":"{model}"}}"#);
        s.on_request_body(&mut vm, &host, body.as_bytes(), true);
        let head = ResponseHead {
            status: 200,
            content_type: b"application/json",
            content_encoding: b"",
        };
        s.on_response_headers(&mut vm, &host, head, false);
        s.on_response_body(&mut vm, &host, br#"{"choices":[]}"#, true);
        s.on_log(&mut vm, &host);
    }
    let ok = |m: &str| {
        host.value(&format!("llm_requests_total.model=.={m};.;endpoint=.=chat_completions;.;request_type=.=unary;.;status=.=success;.;error_type=.=;.;"))
    };
    assert_eq!((ok("p1"), ok("p2"), ok("x")), (1, 1, 1));
    assert_eq!(ok("other"), 3, "other, unknown and y (past the cap)");
    assert_eq!(ok("unknown"), 0);
}

/// A worker that answers any model name (llama.cpp serves its one model whatever is asked)
/// says in its answer which model ran: that name is the label, so made-up names it ignored
/// never enter the cap, and the served model's requests are not `other`.
#[test]
fn the_answers_model_is_the_label() {
    let config = Config::parse(br#"{"max_models":32}"#, None).unwrap();
    let host = FakeHost::default();
    let mut vm = VmMeter::new(&config);
    let mut run = |asked: &str, stream: bool| {
        let mut s = StreamMeter::start(b"POST", CHAT.as_bytes(), false);
        let body = format!(r#"{{"model":"{asked}","stream":{stream}}}"#);
        s.on_request_body(&mut vm, &host, body.as_bytes(), true);
        let content_type: &[u8] = if stream {
            b"text/event-stream"
        } else {
            b"application/json"
        };
        let head = ResponseHead {
            status: 200,
            content_type,
            content_encoding: b"",
        };
        s.on_response_headers(&mut vm, &host, head, false);
        if stream {
            // llama.cpp's order: the model after the choices, in every event.
            let event = |t: &str| {
                format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{t}\"}}}}],\"model\":\"tiny\"}}\n\n")
            };
            host.advance_ms(5);
            s.on_response_body(&mut vm, &host, event("a").as_bytes(), false);
            host.advance_ms(5);
            let rest = format!("{}{DONE}", event("b"));
            s.on_response_body(&mut vm, &host, rest.as_bytes(), true);
        } else {
            host.advance_ms(5);
            let answer = r#"{"choices":[{"message":{"content":"hi"}}],"model":"tiny","usage":{"prompt_tokens":2,"completion_tokens":1}}"#;
            s.on_response_body(&mut vm, &host, answer.as_bytes(), true);
        }
        s.on_log(&mut vm, &host);
    };
    for i in 0..40 {
        run(&format!("junk-{i}"), i % 2 == 0);
    }
    for i in 0..10 {
        run("tiny", i % 2 == 0);
    }
    let names: Vec<String> = host.names.borrow().iter().map(|(_, n)| n.clone()).collect();
    assert!(!names.iter().any(|n| n.contains("junk")), "{names:?}");
    let ok = |request_type: &str| {
        host.value(&format!("llm_requests_total.model=.=tiny;.;endpoint=.=chat_completions;.;request_type=.={request_type};.;status=.=success;.;error_type=.=;.;"))
    };
    assert_eq!((ok("stream"), ok("unary")), (25, 25));
    // `other` held the junk requests' in-flight and queued +1 until their answers named the
    // model.
    assert!(!names.iter().any(|n| n.contains("model=.=other;.;")
        && !n.starts_with("llm_inflight_requests")
        && !n.starts_with("llm_queued_requests")));
    assert_eq!(host.value("llm_inflight_requests.model=.=other;.;"), 0);
    assert_eq!(host.value("llm_queued_requests.model=.=other;.;"), 0);
    assert_eq!(host.value("llm_queued_requests.model=.=tiny;.;"), 0);
    assert_eq!(
        host.samples("llm_time_to_first_token_microseconds.model=.=tiny;.;")
            .len(),
        50
    );
    assert_eq!(
        host.samples("llm_inter_token_latency_microseconds.model=.=tiny;.;"),
        vec![5000; 25]
    );
    assert_eq!(host.value("llm_inflight_requests.model=.=tiny;.;"), 0);
    // A pinned name asked for and another name answered: the answer's.
    let config = Config::parse(br#"{"models":["alias"]}"#, None).unwrap();
    let mut vm = VmMeter::new(&config);
    let mut s = StreamMeter::start(b"POST", CHAT.as_bytes(), false);
    s.on_request_body(&mut vm, &host, br#"{"model":"alias","stream":true}"#, true);
    let head = ResponseHead {
        status: 200,
        content_type: b"text/event-stream",
        content_encoding: b"",
    };
    s.on_response_headers(&mut vm, &host, head, false);
    assert_eq!(host.value("llm_inflight_requests.model=.=alias;.;"), 1);
    let first = "data: {\"model\":\"served\",\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n";
    s.on_response_body(&mut vm, &host, first.as_bytes(), false);
    assert_eq!(host.value("llm_inflight_requests.model=.=alias;.;"), 0);
    assert_eq!(host.value("llm_inflight_requests.model=.=served;.;"), 1);
    s.on_response_body(&mut vm, &host, DONE.as_bytes(), true);
    s.on_log(&mut vm, &host);
    assert_eq!(host.value("llm_inflight_requests.model=.=served;.;"), 0);
}

/// `queued_requests`: from the request's end to its first token (a role event is none), or
/// to an answer that brings no token; a 501 is `not_implemented`.
#[test]
fn a_request_is_queued_until_its_first_token() {
    const QUEUED: &str = "llm_queued_requests.model=.=m;.;";
    let mut r = Rig::new();
    let mut s = r.start(CHAT, r#"{"model":"m","stream":true}"#);
    assert_eq!(r.host.value(QUEUED), 1);
    r.respond(&mut s, 200, "text/event-stream");
    r.chunk(&mut s, 5, ROLE);
    assert_eq!(
        r.host.value(QUEUED),
        1,
        "prefill: headers and a role event, no token"
    );
    r.chunk(&mut s, 5, &content("a"));
    assert_eq!(r.host.value(QUEUED), 0);
    r.chunk(&mut s, 5, DONE);
    r.end(&mut s);
    assert_eq!(r.host.value(QUEUED), 0);
    // Unary: queued until the answer, which carries every token at once.
    let mut s = r.start(CHAT, r#"{"model":"m"}"#);
    r.respond(&mut s, 200, "application/json");
    r.chunk(&mut s, 5, r#"{"choices":[{"message":{"content":"hi"}}],"#);
    assert_eq!(r.host.value(QUEUED), 1);
    r.end(&mut s);
    assert_eq!(r.host.value(QUEUED), 0);
    // An error answer brings no token: no longer queued once it starts.
    for (status, error) in [(500, "internal"), (501, "not_implemented")] {
        let mut s = r.start(CHAT, r#"{"model":"m","stream":true}"#);
        r.respond(&mut s, status, "application/json");
        assert_eq!(r.host.value(QUEUED), 0, "{status}");
        r.end(&mut s);
        assert_eq!(
            r.requests(&err_labels("chat_completions", "stream", error)),
            1,
            "{status}"
        );
    }
    // A client gone before any answer: queued until the stream is over.
    let mut s = r.start(CHAT, r#"{"model":"m","stream":true}"#);
    assert_eq!(r.host.value(QUEUED), 1);
    s.on_log(&mut r.vm, &r.host);
    assert_eq!(r.host.value(QUEUED), 0);
}

fn worker_rig(max_workers: u32) -> Rig {
    let config = Config::parse(
        format!(
            r#"{{"models":["m"],"worker_label":true,"max_workers":{max_workers},
               "health":{{"targets":[{{"name":"gpu-0","cluster":"c","backend":"vllm","model":"m","host":"10.0.0.1:8000"}}]}}}}"#
        )
        .as_bytes(),
        None,
    )
    .unwrap();
    Rig {
        host: FakeHost::default(),
        vm: VmMeter::new(&config),
    }
}

#[test]
fn the_worker_that_answered_labels_the_request() {
    let mut r = worker_rig(1);
    let inflight = |r: &Rig, worker: &str| {
        r.host.value(&format!(
            "llm_inflight_requests.model=.=m;.;worker=.={worker};.;"
        ))
    };
    let ok = |worker: &str| format!("{OK_STREAM}worker=.={worker};.;");
    for (address, worker) in [
        ("10.0.0.1:8000", "gpu-0"),         // a health target names it (pinned)
        ("10.0.0.2:8000", "10.0.0.2:8000"), // admitted: the cap (1) had room
        ("10.0.0.3:8000", "other"),         // past the cap
    ] {
        *r.host.upstream.borrow_mut() = Some(address.to_string());
        let mut s = r.start(CHAT, r#"{"model":"m","stream":true}"#);
        // Before the answer, the filter does not know the worker.
        assert_eq!(inflight(&r, ""), 1, "{worker}");
        r.respond(&mut s, 200, "text/event-stream");
        assert_eq!((inflight(&r, ""), inflight(&r, worker)), (0, 1), "{worker}");
        r.chunk(&mut s, 7, &content("a"));
        r.chunk(&mut s, 3, &content("b"));
        r.chunk(&mut s, 1, DONE);
        r.end(&mut s);
        assert_eq!(inflight(&r, worker), 0, "{worker}");
        assert_eq!(r.requests(&ok(worker)), 1, "{worker}");
        let by = format!("model=.=m;.;worker=.={worker};.;");
        assert_eq!(
            r.host
                .samples(&format!("llm_time_to_first_token_microseconds.{by}")),
            vec![7_000]
        );
        assert_eq!(
            r.host
                .samples(&format!("llm_inter_token_latency_microseconds.{by}")),
            vec![3_000]
        );
        assert_eq!(r.host.value(&format!("llm_output_tokens_total.{by}")), 2);
        assert_eq!(
            r.host.value("llm_queued_requests.model=.=m;.;"),
            0,
            "queued carries no worker"
        );
    }
    // Envoy is asked once per request.
    assert_eq!(r.host.upstream_reads.get(), 3);
}

#[test]
fn a_worker_that_never_answered_2xx_stays_out_of_the_cap() {
    let mut r = worker_rig(4);
    *r.host.upstream.borrow_mut() = Some("10.0.0.9:8000".to_string());
    let mut s = r.start(CHAT, r#"{"model":"m","stream":true}"#);
    r.respond(&mut s, 500, "application/json");
    r.end(&mut s);
    let internal = err_labels("chat_completions", "stream", "internal");
    assert_eq!(r.requests(&format!("{internal}worker=.=other;.;")), 1);
    // A refused connection: Envoy chose a worker, which never answered.
    let mut s = r.start(CHAT, r#"{"model":"m","stream":true}"#);
    *r.host.envoy_end.borrow_mut() = EnvoyEnd {
        status: 503,
        flags: flags::UPSTREAM_CONNECTION_FAILURE,
        details: "upstream_reset_before_response_started{connection_failure}".into(),
    };
    s.on_log(&mut r.vm, &r.host);
    let unavailable = err_labels("chat_completions", "stream", "unavailable");
    assert_eq!(r.requests(&format!("{unavailable}worker=.=other;.;")), 1);
    *r.host.envoy_end.borrow_mut() = EnvoyEnd::default();
    // No upstream at all: no worker.
    *r.host.upstream.borrow_mut() = None;
    let mut s = r.start(CHAT, r#"{"model":"m","stream":true}"#);
    s.on_log(&mut r.vm, &r.host);
    assert_eq!(
        r.host
            .value("llm_inflight_requests.model=.=m;.;worker=.=;.;"),
        0
    );
    assert!(r.host.shared.borrow().is_empty(), "nothing admitted");
    // Once it answered a 2xx, its errors are its own.
    *r.host.upstream.borrow_mut() = Some("10.0.0.9:8000".to_string());
    let mut s = r.start(CHAT, r#"{"model":"m","stream":true}"#);
    r.respond(&mut s, 200, "text/event-stream");
    r.end(&mut s);
    let mut s = r.start(CHAT, r#"{"model":"m","stream":true}"#);
    r.respond(&mut s, 500, "application/json");
    r.end(&mut s);
    assert_eq!(
        r.requests(&format!("{internal}worker=.=10.0.0.9:8000;.;")),
        1
    );
}

#[test]
fn the_worker_label_off_reads_nothing_and_names_nothing() {
    let mut r = Rig::new();
    *r.host.upstream.borrow_mut() = Some("10.0.0.1:8000".to_string());
    let mut s = r.start(CHAT, r#"{"model":"m","stream":true}"#);
    r.respond(&mut s, 200, "text/event-stream");
    r.chunk(&mut s, 1, &content("a"));
    r.end(&mut s);
    assert_eq!(r.host.upstream_reads.get(), 0);
    assert!(r
        .host
        .names
        .borrow()
        .iter()
        .all(|(_, n)| !n.contains("worker")));
}

#[test]
fn a_model_relabel_keeps_the_worker() {
    let mut r = worker_rig(4);
    *r.host.upstream.borrow_mut() = Some("10.0.0.1:8000".to_string());
    // The worker serves `served` whatever is asked.
    let mut s = r.start(CHAT, r#"{"model":"asked","stream":true}"#);
    r.respond(&mut s, 200, "text/event-stream");
    r.chunk(
        &mut s,
        2,
        r#"data: {"model":"served","choices":[{"delta":{"content":"x"}}]}

"#,
    );
    assert_eq!(
        r.host
            .value("llm_inflight_requests.model=.=served;.;worker=.=gpu-0;.;"),
        1
    );
    r.end(&mut s);
    for (name, value) in r.host.counters.borrow().iter() {
        if name.starts_with("llm_inflight_requests") {
            assert_eq!(*value, 0, "{name}");
        }
    }
    assert_eq!(
        r.host
            .samples("llm_time_to_first_token_microseconds.model=.=served;.;worker=.=gpu-0;.;"),
        vec![2_000]
    );
}
