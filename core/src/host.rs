//! The few things the logic needs from Envoy, behind a trait so the logic runs natively in unit
//! tests ([`fake::FakeHost`]) and in Envoy (the filter crate's `ProxyWasmHost`).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// A compare-and-swap write lost against another VM's write.
    CasMismatch,
    /// Any other refusal by the host, with the host call and its status.
    Refused(&'static str, String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::CasMismatch => write!(f, "shared data changed concurrently (CAS mismatch)"),
            HostError::Refused(call, status) => write!(f, "{call} refused: {status}"),
        }
    }
}

/// Envoy's account of a stream's end so far: `response.code`, `response.flags`,
/// `response.code_details` (0, 0, empty when unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvoyEnd {
    pub status: u32,
    pub flags: u64,
    pub details: String,
}

pub trait Host {
    /// Wall-clock time in nanoseconds (proxy-wasm offers no monotonic clock in ABI 0.2.1).
    fn now_ns(&self) -> u64;
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError>;
    fn increment_metric(&self, id: u32, delta: i64);
    fn record_metric(&self, id: u32, value: u64);
    /// Shared data across the VMs of one `vm_id`: value and CAS token.
    fn get_shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError>;
    /// Filter state for access logs (read back as `wasm.<path>`).
    fn set_property(&self, path: &str, value: &[u8]);
    fn log_warn(&self, msg: &str);
    /// Envoy's account of the current stream's end (three property reads: ask only when it
    /// can change the verdict).
    fn envoy_end(&self) -> EnvoyEnd;
    /// The address (`ip:port`) of the upstream host serving the current stream, Envoy's
    /// `upstream.address`; `None` before one is chosen. One property read.
    fn upstream_address(&self) -> Option<Vec<u8>>;
    /// An HTTP call to `cluster` (headers include `:method`, `:path`, `:authority`); the answer
    /// arrives later with the returned token.
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<u32, HostError>;
    /// Up to `max` bytes of the body of the HTTP call answer being delivered, from `start`
    /// (only during that delivery; empty otherwise). Each call copies that much into the VM.
    fn call_response_body(&self, start: usize, max: usize) -> Vec<u8>;
}

/// An in-memory host for tests: core's own, and other crates' with the `test-support` feature
/// (the fuzz targets).
#[cfg(any(test, feature = "test-support"))]
pub mod fake;
