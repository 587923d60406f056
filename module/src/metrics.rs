//! llm-pulse's metrics on Envoy's dynamic-module stats. Envoy lets a module define metrics only
//! while its filter config is created (stat creation is frozen after), but core names a series
//! when it first sees it (a model, an error type): so every metric family of the contract
//! (docs/design.md) is defined up front with its label names ([`Families`]), and each series
//! core defines later is its family plus label values ([`SeriesTable`]), parsed from the name
//! core encodes (`P_name.label=.=value;.;`). Envoy then exports `P_name{label="value"}`, the
//! names and labels the `.wasm`'s stats take after the `stats_tags` regexes.

use crate::ffi::calls::{ConfigHandle, MetricOp, MAX_LABELS};
use llm_pulse_core::host::{HostError, MetricKind};
use llm_pulse_core::metrics::Metric;
use std::collections::HashMap;

const MODEL: &[&str] = &["model"];
const TARGET: &[&str] = &["target"];

/// Every metric family core can define: kind, name after the prefix, label names in the order
/// core encodes them.
const CATALOG: &[(MetricKind, &str, &[&str])] = &[
    (
        MetricKind::Counter,
        "requests_total",
        &["model", "endpoint", "request_type", "status", "error_type"],
    ),
    (MetricKind::Gauge, "inflight_requests", MODEL),
    (MetricKind::Gauge, "queued_requests", MODEL),
    (MetricKind::Counter, "output_tokens_total", MODEL),
    (
        MetricKind::Histogram,
        "time_to_first_token_microseconds",
        MODEL,
    ),
    (
        MetricKind::Histogram,
        "inter_token_latency_microseconds",
        MODEL,
    ),
    (
        MetricKind::Histogram,
        "request_duration_microseconds",
        &["model", "request_type"],
    ),
    (MetricKind::Histogram, "input_sequence_tokens", MODEL),
    (MetricKind::Histogram, "output_sequence_tokens", MODEL),
    (MetricKind::Histogram, "cached_tokens", MODEL),
    (
        MetricKind::Counter,
        "time_to_first_token_microseconds_total",
        MODEL,
    ),
    (
        MetricKind::Counter,
        "inter_token_latency_microseconds_total",
        MODEL,
    ),
    (
        MetricKind::Counter,
        "request_duration_microseconds_total",
        &["model", "request_type"],
    ),
    (MetricKind::Counter, "input_sequence_tokens_total", MODEL),
    (MetricKind::Counter, "output_sequence_tokens_total", MODEL),
    (MetricKind::Gauge, "build_info", &["version", "commit"]),
    (MetricKind::Gauge, "usage_stats_refused", &["cluster"]),
    (
        MetricKind::Counter,
        "health_checks_total",
        &["target", "result"],
    ),
    (
        MetricKind::Histogram,
        "health_check_duration_microseconds",
        TARGET,
    ),
    (MetricKind::Gauge, "health_status", TARGET),
];

struct Family {
    kind: MetricKind,
    labels: Vec<&'static str>,
    envoy_id: usize,
}

/// A family's label names: the catalog's, and `worker` last on the per-request families core
/// labels by worker when `worker_label` is on ([`Metric::per_worker`]).
fn labels_of(
    suffix: &str,
    labels: &'static [&'static str],
    worker_label: bool,
) -> Vec<&'static str> {
    let mut all = labels.to_vec();
    let per_worker = Metric::ALL
        .iter()
        .any(|m| m.suffix() == suffix && m.per_worker());
    if worker_label && per_worker {
        all.push("worker");
    }
    all
}

/// The metric families of one filter config, defined in Envoy.
pub struct Families {
    by_name: HashMap<String, Family>,
}

impl Families {
    /// Defines every family under `prefix`; the error names the one Envoy refused.
    pub fn define(
        config: &ConfigHandle,
        prefix: &str,
        worker_label: bool,
    ) -> Result<Families, String> {
        let mut by_name = HashMap::new();
        for (kind, suffix, labels) in CATALOG {
            let name = format!("{prefix}_{suffix}");
            let labels = labels_of(suffix, labels, worker_label);
            let envoy_id = config
                .define(*kind, &name, &labels)
                .map_err(|status| format!("Envoy refused metric {name} (status {status})"))?;
            by_name.insert(
                name,
                Family {
                    kind: *kind,
                    labels,
                    envoy_id,
                },
            );
        }
        Ok(Families { by_name })
    }

