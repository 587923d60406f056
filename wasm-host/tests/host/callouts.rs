//! wasm_host: HTTP callouts (`dispatch_http_call`) and their answers, failures and timeouts.

use std::time::Duration;

use anyhow::Result;
use wasm_host::{test_plugin, Action, CalloutState, StreamType, TIMEOUT_BODY};

#[test]
fn stream_callout_is_recorded_answered_and_resumes_the_request() -> Result<()> {
    let mut host = test_plugin()?.start()?;
    let s = host.new_stream()?;
    let action =
        host.send_request_headers(s, &[(":method", "GET"), (":path", "/callout")], true)?;
    assert_eq!(action, Action::Pause);

    let pending = host.pending_callouts();
    assert_eq!(pending.len(), 1);
    let c = &pending[0];
    assert_eq!(c.cluster, "upstream");
    assert_eq!(c.header(":method"), Some("POST"));
    assert_eq!(c.header(":path"), Some("/probe"));
    assert_eq!(c.header(":authority"), Some("workers"));
    assert_eq!(c.header("x-probe"), Some("1"));
    assert_eq!(c.header("content-length"), Some("4"));
    assert_eq!(c.body, b"ping");
    assert_eq!(c.timeout, Some(Duration::from_secs(3)));
    assert_eq!(c.dispatched_at_ns, host.now_ns());

    assert_eq!(host.call_response_bytes_read(0)?, 0);
    host.respond_callout(c.id, 200, &[("x-from", "worker")], b"pong")?;
    // The plugin copied the 4-byte body into its memory.
    assert_eq!(host.call_response_bytes_read(0)?, 4);
    let rec = host.stream(s)?;
    // The plugin read the answer, edited the paused request headers, and resumed.
    assert_eq!(rec.request_header("x-callout-status"), Some("200"));
    assert_eq!(rec.continued, vec![StreamType::HttpRequest]);
    assert!(host.logged("callout 1: 200 pong"));
    assert_eq!(
        host.callout(c.id).map(|c| c.state),
        Some(CalloutState::Answered { status: 200 })
    );
    assert!(host.pending_callouts().is_empty());
    assert!(
        host.respond_callout(c.id, 200, &[], b"").is_err(),
        "answered twice"
    );
    Ok(())
}

#[test]
fn failed_callout_reports_zero_headers() -> Result<()> {
    let mut host = test_plugin()?.start()?;
    let s = host.new_stream()?;
    host.send_request_headers(s, &[(":method", "GET"), (":path", "/callout")], true)?;
    let id = host.pending_callouts()[0].id;
    host.fail_callout(id)?;
    assert_eq!(host.counter("tp_callout_failures_total"), Some(1));
    assert_eq!(
        host.stream(s)?.request_header("x-callout-status"),
        Some("failed")
    );
    assert_eq!(
        host.callout(id).map(|c| c.state),
        Some(CalloutState::Failed)
    );
    Ok(())
}

#[test]
fn bad_callouts_get_bad_argument() -> Result<()> {
    // Missing :authority.
    let mut host = test_plugin()?.start()?;
    let s = host.new_stream()?;
    host.send_request_headers(s, &[(":method", "GET"), (":path", "/callout-bad")], true)?;
    assert_eq!(host.counter("tp_rejected_callouts_total"), Some(1));
    assert!(host.callouts().is_empty());

    // Unknown cluster.
    let mut host = test_plugin()?.clusters(&["workers"]).start()?;
    let s = host.new_stream()?;
    let action =
        host.send_request_headers(s, &[(":method", "GET"), (":path", "/callout")], true)?;
    assert_eq!(action, Action::Continue);
    assert!(host.logged("callout rejected: BadArgument"));
    assert!(host.callouts().is_empty());
    Ok(())
}

#[test]
fn root_callouts_from_ticks_time_out_as_the_clock_advances() -> Result<()> {
    let mut host = test_plugin()?
        .plugin_config("tick_ms=1000;tick_callout=1;cluster=workers")
        .clusters(&["workers"])
        .start()?;
    host.advance(Duration::from_secs(1))?;
    let first = host.pending_callouts();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].header(":path"), Some("/health"));
    assert_eq!(first[0].timeout, Some(Duration::from_millis(500)));
    assert_eq!(first[0].context_id, 1, "dispatched from the root context");

    host.respond_callout(first[0].id, 200, &[], b"ok")?;
    assert_eq!(host.gauge("tp_callout_status"), Some(200));

    // The next tick's callout gets no answer: 500 ms later Envoy answers 504 itself.
    host.advance(Duration::from_millis(1_499))?;
    assert_eq!(host.pending_callouts().len(), 1);
    host.advance(Duration::from_millis(1))?;
    assert!(host.pending_callouts().is_empty());
    assert_eq!(host.gauge("tp_callout_status"), Some(504));
    assert!(host.logged(&format!("with {} body bytes", TIMEOUT_BODY.len())));
    Ok(())
}
