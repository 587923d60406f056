//! One target's health as every Envoy worker thread sees it: kept in proxy-wasm shared data
//! (so all VMs of the `vm_id` read and write the same record), changed by compare-and-swap.

use super::answer::MAX_MODEL_ID_BYTES;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Longest `last_error` kept (our own text plus, with details on, at most 120 bytes of the
/// worker's); longer text is cut at a character boundary.
pub const MAX_ERROR_BYTES: usize = 256;
/// Longest record a VM reads from shared data: the bounded fields, JSON-escaped, fit in well
/// under half of it. A longer record (a VM of an older build that kept a worker's 5 MB model
/// id, say) reads as a fresh state and is written back bounded.
pub const MAX_RECORD_BYTES: usize = 4096;

/// A probe in flight: who holds the lease, until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: u64,
    pub until_ms: u64,
}

/// Shared data holds this as JSON, one field per member in declaration order; a VM of an
/// older build reads the same record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetState {
    /// Ready: reached `healthy_threshold` successes and not since `unhealthy_threshold`
    /// failures. A target starts not ready until its first success.
    pub healthy: bool,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    #[serde(default)]
    pub last_latency_us: Option<u64>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// When the last finished probe started (unix ms).
    #[serde(default)]
    pub last_probe_ms: Option<u64>,
    /// Last success of a probe or of real traffic (unix ms): canary probes wait for
    /// `interval` of silence after it.
    #[serde(default)]
    pub last_success_ms: Option<u64>,
    /// When the next probe may start (unix ms): probes are anchored on start times.
    pub next_probe_ms: u64,
    #[serde(default, deserialize_with = "optional_object")]
    pub lease: Option<Lease>,
    /// The model discovered through `GET /v1/models`, when the target names none.
    #[serde(default)]
    pub model: Option<String>,
}

/// A record is a JSON object: serde's derive would also take an array of the fields in order.
fn object<T: DeserializeOwned>(v: Value) -> Result<T, serde_json::Error> {
    if !v.is_object() {
        return Err(serde_json::Error::custom("expected a JSON object"));
    }
    serde_json::from_value(v)
}

/// `null` or missing: `None`; an object: the value; anything else: an error.
fn optional_object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => object(v).map(Some).map_err(D::Error::custom),
    }
}

/// What a probe (or real traffic) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure(String),
    Timeout,
}

impl TargetState {
    /// The record as [`TargetState::encode`] wrote it; anything else (garbage, a record of
    /// another shape) is a fresh state, as a target nobody probed yet.
    pub fn decode(bytes: &[u8]) -> TargetState {
        if bytes.len() > MAX_RECORD_BYTES {
            return TargetState::default();
        }
        let mut state: TargetState = serde_json::from_slice(bytes)
            .and_then(object)
            .unwrap_or_default();
        if state
            .model
            .as_ref()
            .is_some_and(|m| m.len() > MAX_MODEL_ID_BYTES)
        {
            state.model = None;
        }
        if state
            .last_error
            .as_ref()
            .is_some_and(|e| e.len() > MAX_ERROR_BYTES)
        {
            state.last_error = state.last_error.map(|e| bounded_error(&e));
        }
        state
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain fields to a Vec cannot fail.
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
                    Verdict::Failure(e) => bounded_error(e),
                    _ => "timeout: no answer within the probe timeout".to_string(),
                });
                if self.consecutive_failures >= unhealthy_threshold {
                    self.healthy = false;
                }
            }
        }
    }
}