    /// The series core's encoded `name` stands for.
    fn series(&self, kind: MetricKind, name: &str) -> Result<Series, HostError> {
        let refused = |why: &str| HostError::Refused("define_metric", format!("{name}: {why}"));
        let (base, mut rest) = name.split_once('.').ok_or_else(|| refused("no labels"))?;
        let family = self
            .by_name
            .get(base)
            .filter(|f| f.kind == kind)
            .ok_or_else(|| refused("not a metric of the contract"))?;
        let mut values = Vec::with_capacity(family.labels.len());
        for label in &family.labels {
            let (key, after) = rest
                .split_once("=.=")
                .ok_or_else(|| refused("labels differ"))?;
            let (value, after) = after
                .split_once(";.;")
                .ok_or_else(|| refused("labels differ"))?;
            if key != *label {
                return Err(refused("labels differ"));
            }
            values.push(value.to_string());
            rest = after;
        }
        if !rest.is_empty() || values.len() > MAX_LABELS {
            return Err(refused("labels differ"));
        }
        Ok(Series {
            kind,
            envoy_id: family.envoy_id,
            values,
        })
    }
}

/// One series: a family and its label values.
pub struct Series {
    pub kind: MetricKind,
    pub envoy_id: usize,
    pub values: Vec<String>,
}

impl Series {
    /// The label values as the call takes them, without allocating.
    pub fn with_labels<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        let mut buf = [""; MAX_LABELS];
        for (slot, v) in buf.iter_mut().zip(&self.values) {
            *slot = v;
        }
        f(buf.get(..self.values.len()).unwrap_or_default())
    }

    /// The Envoy call for core's `increment_metric(delta)`.
    pub fn increment(&self, delta: i64) -> (MetricOp, u64) {
        match self.kind {
            MetricKind::Gauge if delta < 0 => (MetricOp::GaugeSub, delta.unsigned_abs()),
            MetricKind::Gauge => (MetricOp::GaugeAdd, delta.unsigned_abs()),
            MetricKind::Counter => (MetricOp::CounterAdd, u64::try_from(delta).unwrap_or(0)),
            MetricKind::Histogram => (MetricOp::HistogramRecord, u64::try_from(delta).unwrap_or(0)),
        }
    }

    /// The Envoy call for core's `record_metric(value)`: a gauge is set, a histogram sampled.
    pub fn record(&self) -> MetricOp {
        match self.kind {
            MetricKind::Gauge => MetricOp::GaugeSet,
            MetricKind::Histogram => MetricOp::HistogramRecord,
            MetricKind::Counter => MetricOp::CounterAdd,
        }
    }
}

/// The series one thread's meter defined, by the id core holds.
#[derive(Default)]
pub struct SeriesTable {
    by_name: HashMap<String, u32>,
    list: Vec<Series>,
}

impl SeriesTable {
    pub fn define(
        &mut self,
        families: &Families,
        kind: MetricKind,
        name: &str,
    ) -> Result<u32, HostError> {
        if let Some(id) = self.by_name.get(name) {
            return Ok(*id);
        }
        let series = families.series(kind, name)?;
        let id = u32::try_from(self.list.len())
            .map_err(|_| HostError::Refused("define_metric", "too many series".to_string()))?;
        self.list.push(series);
        self.by_name.insert(name.to_string(), id);
        Ok(id)
    }

