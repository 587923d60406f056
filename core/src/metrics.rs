//! The metric contract (docs/design.md, "Metrics"): names, types, label encoding, and a per-VM
//! cache of metric ids so the hot path never formats a stat name. Which `model` values exist is
//! [`crate::models`]'s.

use crate::host::{Host, MetricKind};
use crate::labels::{sanitize_label_value, Endpoint, ErrorType, RequestType};
use crate::models::Models;
use crate::workers::Workers;
// The meter takes a series' label ids, and the lookup that gives a model's, from here.
pub use crate::models::{Lookup, ModelId};
pub use crate::workers::WorkerId;
use hashbrown::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    RequestsTotal,
    InflightRequests,
    /// Requests whose body has arrived and that have no first token yet (Dynamo's
    /// `queued_requests`): waiting in the worker's queue or in prefill.
    QueuedRequests,
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
    /// Every per-request metric (the dynamic module defines each family up front from it).
    pub const ALL: [Metric; 15] = [
        Metric::RequestsTotal,
        Metric::InflightRequests,
        Metric::QueuedRequests,
        Metric::OutputTokensTotal,
        Metric::TimeToFirstToken,
        Metric::InterTokenLatency,
        Metric::RequestDuration,
        Metric::InputSequenceTokens,
        Metric::OutputSequenceTokens,
        Metric::CachedTokens,
        Metric::TimeToFirstTokenTotal,
        Metric::InterTokenLatencyTotal,
        Metric::RequestDurationTotal,
        Metric::InputSequenceTokensTotal,
        Metric::OutputSequenceTokensTotal,
    ];

    pub fn suffix(self) -> &'static str {
        match self {
            Metric::RequestsTotal => "requests_total",
            Metric::InflightRequests => "inflight_requests",
            Metric::QueuedRequests => "queued_requests",
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
            Metric::InflightRequests | Metric::QueuedRequests => MetricKind::Gauge,
            _ => MetricKind::Histogram,
        }
    }

    /// Whether the metric carries the `worker` label when it is on: all but the queue, which
    /// a request leaves before the filter knows its worker.
    pub fn per_worker(self) -> bool {
        !matches!(self, Metric::QueuedRequests)
    }
}

/// The label values of one series; a metric uses the subset its contract row names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Series {
    pub model: ModelId,
    /// [`WorkerId::NONE`] when the `worker` label is off.
    pub worker: WorkerId,
    pub endpoint: Endpoint,
    pub request_type: RequestType,
    pub error: Option<ErrorType>,
}

impl Series {
    pub fn model_only(model: ModelId) -> Series {
        Series::labels(model, WorkerId::NONE)
    }

    /// The labels every per-request metric carries.
    pub fn labels(model: ModelId, worker: WorkerId) -> Series {
        Series {
            model,
            worker,
            endpoint: Endpoint::Other,
            request_type: RequestType::Unary,
            error: None,
        }
    }

    /// Keeps only the labels `metric` carries, so equal series share one cache entry.
    fn for_metric(self, metric: Metric) -> Series {
        let worker = if metric.per_worker() {
            self.worker
        } else {
            WorkerId::NONE
        };
        let base = Series::labels(self.model, worker);
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

/// Metric ids of this VM, defined on first use and cached by series.
pub struct Metrics {
    prefix: String,
    pub models: Models,
    pub workers: Workers,
    ids: HashMap<(Metric, Series), u32>,
    define_failed: bool,
}

impl Metrics {
    pub fn new(prefix: &str, models: Models, workers: Workers) -> Metrics {
        Metrics {
            prefix: prefix.to_string(),
            models,
            workers,
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
        let mut labels: Vec<(&str, &str)> = match metric {
            Metric::RequestsTotal => vec![
                ("model", model),
                ("endpoint", series.endpoint.as_str()),
                ("request_type", series.request_type.as_str()),
                ("status", status),
                ("error_type", error_type),
            ],
            Metric::RequestDuration | Metric::RequestDurationTotal => vec![
                ("model", model),
                ("request_type", series.request_type.as_str()),
            ],
            _ => vec![("model", model)],
        };
        // Last, so the names without it are unchanged.
        if self.workers.enabled() && metric.per_worker() {
            labels.push(("worker", self.workers.label(series.worker)));
        }
        encode_stat_name(&self.prefix, metric.suffix(), &labels)
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

    fn test_metrics(prefix: &str, worker_label: bool) -> Metrics {
        let targets = [("gpu-0".to_string(), "10.0.0.1:8000".to_string())];
        Metrics::new(
            prefix,
            Models::new(prefix, 4, &[]),
            Workers::new(prefix, worker_label, 4, &targets),
        )
    }

    #[test]
    fn the_worker_label_comes_last_on_per_request_metrics_only() {
        let host = FakeHost::default();
        let mut m = test_metrics("llm", true);
        let model = m.models.resolve(&host, b"m");
        let worker = m.workers.resolve(&host, b"10.0.0.1:8000", true);
        let s = Series {
            endpoint: Endpoint::Completions,
            ..Series::labels(model, worker)
        };
        assert_eq!(
            m.stat_name(Metric::RequestsTotal, s.for_metric(Metric::RequestsTotal)),
            "llm_requests_total.model=.=m;.;endpoint=.=completions;.;request_type=.=unary;.;\
             status=.=success;.;error_type=.=;.;worker=.=gpu-0;.;"
        );
        assert_eq!(
            m.stat_name(
                Metric::TimeToFirstToken,
                s.for_metric(Metric::TimeToFirstToken)
            ),
            "llm_time_to_first_token_microseconds.model=.=m;.;worker=.=gpu-0;.;"
        );
        // Queued requests have no worker yet.
        assert_eq!(
            m.stat_name(Metric::QueuedRequests, s.for_metric(Metric::QueuedRequests)),
            "llm_queued_requests.model=.=m;.;"
        );
        // Before the answer says who serves it: an empty value.
        assert_eq!(
            m.stat_name(Metric::InflightRequests, Series::model_only(model)),
            "llm_inflight_requests.model=.=m;.;worker=.=;.;"
        );
    }

    #[test]
    fn stat_names_encode_labels() {
        let host = FakeHost::default();
        let mut m = test_metrics("llm", false);
        let model = m.models.resolve(&host, b"qwen/Qwen3-8B");
        let s = Series {
            model,
            worker: WorkerId::NONE,
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
        let mut m = test_metrics("p", false);
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
}
