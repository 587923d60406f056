//! Safe wrappers over Envoy's callbacks: what the rest of the crate calls. Bytes Envoy hands
//! out are copied or only lent to a closure, so no borrowed Envoy memory outlives its hook.

use super::*;
use llm_pulse_core::host::MetricKind;

/// The most labels a metric family has (`requests_total`: 5).
pub const MAX_LABELS: usize = 8;

/// The Envoy side of one HTTP stream (`filter_envoy_ptr`). Only built by [`super::hooks`] for
/// the duration of one event hook, which is when Envoy guarantees the pointer.
#[derive(Clone, Copy)]
pub struct Stream {
    ptr: *mut c_void,
}

impl Stream {
    pub(super) fn new(ptr: *mut c_void) -> Stream {
        Stream { ptr }
    }

    pub fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        self.header(REQUEST_HEADER, name)
    }

    pub fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.header(RESPONSE_HEADER, name)
    }

    fn header(&self, map: u32, name: &str) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer::EMPTY;
        let mut count = 0usize;
        // SAFETY: `self.ptr` is the stream of the running hook; the key is read during the
        // call; `out` and `count` are locals Envoy writes once.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.ptr,
                map,
                ModuleBuffer::of(name.as_bytes()),
                &mut out,
                0,
                &mut count,
            )
        };
        // SAFETY: `out` was set by Envoy in this hook; copied before any setter runs.
        (found && count > 0).then(|| unsafe { envoy_bytes(out) }.to_vec())
    }

    pub fn remove_request_header(&self, name: &str) -> bool {
        self.remove_header(REQUEST_HEADER, name)
    }

    pub fn remove_response_header(&self, name: &str) -> bool {
        self.remove_header(RESPONSE_HEADER, name)
    }

    fn remove_header(&self, map: u32, name: &str) -> bool {
        // SAFETY: the key is read during the call; a null value removes the header.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.ptr,
                map,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::NULL,
            )
        }
    }

    /// Runs `f` on the body bytes of this event (`RECEIVED_*_BODY`): Envoy's own memory when
    /// it is one slice (the usual case), a copy when it is several.
    pub fn with_body<R>(&self, body_type: u32, f: impl FnOnce(&[u8]) -> R) -> R {
        // SAFETY: `self.ptr` is the stream of the running hook.
        let n =
            unsafe { envoy_dynamic_module_callback_http_get_body_chunks_size(self.ptr, body_type) };
        if n == 0 {
            return f(&[]);
        }
        // A read is one slice or a few: no allocation for their descriptors on the hot path.
        let mut inline = [EnvoyBuffer::EMPTY; 4];
        let mut heap = Vec::new();
        let chunks: &mut [EnvoyBuffer] = match inline.get_mut(..n) {
            Some(c) => c,
            None => {
                heap.resize(n, EnvoyBuffer::EMPTY);
                &mut heap
            }
        };
        // SAFETY: `chunks` has room for the `n` buffers Envoy just counted.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_body_chunks(
                self.ptr,
                body_type,
                chunks.as_mut_ptr(),
            )
        };
        if !ok {
            return f(&[]);
        }
        if let [one] = &*chunks {
            // SAFETY: Envoy's body slice, valid for this hook; lent to `f` only.
            return f(unsafe { envoy_bytes(*one) });
        }
        let mut joined = Vec::new();
        for c in chunks.iter() {
            // SAFETY: as above, copied at once.
            joined.extend_from_slice(unsafe { envoy_bytes(*c) });
        }
        f(&joined)
    }

    /// Replaces the whole body of this event with `data`: true when Envoy took it.
    pub fn replace_body(&self, body_type: u32, data: &[u8]) -> bool {
        // SAFETY: `self.ptr` is the stream of the running hook; `data` is read during the call.
        unsafe {
            let size = envoy_dynamic_module_callback_http_get_body_size(self.ptr, body_type);
            envoy_dynamic_module_callback_http_drain_body(self.ptr, body_type, size)
                && envoy_dynamic_module_callback_http_append_body(
                    self.ptr,
                    body_type,
                    ModuleBuffer::of(data),
                )
        }
    }

    /// Answers the stream locally.
    pub fn send_response(&self, status: u32, headers: &[(&str, &str)], body: Option<&[u8]>) {
        let headers: Vec<ModuleHttpHeader> = headers
            .iter()
            .map(|(k, v)| ModuleHttpHeader {
                key_ptr: k.as_ptr(),
                key_length: k.len(),
                value_ptr: v.as_ptr(),
                value_length: v.len(),
            })
            .collect();
        let body = body.map_or(ModuleBuffer::NULL, ModuleBuffer::of);
        // SAFETY: headers, body and details are read during the call.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.ptr,
                status,
                headers.as_ptr(),
                headers.len(),
                body,
                ModuleBuffer::of(b"llm_pulse_local"),
            )
        }
    }

    /// Filter state for access logs (`%FILTER_STATE(<key>:PLAIN)%`).
    pub fn set_filter_state(&self, key: &str, value: &[u8]) -> bool {
        // SAFETY: key and value are read (copied by Envoy) during the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.ptr,
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::of(value),
            )
        }
    }

    pub fn attribute_u64(&self, id: u32) -> Option<u64> {
        let mut v = 0u64;
        // SAFETY: Envoy writes one u64 into a local.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_int(self.ptr, id, &mut v)
        };
        ok.then_some(v)
    }

    pub fn attribute_string(&self, id: u32) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer::EMPTY;
        // SAFETY: Envoy writes one buffer into a local; copied at once.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(self.ptr, id, &mut out)
        };
        // SAFETY: set by Envoy in this hook.
        ok.then(|| unsafe { envoy_bytes(out) }.to_vec())
    }

    /// The cluster the route picked (`xds.cluster_name`).
    pub fn cluster_name(&self) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer::EMPTY;
        // SAFETY: Envoy writes one buffer into a local; copied at once.
        let ok = unsafe { envoy_dynamic_module_callback_http_get_cluster_name(self.ptr, &mut out) };
        // SAFETY: set by Envoy in this hook.
        ok.then(|| unsafe { envoy_bytes(out) }.to_vec())
    }

    /// Envoy's worker thread of this stream (0-based).
    pub fn worker_index(&self) -> u32 {
        // SAFETY: `self.ptr` is the stream of the running hook.
        unsafe { envoy_dynamic_module_callback_http_filter_get_worker_index(self.ptr) }
    }

    pub fn metric(&self, op: MetricOp, id: usize, labels: &[&str], value: u64) -> bool {
        metric_call(Target::Stream(self.ptr), op, id, labels, value)
    }
}

