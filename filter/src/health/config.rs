//! The `health` section of the plugin config (DESIGN §4, §5), validated with field paths.

use crate::config::{ConfigError, Field};
use crate::json_doc::Value;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Vllm,
    Sglang,
    Trtllm,
    Openai,
}

impl Backend {
    /// The config names, as the config and `/health` spell them.
    pub const NAMES: [(&'static str, Backend); 4] = [
        ("vllm", Backend::Vllm),
        ("sglang", Backend::Sglang),
        ("trtllm", Backend::Trtllm),
        ("openai", Backend::Openai),
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, b)| *b == self)
            .map_or("", |(name, _)| name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeMode {
    /// Probe only after `interval` without a successful real response (Dynamo's canary).
    Canary,
    /// Probe every `interval`.
    Always,
}

impl ProbeMode {
    const NAMES: [(&'static str, ProbeMode); 2] =
        [("canary", ProbeMode::Canary), ("always", ProbeMode::Always)];
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

/// The `health` object as written, before validation.
#[derive(Default)]
pub struct RawHealth {
    path: Option<String>,
    live_path: Option<String>,
    targets: Vec<RawTarget>,
}

struct RawTarget {
    name: String,
    cluster: String,
    backend: Backend,
    opt: TargetOptions,
}

/// The fields with a default (`null` is absent).
#[derive(Default)]
struct TargetOptions {
    authority: Option<String>,
    host: Option<String>,
    model: Option<String>,
    payload: Option<Value>,
    interval: Option<String>,
    timeout: Option<String>,
    healthy_threshold: Option<u32>,
    unhealthy_threshold: Option<u32>,
    mode: Option<ProbeMode>,
    bos_token_id: Option<u64>,
    use_text_input: Option<bool>,
    prefill: Option<bool>,
}

impl RawHealth {
    const FIELDS: &'static [&'static str] = &["path", "live_path", "targets"];

    pub(crate) fn read(health: Field) -> Result<RawHealth, ConfigError> {
        let mut raw = RawHealth::default();
        for field in health.fields(Self::FIELDS)? {
            let (name, f) = field?;
            match name {
                // Left out, the list is empty; `null` is a type error (as it always was).
                "targets" => {
                    raw.targets = f
                        .elements()?
                        .into_iter()
                        .map(RawTarget::read)
                        .collect::<Result<_, _>>()?
                }
                "path" => raw.path = f.non_null().map(Field::string).transpose()?,
                "live_path" => raw.live_path = f.non_null().map(Field::string).transpose()?,
                _ => {}
            }
        }
        Ok(raw)
    }
}

impl RawTarget {
    const FIELDS: &'static [&'static str] = &[
        "name",
        "cluster",
        "authority",
        "host",
        "backend",
        "model",
        "payload",
        "interval",
        "timeout",
        "healthy_threshold",
        "unhealthy_threshold",
        "mode",
        "bos_token_id",
        "use_text_input",
        "prefill",
    ];

    fn read(target: Field) -> Result<RawTarget, ConfigError> {
        let mut fields = target.fields(Self::FIELDS)?;
        let (mut name, mut cluster, mut backend) = (None, None, None);
        let mut opt = TargetOptions::default();
        for field in fields.by_ref() {
            let (field_name, f) = field?;
            match field_name {
                "name" => name = Some(f.string()?),
                "cluster" => cluster = Some(f.string()?),
                "backend" => backend = Some(f.variant(&Backend::NAMES)?),
                _ => opt.set(field_name, f)?,
            }
        }
        Ok(RawTarget {
            name: name.ok_or_else(|| fields.missing("name"))?,
            cluster: cluster.ok_or_else(|| fields.missing("cluster"))?,
            backend: backend.ok_or_else(|| fields.missing("backend"))?,
            opt,
        })
    }
}

impl TargetOptions {
    fn set(&mut self, name: &str, f: Field) -> Result<(), ConfigError> {
        let Some(f) = f.non_null() else {
            return Ok(());
        };
        match name {
            "authority" => self.authority = Some(f.string()?),
            "host" => self.host = Some(f.string()?),
            "model" => self.model = Some(f.string()?),
            "payload" => self.payload = Some(f.value),
            "interval" => self.interval = Some(f.string()?),
            "timeout" => self.timeout = Some(f.string()?),
            "healthy_threshold" => self.healthy_threshold = Some(f.u32()?),
            "unhealthy_threshold" => self.unhealthy_threshold = Some(f.u32()?),
            "mode" => self.mode = Some(f.variant(&ProbeMode::NAMES)?),
            "bos_token_id" => self.bos_token_id = Some(f.u64()?),
            "use_text_input" => self.use_text_input = Some(f.bool()?),
            "prefill" => self.prefill = Some(f.bool()?),
            _ => {}
        }
        Ok(())
    }
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
    let RawTarget {
        name,
        cluster,
        backend,
        opt,
    } = t;

    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if !name_ok {
        return Err(err(
            "name",
            format!("{name:?} must be 1-64 characters of [A-Za-z0-9_.:-]"),
        ));
    }
    if cluster.is_empty() {
        return Err(err("cluster", "must not be empty".into()));
    }
    if let Some(h) = &opt.host {
        if h.parse::<SocketAddr>().is_err() {
            return Err(err("host", format!("{h:?} is not an ip:port")));
        }
    }
    if let Some(a) = &opt.authority {
        if a.is_empty() || a.contains(char::is_whitespace) {
            return Err(err("authority", format!("{a:?} is not a valid authority")));
        }
    }
    if opt.model.as_deref() == Some("") {
        return Err(err(
            "model",
            "must not be empty (leave it out to discover it)".into(),
        ));
    }
    let payload = match opt.payload {
        None => None,
        // Sent as serde_json wrote it before: keys sorted, as its map keeps them.
        Some(mut v @ Value::Object(_)) => {
            v.sort_keys();
            Some(v.to_json())
        }
        Some(_) => return Err(err("payload", "must be a JSON object".into())),
    };
    let interval_ms = match &opt.interval {
        None => DEFAULT_INTERVAL_MS,
        Some(s) => parse_duration_ms(s).map_err(|r| err("interval", r))?,
    };
    let timeout_ms = match &opt.timeout {
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
    let healthy_threshold = threshold("healthy_threshold", opt.healthy_threshold, 1)?;
    let unhealthy_threshold = threshold("unhealthy_threshold", opt.unhealthy_threshold, 2)?;
    let prefill = opt.prefill.unwrap_or(false);
    if prefill && backend == Backend::Openai {
        return Err(err(
            "prefill",
            "the openai backend has no prefill-only request; use vllm, sglang or trtllm".into(),
        ));
    }
    Ok(TargetConfig {
        name,
        cluster,
        authority: opt.authority,
        host: opt.host,
        backend,
        model: opt.model,
        payload,
        interval_ms,
        timeout_ms,
        healthy_threshold,
        unhealthy_threshold,
        mode: opt.mode.unwrap_or(ProbeMode::Canary),
        bos_token_id: opt.bos_token_id.unwrap_or(DEFAULT_BOS_TOKEN_ID),
        use_text_input: opt.use_text_input.unwrap_or(false),
        prefill,
    })
}

/// Longest duration accepted: 24h.
const MAX_DURATION_MS: u64 = 86_400_000;

/// `250ms`, `10s`, `1.5s`, `1m`, `1h` -> milliseconds, rounded half up. A unit is required, as
/// in Envoy and Istio YAML. Decimal arithmetic, no floating point: `0.0045s` is 5ms.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?} needs a unit (ms, s, m or h)"))?;
    let (number, unit) = s.split_at(split);
    let scale: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "{s:?} has an unknown unit {unit:?} (use ms, s, m or h)"
            ))
        }
    };
    // Digits, at most one `.`, and a digit somewhere (`5.` and `.5` are numbers).
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) {
        return Err(format!("{s:?} is not a number with a unit"));
    }
    let out_of_range = || format!("{s:?} is out of range (at most 24h)");
    let whole = whole.bytes().try_fold(0u64, |n, d| {
        n.checked_mul(10)?
            .checked_add(u64::from(d.saturating_sub(b'0')))
    });
    let ms = whole
        .and_then(|n| n.checked_mul(scale))
        .and_then(|n| n.checked_add(fraction_times(fraction, scale)))
        .filter(|&ms| ms <= MAX_DURATION_MS)
        .ok_or_else(out_of_range)?;
    Ok(ms)
}

