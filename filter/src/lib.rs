//! llm-pulse: a proxy-wasm filter that measures LLM inference traffic passing through Envoy.
//!
//! The modules below `lib.rs` are plain Rust; only `root`, `http_filter` and the
//! `ProxyWasmHost` in `host` talk to proxy-wasm.

#[cfg(any(test, feature = "cases"))]
pub mod cases;
pub mod config;
pub mod health;
pub mod host;
pub mod http_filter;
pub mod json_doc;
pub mod labels;
pub mod meter;
pub mod metrics;
pub mod outcome;
pub mod protocol;
pub mod root;
pub mod timing;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::default())
    });
}}
