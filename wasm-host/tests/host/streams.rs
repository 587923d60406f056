//! wasm_host: HTTP streams through the test plugin — header maps, bodies, pauses, local
//! replies, properties, stream ends, and the metrics the plugin records on the way.

use anyhow::Result;
use wasm_host::{
    response_flags, test_plugin, Action, Callback, EndReason, Host, StreamId, StreamType,
};

fn host() -> Result<Host> {
    test_plugin()?.start()
}

fn request(host: &mut Host, path: &str) -> Result<StreamId> {
    let s = host.new_stream()?;
    host.send_request_headers(
        s,
        &[
            (":method", "POST"),
            (":path", path),
            (":authority", "svc"),
            ("X-Remove-Me", "1"),
            ("x-tp-replaced", "no"),
        ],
        false,
    )?;
    Ok(s)
}

#[test]
fn headers_bodies_and_metrics_pass_through() -> Result<()> {
    let mut host = host()?;
    let s = request(&mut host, "/v1/chat/completions")?;
    assert_eq!(host.send_request_body(s, b"abc", false)?, Action::Continue);
    assert_eq!(host.gauge("tp_inflight"), Some(1));
    assert_eq!(host.send_request_body(s, b"defg", true)?, Action::Continue);
    host.send_response_headers(
        s,
        &[(":status", "200"), ("content-type", "text/event-stream")],
        false,
    )?;
    host.send_response_body(s, b"data: 1\n\n", false)?;
    host.send_response_body(s, b"data: 2\n\n", true)?;
    host.complete_stream(s)?;

    let rec = host.stream(s)?;
    // The plugin's header edits: add, replace, remove (names lower-cased as in Envoy).
    assert_eq!(rec.request_header("x-tp-added"), Some("1"));
    assert_eq!(rec.request_header("x-tp-replaced"), Some("yes"));
    assert_eq!(rec.request_header("x-remove-me"), None);
    assert_eq!(rec.request_body, b"abcdefg");
    assert_eq!(rec.response_body, b"data: 1\n\ndata: 2\n\n");
    assert!(rec.never_paused());
    assert_eq!(rec.end, Some(EndReason::Completed));
    for cb in [
        Callback::RequestHeaders,
        Callback::RequestBody,
        Callback::ResponseHeaders,
        Callback::ResponseBody,
    ] {
        assert!(
            rec.actions(cb).iter().all(|a| *a == Action::Continue),
            "{cb:?}"
        );
    }
    for cb in [Callback::Log, Callback::Done, Callback::Delete] {
        assert!(rec.callbacks.iter().any(|c| c.callback == cb), "{cb:?}");
    }

    // Counter with labels encoded in the name, gauge back to 0, histograms, get_metric.
    let requests = host.metrics_named("tp_requests_total");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].label("status").as_deref(), Some("200"));
    assert_eq!(requests[0].counter(), Some(1));
    assert_eq!(host.gauge("tp_inflight"), Some(0));
    assert_eq!(host.histogram("tp_request_body_bytes"), Some(vec![7]));
    assert_eq!(host.gauge("tp_seen_requests"), Some(1));
    // on_log read :status from the access-log phase response headers.
    assert!(host.logged("done path=/v1/chat/completions status=200 code=Some(200)"));
    Ok(())
}

#[test]
fn paused_body_is_buffered_then_passes() -> Result<()> {
    let mut host = host()?;
    let s = request(&mut host, "/")?;
    assert_eq!(host.send_request_body(s, b"HOLD-1 ", false)?, Action::Pause);
    let rec = host.stream(s)?;
    assert_eq!(rec.request_body_held, b"HOLD-1 ");
    assert!(rec.request_body.is_empty());
    assert!(!rec.never_paused());
    // The next chunk is appended; the plugin sees the whole buffer and now continues.
    assert_eq!(host.send_request_body(s, b"end", true)?, Action::Continue);
    let rec = host.stream(s)?;
    assert_eq!(rec.request_body, b"HOLD-1 end");
    assert!(rec.request_body_held.is_empty());
    assert_eq!(
        rec.actions(Callback::RequestBody),
        vec![Action::Pause, Action::Continue]
    );
    assert_eq!(host.histogram("tp_request_body_bytes"), Some(vec![10]));
    Ok(())
}

