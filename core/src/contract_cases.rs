//! The metric-contract table (llm-pulse-cases), natively: `StreamMeter` on a `FakeHost`, driven as
//! the filter's `http_filter.rs` does. The same table runs on the built `.wasm` in host-tests.

use crate::config::Config;
use crate::host::fake::FakeHost;
use crate::host::{EnvoyEnd, MetricKind};
use crate::meter::{ResponseHead, StreamMeter, VmMeter};
use llm_pulse_cases::*;

/// What the case left behind: metrics (non-zero or with samples), properties.
fn run(case: &Case) -> Expect {
    let host = FakeHost::default();
    host.clock_ns.set(1_735_689_600 * 1_000_000_000);
    let mut vm = VmMeter::new(&Config::parse(PLUGIN_CONFIG.as_bytes(), None).unwrap());
    let mut s = StreamMeter::start(case.method.as_bytes(), case.path.as_bytes(), false);
    if case.upload_gap_us == 0 {
        s.on_request_body(&mut vm, &host, &case.request_body, case.request_ends);
    } else {
        let n = case.request_body.len();
        for (i, b) in case.request_body.iter().enumerate() {
            host.advance_us(case.upload_gap_us);
            s.on_request_body(&mut vm, &host, &[*b], case.request_ends && i + 1 == n);
        }
    }
    let envoy_end = |status| EnvoyEnd {
        status,
        flags: case.end.flags,
        details: case.end.details.to_string(),
    };
    if let Some(r) = &case.response {
        host.advance_us(r.after_us);
        if r.ends {
            // Envoy flags its own replies before sending them (see `End`).
            host.envoy_end.replace(envoy_end(r.status));
        }
        let head = ResponseHead {
            status: r.status,
            content_type: r.content_type.as_bytes(),
            content_encoding: b"",
        };
        s.on_response_headers(&mut vm, &host, head, false);
        for c in &r.chunks {
            host.advance_us(c.after_us);
            s.on_response_body(&mut vm, &host, &c.bytes, false);
        }
        if r.ends {
            s.on_response_body(&mut vm, &host, b"", true);
        }
    }
    host.advance_us(case.end.after_us);
    host.envoy_end
        .replace(envoy_end(case.response.as_ref().map_or(0, |r| r.status)));
    s.on_log(&mut vm, &host);
    for (name, v) in host.counters.borrow().iter() {
        if name.starts_with("llm_inflight_requests.") {
            assert_eq!(*v, 0, "{}: {name}", case.name);
        }
    }

    let samples: Vec<Sample> = host
        .names
        .borrow()
        .iter()
        .map(|(kind, name)| match kind {
            MetricKind::Counter => Sample::Counter(name.clone(), host.value(name) as u64),
            MetricKind::Gauge => Sample::Gauge(name.clone(), host.value(name)),
            MetricKind::Histogram => Sample::Histogram(name.clone(), host.samples(name)),
        })
        .collect();
    let properties = host.properties.borrow();
    Expect::observed(samples, properties.iter())
}

#[test]
fn the_table_natively() {
    let cases = all();
    assert!(cases.len() > 300, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        failures.extend(check(case, &run(case)));
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn bad_configs_natively() {
    for c in bad_configs() {
        let e = Config::parse(c.json.as_bytes(), c.env_prefix).unwrap_err();
        let head: String = c.json.chars().take(80).collect();
        assert_eq!(e.field, c.field, "{head}: {e}");
        assert!(e.reason.contains(c.reason), "{head}: {e}");
        // The one log line stays short and on one line, whatever the config held.
        let line = e.to_string();
        assert!(line.len() <= 1024, "{head}: {} bytes", line.len());
        assert!(!line.contains(char::is_control), "{head}: {line:?}");
    }
}

#[test]
fn probe_payloads_natively() {
    for (backend, extra, path, body) in probe_payloads() {
        let json = format!(
            r#"{{"health":{{"targets":[{{"name":"t","cluster":"c","backend":"{backend}","model":"m"{extra}}}]}}}}"#
        );
        let c = Config::parse(json.as_bytes(), None).unwrap();
        let t = c.health.unwrap().targets.remove(0);
        let r = crate::health::payload::probe_request(&t, None);
        assert_eq!((r.method, r.path), ("POST", path), "{backend}{extra}");
        assert_eq!(r.body.as_deref(), Some(body), "{backend}{extra}");
    }
}

#[test]
fn names_are_unique() {
    let cases = all();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), cases.len());
}
