//! The proxy-wasm `HttpContext`: reads what Envoy offers and feeds it to [`StreamMeter`].
//! Every callback returns `Continue`: the filter never pauses a stream. It changes one only to
//! ask the worker for usage (`usage_stats`), as the meter says, and takes that usage out of
//! the answer again.
//!
//! Host calls go through `hostcalls` with errors handled, never through the SDK's trait
//! helpers, which `unwrap()` (a panic would take the whole VM down).

use crate::host::{property_string, remove_header, replace_buffer, ProxyWasmHost};
use llm_pulse_core::health::fail_fast::{self, FailFast};
use llm_pulse_core::health::prober::Prober;
use llm_pulse_core::health::report::{self, Endpoint, Endpoints};
use llm_pulse_core::health::target;
use llm_pulse_core::host::Host;
use llm_pulse_core::meter::{ResponseHead, StreamMeter, VmMeter};
use llm_pulse_core::usage::refusal;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::cell::RefCell;
use std::rc::Rc;

/// The health prober of this VM and the paths it answers.
pub struct HealthEndpoint {
    pub prober: RefCell<Prober>,
    pub endpoints: Endpoints,
    /// Whether `/health` shows each target's cluster, worker address and last error.
    pub details: bool,
    pub started_ns: u64,
    /// `health.fail_fast`: inference gets a local 503 while a target is not ready.
    pub fail_fast: Option<FailFast>,
}

impl HealthEndpoint {
    /// The local answer for a request, if it is one of ours: path first, then the method,
    /// then (only for `health.serve: <authority>`) the `:authority`.
    fn answer(&self, method: &[u8], path: &[u8]) -> Option<(u32, String)> {
        let endpoint = self.endpoints.endpoint(path)?;
        if !Endpoints::answers_method(method) {
            return None;
        }
        let host = ProxyWasmHost;
        if endpoint == Endpoint::Target {
            // The authority names the target; one naming none passes, as any request.
            let authority = request_header(":authority").unwrap_or_default();
            let prober = self.prober.try_borrow().ok()?;
            return target::answer_for(&prober, &host, &authority);
        }
        if self.endpoints.serve.needs_authority() {
            let authority = request_header(":authority").unwrap_or_default();
            if !self.endpoints.serve.serves(&authority) {
                return None;
            }
        }
        let uptime = host.now_ns().saturating_sub(self.started_ns) / 1_000_000_000;
        match endpoint {
            Endpoint::Health => {
                let prober = self.prober.try_borrow().ok()?;
                Some(report::health(&prober.views(&host), uptime, self.details))
            }
            Endpoint::Live => Some(report::live(uptime)),
            Endpoint::Target => None,
        }
    }

    /// The `retry-after` of the local 503, when fail-fast is on and refuses this request.
    fn refuses(&self, path: &[u8]) -> Option<&str> {
        let fail_fast = self.fail_fast.as_ref()?;
        let prober = self.prober.try_borrow().ok()?;
        fail_fast
            .refuses(&ProxyWasmHost, &prober, path)
            .then_some(fail_fast.retry_after.as_str())
    }
}

pub struct HttpFilter {
    vm: Rc<RefCell<VmMeter>>,
    health: Option<Rc<HealthEndpoint>>,
    stream: Option<StreamMeter>,
}

impl HttpFilter {
    pub fn new(vm: Rc<RefCell<VmMeter>>, health: Option<Rc<HealthEndpoint>>) -> HttpFilter {
        HttpFilter {
            vm,
            health,
            stream: None,
        }
    }

    /// Whether the meter reads response bodies: the only ones copied into the VM.
    pub fn wants_response_body(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(|s| s.wants_response_body())
    }

    fn with_stream(&mut self, f: impl FnOnce(&mut StreamMeter, &mut VmMeter)) {
        if let (Some(stream), Ok(mut vm)) = (self.stream.as_mut(), self.vm.try_borrow_mut()) {
            f(stream, &mut vm);
        }
    }
}

fn request_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

fn response_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name)
        .ok()
        .flatten()
}

