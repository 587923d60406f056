//! Probes each target on a timer with one real inference (docs/design.md, "Health probes"). Every
//! Envoy worker thread's VM ticks; a compare-and-swap lease in shared data elects exactly one of
//! them per target and interval, and the result it writes is what every thread then reports.

use super::answer::{self, AnswerScan};
use super::payload::{self, ProbeRequest};
use super::state::{Lease, TargetState, Verdict};
use crate::config::health::{Expect, ProbeMode, TargetConfig, DEFAULT_MAX_ANSWER_BYTES};
use crate::host::{Host, HostError, MetricKind};
use crate::metrics::encode_stat_name;
use crate::shared::{self, Cas, Step};
use hashbrown::HashMap;

/// A lease outlives its calls by this much, so a VM that vanished mid-probe only delays the
/// next probe.
const LEASE_SLACK_MS: u64 = 1_000;
/// Answers are copied into the VM this much at a time: the scanner keeps nothing of a chunk.
const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    Discovery,
    Probe,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    target: usize,
    lease_id: u64,
    kind: CallKind,
    /// When the whole probe started (unix ms): the schedule's anchor.
    probe_started_ms: u64,
    /// When this call started (ns): the probe's latency.
    call_started_ns: u64,
}

/// The metric ids of one target, defined once.
#[derive(Debug, Clone, Copy, Default)]
struct TargetMetrics {
    success: Option<u32>,
    failure: Option<u32>,
    timeout: Option<u32>,
    duration: Option<u32>,
    status: Option<u32>,
}

pub struct Prober {
    prefix: String,
    targets: Vec<TargetConfig>,
    metrics: Vec<TargetMetrics>,
    inflight: HashMap<u32, InFlight>,
    /// Distinguishes this VM's leases from other VMs'.
    nonce: u64,
    seq: u64,
    /// Per target: when this VM last wrote a real-traffic success (throttles the writes).
    real_success_written_ms: Vec<u64>,
    warned: bool,
    /// Probe answers longer than this are a failure, never read; of a model list, no more
    /// than this is read.
    max_answer_bytes: usize,
    /// Errors may quote the worker's own words (bounded): `health.details`.
    keep_worker_text: bool,
}

/// A target's config and state, as `/health` reports it.
pub struct TargetView<'a> {
    pub config: &'a TargetConfig,
    pub state: TargetState,
}

impl Prober {
    pub fn new(prefix: &str, targets: Vec<TargetConfig>, nonce: u64) -> Prober {
        let n = targets.len();
        Prober {
            prefix: prefix.to_string(),
            targets,
            metrics: vec![TargetMetrics::default(); n],
            inflight: HashMap::new(),
            nonce,
            seq: 0,
            real_success_written_ms: vec![0; n],
            warned: false,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            keep_worker_text: false,
        }
    }

    /// The answer cap (`health.max_answer_bytes`) and whether errors may quote the worker
    /// (`health.details`).
    pub fn answers(mut self, max_answer_bytes: usize, keep_worker_text: bool) -> Prober {
        self.max_answer_bytes = max_answer_bytes;
        self.keep_worker_text = keep_worker_text;
        self
    }

    /// The targets, as configured.
    pub fn targets(&self) -> &[TargetConfig] {
        &self.targets
    }

    /// Tick often enough that a probe starts within a tenth of its interval of being due.
    pub fn tick_period_ms(&self) -> Option<u64> {
        let shortest = self.targets.iter().map(|t| t.interval_ms).min()?;
        Some((shortest / 10).clamp(50, 1_000))
    }

    /// Defines the target metrics and publishes the shared status this VM starts with.
    pub fn start(&mut self, host: &dyn Host) {
        for i in 0..self.targets.len() {
            let name = self
                .targets
                .get(i)
                .map(|t| t.name.clone())
                .unwrap_or_default();
            let checks = |result: &str| {
                let n = encode_stat_name(
                    &self.prefix,
                    "health_checks_total",
                    &[("target", &name), ("result", result)],
                );
                host.define_metric(MetricKind::Counter, &n).ok()
            };
            let m = TargetMetrics {
                success: checks("success"),
                failure: checks("failure"),
                timeout: checks("timeout"),
                duration: host
                    .define_metric(
                        MetricKind::Histogram,
                        &encode_stat_name(
                            &self.prefix,
                            "health_check_duration_microseconds",
                            &[("target", &name)],
                        ),
                    )
                    .ok(),
                status: host
                    .define_metric(
                        MetricKind::Gauge,
                        &encode_stat_name(&self.prefix, "health_status", &[("target", &name)]),
                    )
                    .ok(),
            };
            if let Some(slot) = self.metrics.get_mut(i) {
                *slot = m;
            }
            let healthy = self.load(host, i).0.healthy;
            if let Some(id) = m.status {
                host.record_metric(id, u64::from(healthy));
            }
        }
    }