/// Envoy's filter configuration object (`filter_config_envoy_ptr`): alive from
/// `on_http_filter_config_new` until its `..._config_destroy`, which the module config this is
/// stored in does not outlive.
#[derive(Clone, Copy)]
pub struct ConfigHandle {
    ptr: *mut c_void,
}

// SAFETY: Envoy's config object is not touched through this handle but by Envoy's callbacks,
// which are thread-safe for metrics (Envoy's stats) and used on the main thread for callouts
// and schedulers; the handle itself is an address.
unsafe impl Send for ConfigHandle {}
// SAFETY: as above.
unsafe impl Sync for ConfigHandle {}

impl ConfigHandle {
    pub(super) fn new(ptr: *mut c_void) -> ConfigHandle {
        ConfigHandle { ptr }
    }

    /// Defines a metric family (only possible during `on_http_filter_config_new`: Envoy
    /// freezes stat creation after it).
    pub fn define(&self, kind: MetricKind, name: &str, labels: &[&str]) -> Result<usize, u32> {
        let names: Vec<ModuleBuffer> = labels
            .iter()
            .map(|l| ModuleBuffer::of(l.as_bytes()))
            .collect();
        let mut id = 0usize;
        let f = match kind {
            MetricKind::Counter => envoy_dynamic_module_callback_http_filter_config_define_counter,
            MetricKind::Gauge => envoy_dynamic_module_callback_http_filter_config_define_gauge,
            MetricKind::Histogram => {
                envoy_dynamic_module_callback_http_filter_config_define_histogram
            }
        };
        // SAFETY: name and label names are read during the call; Envoy writes the id to a local.
        let status = unsafe {
            f(
                self.ptr,
                ModuleBuffer::of(name.as_bytes()),
                names.as_ptr(),
                names.len(),
                &mut id,
            )
        };
        if status == METRICS_SUCCESS {
            Ok(id)
        } else {
            Err(status)
        }
    }

