//! gpu-sim: response shapes, timing, determinism and the side endpoints.

use std::time::Duration;

use host_tests::sim::client::{request, request_blocking, Recorded};
use host_tests::sim::{self, count_words, Flavor, SimConfig, SimHandle};
use serde_json::{json, Value};

fn cfg(ttft_ms: u64, itl_ms: u64, tokens: u32, per_chunk: u32) -> SimConfig {
    SimConfig {
        ttft: Duration::from_millis(ttft_ms),
        itl: Duration::from_millis(itl_ms),
        tokens,
        tokens_per_chunk: per_chunk,
        ..SimConfig::default()
    }
}

async fn start(cfg: SimConfig) -> SimHandle {
    sim::start("127.0.0.1:0".parse().expect("addr"), cfg)
        .await
        .expect("sim starts")
}

async fn post(sim: &SimHandle, path: &str, headers: &[(&str, &str)], body: &Value) -> Recorded {
    request(sim.addr, "POST", path, headers, body.to_string())
        .await
        .expect("request")
}

/// SSE payloads as JSON, `[DONE]` excluded, with arrival times.
fn json_events(rec: &Recorded) -> Vec<(Duration, Value)> {
    rec.events()
        .into_iter()
        .filter(|(_, data)| data != "[DONE]")
        .map(|(at, data)| (at, serde_json::from_str(&data).expect("event is JSON")))
        .collect()
}

fn expected_text(from: u32, to: u32) -> String {
    (from..to).map(|i| format!(" t{i}")).collect()
}

#[tokio::test]
async fn chat_stream_has_role_chunk_tokens_in_chunks_usage_and_done() {
    let sim = start(cfg(400, 10, 7, 3)).await;
    let body = json!({
        "model": "m1", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": "say  hello\tto me"}],
    });
    let rec = post(&sim, "/v1/chat/completions", &[], &body).await;
    assert_eq!(rec.status, 200);
    assert_eq!(
        rec.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    assert!(rec.body_error.is_none());
    assert!(rec.body().ends_with(b"\n\ndata: [DONE]\n\n"));
    let prompt = count_words("be brief") + count_words("say  hello\tto me");
    assert_eq!(prompt, 6);

    let events = json_events(&rec);
    // role + ceil(7/3) token chunks + usage
    assert_eq!(events.len(), 1 + 3 + 1, "{events:?}");
    let id = events[0].1["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("chatcmpl-") && id.len() == 9 + 16, "{id}");
    let created = events[0].1["created"].clone();

    let (role_at, role) = &events[0];
    assert_eq!(
        role,
        &json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": "m1",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                             "logprobs": null, "finish_reason": null}],
                "usage": null})
    );
    let sizes = [3, 3, 1];
    let mut sent = 0;
    for (n, (at, ev)) in events[1..4].iter().enumerate() {
        let last = n == 2;
        let mut choice = json!({"index": 0,
            "delta": {"content": expected_text(sent, sent + sizes[n])},
            "logprobs": null, "finish_reason": if last { json!("length") } else { Value::Null }});
        if last {
            choice["stop_reason"] = Value::Null;
        }
        assert_eq!(
            ev,
            &json!({"id": id, "object": "chat.completion.chunk", "created": created,
                    "model": "m1", "choices": [choice], "usage": null})
        );
        sent += sizes[n];
        // Absolute schedule: chunk n is due at TTFT + n*k*ITL after arrival.
        let due = Duration::from_millis(400 + 10 * 3 * n as u64);
        assert!(*at >= due, "chunk {n} arrived at {at:?}, due {due:?}");
    }
    // First byte is not first token: the role chunk is sent on arrival, the first token at
    // TTFT (400 ms: ample room for a loopback write, even on a loaded machine).
    assert!(
        *role_at < Duration::from_millis(400),
        "role chunk at {role_at:?}"
    );
    assert_eq!(
        events[4].1,
        json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": "m1",
               "choices": [],
               "usage": {"prompt_tokens": 6, "total_tokens": 13, "completion_tokens": 7}})
    );
    // Generous sanity bound only: no assertion on how fast the machine is.
    assert!(events[4].0 < Duration::from_secs(10));
    sim.shutdown().await;
}

