//! An in-memory host for tests: a settable clock, metrics by name, shared data, logs, callouts.
//! It fails the test on a metric call Envoy would not take as meant: a name defined with two
//! kinds, an id never defined, an increment of a histogram, a counter going down, a sample
//! recorded into a counter, or a runaway of [`RUNAWAY_CALLS`] samples since `host_calls` was
//! last reset (hostile input looping on host calls).
use super::*;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// More samples than this since `host_calls` was last reset is a loop, not a workload.
pub const RUNAWAY_CALLS: u64 = 10_000_000;

#[derive(Default)]
pub struct FakeHost {
    pub clock_ns: Cell<u64>,
    pub names: RefCell<Vec<(MetricKind, String)>>,
    pub counters: RefCell<BTreeMap<String, i64>>,
    pub histograms: RefCell<BTreeMap<String, Vec<u64>>>,
    pub shared: RefCell<BTreeMap<String, (Vec<u8>, u32)>>,
    pub properties: RefCell<BTreeMap<String, Vec<u8>>>,
    pub logs: RefCell<Vec<String>>,
    /// HTTP calls dispatched: (token, cluster, headers, body, timeout ms).
    pub calls: RefCell<Vec<FakeCall>>,
    /// Make the next dispatches fail (an unknown cluster, say).
    pub refuse_calls: Cell<bool>,
    /// Metric host calls (define, increment, record): the hot-path cost that matters.
    pub host_calls: Cell<u64>,
    /// The body of the call answer being delivered, and how many of its bytes were read.
    pub call_body: RefCell<Vec<u8>>,
    pub call_body_read: Cell<usize>,
    /// What `envoy_end` answers, and how often it was asked.
    pub envoy_end: RefCell<EnvoyEnd>,
    pub envoy_end_reads: Cell<u32>,
    /// Make shared-data writes fail (no shared data between the VMs).
    pub refuse_shared_writes: Cell<bool>,
    /// What `upstream_address` answers, and how often it was asked.
    pub upstream: RefCell<Option<String>>,
    pub upstream_reads: Cell<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCall {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub timeout_ms: u64,
}

impl FakeCall {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl FakeHost {
    pub fn now_ms(&self) -> u64 {
        self.clock_ns.get() / 1_000_000
    }
    pub fn advance_ms(&self, ms: u64) {
        self.clock_ns.set(self.clock_ns.get() + ms * 1_000_000);
    }
    pub fn advance_us(&self, us: u64) {
        self.clock_ns.set(self.clock_ns.get() + us * 1_000);
    }
    /// Counter or gauge value by full stat name (0 when never touched).
    pub fn value(&self, name: &str) -> i64 {
        self.counters.borrow().get(name).copied().unwrap_or(0)
    }
    pub fn samples(&self, name: &str) -> Vec<u64> {
        self.histograms
            .borrow()
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
    pub fn property(&self, path: &str) -> Option<String> {
        let props = self.properties.borrow();
        props
            .get(path)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
    fn kind_and_name(&self, id: u32) -> (MetricKind, String) {
        let names = self.names.borrow();
        let found = names.get(id as usize).cloned();
        assert!(found.is_some(), "metric id {id} was never defined");
        found.unwrap_or((MetricKind::Counter, String::new()))
    }
}

impl Host for FakeHost {
    fn now_ns(&self) -> u64 {
        self.clock_ns.get()
    }
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError> {
        self.host_calls.set(self.host_calls.get() + 1);
        let mut names = self.names.borrow_mut();
        if let Some(i) = names.iter().position(|(_, n)| n == name) {
            let defined = names.get(i).map(|(k, _)| *k);
            assert_eq!(defined, Some(kind), "{name} defined with two kinds");
            return Ok(i as u32);
        }
        names.push((kind, name.to_string()));
        Ok((names.len() - 1) as u32)
    }
    fn increment_metric(&self, id: u32, delta: i64) {
        self.host_calls.set(self.host_calls.get() + 1);
        let (kind, name) = self.kind_and_name(id);
        assert_ne!(kind, MetricKind::Histogram, "increment on histogram {name}");
        if kind == MetricKind::Counter {
            assert!(delta >= 0, "counter {name} decremented by {delta}");
        }
        *self.counters.borrow_mut().entry(name).or_insert(0) += delta;
    }
    fn record_metric(&self, id: u32, value: u64) {
        let calls = self.host_calls.get() + 1;
        self.host_calls.set(calls);
        assert!(calls < RUNAWAY_CALLS, "runaway metric host calls");
        let (kind, name) = self.kind_and_name(id);
        // Envoy adds a counter's "sample" to it: the filter never means that (gauges are set).
        assert_ne!(kind, MetricKind::Counter, "record on counter {name}");
        self.histograms
            .borrow_mut()
            .entry(name)
            .or_default()
            .push(value);
    }
    fn get_shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.shared.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        if self.refuse_shared_writes.get() {
            return Err(HostError::Refused("set_shared_data", "test".into()));
        }
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
    fn set_property(&self, path: &str, value: &[u8]) {
        self.properties
            .borrow_mut()
            .insert(path.to_string(), value.to_vec());
    }
    fn log_warn(&self, msg: &str) {
        self.logs.borrow_mut().push(msg.to_string());
    }
    fn envoy_end(&self) -> EnvoyEnd {
        self.envoy_end_reads.set(self.envoy_end_reads.get() + 1);
        self.envoy_end.borrow().clone()
    }
    fn upstream_address(&self) -> Option<Vec<u8>> {
        self.upstream_reads.set(self.upstream_reads.get() + 1);
        self.upstream
            .borrow()
            .as_ref()
            .map(|a| a.as_bytes().to_vec())
    }
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<u32, HostError> {
        if self.refuse_calls.get() {
            return Err(HostError::Refused(
                "dispatch_http_call",
                "BadArgument".into(),
            ));
        }
        let mut calls = self.calls.borrow_mut();
        let token = calls.len() as u32 + 1;
        calls.push(FakeCall {
            token,
            cluster: cluster.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.map(|b| String::from_utf8_lossy(b).into_owned()),
            timeout_ms,
        });
        Ok(token)
    }
    fn call_response_body(&self, start: usize, max: usize) -> Vec<u8> {
        let body = self.call_body.borrow();
        let end = start.saturating_add(max).min(body.len());
        let out = body.get(start..end).unwrap_or_default().to_vec();
        self.call_body_read
            .set(self.call_body_read.get() + out.len());
        out
    }
}
