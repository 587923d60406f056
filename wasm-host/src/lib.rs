//! A proxy-wasm host on wasmtime that runs the very `.wasm` Envoy runs, with a test clock.
//!
//! It implements the proxy-wasm ABI 0.2.1 hostcalls the Rust SDK (proxy-wasm 0.2.5) uses, with
//! Envoy's semantics where they matter to a plugin, and WASI preview1 through `wasmtime-wasi`
//! (environment variables are the VM's `environment_variables`; clocks read the test clock;
//! stdout/stderr become info/error logs as in Envoy). An import it does not implement fails
//! the call with the import's name.
//!
//! Several VMs (Envoy's per-worker VMs) share one shared-data store, one metrics registry and
//! the clock; each VM's state lives in its own `Store<HostState>`, so tests run in parallel.
//!
//! ```no_run
//! use std::time::Duration;
//! use wasm_host::HostBuilder;
//!
//! # fn main() -> anyhow::Result<()> {
//! let mut host = HostBuilder::new("target/wasm32-wasip1/release/my_filter.wasm")
//!     .plugin_config("{}")
//!     .env("DYN_METRICS_PREFIX", "dyn")
//!     .vms(2)
//!     .start()?;
//! let s = host.new_stream()?;
//! host.send_request_headers(s, &[(":method", "POST"), (":path", "/v1/chat/completions")], false)?;
//! host.send_request_body(s, br#"{"model":"m","stream":true}"#, true)?;
//! host.advance(Duration::from_millis(100))?;
//! host.send_response_headers(s, &[(":status", "200"), ("content-type", "text/event-stream")], false)?;
//! host.send_response_body(s, b"data: [DONE]\n\n", true)?;
//! host.complete_stream(s)?;
//! for m in host.metrics() {
//!     println!("{} {:?} {:?}", m.envoy_name(), m.labels(), m.value);
//! }
//! assert!(host.stream(s)?.never_paused());
//! # Ok(())
//! # }
//! ```

mod abi;
mod callouts;
mod clock;
mod host;
mod imports;
mod memory;
mod metrics;
mod module_cache;
mod records;
mod shared_data;
mod state;
mod streams;
mod test_plugin;
mod vm;

pub use abi::{Action, LogLevel, MetricKind, StreamType};
pub use callouts::TIMEOUT_BODY;
pub use host::{Host, HostBuilder};
pub use imports::IMPLEMENTED as IMPLEMENTED_IMPORTS;
pub use metrics::{split_labels, Metric, MetricValue, ENVOY_CUSTOM_NAMESPACE};
pub use module_cache::target_dir;
pub use records::{
    response_flags, Callback, CallbackRecord, Callout, CalloutId, CalloutState, EndReason,
    LocalReply, LogEntry, StreamId, StreamRecord,
};
pub use streams::{prop_i64, prop_u64};
pub use test_plugin::{test_plugin, test_plugin_wasm};
