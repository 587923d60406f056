use super::*;
use crate::host::fake::FakeHost;
use crate::outcome::flags;

const CHAT: &str = "/v1/chat/completions";

struct Rig {
    host: FakeHost,
    vm: VmMeter,
}

impl Rig {
    fn new() -> Rig {
        let config = Config::parse(b"{}", None).unwrap();
        Rig {
            host: FakeHost::default(),
            vm: VmMeter::new(&config),
        }
    }

    fn start(&mut self, path: &str, body: &str) -> StreamMeter {
        let mut s = StreamMeter::start(&self.host, path.as_bytes(), false);
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
        s.on_log(&mut self.vm, &self.host, 0, 0, "via_upstream");
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
    let mut s = StreamMeter::start(&r.host, CHAT.as_bytes(), false);
    s.on_request_body(&mut r.vm, &r.host, br#"{"model":"m","str"#, false);
    s.on_log(
        &mut r.vm,
        &r.host,
        0,
        flags::DOWNSTREAM_CONNECTION_TERMINATION,
        "downstream_remote_disconnect",
    );
    assert_eq!(
        r.requests(&err_labels("chat_completions", "unary", "cancelled")),
        1
    );
    assert_eq!(r.host.value("llm_inflight_requests.model=.=m;.;"), 0);
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
    let mut s = StreamMeter::start(&r.host, b"/v1/models", false);
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
        let mut s = StreamMeter::start(&host, CHAT.as_bytes(), false);
        s.on_request_body(
            &mut vm,
            &host,
            format!(r#"{{"model":"{model}"}}"#).as_bytes(),
            true,
        );
        s.on_log(
            &mut vm,
            &host,
            0,
            flags::DOWNSTREAM_CONNECTION_TERMINATION,
            "",
        );
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
        // 255 ITL records, the output-token counter every 32 tokens, a handful per request;
        // no define_metric after the first stream.
        assert!(
            calls <= 256 + 24,
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

/// on_log reads Envoy's response properties only when they can change the verdict: a complete
/// response below 400 is classified from what the filter saw (three host calls saved per
/// request); anything else needs the flags and details (cancelled, timeouts, overflow).
#[test]
fn envoy_outcome_is_read_only_when_it_can_matter() {
    let mut r = Rig::new();
    let mut s = r.start(CHAT, r#"{"model":"m","stream":true}"#);
    assert!(s.needs_envoy_outcome(), "no response yet");
    r.respond(&mut s, 200, "text/event-stream");
    r.chunk(&mut s, 10, &content("a"));
    assert!(s.needs_envoy_outcome(), "response not complete");
    r.chunk(&mut s, 10, DONE);
    s.on_response_body(&mut r.vm, &r.host, b"", true);
    assert!(!s.needs_envoy_outcome());
    // With no flags and no details the verdict is the same as with any of them.
    for (flags, details) in [
        (0, ""),
        (flags::UPSTREAM_OVERFLOW, "x"),
        (flags::DOWNSTREAM_GONE, "downstream_remote_disconnect"),
    ] {
        assert_eq!(s.error_type(flags, details), None);
    }
    s.on_log(&mut r.vm, &r.host, 0, 0, "");
    assert_eq!(r.requests(OK_STREAM), 1);

    for status in [429, 500, 503] {
        let mut s = r.start(CHAT, r#"{"model":"m"}"#);
        r.respond(&mut s, status, "application/json");
        s.on_response_body(&mut r.vm, &r.host, b"{}", true);
        assert!(s.needs_envoy_outcome(), "{status}");
    }
}
