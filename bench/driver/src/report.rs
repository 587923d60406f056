//! The Envoy figures of every case, as the tables the bench prints (docs/benchmarks.md, "Tables
//! the bench prints") and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use crate::load::Run;
use crate::setups::Setup;
use crate::stats::median;

/// The figures of one case.
pub struct CaseResult {
    pub name: String,
    pub group: &'static str,
    pub what: String,
    pub events: u32,
    pub setups: Vec<Setup>,
    /// Runs per setup key, in round order.
    pub runs: BTreeMap<String, Vec<Run>>,
    /// From the callback counter: (callbacks, response body callbacks) per request.
    pub callbacks: Option<(f64, f64)>,
    /// Probe setups: (calls per request, bytes per call).
    pub probe_calls: BTreeMap<String, (f64, f64)>,
}

impl CaseResult {
    fn cpu(&self, key: &str) -> Option<f64> {
        self.runs
            .get(key)
            .map(|r| median(r.iter().map(Run::cpu_us_per_request)))
    }

    /// Median and range over rounds of the paired difference `x − y` (same round, adjacent
    /// runs), µs per request.
    fn diff(&self, x: &str, y: &str) -> Option<(f64, f64, f64)> {
        self.paired(x, y, |a, b| a - b)
    }

    /// Median and range over rounds of the paired ratio `x / y` of CPU per request.
    fn ratio(&self, x: &str, y: &str) -> Option<(f64, f64, f64)> {
        self.paired(x, y, |a, b| a / b)
    }

    fn paired(&self, x: &str, y: &str, f: fn(f64, f64) -> f64) -> Option<(f64, f64, f64)> {
        let (rx, ry) = (self.runs.get(x)?, self.runs.get(y)?);
        let d: Vec<f64> = rx
            .iter()
            .zip(ry)
            .map(|(a, b)| f(a.cpu_us_per_request(), b.cpu_us_per_request()))
            .collect();
        let lo = d.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = d.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some((median(d.into_iter()), lo, hi))
    }

    fn is_probe(&self) -> bool {
        self.group == "probe"
    }
}

/// `median [min, max]` of a paired difference, divided by `per` (1: per request; events: per
/// event); a dash when there is none or nothing to divide by.
fn range(d: Option<(f64, f64, f64)>, per: f64) -> String {
    match d {
        Some((m, lo, hi)) if per > 0.0 => {
            format!("{:+.2} [{:+.2}, {:+.2}]", m / per, lo / per, hi / per)
        }
        _ => "—".to_string(),
    }
}

fn fmt1(v: f64) -> String {
    format!("{v:.1}")
}

/// Prints every table of the Envoy part to stdout.
pub fn print_tables(results: &[CaseResult], rounds: usize, pin: bool) {
    let mut out = String::new();
    setups_table(&mut out, results, rounds, pin);
    let timed: Vec<&CaseResult> = results.iter().filter(|r| !r.is_probe()).collect();
    over_table(&mut out, &timed);
    module_table(&mut out, &timed);
    usage_table(&mut out, &timed);
    variants_table(&mut out, &timed);
    for r in results.iter().filter(|r| r.is_probe()) {
        probe_table(&mut out, r);
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
}

/// Each setup's medians, per case.
fn setups_table(out: &mut String, results: &[CaseResult], rounds: usize, pin: bool) {
    let _ = writeln!(
        out,
        "\nEnvoy end to end: medians of {rounds} rounds; Envoy --concurrency 1{}",
        if pin {
            ", pinned to CPU 0 (upstream and h2load on the other CPUs)"
        } else {
            ", not pinned"
        }
    );
    for r in results {
        let _ = writeln!(out, "\n{}: {}", r.name, r.what);
    }
    out.push_str(
        "\n| case | setup | req/s | p50 µs | p99 µs | client body bytes / req | Envoy CPU µs / req |\n",
    );
    out.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
    for r in results {
        for s in &r.setups {
            let runs = &r.runs[&s.key];
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} |",
                r.name,
                s.label,
                median(runs.iter().map(|r| r.rps)),
                median(runs.iter().map(|r| r.p50_us)),
                median(runs.iter().map(|r| r.p99_us)),
                median(runs.iter().map(Run::bytes_per_request)),
                r.cpu(&s.key).unwrap_or(f64::NAN),
            );
        }
    }
}

