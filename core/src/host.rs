//! The few things the logic needs from Envoy, behind a trait so the logic runs natively in unit
//! tests ([`fake::FakeHost`]) and in Envoy (the filter crate's `ProxyWasmHost`).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// A compare-and-swap write lost against another VM's write.
    CasMismatch,
    /// Any other refusal by the host, with the host call and its status.
    Refused(&'static str, String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::CasMismatch => write!(f, "shared data changed concurrently (CAS mismatch)"),
            HostError::Refused(call, status) => write!(f, "{call} refused: {status}"),
        }
    }
}

/// Envoy's account of a stream's end so far: `response.code`, `response.flags`,
/// `response.code_details` (0, 0, empty when unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvoyEnd {
    pub status: u32,
    pub flags: u64,
    pub details: String,
}

pub trait Host {
    /// Wall-clock time in nanoseconds (proxy-wasm offers no monotonic clock in ABI 0.2.1).
    fn now_ns(&self) -> u64;
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError>;
    fn increment_metric(&self, id: u32, delta: i64);
    fn record_metric(&self, id: u32, value: u64);
    /// Shared data across the VMs of one `vm_id`: value and CAS token.
    fn get_shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError>;
    /// Filter state for access logs (read back as `wasm.<path>`).
    fn set_property(&self, path: &str, value: &[u8]);
    fn log_warn(&self, msg: &str);
    /// Envoy's account of the current stream's end (three property reads: ask only when it
    /// can change the verdict).
    fn envoy_end(&self) -> EnvoyEnd;
    /// An HTTP call to `cluster` (headers include `:method`, `:path`, `:authority`); the answer
    /// arrives later with the returned token.
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<u32, HostError>;
    /// Up to `max` bytes of the body of the HTTP call answer being delivered, from `start`
    /// (only during that delivery; empty otherwise). Each call copies that much into the VM.
    fn call_response_body(&self, start: usize, max: usize) -> Vec<u8>;
}

#[cfg(test)]
pub mod fake {
    //! An in-memory host for unit tests: a settable clock, metrics by name, shared data, logs.
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::BTreeMap;

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
        fn name_of(&self, id: u32) -> String {
            let names = self.names.borrow();
            names
                .get(id as usize)
                .map(|(_, n)| n.clone())
                .unwrap_or_default()
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
                return Ok(i as u32);
            }
            names.push((kind, name.to_string()));
            Ok((names.len() - 1) as u32)
        }
        fn increment_metric(&self, id: u32, delta: i64) {
            self.host_calls.set(self.host_calls.get() + 1);
            let name = self.name_of(id);
            *self.counters.borrow_mut().entry(name).or_insert(0) += delta;
        }
        fn record_metric(&self, id: u32, value: u64) {
            self.host_calls.set(self.host_calls.get() + 1);
            let name = self.name_of(id);
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
        fn set_shared_data(
            &self,
            key: &str,
            value: &[u8],
            cas: Option<u32>,
        ) -> Result<(), HostError> {
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
}
