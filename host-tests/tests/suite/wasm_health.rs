//! The health prober (DESIGN §4) on the built `.wasm`, with the test clock: every VM ticks,
//! exactly one callout per interval and target, thresholds, the callout timeout (Envoy's 504),
//! model discovery, each backend's payload, and the `/health` and `/live` local replies.

use host_tests::artifacts::llm_pulse_host;
use std::time::Duration;

use anyhow::Result;
use llm_pulse_cases as cases;
use serde_json::Value;
use wasm_host::{Callout, Host, TIMEOUT_BODY};

const COMPLETION: &[u8] = br#"{"id":"c","object":"text_completion","choices":[{"index":0,"text":"x","finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;

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
