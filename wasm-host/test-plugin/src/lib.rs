//! Test plugin for the `wasm_host` harness: exercises every hostcall the harness implements.
//!
//! Plugin configuration: `key=value` pairs separated by `;` (no JSON, to keep the build quick):
//! - `fail=1`            `on_configure` returns false
//! - `tick_ms=N`         tick period
//! - `tick_callout=1`    every tick dispatches an HTTP callout from the root context
//! - `cluster=NAME`      callout cluster (default `upstream`)
//!
//! The WASI environment variable `TP_PREFIX` (default `tp`) prefixes every metric name, the way
//! llm-pulse reads `DYN_METRICS_PREFIX`; `TP_INIT_HOSTCALL` makes `_initialize` call a hostcall
//! Envoy forbids there.
//!
//! Request paths select behaviours: `/local`, `/callout`, `/callout-bad`, `/panic`, `/unimpl`,
//! `/readreq`, `/setmap`, `/reset`, `/done`; anything else passes through and is measured. Body chunks
//! containing `HOLD` are paused (buffered), `REWRITE` replaces the buffered body.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    if std::env::var("TP_INIT_HOSTCALL").is_ok() {
        // Envoy forbids this during _initialize: the host must fail the VM.
        let _ = hostcalls::get_current_time();
    }
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default, Clone)]
struct Settings {
    fail: bool,
    tick_ms: u64,
    tick_callout: bool,
    cluster: String,
}

fn parse_settings(raw: &str) -> Settings {
    let mut s = Settings {
        cluster: "upstream".to_string(),
        ..Settings::default()
    };
    for item in raw.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item.split_once('=').unwrap_or((item, ""));
        match k {
            "fail" => s.fail = v == "1",
            "tick_ms" => s.tick_ms = v.parse().unwrap_or(0),
            "tick_callout" => s.tick_callout = v == "1",
            "cluster" => s.cluster = v.to_string(),
            _ => log::warn!("unknown setting {k}"),
        }
    }
    s
}

/// Metric ids, resolved once in `on_configure`.
#[derive(Default, Clone, Copy)]
struct Ids {
    inflight: u32,
    body_bytes: u32,
    duration: u32,
    ttfb: u32,
    ticks: u32,
    cas_ok: u32,
    cas_mismatch: u32,
    callout_status: u32,
    callout_failures: u32,
    seen_requests: u32,
    rejected_callouts: u32,
}

#[derive(Default)]
struct Root {
    settings: Settings,
    prefix: String,
    ids: Ids,
    vm_number: u64,
    pending_cas: Option<u32>,
    requests_total_id: Rc<Cell<u32>>,
}

fn define(kind: MetricType, name: &str) -> u32 {
    hostcalls::define_metric(kind, name).unwrap_or(0)
}

