//! The metric contract (docs/design.md, "Metrics"): names, label encoding, the model cardinality
//! cap, and a per-VM cache of metric ids so the hot path never formats a stat name.

use crate::host::{Host, HostError, MetricKind};
use crate::labels::{
    sanitize_label_value, Endpoint, ErrorType, RequestType, OTHER_MODEL, UNKNOWN_MODEL,
};
use hashbrown::{HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    RequestsTotal,
    InflightRequests,
    OutputTokensTotal,
    TimeToFirstToken,
    InterTokenLatency,
    RequestDuration,
    InputSequenceTokens,
    OutputSequenceTokens,
    CachedTokens,
    /// Exact sums beside the histograms whose mean users chart: Envoy's histograms read their
    /// `_sum` back quantized (~5 %); a counter of the same values is exact.
    TimeToFirstTokenTotal,
    InterTokenLatencyTotal,
    RequestDurationTotal,
    InputSequenceTokensTotal,
    OutputSequenceTokensTotal,
}

impl Metric {
    pub fn suffix(self) -> &'static str {
        match self {
            Metric::RequestsTotal => "requests_total",
            Metric::InflightRequests => "inflight_requests",
            Metric::OutputTokensTotal => "output_tokens_total",
            Metric::TimeToFirstToken => "time_to_first_token_microseconds",
            Metric::InterTokenLatency => "inter_token_latency_microseconds",
            Metric::RequestDuration => "request_duration_microseconds",
            Metric::InputSequenceTokens => "input_sequence_tokens",
            Metric::OutputSequenceTokens => "output_sequence_tokens",
            Metric::CachedTokens => "cached_tokens",
            Metric::TimeToFirstTokenTotal => "time_to_first_token_microseconds_total",
            Metric::InterTokenLatencyTotal => "inter_token_latency_microseconds_total",
            Metric::RequestDurationTotal => "request_duration_microseconds_total",
            Metric::InputSequenceTokensTotal => "input_sequence_tokens_total",
            Metric::OutputSequenceTokensTotal => "output_sequence_tokens_total",
        }
    }

    pub fn kind(self) -> MetricKind {
        match self {
            Metric::RequestsTotal
            | Metric::OutputTokensTotal
            | Metric::TimeToFirstTokenTotal
            | Metric::InterTokenLatencyTotal
            | Metric::RequestDurationTotal
            | Metric::InputSequenceTokensTotal
            | Metric::OutputSequenceTokensTotal => MetricKind::Counter,
            Metric::InflightRequests => MetricKind::Gauge,
            _ => MetricKind::Histogram,
        }
    }
}

/// Index of a model label: a pinned or admitted name, or one of the reserved buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelId(u16);

impl ModelId {
    /// Names past the cap, never accepted by a worker, or a client's reserved word.
    pub const OTHER: ModelId = ModelId(u16::MAX);
    /// Requests that name no model.
    pub const UNKNOWN: ModelId = ModelId(u16::MAX - 1);
}

/// The label values of one series; a metric uses the subset its contract row names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Series {
    pub model: ModelId,
    pub endpoint: Endpoint,
    pub request_type: RequestType,
    pub error: Option<ErrorType>,
}

impl Series {
    pub fn model_only(model: ModelId) -> Series {
        Series {
            model,
            endpoint: Endpoint::Other,
            request_type: RequestType::Unary,
            error: None,
        }
    }

    /// Keeps only the labels `metric` carries, so equal series share one cache entry.
    fn for_metric(self, metric: Metric) -> Series {
        let base = Series::model_only(self.model);
        match metric {
            Metric::RequestsTotal => self,
            Metric::RequestDuration | Metric::RequestDurationTotal => Series {
                request_type: self.request_type,
                ..base
            },
            _ => base,
        }
    }
}

/// What a request's `model` value maps to before the worker answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A label already decided: pinned, admitted, or a reserved bucket.
    Known(ModelId),
    /// A name not admitted yet (sanitized): `other` until a worker accepts it.
    Pending(String),
}

