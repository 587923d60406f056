//! The health prober (docs/design.md, "Health probes") on the built `.wasm`, with the test clock:
//! every VM ticks, exactly one callout per interval and target, thresholds, the callout timeout
//! (Envoy's 504), model discovery, each backend's payload, the `/health` and `/live` local
//! replies, the per-target answer (`target_path`) and the fail-fast refusal.

use host_tests::artifacts::llm_pulse_host;
use std::time::Duration;

use anyhow::Result;
use llm_pulse_cases as cases;
use serde_json::Value;
use wasm_host::{Callout, Host, TIMEOUT_BODY};

const COMPLETION: &[u8] = br#"{"id":"c","object":"text_completion","choices":[{"index":0,"text":"x","finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;

/// These tests read the internals (`last_error`): `details` on.
fn config(targets: &str) -> String {
    format!(r#"{{"health":{{"details":true,"targets":[{targets}]}}}}"#)
}

fn target(name: &str, extra: &str) -> String {
    format!(
        r#"{{"name":"{name}","cluster":"workers","backend":"vllm","model":"m","interval":"1s","timeout":"300ms"{extra}}}"#
    )
}

fn start(vms: usize, targets: &str) -> Result<Host> {
    llm_pulse_host()?
        .plugin_config(config(targets))
        .vms(vms)
        .start()
}

fn checks(host: &Host, t: &str, result: &str) -> u64 {
    host.counter(&format!(
        "llm_health_checks_total.target=.={t};.;result=.={result};.;"
    ))
    .unwrap_or(0)
}

fn status_gauge(host: &Host, t: &str) -> Option<i64> {
    host.gauge(&format!("llm_health_status.target=.={t};.;"))
}

/// Advances until a new callout is pending (at most 5 s); returns it.
fn next_callout(host: &mut Host) -> Result<Callout> {
    for _ in 0..50 {
        if let Some(c) = host.pending_callouts().into_iter().next() {
            return Ok(c);
        }
        host.advance(Duration::from_millis(100))?;
    }
    anyhow::bail!("no callout within 5 s")
}

/// A local reply for `GET path`: (status, JSON body).
fn get(host: &mut Host, path: &str) -> Result<(u32, Value)> {
    let s = host.new_stream()?;
    host.send_request_headers(s, &[(":method", "GET"), (":path", path)], true)?;
    let rec = host.stream(s)?;
    let reply = rec.local_reply.clone().expect("a local reply");
    assert!(
        reply
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/json"),
        "{:?}",
        reply.headers
    );
    Ok((reply.status, serde_json::from_slice(&reply.body)?))
}

#[test]
fn four_vms_one_callout_per_interval_per_target() -> Result<()> {
    let targets = [
        target("w0", r#","mode":"always""#),
        target(
            "w1",
            r#","mode":"always","host":"10.0.0.7:8000","authority":"vllm.internal""#,
        ),
    ]
    .join(",");
    let mut host = start(4, &targets)?;
    for vm in 0..4 {
        assert_eq!(host.tick_period(vm), Some(Duration::from_millis(100)));
    }
    assert_eq!(
        status_gauge(&host, "w0"),
        Some(0),
        "not ready before a success"
    );
    let t0 = host.now_ns();
    // 10 s in tick steps, answering every probe 7 ms after it goes out.
    while host.now_ns() - t0 < 10_000_000_000 {
        let pending = host.pending_callouts();
        if pending.is_empty() {
            host.advance(Duration::from_millis(100))?;
            continue;
        }
        assert!(pending.iter().all(|c| c.dispatched_at_ns == host.now_ns()));
        host.advance(Duration::from_millis(7))?;
        for c in pending {
            host.respond_callout(c.id, 200, &[], COMPLETION)?;
        }
        host.advance(Duration::from_millis(93))?;
    }
    let all = host.callouts();
    for name in ["w0", "w1"] {
        let mine: Vec<&Callout> = all
            .iter()
            .filter(|c| {
                let to_w1 = c.header("x-envoy-original-dst-host").is_some();
                to_w1 == (name == "w1")
            })
            .collect();
        assert_eq!(mine.len(), 10, "{name}: one probe per second for 10 s");
        // One in each interval: [k s, (k+1) s).
        let mut seconds: Vec<u64> = mine
            .iter()
            .map(|c| (c.dispatched_at_ns - t0) / 1_000_000_000)
            .collect();
        seconds.sort();
        seconds.dedup();
        assert_eq!(seconds.len(), 10, "{name}: {seconds:?}");
        let vms: std::collections::BTreeSet<usize> = mine.iter().map(|c| c.id.vm).collect();
        println!("{name}: probes sent from VMs {vms:?}");
        assert_eq!(checks(&host, name, "success"), 10);
        assert_eq!(status_gauge(&host, name), Some(1));
        let d = host
            .histogram(&format!(
                "llm_health_check_duration_microseconds.target=.={name};.;"
            ))
            .unwrap();
        assert_eq!(d, vec![7_000; 10], "{name}: latency to the microsecond");
    }
    let c = all
        .iter()
        .find(|c| c.header("x-envoy-original-dst-host").is_some())
        .unwrap();
    assert_eq!(c.header("x-envoy-original-dst-host"), Some("10.0.0.7:8000"));
    assert_eq!(c.header(":authority"), Some("vllm.internal"));
    assert_eq!(c.cluster, "workers");
    assert_eq!(c.timeout, Some(Duration::from_millis(300)));
    assert_eq!(c.header(":method"), Some("POST"));
    assert_eq!(c.header("content-type"), Some("application/json"));
    Ok(())
}

#[test]
fn thresholds_flip_status_gauge_and_health_reply() -> Result<()> {
    let mut host = start(
        2,
        &target(
            "w0",
            r#","mode":"always","healthy_threshold":2,"unhealthy_threshold":3"#,
        ),
    )?;
    let probe = |host: &mut Host, status: u16, body: &[u8]| -> Result<(Option<i64>, u32)> {
        let c = next_callout(host)?;
        host.respond_callout(c.id, status, &[], body)?;
        let (code, _) = get(host, "/health")?;
        Ok((status_gauge(host, "w0"), code))
    };
    assert_eq!(probe(&mut host, 200, COMPLETION)?, (Some(0), 503));
    assert_eq!(probe(&mut host, 200, COMPLETION)?, (Some(1), 200));
    assert_eq!(probe(&mut host, 500, b"{}")?, (Some(1), 200));
    assert_eq!(probe(&mut host, 200, b"not json")?, (Some(1), 200));
    assert_eq!(probe(&mut host, 200, br#"{"choices":[]}"#)?, (Some(0), 503));
    assert_eq!(checks(&host, "w0", "failure"), 3);
    let (_, v) = get(&mut host, "/health")?;
    assert_eq!(v["targets"]["w0"]["consecutive_failures"], 3);
    assert_eq!(v["targets"]["w0"]["last_error"], "answer has no choices");
    assert_eq!(probe(&mut host, 200, COMPLETION)?, (Some(0), 503));
    assert_eq!(probe(&mut host, 200, COMPLETION)?, (Some(1), 200));
    Ok(())
}

#[test]
fn envoy_timeout_504_is_a_timeout_a_quick_504_is_not() -> Result<()> {
    let mut host = start(
        2,
        &target("w0", r#","mode":"always","unhealthy_threshold":1"#),
    )?;
    let c = next_callout(&mut host)?;
    host.respond_callout(c.id, 200, &[], COMPLETION)?;
    assert_eq!(status_gauge(&host, "w0"), Some(1));

    // Hung worker: nobody answers; the host answers at the timeout as Envoy does (504).
    let c = next_callout(&mut host)?;
    host.advance(Duration::from_millis(300))?;
    let answered = host.callout(c.id).unwrap();
    assert_ne!(answered.state, wasm_host::CalloutState::Pending);
    assert_eq!(checks(&host, "w0", "timeout"), 1);
    assert_eq!(status_gauge(&host, "w0"), Some(0));
    let d = host
        .histogram("llm_health_check_duration_microseconds.target=.=w0;.;")
        .unwrap();
    assert_eq!(d.last(), Some(&300_000));
    let (code, v) = get(&mut host, "/health")?;
    assert_eq!(code, 503);
    assert!(v["targets"]["w0"]["last_error"]
        .as_str()
        .unwrap()
        .starts_with("timeout"));

    // Envoy's 504 at 95 % of the timeout still counts as a timeout.
    let c = next_callout(&mut host)?;
    host.advance(Duration::from_millis(285))?;
    host.respond_callout(c.id, 504, &[], TIMEOUT_BODY)?;
    assert_eq!(checks(&host, "w0", "timeout"), 2);

    // The worker's own quick 504 is a failure.
    let c = next_callout(&mut host)?;
    host.advance(Duration::from_millis(20))?;
    host.respond_callout(c.id, 504, &[], b"gateway timeout")?;
    assert_eq!(checks(&host, "w0", "failure"), 1);

    // A reset / refused call (no headers) is a failure too.
    let c = next_callout(&mut host)?;
    host.advance(Duration::from_millis(2))?;
    host.fail_callout(c.id)?;
    assert_eq!(
        (
            checks(&host, "w0", "failure"),
            checks(&host, "w0", "timeout")
        ),
        (2, 2)
    );
    Ok(())
}

#[test]
fn the_model_is_discovered_first() -> Result<()> {
    let mut host = start(
        2,
        r#"{"name":"w0","cluster":"workers","backend":"vllm","interval":"1s","timeout":"300ms","mode":"always"}"#,
    )?;
    let c = next_callout(&mut host)?;
    assert_eq!(
        (c.header(":method"), c.header(":path"), c.body.as_slice()),
        (Some("GET"), Some("/v1/models"), &b""[..])
    );
    host.advance(Duration::from_millis(3))?;
    host.respond_callout(
        c.id,
        200,
        &[],
        br#"{"object":"list","data":[{"id":"llama-3"}]}"#,
    )?;
    let c = next_callout(&mut host)?;
    assert_eq!(c.header(":path"), Some("/v1/completions"));
    let body: Value = serde_json::from_slice(&c.body)?;
    assert_eq!(body["model"], "llama-3");
    host.advance(Duration::from_millis(4))?;
    host.respond_callout(c.id, 200, &[], COMPLETION)?;
    assert_eq!(checks(&host, "w0", "success"), 1);
    let (code, v) = get(&mut host, "/health")?;
    assert_eq!(
        (code, &v["targets"]["w0"]["model"]),
        (200, &Value::from("llama-3"))
    );
    // The next interval uses the known model directly.
    let c = next_callout(&mut host)?;
    assert_eq!(c.header(":path"), Some("/v1/completions"));
    Ok(())
}

#[test]
fn each_backend_sends_its_payload() -> Result<()> {
    let rows = cases::probe_payloads();
    let targets: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, (backend, extra, _, _))| {
            format!(
                r#"{{"name":"t{i}","cluster":"c{i}","backend":"{backend}","model":"m","mode":"always"{extra}}}"#
            )
        })
        .collect();
    let mut host = start(1, &targets.join(","))?;
    host.advance(Duration::from_secs(10))?;
    for (i, (backend, extra, path, body)) in rows.iter().enumerate() {
        let cluster = format!("c{i}");
        let mine: Vec<Callout> = host
            .callouts()
            .into_iter()
            .filter(|c| c.cluster == cluster)
            .collect();
        assert_eq!(mine.len(), 1, "{backend}{extra}");
        let c = &mine[0];
        assert_eq!(
            (c.header(":method"), c.header(":path")),
            (Some("POST"), Some(*path)),
            "{backend}{extra}"
        );
        assert_eq!(std::str::from_utf8(&c.body)?, *body, "{backend}{extra}");
        assert_eq!(c.header("user-agent"), Some("llm-pulse-health-probe"));
    }
    Ok(())
}

#[test]
fn health_and_live_local_replies() -> Result<()> {
    let targets = [
        target("a", r#","mode":"always""#),
        target("b", r#","mode":"always""#),
    ]
    .join(",");
    let mut host = start(2, &targets)?;
    host.advance(Duration::from_secs(5))?;
    let (code, v) = get(&mut host, "/live")?;
    assert_eq!(code, 200);
    assert_eq!(
        v,
        serde_json::json!({"status": "live", "uptime_seconds": 5})
    );
    // Both probes went out and timed out (nobody answered).
    let (code, v) = get(&mut host, "/health")?;
    assert_eq!(code, 503);
    assert_eq!(v["status"], "notready");
    assert_eq!(v["uptime_seconds"], 5);
    for t in ["a", "b"] {
        let tv = &v["targets"][t];
        assert_eq!(tv["status"], "notready");
        assert_eq!(tv["last_latency_ms"], 300.0);
        assert!(tv["consecutive_failures"].as_u64().unwrap() >= 1);
        assert!(tv["last_probe_unix_ms"].as_u64().is_some());
    }
    // Answer every pending and next probe: ready.
    for _ in 0..30 {
        for c in host.pending_callouts() {
            host.respond_callout(c.id, 200, &[], COMPLETION)?;
        }
        host.advance(Duration::from_millis(100))?;
    }
    let (code, v) = get(&mut host, "/health")?;
    assert_eq!((code, v["status"].as_str()), (200, Some("ready")));
    assert_eq!(v["targets"]["a"]["consecutive_failures"], 0);
    assert_eq!(
        v["targets"]["a"]["last_error"],
        "timeout: no answer within the probe timeout"
    );
    // Other paths pass through untouched; the health paths are not metered.
    let s = host.new_stream()?;
    host.send_request_headers(s, &[(":method", "GET"), (":path", "/v1/models")], true)?;
    assert!(host.stream(s)?.local_reply.is_none());
    assert!(host.metrics_named("llm_requests_total").is_empty());
    Ok(())
}

/// The shared-data record of target `t` (prefix `llm`), as bytes.
fn record(host: &Host, t: &str) -> Vec<u8> {
    host.shared_data()
        .get(&format!("llm_pulse.health.llm.{t}"))
        .map(|(v, _)| v.clone())
        .unwrap_or_default()
}

fn last_error(host: &Host, t: &str) -> String {
    let v: Value = serde_json::from_slice(&record(host, t)).unwrap_or(Value::Null);
    v["last_error"].as_str().unwrap_or_default().to_string()
}

/// `{"choices":[0,0,...]}` of at least `bytes` bytes: the attack pass's hostile answer (also
/// what e2e_health_hostile's worker sends).
pub(crate) fn hostile_answer(bytes: usize) -> Vec<u8> {
    let mut body = b"{\"choices\":[0".to_vec();
    while body.len() < bytes {
        body.extend_from_slice(b",0");
    }
    body.extend_from_slice(b"]}");
    body
}

/// A probe answer over `max_answer_bytes` (default 64 KiB) is a failure
/// whose error says so; not one of its bytes enters the VM, so VM memory after 100 such
/// answers is what it was after one (before the fix, each 30.5 MB answer was copied into the
/// VM and parsed into a tree: the linear memory grew by well over 30 MB and never shrank).
#[test]
fn oversized_answers_fail_unread_and_vm_memory_stays_flat() -> Result<()> {
    let mut host = start(1, &target("w0", r#","mode":"always""#))?;
    let c = next_callout(&mut host)?;
    host.respond_callout(c.id, 200, &[], COMPLETION)?;
    assert_eq!(checks(&host, "w0", "success"), 1);
    let read_before = host.call_response_bytes_read(0)?;
    assert_eq!(read_before, COMPLETION.len() as u64);
    let baseline = host.memory_size(0)?;

    let hostile = hostile_answer(30_500_000);
    let mut after_one = 0;
    for n in 1..=100 {
        let c = next_callout(&mut host)?;
        host.respond_callout(c.id, 200, &[], &hostile)?;
        if n == 1 {
            after_one = host.memory_size(0)?;
        }
    }
    let after_hundred = host.memory_size(0)?;
    println!(
        "VM memory: {baseline} B before, {after_one} B after 1, {after_hundred} B after 100 answers of {} B",
        hostile.len()
    );
    assert_eq!(checks(&host, "w0", "failure"), 100);
    assert_eq!(checks(&host, "w0", "success"), 1);
    assert_eq!(
        host.call_response_bytes_read(0)?,
        read_before,
        "no byte of an oversized answer was copied into the VM"
    );
    assert_eq!(after_hundred, after_one);
    assert_eq!(after_one, baseline, "not even one page more");
    assert_eq!(
        last_error(&host, "w0"),
        format!(
            "answer of {} bytes is over health.max_answer_bytes (65536); not read",
            hostile.len()
        )
    );
    assert_eq!(
        status_gauge(&host, "w0"),
        Some(0),
        "a hostile worker is not ready"
    );
    let (code, _) = get(&mut host, "/live")?;
    assert_eq!(code, 200);
    // A model list whose first id is not within the cap: discovery fails, at most the cap is
    // Read (only the first id is needed, so a long list is read up to it),
    // no probe goes out.
    let mut host = start(
        1,
        r#"{"name":"d","cluster":"workers","backend":"vllm","interval":"1s","timeout":"300ms","mode":"always"}"#,
    )?;
    let models = format!(r#"{{"data":[{{"id":"{}"}}]}}"#, "m".repeat(100_000));
    for _ in 0..3 {
        let c = next_callout(&mut host)?;
        assert_eq!(c.header(":path"), Some("/v1/models"));
        host.respond_callout(c.id, 200, &[], models.as_bytes())?;
    }
    assert_eq!(host.call_response_bytes_read(0)?, 3 * 65_536);
    assert_eq!(checks(&host, "d", "failure"), 3);
    assert_eq!(host.callouts().len(), 3, "no probe without a model");
    assert_eq!(
        last_error(&host, "d"),
        format!(
            "model discovery (GET /v1/models): no model id in the first 65536 bytes (health.max_answer_bytes) of an answer of {} bytes; set `model` in the config",
            models.len()
        )
    );
    Ok(())
}

/// A worker serving 1,800 LoRA adapters answers `GET /v1/models` with
/// ~150 KB, over the default `max_answer_bytes`; the target used never to become ready.
/// Discovery needs only the first id: it reads one 16 KiB piece and probes with it.
#[test]
fn a_long_model_list_is_read_only_to_its_first_id() -> Result<()> {
    let mut host = start(
        2,
        r#"{"name":"w0","cluster":"workers","backend":"vllm","interval":"1s","timeout":"300ms","mode":"always"}"#,
    )?;
    let mut data = vec![r#"{"id":"meta-llama/Llama-3.1-8B-Instruct","object":"model","created":1795000000,"owned_by":"vllm"}"#.to_string()];
    for i in 0..1_800 {
        data.push(format!(
            r#"{{"id":"lora-{i:04}","object":"model","created":1795000000,"owned_by":"vllm","parent":"m"}}"#
        ));
    }
    let list = format!(r#"{{"object":"list","data":[{}]}}"#, data.join(","));
    assert!(list.len() > 140_000, "{} bytes", list.len());
    let c = next_callout(&mut host)?;
    assert_eq!(c.header(":path"), Some("/v1/models"));
    let read_before: u64 = (0..2)
        .map(|vm| host.call_response_bytes_read(vm))
        .sum::<Result<u64>>()?;
    host.respond_callout(c.id, 200, &[], list.as_bytes())?;
    let read: u64 = (0..2)
        .map(|vm| host.call_response_bytes_read(vm))
        .sum::<Result<u64>>()?;
    assert!(
        read - read_before <= 16 * 1024,
        "{} bytes read of {}",
        read - read_before,
        list.len()
    );
    let c = next_callout(&mut host)?;
    assert_eq!(c.header(":path"), Some("/v1/completions"));
    let body: Value = serde_json::from_slice(&c.body)?;
    assert_eq!(body["model"], "meta-llama/Llama-3.1-8B-Instruct");
    host.respond_callout(c.id, 200, &[], COMPLETION)?;
    assert_eq!(checks(&host, "w0", "success"), 1);
    assert_eq!(status_gauge(&host, "w0"), Some(1));
    let (code, _) = get(&mut host, "/health")?;
    assert_eq!(code, 200, "ready");
    Ok(())
}

/// A 200 that is an error object or an aborted generation is a failure,
/// in each backend's own format.
#[test]
fn error_objects_and_aborted_generations_are_failures() -> Result<()> {
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "vllm",
            br#"{"object":"error","message":"CUDA error","type":"InternalServerError","param":null,"code":500}"#,
            "answer is an error object",
        ),
        (
            "vllm",
            br#"{"id":"c","object":"text_completion","choices":[{"index":0,"text":"","finish_reason":"abort"}]}"#,
            "generation ended with finish_reason \"abort\"",
        ),
        (
            "vllm",
            br#"{"id":"c","object":"text_completion","choices":[{"index":0,"text":"","finish_reason":"error"}]}"#,
            "generation ended with finish_reason \"error\"",
        ),
        (
            "trtllm",
            br#"{"id":"c","object":"text_completion","choices":[{"index":0,"text":"","finish_reason":"cancelled"}]}"#,
            "generation ended with finish_reason \"cancelled\"",
        ),
        (
            "openai",
            br#"{"error":{"message":"engine dead","type":"server_error"}}"#,
            "answer is an error object",
        ),
        (
            "openai",
            br#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"abort"}]}"#,
            "generation ended with finish_reason \"abort\"",
        ),
        (
            "sglang",
            br#"{"text":"","meta_info":{"id":"r","finish_reason":{"type":"abort","message":"KV cache full","status_code":503,"err_type":null},"prompt_tokens":1,"completion_tokens":0}}"#,
            "generation ended with finish_reason \"abort\"",
        ),
        (
            "sglang",
            br#"{"object":"error","message":"x","type":"BadRequestError","param":null,"code":400}"#,
            "answer is an error object",
        ),
    ];
    let good_sglang = br#"{"text":"x","meta_info":{"id":"r","finish_reason":{"type":"length","length":1},"prompt_tokens":1,"completion_tokens":1}}"#;
    for (backend, body, error) in cases {
        let t = format!(
            r#"{{"name":"w0","cluster":"workers","backend":"{backend}","model":"m","interval":"1s","timeout":"300ms","mode":"always","unhealthy_threshold":1}}"#
        );
        let mut host = start(1, &t)?;
        let good: &[u8] = if *backend == "sglang" {
            good_sglang
        } else {
            COMPLETION
        };
        let c = next_callout(&mut host)?;
        host.respond_callout(c.id, 200, &[], good)?;
        assert_eq!(status_gauge(&host, "w0"), Some(1), "{backend}: good answer");
        let c = next_callout(&mut host)?;
        host.respond_callout(c.id, 200, &[], body)?;
        let label = String::from_utf8_lossy(body);
        assert_eq!(checks(&host, "w0", "failure"), 1, "{backend}: {label}");
        assert_eq!(checks(&host, "w0", "success"), 1, "{backend}: {label}");
        assert_eq!(status_gauge(&host, "w0"), Some(0), "{backend}: {label}");
        assert!(
            last_error(&host, "w0").starts_with(error),
            "{backend}: {label}: {}",
            last_error(&host, "w0")
        );
    }
    Ok(())
}

/// A model id from `/v1/models` past 128 bytes is a failed discovery, not a
/// 5 MB string in shared data re-read by every VM on every tick; every record stays small.
#[test]
fn worker_strings_are_bounded_in_shared_data() -> Result<()> {
    let config = r#"{"health":{"max_answer_bytes":4194304,"details":true,"targets":[{"name":"w0","cluster":"workers","backend":"vllm","interval":"1s","timeout":"300ms","mode":"always"}]}}"#;
    let mut host = llm_pulse_host()?.plugin_config(config).vms(2).start()?;
    let id = "m".repeat(4_000_000);
    let models = format!(r#"{{"data":[{{"id":"{id}"}}]}}"#);
    let c = next_callout(&mut host)?;
    host.respond_callout(c.id, 200, &[], models.as_bytes())?;
    assert_eq!(checks(&host, "w0", "failure"), 1);
    let rec = record(&host, "w0");
    assert!(rec.len() < 1_024, "{} bytes in shared data", rec.len());
    assert_eq!(
        last_error(&host, "w0"),
        "model discovery (GET /v1/models): first model id is longer than 128 bytes (set `model` in the config)"
    );
    let (_, v) = get(&mut host, "/health")?;
    assert!(v.to_string().len() < 1_024, "{v}");
    assert_eq!(v["targets"]["w0"]["model"], Value::Null);
    // A worker's 1 MB error body: at most 120 bytes of it, with details on.
    let c = next_callout(&mut host)?;
    let body = format!("secret-dsn=postgres://u:p@db/x {}", "e".repeat(1_000_000));
    host.respond_callout(c.id, 500, &[], body.as_bytes())?;
    // (The model is unknown, so this call was discovery again.)
    let e = last_error(&host, "w0");
    let prefix = "model discovery (GET /v1/models): status 500: secret-dsn";
    assert!(e.starts_with(prefix), "{e}");
    assert_eq!(
        e.len(),
        "model discovery (GET /v1/models): status 500: ".len() + 120
    );
    assert!(record(&host, "w0").len() < 1_024);
    // A 128-byte id is fine and used.
    let c = next_callout(&mut host)?;
    let ok = "m".repeat(128);
    host.respond_callout(
        c.id,
        200,
        &[],
        format!(r#"{{"data":[{{"id":"{ok}"}}]}}"#).as_bytes(),
    )?;
    let c = next_callout(&mut host)?;
    let body: Value = serde_json::from_slice(&c.body)?;
    assert_eq!(body["model"], ok.as_str());
    Ok(())
}

fn get_for(host: &mut Host, path: &str, authority: &str) -> Result<Option<(u32, Value)>> {
    let s = host.new_stream()?;
    host.send_request_headers(
        s,
        &[
            (":method", "GET"),
            (":path", path),
            (":authority", authority),
        ],
        true,
    )?;
    let rec = host.stream(s)?;
    Ok(match rec.local_reply {
        Some(r) => Some((r.status, serde_json::from_slice(&r.body)?)),
        None => None,
    })
}

/// `health.serve` decides which requests get the local answers; `off`
/// passes the paths on while probes and metrics keep running; by default the body carries no
/// cluster, worker address or error text, and the worker's words are not even kept.
#[test]
fn serve_and_details_decide_what_is_exposed() -> Result<()> {
    let t = r#"{"name":"w0","cluster":"secret-cluster","backend":"vllm","model":"m","host":"10.9.8.7:8000","interval":"1s","timeout":"300ms","mode":"always"}"#;
    let cfg = |health: &str| format!(r#"{{"health":{{{health}"targets":[{t}]}}}}"#);

    // Default: served for every authority, no internals.
    let mut host = llm_pulse_host()?.plugin_config(cfg("")).vms(1).start()?;
    let c = next_callout(&mut host)?;
    host.respond_callout(c.id, 500, &[], b"password=hunter2")?;
    let (code, v) = get_for(&mut host, "/health", "app.example.com")?.expect("served");
    assert_eq!(code, 503);
    let text = v.to_string();
    for secret in [
        "secret-cluster",
        "10.9.8.7",
        "hunter2",
        "last_error",
        "status 500",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(
        last_error(&host, "w0"),
        "status 500",
        "the worker's body is not kept"
    );
    assert!(get_for(&mut host, "/live", "anything")?.is_some());

    // A dedicated authority: only it gets the answers; others pass to their upstream.
    let mut host = llm_pulse_host()?
        .plugin_config(cfg(r#""serve":"health.llm-pulse.internal","#))
        .vms(1)
        .start()?;
    for (authority, served) in [
        ("health.llm-pulse.internal", true),
        ("HEALTH.llm-pulse.internal:15021", true),
        ("app.example.com", false),
        ("health.llm-pulse.internal.evil.com", false),
    ] {
        for path in ["/health", "/live"] {
            assert_eq!(
                get_for(&mut host, path, authority)?.is_some(),
                served,
                "{path} for {authority}"
            );
        }
    }
    // A passed request is an ordinary stream: not answered, not paused.
    let s = host.new_stream()?;
    host.send_request_headers(
        s,
        &[
            (":method", "GET"),
            (":path", "/health"),
            (":authority", "app.example.com"),
        ],
        true,
    )?;
    assert!(host.stream(s)?.never_paused());

    // Off: the paths pass; probes and their metrics go on.
    let mut host = llm_pulse_host()?
        .plugin_config(cfg(r#""serve":"off","#))
        .vms(1)
        .start()?;
    for _ in 0..3 {
        let c = next_callout(&mut host)?;
        host.respond_callout(c.id, 200, &[], COMPLETION)?;
    }
    assert_eq!(checks(&host, "w0", "success"), 3);
    assert_eq!(status_gauge(&host, "w0"), Some(1));
    assert!(get_for(&mut host, "/health", "anything")?.is_none());
    assert!(get_for(&mut host, "/live", "anything")?.is_none());

    // Details on: cluster, host and the bounded error text are shown.
    let mut host = llm_pulse_host()?
        .plugin_config(cfg(r#""details":true,"#))
        .vms(1)
        .start()?;
    let c = next_callout(&mut host)?;
    host.respond_callout(c.id, 500, &[], b"password=hunter2")?;
    let (_, v) = get_for(&mut host, "/health", "x")?.expect("served");
    assert_eq!(v["targets"]["w0"]["cluster"], "secret-cluster");
    assert_eq!(v["targets"]["w0"]["host"], "10.9.8.7:8000");
    assert_eq!(
        v["targets"]["w0"]["last_error"],
        "status 500: password=hunter2"
    );
    Ok(())
}

/// A request's local reply, if it got one: (status, headers, body).
type Reply = (u32, Vec<(String, String)>, Vec<u8>);

fn local_reply(host: &mut Host, headers: &[(&str, &str)], end: bool) -> Result<Option<Reply>> {
    let s = host.new_stream()?;
    host.send_request_headers(s, headers, end)?;
    let rec = host.stream(s)?;
    Ok(rec
        .local_reply
        .map(|r| (r.status, r.headers.clone(), r.body.clone())))
}

/// `health.target_path` answers one target's readiness for the target the `:authority` names
/// (what Envoy's health checker asks per endpoint), and `health.fail_fast` refuses inference
/// with a local 503 while a target is not ready, both following the probes on every VM.
#[test]
fn target_path_and_fail_fast_follow_the_probes() -> Result<()> {
    let t = |name: &str, host: &str| {
        format!(
            r#"{{"name":"{name}","cluster":"llm_pulse_probe","host":"{host}","backend":"vllm","model":"m","interval":"1s","timeout":"300ms","mode":"always","unhealthy_threshold":1}}"#
        )
    };
    let cfg = format!(
        r#"{{"health":{{"target_path":"/llm-pulse/target","fail_fast":true,"targets":[{},{}]}}}}"#,
        t("worker-0", "10.0.0.1:8000"),
        t("worker-1", "10.0.0.2:8000")
    );
    let mut host = llm_pulse_host()?.plugin_config(cfg).vms(2).start()?;
    let ask = |host: &mut Host, authority: &str| {
        local_reply(
            host,
            &[
                (":method", "GET"),
                (":path", "/llm-pulse/target"),
                (":authority", authority),
            ],
            true,
        )
    };
    let chat = |host: &mut Host| {
        local_reply(
            host,
            &[
                (":method", "POST"),
                (":path", "/v1/chat/completions"),
                (":authority", "gw"),
            ],
            false,
        )
    };
    let status = |r: Option<Reply>| r.map(|(code, _, _)| code);

    // Before the first probe: not ready, so the target answers 503 and inference is refused.
    let (code, _, body) = ask(&mut host, "worker-0:15010")?.expect("answered");
    assert_eq!(code, 503);
    let v: Value = serde_json::from_slice(&body)?;
    assert_eq!(
        (v["target"].as_str(), v["status"].as_str()),
        (Some("worker-0"), Some("notready"))
    );
    assert_eq!(
        ask(&mut host, "someone-else")?,
        None,
        "names no target: passes"
    );
    let (code, headers, body) = chat(&mut host)?.expect("refused");
    assert_eq!(code, 503);
    assert!(
        headers.iter().any(|(k, v)| k == "retry-after" && v == "1"),
        "{headers:?}"
    );
    let v: Value = serde_json::from_slice(&body)?;
    assert_eq!(v["error"]["type"], "unavailable");
    let models = [
        (":method", "GET"),
        (":path", "/v1/models"),
        (":authority", "gw"),
    ];
    assert_eq!(
        local_reply(&mut host, &models, true)?,
        None,
        "not inference: passes"
    );

    // Both probes pass: both targets ready; within a tick every VM lets inference through.
    for _ in 0..2 {
        let c = next_callout(&mut host)?;
        host.respond_callout(c.id, 200, &[], COMPLETION)?;
    }
    assert_eq!(status(ask(&mut host, "WORKER-1")?), Some(200));
    host.advance(Duration::from_millis(100))?;
    for _ in 0..4 {
        assert_eq!(chat(&mut host)?, None, "ready: inference passes");
    }

    // One worker's probe fails: it alone answers 503, and inference is refused again.
    let mut failed = None;
    while failed.is_none() {
        let c = next_callout(&mut host)?;
        let to_1 = c
            .headers
            .iter()
            .any(|(k, v)| k == "x-envoy-original-dst-host" && v == "10.0.0.2:8000");
        if to_1 {
            host.respond_callout(c.id, 500, &[], b"{}")?;
            failed = Some(c.id);
        } else {
            host.respond_callout(c.id, 200, &[], COMPLETION)?;
        }
    }
    assert_eq!(status(ask(&mut host, "worker-1")?), Some(503));
    assert_eq!(status(ask(&mut host, "worker-0")?), Some(200));
    host.advance(Duration::from_millis(100))?;
    for _ in 0..4 {
        assert_eq!(status(chat(&mut host)?), Some(503), "a target is not ready");
    }
    Ok(())
}