#[test]
fn set_buffer_bytes_replaces_the_body() -> Result<()> {
    let mut host = host()?;
    let s = request(&mut host, "/")?;
    host.send_request_body(s, b"please REWRITE me", true)?;
    assert_eq!(host.stream(s)?.request_body, b"rewritten");
    Ok(())
}

#[test]
fn set_header_map_pairs_replaces_response_headers() -> Result<()> {
    let mut host = host()?;
    let s = request(&mut host, "/setmap")?;
    host.send_response_headers(
        s,
        &[(":status", "200"), ("x-drop", "1"), ("x-keep", "2")],
        true,
    )?;
    let rec = host.stream(s)?;
    assert_eq!(rec.response_header("x-drop"), None);
    assert_eq!(rec.response_header("x-keep"), Some("2"));
    assert_eq!(rec.response_header("x-replaced"), Some("1"));
    Ok(())
}

#[test]
fn request_headers_are_gone_after_they_continued() -> Result<()> {
    // Envoy drops the request header map once on_request_headers returned Continue: reading it
    // from on_response_headers is BadArgument, which the SDK turns into a panic.
    let mut host = host()?;
    let s = request(&mut host, "/readreq")?;
    let err = host
        .send_response_headers(s, &[(":status", "200")], true)
        .expect_err("reading request headers in the response phase fails in Envoy");
    assert!(
        format!("{err:#}").contains("unexpected status: 2"),
        "{err:#}"
    );
    Ok(())
}

#[test]
fn local_reply_goes_through_the_plugin_and_ends_the_stream() -> Result<()> {
    let mut host = host()?;
    let s = host.new_stream()?;
    host.send_request_headers(s, &[(":method", "GET"), (":path", "/local")], false)?;
    let rec = host.stream(s)?;
    let reply = rec.local_reply.clone().expect("local reply sent");
    assert_eq!(reply.status, 429);
    assert_eq!(reply.body, b"slow down");
    assert_eq!(
        reply.headers,
        vec![("x-tp".to_string(), "local".to_string())]
    );
    assert_eq!(host.local_replies().len(), 1);
    // Envoy sends the reply through the encoder filters, this one included, then logs.
    assert_eq!(rec.response_header(":status"), Some("429"));
    assert_eq!(rec.response_header("content-type"), Some("text/plain"));
    assert_eq!(rec.response_header("x-tp"), Some("local"));
    assert_eq!(rec.response_body, b"slow down");
    assert_eq!(rec.end, Some(EndReason::LocalReply));
    assert!(host.logged("done path=/local status=429 code=Some(429)"));
    assert_eq!(
        host.metrics_named("tp_requests_total")[0]
            .label("status")
            .as_deref(),
        Some("429")
    );
    assert!(host.send_request_body(s, b"late", true).is_err());
    Ok(())
}

#[test]
fn properties_the_test_sets_and_the_plugin_sets() -> Result<()> {
    let mut host = host()?;
    let s = request(&mut host, "/")?;
    host.send_response_headers(s, &[(":status", "503")], true)?;
    host.set_response_flags(s, response_flags::NO_HEALTHY_UPSTREAM)?;
    host.set_response_code_details(s, "no_healthy_upstream")?;
    host.complete_stream(s)?;
    assert!(host.logged("status=503 code=Some(503) flags=2 details=no_healthy_upstream"));
    let rec = host.stream(s)?;
    // One-element paths read back under Envoy's filter-state key wasm.<path>.
    assert_eq!(rec.property_str("tp.flags").as_deref(), Some("2"));
    assert_eq!(rec.property_str("wasm.tp.flags").as_deref(), Some("2"));
    assert!(rec.filter_state.contains_key("wasm.tp.elapsed_us"));
    Ok(())
}

