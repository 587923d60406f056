//! wasm_host: plugin start, configuration, environment, logs, failures and their messages.

use anyhow::Result;
use wasm_host::{test_plugin, HostBuilder, LogLevel, MetricKind};

#[test]
fn starts_with_vm_config_plugin_config_env_and_properties() -> Result<()> {
    let host = test_plugin()?
        .vm_config("vm-settings")
        .plugin_config("tick_ms=0")
        .env("TP_PREFIX", "custom")
        .log_level(LogLevel::Debug)
        .property(&["plugin_root_id"], "root-a")
        .start()?;
    assert!(host.configured(0));
    assert!(host.logged("vm config: vm-settings"));
    // proxy_get_log_level answers Debug (1); the root context read plugin_root_id.
    assert!(host.logged("vm1 configured (log level 1, root id 'root-a')"));
    // Metric names come from the WASI environment variable, like DYN_METRICS_PREFIX.
    let ticks = host
        .metric("custom_ticks_total")
        .expect("metric defined in on_configure");
    assert_eq!(ticks.kind, MetricKind::Counter);
    assert_eq!(ticks.envoy_name(), "wasmcustom.custom_ticks_total");
    assert!(host.metric("wasmcustom.custom_inflight").is_some());
    assert!(host.metric("tp_ticks_total").is_none());
    let levels: Vec<LogLevel> = host.logs().iter().map(|l| l.level).collect();
    assert!(levels.contains(&LogLevel::Info));
    Ok(())
}

#[test]
fn rejected_configuration_is_an_error_with_the_plugin_logs() -> Result<()> {
    let err = match test_plugin()?.plugin_config("fail=1").start() {
        Ok(_) => panic!("fail=1 must be rejected"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("on_configure returned false on VM 0"), "{err}");
    assert!(err.contains("config rejected: fail=1"), "{err}");

    let host = test_plugin()?
        .plugin_config("fail=1")
        .vms(2)
        .start_unchecked()?;
    assert!(!host.configured(0));
    assert!(!host.configured(1));
    Ok(())
}

#[test]
fn missing_wasm_names_the_build_command() {
    let err = match HostBuilder::new("/nonexistent/target/wasm32-wasip1/release/my_filter.wasm")
        .missing_hint("build it with `make wasm`")
        .start()
    {
        Ok(_) => panic!("a missing file must fail"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("wasm module not found at /nonexistent/"),
        "{err}"
    );
    assert!(err.contains("build it with `make wasm`"), "{err}");
}

#[test]
fn unimplemented_import_fails_the_call_with_its_name() -> Result<()> {
    let mut host = test_plugin()?.start()?;
    let s = host.new_stream()?;
    let err = host
        .send_request_headers(s, &[(":method", "GET"), (":path", "/unimpl")], true)
        .expect_err("an unimplemented import must fail the test");
    let err = format!("{err:#}");
    assert!(err.contains("env.proxy_register_shared_queue"), "{err}");
    assert!(err.contains("does not implement"), "{err}");
    assert!(err.contains("proxy_on_request_headers"), "{err}");
    // Like Envoy, a VM that failed is not used again.
    assert!(host.vm_failure(0).is_some());
    let s2 = host.new_stream()?;
    assert!(host
        .send_request_headers(s2, &[(":method", "GET"), (":path", "/")], true)
        .is_err());
    Ok(())
}

#[test]
fn hostcalls_during_initialize_fail_as_in_envoy() -> Result<()> {
    let err = match test_plugin()?.env("TP_INIT_HOSTCALL", "1").start() {
        Ok(_) => panic!("a hostcall in _initialize must fail"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("env.proxy_get_current_time_nanoseconds during _initialize"),
        "{err}"
    );
    Ok(())
}

#[test]
fn plugin_panic_surfaces_its_message() -> Result<()> {
    let mut host = test_plugin()?.start()?;
    let s = host.new_stream()?;
    let err = host
        .send_request_headers(s, &[(":method", "GET"), (":path", "/panic")], true)
        .expect_err("a panic traps");
    let err = format!("{err:#}");
    assert!(err.contains("test plugin panics on purpose"), "{err}");
    Ok(())
}

#[test]
fn reports_linear_memory_size() -> Result<()> {
    let mut host = test_plugin()?.start()?;
    let before = host.memory_size(0)?;
    assert!(before >= 64 * 1024, "at least one wasm page: {before}");
    assert_eq!(before % (64 * 1024), 0);
    let s = host.new_stream()?;
    host.send_request_headers(s, &[(":method", "POST"), (":path", "/")], false)?;
    host.send_request_body(s, &vec![b'x'; 1 << 20], true)?;
    host.complete_stream(s)?;
    assert!(host.memory_size(0)? >= before);
    assert!(host.memory_size(5).is_err());
    Ok(())
}
