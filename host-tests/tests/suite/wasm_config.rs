//! Bad plugin configs on the built `.wasm`: for each field (the table `bad_configs` in
//! `cases/src/lib.rs`, also run natively), `on_configure` returns false and one error line
//! names the field and the reason.

use anyhow::Result;
use host_tests::artifacts::llm_pulse_host;
use llm_pulse_cases as cases;
use wasm_host::LogLevel;

#[test]
fn every_bad_field_is_refused_and_named() -> Result<()> {
    let all = cases::bad_configs();
    for c in &all {
        let mut b = llm_pulse_host()?.plugin_config(c.json.as_str());
        if let Some(p) = c.env_prefix {
            b = b.env("DYN_METRICS_PREFIX", p);
        }
        let host = b.start_unchecked()?;
        // Some rows carry a 1 MB value: name them by their start.
        let json: String = c.json.chars().take(100).collect();
        assert!(!host.configured(0), "{json}: accepted");
        let want = format!("invalid plugin configuration: {}: ", c.field);
        let lines: Vec<_> = host
            .logs()
            .into_iter()
            .filter(|l| l.message.contains(&want))
            .collect();
        assert_eq!(lines.len(), 1, "{json}: logs {:?}", host.logs());
        assert_eq!(lines[0].level, LogLevel::Error, "{json}");
        assert!(
            lines[0].message.contains(c.reason),
            "{json}: {:?} lacks {:?}",
            lines[0].message,
            c.reason
        );
        // One short line whatever the config held (a 1 MB value was
        // echoed whole), with no control character of it.
        let line = &lines[0].message;
        assert!(line.len() <= 1100, "{json}: a line of {} bytes", line.len());
        assert!(!line.contains(char::is_control), "{json}: {line:?}");
    }
    println!("{} bad configs refused", all.len());
    Ok(())
}

#[test]
fn good_configs_are_accepted() -> Result<()> {
    for json in [
        "",
        "{}",
        r#"{"metrics_prefix":"dynamo_frontend","max_models":1024}"#,
        r#"{"health":{"path":"/h","live_path":"/l","targets":[{"name":"w0","cluster":"c","backend":"sglang","interval":"1.5s","timeout":"250ms","mode":"always","prefill":true}]}}"#,
    ] {
        let host = llm_pulse_host()?.plugin_config(json).start_unchecked()?;
        assert!(host.configured(0), "{json}: {:?}", host.logs());
    }
    Ok(())
}

/// A VM whose config was refused still gets stream contexts if the host asks: they must pass
/// traffic, not abort the VM (the SDK aborts when a root context returns no stream context).
#[test]
fn an_unconfigured_vm_passes_streams_through() -> Result<()> {
    let mut host = llm_pulse_host()?
        .plugin_config(r#"{"max_models":0}"#)
        .start_unchecked()?;
    assert!(!host.configured(0));
    let s = host.new_stream()?;
    host.send_request_headers(
        s,
        &[(":method", "POST"), (":path", "/v1/chat/completions")],
        true,
    )?;
    assert_eq!(host.vm_failure(0), None);
    assert!(host.stream(s)?.never_paused());
    Ok(())
}
