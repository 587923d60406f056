//! [`ProxyWasmHost`]: llm-pulse-core's [`Host`] on Envoy's proxy-wasm hostcalls. Every error is
//! handled here; nothing unwraps (the SDK's trait helpers do, and a panic takes the VM down).

use llm_pulse_core::host::{EnvoyEnd, Host, HostError, MetricKind};

/// The real host: proxy-wasm hostcalls into Envoy.
pub struct ProxyWasmHost;

impl Host for ProxyWasmHost {
    fn now_ns(&self) -> u64 {
        clock_ns()
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError> {
        let kind = match kind {
            MetricKind::Counter => proxy_wasm::types::MetricType::Counter,
            MetricKind::Gauge => proxy_wasm::types::MetricType::Gauge,
            MetricKind::Histogram => proxy_wasm::types::MetricType::Histogram,
        };
        proxy_wasm::hostcalls::define_metric(kind, name)
            .map_err(|s| HostError::Refused("define_metric", format!("{s:?}")))
    }

    fn increment_metric(&self, id: u32, delta: i64) {
        // A failed increment has nobody to report to on the hot path; the metric just misses it.
        let _ = proxy_wasm::hostcalls::increment_metric(id, delta);
    }

    fn record_metric(&self, id: u32, value: u64) {
        let _ = proxy_wasm::hostcalls::record_metric(id, value);
    }

    fn get_shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        proxy_wasm::hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        match proxy_wasm::hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(proxy_wasm::types::Status::CasMismatch) => Err(HostError::CasMismatch),
            Err(s) => Err(HostError::Refused("set_shared_data", format!("{s:?}"))),
        }
    }

    fn set_property(&self, path: &str, value: &[u8]) {
        let _ = proxy_wasm::hostcalls::set_property(vec![path], Some(value));
    }

    fn log_warn(&self, msg: &str) {
        log::warn!("{msg}");
    }

    fn envoy_end(&self) -> EnvoyEnd {
        EnvoyEnd {
            status: u32::try_from(property_u64(&["response", "code"]).unwrap_or(0)).unwrap_or(0),
            flags: property_u64(&["response", "flags"]).unwrap_or(0),
            details: property_string(&["response", "code_details"]),
        }
    }

    fn upstream_address(&self) -> Option<Vec<u8>> {
        proxy_wasm::hostcalls::get_property(vec!["upstream", "address"])
            .ok()
            .flatten()
            .filter(|a| !a.is_empty())
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<u32, HostError> {
        proxy_wasm::hostcalls::dispatch_http_call(
            cluster,
            headers.to_vec(),
            body,
            Vec::new(),
            std::time::Duration::from_millis(timeout_ms),
        )
        .map_err(|s| HostError::Refused("dispatch_http_call", format!("{s:?}")))
    }

    fn call_response_body(&self, start: usize, max: usize) -> Vec<u8> {
        proxy_wasm::hostcalls::get_buffer(
            proxy_wasm::types::BufferType::HttpCallResponseBody,
            start,
            max,
        )
        .ok()
        .flatten()
        .unwrap_or_default()
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    /// The ABI's clock (the SDK declares the same import; the linker keeps one).
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    /// The SDK's `set_buffer` and `remove_map_value` panic on a status other than Ok (a
    /// panic takes the VM down): the same imports, with the status handed back.
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key: *const u8, key_size: usize) -> u32;
}

/// Replaces the `size` bytes of the body buffer `buffer_type` from `start` with `data`: true
/// when the host took it.
pub fn replace_buffer(
    buffer_type: proxy_wasm::types::BufferType,
    start: usize,
    size: usize,
    data: &[u8],
) -> bool {
    // SAFETY: the host reads `data.len()` bytes at `data.as_ptr()` during the call; `data`
    // outlives it.
    let status = unsafe {
        proxy_set_buffer_bytes(buffer_type as u32, start, size, data.as_ptr(), data.len())
    };
    status == 0
}

/// Removes header `name` from the header map `map_type`: true when the host did.
pub fn remove_header(map_type: proxy_wasm::types::MapType, name: &str) -> bool {
    // SAFETY: the host reads `name.len()` bytes at `name.as_ptr()` during the call.
    let status =
        unsafe { proxy_remove_header_map_value(map_type as u32, name.as_ptr(), name.len()) };
    status == 0
}

/// Nanoseconds since the epoch straight from the host, 0 if it refuses. Not the SDK's
/// `get_current_time`: that builds a `SystemTime` which the filter then turns back into
/// nanoseconds (`duration_since`, a u128 multiply): in V8 that round trip cost more than the
/// host call, and the filter reads the clock on every body callback (docs/benchmarks.md).
fn clock_ns() -> u64 {
    let mut t: u64 = 0;
    // SAFETY: the host writes one u64 at the address given, a local that outlives the call.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut t) };
    if status == 0 {
        t
    } else {
        0
    }
}

/// Envoy serializes integer properties as 8 little-endian bytes.
pub fn property_u64(path: &[&str]) -> Option<u64> {
    let bytes = proxy_wasm::hostcalls::get_property(path.to_vec())
        .ok()
        .flatten()?;
    let arr: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(arr))
}

pub fn property_string(path: &[&str]) -> String {
    proxy_wasm::hostcalls::get_property(path.to_vec())
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
