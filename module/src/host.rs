//! [`ModuleHost`]: llm-pulse-core's [`Host`] on Envoy's dynamic-module callbacks. One is made
//! per event hook, scoped to a stream (metrics through the stream, filter state, Envoy's
//! account of the stream's end) or to the filter config (the prober's metrics and callouts).

use crate::ffi::calls::{ConfigHandle, Stream};
use crate::ffi::{
    ATTR_RESPONSE_CODE, ATTR_RESPONSE_CODE_DETAILS, ATTR_RESPONSE_FLAGS, ATTR_UPSTREAM_ADDRESS,
};
use crate::metrics::{Families, SeriesTable};
use crate::shared::SharedData;
use llm_pulse_core::host::{EnvoyEnd, Host, HostError, MetricKind};
use std::cell::RefCell;

/// Filter state keys carry the `.wasm`'s prefix, so one access-log format
/// (`%FILTER_STATE(wasm.llm_pulse.ttft_us:PLAIN)%`) reads both artifacts.
pub const FILTER_STATE_PREFIX: &str = "wasm.";

#[derive(Clone, Copy)]
pub enum Scope {
    Stream(Stream),
    Config(ConfigHandle),
}

pub struct ModuleHost<'a> {
    pub scope: Scope,
    pub families: &'a Families,
    pub series: &'a RefCell<SeriesTable>,
    pub shared: &'a SharedData,
    /// The config, for callouts (also from a stream scope: none are sent from one).
    pub config: ConfigHandle,
    /// The body of the callout answer being delivered, as far as it was copied.
    pub callout_body: &'a [u8],
}

impl ModuleHost<'_> {
    fn update(
        &self,
        id: u32,
        op: impl FnOnce(&crate::metrics::Series) -> (crate::ffi::calls::MetricOp, u64),
    ) {
        if cfg!(feature = "bench-ablate-record") {
            return;
        }
        let Ok(table) = self.series.try_borrow() else {
            return;
        };
        let Some(series) = table.get(id) else {
            return;
        };
        let (op, value) = op(series);
        // A failed update has nobody to report to on the hot path; the metric misses it.
        let _ = series.with_labels(|labels| match self.scope {
            Scope::Stream(s) => s.metric(op, series.envoy_id, labels, value),
            Scope::Config(c) => c.metric(op, series.envoy_id, labels, value),
        });
    }
}

impl Host for ModuleHost<'_> {
    fn now_ns(&self) -> u64 {
        crate::clock::now_ns()
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError> {
        let mut table = self
            .series
            .try_borrow_mut()
            .map_err(|_| HostError::Refused("define_metric", "series table busy".to_string()))?;
        table.define(self.families, kind, name)
    }

    fn increment_metric(&self, id: u32, delta: i64) {
        self.update(id, |s| s.increment(delta));
    }

    fn record_metric(&self, id: u32, value: u64) {
        self.update(id, |s| (s.record(), value));
    }

    fn get_shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.shared.get(key)
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.shared.set(key, value, cas)
    }

    fn set_property(&self, path: &str, value: &[u8]) {
        if cfg!(feature = "bench-ablate-record") {
            return;
        }
        if let Scope::Stream(s) = self.scope {
            let key = format!("{FILTER_STATE_PREFIX}{path}");
            let _ = s.set_filter_state(&key, value);
        }
    }

    fn log_warn(&self, msg: &str) {
        log::warn!("{msg}");
    }

    fn envoy_end(&self) -> EnvoyEnd {
        match self.scope {
            Scope::Stream(s) => EnvoyEnd {
                status: s
                    .attribute_u64(ATTR_RESPONSE_CODE)
                    .and_then(|c| u32::try_from(c).ok())
                    .unwrap_or(0),
                flags: s.attribute_u64(ATTR_RESPONSE_FLAGS).unwrap_or(0),
                details: s
                    .attribute_string(ATTR_RESPONSE_CODE_DETAILS)
                    .map(|d| String::from_utf8_lossy(&d).into_owned())
                    .unwrap_or_default(),
            },
            Scope::Config(_) => EnvoyEnd::default(),
        }
    }

    fn upstream_address(&self) -> Option<Vec<u8>> {
        match self.scope {
            Scope::Stream(s) => s
                .attribute_string(ATTR_UPSTREAM_ADDRESS)
                .filter(|a| !a.is_empty()),
            Scope::Config(_) => None,
        }
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<u32, HostError> {
        let id = self
            .config
            .http_callout(cluster, headers, body, timeout_ms)
            .map_err(|status| {
                HostError::Refused("http_callout", format!("init result {status}"))
            })?;
        u32::try_from(id)
            .map_err(|_| HostError::Refused("http_callout", format!("callout id {id} over u32")))
    }

    fn call_response_body(&self, start: usize, max: usize) -> Vec<u8> {
        let end = start.saturating_add(max).min(self.callout_body.len());
        self.callout_body
            .get(start..end)
            .unwrap_or_default()
            .to_vec()
    }
}
