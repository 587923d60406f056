//! The host calls llm-pulse makes per event and per request, by kind, counted in the wasmtime
//! harness (`--only calls`; with `--usage`, per `usage_stats` mode): the same calls Envoy
//! receives, since the calls are the filter's, not the host's.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use wasm_host::{Host, HostBuilder};

use super::traffic::{
    memory_per_stream, request, token_event, usage_request, CLUSTER, PULSE_OFF, REQUEST_HEADERS,
};
use crate::cases::chat_request;
use crate::upstreams::{unary_answer, UsageAsk};

/// Host calls by kind of one module: (per request without token events, per token event
/// at 1 event per body callback, the same at 16 per callback). Counted, not timed.
pub type Calls = BTreeMap<String, (f64, f64, f64)>;

/// Host calls of llm-pulse with `usage_stats` `mode`, its client asking for `client`:
/// (per request without token events, per token event at 1 and at 16 events per body
/// callback). The worker sends the usage the request asks for once the filter edited it.
fn usage_call_counts(wasm: &Path, mode: &str, client: UsageAsk, tokens: u32) -> Result<Calls> {
    let config = format!(r#"{{"usage_stats":"{mode}"}}"#);
    let mut host = HostBuilder::new(wasm)
        .plugin_config(config.as_str())
        .property(&["xds", "cluster_name"], CLUSTER)
        .start()?;
    let worker = match (client, mode) {
        (UsageAsk::None, "final") => UsageAsk::Final,
        (UsageAsk::None, "continuous") => UsageAsk::Continuous,
        (asked, _) => asked,
    };
    let body = chat_request("hello", true, tokens, client);
    for _ in 0..3 {
        usage_request(&mut host, &body, worker, tokens, 1)?;
    }
    let mut count = |t: u32, per_chunk: usize| {
        calls_during(&mut host, |h| usage_request(h, &body, worker, t, per_chunk))
    };
    let none = count(0, 1)?;
    let one = count(tokens, 1)?;
    let sixteen = count(tokens, 16)?;
    Ok(per_kind(&none, &one, &sixteen, tokens))
}

/// (per request, per token event at 1 and 16 per callback) from the counts of a request
/// without token events and of two with `tokens` of them.
fn per_kind(
    none: &BTreeMap<String, u64>,
    one: &BTreeMap<String, u64>,
    sixteen: &BTreeMap<String, u64>,
    tokens: u32,
) -> Calls {
    let t = f64::from(tokens.max(1));
    let mut out = Calls::new();
    for k in none.keys().chain(one.keys()).chain(sixteen.keys()) {
        let z = none.get(k).copied().unwrap_or(0) as f64;
        let per = |m: &BTreeMap<String, u64>| (m.get(k).copied().unwrap_or(0) as f64 - z) / t;
        out.insert(k.clone(), (z, per(one), per(sixteen)));
    }
    out
}

/// Host calls of one unary chat request (`"stream": false`, a JSON answer with usage) by
/// llm-pulse with `usage_stats` `mode`: the filter cannot know it will not edit it until
/// it has read the body.
fn unary_calls(wasm: &Path, mode: &str) -> Result<BTreeMap<String, u64>> {
    let config = format!(r#"{{"usage_stats":"{mode}"}}"#);
    let mut host = HostBuilder::new(wasm)
        .plugin_config(config.as_str())
        .property(&["xds", "cluster_name"], CLUSTER)
        .start()?;
    let body = chat_request("hello", false, 8, UsageAsk::None);
    let answer = unary_answer(8);
    let json = [(":status", "200"), ("content-type", "application/json")];
    let one = |host: &mut Host| -> Result<()> {
        let s = host.new_stream()?;
        host.send_request_headers(s, REQUEST_HEADERS, false)?;
        host.send_request_body(s, &body, true)?;
        host.send_response_headers(s, &json, false)?;
        host.send_response_body(s, answer.as_bytes(), true)?;
        host.complete_stream(s)
    };
    for _ in 0..3 {
        one(&mut host)?;
    }
    let mut calls = calls_during(&mut host, one)?;
    calls.retain(|_, d| *d > 0);
    Ok(calls)
}

/// The host calls `run` makes in VM 0, by kind.
fn calls_during(
    host: &mut Host,
    run: impl FnOnce(&mut Host) -> Result<()>,
) -> Result<BTreeMap<String, u64>> {
    let before = host.host_calls(0)?;
    run(host)?;
    let after = host.host_calls(0)?;
    Ok(after
        .into_iter()
        .map(|(k, v)| {
            let d = v - before.get(&k).copied().unwrap_or(0);
            (k, d)
        })
        .collect())
}

/// The usage modes `--only calls --usage` counts: (column, usage_stats, client's ask).
const USAGE_MODES: [(&str, &str, UsageAsk); 5] = [
    ("off", "off", UsageAsk::None),
    ("final", "final", UsageAsk::None),
    ("continuous", "continuous", UsageAsk::None),
    ("off, client asks include_usage", "off", UsageAsk::Final),
    ("off, client asks continuous", "off", UsageAsk::Continuous),
];

fn usage_calls_table(modes: &[(&str, Calls)]) -> String {
    let mut out = String::from(
        "\nHost calls by usage_stats (wasmtime harness, counted; the worker sends the usage \
         the request asks for once edited, the usage event with [DONE] in the last body \
         callback): per request without token events / per token event at 1 per callback / \
         at 16 per callback\n\n| host call |",
    );
    for (name, _) in modes {
        out.push_str(&format!(" {name} |"));
    }
    out.push_str("\n| --- |");
    for _ in modes {
        out.push_str(" ---: |");
    }
    out.push('\n');
    let keys: std::collections::BTreeSet<&String> =
        modes.iter().flat_map(|(_, c)| c.keys()).collect();
    let mut total = vec![(0.0f64, 0.0f64, 0.0f64); modes.len()];
    let cell = |v: (f64, f64, f64)| format!("{:.0} / {:.3} / {:.3}", v.0, v.1, v.2);
    for k in keys {
        let v: Vec<(f64, f64, f64)> = modes
            .iter()
            .map(|(_, c)| c.get(k).copied().unwrap_or_default())
            .collect();
        if v.iter().all(|x| x.0 == 0.0 && x.1 == 0.0 && x.2 == 0.0) {
            continue; // start-up only
        }
        out.push_str(&format!("| {k} |"));
        for (t, x) in total.iter_mut().zip(&v) {
            *t = (t.0 + x.0, t.1 + x.1, t.2 + x.2);
            out.push_str(&format!(" {} |", cell(*x)));
        }
        out.push('\n');
    }
    out.push_str("| all |");
    for t in total {
        out.push_str(&format!(" {} |", cell(t)));
    }
    out.push('\n');
    out
}

/// `--usage`: the host calls of each usage mode, and VM memory per open stream with the
/// edits on.
pub fn usage_calls(pulse: &Path, tokens: u32) -> Result<(String, serde_json::Value)> {
    let mut modes = Vec::new();
    let mut json = serde_json::Map::new();
    for (name, mode, client) in USAGE_MODES {
        let calls = usage_call_counts(pulse, mode, client, tokens)?;
        json.insert(name.into(), serde_json::json!(calls));
        modes.push((name, calls));
    }
    let mut text = usage_calls_table(&modes);
    for mode in ["off", "final"] {
        let calls = unary_calls(pulse, mode)?;
        let all: u64 = calls.values().sum();
        let list: Vec<String> = calls.iter().map(|(k, v)| format!("{k} {v}")).collect();
        text.push_str(&format!(
            "Host calls per unary request, usage_stats {mode}: {all} ({})\n",
            list.join(", ")
        ));
        json.insert(format!("unary_{mode}"), serde_json::json!(calls));
    }
    for mode in ["final", "continuous"] {
        let config = format!(r#"{{"usage_stats":"{mode}"}}"#);
        let mem = memory_per_stream(pulse, &config, 4096)?;
        text.push_str(&format!(
            "VM memory per open stream, usage_stats {mode} (the request edited, the \
             answer's events without usage): {mem:.0} bytes\n"
        ));
        json.insert(format!("memory_per_stream_bytes_{mode}"), mem.into());
    }
    Ok((text, json.into()))
}

pub fn host_call_counts(wasm: &Path, config: &str, tokens: u32) -> Result<Calls> {
    let mut host = HostBuilder::new(wasm).plugin_config(config).start()?;
    let events: Vec<Vec<u8>> = (0..tokens).map(token_event).collect();
    for _ in 0..3 {
        request(&mut host, &events, 1)?;
    }
    let mut count = |evs: &[Vec<u8>], per_chunk: usize| {
        calls_during(&mut host, |h| request(h, evs, per_chunk).map(drop))
    };
    let none = count(&[], 1)?;
    let one = count(&events, 1)?;
    let sixteen = count(&events, 16)?;
    Ok(per_kind(&none, &one, &sixteen, tokens))
}

pub fn calls_table(pulse: &Calls, floor: &Calls) -> String {
    let mut out = String::from(
        "\nHost calls (wasmtime harness, counted: the same calls Envoy receives): per request \
         without its token events (role chunk, [DONE], headers, on_log), and per token event\n\n\
         | host call | llm-pulse / req | llm-pulse / event (1 per callback) | llm-pulse / event (16 per callback) | floor / req | floor / event (1 per callback) | floor / event (16 per callback) |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let mut total = [0.0f64; 6];
    let keys: std::collections::BTreeSet<&String> = pulse.keys().chain(floor.keys()).collect();
    for k in keys {
        let p = pulse.get(k).copied().unwrap_or_default();
        let f = floor.get(k).copied().unwrap_or_default();
        let v = [p.0, p.1, p.2, f.0, f.1, f.2];
        if v.iter().all(|x| *x == 0.0) {
            continue; // start-up only (define_metric, shared data)
        }
        for (t, x) in total.iter_mut().zip(v) {
            *t += x;
        }
        out.push_str(&format!(
            "| {k} | {:.0} | {:.3} | {:.3} | {:.0} | {:.3} | {:.3} |\n",
            v[0], v[1], v[2], v[3], v[4], v[5]
        ));
    }
    out.push_str(&format!(
        "| all | {:.0} | {:.3} | {:.3} | {:.0} | {:.3} | {:.3} |\n",
        total[0], total[1], total[2], total[3], total[4], total[5]
    ));
    out
}

/// `--only calls`: the host-call counts of llm-pulse and the floor, VM memory per open stream
/// and the .wasm sizes, printed with the `--usage` table if any.
pub fn counts_only(
    pulse: &Path,
    noop: &Path,
    tokens: u32,
    usage: Option<(String, serde_json::Value)>,
) -> Result<serde_json::Value> {
    let calls_p = host_call_counts(pulse, PULSE_OFF, tokens)?;
    let calls_f = host_call_counts(noop, "\"floor\"", tokens)?;
    let mem_p = memory_per_stream(pulse, PULSE_OFF, 4096)?;
    let mem_n = memory_per_stream(noop, "{}", 4096)?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    print!(
        "{}\nVM memory per open stream (4096 streams, 1 in 16 with a 100 KiB prompt): \
         llm-pulse {mem_p:.0} bytes, no-op {mem_n:.0} bytes\n\
         .wasm size: llm-pulse {} bytes, no-op {} bytes\n{}",
        calls_table(&calls_p, &calls_f),
        size(pulse),
        size(noop),
        usage.as_ref().map(|u| u.0.as_str()).unwrap_or("")
    );
    Ok(serde_json::json!({
        "host_calls": {"llm_pulse": calls_p, "floor": calls_f},
        "memory_per_stream_bytes": {"llm_pulse": mem_p, "noop": mem_n},
        "usage": usage.map(|u| u.1),
    }))
}
