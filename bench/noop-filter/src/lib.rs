//! The floors `scripts/bench` compares llm-pulse against, and the probes that price each kind
//! of host call in Envoy, in one module chosen by the plugin configuration (a JSON string):
//!
//! - `""` / `{}`: a no-op proxy-wasm HTTP filter, the cost of the wasm approach itself (Envoy's
//!   wasm filter, the V8 VM, one call into the VM per callback) with no work in the filter;
//! - `"floor"`: the least host work any filter that measures per-token latency through
//!   proxy-wasm must do: copy each response body chunk into the VM, read the clock once per
//!   chunk, and record one histogram sample per SSE event (events found by their blank line,
//!   nothing parsed).
//! - `"probe:<kind>"`: the no-op plus [`PROBE_REPS`] calls of one host call kind per request
//!   (in `on_http_response_headers`), so (Envoy CPU per request − the no-op's) / calls is the
//!   cost of one call in Envoy's V8. Kinds: `clock`, `record_metric`, `increment_metric`,
//!   `get_property` (`response.code`), `set_property` (`bench_probe.value`), `header`
//!   (`content-type` of the response headers). `"probe:get_buffer:<n>"` instead reads every
//!   response body chunk in `n`-byte pieces (each piece one `get_buffer`: the host call, the
//!   host's call back into the VM's allocator, the copy, and the free). `"probe:callbacks"`
//!   makes no call of its own but counts the callbacks Envoy makes (all of them, and the
//!   response body ones alone: events per read follows from the latter).
//!
//!   Every probe reports what it did at `on_log`, three `increment_metric` calls per request
//!   (`bench_probe_requests`, `bench_probe_calls`, `bench_probe_bytes`; for `callbacks`:
//!   callbacks and response body callbacks): the driver reads them from Envoy's admin stats
//!   and divides. Those three calls are included in the probe's cost; against 1,000 calls they
//!   are noise (and `increment_metric`'s own probe prices them).
//!   1,000 calls per request: enough that a ±10 % wobble of Envoy's own per-request CPU
//!   is a few ns per call.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot { mode: Mode::Noop }) });
}}

/// Host calls per request of a `probe:<kind>` mode.
const PROBE_REPS: u32 = 1000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProbeKind {
    Callbacks,
    Clock,
    RecordMetric,
    IncrementMetric,
    GetProperty,
    SetProperty,
    Header,
    /// Response body read in pieces of this many bytes.
    GetBuffer(usize),
}

impl ProbeKind {
    fn parse(config: &[u8]) -> Option<ProbeKind> {
        let text = std::str::from_utf8(config.trim_ascii()).ok()?;
        let kind = text.strip_prefix("\"probe:")?.strip_suffix('"')?;
        Some(match kind {
            "callbacks" => ProbeKind::Callbacks,
            "clock" => ProbeKind::Clock,
            "record_metric" => ProbeKind::RecordMetric,
            "increment_metric" => ProbeKind::IncrementMetric,
            "get_property" => ProbeKind::GetProperty,
            "set_property" => ProbeKind::SetProperty,
            "header" => ProbeKind::Header,
            other => {
                let n: usize = other.strip_prefix("get_buffer:")?.parse().ok()?;
                ProbeKind::GetBuffer(n.max(1))
            }
        })
    }
}

/// Metric ids of a probe.
#[derive(Clone, Copy)]
struct ProbeIds {
    kind: ProbeKind,
    requests: u32,
    calls: u32,
    bytes: u32,
    /// What `record_metric` / `increment_metric` probes call.
    histogram: u32,
    counter: u32,
}

enum Mode {
    Noop,
    /// The histogram of the floor mode.
    Floor(u32),
    Probe(ProbeIds),
}

struct NoopRoot {
    mode: Mode,
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
                Ok(id) => self.mode = Mode::Floor(id),
                Err(_) => return false,
            }
        } else if let Some(kind) = ProbeKind::parse(&config) {
            let define = |t, name| hostcalls::define_metric(t, name).ok();
            let ids = (|| {
                Some(ProbeIds {
                    kind,
                    requests: define(MetricType::Counter, "bench_probe_requests")?,
                    calls: define(MetricType::Counter, "bench_probe_calls")?,
                    bytes: define(MetricType::Counter, "bench_probe_bytes")?,
                    histogram: define(MetricType::Histogram, "bench_probe_histogram")?,
                    counter: define(MetricType::Counter, "bench_probe_counter")?,
                })
            })();
            match ids {
                Some(ids) => self.mode = Mode::Probe(ids),
                None => return false,
            }
        } else if !matches!(config.trim_ascii(), b"" | b"{}" | b"\"\"") {
            // An unknown mode must not silently measure the no-op.
            return false;
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(match self.mode {
            Mode::Noop => Box::new(Noop),
            Mode::Floor(metric) => Box::new(Floor {
                metric,
                last_ns: 0,
                after_newline: false,
            }),
            Mode::Probe(ids) => Box::new(Probe {
                ids,
                calls: 0,
                bytes: 0,
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
        let now = clock_ns();
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

struct Probe {
    ids: ProbeIds,
    /// Host calls made (for `callbacks`: callbacks seen).
    calls: u64,
    /// Bytes copied (for `callbacks`: response body callbacks seen).
    bytes: u64,
}

impl Probe {
    fn callback(&mut self) {
        if self.ids.kind == ProbeKind::Callbacks {
            self.calls += 1;
        }
    }
}

impl Context for Probe {}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        self.callback();
        Action::Continue
    }

    fn on_http_request_body(&mut self, _: usize, _: bool) -> Action {
        self.callback();
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.callback();
        let ids = self.ids;
        for i in 0..PROBE_REPS {
            let done = match ids.kind {
                ProbeKind::Callbacks | ProbeKind::GetBuffer(_) => false,
                ProbeKind::Clock => clock_ns() != 0,
                ProbeKind::RecordMetric => {
                    hostcalls::record_metric(ids.histogram, u64::from(i)).is_ok()
                }
                ProbeKind::IncrementMetric => hostcalls::increment_metric(ids.counter, 1).is_ok(),
                ProbeKind::GetProperty => hostcalls::get_property(vec!["response", "code"]).is_ok(),
                ProbeKind::SetProperty => {
                    hostcalls::set_property(vec!["bench_probe.value"], Some(b"1")).is_ok()
                }
                ProbeKind::Header => {
                    hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, "content-type")
                        .is_ok()
                }
            };
            if !done {
                break;
            }
            self.calls += 1;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _: bool) -> Action {
        self.callback();
        match self.ids.kind {
            ProbeKind::Callbacks => self.bytes += 1,
            ProbeKind::GetBuffer(piece) => {
                let mut start = 0;
                while start < body_size {
                    let want = piece.min(body_size - start);
                    let got = hostcalls::get_buffer(BufferType::HttpResponseBody, start, want)
                        .ok()
                        .flatten()
                        .map_or(0, |b| b.len());
                    if got == 0 {
                        break;
                    }
                    self.calls += 1;
                    self.bytes += got as u64;
                    start += got;
                }
            }
            _ => {}
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.callback();
        let ids = self.ids;
        let _ = hostcalls::increment_metric(ids.requests, 1);
        let _ = hostcalls::increment_metric(ids.calls, self.calls as i64);
        let _ = hostcalls::increment_metric(ids.bytes, self.bytes as i64);
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
}

/// The ABI's clock as llm-pulse reads it (filter/src/host.rs): the host call alone, without the
/// SDK's `SystemTime` round trip, so the floor stays the least a meter must do.
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