    pub fn metric(&self, op: MetricOp, id: usize, labels: &[&str], value: u64) -> bool {
        metric_call(Target::Config(self.ptr), op, id, labels, value)
    }

    /// An HTTP call not tied to any stream; its answer arrives in
    /// `on_http_filter_config_http_callout_done` with the returned id.
    pub fn http_callout(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let headers: Vec<ModuleHttpHeader> = headers
            .iter()
            .map(|(k, v)| ModuleHttpHeader {
                key_ptr: k.as_ptr(),
                key_length: k.len(),
                value_ptr: v.as_ptr(),
                value_length: v.len(),
            })
            .collect();
        let mut id = 0u64;
        // SAFETY: cluster, headers and body are read (copied) during the call; Envoy writes the
        // id to a local.
        let status = unsafe {
            envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.ptr,
                &mut id,
                ModuleBuffer::of(cluster.as_bytes()),
                headers.as_ptr(),
                headers.len(),
                body.map_or(ModuleBuffer::NULL, ModuleBuffer::of),
                timeout_ms,
            )
        };
        if status == CALLOUT_INIT_SUCCESS {
            Ok(id)
        } else {
            Err(status)
        }
    }

    /// A handle that runs `on_http_filter_config_scheduled` on Envoy's main thread from any
    /// thread.
    pub fn scheduler(&self) -> Option<Scheduler> {
        // SAFETY: `self.ptr` is the live config; Envoy returns a new scheduler or null.
        let ptr =
            unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.ptr) };
        (!ptr.is_null()).then_some(Scheduler { ptr })
    }
}

/// Envoy's config scheduler; deleted on drop.
pub struct Scheduler {
    ptr: *mut c_void,
}

// SAFETY: Envoy documents the scheduler's commit as callable from any thread.
unsafe impl Send for Scheduler {}
// SAFETY: as above.
unsafe impl Sync for Scheduler {}

impl Scheduler {
    pub fn commit(&self, event_id: u64) {
        // SAFETY: a scheduler Envoy created and this handle has not deleted.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.ptr, event_id)
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // SAFETY: deleted once, here.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.ptr) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricOp {
    CounterAdd,
    GaugeAdd,
    GaugeSub,
    GaugeSet,
    HistogramRecord,
}

enum Target {
    Stream(*mut c_void),
    Config(*mut c_void),
}

type MetricFn = unsafe extern "C" fn(*mut c_void, usize, *const ModuleBuffer, usize, u64) -> u32;

fn metric_call(target: Target, op: MetricOp, id: usize, labels: &[&str], value: u64) -> bool {
    let mut values = [ModuleBuffer::NULL; MAX_LABELS];
    if labels.len() > MAX_LABELS {
        return false;
    }
    for (slot, l) in values.iter_mut().zip(labels) {
        *slot = ModuleBuffer::of(l.as_bytes());
    }
    let (ptr, f): (*mut c_void, MetricFn) = match (target, op) {
        (Target::Stream(p), MetricOp::CounterAdd) => (
            p,
            envoy_dynamic_module_callback_http_filter_increment_counter,
        ),
        (Target::Stream(p), MetricOp::GaugeAdd) => {
            (p, envoy_dynamic_module_callback_http_filter_increment_gauge)
        }
        (Target::Stream(p), MetricOp::GaugeSub) => {
            (p, envoy_dynamic_module_callback_http_filter_decrement_gauge)
        }
        (Target::Stream(p), MetricOp::GaugeSet) => {
            (p, envoy_dynamic_module_callback_http_filter_set_gauge)
        }
        (Target::Stream(p), MetricOp::HistogramRecord) => (
            p,
            envoy_dynamic_module_callback_http_filter_record_histogram_value,
        ),
        (Target::Config(p), MetricOp::CounterAdd) => (
            p,
            envoy_dynamic_module_callback_http_filter_config_increment_counter,
        ),
        (Target::Config(p), MetricOp::GaugeAdd) => (
            p,
            envoy_dynamic_module_callback_http_filter_config_increment_gauge,
        ),
        (Target::Config(p), MetricOp::GaugeSub) => (
            p,
            envoy_dynamic_module_callback_http_filter_config_decrement_gauge,
        ),
        (Target::Config(p), MetricOp::GaugeSet) => (
            p,
            envoy_dynamic_module_callback_http_filter_config_set_gauge,
        ),
        (Target::Config(p), MetricOp::HistogramRecord) => (
            p,
            envoy_dynamic_module_callback_http_filter_config_record_histogram_value,
        ),
    };
    // SAFETY: `ptr` is the stream of the running hook or the live config; the label values are
    // read during the call (`labels.len()` of the `MAX_LABELS` slots are set).
    let status = unsafe { f(ptr, id, values.as_ptr(), labels.len(), value) };
    status == METRICS_SUCCESS
}

/// One line in Envoy's log under its `dynamic_modules` logger.
pub fn log(level: u32, message: &str) {
    // SAFETY: the message is read during the call.
    unsafe { envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes())) }
}

