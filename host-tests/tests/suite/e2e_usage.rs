//! End to end: `usage_stats`, the filter asking the worker for usage the client did not ask
//! for. Each request goes both straight to gpu-sim and through Envoy with the filter; the
//! client must get the same bytes both ways, and the filter's figures must be the worker's own
//! `usage` (read from a third request that asks for it). gpu-sim answers like vLLM: with
//! `include_usage` every chunk carries `"usage": null` and a usage-only event comes last.

use host_tests::envoy::{Envoy, EnvoyOptions};
use host_tests::sim::client::{request_blocking, Recorded};
use host_tests::sim::{self, SimConfig, SimHandle};
use std::net::SocketAddr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn start(plugin_config: &str) -> (SimHandle, Envoy) {
    let sim = sim::spawn(SimConfig::default()).expect("gpu-sim starts");
    let mut opts = EnvoyOptions::new(sim.addr);
    opts.plugin_config = plugin_config.to_string();
    let envoy = Envoy::start(&opts).expect("Envoy starts");
    (sim, envoy)
}

fn post(to: SocketAddr, path: &str, id: &str, headers: &[(&str, &str)], body: &str) -> Recorded {
    // A fixed answer id: the body the worker gets through the filter differs from the direct
    // one, and gpu-sim's id is otherwise a hash of the body.
    let mut h = vec![
        ("content-type", "application/json"),
        ("x-request-id", id),
        ("x-sim-id", "chatcmpl-fixed"),
    ];
    h.extend_from_slice(headers);
    request_blocking(to, "POST", path, &h, body.to_string()).expect("request")
}