/// Model names seen by this VM. Pinned names (`models` in the config) are labelled as they
/// are; other names enter the `max_models` cap only once a worker accepted them, so requests a
/// worker refuses (404 for a made-up model) cannot fill the cap. The cap is shared by all VMs
/// of the `vm_id` through shared data so that `--concurrency N` does not multiply it by N.
pub struct Models {
    max: usize,
    shared_key: String,
    /// Pinned names first, then admitted ones.
    names: Vec<String>,
    pinned: usize,
    index: HashMap<String, ModelId>,
    /// Names recently refused, so a flood of distinct names costs one shared-data read each,
    /// not one per request. Bounded: cleared when full.
    refused: HashSet<String>,
}

const REFUSED_CACHE: usize = 256;
const CAS_RETRIES: usize = 8;

impl Models {
    pub fn new(prefix: &str, max: u32, pinned: &[String]) -> Models {
        let mut m = Models {
            max: max as usize,
            shared_key: format!("llm_pulse.models.{prefix}"),
            names: Vec::new(),
            pinned: 0,
            index: HashMap::new(),
            refused: HashSet::new(),
        };
        for name in pinned {
            // The config checked each is a label value as is and not reserved.
            if !m.index.contains_key(name) && m.names.len() < usize::from(u16::MAX - 2) {
                m.push(name.clone());
            }
        }
        m.pinned = m.names.len();
        m
    }

    fn push(&mut self, name: String) -> ModelId {
        let id = ModelId(u16::try_from(self.names.len()).unwrap_or(u16::MAX));
        self.names.push(name.clone());
        self.index.insert(name, id);
        id
    }

    pub fn label(&self, id: ModelId) -> &str {
        if id == ModelId::UNKNOWN {
            return UNKNOWN_MODEL;
        }
        self.names
            .get(usize::from(id.0))
            .map(String::as_str)
            .unwrap_or(OTHER_MODEL)
    }

    /// The label of a request's raw `model` value (`None`: the request names none), before
    /// any worker answered it.
    pub fn lookup(&self, raw: Option<&[u8]>) -> Lookup {
        let Some(raw) = raw else {
            return Lookup::Known(ModelId::UNKNOWN);
        };
        let name = sanitize_label_value(raw);
        if let Some(id) = self.index.get(&name) {
            return Lookup::Known(*id);
        }
        if name == UNKNOWN_MODEL && raw != UNKNOWN_MODEL.as_bytes() {
            return Lookup::Known(ModelId::UNKNOWN); // blank
        }
        if name == OTHER_MODEL || name == UNKNOWN_MODEL {
            // A client naming a bucket must not be counted as one of its own.
            return Lookup::Known(ModelId::OTHER);
        }
        Lookup::Pending(name)
    }

    /// A worker accepted a request for `name` (from [`Lookup::Pending`]): its id if the cap
    /// has room (or another VM admitted it), else `other`.
    pub fn admit(&mut self, host: &dyn Host, name: String) -> ModelId {
        if let Some(id) = self.index.get(&name) {
            return *id;
        }
        if self.refused.contains(&name) || self.names.len().saturating_sub(self.pinned) >= self.max
        {
            return ModelId::OTHER;
        }
        if self.admit_globally(host, &name) {
            self.push(name)
        } else {
            if self.refused.len() >= REFUSED_CACHE {
                self.refused.clear();
            }
            self.refused.insert(name);
            ModelId::OTHER
        }
    }

    /// Lookup then admission at once: for tests and callers that know the worker accepted.
    #[cfg(test)]
    pub fn resolve(&mut self, host: &dyn Host, raw: &[u8]) -> ModelId {
        match self.lookup(Some(raw)) {
            Lookup::Known(id) => id,
            Lookup::Pending(name) => self.admit(host, name),
        }
    }

