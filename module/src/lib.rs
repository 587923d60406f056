//! llm-pulse as a native Envoy dynamic module (`libllm_pulse_module.so`): the same
//! llm-pulse-core as the proxy-wasm filter, behind the same `Host` trait, on Envoy's
//! dynamic-module ABI instead of proxy-wasm's. Same plugin configuration, metric names and
//! labels, filter state and untrusted-input rules; no VM between Envoy and the meter.
//!
//! [`ffi`] is the ABI (every `unsafe` line of the crate), [`config`] the per-filter-config
//! state shared by Envoy's worker threads, [`filter`] one HTTP stream, [`host`] core's `Host`,
//! [`metrics`] the metric families Envoy needs defined up front, [`health`] the prober on
//! Envoy's main thread.

pub mod clock;
pub mod config;
pub mod ffi;
pub mod filter;
pub mod health;
pub mod host;
mod logger;
pub mod metrics;
pub mod shared;

/// `llm-pulse 0.1.0 (abc1234)`: the crate version and the git commit it was built from, the
/// `.wasm`'s line word for word (Envoy's `[dynamic_modules]` logger tag says which artifact).
pub const VERSION_LINE: &str = concat!(
    "llm-pulse ",
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("LLM_PULSE_COMMIT"),
    ")"
);