pub fn log_enabled(level: u32) -> bool {
    // SAFETY: no pointers.
    unsafe { envoy_dynamic_module_callback_log_enabled(level) }
}

/// Envoy's worker threads (`--concurrency`); main thread only.
pub fn concurrency() -> u32 {
    // SAFETY: no pointers; called from `on_http_filter_config_new`, on the main thread.
    unsafe { envoy_dynamic_module_callback_get_concurrency() }
}

/// The headers and body of a callout answer, copied out of Envoy's buffers.
pub struct CalloutAnswer {
    /// `None` for a failed call (reset, timeout, over Envoy's buffer limit).
    pub status: Option<u32>,
    /// The answer body's size, all of it.
    pub size: usize,
    /// Its first bytes, at most the cap the caller gave.
    pub body: Vec<u8>,
}

impl CalloutAnswer {
    /// SAFETY (for callers): the arrays are those Envoy passed to the running
    /// `..._http_callout_done` hook, with their lengths.
    pub(super) unsafe fn copy(
        result: u32,
        headers: *const EnvoyHttpHeader,
        headers_size: usize,
        chunks: *const EnvoyBuffer,
        chunks_size: usize,
        max_body: usize,
    ) -> CalloutAnswer {
        if result != CALLOUT_SUCCESS {
            return CalloutAnswer {
                status: None,
                size: 0,
                body: Vec::new(),
            };
        }
        let headers: &[EnvoyHttpHeader] = if headers.is_null() {
            &[]
        } else {
            // SAFETY: Envoy's array of `headers_size` headers, valid for this hook.
            unsafe { std::slice::from_raw_parts(headers, headers_size) }
        };
        let mut status = None;
        for h in headers {
            // SAFETY: Envoy's header bytes, valid for this hook.
            let key = unsafe {
                envoy_bytes(EnvoyBuffer {
                    ptr: h.key_ptr,
                    length: h.key_length,
                })
            };
            if key == b":status" {
                // SAFETY: as above.
                let v = unsafe {
                    envoy_bytes(EnvoyBuffer {
                        ptr: h.value_ptr,
                        length: h.value_length,
                    })
                };
                status = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
            }
        }
        let chunks: &[EnvoyBuffer] = if chunks.is_null() {
            &[]
        } else {
            // SAFETY: Envoy's array of `chunks_size` buffers, valid for this hook.
            unsafe { std::slice::from_raw_parts(chunks, chunks_size) }
        };
        let mut body = Vec::new();
        let mut size = 0usize;
        for c in chunks {
            size = size.saturating_add(c.length);
            let room = max_body.saturating_sub(body.len());
            if room > 0 {
                // SAFETY: as above, copied at once.
                let bytes = unsafe { envoy_bytes(*c) };
                body.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
            }
        }
        CalloutAnswer { status, size, body }
    }
}
