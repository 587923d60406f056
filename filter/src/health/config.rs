//! The `health` section of the plugin config (DESIGN §4, §5), validated with field paths.

use crate::config::ConfigError;
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Vllm,
    Sglang,
    Trtllm,
    Openai,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeMode {
    /// Probe only after `interval` without a successful real response (Dynamo's canary).
    Canary,
    /// Probe every `interval`.
    Always,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    pub name: String,
    pub cluster: String,
    /// `:authority` of the probe (default: the cluster name).
    pub authority: Option<String>,
    /// One worker `ip:port`, reached through an ORIGINAL_DST cluster.
    pub host: Option<String>,
    pub backend: Backend,
    pub model: Option<String>,
    /// A replacement request body (JSON), sent as is.
    pub payload: Option<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub mode: ProbeMode,
    pub bos_token_id: u64,
    pub use_text_input: bool,
    /// The prefill-only variant for disaggregated prefill workers.
    pub prefill: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub path: String,
    pub live_path: String,
    pub targets: Vec<TargetConfig>,
}

pub const DEFAULT_INTERVAL_MS: u64 = 10_000;
pub const DEFAULT_TIMEOUT_MS: u64 = 3_000;
/// Dynamo falls back to 1 when the tokenizer has no BOS token.
pub const DEFAULT_BOS_TOKEN_ID: u64 = 1;
const MIN_INTERVAL_MS: u64 = 100;
const MAX_TARGETS: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    path: Option<String>,
    live_path: Option<String>,
    #[serde(default)]
    targets: Vec<RawTarget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    cluster: String,
    authority: Option<String>,
    host: Option<String>,
    backend: Backend,
    model: Option<String>,
    payload: Option<serde_json::Value>,
    interval: Option<String>,
    timeout: Option<String>,
    healthy_threshold: Option<u32>,
    unhealthy_threshold: Option<u32>,
    mode: Option<ProbeMode>,
    bos_token_id: Option<u64>,
    use_text_input: Option<bool>,
    prefill: Option<bool>,
}

impl HealthConfig {
    pub fn validate(raw: RawHealth) -> Result<HealthConfig, ConfigError> {
        let path = endpoint_path("health.path", raw.path, "/health")?;
        let live_path = endpoint_path("health.live_path", raw.live_path, "/live")?;
        if path == live_path {
            return Err(ConfigError::new(
                "health.live_path",
                format!("must differ from health.path ({path})"),
            ));
        }
        if raw.targets.len() > MAX_TARGETS {
            return Err(ConfigError::new(
                "health.targets",
                format!("at most {MAX_TARGETS} targets, got {}", raw.targets.len()),
            ));
        }
        let mut targets: Vec<TargetConfig> = Vec::with_capacity(raw.targets.len());
        for (i, t) in raw.targets.into_iter().enumerate() {
            let target = validate_target(i, t)?;
            if targets.iter().any(|o| o.name == target.name) {
                return Err(ConfigError::new(
                    &format!("health.targets[{i}].name"),
                    format!("duplicate target name {:?}", target.name),
                ));
            }
            targets.push(target);
        }
        Ok(HealthConfig {
            path,
            live_path,
            targets,
        })
    }
}

fn endpoint_path(field: &str, value: Option<String>, default: &str) -> Result<String, ConfigError> {
    let p = value.unwrap_or_else(|| default.to_string());
    if !p.starts_with('/') || p.contains(['?', '#', ' ']) {
        return Err(ConfigError::new(
            field,
            format!("{p:?} must be a path starting with / (no query)"),
        ));
    }
    Ok(p)
}

