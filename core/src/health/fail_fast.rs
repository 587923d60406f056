//! The opt-in fail-fast answer (`health.fail_fast`, docs/design.md "Health probes"): while a
//! target is not ready, inference requests get a local 503 with `retry-after` instead of
//! reaching a worker whose inference is broken. Callers that cannot health-check actively
//! (Istio sidecars) eject the worker on these 503s (outlier detection) and retry elsewhere,
//! instead of waiting out a timeout on a frozen GPU.

use super::prober::Prober;
use crate::host::Host;
use crate::labels::Endpoint;
use std::cell::Cell;

/// The body of the local answer, in the OpenAI error shape clients already parse.
pub const BODY: &str = r#"{"error":{"code":503,"message":"this worker's inference probe fails (llm-pulse health.fail_fast): try another worker","type":"unavailable"}}"#;

/// Whether to refuse, decided from a readiness read at most one probe tick old: a request
/// costs no shared-data read while the cached answer is fresh.
pub struct FailFast {
    /// `retry-after` in seconds: the shortest probe interval, rounded up (the earliest a
    /// probe can find the worker ready again).
    pub retry_after: String,
    refresh_ns: u64,
    ready: Cell<bool>,
    checked_ns: Cell<Option<u64>>,
}

impl FailFast {
    /// `None` when `health.fail_fast` is off or the prober has no target.
    pub fn new(enabled: bool, prober: &Prober) -> Option<FailFast> {
        if !enabled {
            return None;
        }
        let tick_ms = prober.tick_period_ms()?;
        let interval_ms = prober.targets().iter().map(|t| t.interval_ms).min()?;
        Some(FailFast {
            retry_after: interval_ms.div_ceil(1000).max(1).to_string(),
            refresh_ns: tick_ms * 1_000_000,
            ready: Cell::new(false),
            checked_ns: Cell::new(None),
        })
    }

    /// Whether a request for `path` gets the local 503: an inference path while any target
    /// is not ready. Other paths (`/health`, `/v1/models`, metrics) always pass.
    pub fn refuses(&self, host: &dyn Host, prober: &Prober, path: &[u8]) -> bool {
        if !Endpoint::from_path(path).is_inference() {
            return false;
        }
        let now = host.now_ns();
        let fresh = self
            .checked_ns
            .get()
            .is_some_and(|at| now.saturating_sub(at) < self.refresh_ns);
        if !fresh {
            let ready = (0..prober.targets().len()).all(|i| prober.state(host, i).healthy);
            self.ready.set(ready);
            self.checked_ns.set(Some(now));
        }
        !self.ready.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::health::state::TargetState;
    use crate::host::fake::FakeHost;

    fn prober(interval: &str) -> Prober {
        let json = format!(
            r#"{{"health":{{"fail_fast":true,"targets":[{{"name":"w","cluster":"c","backend":"vllm","interval":"{interval}"}}]}}}}"#
        );
        let c = Config::parse(json.as_bytes(), None).unwrap();
        let h = c.health.unwrap();
        assert!(h.fail_fast);
        Prober::new("llm", h.targets, 1)
    }

    fn set_healthy(host: &FakeHost, healthy: bool) {
        let state = TargetState {
            healthy,
            ..TargetState::default()
        };
        host.set_shared_data("llm_pulse.health.llm.w", &state.encode(), None)
            .unwrap();
    }

    #[test]
    fn off_by_default_and_retry_after_is_the_interval_rounded_up() {
        let p = prober("1500ms");
        assert!(FailFast::new(false, &p).is_none());
        assert_eq!(FailFast::new(true, &p).unwrap().retry_after, "2");
        assert_eq!(
            FailFast::new(true, &prober("200ms")).unwrap().retry_after,
            "1"
        );
    }

    #[test]
    fn inference_is_refused_while_not_ready_read_once_per_tick() {
        let host = FakeHost::default();
        host.clock_ns.set(1_000_000_000);
        let p = prober("1s");
        let ff = FailFast::new(true, &p).unwrap();
        set_healthy(&host, false);
        assert!(ff.refuses(&host, &p, b"/v1/chat/completions"));
        assert!(!ff.refuses(&host, &p, b"/health"), "not an inference path");
        assert!(!ff.refuses(&host, &p, b"/v1/models"));
        set_healthy(&host, true);
        assert!(
            ff.refuses(&host, &p, b"/v1/completions"),
            "within a tick the cached answer stands"
        );
        host.advance_ms(p.tick_period_ms().unwrap());
        assert!(!ff.refuses(&host, &p, b"/v1/completions"));
        assert!(!ff.refuses(&host, &p, b"/generate"));
    }
}
