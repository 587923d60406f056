//! The stream context the root hands out: the product's [`HttpFilter`], or with `ablate-scan`
//! one that copies each response body chunk into the VM exactly when the product's would, and
//! then drops it: no scan, no timing, no usage edit. Every other callback is the product's.

pub use crate::product_http_filter::HealthEndpoint;

#[cfg(not(feature = "ablate-scan"))]
pub use crate::product_http_filter::HttpFilter;

#[cfg(feature = "ablate-scan")]
pub use no_scan::HttpFilter;

#[cfg(feature = "ablate-scan")]
mod no_scan {
    use super::HealthEndpoint;
    use crate::product_http_filter::HttpFilter as Product;
    use llm_pulse_core::meter::VmMeter;
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext};
    use proxy_wasm::types::{Action, BufferType};
    use std::cell::RefCell;
    use std::rc::Rc;

    /// The product's context with its response body callback replaced.
    pub struct HttpFilter(Product);

    impl HttpFilter {
        pub fn new(vm: Rc<RefCell<VmMeter>>, health: Option<Rc<HealthEndpoint>>) -> HttpFilter {
            HttpFilter(Product::new(vm, health))
        }
    }

    impl Context for HttpFilter {}

    impl HttpContext for HttpFilter {
        fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
            self.0.on_http_request_headers(num_headers, end_of_stream)
        }

        fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
            self.0.on_http_request_body(body_size, end_of_stream)
        }

        fn on_http_response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
            self.0.on_http_response_headers(num_headers, end_of_stream)
        }

        fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
            // The product's copy (same condition, same call), kept from being optimized away.
            if self.0.wants_response_body() && body_size > 0 {
                let chunk = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                std::hint::black_box(&chunk);
            }
            Action::Continue
        }

        fn on_log(&mut self) {
            self.0.on_log()
        }
    }
}