fn validate_target(i: usize, t: RawTarget) -> Result<TargetConfig, ConfigError> {
    let field = |name: &str| format!("health.targets[{i}].{name}");
    let err = |name: &str, reason: String| ConfigError::new(&field(name), reason);

    let name_ok = !t.name.is_empty()
        && t.name.len() <= 64
        && t.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if !name_ok {
        return Err(err(
            "name",
            format!("{:?} must be 1-64 characters of [A-Za-z0-9_.:-]", t.name),
        ));
    }
    if t.cluster.is_empty() {
        return Err(err("cluster", "must not be empty".into()));
    }
    if let Some(h) = &t.host {
        if h.parse::<SocketAddr>().is_err() {
            return Err(err("host", format!("{h:?} is not an ip:port")));
        }
    }
    if let Some(a) = &t.authority {
        if a.is_empty() || a.contains(char::is_whitespace) {
            return Err(err("authority", format!("{a:?} is not a valid authority")));
        }
    }
    if t.model.as_deref() == Some("") {
        return Err(err(
            "model",
            "must not be empty (leave it out to discover it)".into(),
        ));
    }
    let payload = match t.payload {
        None => None,
        Some(v @ serde_json::Value::Object(_)) => Some(v.to_string()),
        Some(_) => return Err(err("payload", "must be a JSON object".into())),
    };
    let interval_ms = match &t.interval {
        None => DEFAULT_INTERVAL_MS,
        Some(s) => parse_duration_ms(s).map_err(|r| err("interval", r))?,
    };
    let timeout_ms = match &t.timeout {
        None => DEFAULT_TIMEOUT_MS.min(interval_ms),
        Some(s) => parse_duration_ms(s).map_err(|r| err("timeout", r))?,
    };
    if interval_ms < MIN_INTERVAL_MS {
        return Err(err(
            "interval",
            format!("must be at least {MIN_INTERVAL_MS}ms, got {interval_ms}ms"),
        ));
    }
    if timeout_ms == 0 || timeout_ms > interval_ms {
        return Err(err(
            "timeout",
            format!("must be more than 0 and at most the interval ({interval_ms}ms), got {timeout_ms}ms"),
        ));
    }
    let threshold = |name: &str, v: Option<u32>, default: u32| match v.unwrap_or(default) {
        n @ 1..=100 => Ok(n),
        n => Err(err(name, format!("must be between 1 and 100, got {n}"))),
    };
    let healthy_threshold = threshold("healthy_threshold", t.healthy_threshold, 1)?;
    let unhealthy_threshold = threshold("unhealthy_threshold", t.unhealthy_threshold, 2)?;
    let prefill = t.prefill.unwrap_or(false);
    if prefill && t.backend == Backend::Openai {
        return Err(err(
            "prefill",
            "the openai backend has no prefill-only request; use vllm, sglang or trtllm".into(),
        ));
    }
    Ok(TargetConfig {
        name: t.name,
        cluster: t.cluster,
        authority: t.authority,
        host: t.host,
        backend: t.backend,
        model: t.model,
        payload,
        interval_ms,
        timeout_ms,
        healthy_threshold,
        unhealthy_threshold,
        mode: t.mode.unwrap_or(ProbeMode::Canary),
        bos_token_id: t.bos_token_id.unwrap_or(DEFAULT_BOS_TOKEN_ID),
        use_text_input: t.use_text_input.unwrap_or(false),
        prefill,
    })
}