    /// Adds `name` to the shared list unless the list is full. Names are `\n`-separated
    /// (sanitized names hold no control characters).
    fn admit_globally(&self, host: &dyn Host, name: &str) -> bool {
        for _ in 0..CAS_RETRIES {
            let (value, cas) = host.get_shared_data(&self.shared_key);
            let value = value.unwrap_or_default();
            let listed = value
                .split(|&b| b == b'\n')
                .filter(|n| !n.is_empty())
                .collect::<Vec<_>>();
            if listed.contains(&name.as_bytes()) {
                return true;
            }
            if listed.len() >= self.max {
                return false;
            }
            let mut next = value.clone();
            if !next.is_empty() {
                next.push(b'\n');
            }
            next.extend_from_slice(name.as_bytes());
            match host.set_shared_data(&self.shared_key, &next, cas) {
                Ok(()) => return true,
                Err(HostError::CasMismatch) => continue,
                Err(e) => {
                    // Without shared data the cap still holds per VM.
                    host.log_warn(&format!("llm-pulse: model cap falls back to per-VM: {e}"));
                    return true;
                }
            }
        }
        // Lost the race every time: admit locally; the per-VM cap still bounds it.
        true
    }
}

/// Metric ids of this VM, defined on first use and cached by series.
pub struct Metrics {
    prefix: String,
    pub models: Models,
    ids: HashMap<(Metric, Series), u32>,
    define_failed: bool,
}