#[tokio::test]
async fn chat_stream_without_usage_has_no_usage_field() {
    let sim = start(cfg(0, 0, 2, 1)).await;
    let rec = post(&sim, "/v1/chat/completions", &[], &json!({"stream": true})).await;
    let events = json_events(&rec);
    assert_eq!(events.len(), 3);
    for (_, ev) in &events {
        assert!(ev.get("usage").is_none(), "{ev}");
        assert_eq!(ev["model"], "sim-model");
    }
    assert_eq!(rec.events().last().map(|e| e.1.as_str()), Some("[DONE]"));
}

#[tokio::test]
async fn continuous_usage_stats_give_running_counts() {
    let sim = start(cfg(5, 1, 5, 2)).await;
    let body = json!({"stream": true, "messages": [{"role": "user", "content": "one two three"}],
        "stream_options": {"include_usage": true, "continuous_usage_stats": true}});
    let rec = post(
        &sim,
        "/v1/chat/completions",
        &[("x-sim-cached-tokens", "2")],
        &body,
    )
    .await;
    let events = json_events(&rec);
    let running: Vec<_> = events.iter().map(|(_, e)| e["usage"].clone()).collect();
    let usage = |c: u32| json!({"prompt_tokens": 3, "total_tokens": 3 + c, "completion_tokens": c});
    let mut final_usage = usage(5);
    final_usage["prompt_tokens_details"] = json!({"cached_tokens": 2});
    assert_eq!(
        running,
        vec![usage(0), usage(2), usage(4), usage(5), final_usage]
    );
    assert_eq!(events[4].1["choices"], json!([]));
}

