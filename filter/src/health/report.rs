//! The `/health` and `/live` answers (DESIGN §4): Dynamo's shape, extended per target.
//!
//! Written out directly rather than built as a tree, for less wasm: keys in sorted order, as a
//! JSON map holds them, and the bytes serde_json wrote when it built this answer.

use super::prober::TargetView;
use crate::json_doc::{push_opt_str, push_opt_u64, push_str, push_u64};

/// `(status code, JSON body)` for `GET /health`: 200 when every target is ready, else 503.
pub fn health(views: &[TargetView<'_>], uptime_seconds: u64) -> (u32, String) {
    let all_ready = views.iter().all(|v| v.state.healthy);
    // Targets by name, as a JSON map holds them: sorted, and the last of a name wins.
    let mut sorted: Vec<&TargetView<'_>> = Vec::with_capacity(views.len());
    for v in views {
        let at = sorted
            .iter()
            .position(|s| s.config.name > v.config.name)
            .unwrap_or(sorted.len());
        match at.checked_sub(1).and_then(|i| sorted.get_mut(i)) {
            Some(prev) if prev.config.name == v.config.name => *prev = v,
            _ => sorted.insert(at, v),
        }
    }
    let mut out = String::with_capacity(64 + 320 * sorted.len());
    out.push_str("{\"status\":");
    push_str(&mut out, ready(all_ready));
    out.push_str(",\"targets\":{");
    for (i, v) in sorted.iter().enumerate() {
        let (c, s) = (v.config, &v.state);
        if i > 0 {
            out.push(',');
        }
        push_str(&mut out, &c.name);
        out.push_str(":{\"backend\":");
        push_str(&mut out, c.backend.name());
        out.push_str(",\"cluster\":");
        push_str(&mut out, &c.cluster);
        out.push_str(",\"consecutive_failures\":");
        push_u64(&mut out, u64::from(s.consecutive_failures));
        out.push_str(",\"consecutive_successes\":");
        push_u64(&mut out, u64::from(s.consecutive_successes));
        out.push_str(",\"host\":");
        push_opt_str(&mut out, c.host.as_deref());
        out.push_str(",\"last_error\":");
        push_opt_str(&mut out, s.last_error.as_deref());
        out.push_str(",\"last_latency_ms\":");
        match s.last_latency_us {
            Some(us) => push_ms(&mut out, us),
            None => out.push_str("null"),
        }
        out.push_str(",\"last_probe_unix_ms\":");
        push_opt_u64(&mut out, s.last_probe_ms);
        out.push_str(",\"last_success_unix_ms\":");
        push_opt_u64(&mut out, s.last_success_ms);
        out.push_str(",\"model\":");
        push_opt_str(&mut out, c.model.as_deref().or(s.model.as_deref()));
        out.push_str(",\"status\":");
        push_str(&mut out, ready(s.healthy));
        out.push('}');
    }
    out.push_str("},\"uptime_seconds\":");
    push_u64(&mut out, uptime_seconds);
    out.push('}');
    (if all_ready { 200 } else { 503 }, out)
}

/// `GET /live`: the filter runs.
pub fn live(uptime_seconds: u64) -> (u32, String) {
    let mut out = String::from("{\"status\":\"live\",\"uptime_seconds\":");
    push_u64(&mut out, uptime_seconds);
    out.push('}');
    (200, out)
}

fn ready(healthy: bool) -> &'static str {
    if healthy {
        "ready"
    } else {
        "notready"
    }
}

/// Microseconds as milliseconds with up to three decimals, as serde_json wrote the `f64`
/// `us / 1000.0` (`12.345`, `12.0`, `0.005`), without floating point.
fn push_ms(out: &mut String, us: u64) {
    push_u64(out, us / 1000);
    out.push('.');
    let mut frac = us % 1000;
    if frac == 0 {
        out.push('0');
        return;
    }
    let mut width = 3;
    while frac % 10 == 0 {
        frac /= 10;
        width -= 1;
    }
    let mut digits = String::new();
    push_u64(&mut digits, frac);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(&digits);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::health::state::TargetState;
    use serde_json::Value;

    #[test]
    fn latency_as_serde_json_wrote_it() {
        let ms = |us: u64| {
            let mut out = String::new();
            push_ms(&mut out, us);
            out
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
        // The old `f64` path, wherever it was exact (below 2^53 / 1000 ms).
        let mut us = 1;
        while us < 1 << 50 {
            for n in [us, us + 1, us * 7 + 3, us * 999 / 1000] {
                let old = serde_json::to_string(&(n as f64 / 1000.0)).unwrap();
                assert_eq!(ms(n), old, "{n}");
            }
            us = us * 3 + 1;
        }
        for n in 0..20_000 {
            let old = serde_json::to_string(&(n as f64 / 1000.0)).unwrap();
            assert_eq!(ms(n), old, "{n}");
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
