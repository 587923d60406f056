//! One target's health as every Envoy worker thread sees it: kept in proxy-wasm shared data
//! (so all VMs of the `vm_id` read and write the same record), changed by compare-and-swap.

use serde::{Deserialize, Serialize};

/// A probe in flight: who holds the lease, until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: u64,
    pub until_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetState {
    /// Ready: reached `healthy_threshold` successes and not since `unhealthy_threshold`
    /// failures. A target starts not ready until its first success.
    pub healthy: bool,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    pub last_latency_us: Option<u64>,
    pub last_error: Option<String>,
    /// When the last finished probe started (unix ms).
    pub last_probe_ms: Option<u64>,
    /// Last success of a probe or of real traffic (unix ms): canary probes wait for
    /// `interval` of silence after it.
    pub last_success_ms: Option<u64>,
    /// When the next probe may start (unix ms): probes are anchored on start times.
    pub next_probe_ms: u64,
    pub lease: Option<Lease>,
    /// The model discovered through `GET /v1/models`, when the target names none.
    pub model: Option<String>,
}

/// What a probe (or real traffic) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure(String),
    Timeout,
}

impl TargetState {
    pub fn decode(bytes: &[u8]) -> TargetState {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn lease_active(&self, now_ms: u64) -> bool {
        self.lease.is_some_and(|l| l.until_ms > now_ms)
    }

    /// Folds a probe result (or a real success) into the counters and the status.
    pub fn apply(
        &mut self,
        verdict: &Verdict,
        now_ms: u64,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) {
        match verdict {
            Verdict::Success => {
                self.consecutive_successes = self.consecutive_successes.saturating_add(1);
                self.consecutive_failures = 0;
                self.last_success_ms = Some(now_ms);
                if self.consecutive_successes >= healthy_threshold {
                    self.healthy = true;
                }
            }
            Verdict::Failure(_) | Verdict::Timeout => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.consecutive_successes = 0;
                self.last_error = Some(match verdict {
                    Verdict::Failure(e) => e.clone(),
                    _ => "timeout: no answer within the probe timeout".to_string(),
                });
                if self.consecutive_failures >= unhealthy_threshold {
                    self.healthy = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let mut s = TargetState::default();
        assert!(!s.healthy, "not ready until the first success");
        s.apply(&Verdict::Success, 10, 2, 3);
        assert!(!s.healthy, "one of two successes");
        s.apply(&Verdict::Success, 20, 2, 3);
        assert!(s.healthy);
        s.apply(&Verdict::Timeout, 30, 2, 3);
        s.apply(&Verdict::Failure("status 500".into()), 40, 2, 3);
        assert!(s.healthy, "two of three failures");
        s.apply(&Verdict::Success, 50, 2, 3);
        s.apply(&Verdict::Failure("x".into()), 60, 2, 3);
        s.apply(&Verdict::Failure("x".into()), 70, 2, 3);
        assert!(s.healthy, "a success in between resets the count");
        s.apply(&Verdict::Failure("reset".into()), 80, 2, 3);
        assert!(!s.healthy);
        assert_eq!(s.consecutive_failures, 3);
        assert_eq!(s.last_error.as_deref(), Some("reset"));
        assert_eq!(s.last_success_ms, Some(50));
        s.apply(&Verdict::Success, 90, 2, 3);
        assert!(!s.healthy);
        s.apply(&Verdict::Success, 100, 2, 3);
        assert!(s.healthy);
    }

    #[test]
    fn encoding_round_trips_and_garbage_is_a_fresh_state() {
        let s = TargetState {
            healthy: true,
            lease: Some(Lease {
                id: 7,
                until_ms: 99,
            }),
            model: Some("m".into()),
            ..TargetState::default()
        };
        assert_eq!(TargetState::decode(&s.encode()), s);
        assert_eq!(TargetState::decode(b"\xff"), TargetState::default());
        assert!(s.lease_active(98) && !s.lease_active(99));
    }
}
