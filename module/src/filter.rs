//! [`StreamFilter`]: one HTTP stream, fed to core's [`StreamMeter`] as the `.wasm`'s
//! `HttpContext` does, callback for callback: every callback continues; a stream changes only
//! to ask the worker for usage (`usage_stats`) and to take that usage out of the answer again.
//! Bodies are read in place (Envoy's own slices), not copied.

use crate::config::{FilterConfig, Worker};
use crate::ffi::calls::Stream;
use crate::ffi::{ATTR_UPSTREAM_ADDRESS, RECEIVED_REQUEST_BODY, RECEIVED_RESPONSE_BODY};
use crate::host::ModuleHost;
use llm_pulse_core::health::fail_fast;
use llm_pulse_core::meter::{ResponseHead, StreamMeter, VmMeter};
use llm_pulse_core::usage::refusal;
use std::sync::Arc;

/// What a hook tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Answered locally: nothing goes upstream.
    Stop,
}

pub struct StreamFilter {
    config: Arc<FilterConfig>,
    stream: Option<StreamMeter>,
}

impl StreamFilter {
    pub fn new(config: Arc<FilterConfig>) -> StreamFilter {
        StreamFilter {
            config,
            stream: None,
        }
    }

    fn with_stream(
        &mut self,
        envoy: Stream,
        f: impl FnOnce(&mut StreamMeter, &mut VmMeter, &ModuleHost<'_>),
    ) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let Some(Ok(mut worker)) = self.config.worker(envoy).map(|w| w.lock()) else {
            return;
        };
        let Worker { meter, series } = &mut *worker;
        let host = self.config.stream_host(envoy, series);
        f(stream, meter, &host);
    }

    pub fn on_request_headers(&mut self, envoy: Stream, end_of_stream: bool) -> Flow {
        let path = envoy.request_header(":path").unwrap_or_default();
        // Read once: the health endpoints need it, and a HEAD's answer has no body to parse.
        let method = envoy.request_header(":method").unwrap_or_default();
        let config = Arc::clone(&self.config);
        if let Some((status, body)) = config
            .health
            .as_ref()
            .and_then(|h| h.answer(&config, envoy, &method, &path))
        {
            let headers = [
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
            ];
            let body = (method == b"GET").then_some(body.as_bytes());
            envoy.send_response(status, &headers, body);
            // Answered here: the stream is not an inference to measure.
            return Flow::Stop;
        }
        if let Some(retry_after) = config
            .health
            .as_ref()
            .and_then(|h| h.refuses(&config, &path))
        {
            let headers = [
                ("content-type", "application/json"),
                ("retry-after", retry_after.as_str()),
            ];
            envoy.send_response(503, &headers, Some(fail_fast::BODY.as_bytes()));
            // Refused before any worker saw it: not an inference to measure.
            return Flow::Stop;
        }
        let encoded = envoy
            .request_header("content-encoding")
            .map(|e| !e.is_empty() && !e.eq_ignore_ascii_case(b"identity"))
            .unwrap_or(false);
        let mut stream = StreamMeter::start(&method, &path, encoded);
        let mode = config.usage;
        if !end_of_stream && stream.may_edit_usage(mode, &method) {
            // The route picked the cluster already; a worker there that refused the field is
            // not asked again.
            let cluster = envoy
                .cluster_name()
                .map(|c| String::from_utf8_lossy(&c).into_owned())
                .unwrap_or_default();
            let refused = config
                .worker(envoy)
                .and_then(|w| w.lock().ok())
                .map(|w| refusal::is_refused(&config.stream_host(envoy, &w.series), &cluster))
                .unwrap_or(true);
            if !cluster.is_empty() && !refused && envoy.remove_request_header("content-length") {
                stream.edit_usage(mode, cluster);
            }
        }
        self.stream = Some(stream);
        if end_of_stream {
            self.with_stream(envoy, |s, vm, host| s.on_request_end(vm, host));
        }
        Flow::Continue
    }

    pub fn on_request_body(&mut self, envoy: Stream, end_of_stream: bool) {
        let wants = self.stream.as_ref().is_some_and(|s| s.wants_request_body());
        if wants {
            let edited = envoy.with_body(RECEIVED_REQUEST_BODY, |chunk| {
                let mut edited = None;
                self.with_stream(envoy, |s, vm, host| {
                    edited = s.on_request_body(vm, host, chunk, end_of_stream);
                });
                edited
            });
            if let Some(new) = edited {
                envoy.replace_body(RECEIVED_REQUEST_BODY, &new);
            }
        } else if end_of_stream {
            self.with_stream(envoy, |s, vm, host| s.on_request_end(vm, host));
        }
    }

    pub fn on_response_headers(&mut self, envoy: Stream, end_of_stream: bool) {
        let status = envoy
            .response_header(":status")
            .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u32>().ok())
            .unwrap_or(0);
        let content_type = envoy.response_header("content-type").unwrap_or_default();
        let content_encoding = envoy
            .response_header("content-encoding")
            .unwrap_or_default();
        let head = ResponseHead {
            status,
            content_type: &content_type,
            content_encoding: &content_encoding,
        };
        let mut edits_body = false;
        self.with_stream(envoy, |s, vm, host| {
            edits_body = s.on_response_headers(vm, host, head, end_of_stream);
        });
        if edits_body {
            // Events come out of the body: its length changes.
            envoy.remove_response_header("content-length");
        }
    }

    pub fn on_response_body(&mut self, envoy: Stream, end_of_stream: bool) {
        let wants = self
            .stream
            .as_ref()
            .is_some_and(|s| s.wants_response_body());
        let mut run = |chunk: &[u8]| {
            let mut edited = None;
            self.with_stream(envoy, |s, vm, host| {
                edited = s.on_response_body(vm, host, chunk, end_of_stream);
            });
            edited
        };
        let edited = if wants {
            envoy.with_body(RECEIVED_RESPONSE_BODY, run)
        } else {
            run(&[])
        };
        if let Some(new) = edited {
            envoy.replace_body(RECEIVED_RESPONSE_BODY, &new);
        }
    }

    /// The stream is over (Envoy's access logs follow): the `.wasm`'s `on_log`.
    pub fn on_stream_complete(&mut self, envoy: Stream) {
        let mut succeeded = false;
        self.with_stream(envoy, |s, vm, host| {
            succeeded = s.on_log(vm, host);
        });
        if let (true, Some(health)) = (succeeded, &self.config.health) {
            let cluster = envoy
                .cluster_name()
                .map(|c| String::from_utf8_lossy(&c).into_owned())
                .unwrap_or_default();
            let address = envoy
                .attribute_string(ATTR_UPSTREAM_ADDRESS)
                .map(|a| String::from_utf8_lossy(&a).into_owned())
                .unwrap_or_default();
            health.on_real_success(&self.config, &cluster, &address);
        }
    }
}
