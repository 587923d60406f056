//! The `/health` and `/live` answers (DESIGN §4): Dynamo's shape, extended per target.
//!
//! Written out directly rather than built as a `serde_json::Value` tree: the same bytes (keys
//! in sorted order, as serde_json's map writes them; floats through serde_json), for kilobytes
//! less wasm. [`push_str`] and friends are shared with the probe payloads.

use super::config::Backend;
use super::prober::TargetView;
#[cfg(test)]
use serde_json::Value;

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
        push_str(&mut out, backend_name(c.backend));
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
            Some(us) => push_f64(&mut out, us as f64 / 1000.0),
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

/// The backend as configured (its serde name).
fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Vllm => "vllm",
        Backend::Sglang => "sglang",
        Backend::Trtllm => "trtllm",
        Backend::Openai => "openai",
    }
}

/// A JSON string literal, escaped as serde_json escapes it.
pub(crate) fn push_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(s.get(start..i).unwrap_or_default());
        if escape.is_empty() {
            out.push_str("\\u00");
            for nibble in [b >> 4, b & 0xf] {
                out.push(char::from(
                    HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

pub(crate) fn push_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_str(out, s),
        None => out.push_str("null"),
    }
}

pub(crate) fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in digits.get(at..).unwrap_or_default() {
        out.push(char::from(d));
    }
}

fn push_opt_u64(out: &mut String, n: Option<u64>) {
    match n {
        Some(n) => push_u64(out, n),
        None => out.push_str("null"),
    }
}

/// serde_json's float format (shortest round-trip; `null` when not finite).
fn push_f64(out: &mut String, x: f64) {
    match serde_json::to_string(&x) {
        Ok(s) => out.push_str(&s),
        Err(_) => out.push_str("null"),
    }
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