    pub fn get(&self, id: u32) -> Option<&Series> {
        self.list.get(usize::try_from(id).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_pulse_core::metrics::encode_stat_name;

    fn families(prefix: &str) -> Families {
        families_with(prefix, false)
    }

    fn families_with(prefix: &str, worker_label: bool) -> Families {
        let by_name = CATALOG
            .iter()
            .enumerate()
            .map(|(i, (kind, suffix, labels))| {
                (
                    format!("{prefix}_{suffix}"),
                    Family {
                        kind: *kind,
                        labels: labels_of(suffix, labels, worker_label),
                        envoy_id: i,
                    },
                )
            })
            .collect();
        Families { by_name }
    }

    /// Every series core can name, with the worker label on and off, is a series of a family:
    /// the catalog cannot fall behind core's metrics or their labels.
    #[test]
    fn every_series_core_names_has_its_family() {
        use llm_pulse_core::config::Config;
        use llm_pulse_core::host::fake::FakeHost;
        use llm_pulse_core::labels::{Endpoint, ErrorType, RequestType};
        use llm_pulse_core::meter::VmMeter;
        use llm_pulse_core::metrics::Series as CoreSeries;
        for worker_label in [false, true] {
            let config = Config::parse(
                format!(r#"{{"worker_label":{worker_label},"models":["m"]}}"#).as_bytes(),
                None,
            )
            .unwrap();
            let mut vm = VmMeter::new(&config);
            let host = FakeHost::default();
            let model = match vm.metrics.models.lookup(Some(b"m")) {
                llm_pulse_core::metrics::Lookup::Known(id) => id,
                other => panic!("{other:?}"),
            };
            let worker = vm.metrics.workers.resolve(&host, b"10.0.0.1:80", true);
            let series = CoreSeries {
                endpoint: Endpoint::Completions,
                request_type: RequestType::Stream,
                error: Some(ErrorType::Internal),
                ..CoreSeries::labels(model, worker)
            };
            let f = families_with("llm", worker_label);
            let mut t = SeriesTable::default();
            for metric in Metric::ALL {
                let name = vm.metrics.stat_name(metric, series);
                let defined = t.define(&f, metric.kind(), &name);
                assert!(defined.is_ok(), "{name}: {defined:?}");
            }
        }
    }

    #[test]
    fn an_encoded_name_is_its_family_and_label_values() {
        let f = families("llm");
        let mut t = SeriesTable::default();
        let name = encode_stat_name(
            "llm",
            "requests_total",
            &[
                ("model", "qwen/Qwen3-8B"),
                ("endpoint", "chat_completions"),
                ("request_type", "stream"),
                ("status", "error"),
                ("error_type", ""),
            ],
        );
        let id = t.define(&f, MetricKind::Counter, &name).unwrap();
        assert_eq!(t.define(&f, MetricKind::Counter, &name).unwrap(), id);
        let s = t.get(id).unwrap();
        assert_eq!(s.envoy_id, 0);
        assert_eq!(
            s.values,
            ["qwen/Qwen3-8B", "chat_completions", "stream", "error", ""]
        );
        s.with_labels(|l| assert_eq!(l.len(), 5));
    }

    #[test]
    fn every_family_round_trips_and_strangers_are_refused() {
        let f = families("p");
        let mut t = SeriesTable::default();
        for (kind, suffix, labels) in CATALOG {
            let pairs: Vec<(&str, &str)> = labels.iter().map(|l| (*l, "v")).collect();
            let id = t
                .define(&f, *kind, &encode_stat_name("p", suffix, &pairs))
                .unwrap();
            assert_eq!(t.get(id).unwrap().values.len(), labels.len());
        }
        let wrong_kind = encode_stat_name("p", "inflight_requests", &[("model", "m")]);
        assert!(t.define(&f, MetricKind::Counter, &wrong_kind).is_err());
        let wrong_labels = encode_stat_name("p", "inflight_requests", &[("x", "m")]);
        assert!(t.define(&f, MetricKind::Gauge, &wrong_labels).is_err());
        let unknown = encode_stat_name("p", "nope", &[("model", "m")]);
        assert!(t.define(&f, MetricKind::Gauge, &unknown).is_err());
        let other_prefix = encode_stat_name("q", "inflight_requests", &[("model", "m")]);
        assert!(t.define(&f, MetricKind::Gauge, &other_prefix).is_err());
    }

    #[test]
    fn gauges_go_down_by_decrement_and_are_set_by_record() {
        let s = Series {
            kind: MetricKind::Gauge,
            envoy_id: 0,
            values: vec![],
        };
        assert_eq!(s.increment(-1), (MetricOp::GaugeSub, 1));
        assert_eq!(s.increment(2), (MetricOp::GaugeAdd, 2));
        assert_eq!(s.record(), MetricOp::GaugeSet);
    }
}
