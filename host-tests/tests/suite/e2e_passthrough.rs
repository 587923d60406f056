//! The filter never changes what the client receives: the same requests through Envoy with
//! and without llm-pulse (and straight to the worker) give byte-identical bodies and statuses.

use host_tests::envoy::{Envoy, EnvoyOptions};
use host_tests::sim::client::request_blocking;
use host_tests::sim::{self, SimConfig};
use std::net::SocketAddr;

fn fetch(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<u8>, bool) {
    // A fixed answer id: gpu-sim's is a hash of the body, which the usage edit changes.
    let mut h = vec![
        ("content-type", "application/json"),
        ("x-sim-id", "cmpl-fixed"),
    ];
    h.extend_from_slice(headers);
    let r = request_blocking(addr, "POST", path, &h, body.to_string()).expect("request");
    (r.status, r.body().to_vec(), r.body_error.is_some())
}

#[test]
fn bodies_are_identical_with_and_without_the_filter() {
    let sim = sim::spawn(SimConfig {
        ttft: std::time::Duration::from_millis(20),
        itl: std::time::Duration::from_millis(2),
        ..SimConfig::default()
    })
    .unwrap();
    let with = Envoy::start(&EnvoyOptions::new(sim.addr)).unwrap();
    let without = Envoy::start(&EnvoyOptions {
        with_filter: false,
        ..EnvoyOptions::new(sim.addr)
    })
    .unwrap();

    let chat = "/v1/chat/completions";
    type Headers = Vec<(&'static str, &'static str)>;
    let cases: Vec<(&str, Headers, String)> = vec![
        (chat, vec![], r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#.into()),
        (chat, vec![("x-sim-tokens-per-chunk", "3")], r#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}"#.into()),
        ("/v1/completions", vec![], r#"{"model":"m","prompt":"a b c","stream":true}"#.into()),
        ("/v1/completions", vec![], r#"{"model":"m","prompt":[1,2,3]}"#.into()),
        (chat, vec![], r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#.into()),
        (chat, vec![("x-sim-fail-status", "500")], r#"{"model":"m","stream":true}"#.into()),
        (chat, vec![("x-sim-error-after", "2")], r#"{"model":"m","stream":true}"#.into()),
        (chat, vec![("x-sim-unary-garbage", "1")], r#"{"model":"m"}"#.into()),
        (chat, vec![], format!(r#"{{"model":"big","messages":[{{"role":"user","content":"{}"}}],"stream":true}}"#, "word ".repeat(40_000))),
        (chat, vec![], "not json at all".into()),
    ];
    for (path, headers, body) in &cases {
        let direct = fetch(sim.addr, path, headers, body);
        let a = fetch(with.listener, path, headers, body);
        let b = fetch(without.listener, path, headers, body);
        assert_eq!(a, b, "{path} {headers:?}: with vs without the filter");
        assert_eq!(a.0, direct.0, "{path} {headers:?}: status vs the worker's");
        assert_eq!(a.1, direct.1, "{path} {headers:?}: body vs the worker's");
        assert!(!a.1.is_empty() || a.0 != 200, "{path}: empty body");
    }
    // And the filter did measure them (it was really there).
    let scrape = with
        .prometheus_when(std::time::Duration::from_secs(10), |s| {
            s.sum("llm_requests_total", &[]) >= cases.len() as f64
        })
        .unwrap();
    assert_eq!(scrape.sum("llm_requests_total", &[]), cases.len() as f64);
    assert_eq!(
        without.prometheus().unwrap().sum("llm_requests_total", &[]),
        0.0
    );
}
