//! The `/health` and `/live` answers (DESIGN §4): Dynamo's shape, extended per target.

use super::prober::TargetView;
use serde_json::{json, Map, Value};

/// `(status code, JSON body)` for `GET /health`: 200 when every target is ready, else 503.
pub fn health(views: &[TargetView<'_>], uptime_seconds: u64) -> (u32, String) {
    let mut targets = Map::new();
    let mut all_ready = true;
    for v in views {
        let s = &v.state;
        all_ready &= s.healthy;
        targets.insert(
            v.config.name.clone(),
            json!({
                "status": if s.healthy { "ready" } else { "notready" },
                "backend": format!("{:?}", v.config.backend).to_lowercase(),
                "cluster": v.config.cluster,
                "host": v.config.host,
                "model": v.config.model.as_ref().or(s.model.as_ref()),
                "last_latency_ms": s.last_latency_us.map(|us| us as f64 / 1000.0),
                "last_error": s.last_error,
                "last_probe_unix_ms": s.last_probe_ms,
                "last_success_unix_ms": s.last_success_ms,
                "consecutive_failures": s.consecutive_failures,
                "consecutive_successes": s.consecutive_successes,
            }),
        );
    }
    let body = json!({
        "status": if all_ready { "ready" } else { "notready" },
        "uptime_seconds": uptime_seconds,
        "targets": Value::Object(targets),
    });
    (if all_ready { 200 } else { 503 }, body.to_string())
}

/// `GET /live`: the filter runs.
pub fn live(uptime_seconds: u64) -> (u32, String) {
    (
        200,
        json!({"status": "live", "uptime_seconds": uptime_seconds}).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::health::state::TargetState;

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
        let (code, body) = health(&views, 42);
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

        let (code, _) = health(&views[..1], 1);
        assert_eq!(code, 200);
        let (code, body) = health(&[], 1);
        assert_eq!((code, body.contains("\"ready\"")), (200, true));
        assert_eq!(
            live(3),
            (200, r#"{"status":"live","uptime_seconds":3}"#.to_string())
        );
    }
}
