//! Metrics: the registry shared by all VMs (Envoy's stats store) and each VM's metric ids.
//!
//! Envoy semantics (`Context::defineMetric/incrementMetric/recordMetric/getMetric`):
//! - names live under the `wasmcustom.` namespace in Envoy; here they are kept as the plugin
//!   defined them, and [`Metric::envoy_name`] gives the Envoy stat name;
//! - ids carry the kind in their two low bits and count up in steps of 4 per VM;
//! - counters: increment by a positive offset only (else `BadArgument`); record adds;
//! - gauges: increment by any offset (negative subtracts); record sets;
//! - histograms: record only; increment and get are `BadArgument`;
//! - an id the VM never defined is `NotFound`.
//!
//! Gauges are kept signed so that a test sees an underflow as a negative value (Envoy's gauges
//! are unsigned and would wrap). Histograms keep every recorded value, exactly (Envoy's
//! log-linear buckets quantize sums and quantiles).

use std::collections::{BTreeMap, HashMap};

use super::abi::{MetricKind, Status};

/// The Envoy stat namespace of metrics a Wasm plugin defines.
pub const ENVOY_CUSTOM_NAMESPACE: &str = "wasmcustom.";

/// A metric's current value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricValue {
    Counter(u64),
    Gauge(i64),
    /// Every recorded value, in order.
    Histogram(Vec<u64>),
}

/// One metric as a test reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metric {
    /// The name exactly as the plugin defined it (without `wasmcustom.`).
    pub name: String,
    pub kind: MetricKind,
    pub value: MetricValue,
}

impl Metric {
    /// The Envoy stat name: `wasmcustom.<name>`.
    pub fn envoy_name(&self) -> String {
        format!("{ENVOY_CUSTOM_NAMESPACE}{}", self.name)
    }

    /// The name without the encoded labels (`P_requests_total.model=.=m;.;` -> `P_requests_total`).
    pub fn base_name(&self) -> &str {
        split_labels(&self.name).0
    }

    /// Labels encoded in the name the Istio way: `<name>.<label>=.=<value>;.;...`, in order.
    pub fn labels(&self) -> Vec<(String, String)> {
        split_labels(&self.name).1
    }

    /// The value of one label, if the name carries it.
    pub fn label(&self, label: &str) -> Option<String> {
        self.labels()
            .into_iter()
            .find(|(k, _)| k == label)
            .map(|(_, v)| v)
    }

    pub fn counter(&self) -> Option<u64> {
        match self.value {
            MetricValue::Counter(v) => Some(v),
            _ => None,
        }
    }

    pub fn gauge(&self) -> Option<i64> {
        match self.value {
            MetricValue::Gauge(v) => Some(v),
            _ => None,
        }
    }

    pub fn histogram(&self) -> Option<&[u64]> {
        match &self.value {
            MetricValue::Histogram(v) => Some(v),
            _ => None,
        }
    }
}

/// Splits `base.l1=.=v1;.;l2=.=v2;.;` into the base name and its labels. A name whose suffix does
/// not parse as labels is all base name.
pub fn split_labels(name: &str) -> (&str, Vec<(String, String)>) {
    let Some(dot) = name.find('.') else {
        return (name, Vec::new());
    };
    let (base, mut rest) = (&name[..dot], &name[dot + 1..]);
    let mut labels = Vec::new();
    while !rest.is_empty() {
        let Some(eq) = rest.find("=.=") else {
            return (name, Vec::new());
        };
        let label = &rest[..eq];
        let after = &rest[eq + 3..];
        let Some(end) = after.find(";.;") else {
            return (name, Vec::new());
        };
        labels.push((label.to_string(), after[..end].to_string()));
        rest = &after[end + 3..];
    }
    (base, labels)
}

/// The stats store shared by every VM of a host. Values sit in a `Vec` so that a VM's metric
/// id resolves to its slot without hashing or allocating a name per call: the microbenchmark
/// (scripts/bench) times the filter's host calls, and the host's own cost should be small.
#[derive(Debug, Default)]
pub(crate) struct MetricRegistry {
    index: BTreeMap<(String, MetricKind), usize>,
    values: Vec<MetricValue>,
}

impl MetricRegistry {
    /// The slot of `name`, created on first use.
    fn ensure(&mut self, kind: MetricKind, name: &str) -> usize {
        if let Some(slot) = self.index.get(&(name.to_string(), kind)) {
            return *slot;
        }
        let slot = self.values.len();
        self.values.push(match kind {
            MetricKind::Counter => MetricValue::Counter(0),
            MetricKind::Gauge => MetricValue::Gauge(0),
            MetricKind::Histogram => MetricValue::Histogram(Vec::new()),
        });
        self.index.insert((name.to_string(), kind), slot);
        slot
    }

    fn value_mut(&mut self, slot: usize) -> Option<&mut MetricValue> {
        self.values.get_mut(slot)
    }

    pub(crate) fn all(&self) -> Vec<Metric> {
        self.index
            .iter()
            .filter_map(|((name, kind), slot)| {
                Some(Metric {
                    name: name.clone(),
                    kind: *kind,
                    value: self.values.get(*slot)?.clone(),
                })
            })
            .collect()
    }
}

