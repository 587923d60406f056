//! The metric contract on the dynamic module: every case of the table in `cases/src/lib.rs`, as
//! `wasm_meter_cases` runs it on the `.wasm`, through the module's own exported hooks, linked
//! into this binary with a small fake Envoy behind its callbacks (defined here, under the names
//! Envoy's binary exports) and the module's test clock. Compared exactly: every metric with a
//! value or a sample, every filter-state value, the body the client gets, no pause.
//!
//! The fake keeps what Envoy keeps for these calls and nothing else: header maps, the body of
//! the current event, metric families with label values, filter state, `response.*`. The
//! real Envoy runs the same module in `e2e_module` and the whole Envoy suite.

#![allow(unsafe_code)]

use anyhow::{ensure, Result};
use llm_pulse_cases::{self as cases, response_flags, Case, Expect, Sample};
use llm_pulse_module::clock::set_now_ns;
use llm_pulse_module::ffi::hooks::*;
use llm_pulse_module::ffi::{EnvoyBuffer, ModuleBuffer, ModuleHttpHeader};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::c_void;

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Counter(u64),
    Gauge(i64),
    Histogram(Vec<u64>),
}

#[derive(Default)]
struct Stream {
    request_headers: Vec<(String, Vec<u8>)>,
    response_headers: Vec<(String, Vec<u8>)>,
    /// The body of the event being delivered; what is left after the hook goes on.
    body: Vec<u8>,
    filter_state: BTreeMap<String, Vec<u8>>,
    code: u64,
    flags: u64,
    details: String,
    /// The module answered the request itself (no case should be).
    answered_locally: bool,
}

#[derive(Default)]
struct FakeEnvoy {
    /// (kind, name, label names) by id.
    families: Vec<(u8, String, Vec<String>)>,
    metrics: BTreeMap<String, Value>,
    stream: Stream,
}

thread_local! {
    static ENVOY: RefCell<FakeEnvoy> = RefCell::new(FakeEnvoy::default());
}

fn with<R>(f: impl FnOnce(&mut FakeEnvoy) -> R) -> R {
    ENVOY.with(|e| f(&mut e.borrow_mut()))
}

/// SAFETY: the module passes buffers valid for the call.
unsafe fn bytes<'a>(b: ModuleBuffer) -> &'a [u8] {
    if b.ptr.is_null() {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(b.ptr, b.length) }
    }
}

unsafe fn text(b: ModuleBuffer) -> String {
    String::from_utf8_lossy(unsafe { bytes(b) }).into_owned()
}

unsafe fn labels(values: *const ModuleBuffer, n: usize) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    unsafe { std::slice::from_raw_parts(values, n) }
        .iter()
        .map(|b| unsafe { text(*b) })
        .collect()
}

const COUNTER: u8 = 0;
const GAUGE: u8 = 1;
const HISTOGRAM: u8 = 2;

fn define(
    kind: u8,
    name: ModuleBuffer,
    names: *const ModuleBuffer,
    n: usize,
    id: *mut usize,
) -> u32 {
    let name = unsafe { text(name) };
    let names = unsafe { labels(names, n) };
    with(|e| {
        unsafe { *id = e.families.len() };
        e.families.push((kind, name, names));
    });
    0
}

/// Applies one update; 1 (MetricNotFound) for an unknown id, 2 (InvalidLabels) for a wrong
/// label count, as Envoy answers.
fn update(id: usize, values: *const ModuleBuffer, n: usize, op: impl FnOnce(&mut Value)) -> u32 {
    let values = unsafe { labels(values, n) };
    with(|e| {
        let Some((kind, name, names)) = e.families.get(id).cloned() else {
            return 1;
        };
        if names.len() != values.len() {
            return 2;
        }
        // The `.wasm`'s stat name for the same series (`P_name.label=.=value;.;`), so one
        // table of expectations holds for both.
        let mut key = format!("{name}.");
        for (k, v) in names.iter().zip(&values) {
            key.push_str(&format!("{k}=.={v};.;"));
        }
        let v = e.metrics.entry(key).or_insert(match kind {
            COUNTER => Value::Counter(0),
            GAUGE => Value::Gauge(0),
            _ => Value::Histogram(Vec::new()),
        });
        op(v);
        0
    })
}

fn add(v: &mut Value, by: u64) {
    match v {
        Value::Counter(c) => *c += by,
        Value::Gauge(g) => *g += by as i64,
        Value::Histogram(h) => h.push(by),
    }
}