impl Metrics {
    pub fn new(prefix: &str, max_models: u32, pinned: &[String]) -> Metrics {
        Metrics {
            prefix: prefix.to_string(),
            models: Models::new(prefix, max_models, pinned),
            ids: HashMap::new(),
            define_failed: false,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The metric id for `metric` on `series`, defining it on first use. `None` only when
    /// Envoy refuses the definition (logged once).
    pub fn id(&mut self, host: &dyn Host, metric: Metric, series: Series) -> Option<u32> {
        let series = series.for_metric(metric);
        if let Some(id) = self.ids.get(&(metric, series)) {
            return Some(*id);
        }
        let name = self.stat_name(metric, series);
        match host.define_metric(metric.kind(), &name) {
            Ok(id) => {
                self.ids.insert((metric, series), id);
                Some(id)
            }
            Err(e) => {
                if !self.define_failed {
                    self.define_failed = true;
                    host.log_warn(&format!("llm-pulse: cannot define metric {name}: {e}"));
                }
                None
            }
        }
    }

    pub fn increment(&mut self, host: &dyn Host, metric: Metric, series: Series, delta: i64) {
        if let Some(id) = self.id(host, metric, series) {
            host.increment_metric(id, delta);
        }
    }

    pub fn record(&mut self, host: &dyn Host, metric: Metric, series: Series, value: u64) {
        if let Some(id) = self.id(host, metric, series) {
            host.record_metric(id, value);
        }
    }

    /// A histogram sample and the same value added to its exact-sum counter.
    pub fn record_with_total(
        &mut self,
        host: &dyn Host,
        (histogram, total): (Metric, Metric),
        series: Series,
        value: u64,
    ) {
        self.record(host, histogram, series, value);
        let delta = i64::try_from(value).unwrap_or(i64::MAX);
        self.increment(host, total, series, delta);
    }

    pub fn stat_name(&self, metric: Metric, series: Series) -> String {
        let model = self.models.label(series.model);
        let status = if series.error.is_some() {
            "error"
        } else {
            "success"
        };
        let error_type = series.error.map(ErrorType::as_str).unwrap_or("");
        let labels: &[(&str, &str)] = match metric {
            Metric::RequestsTotal => &[
                ("model", model),
                ("endpoint", series.endpoint.as_str()),
                ("request_type", series.request_type.as_str()),
                ("status", status),
                ("error_type", error_type),
            ],
            Metric::RequestDuration | Metric::RequestDurationTotal => &[
                ("model", model),
                ("request_type", series.request_type.as_str()),
            ],
            _ => &[("model", model)],
        };
        encode_stat_name(&self.prefix, metric.suffix(), labels)
    }
}

/// `P_build_info{version, commit}`, set to 1 as Prometheus exporters do: which build of the
/// filter runs, joinable on its labels. Defined once per VM at configure; every VM sets the
/// same gauge to the same 1, so `--concurrency` does not change it. A refused definition is
/// logged and otherwise ignored (the version line in Envoy's log still says it).
pub fn publish_build_info(host: &dyn Host, prefix: &str, version: &str, commit: &str) {
    let version = sanitize_label_value(version.as_bytes());
    let commit = sanitize_label_value(commit.as_bytes());
    let name = encode_stat_name(
        prefix,
        "build_info",
        &[("version", &version), ("commit", &commit)],
    );
    match host.define_metric(MetricKind::Gauge, &name) {
        Ok(id) => host.record_metric(id, 1),
        Err(e) => host.log_warn(&format!("llm-pulse: cannot define metric {name}: {e}")),
    }
}

/// `P_name.label=.=value;.;label=.=value;.;` — the encoding Istio's `extraStatTags` and our
/// `stats_tags` regexes `(label=\.=(.*?);\.;)` take apart. Values must be sanitized.
pub fn encode_stat_name(prefix: &str, suffix: &str, labels: &[(&str, &str)]) -> String {
    let mut name = format!("{prefix}_{suffix}.");
    for (key, value) in labels {
        name.push_str(key);
        name.push_str("=.=");
        name.push_str(value);
        name.push_str(";.;");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;

    #[test]
    fn stat_names_encode_labels() {
        let host = FakeHost::default();
        let mut m = Metrics::new("llm", 4, &[]);
        let model = m.models.resolve(&host, b"qwen/Qwen3-8B");
        let s = Series {
            model,
            endpoint: Endpoint::ChatCompletions,
            request_type: RequestType::Stream,
            error: Some(ErrorType::BackendError),
        };
        assert_eq!(
            m.stat_name(Metric::RequestsTotal, s.for_metric(Metric::RequestsTotal)),
            "llm_requests_total.model=.=qwen/Qwen3-8B;.;endpoint=.=chat_completions;.;\
             request_type=.=stream;.;status=.=error;.;error_type=.=backend_error;.;"
        );
        let ok = Series { error: None, ..s };
        assert!(m
            .stat_name(Metric::RequestsTotal, ok)
            .ends_with("status=.=success;.;error_type=.=;.;"));
        assert_eq!(
            m.stat_name(
                Metric::RequestDuration,
                s.for_metric(Metric::RequestDuration)
            ),
            "llm_request_duration_microseconds.model=.=qwen/Qwen3-8B;.;request_type=.=stream;.;"
        );
        assert_eq!(
            m.stat_name(
                Metric::TimeToFirstToken,
                s.for_metric(Metric::TimeToFirstToken)
            ),
            "llm_time_to_first_token_microseconds.model=.=qwen/Qwen3-8B;.;"
        );
    }

    #[test]
    fn build_info_is_a_gauge_at_one_with_version_and_commit() {
        let host = FakeHost::default();
        publish_build_info(&host, "llm", "0.1.0", "abc1234");
        let name = "llm_build_info.version=.=0.1.0;.;commit=.=abc1234;.;";
        assert_eq!(
            host.names.borrow().as_slice(),
            &[(MetricKind::Gauge, name.to_string())]
        );
        assert_eq!(host.samples(name), vec![1]);
        // A hostile commit string (a source archive's LLM_PULSE_COMMIT) cannot forge labels.
        publish_build_info(&host, "p", "1", "x;.;model=.=y");
        assert!(host
            .names
            .borrow()
            .iter()
            .any(|(_, n)| n == "p_build_info.version=.=1;.;commit=.=x_._model_._y;.;"));
    }

    #[test]
    fn ids_are_defined_once_per_series() {
        let host = FakeHost::default();
        let mut m = Metrics::new("p", 4, &[]);
        let model = m.models.resolve(&host, b"m");
        let a = Series::model_only(model);
        // Labels a metric does not carry do not make a new series.
        let b = Series {
            endpoint: Endpoint::Completions,
            ..a
        };
        m.record(&host, Metric::TimeToFirstToken, a, 5);
        m.record(&host, Metric::TimeToFirstToken, b, 6);
        assert_eq!(host.names.borrow().len(), 1);
        assert_eq!(
            host.samples("p_time_to_first_token_microseconds.model=.=m;.;"),
            vec![5, 6]
        );
    }

    #[test]
    fn model_cap_is_shared_between_vms() {
        let host = FakeHost::default(); // one host = one shared-data store
        let mut vm1 = Models::new("llm", 2, &[]);
        let mut vm2 = Models::new("llm", 2, &[]);
        let a = vm1.resolve(&host, b"a");
        let b = vm2.resolve(&host, b"b");
        assert_ne!(a, ModelId::OTHER);
        assert_ne!(b, ModelId::OTHER);
        // The cap is global: a third name is refused on either VM...
        assert_eq!(vm1.resolve(&host, b"c"), ModelId::OTHER);
        assert_eq!(vm2.resolve(&host, b"c"), ModelId::OTHER);
        // ...while a name another VM admitted is admitted here too.
        let b1 = vm1.resolve(&host, b"b");
        assert_ne!(b1, ModelId::OTHER);
        assert_eq!(vm1.label(b1), "b");
        assert_eq!(vm1.label(ModelId::OTHER), "other");
    }

    #[test]
    fn model_values_are_sanitized_before_the_cap() {
        let host = FakeHost::default();
        let mut m = Models::new("llm", 8, &[]);
        let id = m.resolve(&host, b"evil;.;endpoint=.=x");
        assert_eq!(m.label(id), "evil_._endpoint_._x");
        assert_eq!(m.resolve(&host, b"evil;.;endpoint=.=x"), id);
    }

    #[test]
    fn ten_thousand_names_stay_capped() {
        let host = FakeHost::default();
        let mut m = Models::new("llm", 32, &[]);
        let mut admitted = 0;
        for i in 0..10_000 {
            if m.resolve(&host, format!("model-{i}").as_bytes()) != ModelId::OTHER {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 32);
        assert!(m.refused.len() <= REFUSED_CACHE);
    }

    #[test]
    fn names_wait_for_a_worker_and_buckets_are_reserved() {
        let host = FakeHost::default();
        let mut m = Models::new("llm", 1, &["pinned-a".to_string()]);
        assert_eq!(m.lookup(None), Lookup::Known(ModelId::UNKNOWN));
        assert_eq!(m.lookup(Some(b"  ")), Lookup::Known(ModelId::UNKNOWN));
        // A client naming a bucket lands in `other`, never in a series of its own.
        assert_eq!(m.lookup(Some(b"other")), Lookup::Known(ModelId::OTHER));
        assert_eq!(m.lookup(Some(b"unknown")), Lookup::Known(ModelId::OTHER));
        // Pinned: known at once, outside the cap.
        let Lookup::Known(p) = m.lookup(Some(b"pinned-a")) else {
            panic!("pinned not known");
        };
        assert_eq!(m.label(p), "pinned-a");
        // Looking a name up admits nothing: a thousand never-accepted names leave the cap free.
        for i in 0..1000 {
            let name = format!("junk-{i}");
            assert_eq!(m.lookup(Some(name.as_bytes())), Lookup::Pending(name));
        }
        assert!(host.shared.borrow().is_empty());
        let real = m.admit(&host, "real".to_string());
        assert_eq!(m.label(real), "real");
        assert_eq!(m.lookup(Some(b"real")), Lookup::Known(real));
        // The cap (1) holds the accepted name; the pinned one does not count against it.
        assert_eq!(m.admit(&host, "late".to_string()), ModelId::OTHER);
        assert_eq!(m.label(ModelId::UNKNOWN), "unknown");
    }
}