#[tokio::test]
async fn completions_stream_has_no_role_chunk() {
    let sim = start(cfg(50, 5, 4, 1)).await;
    let body = json!({"model": "m2", "stream": true, "prompt": [1, 2, 3, 4, 5],
                      "stream_options": {"include_usage": true}});
    let rec = post(&sim, "/v1/completions", &[], &body).await;
    assert_eq!(rec.status, 200);
    let events = json_events(&rec);
    assert_eq!(events.len(), 4 + 1);
    let id = events[0].1["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("cmpl-") && id.len() == 5 + 16, "{id}");
    for (n, (at, ev)) in events[..4].iter().enumerate() {
        let last = n == 3;
        assert_eq!(
            ev,
            &json!({"id": id, "object": "text_completion", "created": ev["created"],
                    "model": "m2",
                    "choices": [{"index": 0, "text": format!(" t{n}"), "logprobs": null,
                                 "finish_reason": if last { json!("length") } else { Value::Null },
                                 "stop_reason": null}],
                    "usage": null})
        );
        assert!(*at >= Duration::from_millis(50 + 5 * n as u64));
    }
    assert_eq!(
        events[4].1["usage"],
        json!({"prompt_tokens": 5, "total_tokens": 9, "completion_tokens": 4})
    );
    assert_eq!(events[4].1["object"], "text_completion");
}

#[tokio::test]
async fn unary_chat_and_completion_shapes() {
    let sim = start(cfg(40, 10, 4, 1)).await;
    let chat = post(
        &sim,
        "/v1/chat/completions",
        &[],
        &json!({"messages": [{"role": "user", "content": "a b c"}], "max_tokens": 3}),
    )
    .await;
    assert_eq!(chat.status, 200);
    assert_eq!(chat.headers["content-type"], "application/json");
    let v = chat.json().expect("json");
    assert_eq!(
        v,
        json!({"id": v["id"], "object": "chat.completion", "created": v["created"],
               "model": "sim-model",
               "choices": [{"index": 0,
                            "message": {"role": "assistant", "content": " t0 t1 t2",
                                        "tool_calls": []},
                            "logprobs": null, "finish_reason": "length", "stop_reason": null}],
               "usage": {"prompt_tokens": 3, "total_tokens": 6, "completion_tokens": 3,
                         "prompt_tokens_details": null}})
    );
    // Unary answers when the last token is done: TTFT + (N-1) x ITL.
    assert!(chat.frames[0].0 >= Duration::from_millis(40 + 2 * 10));

    let cmpl = post(
        &sim,
        "/v1/completions",
        &[("x-sim-cached-tokens", "1")],
        &json!({"prompt": "x y", "model": "m3"}),
    )
    .await;
    let v = cmpl.json().expect("json");
    assert_eq!(
        v,
        json!({"id": v["id"], "object": "text_completion", "created": v["created"],
               "model": "m3",
               "choices": [{"index": 0, "text": expected_text(0, 4), "logprobs": null,
                            "finish_reason": "length", "stop_reason": null}],
               "usage": {"prompt_tokens": 2, "total_tokens": 6, "completion_tokens": 4,
                         "prompt_tokens_details": {"cached_tokens": 1}}})
    );
    assert!(v["id"].as_str().expect("id").starts_with("cmpl-"));
}

#[tokio::test]
async fn same_body_gives_same_bytes() {
    let sim = start(cfg(1, 1, 5, 2)).await;
    let body = json!({"stream": true, "messages": [{"role": "user", "content": "hi"}],
                      "stream_options": {"include_usage": true}});
    let a = post(&sim, "/v1/chat/completions", &[], &body).await;
    let b = post(&sim, "/v1/chat/completions", &[], &body).await;
    assert_eq!(a.body(), b.body());
    let unary = json!({"prompt": "p"});
    let c = post(&sim, "/v1/completions", &[], &unary).await;
    let d = post(&sim, "/v1/completions", &[], &unary).await;
    assert_eq!(c.body(), d.body());
    // A second sim in the same process agrees too.
    let other = start(cfg(1, 1, 5, 2)).await;
    let e = post(&other, "/v1/chat/completions", &[], &body).await;
    assert_eq!(a.body(), e.body());
    // A different body gets a different id.
    let f = post(&sim, "/v1/completions", &[], &json!({"prompt": "q"})).await;
    assert_ne!(c.json().expect("json")["id"], f.json().expect("json")["id"]);
}

#[tokio::test]
async fn headers_beat_body_beat_config() {
    let sim = start(cfg(0, 0, 6, 1)).await;
    let count = |rec: &Recorded| rec.json().expect("json")["usage"]["completion_tokens"].clone();
    let p = "/v1/completions";
    assert_eq!(count(&post(&sim, p, &[], &json!({})).await), 6);
    assert_eq!(
        count(&post(&sim, p, &[], &json!({"max_tokens": 2})).await),
        2
    );
    let hdr = [("x-sim-tokens", "3")];
    assert_eq!(
        count(&post(&sim, p, &hdr, &json!({"max_tokens": 2})).await),
        3
    );

    // Timing headers: the first token of this stream cannot come before 150 ms.
    let timing = [
        ("x-sim-ttft-ms", "150"),
        ("x-sim-itl-ms", "20"),
        ("x-sim-tokens-per-chunk", "2"),
    ];
    let rec = post(&sim, p, &timing, &json!({"stream": true, "max_tokens": 4})).await;
    let events = json_events(&rec);
    assert_eq!(events.len(), 2);
    assert!(events[0].0 >= Duration::from_millis(150));
    assert!(events[1].0 >= Duration::from_millis(150 + 40));
}

#[tokio::test]
async fn models_health_stats_and_not_found() {
    let sim = start(SimConfig {
        model: "llama-sim".into(),
        ..cfg(0, 0, 1, 1)
    })
    .await;
    let models = request(sim.addr, "GET", "/v1/models", &[], "")
        .await
        .expect("models");
    let v = models.json().expect("json");
    assert_eq!(
        v,
        json!({"object": "list", "data": [{"id": "llama-sim", "object": "model",
               "created": v["data"][0]["created"], "owned_by": "vllm", "root": "llama-sim",
               "parent": null, "max_model_len": 4096}]})
    );
    let health = request(sim.addr, "GET", "/health", &[], "")
        .await
        .expect("health");
    assert_eq!(health.status, 200);
    assert!(health.body().is_empty());
    let missing = request(sim.addr, "GET", "/v2/nothing?x=1", &[], "")
        .await
        .expect("404");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json().expect("json")["type"], "NotFoundError");
    // The right path with the wrong method is not served either.
    let wrong = request(sim.addr, "GET", "/v1/chat/completions", &[], "")
        .await
        .expect("404");
    assert_eq!(wrong.status, 404);
    post(&sim, "/v1/chat/completions", &[], &json!({})).await;
    request(sim.addr, "GET", "/health", &[], "")
        .await
        .expect("health");

    let stats = request(sim.addr, "GET", "/sim/stats", &[], "")
        .await
        .expect("stats");
    let v = stats.json().expect("json");
    assert_eq!(
        v["requests"],
        json!({"/v1/models": 1, "/health": 2, "/v2/nothing": 1, "/v1/chat/completions": 2})
    );
    assert_eq!(v["inflight"], 0);
    // The request log (added later) has the same paths; the snapshot survives JSON.
    let keys = |o: &Value| {
        o.as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&v["log"]), keys(&v["requests"]));
    let parsed: sim::StatsSnapshot = serde_json::from_value(v).expect("snapshot");
    assert_eq!(parsed, sim.stats());
    assert_eq!(sim.stats().requests.get("/health"), Some(&2));
}