#[test]
fn reset_and_disconnect_end_streams_with_envoy_flags() -> Result<()> {
    let mut host = host()?;
    let reset = request(&mut host, "/a")?;
    host.send_response_headers(reset, &[(":status", "200")], false)?;
    host.send_response_body(reset, b"partial", false)?;
    host.reset_stream(reset)?;
    let gone = request(&mut host, "/b")?;
    host.disconnect(gone)?;

    assert_eq!(host.stream(reset)?.end, Some(EndReason::UpstreamReset));
    assert_eq!(host.stream(gone)?.end, Some(EndReason::Disconnected));
    assert_eq!(
        host.stream(reset)?.property_str("tp.flags").as_deref(),
        Some("16")
    );
    assert_eq!(
        host.stream(gone)?.property_str("tp.flags").as_deref(),
        Some("16384")
    );
    // on_log ran for both: inflight is back to zero; the disconnected one had no status.
    assert_eq!(host.gauge("tp_inflight"), Some(0));
    let none = host
        .metrics_named("tp_requests_total")
        .into_iter()
        .find(|m| m.label("status").as_deref() == Some("none"))
        .expect("a request without response");
    assert_eq!(none.counter(), Some(1));
    assert!(host.send_response_body(gone, b"x", true).is_err());
    Ok(())
}

#[test]
fn trailers_reach_the_plugin() -> Result<()> {
    let mut host = host()?;
    let s = request(&mut host, "/")?;
    host.send_request_body(s, b"x", false)?;
    assert_eq!(
        host.send_request_trailers(s, &[("x-req-trailer", "1")])?,
        Action::Continue
    );
    host.send_response_headers(s, &[(":status", "200")], false)?;
    assert_eq!(
        host.send_response_trailers(s, &[("grpc-status", "0")])?,
        Action::Continue
    );
    host.complete_stream(s)?;
    let rec = host.stream(s)?;
    assert_eq!(
        rec.actions(Callback::RequestTrailers),
        vec![Action::Continue]
    );
    assert_eq!(
        rec.actions(Callback::ResponseTrailers),
        vec![Action::Continue]
    );
    assert_eq!(
        rec.response_trailers,
        Some(vec![("grpc-status".to_string(), "0".to_string())])
    );
    assert!(host.send_request_body(s, b"late", true).is_err());
    Ok(())
}

#[test]
fn proxy_done_outside_shutdown_is_not_found() -> Result<()> {
    let mut host = host()?;
    let s = host.new_stream()?;
    let err = host
        .send_request_headers(s, &[(":method", "GET"), (":path", "/done")], true)
        .expect_err("the SDK panics on NotFound");
    assert!(
        format!("{err:#}").contains("unexpected status: 1"),
        "{err:#}"
    );
    Ok(())
}

#[test]
fn plugin_can_close_the_stream() -> Result<()> {
    let mut host = host()?;
    let s = request(&mut host, "/reset")?;
    let rec = host.stream(s)?;
    assert_eq!(rec.closed, vec![StreamType::HttpRequest]);
    assert_eq!(rec.end, Some(EndReason::ClosedByPlugin));
    Ok(())
}

#[test]
fn streams_on_several_vms_share_metrics() -> Result<()> {
    let mut host = test_plugin()?.vms(2).start()?;
    let a = host.new_stream_on(0)?;
    let b = host.new_stream_on(1)?;
    for s in [a, b] {
        host.send_request_headers(s, &[(":method", "GET"), (":path", "/")], true)?;
    }
    assert_eq!(host.gauge("tp_inflight"), Some(2));
    for s in [a, b] {
        host.send_response_headers(s, &[(":status", "200")], true)?;
        host.complete_stream(s)?;
    }
    assert_eq!(host.gauge("tp_inflight"), Some(0));
    assert_eq!(
        host.metrics_named("tp_requests_total")[0].counter(),
        Some(2)
    );
    Ok(())
}