fn body(kind: BufferType, size: usize) -> Vec<u8> {
    if size == 0 {
        return Vec::new();
    }
    hostcalls::get_buffer(kind, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

impl Context for HttpFilter {}

impl HttpContext for HttpFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let path = request_header(":path").unwrap_or_default();
        // Read once: the health endpoints need it, and a HEAD's answer has no body to parse.
        let method = request_header(":method").unwrap_or_default();
        if let Some((status, body)) = self.health.as_ref().and_then(|h| h.answer(&method, &path)) {
            let headers = vec![
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
            ];
            let body = (method == b"GET").then_some(body.as_bytes());
            if hostcalls::send_http_response(status, headers, body).is_ok() {
                // Answered here: the stream is not an inference to measure.
                return Action::Pause;
            }
        }
        if let Some(retry_after) = self.health.as_ref().and_then(|h| h.refuses(&path)) {
            let headers = vec![
                ("content-type", "application/json"),
                ("retry-after", retry_after),
            ];
            let body = Some(fail_fast::BODY.as_bytes());
            if hostcalls::send_http_response(503, headers, body).is_ok() {
                // Refused before any worker saw it: not an inference to measure.
                return Action::Pause;
            }
        }
        let encoded = request_header("content-encoding")
            .map(|e| !e.is_empty() && !e.eq_ignore_ascii_case(b"identity"))
            .unwrap_or(false);
        let mut stream = StreamMeter::start(&method, &path, encoded);
        let mode = self.vm.try_borrow().map(|vm| vm.usage).unwrap_or_default();
        if !end_of_stream && stream.may_edit_usage(mode, &method) {
            // The route picked the cluster already; a worker there that refused the field is
            // not asked again.
            let cluster = property_string(&["xds", "cluster_name"]);
            if !cluster.is_empty()
                && !refusal::is_refused(&ProxyWasmHost, &cluster)
                && remove_header(MapType::HttpRequestHeaders, "content-length")
            {
                stream.edit_usage(mode, cluster);
            }
        }
        self.stream = Some(stream);
        if end_of_stream {
            self.with_stream(|s, vm| s.on_request_end(vm, &ProxyWasmHost));
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let wants = self.stream.as_ref().is_some_and(|s| s.wants_request_body());
        if wants {
            let chunk = body(BufferType::HttpRequestBody, body_size);
            let mut edited = None;
            self.with_stream(|s, vm| {
                edited = s.on_request_body(vm, &ProxyWasmHost, &chunk, end_of_stream);
            });
            if let Some(new) = edited {
                replace_buffer(BufferType::HttpRequestBody, 0, body_size, &new);
            }
        } else if end_of_stream {
            self.with_stream(|s, vm| s.on_request_end(vm, &ProxyWasmHost));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let status = response_header(":status")
            .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u32>().ok())
            .unwrap_or(0);
        let content_type = response_header("content-type").unwrap_or_default();
        let content_encoding = response_header("content-encoding").unwrap_or_default();
        let head = ResponseHead {
            status,
            content_type: &content_type,
            content_encoding: &content_encoding,
        };
        let mut edits_body = false;
        self.with_stream(|s, vm| {
            edits_body = s.on_response_headers(vm, &ProxyWasmHost, head, end_of_stream);
        });
        if edits_body {
            // Events come out of the body: its length changes.
            remove_header(MapType::HttpResponseHeaders, "content-length");
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let chunk = if self.wants_response_body() {
            body(BufferType::HttpResponseBody, body_size)
        } else {
            Vec::new()
        };
        let mut edited = None;
        self.with_stream(|s, vm| {
            edited = s.on_response_body(vm, &ProxyWasmHost, &chunk, end_of_stream);
        });
        if let Some(new) = edited {
            replace_buffer(BufferType::HttpResponseBody, 0, body_size, &new);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let mut succeeded = false;
        self.with_stream(|s, vm| {
            succeeded = s.on_log(vm, &ProxyWasmHost);
        });
        if let (true, Some(health)) = (succeeded, &self.health) {
            let cluster = property_string(&["xds", "cluster_name"]);
            let address = property_string(&["upstream", "address"]);
            if let Ok(mut prober) = health.prober.try_borrow_mut() {
                prober.on_real_success(&ProxyWasmHost, &cluster, &address);
            }
        }
    }
}