#[tokio::test]
async fn update_config_applies_to_new_requests() {
    let sim = start(cfg(0, 0, 2, 1)).await;
    sim.update_config(|c| {
        c.tokens = 5;
        c.model = "swapped".into();
    })
    .expect("valid config");
    let v = post(&sim, "/v1/completions", &[], &json!({}))
        .await
        .json()
        .expect("json");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(v["model"], "swapped");
    assert!(sim.update_config(|c| c.tokens_per_chunk = 0).is_err());
    assert_eq!(sim.config().tokens_per_chunk, 1);
}

#[test]
fn blocking_spawn_serves_and_stops_on_drop() {
    let sim = SimHandle::spawn_blocking(cfg(0, 0, 2, 1)).expect("spawn");
    let addr = sim.addr;
    assert!(sim.url().starts_with("http://127.0.0.1:"));
    let rec = request_blocking(
        addr,
        "POST",
        "/v1/chat/completions",
        &[],
        r#"{"stream":true}"#,
    )
    .expect("request");
    assert_eq!(rec.status, 200);
    assert_eq!(rec.events().len(), 1 + 2 + 1);
    drop(sim);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listener must be closed after drop"
    );
}

/// SGLang's meta_info keys, in SGLang's order (the finished output adds `e2e_latency`).
const META_KEYS: [&str; 7] = [
    "id",
    "finish_reason",
    "prompt_tokens",
    "weight_version",
    "total_retractions",
    "completion_tokens",
    "cached_tokens",
];

/// Asserts `keys` appear in `raw` in this order (serde_json::Value would sort them).
fn assert_key_order(raw: &str, keys: &[&str]) {
    let mut from = 0;
    for key in keys {
        let at = raw[from..]
            .find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("{key} missing or out of order in {raw}"));
        from += at + 1;
    }
}