/// One VM's metric ids.
#[derive(Debug)]
pub(crate) struct MetricIds {
    /// Registry slot of each id (the kind is in the id's low bits).
    by_id: HashMap<u32, usize>,
    by_name: HashMap<(MetricKind, String), u32>,
    next: [u32; 3],
}

impl Default for MetricIds {
    fn default() -> Self {
        MetricIds {
            by_id: HashMap::new(),
            by_name: HashMap::new(),
            next: [0, 1, 2],
        }
    }
}

const ID_INCREMENT: u32 = 4;
const KIND_MASK: u32 = 3;

impl MetricIds {
    pub(crate) fn define(
        &mut self,
        registry: &mut MetricRegistry,
        kind_raw: u32,
        name: &str,
    ) -> Result<u32, Status> {
        let kind = MetricKind::from_raw(kind_raw).ok_or(Status::BadArgument)?;
        let value_slot = registry.ensure(kind, name);
        if let Some(id) = self.by_name.get(&(kind, name.to_string())) {
            return Ok(*id);
        }
        let slot = kind as usize;
        self.next[slot] = self.next[slot].wrapping_add(ID_INCREMENT);
        let id = self.next[slot];
        self.by_id.insert(id, value_slot);
        self.by_name.insert((kind, name.to_string()), id);
        Ok(id)
    }

    /// The registry value behind `id`.
    fn lookup<'r>(&self, registry: &'r mut MetricRegistry, id: u32) -> Option<&'r mut MetricValue> {
        registry.value_mut(*self.by_id.get(&id)?)
    }

    pub(crate) fn increment(
        &self,
        registry: &mut MetricRegistry,
        id: u32,
        offset: i64,
    ) -> Result<(), Status> {
        match id & KIND_MASK {
            0 => {
                let value = self.lookup(registry, id).ok_or(Status::NotFound)?;
                if offset <= 0 {
                    return Err(Status::BadArgument);
                }
                if let MetricValue::Counter(v) = value {
                    *v = v.wrapping_add(offset as u64);
                }
                Ok(())
            }
            1 => {
                if let MetricValue::Gauge(v) = self.lookup(registry, id).ok_or(Status::NotFound)? {
                    *v = v.wrapping_add(offset);
                }
                Ok(())
            }
            _ => Err(Status::BadArgument),
        }
    }

    pub(crate) fn record(
        &self,
        registry: &mut MetricRegistry,
        id: u32,
        value: u64,
    ) -> Result<(), Status> {
        match self.lookup(registry, id).ok_or(Status::NotFound)? {
            MetricValue::Counter(v) => *v = v.wrapping_add(value),
            MetricValue::Gauge(v) => *v = value as i64,
            MetricValue::Histogram(values) => values.push(value),
        }
        Ok(())
    }

    pub(crate) fn get(&self, registry: &mut MetricRegistry, id: u32) -> Result<u64, Status> {
        match id & KIND_MASK {
            0 | 1 => match self.lookup(registry, id).ok_or(Status::NotFound)? {
                MetricValue::Counter(v) => Ok(*v),
                MetricValue::Gauge(v) => Ok(*v as u64),
                MetricValue::Histogram(_) => Err(Status::BadArgument),
            },
            _ => Err(Status::BadArgument),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse() {
        let (base, labels) = split_labels("llm_requests_total.model=.=m;.;status=.=;.;");
        assert_eq!(base, "llm_requests_total");
        assert_eq!(
            labels,
            vec![
                ("model".to_string(), "m".to_string()),
                ("status".to_string(), String::new())
            ]
        );
        assert_eq!(split_labels("plain").0, "plain");
        assert_eq!(split_labels("odd.suffix").0, "odd.suffix");
    }

    #[test]
    fn envoy_rules() {
        let mut reg = MetricRegistry::default();
        let mut ids = MetricIds::default();
        let c = ids.define(&mut reg, 0, "c").unwrap_or(0);
        let g = ids.define(&mut reg, 1, "g").unwrap_or(0);
        let h = ids.define(&mut reg, 2, "h").unwrap_or(0);
        assert_eq!((c, g, h), (4, 5, 6));
        assert_eq!(ids.define(&mut reg, 0, "c"), Ok(4));
        assert_eq!(ids.define(&mut reg, 0, "d"), Ok(8));
        assert_eq!(ids.define(&mut reg, 3, "x"), Err(Status::BadArgument));
        assert_eq!(ids.increment(&mut reg, c, 0), Err(Status::BadArgument));
        assert_eq!(ids.increment(&mut reg, c, 2), Ok(()));
        assert_eq!(ids.record(&mut reg, c, 3), Ok(()));
        assert_eq!(ids.get(&mut reg, c), Ok(5));
        assert_eq!(ids.increment(&mut reg, g, -2), Ok(()));
        assert_eq!(ids.get(&mut reg, g), Ok(u64::MAX - 1));
        assert_eq!(ids.increment(&mut reg, h, 1), Err(Status::BadArgument));
        assert_eq!(ids.get(&mut reg, h), Err(Status::BadArgument));
        assert_eq!(ids.record(&mut reg, h, 7), Ok(()));
        assert_eq!(ids.increment(&mut reg, 12, 1), Err(Status::NotFound));
        assert_eq!(ids.record(&mut reg, 99, 1), Err(Status::NotFound));
    }
}