impl Root {
    /// Takes the next VM number from shared data with a compare-and-swap loop.
    fn claim_vm_number(&self) -> u64 {
        loop {
            let (value, cas) = self.get_shared_data("tp_vm_seq");
            let current: u64 = value
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let next = current + 1;
            match self.set_shared_data("tp_vm_seq", Some(next.to_string().as_bytes()), cas) {
                Ok(()) => return next,
                Err(Status::CasMismatch) => continue,
                Err(e) => {
                    log::error!("set_shared_data failed: {e:?}");
                    return 0;
                }
            }
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        if num_headers == 0 {
            hostcalls::increment_metric(self.ids.callout_failures, 1).ok();
            log::warn!("root callout {token} failed");
            return;
        }
        let status = self
            .get_http_call_response_header(":status")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        hostcalls::record_metric(self.ids.callout_status, status).ok();
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        log::info!(
            "root callout {token} answered {status} with {} body bytes",
            body.len()
        );
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        let vm_config = self.get_vm_configuration().unwrap_or_default();
        log::info!("vm config: {}", String::from_utf8_lossy(&vm_config));
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        self.settings = parse_settings(&String::from_utf8_lossy(&raw));
        if self.settings.fail {
            log::error!("config rejected: fail=1");
            return false;
        }
        self.prefix = std::env::var("TP_PREFIX").unwrap_or_else(|_| "tp".to_string());
        let level = hostcalls::get_log_level().map(|l| l as u32).unwrap_or(99);
        let root_id = self
            .get_property(vec!["plugin_root_id"])
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        let p = &self.prefix;
        self.ids = Ids {
            inflight: define(MetricType::Gauge, &format!("{p}_inflight")),
            body_bytes: define(MetricType::Histogram, &format!("{p}_request_body_bytes")),
            duration: define(MetricType::Histogram, &format!("{p}_duration_us")),
            ttfb: define(MetricType::Histogram, &format!("{p}_ttfb_us")),
            ticks: define(MetricType::Counter, &format!("{p}_ticks_total")),
            cas_ok: define(MetricType::Counter, &format!("{p}_cas_ok_total")),
            cas_mismatch: define(MetricType::Counter, &format!("{p}_cas_mismatch_total")),
            callout_status: define(MetricType::Gauge, &format!("{p}_callout_status")),
            callout_failures: define(MetricType::Counter, &format!("{p}_callout_failures_total")),
            seen_requests: define(MetricType::Gauge, &format!("{p}_seen_requests")),
            rejected_callouts: define(MetricType::Counter, &format!("{p}_rejected_callouts_total")),
        };
        self.vm_number = self.claim_vm_number();
        if self.get_shared_data("tp_owner").0.is_none() {
            self.set_shared_data("tp_owner", Some(b""), None).ok();
        }
        if self.settings.tick_ms > 0 {
            self.set_tick_period(Duration::from_millis(self.settings.tick_ms));
        }
        log::info!(
            "vm{} configured (log level {level}, root id '{root_id}')",
            self.vm_number
        );
        true
    }

    fn on_tick(&mut self) {
        hostcalls::increment_metric(self.ids.ticks, 1).ok();
        // Two-phase compare-and-swap: one tick reads, the next writes with what it read.
        match self.pending_cas.take() {
            None => {
                let (_, cas) = self.get_shared_data("tp_owner");
                self.pending_cas = Some(cas.unwrap_or(0));
            }
            Some(cas) => {
                let me = format!("vm{}", self.vm_number);
                match self.set_shared_data("tp_owner", Some(me.as_bytes()), Some(cas)) {
                    Ok(()) => hostcalls::increment_metric(self.ids.cas_ok, 1).ok(),
                    Err(Status::CasMismatch) => {
                        hostcalls::increment_metric(self.ids.cas_mismatch, 1).ok()
                    }
                    Err(e) => {
                        log::error!("unexpected set_shared_data status {e:?}");
                        None
                    }
                };
            }
        }
        if self.settings.tick_callout {
            let sent = self.dispatch_http_call(
                &self.settings.cluster,
                vec![
                    (":method", "GET"),
                    (":path", "/health"),
                    (":authority", "worker"),
                ],
                None,
                vec![],
                Duration::from_millis(500),
            );
            if let Err(e) = sent {
                log::error!("tick callout rejected: {e:?}");
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            context_id,
            prefix: self.prefix.clone(),
            cluster: self.settings.cluster.clone(),
            ids: self.ids,
            requests_total_id: self.requests_total_id.clone(),
            ..Stream::default()
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

#[derive(Default)]
struct Stream {
    context_id: u32,
    prefix: String,
    cluster: String,
    ids: Ids,
    requests_total_id: Rc<Cell<u32>>,
    path: String,
    start: Option<SystemTime>,
    wasi_start: Option<SystemTime>,
    mono_start: Option<Instant>,
    request_body_bytes: usize,
    response_bytes: usize,
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl Context for Stream {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        if num_headers == 0 {
            hostcalls::increment_metric(self.ids.callout_failures, 1).ok();
            self.add_http_request_header("x-callout-status", "failed");
        } else {
            let status = self
                .get_http_call_response_header(":status")
                .unwrap_or_default();
            let body = self
                .get_http_call_response_body(0, body_size)
                .unwrap_or_default();
            log::info!(
                "stream {} callout {token}: {status} {}",
                self.context_id,
                String::from_utf8_lossy(&body)
            );
            self.add_http_request_header("x-callout-status", &status);
        }
        self.resume_http_request();
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, num_headers: usize, _end_of_stream: bool) -> Action {
        self.start = Some(self.get_current_time());
        self.wasi_start = Some(SystemTime::now());
        self.mono_start = Some(Instant::now());
        hostcalls::increment_metric(self.ids.inflight, 1).ok();
        let headers = self.get_http_request_headers();
        if headers.len() != num_headers {
            log::error!("num_headers {num_headers} != {} pairs", headers.len());
        }
        self.path = self.get_http_request_header(":path").unwrap_or_default();
        self.add_http_request_header("x-tp-added", "1");
        self.set_http_request_header("x-tp-replaced", Some("yes"));
        self.set_http_request_header("x-remove-me", None);
        match self.path.as_str() {
            "/local" => {
                self.send_http_response(429, vec![("x-tp", "local")], Some(b"slow down"));
                Action::Pause
            }
            "/callout" => {
                let sent = self.dispatch_http_call(
                    &self.cluster,
                    vec![
                        (":method", "POST"),
                        (":path", "/probe"),
                        (":authority", "workers"),
                        ("x-probe", "1"),
                    ],
                    Some(b"ping"),
                    vec![],
                    Duration::from_secs(3),
                );
                match sent {
                    Ok(_) => Action::Pause,
                    Err(e) => {
                        log::error!("callout rejected: {e:?}");
                        Action::Continue
                    }
                }
            }
            "/callout-bad" => {
                // No :authority: Envoy rejects this with BadArgument.
                let sent = self.dispatch_http_call(
                    &self.cluster,
                    vec![(":method", "GET"), (":path", "/x")],
                    None,
                    vec![],
                    Duration::from_secs(1),
                );
                if let Err(e) = sent {
                    log::warn!("callout rejected: {e:?}");
                    hostcalls::increment_metric(self.ids.rejected_callouts, 1).ok();
                }
                Action::Continue
            }
            "/panic" => panic!("test plugin panics on purpose"),
            "/unimpl" => {
                let _ = hostcalls::register_shared_queue("q");
                Action::Continue
            }
            "/done" => {
                // proxy_done outside a pending shutdown is NotFound in Envoy: the SDK panics.
                let _ = hostcalls::done();
                Action::Continue
            }
            "/reset" => {
                self.reset_http_request();
                Action::Continue
            }
            _ => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        if body.len() != body_size {
            log::error!("request body {} != {body_size}", body.len());
        }
        if contains(&body, b"HOLD") && !end_of_stream {
            return Action::Pause;
        }
        if contains(&body, b"REWRITE") {
            self.set_http_request_body(0, body_size, b"rewritten");
        }
        self.request_body_bytes += body_size;
        if end_of_stream {
            hostcalls::record_metric(self.ids.body_bytes, self.request_body_bytes as u64).ok();
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.path.as_str() {
            "/readreq" => {
                // Envoy drops the request header map once request headers continued: this panics.
                let _ = self.get_http_request_header(":path");
            }
            "/setmap" => {
                let mut headers = self.get_http_response_headers();
                headers.retain(|(k, _)| k != "x-drop");
                headers.push(("x-replaced".to_string(), "1".to_string()));
                let refs = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                self.set_http_response_headers(refs);
            }
            _ => {}
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let body = self
            .get_http_response_body(0, body_size)
            .unwrap_or_default();
        if self.response_bytes == 0 && !body.is_empty() {
            if let Some(start) = self.start {
                let elapsed = nanos(self.get_current_time()).saturating_sub(nanos(start));
                hostcalls::record_metric(self.ids.ttfb, elapsed / 1000).ok();
            }
        }
        if contains(&body, b"HOLD") && !end_of_stream {
            return Action::Pause;
        }
        self.response_bytes += body_size;
        Action::Continue
    }

    fn on_log(&mut self) {
        let status = self.get_http_response_header(":status");
        let code = self
            .get_property(vec!["response", "code"])
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(i64::from_le_bytes);
        let flags = self
            .get_property(vec!["response", "flags"])
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        let details = self
            .get_property(vec!["response", "code_details"])
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        if let Some(start) = self.start {
            let elapsed_us = nanos(self.get_current_time()).saturating_sub(nanos(start)) / 1000;
            hostcalls::record_metric(self.ids.duration, elapsed_us).ok();
            self.set_property(
                vec!["tp.elapsed_us"],
                Some(elapsed_us.to_string().as_bytes()),
            );
        }
        if let Some(wasi_start) = self.wasi_start {
            let wasi_us = SystemTime::now()
                .duration_since(wasi_start)
                .map(|d| d.as_micros())
                .unwrap_or(0);
            self.set_property(
                vec!["tp.wasi_elapsed_us"],
                Some(wasi_us.to_string().as_bytes()),
            );
        }
        if let Some(mono_start) = self.mono_start {
            let mono_us = mono_start.elapsed().as_micros();
            self.set_property(
                vec!["tp.mono_elapsed_us"],
                Some(mono_us.to_string().as_bytes()),
            );
        }
        self.set_property(vec!["tp.flags"], Some(flags.to_string().as_bytes()));
        let label = status.clone().unwrap_or_else(|| "none".to_string());
        let name = format!("{}_requests_total.status=.={label};.;", self.prefix);
        let id = define(MetricType::Counter, &name);
        self.requests_total_id.set(id);
        hostcalls::increment_metric(id, 1).ok();
        if self.start.is_some() {
            hostcalls::increment_metric(self.ids.inflight, -1).ok();
        }
        let seen = hostcalls::get_metric(id).unwrap_or(0);
        hostcalls::record_metric(self.ids.seen_requests, seen).ok();
        log::info!(
            "done path={} status={label} code={code:?} flags={flags} details={details}",
            self.path
        );
    }
}