/// `e` with control characters as spaces, cut to [`MAX_ERROR_BYTES`] at a character boundary.
pub fn bounded_error(e: &str) -> String {
    let mut out = String::with_capacity(e.len().min(MAX_ERROR_BYTES));
    for c in e.chars() {
        if out.len() + c.len_utf8() > MAX_ERROR_BYTES {
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing a worker sends makes a record grow past its bound.
    #[test]
    fn records_are_bounded() {
        let mut s = TargetState::default();
        s.apply(&Verdict::Failure("é".repeat(10_000)), 1, 1, 1);
        let e = s.last_error.clone().unwrap();
        assert_eq!(e.len(), MAX_ERROR_BYTES);
        assert_eq!(bounded_error("a\nb\u{7}"), "a b ");
        // The largest record: every field at its bound, every byte escaped.
        let worst = TargetState {
            consecutive_successes: u32::MAX,
            consecutive_failures: u32::MAX,
            last_latency_us: Some(u64::MAX),
            last_error: Some("\"".repeat(MAX_ERROR_BYTES)),
            last_probe_ms: Some(u64::MAX),
            last_success_ms: Some(u64::MAX),
            next_probe_ms: u64::MAX,
            lease: Some(Lease {
                id: u64::MAX,
                until_ms: u64::MAX,
            }),
            model: Some("\"".repeat(MAX_MODEL_ID_BYTES)),
            healthy: true,
        };
        let bytes = worst.encode();
        assert!(bytes.len() * 2 < MAX_RECORD_BYTES, "{}", bytes.len());
        assert_eq!(TargetState::decode(&bytes), worst);
        // Records written by someone else: too long, or fields over their bounds.
        let big_model = TargetState {
            model: Some("m".repeat(MAX_MODEL_ID_BYTES + 1)),
            ..TargetState::default()
        };
        assert_eq!(TargetState::decode(&big_model.encode()).model, None);
        let huge = TargetState {
            healthy: true,
            model: Some("m".repeat(5 << 20)),
            ..TargetState::default()
        };
        assert_eq!(TargetState::decode(&huge.encode()), TargetState::default());
        let long_error = TargetState {
            last_error: Some("x".repeat(1_000)),
            ..TargetState::default()
        };
        let e = TargetState::decode(&long_error.encode())
            .last_error
            .unwrap();
        assert_eq!(e.len(), MAX_ERROR_BYTES);
    }

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

    fn full() -> TargetState {
        TargetState {
            healthy: true,
            consecutive_successes: 3,
            consecutive_failures: u32::MAX,
            last_latency_us: Some(12_345),
            last_error: Some("a\"b\n\u{1}é".into()),
            last_probe_ms: Some(5),
            last_success_ms: Some(u64::MAX),
            next_probe_ms: 7,
            lease: Some(Lease { id: 8, until_ms: 9 }),
            model: Some("m".into()),
        }
    }

    /// The bytes serde_json wrote: VMs of the previous build share the record.
    #[test]
    fn encoding_is_the_serde_json_one() {
        let fresh = br#"{"healthy":false,"consecutive_successes":0,"consecutive_failures":0,"last_latency_us":null,"last_error":null,"last_probe_ms":null,"last_success_ms":null,"next_probe_ms":0,"lease":null,"model":null}"#;
        assert_eq!(TargetState::default().encode(), fresh);
        let s = full();
        assert_eq!(
            String::from_utf8(s.encode()).unwrap(),
            r#"{"healthy":true,"consecutive_successes":3,"consecutive_failures":4294967295,"last_latency_us":12345,"last_error":"a\"b\n\u0001é","last_probe_ms":5,"last_success_ms":18446744073709551615,"next_probe_ms":7,"lease":{"id":8,"until_ms":9},"model":"m"}"#
        );
        assert_eq!(TargetState::decode(&s.encode()), s);
    }

    #[test]
    fn other_records_are_a_fresh_state() {
        let fresh = TargetState::default();
        let fine = r#"{"healthy":true,"consecutive_successes":1,"consecutive_failures":0,"next_probe_ms":2,"extra":[1]}"#;
        let s = TargetState::decode(fine.as_bytes());
        assert!(s.healthy && s.lease.is_none() && s.model.is_none(), "{s:?}");
        assert_eq!((s.consecutive_successes, s.next_probe_ms), (1, 2));
        let encoded = String::from_utf8(full().encode()).unwrap();
        for bad in [
            "",
            "null",
            "[]",
            "{}",
            r#"{"healthy":true}"#,
            &encoded.replace(r#""healthy":true"#, r#""healthy":1"#),
            &encoded.replace("4294967295", "4294967296"),
            &encoded.replace("12345", "-1"),
            &encoded.replace("12345", "1.5"),
            &encoded.replace(r#""model":"m""#, r#""model":7"#),
            &encoded.replace(r#""until_ms":9"#, r#""until":9"#),
            &encoded.replace(r#"{"id":8,"until_ms":9}"#, "[8,9]"),
            &format!("{encoded} x"),
        ] {
            assert_eq!(TargetState::decode(bad.as_bytes()), fresh, "{bad}");
        }
        for end in 0..encoded.len() {
            assert_eq!(TargetState::decode(&encoded.as_bytes()[..end]), fresh);
        }
    }
}
