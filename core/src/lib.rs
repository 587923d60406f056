//! llm-pulse's logic, as plain Rust: the plugin configuration, the streaming scanners of request
//! and response bodies, the TTFT/ITL clock, labels, metrics, model admission, the per-request
//! meter and its verdict, and the health prober. It knows nothing of proxy-wasm: all it needs
//! from a proxy is the [`host::Host`] trait, which the `llm-pulse` filter crate implements on
//! Envoy's hostcalls and [`host::fake::FakeHost`] implements for the unit tests.

pub mod capped;
pub mod config;
pub mod health;
pub mod host;
pub mod labels;
pub mod meter;
pub mod metrics;
pub mod models;
pub mod outcome;
pub mod protocol;
pub mod shared;
pub mod timing;
pub mod usage;
pub mod workers;

#[cfg(test)]
mod contract_cases;
