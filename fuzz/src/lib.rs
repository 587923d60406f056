//! Helpers shared by the fuzz targets: a tiny in-memory [`Host`] (the filter's own `FakeHost`
//! is `#[cfg(test)]`), chunk splitting, and the metric-name invariants.

use llm_pulse_core::host::{EnvoyEnd, Host, HostError, MetricKind};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// An in-memory host: clock, metrics by name, shared data with CAS.
#[derive(Default)]
pub struct FuzzHost {
    pub clock_ns: Cell<u64>,
    pub names: RefCell<Vec<(MetricKind, String)>>,
    pub counters: RefCell<BTreeMap<String, i64>>,
    pub histograms: RefCell<BTreeMap<String, u64>>,
    pub shared: RefCell<BTreeMap<String, (Vec<u8>, u32)>>,
    pub metric_calls: Cell<u64>,
    /// What `envoy_end` answers (set by the target before `on_log`).
    pub envoy_end: RefCell<EnvoyEnd>,
}

impl FuzzHost {
    fn name_of(&self, id: u32) -> (MetricKind, String) {
        let names = self.names.borrow();
        match names.get(id as usize) {
            Some(n) => n.clone(),
            None => panic!("metric id {id} was never defined"),
        }
    }
}

impl Host for FuzzHost {
    fn now_ns(&self) -> u64 {
        self.clock_ns.get()
    }
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError> {
        let mut names = self.names.borrow_mut();
        if let Some(i) = names.iter().position(|(_, n)| n == name) {
            assert_eq!(names[i].0, kind, "{name} defined with two kinds");
            return Ok(i as u32);
        }
        names.push((kind, name.to_string()));
        Ok((names.len() - 1) as u32)
    }
    fn increment_metric(&self, id: u32, delta: i64) {
        self.metric_calls.set(self.metric_calls.get() + 1);
        let (kind, name) = self.name_of(id);
        assert_ne!(kind, MetricKind::Histogram, "increment on histogram {name}");
        if kind == MetricKind::Counter {
            assert!(delta >= 0, "counter {name} decremented by {delta}");
        }
        *self.counters.borrow_mut().entry(name).or_insert(0) += delta;
    }
    fn record_metric(&self, id: u32, _value: u64) {
        let calls = self.metric_calls.get() + 1;
        self.metric_calls.set(calls);
        // A hostile worker must not make one callback loop for ever on host calls.
        assert!(calls < 10_000_000, "runaway metric host calls");
        let (kind, name) = self.name_of(id);
        assert_eq!(
            kind,
            MetricKind::Histogram,
            "record on non-histogram {name}"
        );
        *self.histograms.borrow_mut().entry(name).or_insert(0) += 1;
    }
    fn get_shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.shared.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map(|(_, c)| *c);
        if let (Some(want), Some(have)) = (cas, current) {
            if want != have {
                return Err(HostError::CasMismatch);
            }
        }
        let next = current.unwrap_or(0) + 1;
        shared.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
    fn set_property(&self, _path: &str, _value: &[u8]) {}
    fn log_warn(&self, _msg: &str) {}
    fn envoy_end(&self) -> EnvoyEnd {
        self.envoy_end.borrow().clone()
    }
    fn dispatch_http_call(
        &self,
        _cluster: &str,
        _headers: &[(&str, &str)],
        _body: Option<&[u8]>,
        _timeout_ms: u64,
    ) -> Result<u32, HostError> {
        Err(HostError::Refused("dispatch_http_call", "fuzz".into()))
    }
    fn call_response_body(&self, _start: usize, _max: usize) -> Vec<u8> {
        Vec::new()
    }
}

/// `input` cut at the (sorted, deduplicated, clamped) positions in `cuts`.
pub fn split<'a>(input: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) % (input.len() + 1))
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::with_capacity(at.len() + 1);
    let mut start = 0;
    for p in at {
        out.push(&input[start..p]);
        start = p;
    }
    out.push(&input[start..]);
    out
}

/// A sanitized label value: no `;`, `=`, control characters; 1..=128 bytes.
pub fn assert_label_value_safe(value: &str) {
    assert!(!value.is_empty(), "empty label value");
    assert!(value.len() <= 128, "label value of {} bytes", value.len());
    for ch in value.chars() {
        assert!(
            ch != ';' && ch != '=' && !ch.is_control(),
            "unsafe char {ch:?} in label value {value:?}"
        );
    }
}

const SUFFIXES: &[&str] = &[
    "requests_total",
    "inflight_requests",
    "queued_requests",
    "output_tokens_total",
    "time_to_first_token_microseconds",
    "inter_token_latency_microseconds",
    "request_duration_microseconds",
    "input_sequence_tokens",
    "output_sequence_tokens",
    "cached_tokens",
    // The exact sums beside the charted histograms.
    "time_to_first_token_microseconds_total",
    "inter_token_latency_microseconds_total",
    "request_duration_microseconds_total",
    "input_sequence_tokens_total",
    "output_sequence_tokens_total",
    // A cluster that refused the usage the filter asked for.
    "usage_stats_refused",
];
const KEYS: &[&str] = &[
    "model",
    "endpoint",
    "request_type",
    "status",
    "error_type",
    "cluster",
];

/// Takes a stat name `P_suffix.k=.=v;.;...` apart, checking every part; returns the suffix and
/// the labels. Panics (a fuzz finding) on anything the `stats_tags` regexes would misread.
pub fn parse_stat_name<'a>(prefix: &str, name: &'a str) -> (&'a str, Vec<(&'a str, &'a str)>) {
    let rest = name
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .unwrap_or_else(|| panic!("{name:?} lacks prefix {prefix}"));
    let (suffix, mut labels) = rest
        .split_once('.')
        .unwrap_or_else(|| panic!("{name:?} has no label part"));
    assert!(
        SUFFIXES.contains(&suffix),
        "unknown metric {suffix} in {name:?}"
    );
    let mut out = Vec::new();
    while !labels.is_empty() {
        let (key, after) = labels
            .split_once("=.=")
            .unwrap_or_else(|| panic!("bad label segment in {name:?}"));
        assert!(KEYS.contains(&key), "unknown label key {key:?} in {name:?}");
        let (value, after) = after
            .split_once(";.;")
            .unwrap_or_else(|| panic!("unterminated label in {name:?}"));
        if key == "model" {
            assert_label_value_safe(value);
        } else {
            assert!(
                value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{key}={value:?} in {name:?}"
            );
        }
        out.push((key, value));
        labels = after;
    }
    assert!(
        out.first().map(|(k, _)| *k) == Some("model"),
        "{name:?}: model must be the first label"
    );
    (suffix, out)
}
