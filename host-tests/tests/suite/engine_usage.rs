//! Opt in, against a real engine (not part of `scripts/test`): the `usage_stats` edit through a
//! real Envoy in front of a worker we did not write. `host-tests/engines/through-envoy.sh`
//! starts llama.cpp's `llama-server` or `xpyd-sim` and runs this with
//! `LLM_PULSE_ENGINE_URL` (`http://127.0.0.1:PORT`) and `LLM_PULSE_ENGINE_MODEL`.
//!
//! Each request goes straight to the engine and through Envoy. The client's events must be the
//! same bytes both ways once what differs from run to run is masked (`id`, `created`,
//! `timings` figures, cached-token counts), or else differ only by the documented difference
//! (`"usage": null` members a worker sends unasked), which the test prints. The filter's token
//! figures must be the engine's own `usage`.

use host_tests::envoy::{Envoy, EnvoyOptions};
use host_tests::sim::client::{request_blocking, Recorded};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn engine() -> Option<(SocketAddr, String)> {
    let url = std::env::var("LLM_PULSE_ENGINE_URL").ok()?;
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let addr: SocketAddr = addr.parse().ok()?;
    let model = std::env::var("LLM_PULSE_ENGINE_MODEL").ok()?;
    Some((addr, model))
}

fn post(to: SocketAddr, path: &str, id: &str, body: &str) -> Recorded {
    let h = [("content-type", "application/json"), ("x-request-id", id)];
    let r = request_blocking(to, "POST", path, &h, body.to_string()).expect("request");
    assert_eq!(r.status, 200, "{id}: {:?}", r.body());
    assert!(r.body_error.is_none(), "{id}: {:?}", r.body_error);
    r
}

/// The events as JSON (`[DONE]` as a string), without what changes from run to run.
fn normalized(r: &Recorded, drop_documented: bool) -> Vec<Value> {
    r.events()
        .into_iter()
        .map(|(_, data)| {
            let mut v = serde_json::from_str::<Value>(&data).unwrap_or(Value::String(data));
            if let Some(o) = v.as_object_mut() {
                o.remove("id");
                o.remove("created");
                if let Some(t) = o.get_mut("timings") {
                    *t = Value::String("timings".into());
                }
                if let Some(u) = o.get_mut("usage").and_then(Value::as_object_mut) {
                    u.remove("prompt_tokens_details");
                }
                if drop_documented && o.get("usage") == Some(&Value::Null) {
                    o.remove("usage");
                }
            }
            v
        })
        .collect()
}

/// The body with the values that change from run to run masked (`id`, `created`, `timings`,
/// cached-token counts), byte for byte otherwise: member order and spacing included.
fn masked(body: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(body).into_owned();
    for key in [
        "\"id\":",
        "\"created\":",
        "\"timings\":",
        "\"cached_tokens\":",
    ] {
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(at) = rest.find(key) {
            let (before, after) = rest.split_at(at + key.len());
            out.push_str(before);
            out.push('#');
            rest = after.get(value_len(after)..).unwrap_or_default();
        }
        out.push_str(rest);
        text = out;
    }
    text
}

/// The length of the JSON value (string, number or object) that `text` starts with.
fn value_len(text: &str) -> usize {
    let b = text.as_bytes();
    match b.first() {
        Some(b'"') => {
            let mut i = 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            (i + 1).min(b.len())
        }
        Some(b'{') => {
            let mut depth = 0;
            for (i, c) in b.iter().enumerate() {
                match c {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
            }
            b.len()
        }
        _ => b
            .iter()
            .position(|c| !(c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'e' | b'E' | b'+')))
            .unwrap_or(b.len()),
    }
}

fn usage_of(r: &Recorded) -> Option<Value> {
    r.events()
        .into_iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(&d).ok())
        .find(|v| v["usage"].is_object())
        .map(|v| v["usage"].clone())
}

fn field_u64(entry: &Value, key: &str) -> Option<u64> {
    entry[key].as_str().and_then(|s| s.parse().ok())
}