/// `0.<digits> * scale`, rounded half up: long multiplication from the last digit, exact for
/// any number of digits (`scale` is small, so nothing overflows).
fn fraction_times(digits: &str, scale: u64) -> u64 {
    let (mut carry, mut first_decimal) = (0u64, 0u64);
    for d in digits.bytes().rev() {
        let v = u64::from(d.saturating_sub(b'0')) * scale + carry;
        first_decimal = v % 10;
        carry = v / 10;
    }
    carry + u64::from(first_decimal >= 5)
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

    /// Decimal arithmetic where `f64` was: the same results, exact at every length.
    #[test]
    fn durations_without_floating_point() {
        for (input, ms) in [
            (" 100ms ", 100),
            ("0.5ms", 1),
            ("0.49ms", 0),
            ("0.4999999999999999999999999ms", 0),
            ("0.5000000000000000000000001ms", 1),
            ("1.0005s", 1_001),
            ("0.0045s", 5),
            ("0.0044999s", 4),
            (".5s", 500),
            ("5.s", 5_000),
            ("0.25m", 15_000),
            ("1.5h", 5_400_000),
            ("0.000000000000000000000000000000001h", 0),
            ("0001s", 1_000),
            ("24h", 86_400_000),
            ("1440m", 86_400_000),
            ("86400000ms", 86_400_000),
            ("86400000.4ms", 86_400_000),
        ] {
            assert_eq!(parse_duration_ms(input), Ok(ms), "{input}");
        }
        for (input, reason) in [
            (".s", "not a number"),
            ("1.2.3s", "not a number"),
            ("1..s", "not a number"),
            ("86400000.5ms", "out of range"),
            ("24.000001h", "out of range"),
            ("99999999999999999999999999h", "out of range"),
            ("18446744073709551615ms", "out of range"),
            ("5000000000000h", "out of range"),
            ("1.5", "needs a unit"),
            ("1.5 s", "unknown unit"),
            ("1e3ms", "unknown unit"),
        ] {
            let e = parse_duration_ms(input).unwrap_err();
            assert!(e.contains(reason), "{input}: {e}");
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