/// llm-pulse over the no-op and over the floor, per request and per SSE event.
fn over_table(out: &mut String, results: &[&CaseResult]) {
    if results.is_empty() {
        return;
    }
    out.push_str(
        "\nEnvoy CPU over the no-op (b) and over the floor (d): per request, and per SSE event \
         (per request / events); medians of the per-round paired differences [min, max]\n\n",
    );
    out.push_str("| case | events / req | body callbacks / req | events / callback | b−a µs/req | d−b µs/req | c−b µs/req | c−d µs/req | c−b µs/event | c−d µs/event | d−b µs/event |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for r in results {
        let body = r.callbacks.map_or(f64::NAN, |(_, body)| body);
        let ev = f64::from(r.events);
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.events,
            body,
            if r.events > 0 {
                format!("{:.2}", ev / body)
            } else {
                "—".into()
            },
            range(r.diff("b", "a"), 1.0),
            range(r.diff("d", "b"), 1.0),
            range(r.diff("c", "b"), 1.0),
            range(r.diff("c", "d"), 1.0),
            range(r.diff("c", "b"), ev),
            range(r.diff("c", "d"), ev),
            range(r.diff("d", "b"), ev),
        );
    }
}

/// The dynamic module (m) beside the `.wasm` (c): Envoy CPU over no filter at all (a).
fn module_table(out: &mut String, results: &[&CaseResult]) {
    let rows: Vec<&&CaseResult> = results
        .iter()
        .filter(|r| r.runs.contains_key("m") && r.runs.contains_key("a"))
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str(
        "\nThe dynamic module (m) and the .wasm (c): Envoy CPU over no filter (a), per request \
         and per SSE event; medians of the per-round paired differences [min, max]\n\n",
    );
    out.push_str(
        "| case | m−a µs/req | c−a µs/req | m−a µs/event | c−a µs/event | c−m µs/event |\n",
    );
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: |\n");
    let range = |d: Option<(f64, f64, f64)>, per: f64| match d {
        Some((m, lo, hi)) if per > 0.0 => {
            format!("{:+.2} [{:+.2}, {:+.2}]", m / per, lo / per, hi / per)
        }
        _ => "—".to_string(),
    };
    for r in rows {
        let ev = f64::from(r.events);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.name,
            range(r.diff("m", "a"), 1.0),
            range(r.diff("c", "a"), 1.0),
            range(r.diff("m", "a"), ev),
            range(r.diff("c", "a"), ev),
            range(r.diff("c", "m"), ev),
        ));
    }
}

/// `--usage`: each usage setup over (c), and each mode over the setup whose worker sends it
/// the same bytes unasked by the filter (what the edits themselves cost).
fn usage_table(out: &mut String, results: &[&CaseResult]) {
    let with_usage: Vec<&&CaseResult> = results
        .iter()
        .filter(|r| r.runs.contains_key("c") && r.runs.keys().any(|k| k.starts_with("c-")))
        .collect();
    if with_usage.is_empty() {
        return;
    }
    out.push_str(
        "\nusage_stats: Envoy CPU over (c) (llm-pulse, usage_stats off, the client asks no usage: \
         the worker sends none), per request and per SSE event of the answer without usage \
         (per request / events), and as a ratio of CPU per request; medians of the per-round \
         paired differences and ratios [min, max]. \
         final and continuous: the worker sends usage the filter asked for and cuts; asked: \
         the client asks for it, the worker sends the same bytes, nothing is cut\n\n",
    );
    out.push_str(
        "| case | events / req | setup | client body bytes / req | over µs/req | over µs/event | ratio |\n",
    );
    out.push_str("| --- | ---: | --- | ---: | ---: | ---: | ---: |\n");
    for r in with_usage {
        let ev = f64::from(r.events);
        let bytes = |k: &str| {
            r.runs
                .get(k)
                .map(|runs| format!("{:.0}", median(runs.iter().map(Run::bytes_per_request))))
                .unwrap_or_default()
        };
        let mut row = |x: &str, y: &str, what: String| {
            if r.runs.contains_key(x) && r.runs.contains_key(y) {
                let d = (x != y).then(|| r.diff(x, y)).flatten();
                let q = match (x != y).then(|| r.ratio(x, y)).flatten() {
                    Some((m, lo, hi)) => format!("{m:.3} [{lo:.3}, {hi:.3}]"),
                    None => "—".to_string(),
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {what} | {} | {} | {} | {q} |",
                    r.name,
                    r.events,
                    bytes(x),
                    range(d, 1.0),
                    range(d, ev),
                );
            }
        };
        row("c", "c", "c (usage_stats off)".into());
        for k in ["c-final", "c-continuous", "c-asked", "c-asked-continuous"] {
            row(k, "c", format!("{k} − c"));
        }
        row(
            "c-final",
            "c-asked",
            "c-final − c-asked (the edits alone)".into(),
        );
        row(
            "c-continuous",
            "c-asked-continuous",
            "c-continuous − c-asked-continuous (the edits alone)".into(),
        );
    }
}

