//! The wasmtime part: the real `.wasm` files in the wasmtime harness (`wasm_host`). Time per
//! SSE event, per request and per 100 KiB request body, llm-pulse against the no-op filter
//! and the floor on the same harness calls (so the harness's own cost cancels out), wasm
//! memory per open stream, and the host calls llm-pulse makes per event and per request, by
//! kind ([`calls`]: counted, not timed).

mod calls;
mod traffic;

use std::path::Path;

use anyhow::Result;
use wasm_host::HostBuilder;

use crate::stats::median;
use calls::{calls_table, counts_only, host_call_counts, usage_calls};
use traffic::{big_request, memory_per_stream, prompt_body, request, token_event, PULSE_OFF};

/// The microbenchmark, or with `calls_only` the counts alone; with `usage`, the host calls of
/// each `usage_stats` mode too. Prints its tables, returns the figures as JSON.
pub fn run(noop: &Path, tokens: u32, calls_only: bool, usage: bool) -> Result<serde_json::Value> {
    let pulse = host_tests::artifacts::wasm_path()?;
    let usage = if usage {
        Some(usage_calls(&pulse, tokens)?)
    } else {
        None
    };
    if calls_only {
        return counts_only(&pulse, noop, tokens, usage);
    }
    timed(&pulse, noop, tokens, usage)
}

#[derive(Default)]
struct Figures {
    per_event_1: Vec<f64>,
    per_event_16: Vec<f64>,
    per_request: Vec<f64>,
    per_100k: Vec<f64>,
}

fn measure(wasm: &Path, config: &str, tokens: u32, reps: usize) -> Result<Figures> {
    let mut host = HostBuilder::new(wasm).plugin_config(config).start()?;
    let events: Vec<Vec<u8>> = (0..tokens).map(token_event).collect();
    let big = prompt_body(100 * 1024);
    // Warm-up: metric ids defined, code paths compiled and cached.
    for _ in 0..20 {
        request(&mut host, &events, 1)?;
    }
    let mut f = Figures::default();
    for _ in 0..reps {
        let one = request(&mut host, &events, 1)?;
        let sixteen = request(&mut host, &events, 16)?;
        f.per_event_1.push(one.events / events.len() as f64);
        f.per_event_16.push(sixteen.events / events.len() as f64);
        f.per_request.push(one.fixed.min(sixteen.fixed));
        f.per_100k.push(big_request(&mut host, &big, 16 * 1024)?);
    }
    Ok(f)
}

/// The timed microbenchmark, then the counts.
fn timed(
    pulse: &Path,
    noop: &Path,
    tokens: u32,
    usage: Option<(String, serde_json::Value)>,
) -> Result<serde_json::Value> {
    eprintln!(
        "bench: microbenchmark: {} vs {} (no-op and floor modes) in the wasmtime harness",
        pulse.display(),
        noop.display()
    );
    // Alternate the modules in blocks so drift hits all of them.
    let (mut p, mut f, mut n) = (Figures::default(), Figures::default(), Figures::default());
    for _ in 0..5 {
        for (wasm, config, into) in [
            (noop, "{}", &mut n),
            (noop, "\"floor\"", &mut f),
            (pulse, PULSE_OFF, &mut p),
        ] {
            let m = measure(wasm, config, tokens, 20)?;
            into.per_event_1.extend(m.per_event_1);
            into.per_event_16.extend(m.per_event_16);
            into.per_request.extend(m.per_request);
            into.per_100k.extend(m.per_100k);
        }
    }
    let us = |v: &[f64]| median(v.iter().copied()) * 1e6;
    let row = |name: &'static str, get: &dyn Fn(&Figures) -> &Vec<f64>| {
        (name, us(get(&p)), us(get(&f)), us(get(&n)))
    };
    let rows = [
        row("per SSE event, 1 event per body callback", &|x| {
            &x.per_event_1
        }),
        row("per SSE event, 16 events per body callback", &|x| {
            &x.per_event_16
        }),
        row("per request, without its token events", &|x| &x.per_request),
        row("100 KiB request body (16 KiB chunks)", &|x| &x.per_100k),
    ];
    let mem_p = memory_per_stream(pulse, PULSE_OFF, 4096)?;
    let mem_n = memory_per_stream(noop, "{}", 4096)?;
    let wasm_size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);

    let mut out = String::new();
    out.push_str(
        "\nMicrobenchmark (wasmtime harness, medians of the same calls on each module; the floor \
         copies each response chunk in, reads the clock and records one sample per event)\n\n",
    );
    out.push_str("| work | llm-pulse µs | floor µs | no-op µs | llm-pulse − no-op µs | llm-pulse − floor µs |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: |\n");
    let mut json = serde_json::Map::new();
    for (name, pv, fv, nv) in rows {
        out.push_str(&format!(
            "| {name} | {pv:.3} | {fv:.3} | {nv:.3} | {:.3} | {:.3} |\n",
            pv - nv,
            pv - fv
        ));
        json.insert(
            name.into(),
            serde_json::json!({"llm_pulse_us": pv, "floor_us": fv, "noop_us": nv, "delta_us": pv - nv, "over_floor_us": pv - fv}),
        );
    }
    out.push_str(&format!(
        "| VM memory per open stream (bytes, 4096 streams, 1 in 16 with a 100 KiB prompt) | {mem_p:.0} | | {mem_n:.0} | {:.0} | |\n",
        mem_p - mem_n
    ));
    out.push_str(&format!(
        "\n.wasm size: llm-pulse {} bytes, no-op {} bytes\n",
        wasm_size(pulse),
        wasm_size(noop)
    ));
    let calls_p = host_call_counts(pulse, PULSE_OFF, tokens)?;
    let calls_f = host_call_counts(noop, "\"floor\"", tokens)?;
    out.push_str(&calls_table(&calls_p, &calls_f));
    if let Some((text, usage_json)) = usage {
        out.push_str(&text);
        json.insert("usage".into(), usage_json);
    }
    print!("{out}");
    json.insert(
        "host_calls".into(),
        serde_json::json!({"llm_pulse": calls_p, "floor": calls_f}),
    );
    json.insert(
        "memory_per_stream_bytes".into(),
        serde_json::json!({"llm_pulse": mem_p, "noop": mem_n}),
    );
    json.insert("wasm_bytes".into(), wasm_size(pulse).into());
    json.insert("noop_wasm_bytes".into(), wasm_size(noop).into());
    Ok(json.into())
}