// The callbacks the module imports, under Envoy's names.

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_log(_level: u32, message: ModuleBuffer) {
    println!("module: {}", unsafe { text(message) });
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool {
    level >= 2
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_get_concurrency() -> u32 {
    1
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_define_counter(
    _c: *mut c_void,
    name: ModuleBuffer,
    names: *const ModuleBuffer,
    n: usize,
    id: *mut usize,
) -> u32 {
    define(COUNTER, name, names, n, id)
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
    _c: *mut c_void,
    name: ModuleBuffer,
    names: *const ModuleBuffer,
    n: usize,
    id: *mut usize,
) -> u32 {
    define(GAUGE, name, names, n, id)
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
    _c: *mut c_void,
    name: ModuleBuffer,
    names: *const ModuleBuffer,
    n: usize,
    id: *mut usize,
) -> u32 {
    define(HISTOGRAM, name, names, n, id)
}

macro_rules! metric_callbacks {
    ($($name:ident => $op:expr;)*) => {$(
        #[no_mangle]
        extern "C" fn $name(
            _p: *mut c_void,
            id: usize,
            values: *const ModuleBuffer,
            n: usize,
            value: u64,
        ) -> u32 {
            let op: fn(&mut Value, u64) = $op;
            update(id, values, n, |v| op(v, value))
        }
    )*};
}

metric_callbacks! {
    envoy_dynamic_module_callback_http_filter_increment_counter => add;
    envoy_dynamic_module_callback_http_filter_config_increment_counter => add;
    envoy_dynamic_module_callback_http_filter_increment_gauge => add;
    envoy_dynamic_module_callback_http_filter_config_increment_gauge => add;
    envoy_dynamic_module_callback_http_filter_record_histogram_value => add;
    envoy_dynamic_module_callback_http_filter_config_record_histogram_value => add;
    envoy_dynamic_module_callback_http_filter_decrement_gauge =>
        |v, by| if let Value::Gauge(g) = v { *g -= by as i64 };
    envoy_dynamic_module_callback_http_filter_config_decrement_gauge =>
        |v, by| if let Value::Gauge(g) = v { *g -= by as i64 };
    envoy_dynamic_module_callback_http_filter_set_gauge =>
        |v, to| if let Value::Gauge(g) = v { *g = to as i64 };
    envoy_dynamic_module_callback_http_filter_config_set_gauge =>
        |v, to| if let Value::Gauge(g) = v { *g = to as i64 };
}

fn header_map(s: &mut Stream, map: u32) -> &mut Vec<(String, Vec<u8>)> {
    if map == 0 {
        &mut s.request_headers
    } else {
        &mut s.response_headers
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_get_header(
    _f: *mut c_void,
    map: u32,
    key: ModuleBuffer,
    result: *mut EnvoyBuffer,
    index: usize,
    count: *mut usize,
) -> bool {
    let key = unsafe { text(key) };
    with(|e| {
        let values: Vec<&(String, Vec<u8>)> = header_map(&mut e.stream, map)
            .iter()
            .filter(|(k, _)| *k == key)
            .collect();
        if !count.is_null() {
            unsafe { *count = values.len() };
        }
        match values.get(index) {
            Some((_, v)) => {
                // The map outlives the call; the module copies the value at once.
                unsafe {
                    *result = EnvoyBuffer {
                        ptr: v.as_ptr(),
                        length: v.len(),
                    }
                };
                true
            }
            None => false,
        }
    })
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_set_header(
    _f: *mut c_void,
    map: u32,
    key: ModuleBuffer,
    value: ModuleBuffer,
) -> bool {
    let key = unsafe { text(key) };
    let value = (!value.ptr.is_null()).then(|| unsafe { bytes(value) }.to_vec());
    with(|e| {
        let m = header_map(&mut e.stream, map);
        m.retain(|(k, _)| *k != key);
        if let Some(v) = value {
            m.push((key, v));
        }
    });
    true
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_send_response(
    _f: *mut c_void,
    _status: u32,
    _headers: *const ModuleHttpHeader,
    _n: usize,
    _body: ModuleBuffer,
    _details: ModuleBuffer,
) {
    // Checked after the case: a panic must not unwind through the module's frames.
    with(|e| e.stream.answered_locally = true);
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_get_body_chunks_size(
    _f: *mut c_void,
    _body: u32,
) -> usize {
    with(|e| usize::from(!e.stream.body.is_empty()))
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_get_body_chunks(
    _f: *mut c_void,
    _body: u32,
    result: *mut EnvoyBuffer,
) -> bool {
    // The body is not touched until the hook returns or the module replaces it.
    with(|e| unsafe {
        *result = EnvoyBuffer {
            ptr: e.stream.body.as_ptr(),
            length: e.stream.body.len(),
        }
    });
    true
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_get_body_size(
    _f: *mut c_void,
    _body: u32,
) -> usize {
    with(|e| e.stream.body.len())
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_drain_body(
    _f: *mut c_void,
    _body: u32,
    n: usize,
) -> bool {
    with(|e| {
        let n = n.min(e.stream.body.len());
        e.stream.body.drain(..n);
    });
    true
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_append_body(
    _f: *mut c_void,
    _body: u32,
    data: ModuleBuffer,
) -> bool {
    let data = unsafe { bytes(data) }.to_vec();
    with(|e| e.stream.body.extend_from_slice(&data));
    true
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
    _f: *mut c_void,
    key: ModuleBuffer,
    value: ModuleBuffer,
) -> bool {
    let (key, value) = unsafe { (text(key), bytes(value).to_vec()) };
    with(|e| e.stream.filter_state.insert(key, value));
    true
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
    _f: *mut c_void,
    id: u32,
    result: *mut u64,
) -> bool {
    let v = with(|e| match id {
        llm_pulse_module::ffi::ATTR_RESPONSE_CODE => Some(e.stream.code),
        llm_pulse_module::ffi::ATTR_RESPONSE_FLAGS => Some(e.stream.flags),
        _ => None,
    });
    match v {
        Some(v) => {
            unsafe { *result = v };
            true
        }
        None => false,
    }
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
    _f: *mut c_void,
    id: u32,
    result: *mut EnvoyBuffer,
) -> bool {
    if id != llm_pulse_module::ffi::ATTR_RESPONSE_CODE_DETAILS {
        return false;
    }
    with(|e| unsafe {
        *result = EnvoyBuffer {
            ptr: e.stream.details.as_ptr(),
            length: e.stream.details.len(),
        }
    });
    true
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_get_cluster_name(
    _f: *mut c_void,
    _result: *mut EnvoyBuffer,
) -> bool {
    // As the wasm host: no route, no cluster (the usage edit needs one).
    false
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_get_worker_index(_f: *mut c_void) -> u32 {
    0
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_http_callout(
    _c: *mut c_void,
    _id: *mut u64,
    _cluster: ModuleBuffer,
    _headers: *const ModuleHttpHeader,
    _n: usize,
    _body: ModuleBuffer,
    _timeout: u64,
) -> u32 {
    2 // ClusterNotFound: the cases configure no probes.
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
    _c: *mut c_void,
) -> *mut c_void {
    std::ptr::null_mut()
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
    _s: *mut c_void,
    _event: u64,
) {
}
#[no_mangle]
extern "C" fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(_s: *mut c_void) {}

// The case runner: what `wasm_meter_cases::run` does on the wasm host, on the module's hooks.

/// Any non-null address: the fake keeps one stream and one config per thread.
const ENVOY_PTR: *mut c_void = 8 as *mut c_void;
const START_NS: u64 = 1_700_000_000_000_000_000;

fn envoy_buffer(b: &[u8]) -> EnvoyBuffer {
    EnvoyBuffer {
        ptr: b.as_ptr(),
        length: b.len(),
    }
}

struct Run {
    now_ns: u64,
    filter: *const c_void,
    continued: bool,
    /// The response body as it leaves the filter.
    sent: Vec<u8>,
}

impl Run {
    fn advance(&mut self, us: u64) {
        self.now_ns += us * 1000;
        set_now_ns(self.now_ns);
    }

    fn request_body(&mut self, body: &[u8], end: bool) {
        with(|e| e.stream.body = body.to_vec());
        let s = unsafe {
            envoy_dynamic_module_on_http_filter_request_body(ENVOY_PTR, self.filter, end)
        };
        self.continued &= s == 0;
    }

    fn response_body(&mut self, body: &[u8], end: bool) {
        with(|e| e.stream.body = body.to_vec());
        let s = unsafe {
            envoy_dynamic_module_on_http_filter_response_body(ENVOY_PTR, self.filter, end)
        };
        self.continued &= s == 0;
        self.sent
            .extend(with(|e| std::mem::take(&mut e.stream.body)));
    }
}

fn set_end(case: &Case) {
    with(|e| {
        e.stream.flags = case.end.flags;
        e.stream.details = case.end.details.to_string();
    });
}

fn run(case: &Case) -> Result<(Expect, Vec<(String, Value)>)> {
    with(|e| *e = FakeEnvoy::default());
    set_now_ns(START_NS);
    let config = unsafe {
        envoy_dynamic_module_on_http_filter_config_new(
            ENVOY_PTR,
            envoy_buffer(b"llm_pulse"),
            envoy_buffer(cases::PLUGIN_CONFIG.as_bytes()),
        )
    };
    ensure!(!config.is_null(), "the module refused the cases' config");
    let filter = unsafe { envoy_dynamic_module_on_http_filter_new(config, ENVOY_PTR) };
    let mut r = Run {
        now_ns: START_NS,
        filter,
        continued: true,
        sent: Vec::new(),
    };
    with(|e| {
        e.stream.request_headers = [
            (":method", case.method),
            (":path", case.path),
            (":authority", "llm"),
            ("content-type", "application/json"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
    });
    let s =
        unsafe { envoy_dynamic_module_on_http_filter_request_headers(ENVOY_PTR, filter, false) };
    r.continued &= s == 0;
    if case.upload_gap_us == 0 {
        r.request_body(&case.request_body, case.request_ends);
    } else {
        let n = case.request_body.len();
        for (i, b) in case.request_body.iter().enumerate() {
            r.advance(case.upload_gap_us);
            r.request_body(&[*b], case.request_ends && i + 1 == n);
        }
    }
    if let Some(resp) = &case.response {
        r.advance(resp.after_us);
        if resp.ends {
            set_end(case);
        }
        with(|e| {
            e.stream.response_headers = vec![
                (":status".into(), resp.status.to_string().into_bytes()),
                ("content-type".into(), resp.content_type.as_bytes().to_vec()),
            ];
            e.stream.code = u64::from(resp.status);
            if e.stream.details.is_empty() {
                e.stream.details = "via_upstream".into();
            }
        });
        let s = unsafe {
            envoy_dynamic_module_on_http_filter_response_headers(ENVOY_PTR, filter, false)
        };
        r.continued &= s == 0;
        for c in &resp.chunks {
            r.advance(c.after_us);
            r.response_body(&c.bytes, false);
        }
        if resp.ends {
            r.response_body(b"", true);
        }
    }
    r.advance(case.end.after_us);
    set_end(case);
    let f = case.end.flags;
    with(|e| {
        if f & response_flags::DOWNSTREAM_CONNECTION_TERMINATION != 0
            || f & response_flags::UPSTREAM_REMOTE_RESET != 0
        {
            e.stream.flags |= f;
        }
    });
    unsafe {
        envoy_dynamic_module_on_http_filter_stream_complete(ENVOY_PTR, filter);
        envoy_dynamic_module_on_http_filter_destroy(filter);
        envoy_dynamic_module_on_http_filter_config_destroy(config);
    }

    assert!(r.continued, "{}: paused", case.name);
    assert!(
        !with(|e| e.stream.answered_locally),
        "{}: answered locally",
        case.name
    );
    assert_eq!(r.sent, case.response_body(), "{}: body changed", case.name);
    let (metrics, filter_state) = with(|e| (e.metrics.clone(), e.stream.filter_state.clone()));
    let samples = metrics.iter().map(|(name, v)| match v {
        Value::Counter(c) => Sample::Counter(name.clone(), *c),
        Value::Gauge(g) => Sample::Gauge(name.clone(), *g),
        Value::Histogram(h) => Sample::Histogram(name.clone(), h.clone()),
    });
    Ok((
        Expect::observed(samples, &filter_state),
        metrics.into_iter().collect(),
    ))
}

fn run_all(family: &str, cases: Vec<Case>) -> Result<()> {
    let mut failures = Vec::new();
    for case in &cases {
        let (got, metrics) = run(case)?;
        // inflight_requests back to 0 after every case (defined, not merely absent).
        let inflight: Vec<_> = metrics
            .iter()
            .filter(|(n, _)| n.starts_with("llm_inflight_requests."))
            .collect();
        assert!(!inflight.is_empty(), "{}: no inflight gauge", case.name);
        for (n, v) in inflight {
            assert_eq!(*v, Value::Gauge(0), "{}: {n}", case.name);
        }
        failures.extend(cases::check(case, &got));
    }
    println!("{family}: {} cases on the module", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed on the module:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    Ok(())
}

#[test]
fn every_case_of_the_table_on_the_module() -> Result<()> {
    let mut n = 0;
    for (family, cases) in [
        ("hand-written", cases::hand_written()),
        ("errors", cases::errors()),
        ("k per event", cases::tokens_per_event()),
        ("k per chunk", cases::events_per_chunk()),
        ("hardening", cases::hardening()),
        ("splits", cases::splits()),
    ] {
        n += cases.len();
        run_all(family, cases)?;
    }
    assert_eq!(n, cases::all().len(), "a family is not run on the module");
    Ok(())
}
