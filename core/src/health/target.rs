//! One target's readiness, for a load balancer's health checker (docs/design.md, "Health
//! probes"): a `GET` of `health.target_path` whose `:authority` names a target is answered
//! 200 while that target is ready, 503 while it is not. Envoy's active health checker asks it
//! once per endpoint, with the endpoint's `health_check_config.hostname` as the authority,
//! so a worker whose inference fails leaves the pool although its own `/health` passes.

use super::prober::Prober;
use super::state::TargetState;
use crate::config::health::{Serve, TargetConfig};
use crate::host::Host;
use serde::Serialize;

/// The index of the target `authority` names: its `name`, without case, with or without a
/// port (a name with a `:` must match whole), as `health.serve` matches an authority.
pub fn named_by(targets: &[TargetConfig], authority: &[u8]) -> Option<usize> {
    targets
        .iter()
        .position(|t| Serve::Authority(t.name.to_ascii_lowercase()).serves(authority))
}

#[derive(Serialize)]
struct Answer<'a> {
    consecutive_failures: u32,
    consecutive_successes: u32,
    status: &'static str,
    target: &'a str,
}

/// `(status code, JSON body)` for one target: 200 ready, 503 not ready.
pub fn answer(name: &str, state: &TargetState) -> (u32, String) {
    let body = Answer {
        consecutive_failures: state.consecutive_failures,
        consecutive_successes: state.consecutive_successes,
        status: if state.healthy { "ready" } else { "notready" },
        target: name,
    };
    let json = serde_json::to_string(&body).unwrap_or_else(|_| "{}".to_string());
    (if state.healthy { 200 } else { 503 }, json)
}

/// The answer for a request whose `:authority` is `authority`; `None` when it names no
/// target (the request then passes, as any other).
pub fn answer_for(prober: &Prober, host: &dyn Host, authority: &[u8]) -> Option<(u32, String)> {
    let targets = prober.targets();
    let i = named_by(targets, authority)?;
    let name = targets.get(i)?.name.as_str();
    Some(answer(name, &prober.state(host, i)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::host::fake::FakeHost;

    fn prober() -> Prober {
        let c = Config::parse(
            br#"{"health":{"targets":[{"name":"worker-0","cluster":"c","backend":"vllm"},{"name":"10.0.0.2:8000","cluster":"c","backend":"vllm"}]}}"#,
            None,
        )
        .unwrap();
        Prober::new("llm", c.health.unwrap().targets, 1)
    }

    #[test]
    fn the_authority_names_the_target() {
        let p = prober();
        let t = p.targets();
        for (authority, want) in [
            (&b"worker-0"[..], Some(0)),
            (b"WORKER-0:15000", Some(0)),
            (b"10.0.0.2:8000", Some(1)),
            (b"10.0.0.2", None),
            (b"worker-00", None),
            (b"", None),
        ] {
            assert_eq!(named_by(t, authority), want, "{authority:?}");
        }
    }

    #[test]
    fn ready_is_200_not_ready_503_unknown_passes() {
        let host = FakeHost::default();
        let mut p = prober();
        p.start(&host);
        let (code, body) = answer_for(&p, &host, b"worker-0").unwrap();
        assert_eq!(code, 503, "a target starts not ready: {body}");
        assert_eq!(
            body,
            r#"{"consecutive_failures":0,"consecutive_successes":0,"status":"notready","target":"worker-0"}"#
        );
        let ready = TargetState {
            healthy: true,
            consecutive_successes: 3,
            ..TargetState::default()
        };
        assert_eq!(
            answer("w", &ready),
            (
                200,
                r#"{"consecutive_failures":0,"consecutive_successes":3,"status":"ready","target":"w"}"#
                    .to_string()
            )
        );
        assert_eq!(answer_for(&p, &host, b"someone-else"), None);
    }
}