/// The worker's own usage for `body`: the same request, straight to it, asking for usage.
fn worker_usage(sim: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> (u64, u64) {
    let asking = body.replacen(
        r#""stream":true"#,
        r#""stream":true,"stream_options":{"include_usage":true}"#,
        1,
    );
    assert_ne!(asking, body, "no `\"stream\":true` in {body}");
    let r = post(sim, path, "truth", headers, &asking);
    let usage = r
        .events()
        .into_iter()
        .filter_map(|(_, d)| serde_json::from_str::<serde_json::Value>(&d).ok())
        .find(|v| v["usage"].is_object())
        .map(|v| v["usage"].clone())
        .unwrap_or_else(|| panic!("no usage in {:?}", r.body()));
    (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    )
}

fn field(entry: &serde_json::Value, key: &str) -> Option<String> {
    entry[key].as_str().map(str::to_owned)
}

fn field_u64(entry: &serde_json::Value, key: &str) -> Option<u64> {
    field(entry, key).and_then(|s| s.parse().ok())
}

/// The access-log line's token figures are the worker's usage, and say so.
fn assert_the_workers_usage(id: &str, e: &serde_json::Value, prompt: u64, completion: u64) {
    assert_eq!(field_u64(e, "input_tokens"), Some(prompt), "{id}: {e}");
    assert_eq!(field_u64(e, "output_tokens"), Some(completion), "{id}: {e}");
    assert_eq!(
        field(e, "token_source").as_deref(),
        Some("usage"),
        "{id}: {e}"
    );
}

/// Sends `body` both ways and checks the client got the same bytes; returns the access-log
/// entry of the request through Envoy.
fn both_ways(
    sim: &SimHandle,
    envoy: &Envoy,
    path: &str,
    id: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> serde_json::Value {
    let direct = post(sim.addr, path, &format!("{id}-direct"), headers, body);
    let through = post(envoy.listener, path, id, headers, body);
    assert_eq!(direct.status, 200, "{id}: {:?}", direct.body());
    assert_eq!(through.status, 200, "{id}: {:?}", through.body());
    assert!(
        through.body_error.is_none(),
        "{id}: {:?}",
        through.body_error
    );
    assert_eq!(
        String::from_utf8_lossy(&through.body()),
        String::from_utf8_lossy(&direct.body()),
        "{id}: the client's body through the filter differs from the worker's direct answer"
    );
    envoy.access_log_entry(id, WAIT).unwrap()
}

#[test]
fn streams_that_do_not_ask_for_usage_get_the_workers_figures_and_the_same_bytes() {
    let (sim, envoy) = start("{}");
    let chat = |model: &str, options: &str| {
        format!(
            r#"{{"messages":[{{"role":"user","content":"count the tokens of this prompt please"}}],"model":"{model}","stream":true{options}}}"#
        )
    };
    let cases: Vec<(&str, &str, String, &str)> = vec![
        // (id, path, body, x-sim-tokens-per-chunk)
        ("plain", "/v1/chat/completions", chat("u-plain", ""), "1"),
        (
            "spec",
            "/v1/chat/completions",
            chat("u-spec", ""),
            "1,4,2,3",
        ),
        (
            "cmpl",
            "/v1/completions",
            r#"{"model":"u-cmpl","prompt":"one two three four five","stream":true}"#.to_string(),
            "1",
        ),
        (
            "false",
            "/v1/chat/completions",
            chat("u-false", r#","stream_options":{"include_usage":false}"#),
            "2",
        ),
        (
            "null",
            "/v1/chat/completions",
            chat("u-null", r#","stream_options":null"#),
            "1",
        ),
    ];
    let mut ttfts = Vec::new();
    for (id, path, body, k) in &cases {
        let headers = [("x-sim-tokens-per-chunk", *k), ("x-sim-tokens", "12")];
        let e = both_ways(&sim, &envoy, path, id, &headers, body);
        let truth_body = body.replace(r#","stream_options":{"include_usage":false}"#, "");
        let truth_body = truth_body.replace(r#","stream_options":null"#, "");
        let (prompt, completion) = worker_usage(sim.addr, path, &headers, &truth_body);
        eprintln!("{id}: access log {e}; worker usage prompt {prompt} completion {completion}");
        assert_the_workers_usage(id, &e, prompt, completion);
        ttfts.push(field_u64(&e, "ttft_us").unwrap());
    }

    // A client that asked for usage gets it, once, and the request is not changed.
    let asked = chat("u-asked", r#","stream_options":{"include_usage":true}"#);
    let e = both_ways(&sim, &envoy, "/v1/chat/completions", "asked", &[], &asked);
    assert_eq!(field(&e, "token_source").as_deref(), Some("usage"), "{e}");
    // Unary requests pass unchanged.
    let unary = r#"{"model":"u-unary","messages":[{"role":"user","content":"hi"}],"stream":false}"#;
    let direct = post(sim.addr, "/v1/chat/completions", "unary-direct", &[], unary);
    let through = post(envoy.listener, "/v1/chat/completions", "unary", &[], unary);
    assert_eq!(through.body(), direct.body());

    // The dashboard's mean TTFT (exact-sum counter over the histogram's count) is the access
    // log's mean for the same requests, to the microsecond.
    let models = ["u-plain", "u-spec", "u-cmpl", "u-false", "u-null"];
    let scrape = envoy
        .prometheus_when(WAIT, |s| {
            models.iter().all(|m| {
                s.value(
                    "llm_time_to_first_token_microseconds_count",
                    &[("model", m)],
                ) == Some(1.0)
            })
        })
        .unwrap();
    let sum: f64 = models
        .iter()
        .map(|m| {
            scrape
                .value(
                    "llm_time_to_first_token_microseconds_total",
                    &[("model", m)],
                )
                .unwrap()
        })
        .sum();
    let log_sum: u64 = ttfts.iter().sum();
    assert_eq!(sum, log_sum as f64, "exact TTFT sum vs the access log's");
    let quantized = scrape.sum("llm_time_to_first_token_microseconds_sum", &[]);
    eprintln!("TTFT sum: exact counter {sum} µs, access log {log_sum} µs, histogram _sum {quantized:.0} µs (all requests)");
}

#[test]
fn continuous_usage_counts_every_token_of_uneven_chunks() {
    // `continuous` against `off` (the figures before), the same worker, in one run.
    let sim = sim::spawn(SimConfig::default()).expect("gpu-sim starts");
    let envoy_for = |config: &str| {
        let mut opts = EnvoyOptions::new(sim.addr);
        opts.plugin_config = config.to_string();
        Envoy::start(&opts).expect("Envoy starts")
    };
    let continuous = envoy_for(r#"{"usage_stats":"continuous"}"#);
    let off = envoy_for(r#"{"usage_stats":"off"}"#);
    let body =
        r#"{"messages":[{"role":"user","content":"speculate"}],"model":"u-k14","stream":true}"#;
    // 40 tokens in chunks of 1, 4, 2, 3 tokens (speculative decoding), 15 ms per token.
    let headers = [
        ("x-sim-tokens", "40"),
        ("x-sim-tokens-per-chunk", "1,4,2,3"),
        ("x-sim-itl-ms", "15"),
    ];
    let mut seen = Vec::new();
    for (name, envoy) in [("continuous", &continuous), ("off", &off)] {
        let direct = post(
            sim.addr,
            "/v1/chat/completions",
            "k14-direct",
            &headers,
            body,
        );
        let id = format!("k14-{name}");
        let r = post(envoy.listener, "/v1/chat/completions", &id, &headers, body);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body(),
            direct.body(),
            "{name}: body differs from the direct one"
        );
        // Per-token ITL by the worker's own send times as the client saw them: the span from
        // the first token event to the last over the tokens after the first event's one.
        let token_times: Vec<Duration> = r
            .events()
            .into_iter()
            .filter(|(_, d)| d.contains("\"content\":\"") && !d.contains("\"content\":\"\""))
            .map(|(at, _)| at)
            .collect();
        let span = (*token_times.last().unwrap() - token_times[0]).as_micros() as f64;
        let client_itl = span / 39.0;
        let e = envoy.access_log_entry(&id, WAIT).unwrap();
        let scrape = envoy
            .prometheus_when(WAIT, |s| {
                s.value("llm_output_sequence_tokens_count", &[("model", "u-k14")]) == Some(1.0)
            })
            .unwrap();
        let tokens = scrape.value("llm_output_tokens_total", &[("model", "u-k14")]);
        let samples = scrape.value(
            "llm_inter_token_latency_microseconds_count",
            &[("model", "u-k14")],
        );
        let itl = field_u64(&e, "itl_avg_us").unwrap() as f64;
        eprintln!(
            "{name}: output_tokens_total {tokens:?}, ITL samples {samples:?}, itl_avg_us {itl} (client per token {client_itl:.0} µs), input {:?}, source {:?}",
            field(&e, "input_tokens"),
            field(&e, "token_source")
        );
        seen.push((tokens, samples, itl, client_itl));
    }
    let (tokens, samples, itl, client_itl) = seen[0];
    assert_eq!(
        tokens,
        Some(40.0),
        "continuous: every token counted as it streams"
    );
    assert_eq!(
        samples,
        Some(39.0),
        "continuous: one ITL sample per token after the first"
    );
    assert!(
        (itl - client_itl).abs() <= client_itl * 0.05,
        "continuous: ITL {itl} µs vs the client's {client_itl:.0} µs per token"
    );
    // Without usage each chunk counts as one token: what the filter did before.
    let (tokens_off, samples_off, itl_off, _) = seen[1];
    assert_eq!(tokens_off, Some(16.0), "off: one token per chunk");
    assert_eq!(samples_off, Some(15.0));
    assert!(itl_off > 2.0 * client_itl, "off: ITL {itl_off} µs");
}

#[test]
fn a_four_mib_prompt_passes_and_its_tokens_are_the_workers() {
    let (sim, envoy) = start("{}");
    let prompt = "tok ".repeat(1 << 20); // 4 MiB of words
    let body = format!(
        r#"{{"messages":[{{"role":"user","content":"{prompt}"}}],"model":"u-big","stream":true}}"#
    );
    let e = both_ways(&sim, &envoy, "/v1/chat/completions", "big", &[], &body);
    let (prompt_tokens, completion) = worker_usage(sim.addr, "/v1/chat/completions", &[], &body);
    assert!(prompt_tokens > 500_000, "{prompt_tokens}");
    assert_eq!(field_u64(&e, "input_tokens"), Some(prompt_tokens), "{e}");
    assert_eq!(field_u64(&e, "output_tokens"), Some(completion), "{e}");
}

#[test]
fn a_worker_that_refuses_the_field_costs_one_request() {
    let (sim, envoy) = start("{}");
    let strict = [("x-sim-refuse-stream-options", "1")];
    let body = r#"{"messages":[{"role":"user","content":"hi"}],"model":"u-strict","stream":true}"#;
    let direct = post(
        sim.addr,
        "/v1/chat/completions",
        "strict-direct",
        &strict,
        body,
    );
    assert_eq!(direct.status, 200, "the request passes without the filter");
    let first = post(
        envoy.listener,
        "/v1/chat/completions",
        "strict-0",
        &strict,
        body,
    );
    assert_eq!(first.status, 400, "the one request the refusal costs");
    for i in 1..4 {
        let id = format!("strict-{i}");
        let r = post(envoy.listener, "/v1/chat/completions", &id, &strict, body);
        assert_eq!(r.status, 200, "{id}");
        assert_eq!(r.body(), direct.body(), "{id}");
        let e = envoy.access_log_entry(&id, WAIT).unwrap();
        assert_eq!(field(&e, "token_source").as_deref(), Some("counted"), "{e}");
    }
    let scrape = envoy
        .prometheus_when(WAIT, |s| {
            s.value("llm_usage_stats_refused", &[("cluster", "workers")]) == Some(1.0)
        })
        .unwrap();
    assert_eq!(
        scrape.value("llm_usage_stats_refused", &[("cluster", "workers")]),
        Some(1.0)
    );
    let lines = envoy
        .log()
        .lines()
        .filter(|l| l.contains("not asking it for usage any more"))
        .count();
    assert_eq!(lines, 1, "said once in Envoy's log:\n{}", envoy.log());
}

/// The same edits over an HTTP/2 upstream (Envoy speaks h2c to gpu-sim): the edited request is
/// framed by DATA frames with no `content-length`, the answer's usage event is cut as over
/// HTTP/1.1, and the client's bytes are the direct ones, a 4 MiB prompt included.
#[test]
fn an_http2_upstream_gets_a_well_framed_edit() {
    let sim = sim::spawn(SimConfig::default()).expect("gpu-sim starts");
    let mut opts = EnvoyOptions::new(sim.addr);
    opts.plugin_config = r#"{"usage_stats":"continuous"}"#.to_string();
    opts.yaml_patches = vec![(
        "    - name: workers\n      type: STATIC\n".to_string(),
        "    - name: workers\n      type: STATIC\n      typed_extension_protocol_options:\n        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n          \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n          explicit_http_config:\n            http2_protocol_options: {}\n".to_string(),
    )];
    let envoy = Envoy::start(&opts).expect("Envoy starts");
    let prompt = "tok ".repeat(1 << 20);
    let cases = [
        (
            "h2-chat",
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"over h2"}],"model":"u-h2","stream":true}"#
                .to_string(),
        ),
        (
            "h2-cmpl",
            "/v1/completions",
            r#"{"model":"u-h2","prompt":"one two three","stream":true,"stream_options":{"include_usage":false}}"#
                .to_string(),
        ),
        (
            "h2-big",
            "/v1/chat/completions",
            format!(
                r#"{{"messages":[{{"role":"user","content":"{prompt}"}}],"model":"u-h2","stream":true}}"#
            ),
        ),
    ];
    let headers = [
        ("x-sim-tokens-per-chunk", "1,4,2,3"),
        ("x-sim-tokens", "20"),
    ];
    for (id, path, body) in &cases {
        let e = both_ways(&sim, &envoy, path, id, &headers, body);
        let truth = body.replace(r#","stream_options":{"include_usage":false}"#, "");
        let (prompt_tokens, completion) = worker_usage(sim.addr, path, &headers, &truth);
        eprintln!("{id}: {e}");
        assert_the_workers_usage(id, &e, prompt_tokens, completion);
    }
    // Envoy did speak HTTP/2 to the worker.
    let stats = envoy
        .admin_get("/stats?filter=cluster.workers.upstream_cx_http")
        .unwrap();
    let h2 = stats
        .lines()
        .find_map(|l| l.strip_prefix("cluster.workers.upstream_cx_http2_total: "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(matches!(h2, Some(n) if n >= 1), "{stats}");
}
