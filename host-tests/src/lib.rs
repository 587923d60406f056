//! Test harnesses for llm-pulse.

pub mod envoy;
pub mod prom;
pub mod sim;
#[cfg(feature = "wasm-host")]
pub mod wasm_host;
