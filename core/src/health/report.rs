//! The `/health` and `/live` answers (docs/design.md, "Health probes"): Dynamo's shape, extended
//! per target. Internals (the target's cluster, worker address and last error text) are in the body
//! only when the config asks for `details`: `/health` answers whoever reaches the listener.

use super::prober::TargetView;
use crate::config::health::{HealthConfig, Serve};
use serde::Serialize;
use std::collections::BTreeMap;

/// One of the two local answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    Live,
    /// One target's readiness, the target named by the `:authority` (`health.target_path`).
    Target,
}

/// Which requests get a local answer: the paths, and where they are served (`health.serve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub path: String,
    pub live_path: String,
    pub serve: Serve,
    /// `health.target_path`: answered whatever `serve` says, for the authorities that name a
    /// target (see [`super::target`]).
    pub target_path: Option<String>,
}

impl Endpoints {
    pub fn new(h: &HealthConfig) -> Endpoints {
        Endpoints {
            path: h.path.clone(),
            live_path: h.live_path.clone(),
            serve: h.serve.clone(),
            target_path: h.target_path.clone(),
        }
    }

    /// The endpoint a request `:path` (query ignored) names, if any is served at all. The
    /// caller then checks the method and, when [`Serve::needs_authority`], the authority.
    pub fn endpoint(&self, path: &[u8]) -> Option<Endpoint> {
        if self.serve == Serve::Off && self.target_path.is_none() {
            return None;
        }
        let path = path.split(|&b| b == b'?').next().unwrap_or_default();
        if self
            .target_path
            .as_ref()
            .is_some_and(|t| path == t.as_bytes())
        {
            return Some(Endpoint::Target);
        }
        if self.serve == Serve::Off {
            return None;
        }
        if path == self.path.as_bytes() {
            Some(Endpoint::Health)
        } else if path == self.live_path.as_bytes() {
            Some(Endpoint::Live)
        } else {
            None
        }
    }

    /// Whether a request with this method is answered locally (`GET`, `HEAD`).
    pub fn answers_method(method: &[u8]) -> bool {
        method == b"GET" || method == b"HEAD"
    }
}

/// The body of `GET /health`; members in sorted order, as a JSON map writes them.
#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    targets: BTreeMap<&'a str, Target<'a>>,
    uptime_seconds: u64,
}

#[derive(Serialize)]
struct Target<'a> {
    backend: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<&'a str>,
    consecutive_failures: u32,
    consecutive_successes: u32,
    /// `Some(None)` writes `null`: with details on, a target without a host says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<Option<&'a str>>,
    last_latency_ms: Option<f64>,
    last_probe_unix_ms: Option<u64>,
    last_success_unix_ms: Option<u64>,
    model: Option<&'a str>,
    status: &'static str,
}

#[derive(Serialize)]
struct Live {
    status: &'static str,
    uptime_seconds: u64,
}

