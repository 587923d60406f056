//! llm-pulse's proxy-wasm filter: the `.wasm` Envoy loads. Thin by design: it registers the
//! root context ([`root`]), which hands each HTTP stream an [`http_filter::HttpFilter`], and
//! implements llm-pulse-core's `Host` on Envoy's hostcalls ([`host::ProxyWasmHost`]). All
//! logic is in llm-pulse-core.

pub mod host;
pub mod http_filter;
pub mod root;

/// `llm-pulse 0.1.0 (abc1234)`: the crate version and the git commit it was built from.
pub const VERSION_LINE: &str = concat!(
    "llm-pulse ",
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("LLM_PULSE_COMMIT"),
    ")"
);

/// With `panic = "abort"` a panic (from std or the allocator: the filter's own code has none)
/// would kill the VM with no word in Envoy's log; this says what and where first.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let _ = proxy_wasm::hostcalls::log(
            proxy_wasm::types::LogLevel::Critical,
            &format!("{VERSION_LINE} panicked: {info}"),
        );
    }));
}

proxy_wasm::main! {{
    log_panics();
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::default())
    });
}}