#[test]
#[ignore = "needs a real engine: host-tests/engines/through-envoy.sh"]
fn a_real_engine_through_envoy_gives_the_same_answer_and_its_own_usage() {
    let Some((addr, model)) = engine() else {
        panic!("set LLM_PULSE_ENGINE_URL and LLM_PULSE_ENGINE_MODEL (host-tests/engines/through-envoy.sh)");
    };
    let envoy = Envoy::start(&EnvoyOptions::new(addr)).expect("Envoy starts");
    let chat = |options: &str| {
        format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"Write a short poem about proxies"}}],"max_tokens":8,"temperature":0,"stream":true{options}}}"#
        )
    };
    let cmpl = format!(
        r#"{{"model":"{model}","prompt":"Once upon a time","max_tokens":8,"temperature":0,"stream":true}}"#
    );
    let cases = [
        ("chat-none", "/v1/chat/completions", chat("")),
        (
            "chat-false",
            "/v1/chat/completions",
            chat(r#","stream_options":{"include_usage":false}"#),
        ),
        (
            "chat-null",
            "/v1/chat/completions",
            chat(r#","stream_options":null"#),
        ),
        ("cmpl-none", "/v1/completions", cmpl.clone()),
        (
            "chat-asked",
            "/v1/chat/completions",
            chat(r#","stream_options":{"include_usage":true}"#),
        ),
    ];
    let mut report = Vec::new();
    for (id, path, body) in &cases {
        let direct = post(addr, path, &format!("{id}-direct"), body);
        let through = post(envoy.listener, path, id, body);
        let (d, t) = (normalized(&direct, false), normalized(&through, false));
        let same_bytes = masked(&direct.body()) == masked(&through.body());
        let same_json = d == t;
        if !same_bytes {
            // Only the documented difference may remain.
            assert_eq!(
                normalized(&through, true),
                normalized(&direct, true),
                "{id}: the client's events differ beyond the documented differences"
            );
        }
        // The engine's own usage for this request: the same body, asking for it.
        let asking = body
            .replace(r#","stream_options":{"include_usage":false}"#, "")
            .replace(r#","stream_options":null"#, "")
            .replace(r#","stream_options":{"include_usage":true}"#, "")
            .replacen(
                r#""stream":true"#,
                r#""stream":true,"stream_options":{"include_usage":true}"#,
                1,
            );
        let truth = usage_of(&post(addr, path, &format!("{id}-truth"), &asking))
            .unwrap_or_else(|| panic!("{id}: the engine gave no usage when asked"));
        let e = envoy.access_log_entry(id, WAIT).expect("access log");
        let (prompt, completion) = (
            truth["prompt_tokens"].as_u64(),
            truth["completion_tokens"].as_u64(),
        );
        assert_eq!(field_u64(&e, "input_tokens"), prompt, "{id}: {e}");
        assert_eq!(field_u64(&e, "output_tokens"), completion, "{id}: {e}");
        assert_eq!(e["token_source"], "usage", "{id}: {e}");
        // The filter's TTFT is the engine's first token as Envoy saw it: not after the
        // client's own first token through Envoy.
        let client_ttft = through
            .events()
            .iter()
            .find(|(_, d)| {
                let v = serde_json::from_str::<Value>(d).unwrap_or_default();
                let c = &v["choices"][0];
                [&c["delta"]["content"], &c["text"]]
                    .iter()
                    .any(|t| t.as_str().is_some_and(|t| !t.is_empty()))
            })
            .map(|(at, _)| at.as_micros() as u64);
        let filter_ttft = field_u64(&e, "ttft_us");
        if let (Some(c), Some(f)) = (client_ttft, filter_ttft) {
            assert!(f <= c, "{id}: filter TTFT {f} µs after the client's {c} µs");
        }
        report.push(format!(
            "{id}: bytes (run-to-run values masked) {} / JSON {}; filter in {:?} out {:?} ttft {:?} µs (client {:?} µs); engine usage {truth}",
            if same_bytes { "same" } else { "differ" },
            if same_json { "same" } else { "differs (documented only)" },
            field_u64(&e, "input_tokens"),
            field_u64(&e, "output_tokens"),
            filter_ttft,
            client_ttft,
        ));
    }
    // A unary request passes unchanged (as JSON; ids and timings differ run to run).
    let unary = chat("").replace(r#""stream":true"#, r#""stream":false"#);
    let direct = post(addr, "/v1/chat/completions", "unary-direct", &unary);
    let through = post(envoy.listener, "/v1/chat/completions", "unary", &unary);
    let strip = |r: &Recorded| {
        let mut v = r.json().expect("unary JSON");
        if let Some(o) = v.as_object_mut() {
            for k in ["id", "created", "timings", "usage"] {
                o.remove(k);
            }
        }
        v
    };
    assert_eq!(strip(&through), strip(&direct));
    for line in &report {
        println!("{line}");
    }
}