/// `(status code, JSON body)` for `GET /health`: 200 when every target is ready, else 503.
/// `details` adds each target's cluster, host and last error.
pub fn health(views: &[TargetView<'_>], uptime_seconds: u64, details: bool) -> (u32, String) {
    let all_ready = views.iter().all(|v| v.state.healthy);
    let targets = views
        .iter()
        .map(|v| {
            let (c, s) = (v.config, &v.state);
            let target = Target {
                backend: c.backend.name(),
                cluster: details.then_some(c.cluster.as_str()),
                consecutive_failures: s.consecutive_failures,
                consecutive_successes: s.consecutive_successes,
                host: details.then_some(c.host.as_deref()),
                last_error: details.then_some(s.last_error.as_deref()),
                last_latency_ms: s.last_latency_us.map(|us| us as f64 / 1000.0),
                last_probe_unix_ms: s.last_probe_ms,
                last_success_unix_ms: s.last_success_ms,
                model: c.model.as_deref().or(s.model.as_deref()),
                status: ready(s.healthy),
            };
            (c.name.as_str(), target)
        })
        .collect();
    let body = Health {
        status: ready(all_ready),
        targets,
        uptime_seconds,
    };
    (if all_ready { 200 } else { 503 }, to_json(&body))
}

/// `GET /live`: the filter runs.
pub fn live(uptime_seconds: u64) -> (u32, String) {
    let body = Live {
        status: "live",
        uptime_seconds,
    };
    (200, to_json(&body))
}

/// Serializing these plain structs cannot fail; an empty object stands in if it ever did.
fn to_json(body: &impl Serialize) -> String {
    serde_json::to_string(body).unwrap_or_else(|_| "{}".to_string())
}

fn ready(healthy: bool) -> &'static str {
    if healthy {
        "ready"
    } else {
        "notready"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::health::state::TargetState;
    use serde_json::Value;

    #[test]
    fn endpoints_by_path_and_serve() {
        let c = Config::parse(
            br#"{"health":{"serve":"off","targets":[{"name":"a","cluster":"c","backend":"vllm"}]}}"#,
            None,
        )
        .unwrap();
        let mut e = Endpoints::new(&c.health.unwrap());
        assert_eq!(e.endpoint(b"/health"), None, "off: the paths pass");
        e.serve = Serve::All;
        assert_eq!(e.endpoint(b"/health?x=1"), Some(Endpoint::Health));
        assert_eq!(e.endpoint(b"/live"), Some(Endpoint::Live));
        assert_eq!(e.endpoint(b"/healthz"), None);
        assert!(Endpoints::answers_method(b"HEAD") && !Endpoints::answers_method(b"POST"));
        e.serve = Serve::Off;
        e.target_path = Some("/llm-pulse/target".into());
        assert_eq!(
            e.endpoint(b"/llm-pulse/target?x"),
            Some(Endpoint::Target),
            "served whatever serve says"
        );
        assert_eq!(e.endpoint(b"/llm-pulse/target/x"), None);
    }

    /// The latency as `/health` writes it: milliseconds with up to three decimals.
    #[test]
    fn latency_in_milliseconds() {
        let c = Config::parse(
            br#"{"health":{"targets":[{"name":"a","cluster":"c","backend":"vllm"}]}}"#,
            None,
        )
        .unwrap();
        let targets = c.health.unwrap().targets;
        let ms = |us: u64| {
            let view = TargetView {
                config: &targets[0],
                state: TargetState {
                    last_latency_us: Some(us),
                    ..TargetState::default()
                },
            };
            let (_, body) = health(&[view], 0, false);
            let v: Value = serde_json::from_str(&body).unwrap();
            v["targets"]["a"]["last_latency_ms"].to_string()
        };
        for (us, want) in [
            (12_345, "12.345"),
            (12_000, "12.0"),
            (5, "0.005"),
            (120, "0.12"),
            (0, "0.0"),
            (1_000, "1.0"),
            (1_001, "1.001"),
            (1_010, "1.01"),
            (86_400_000_000, "86400000.0"),
        ] {
            assert_eq!(ms(us), want, "{us}");
        }
    }

    #[test]
    fn shapes() {
        let c = Config::parse(
            br#"{"health":{"targets":[{"name":"a","cluster":"c","backend":"vllm","host":"10.0.0.1:8000"},{"name":"b","cluster":"c","backend":"sglang","model":"m"}]}}"#,
            None,
        )
        .unwrap();
        let targets = c.health.unwrap().targets;
        let a = TargetState {
            healthy: true,
            last_latency_us: Some(12_345),
            last_probe_ms: Some(1_700_000_000_000),
            model: Some("disc".into()),
            ..TargetState::default()
        };
        let b = TargetState {
            consecutive_failures: 2,
            last_error: Some("timeout".into()),
            ..TargetState::default()
        };
        let views = vec![
            TargetView {
                config: &targets[0],
                state: a,
            },
            TargetView {
                config: &targets[1],
                state: b,
            },
        ];
        let (code, body) = health(&views, 42, true);
        assert_eq!(code, 503);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "notready");
        assert_eq!(v["uptime_seconds"], 42);
        assert_eq!(v["targets"]["a"]["status"], "ready");
        assert_eq!(v["targets"]["a"]["last_latency_ms"], 12.345);
        assert_eq!(v["targets"]["a"]["model"], "disc");
        assert_eq!(v["targets"]["a"]["host"], "10.0.0.1:8000");
        assert_eq!(v["targets"]["a"]["backend"], "vllm");
        assert_eq!(v["targets"]["b"]["status"], "notready");
        assert_eq!(v["targets"]["b"]["model"], "m");
        assert_eq!(v["targets"]["b"]["last_error"], "timeout");
        assert_eq!(v["targets"]["b"]["consecutive_failures"], 2);
        assert!(v["targets"]["b"]["last_probe_unix_ms"].is_null());

        let (code, _) = health(&views[..1], 1, true);
        assert_eq!(code, 200);
        let (code, body) = health(&[], 1, true);
        assert_eq!((code, body.contains("\"ready\"")), (200, true));
        assert_eq!(
            live(3),
            (200, r#"{"status":"live","uptime_seconds":3}"#.to_string())
        );

        // Without details: no cluster, worker address or error text, the rest unchanged.
        let (code, body) = health(&views, 42, false);
        assert_eq!(code, 503);
        let v: Value = serde_json::from_str(&body).unwrap();
        for t in ["a", "b"] {
            let target = v["targets"][t].as_object().unwrap();
            for hidden in ["cluster", "host", "last_error"] {
                assert!(!target.contains_key(hidden), "{t}.{hidden} in {body}");
            }
        }
        assert!(
            !body.contains("10.0.0.1") && !body.contains("timeout"),
            "{body}"
        );
        assert_eq!(v["targets"]["b"]["consecutive_failures"], 2);
        assert_eq!(v["targets"]["a"]["last_latency_ms"], 12.345);
        assert_eq!(v["targets"]["b"]["status"], "notready");
    }
}