    fn key(&self, i: usize) -> String {
        let name = self.targets.get(i).map(|t| t.name.as_str()).unwrap_or("");
        format!("llm_pulse.health.{}.{name}", self.prefix)
    }

    fn load(&self, host: &dyn Host, i: usize) -> (TargetState, Option<u32>, bool) {
        let (bytes, cas) = host.get_shared_data(&self.key(i));
        let exists = bytes.is_some();
        (
            bytes.map(|b| TargetState::decode(&b)).unwrap_or_default(),
            cas,
            exists,
        )
    }

    pub fn state(&self, host: &dyn Host, i: usize) -> TargetState {
        self.load(host, i).0
    }

    pub fn views(&self, host: &dyn Host) -> Vec<TargetView<'_>> {
        self.targets
            .iter()
            .enumerate()
            .map(|(i, config)| TargetView {
                config,
                state: self.state(host, i),
            })
            .collect()
    }

    fn warn_once(&mut self, host: &dyn Host, msg: &str) {
        if !self.warned {
            self.warned = true;
            host.log_warn(msg);
        }
    }

    /// Starts the probes that are due and whose lease this VM wins.
    pub fn tick(&mut self, host: &dyn Host) {
        for i in 0..self.targets.len() {
            self.tick_target(host, i);
        }
    }

    fn tick_target(&mut self, host: &dyn Host, i: usize) {
        let Some(t) = self.targets.get(i).cloned() else {
            return;
        };
        let now = now_ms(host);
        let (mut state, cas, exists) = self.load(host, i);
        if !exists {
            // Create the record first; leases are only ever taken by a CAS on it.
            let _ = host.set_shared_data(&self.key(i), &state.encode(), None);
            return;
        }
        if state.lease_active(now) {
            return;
        }
        let due = match t.mode {
            ProbeMode::Always => state.next_probe_ms,
            ProbeMode::Canary => state
                .next_probe_ms
                .max(state.last_success_ms.map_or(0, |s| s + t.interval_ms)),
        };
        if now < due {
            return;
        }
        let discover = payload::needs_model(&t) && state.model.is_none();
        let calls = if discover { 2 } else { 1 };
        self.seq += 1;
        let lease = Lease {
            id: self.nonce.wrapping_mul(1_000_003).wrapping_add(self.seq),
            until_ms: now + calls * t.timeout_ms + LEASE_SLACK_MS,
        };
        state.lease = Some(lease);
        state.next_probe_ms = now + t.interval_ms;
        match host.set_shared_data(&self.key(i), &state.encode(), cas) {
            Ok(()) => {}
            Err(HostError::CasMismatch) => return, // another VM took it
            Err(e) => {
                self.warn_once(host, &format!("llm-pulse: health state not writable: {e}"));
                return;
            }
        }
        let (kind, request) = if discover {
            (CallKind::Discovery, payload::models_request())
        } else {
            (
                CallKind::Probe,
                payload::probe_request(&t, state.model.as_deref()),
            )
        };
        self.dispatch(host, i, lease.id, kind, now, &request);
    }

    fn dispatch(
        &mut self,
        host: &dyn Host,
        i: usize,
        lease_id: u64,
        kind: CallKind,
        probe_started_ms: u64,
        request: &ProbeRequest,
    ) {
        let Some(t) = self.targets.get(i) else {
            return;
        };
        let authority = t.authority.clone().unwrap_or_else(|| t.cluster.clone());
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", request.method),
            (":path", request.path),
            (":authority", &authority),
            ("user-agent", "llm-pulse-health-probe"),
        ];
        if request.body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        if let Some(h) = &t.host {
            // Routes the call to this one worker through an ORIGINAL_DST cluster.
            headers.push(("x-envoy-original-dst-host", h));
        }
        let body = request.body.as_deref().map(str::as_bytes);
        let cluster = t.cluster.clone();
        let timeout_ms = t.timeout_ms;
        let call_started_ns = host.now_ns();
        match host.dispatch_http_call(&cluster, &headers, body, timeout_ms) {
            Ok(token) => {
                self.inflight.insert(
                    token,
                    InFlight {
                        target: i,
                        lease_id,
                        kind,
                        probe_started_ms,
                        call_started_ns,
                    },
                );
            }
            Err(e) => {
                let verdict = Verdict::Failure(format!("cannot call cluster {cluster:?}: {e}"));
                self.finish(host, i, lease_id, probe_started_ms, verdict, 0);
            }
        }
    }

    /// An HTTP call came back. `status` is `None` when Envoy reports a failure (timeout,
    /// reset, connection refused) instead of an answer. The body (`body_size` bytes) is read
    /// through [`Host::call_response_body`] only when it is judged: a 2xx within the cap.
    pub fn on_http_call_response(
        &mut self,
        host: &dyn Host,
        token: u32,
        status: Option<u32>,
        body_size: usize,
    ) {
        let Some(call) = self.inflight.remove(&token) else {
            return;
        };
        let Some(t) = self.targets.get(call.target).cloned() else {
            return;
        };
        let elapsed_ns = host.now_ns().saturating_sub(call.call_started_ns);
        let timed_out = elapsed_ns >= t.timeout_ms * 1_000_000 * 95 / 100;
        // Envoy ends a call that hit its timeout with its own 504 ("upstream request
        // timeout"); a call that failed otherwise (refused, reset, or an answer over Envoy's
        // own callout buffer, `http.async_response_buffer_limit`) comes back without
        // headers. A worker's own quick 504 is an answer, not a timeout.
        let status = match status {
            Some(504) if timed_out => None,
            other => other,
        };
        let judged: Result<Option<String>, String> = match status {
            None if timed_out => {
                self.finish_call(host, &call, Verdict::Timeout, elapsed_ns);
                return;
            }
            None => Err(
                "no answer: connection refused or reset, or an answer over Envoy's callout buffer (http.async_response_buffer_limit)"
                    .to_string(),
            ),
            Some(s) if !(200..300).contains(&s) => {
                let start = self
                    .keep_worker_text
                    .then(|| host.call_response_body(0, answer::WORKER_TEXT_BYTES.min(body_size)));
                Err(answer::bad_status(s, start.as_deref()))
            }
            // The answer's status is all this target asks of it: its body is not read.
            Some(_) if call.kind == CallKind::Probe && t.expect == Expect::Any2xx => Ok(None),
            Some(_) if call.kind == CallKind::Probe && body_size > self.max_answer_bytes => {
                Err(answer::too_large(body_size, self.max_answer_bytes))
            }
            Some(_) => match call.kind {
                CallKind::Discovery => {
                    // Only the first id is needed, and a worker serving many LoRA adapters
                    // lists them all (1,800 make ~150 KB): read until the id, within the cap.
                    let read = body_size.min(self.max_answer_bytes);
                    let scan = read_answer(host, read, AnswerScan::models());
                    scan.model(read, body_size).map(Some)
                }
                CallKind::Probe => {
                    let scan = read_answer(
                        host,
                        body_size,
                        AnswerScan::probe(t.backend, t.expect, self.keep_worker_text),
                    );
                    scan.probe_verdict().map(|()| None)
                }
            },
        };
        let verdict = match (call.kind, judged) {
            (CallKind::Discovery, Ok(Some(model))) => {
                self.remember_model(host, call.target, &model);
                let request = payload::probe_request(&t, Some(&model));
                self.dispatch(
                    host,
                    call.target,
                    call.lease_id,
                    CallKind::Probe,
                    call.probe_started_ms,
                    &request,
                );
                return;
            }
            (CallKind::Discovery, Err(e)) => Verdict::Failure(format!(
                "model discovery (GET {}): {e}",
                payload::MODELS_PATH
            )),
            (_, Err(e)) => Verdict::Failure(e),
            (_, Ok(_)) => Verdict::Success,
        };
        self.finish_call(host, &call, verdict, elapsed_ns);
    }

    fn finish_call(&mut self, host: &dyn Host, call: &InFlight, verdict: Verdict, elapsed_ns: u64) {
        self.finish(
            host,
            call.target,
            call.lease_id,
            call.probe_started_ms,
            verdict,
            elapsed_ns / 1_000,
        );
    }

    /// Changes target `i`'s shared state by compare-and-swap, retrying when another VM wrote
    /// in between; returns the state as written (or as last computed, if it could not be).
    fn update(
        &mut self,
        host: &dyn Host,
        i: usize,
        mut change: impl FnMut(&mut TargetState),
    ) -> TargetState {
        let written = shared::update(host, &self.key(i), |current| {
            let mut state = current.map(|b| TargetState::decode(&b)).unwrap_or_default();
            change(&mut state);
            Step::Write(state.encode(), state)
        });
        match written {
            Cas::Done(state) | Cas::Contended(state) => state,
            Cas::Refused(state, e) => {
                self.warn_once(host, &format!("llm-pulse: health state not writable: {e}"));
                state
            }
        }
    }

    fn remember_model(&mut self, host: &dyn Host, i: usize, model: &str) {
        self.update(host, i, |state| state.model = Some(model.to_string()));
    }

    /// Writes a probe's result into the shared state and the metrics.
    fn finish(
        &mut self,
        host: &dyn Host,
        i: usize,
        lease_id: u64,
        probe_started_ms: u64,
        verdict: Verdict,
        latency_us: u64,
    ) {
        let Some(t) = self.targets.get(i).cloned() else {
            return;
        };
        let now = now_ms(host);
        let written = self.update(host, i, |state| {
            state.apply(&verdict, now, t.healthy_threshold, t.unhealthy_threshold);
            state.last_latency_us = Some(latency_us);
            state.last_probe_ms = Some(probe_started_ms);
            if state.lease.is_some_and(|l| l.id == lease_id) {
                state.lease = None;
            }
            if verdict != Verdict::Success && t.model.is_none() {
                // Re-discover: the worker may now serve another model.
                state.model = None;
            }
        });
        let healthy = written.healthy;
        let m = self.metrics.get(i).copied().unwrap_or_default();
        let counter = match verdict {
            Verdict::Success => m.success,
            Verdict::Failure(_) => m.failure,
            Verdict::Timeout => m.timeout,
        };
        if let Some(id) = counter {
            host.increment_metric(id, 1);
        }
        if let Some(id) = m.duration {
            host.record_metric(id, latency_us);
        }
        if let Some(id) = m.status {
            host.record_metric(id, u64::from(healthy));
        }
    }

    /// A real request through Envoy succeeded on `cluster` / upstream `address`: evidence of
    /// health for the targets it matches (by host when a target names one, else by cluster).
    /// Canary probes wait for `interval` of silence after it.
    pub fn on_real_success(&mut self, host: &dyn Host, cluster: &str, address: &str) {
        let now = now_ms(host);
        for i in 0..self.targets.len() {
            let Some(t) = self.targets.get(i) else {
                continue;
            };
            let matches = match &t.host {
                Some(h) => h == address,
                None => t.cluster == cluster,
            };
            if !matches {
                continue;
            }
            let (healthy_threshold, unhealthy_threshold) =
                (t.healthy_threshold, t.unhealthy_threshold);
            // One shared-data write per quarter interval and VM is plenty for scheduling.
            let last = self.real_success_written_ms.get(i).copied().unwrap_or(0);
            if now.saturating_sub(last) < t.interval_ms / 4 {
                continue;
            }
            let healthy = self
                .update(host, i, |state| {
                    state.apply(
                        &Verdict::Success,
                        now,
                        healthy_threshold,
                        unhealthy_threshold,
                    )
                })
                .healthy;
            if let Some(slot) = self.real_success_written_ms.get_mut(i) {
                *slot = now;
            }
            if let Some(id) = self.metrics.get(i).and_then(|m| m.status) {
                host.record_metric(id, u64::from(healthy));
            }
        }
    }
}

/// Feeds the call answer's `size` bytes to `scan`, [`READ_CHUNK`] at a time, stopping early
/// once the verdict cannot change.
fn read_answer(host: &dyn Host, size: usize, mut scan: AnswerScan) -> AnswerScan {
    let mut at = 0;
    while at < size && scan.wants_more() {
        let chunk = host.call_response_body(at, READ_CHUNK.min(size - at));
        if chunk.is_empty() {
            break;
        }
        at += chunk.len();
        scan.feed(&chunk);
    }
    scan
}

fn now_ms(host: &dyn Host) -> u64 {
    host.now_ns() / 1_000_000
}

#[cfg(test)]
mod tests;