/// `--variant` builds over the no-op, and llm-pulse over them.
fn variants_table(out: &mut String, results: &[&CaseResult]) {
    let variants: Vec<(&CaseResult, &Setup)> = results
        .iter()
        .flat_map(|r| {
            r.setups
                .iter()
                .filter(|s| s.key.starts_with("v:"))
                .map(move |s| (*r, s))
        })
        .collect();
    if variants.is_empty() {
        return;
    }
    out.push_str("\nOther builds of llm-pulse (--variant): Envoy CPU over the no-op (b) and llm-pulse (c) over them, per SSE event; medians of per-round paired differences [min, max]\n\n");
    out.push_str("| case | build | over b µs/req | over b µs/event | c − it µs/event |\n");
    out.push_str("| --- | --- | ---: | ---: | ---: |\n");
    for (r, s) in variants {
        let ev = f64::from(r.events);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.name,
            s.key.trim_start_matches("v:"),
            range(r.diff(&s.key, "b"), 1.0),
            range(r.diff(&s.key, "b"), ev),
            range(r.diff("c", &s.key), ev),
        );
    }
}

/// The probe group: µs per host call of each kind, and per VM entry.
fn probe_table(out: &mut String, r: &CaseResult) {
    let (cbs, body) = r.callbacks.unwrap_or((f64::NAN, f64::NAN));
    let _ = write!(
        out,
        "\nHost calls in Envoy's V8 (probe modes of bench/noop-filter; CPU over the no-op (b) / calls; \
         each probe also makes 3 increment_metric calls per request to report its counts)\n\
         {} callbacks per request, {:.1} of them response body callbacks (context create, \
         on_done and delete are 3 more VM entries the counter cannot see: b − a includes them)\n\n",
        fmt1(cbs),
        body
    );
    out.push_str(
        "| host call | calls / req | bytes / call | CPU over no-op µs/req | µs / call |\n",
    );
    out.push_str("| --- | ---: | ---: | ---: | ---: |\n");
    if let Some((m, lo, hi)) = r.diff("b", "a") {
        let _ = writeln!(
            out,
            "| VM entry (b − a, per counted callback) | {} | | {:+.1} [{:+.1}, {:+.1}] | {:.3} |",
            fmt1(cbs),
            m,
            lo,
            hi,
            m / cbs
        );
    }
    for s in r.setups.iter().filter(|s| s.key.starts_with("probe:")) {
        let (calls, bytes) = r.probe_calls.get(&s.key).copied().unwrap_or((0.0, 0.0));
        if let Some((m, lo, hi)) = r.diff(&s.key, "b") {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {} | {:+.1} [{:+.1}, {:+.1}] | {:.3} |",
                s.key.trim_start_matches("probe:"),
                calls,
                if bytes > 0.0 {
                    format!("{bytes:.0}")
                } else {
                    String::new()
                },
                m,
                lo,
                hi,
                m / calls.max(1.0)
            );
        }
    }
}

/// The raw figures of every case, for `--json`.
pub fn to_json(results: &[CaseResult], pin: bool, concurrency: u32) -> serde_json::Value {
    let mut all = serde_json::Map::new();
    for r in results {
        let mut case = serde_json::Map::new();
        case.insert("what".into(), r.what.clone().into());
        case.insert("sse_events_per_request".into(), r.events.into());
        if let Some((cb, body)) = r.callbacks {
            case.insert("callbacks_per_request".into(), cb.into());
            case.insert("response_body_callbacks_per_request".into(), body.into());
        }
        for s in &r.setups {
            let runs = &r.runs[&s.key];
            let mut v = serde_json::json!({
                "label": s.label,
                "envoy_cpu_us_per_request_median": r.cpu(&s.key),
                "rps_median": median(runs.iter().map(|r| r.rps)),
                "p50_us_median": median(runs.iter().map(|r| r.p50_us)),
                "p99_us_median": median(runs.iter().map(|r| r.p99_us)),
                "body_bytes_per_request_median": median(runs.iter().map(Run::bytes_per_request)),
                "runs": runs.iter().map(|r| serde_json::json!({
                    "rps": r.rps, "p50_us": r.p50_us, "p99_us": r.p99_us,
                    "cpu_s": r.cpu_s, "requests": r.requests, "seconds": r.seconds,
                    "body_bytes": r.bytes,
                    "lockstep_process_cpu_s": r.client_cpu_s,
                    "envoy_cpu_others_s": r.envoy_cpu_others.map(|o| o.0),
                    "envoy_cpu_stolen_s": r.envoy_cpu_others.map(|o| o.1),
                })).collect::<Vec<_>>(),
            });
            if let Some((calls, bytes)) = r.probe_calls.get(&s.key) {
                v["calls_per_request"] = (*calls).into();
                v["bytes_per_call"] = (*bytes).into();
            }
            case.insert(s.key.clone(), v);
        }
        all.insert(r.name.clone(), case.into());
    }
    all.insert("pinned".into(), pin.into());
    all.insert("concurrency".into(), concurrency.into());
    all.into()
}
