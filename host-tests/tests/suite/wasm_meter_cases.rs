//! The metric contract on the built `.wasm`: every case of the table in `cases/src/lib.rs`
//! (the same table `llm-pulse`'s unit tests run natively), each on a fresh host with the test
//! clock, compared exactly: every metric with a value or a sample, every filter-state value.

use host_tests::artifacts::llm_pulse_host;
use std::time::Duration;

use anyhow::{Context as _, Result};
use llm_pulse_cases::{self as cases, response_flags, Case, Expect, Sample};
use wasm_host::{prop_u64, Host, MetricValue};

fn run(case: &Case) -> Result<(Expect, Host)> {
    let mut host = llm_pulse_host()?
        .plugin_config(cases::PLUGIN_CONFIG)
        .start()?;
    let s = host.new_stream()?;
    host.send_request_headers(
        s,
        &[
            (":method", case.method),
            (":path", case.path),
            (":authority", "llm"),
            ("content-type", "application/json"),
        ],
        false,
    )?;
    if case.upload_gap_us == 0 {
        host.send_request_body(s, &case.request_body, case.request_ends)?;
    } else {
        // One byte per chunk over test-clock time: a slow client's upload.
        let n = case.request_body.len();
        for (i, b) in case.request_body.iter().enumerate() {
            host.advance(Duration::from_micros(case.upload_gap_us))?;
            host.send_request_body(s, &[*b], case.request_ends && i + 1 == n)?;
        }
    }
    let set_end = |host: &mut Host| -> Result<()> {
        host.set_property(s, &["response", "flags"], prop_u64(case.end.flags))?;
        host.set_property(s, &["response", "code_details"], case.end.details)
    };
    if let Some(r) = &case.response {
        host.advance(Duration::from_micros(r.after_us))?;
        if r.ends {
            // Envoy flags its own replies before sending them (see `cases::End`).
            set_end(&mut host)?;
        }
        let status = r.status.to_string();
        host.send_response_headers(
            s,
            &[(":status", &status), ("content-type", r.content_type)],
            false,
        )?;
        for c in &r.chunks {
            host.advance(Duration::from_micros(c.after_us))?;
            host.send_response_body(s, &c.bytes, false)?;
        }
        if r.ends {
            host.send_response_body(s, b"", true)?;
        }
    }
    host.advance(Duration::from_micros(case.end.after_us))?;
    set_end(&mut host)?;
    let f = case.end.flags;
    if f & response_flags::DOWNSTREAM_CONNECTION_TERMINATION != 0 {
        host.disconnect(s)?;
    } else if f & response_flags::UPSTREAM_REMOTE_RESET != 0 {
        host.reset_stream(s)?;
    } else {
        host.complete_stream(s)?;
    }

    let rec = host.stream(s)?;
    assert!(rec.never_paused(), "{}: paused", case.name);
    assert_eq!(
        rec.response_body,
        case.response_body(),
        "{}: body changed",
        case.name
    );
    let samples = host.metrics().into_iter().map(|m| match m.value {
        MetricValue::Counter(v) => Sample::Counter(m.name, v),
        MetricValue::Gauge(v) => Sample::Gauge(m.name, v),
        MetricValue::Histogram(v) => Sample::Histogram(m.name, v),
    });
    Ok((Expect::observed(samples, &rec.filter_state), host))
}

/// Runs some of the table's cases; fails with every mismatch.
fn run_all(family: &str, cases: Vec<Case>) -> Result<()> {
    let mut failures = Vec::new();
    for case in &cases {
        let (got, host) = run(case).with_context(|| case.name.clone())?;
        // inflight_requests back to 0 after every case (defined, not merely absent).
        let inflight: Vec<_> = host
            .metrics()
            .into_iter()
            .filter(|m| m.name.starts_with("llm_inflight_requests."))
            .collect();
        assert!(!inflight.is_empty(), "{}: no inflight gauge", case.name);
        for m in inflight {
            assert_eq!(m.value, MetricValue::Gauge(0), "{}: {}", case.name, m.name);
        }
        failures.extend(cases::check(case, &got));
    }
    println!("{family}: {} cases", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    Ok(())
}

#[test]
fn the_table_covers_every_family() {
    let n = cases::hand_written().len()
        + cases::errors().len()
        + cases::tokens_per_event().len()
        + cases::events_per_chunk().len()
        + cases::splits().len()
        + cases::hardening().len();
    assert_eq!(n, cases::all().len(), "a family is not run on the wasm");
}

#[test]
fn hand_written_cases() -> Result<()> {
    run_all("hand-written", cases::hand_written())
}

#[test]
fn every_error_type() -> Result<()> {
    run_all("errors", cases::errors())
}

#[test]
fn k_tokens_per_event_and_k_events_per_chunk() -> Result<()> {
    let mut all = cases::tokens_per_event();
    all.extend(cases::events_per_chunk());
    run_all("k per event/chunk", all)
}

#[test]
fn hardening_cases() -> Result<()> {
    run_all("hardening", cases::hardening())
}

#[test]
fn events_split_at_every_byte() -> Result<()> {
    run_all("splits", cases::splits())
}
