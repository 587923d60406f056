//! The floors `scripts/bench` compares llm-pulse against, in one module chosen by the plugin
//! configuration:
//!
//! - `""` / `{}`: a no-op proxy-wasm HTTP filter, the cost of the wasm approach itself (Envoy's
//!   wasm filter, the V8 VM, one call into the VM per callback) with no work in the filter;
//! - `"floor"`: the least host work any filter that measures per-token latency through
//!   proxy-wasm must do: copy each response body chunk into the VM, read the clock once per
//!   chunk, and record one histogram sample per SSE event (events found by their blank line,
//!   nothing parsed).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot { floor_metric: None }) });
}}

struct NoopRoot {
    /// The histogram of the floor mode; `None`: no-op mode.
    floor_metric: Option<u32>,
}

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let config = hostcalls::get_buffer(
            BufferType::PluginConfiguration,
            0,
            plugin_configuration_size,
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        if config.trim_ascii() == b"\"floor\"" {
            match hostcalls::define_metric(MetricType::Histogram, "bench_floor_event_gap_us") {
                Ok(id) => self.floor_metric = Some(id),
                Err(_) => return false,
            }
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(match self.floor_metric {
            None => Box::new(Noop),
            Some(metric) => Box::new(Floor {
                metric,
                last_ns: 0,
                after_newline: false,
            }),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Every callback keeps the SDK default: `Continue`, no host call.
struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {}

struct Floor {
    metric: u32,
    last_ns: u64,
    /// The previous chunk ended in `\n`: a leading `\n` ends an event.
    after_newline: bool,
}

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if body_size == 0 {
            return Action::Continue;
        }
        let chunk = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let now = hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let gap_us = now.saturating_sub(self.last_ns) / 1000;
        self.last_ns = now;
        let mut prev_newline = self.after_newline;
        for &b in &chunk {
            let newline = b == b'\n';
            if newline && prev_newline {
                let _ = hostcalls::record_metric(self.metric, gap_us);
            }
            prev_newline = newline;
        }
        self.after_newline = prev_newline;
        Action::Continue
    }
}