fn is_hex32(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn generate_unary_has_sglang_shape() {
    let sim = start(cfg(40, 10, 4, 1)).await;
    let body =
        json!({"text": "a b  c", "sampling_params": {"max_new_tokens": 3, "temperature": 0}});
    let rec = post(&sim, "/generate", &[], &body).await;
    assert_eq!(rec.status, 200);
    assert_eq!(rec.headers["content-type"], "application/json");
    let raw = String::from_utf8(rec.body().to_vec()).expect("utf-8");
    assert!(
        raw.starts_with(r#"{"text":" t0 t1 t2","output_ids":[0,1,2],"meta_info":{"#),
        "{raw}"
    );
    let mut keys = META_KEYS.to_vec();
    keys.push("e2e_latency");
    assert_key_order(&raw, &keys);
    let v = rec.json().expect("json");
    let id = v["meta_info"]["id"].as_str().expect("id").to_owned();
    assert!(is_hex32(&id), "{id}");
    let latency = v["meta_info"]["e2e_latency"].as_f64().expect("e2e_latency");
    assert_eq!(
        v,
        json!({"text": " t0 t1 t2", "output_ids": [0, 1, 2],
               "meta_info": {"id": id, "finish_reason": {"type": "length", "length": 3},
                             "prompt_tokens": 3, "weight_version": "default",
                             "total_retractions": 0, "completion_tokens": 3,
                             "cached_tokens": 0, "e2e_latency": latency}})
    );
    // Answered when the last token is done: TTFT + (N-1) x ITL; e2e_latency says as much.
    assert!(rec.frames[0].0 >= Duration::from_millis(40 + 2 * 10));
    assert!((0.06..30.0).contains(&latency), "{latency}");

    // Token ids, a request id, cached tokens, the config's token count.
    let rec = post(
        &sim,
        "/generate",
        &[("x-sim-cached-tokens", "1")],
        &json!({"input_ids": [1], "rid": "probe-1", "sampling_params": {"temperature": 0}}),
    )
    .await;
    let m = rec.json().expect("json")["meta_info"].clone();
    assert_eq!(m["id"], "probe-1");
    assert_eq!(m["prompt_tokens"], 1);
    assert_eq!(m["completion_tokens"], 4);
    assert_eq!(m["cached_tokens"], 1);
    assert_eq!(m["finish_reason"], json!({"type": "length", "length": 4}));

    // max_new_tokens 0 (prefill only): no text, finished at once.
    let rec = post(
        &sim,
        "/generate",
        &[],
        &json!({"input_ids": [1, 2], "sampling_params": {"max_new_tokens": 0}}),
    )
    .await;
    let v = rec.json().expect("json");
    assert_eq!(v["text"], "");
    assert_eq!(v["output_ids"], json!([]));
    assert_eq!(v["meta_info"]["completion_tokens"], 0);
    assert_eq!(
        v["meta_info"]["finish_reason"],
        json!({"type": "length", "length": 0})
    );
    assert_eq!(sim.stats().requests.get("/generate"), Some(&3));
}

#[tokio::test]
async fn generate_stream_sends_cumulative_text_then_done() {
    let sim = start(cfg(200, 10, 5, 2)).await;
    let body = json!({"input_ids": [1, 2, 3], "stream": true,
                      "sampling_params": {"max_new_tokens": 5, "temperature": 0}});
    let rec = post(&sim, "/generate", &[], &body).await;
    assert_eq!(rec.status, 200);
    assert_eq!(
        rec.headers["content-type"],
        "text/event-stream; charset=utf-8"
    );
    assert!(rec.body_error.is_none());
    assert!(rec.body().ends_with(b"\n\ndata: [DONE]\n\n"));
    let raw_events = rec.events();
    // ceil(5/2) token chunks and [DONE]; no role chunk, no usage event.
    assert_eq!(raw_events.len(), 3 + 1, "{raw_events:?}");
    let events = json_events(&rec);
    let id = events[0].1["meta_info"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(is_hex32(&id), "{id}");
    let counts = [2, 4, 5];
    for (n, (at, ev)) in events.iter().enumerate() {
        let k = counts[n];
        let last = n == 2;
        let mut meta = json!({"id": id, "finish_reason": null, "prompt_tokens": 3,
            "weight_version": "default", "total_retractions": 0,
            "completion_tokens": k, "cached_tokens": 0});
        let mut keys = META_KEYS.to_vec();
        if last {
            meta["finish_reason"] = json!({"type": "length", "length": 5});
            let latency = ev["meta_info"]["e2e_latency"]
                .as_f64()
                .expect("e2e_latency");
            assert!(latency >= 0.2 + 0.03, "{latency}");
            meta["e2e_latency"] = json!(latency);
            keys.push("e2e_latency");
        }
        // Cumulative text and ids, not deltas.
        assert_eq!(
            ev,
            &json!({"text": expected_text(0, k), "output_ids": (0..k).collect::<Vec<u32>>(),
                    "meta_info": meta})
        );
        assert_key_order(&raw_events[n].1, &keys);
        // Same timing rules as the OpenAI endpoints: TTFT, then k x ITL per chunk.
        let due = Duration::from_millis(200 + 10 * 2 * n as u64);
        assert!(*at >= due, "chunk {n} arrived at {at:?}, due {due:?}");
    }
    assert_eq!(raw_events[3].1, "[DONE]");
}

#[tokio::test]
async fn generate_errors_are_sglang_shaped() {
    let sim = start(cfg(5, 1, 4, 1)).await;
    let message = |rec: &Recorded| {
        let v = rec.json().expect("json");
        assert_eq!(v.as_object().map(|o| o.len()), Some(1), "{v}");
        v["error"]["message"].as_str().expect("message").to_owned()
    };
    for bad in [
        json!({"sampling_params": {}}),
        json!({"text": "a", "input_ids": [1]}),
        json!({"text": "a", "sampling_params": {"max_new_tokens": -1}}),
        json!({"text": ["a", "b"]}),
    ] {
        let rec = post(&sim, "/generate", &[], &bad).await;
        assert_eq!(rec.status, 400, "{bad}");
        assert!(!message(&rec).is_empty());
    }
    let rec = post(
        &sim,
        "/generate",
        &[("x-sim-fail-status", "503")],
        &json!({"text": "a"}),
    )
    .await;
    assert_eq!(rec.status, 503);
    assert_eq!(message(&rec), "simulated failure");
    // In-stream engine failure after one token: SGLang's error event, then [DONE].
    let rec = post(
        &sim,
        "/generate",
        &[("x-sim-error-after", "1")],
        &json!({"text": "a", "stream": true}),
    )
    .await;
    let events: Vec<String> = rec.events().into_iter().map(|(_, d)| d).collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events[0].starts_with(r#"{"text":" t0","#));
    assert_eq!(
        events[1],
        r#"{"error":{"message":"simulated engine failure"}}"#
    );
    assert_eq!(events[2], "[DONE]");
    let rec = request(sim.addr, "GET", "/generate", &[], "")
        .await
        .expect("request");
    assert_eq!(rec.status, 404);
}

#[tokio::test]
async fn token_id_prompt_works_on_completions() {
    // The probe body trtllm-serve (and vLLM) accept: one BOS token id, one output token.
    let sim = start(cfg(5, 1, 4, 1)).await;
    let probe = json!({"model": "sim-model", "prompt": [1], "max_tokens": 1, "temperature": 0});
    let v = post(&sim, "/v1/completions", &[], &probe)
        .await
        .json()
        .expect("json");
    assert_eq!(v["choices"][0]["text"], " t0");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 1, "total_tokens": 2, "completion_tokens": 1,
               "prompt_tokens_details": null})
    );
}

#[tokio::test]
async fn trtllm_flavor_has_trtllm_serve_shapes() {
    let sim = start(SimConfig {
        flavor: Flavor::Trtllm,
        model: "trt".into(),
        ..cfg(5, 1, 3, 2)
    })
    .await;
    let probe = json!({"model": "trt", "prompt": [1], "max_tokens": 1, "temperature": 0});
    let rec = post(&sim, "/v1/completions", &[], &probe).await;
    assert_eq!(rec.status, 200);
    let v = rec.json().expect("json");
    let id = v["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("cmpl-") && is_hex32(&id[5..]), "{id}");
    assert_eq!(
        v,
        json!({"id": id, "object": "text_completion", "created": v["created"], "model": "trt",
               "choices": [{"index": 0, "text": " t0", "token_ids": null, "logprobs": null,
                            "context_logits": null, "finish_reason": "length",
                            "stop_reason": null, "disaggregated_params": null,
                            "avg_decoded_tokens_per_iter": null}],
               "usage": {"prompt_tokens": 1, "total_tokens": 2, "completion_tokens": 1,
                         "prompt_tokens_details": {"cached_tokens": 0}},
               "prompt_token_ids": null})
    );
    let raw = String::from_utf8(rec.body().to_vec()).expect("utf-8");
    assert_key_order(
        &raw,
        &[
            "id",
            "object",
            "created",
            "model",
            "choices",
            "usage",
            "prompt_token_ids",
        ],
    );

    // Streams: "usage": null on every chunk, even without stream_options.
    let rec = post(
        &sim,
        "/v1/completions",
        &[],
        &json!({"prompt": "x", "stream": true}),
    )
    .await;
    let events = json_events(&rec);
    assert_eq!(events.len(), 2);
    for (n, (_, ev)) in events.iter().enumerate() {
        let last = n == 1;
        assert_eq!(
            ev,
            &json!({"id": ev["id"], "object": "text_completion", "created": ev["created"],
                    "model": "trt",
                    "choices": [{"index": 0,
                                 "text": if last { expected_text(2, 3) } else { expected_text(0, 2) },
                                 "token_ids": null, "logprobs": null,
                                 "finish_reason": if last { json!("length") } else { Value::Null },
                                 "stop_reason": null, "avg_decoded_tokens_per_iter": null}],
                    "usage": null})
        );
    }
    assert_eq!(rec.events().last().map(|e| e.1.as_str()), Some("[DONE]"));
    let rec = post(
        &sim,
        "/v1/completions",
        &[("x-sim-cached-tokens", "1")],
        &json!({"prompt": "x y", "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    let events = json_events(&rec);
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].1["choices"], json!([]));
    assert_eq!(
        events[2].1["usage"],
        json!({"prompt_tokens": 2, "total_tokens": 5, "completion_tokens": 3,
               "prompt_tokens_details": {"cached_tokens": 1}})
    );

    let models = request(sim.addr, "GET", "/v1/models", &[], "")
        .await
        .expect("models")
        .json()
        .expect("json");
    assert_eq!(
        models,
        json!({"object": "list", "data": [{"id": "trt", "object": "model",
               "created": models["data"][0]["created"], "owned_by": "tensorrt_llm"}]})
    );
    // Chat keeps vLLM's shapes.
    let chat = post(&sim, "/v1/chat/completions", &[], &json!({"max_tokens": 1}))
        .await
        .json()
        .expect("json");
    assert_eq!(chat["usage"]["prompt_tokens_details"], Value::Null);
    assert!(chat["choices"][0].get("token_ids").is_none());
}

#[tokio::test]
async fn images_have_vllm_omni_shapes() {
    let sim = start(cfg(20, 5, 1, 1)).await;
    let probe = json!({"prompt": "test", "n": 1, "size": "512x512",
                       "num_inference_steps": 3, "response_format": "b64_json"});
    let rec = post(&sim, "/v1/images/generations", &[], &probe).await;
    assert_eq!(rec.status, 200);
    assert_eq!(rec.headers["content-type"], "application/json");
    // TTFT plus one ITL per denoising step.
    assert!(
        rec.frames[0].0 >= Duration::from_millis(35),
        "{:?}",
        rec.frames[0].0
    );
    let v = rec.json().unwrap();
    assert!(v["created"].as_u64().is_some());
    assert_eq!(v["size"], "512x512");
    assert_eq!(v["output_format"], "png");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["b64_json"], sim::images::PNG_B64);
    // The base64 of a PNG starts with the PNG signature's.
    assert!(sim::images::PNG_B64.starts_with("iVBORw0KGgo"));
    assert_eq!(data[0]["url"], Value::Null);
    assert_eq!(data[0]["revised_prompt"], Value::Null);
    let bad = post(&sim, "/v1/images/generations", &[], &json!({"n": 1})).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json().unwrap()["object"], "error");
}
