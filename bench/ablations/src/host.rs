//! The host the glue calls: the product's [`ProxyWasmHost`], or with `ablate-record` one that
//! sends Envoy no metric update and no filter state and does everything else as the product's.

pub use crate::product_host::{property_string, remove_header, replace_buffer};

#[cfg(not(feature = "ablate-record"))]
pub use crate::product_host::ProxyWasmHost;

#[cfg(feature = "ablate-record")]
pub use no_record::ProxyWasmHost;

#[cfg(feature = "ablate-record")]
mod no_record {
    use crate::product_host::ProxyWasmHost as Product;
    use llm_pulse_core::host::{EnvoyEnd, Host, HostError, MetricKind};

    /// The product's host without `increment_metric`, `record_metric` and `set_property`.
    pub struct ProxyWasmHost;

    impl Host for ProxyWasmHost {
        fn now_ns(&self) -> u64 {
            Product.now_ns()
        }

        fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError> {
            Product.define_metric(kind, name)
        }

        fn increment_metric(&self, _id: u32, _delta: i64) {}

        fn record_metric(&self, _id: u32, _value: u64) {}

        fn get_shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            Product.get_shared_data(key)
        }

        fn set_shared_data(
            &self,
            key: &str,
            value: &[u8],
            cas: Option<u32>,
        ) -> Result<(), HostError> {
            Product.set_shared_data(key, value, cas)
        }

        fn set_property(&self, _path: &str, _value: &[u8]) {}

        fn log_warn(&self, msg: &str) {
            Product.log_warn(msg)
        }

        fn envoy_end(&self) -> EnvoyEnd {
            Product.envoy_end()
        }

        fn upstream_address(&self) -> Option<Vec<u8>> {
            Product.upstream_address()
        }

        fn dispatch_http_call(
            &self,
            cluster: &str,
            headers: &[(&str, &str)],
            body: Option<&[u8]>,
            timeout_ms: u64,
        ) -> Result<u32, HostError> {
            Product.dispatch_http_call(cluster, headers, body, timeout_ms)
        }

        fn call_response_body(&self, start: usize, max: usize) -> Vec<u8> {
            Product.call_response_body(start, max)
        }
    }
}
