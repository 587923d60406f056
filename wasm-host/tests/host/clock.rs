//! wasm_host: the test clock (proxy-wasm time, WASI wall and monotonic clocks) and ticks.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::Result;
use wasm_host::test_plugin;

#[test]
fn every_clock_the_plugin_reads_follows_the_test_clock() -> Result<()> {
    let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut host = test_plugin()?.start_time(start).start()?;
    assert_eq!(host.now(), start);
    let s = host.new_stream()?;
    host.send_request_headers(s, &[(":method", "GET"), (":path", "/")], true)?;
    host.advance(Duration::from_millis(100))?;
    host.send_response_headers(s, &[(":status", "200")], false)?;
    host.send_response_body(s, b"first", false)?;
    host.advance(Duration::from_micros(2_500))?;
    host.send_response_body(s, b"last", true)?;
    host.complete_stream(s)?;

    // proxy_get_current_time_nanoseconds: time to first byte and total duration.
    assert_eq!(host.histogram("tp_ttfb_us"), Some(vec![100_000]));
    assert_eq!(host.histogram("tp_duration_us"), Some(vec![102_500]));
    // WASI clock_time_get: SystemTime::now() and Instant::now() inside the plugin.
    let rec = host.stream(s)?;
    assert_eq!(rec.property_str("tp.elapsed_us").as_deref(), Some("102500"));
    assert_eq!(
        rec.property_str("tp.wasi_elapsed_us").as_deref(),
        Some("102500")
    );
    assert_eq!(
        rec.property_str("tp.mono_elapsed_us").as_deref(),
        Some("102500")
    );
    assert_eq!(host.now(), start + Duration::from_micros(102_500));
    // Log entries carry the test-clock time.
    let last = host.logs().pop().expect("on_log logged");
    assert_eq!(last.at_ns, host.now_ns());
    Ok(())
}

#[test]
fn ticks_fire_at_the_period_as_the_clock_advances() -> Result<()> {
    let mut host = test_plugin()?
        .plugin_config("tick_ms=1000")
        .vms(2)
        .start()?;
    assert_eq!(host.tick_period(0), Some(Duration::from_secs(1)));
    host.advance(Duration::from_millis(999))?;
    assert_eq!(host.counter("tp_ticks_total"), Some(0));
    host.advance(Duration::from_millis(1))?;
    // Both VMs' root contexts ticked once.
    assert_eq!(host.counter("tp_ticks_total"), Some(2));
    host.advance(Duration::from_millis(3_500))?;
    assert_eq!(host.counter("tp_ticks_total"), Some(8));
    // An explicit tick does not wait for the period.
    host.tick(1)?;
    assert_eq!(host.counter("tp_ticks_total"), Some(9));
    host.tick_all()?;
    assert_eq!(host.counter("tp_ticks_total"), Some(11));
    Ok(())
}

#[test]
fn no_tick_without_a_period() -> Result<()> {
    let mut host = test_plugin()?.start()?;
    assert_eq!(host.tick_period(0), None);
    host.advance(Duration::from_secs(60))?;
    host.tick_all()?;
    assert_eq!(host.counter("tp_ticks_total"), Some(0));
    Ok(())
}