/// `250ms`, `10s`, `1.5s`, `1m`, `1h` -> milliseconds. A unit is required, as in Envoy and
/// Istio YAML.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?} needs a unit (ms, s, m or h)"))?;
    let (number, unit) = s.split_at(split);
    let scale = match unit {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => {
            return Err(format!(
                "{s:?} has an unknown unit {unit:?} (use ms, s, m or h)"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a number with a unit"))?;
    let ms = (value * scale).round();
    if !(0.0..=86_400_000.0).contains(&ms) {
        return Err(format!("{s:?} is out of range (at most 24h)"));
    }
    Ok(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(json: &str) -> Result<Config, ConfigError> {
        Config::parse(json.as_bytes(), None)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("10s"), Ok(10_000));
        assert_eq!(parse_duration_ms("1.5s"), Ok(1_500));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        for bad in ["10", "", "s", "10 sec", "-1s", "1d", "25h"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults() {
        let c =
            parse(r#"{"health":{"targets":[{"name":"w0","cluster":"workers","backend":"vllm"}]}}"#)
                .unwrap();
        let h = c.health.unwrap();
        assert_eq!(
            (h.path.as_str(), h.live_path.as_str()),
            ("/health", "/live")
        );
        let t = &h.targets[0];
        assert_eq!((t.interval_ms, t.timeout_ms), (10_000, 3_000));
        assert_eq!((t.healthy_threshold, t.unhealthy_threshold), (1, 2));
        assert_eq!(t.mode, ProbeMode::Canary);
        assert_eq!(t.bos_token_id, 1);
        assert!(!t.use_text_input && !t.prefill);
        assert_eq!(parse("{}").unwrap().health, None);
    }

    #[test]
    fn every_error_names_its_field() {
        let t = r#""name":"w0","cluster":"c","backend":"vllm""#;
        let cases: Vec<(String, &str, &str)> = vec![
            (format!(r#"{{"health":{{"targets":[{{{t},"interval":"10"}}]}}}}"#), "health.targets[0].interval", "needs a unit"),
            (format!(r#"{{"health":{{"targets":[{{{t},"interval":"50ms"}}]}}}}"#), "health.targets[0].interval", "at least"),
            (format!(r#"{{"health":{{"targets":[{{{t},"interval":"1s","timeout":"2s"}}]}}}}"#), "health.targets[0].timeout", "at most the interval"),
            (format!(r#"{{"health":{{"targets":[{{{t},"healthy_threshold":0}}]}}}}"#), "health.targets[0].healthy_threshold", "between 1 and 100"),
            (format!(r#"{{"health":{{"targets":[{{{t},"unhealthy_threshold":101}}]}}}}"#), "health.targets[0].unhealthy_threshold", "between 1 and 100"),
            (format!(r#"{{"health":{{"targets":[{{{t},"host":"worker-1"}}]}}}}"#), "health.targets[0].host", "ip:port"),
            (format!(r#"{{"health":{{"targets":[{{{t},"payload":[1]}}]}}}}"#), "health.targets[0].payload", "JSON object"),
            (format!(r#"{{"health":{{"targets":[{{{t},"model":""}}]}}}}"#), "health.targets[0].model", "must not be empty"),
            (format!(r#"{{"health":{{"targets":[{{{t},"mode":"sometimes"}}]}}}}"#), "health.targets[0].mode", "unknown variant"),
            (format!(r#"{{"health":{{"targets":[{{{t},"colour":1}}]}}}}"#), "health.targets[0].colour", "unknown field `colour`"),
            (format!(r#"{{"health":{{"targets":[{{{t}}},{{{t}}}]}}}}"#), "health.targets[1].name", "duplicate"),
            (r#"{"health":{"targets":[{"name":"w 0","cluster":"c","backend":"vllm"}]}}"#.into(), "health.targets[0].name", "[A-Za-z0-9_.:-]"),
            (r#"{"health":{"targets":[{"name":"w","cluster":"","backend":"vllm"}]}}"#.into(), "health.targets[0].cluster", "must not be empty"),
            (r#"{"health":{"targets":[{"name":"w","cluster":"c","backend":"tgi"}]}}"#.into(), "health.targets[0].backend", "unknown variant"),
            (r#"{"health":{"targets":[{"name":"w","backend":"vllm"}]}}"#.into(), "health.targets[0]", "missing field `cluster`"),
            (r#"{"health":{"targets":[{"name":"w","cluster":"c","backend":"openai","prefill":true}]}}"#.into(), "health.targets[0].prefill", "no prefill-only"),
            (r#"{"health":{"path":"health"}}"#.into(), "health.path", "starting with /"),
            (r#"{"health":{"path":"/x","live_path":"/x"}}"#.into(), "health.live_path", "must differ"),
        ];
        for (json, field, reason) in cases {
            let e = parse(&json).unwrap_err();
            assert_eq!(e.field, field, "{json}: {e}");
            assert!(e.reason.contains(reason), "{json}: {e}");
        }
    }
}
