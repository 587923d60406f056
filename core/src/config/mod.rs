//! Plugin configuration: the JSON Envoy hands the filter (docs/design.md, "Configuration"), parsed
//! and validated.
//!
//! Every error names the field it is about (`metrics_prefix: ...`), because the operator only
//! sees one log line from Envoy when a config is refused. That line quotes at most
//! [`QUOTE_BYTES`] of any value, escaped: Envoy writes it as is, so a 10 MB value would make a
//! 10 MB log line, and a newline in a value a forged one.

mod duration;
pub mod health;

use crate::usage::UsageMode;
pub use duration::parse_duration_ms;
use health::{HealthConfig, RawHealth};
use serde::Deserialize;
use serde_path_to_error::Segment;
use std::fmt::{self, Write as _};

/// Environment variable (passed by Envoy's `vm_config.environment_variables`) that sets the
/// metric prefix when the plugin config does not, as `DYN_METRICS_PREFIX` does for Dynamo.
pub const PREFIX_ENV_VAR: &str = "DYN_METRICS_PREFIX";
pub const DEFAULT_PREFIX: &str = "llm";
pub const DEFAULT_MAX_MODELS: u32 = 32;
/// A stat name per label set is kept by Envoy for its lifetime; far more models than this is
/// a cardinality accident, not a deployment.
pub const MAX_MAX_MODELS: u32 = 1024;
pub const DEFAULT_MAX_WORKERS: u32 = 32;
/// As for models: each worker value is a set of stats Envoy keeps for its lifetime.
pub const MAX_MAX_WORKERS: u32 = 1024;

/// Validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub metrics_prefix: String,
    pub max_models: u32,
    /// Models the operator pins: always labelled by name, outside the `max_models` cap.
    pub models: Vec<String>,
    /// Whether streamed requests are asked for usage the client did not ask for.
    pub usage_stats: UsageMode,
    /// Whether per-request metrics carry the `worker` label (the upstream host that served).
    pub worker_label: bool,
    pub max_workers: u32,
    /// Health probing and the `/health`, `/live` answers; `None` when not configured.
    pub health: Option<HealthConfig>,
}

impl Config {
    /// Health targets that name one worker: (target name, its `ip:port`).
    pub fn named_workers(&self) -> Vec<(String, String)> {
        self.health
            .iter()
            .flat_map(|h| h.targets.iter())
            .filter_map(|t| t.host.as_ref().map(|host| (t.name.clone(), host.clone())))
            .collect()
    }
}

/// A configuration error: the field it concerns (a JSON path such as `max_models`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl ConfigError {
    /// Messages quote values through [`quote`]; the cut here is the last guard, should one not.
    pub(crate) fn new(field: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            field: clip(field, MAX_FIELD_BYTES),
            reason: clip(&reason.into(), MAX_REASON_BYTES),
        }
    }
}

/// Most bytes of one configured value an error message quotes.
pub const QUOTE_BYTES: usize = 128;
/// The longest field path and reason an error keeps (the longest reason serde writes, a list
/// of 15 expected fields plus a quoted value, is about 400 bytes).
const MAX_FIELD_BYTES: usize = 200;
const MAX_REASON_BYTES: usize = 768;

/// `value` as an error message shows it: in double quotes, escaped as `{:?}` escapes (so no
/// control character reaches the log line), at most [`QUOTE_BYTES`] of escaped text; a longer
/// value is cut on a character boundary and followed by `…` and its length in bytes.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(QUOTE_BYTES) + 24);
    out.push('"');
    let shown = push_escaped(&mut out, value, QUOTE_BYTES);
    out.push('"');
    if shown < value.len() {
        let _ = write!(out, "… ({} bytes)", value.len());
    }
    out
}

/// Appends `value` escaped, at most `max` bytes of escaped text; returns how many bytes of
/// `value` that shows.
fn push_escaped(out: &mut String, value: &str, max: usize) -> usize {
    let start = out.len();
    let mut shown = 0;
    for c in value.chars() {
        let before = out.len();
        // `{:?}` of a str leaves `'` alone; char::escape_debug does not.
        if c == '\'' {
            out.push(c);
        } else {
            out.extend(c.escape_debug());
        }
        if out.len() - start > max {
            out.truncate(before);
            break;
        }
        shown += c.len_utf8();
    }
    shown
}

/// `text` with control characters escaped, cut to `max` bytes (`…` and the length).
fn clip(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 24);
    if push_escaped_controls(&mut out, text, max) < text.len() {
        let _ = write!(out, "… ({} bytes)", text.len());
    }
    out
}

/// Like [`push_escaped`], escaping only control characters (our own messages quote with `"`).
fn push_escaped_controls(out: &mut String, text: &str, max: usize) -> usize {
    let start = out.len();
    let mut shown = 0;
    for c in text.chars() {
        let before = out.len();
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
        if out.len() - start > max {
            out.truncate(before);
            break;
        }
        shown += c.len_utf8();
    }
    shown
}

/// A config key as a field name: as written when it is a plain short name, else quoted.
fn key_name(key: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '"' | '`'));
    if plain {
        key.to_string()
    } else {
        quote(key)
    }
}

/// serde_path_to_error's path (`health.targets[0].name`), with each key through [`key_name`]:
/// an unknown key is in the path, and it is the config's own text.
fn path_name(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => {
                let _ = write!(out, "[{index}]");
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&key_name(key));
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// A serde message with every value it quotes bounded: serde writes a string value as
/// `string "<value>"` (escaped) and a key or variant as `` `<name>` `` (not escaped), whole.
fn bound_serde_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(MAX_REASON_BYTES));
    let mut rest = msg;
    while let Some(c) = rest.chars().next() {
        let after = rest.get(c.len_utf8()..).unwrap_or("");
        match c {
            '"' => {
                // serde's escaped text: ends at the first `"` not escaped by `\`.
                let mut end = after.len();
                let mut escaped = false;
                for (i, b) in after.bytes().enumerate() {
                    match b {
                        _ if escaped => escaped = false,
                        b'\\' => escaped = true,
                        b'"' => {
                            end = i;
                            break;
                        }
                        _ => {}
                    }
                }
                let inner = after.get(..end).unwrap_or(after);
                out.push('"');
                let shown = push_escaped_controls(&mut out, inner, QUOTE_BYTES);
                out.push('"');
                if shown < inner.len() {
                    let _ = write!(out, "… ({} bytes)", inner.len());
                }
                rest = after.get(end + 1..).unwrap_or("");
            }
            '`' => {
                let end = after.find('`').unwrap_or(after.len());
                let inner = after.get(..end).unwrap_or(after);
                out.push('`');
                let shown = push_escaped_controls(&mut out, inner, QUOTE_BYTES);
                out.push('`');
                if shown < inner.len() {
                    let _ = write!(out, "… ({} bytes)", inner.len());
                }
                rest = after.get(end + 1..).unwrap_or("");
            }
            c => {
                if c.is_control() {
                    out.extend(c.escape_debug());
                } else {
                    out.push(c);
                }
                rest = after;
            }
        }
        if out.len() > MAX_REASON_BYTES {
            break; // ConfigError::new cuts it
        }
    }
    out
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    metrics_prefix: Option<String>,
    max_models: Option<u32>,
    models: Option<Vec<String>>,
    usage_stats: Option<String>,
    worker_label: Option<bool>,
    max_workers: Option<u32>,
    health: Option<RawHealth>,
}

impl Config {
    /// Parses the plugin configuration. `config` is the bytes of Envoy's `configuration`
    /// (empty means all defaults); `env_prefix` is the value of [`PREFIX_ENV_VAR`], if set.
    pub fn parse(config: &[u8], env_prefix: Option<&str>) -> Result<Config, ConfigError> {
        let raw = parse_raw(config)?;
        let (prefix, prefix_field) = match (&raw.metrics_prefix, env_prefix) {
            (Some(p), _) => (p.as_str(), "metrics_prefix"),
            (None, Some(p)) if !p.is_empty() => (p, PREFIX_ENV_VAR),
            _ => (DEFAULT_PREFIX, "metrics_prefix"),
        };
        validate_prefix(prefix).map_err(|reason| ConfigError::new(prefix_field, reason))?;
        let max_models = raw.max_models.unwrap_or(DEFAULT_MAX_MODELS);
        if max_models == 0 || max_models > MAX_MAX_MODELS {
            return Err(ConfigError::new(
                "max_models",
                format!("must be between 1 and {MAX_MAX_MODELS}, got {max_models}"),
            ));
        }
        let models = raw.models.unwrap_or_default();
        if models.len() > MAX_MAX_MODELS as usize {
            return Err(ConfigError::new(
                "models",
                format!("at most {MAX_MAX_MODELS} models, got {}", models.len()),
            ));
        }
        for (i, m) in models.iter().enumerate() {
            if let Err(reason) = crate::labels::check_pinned_model(m) {
                return Err(ConfigError::new(&format!("models[{i}]"), reason));
            }
        }
        let max_workers = raw.max_workers.unwrap_or(DEFAULT_MAX_WORKERS);
        if max_workers == 0 || max_workers > MAX_MAX_WORKERS {
            return Err(ConfigError::new(
                "max_workers",
                format!("must be between 1 and {MAX_MAX_WORKERS}, got {max_workers}"),
            ));
        }
        let health = raw.health.map(HealthConfig::validate).transpose()?;
        Ok(Config {
            metrics_prefix: prefix.to_string(),
            max_models,
            models,
            worker_label: raw.worker_label.unwrap_or(false),
            max_workers,
            usage_stats: match raw.usage_stats.as_deref() {
                None => UsageMode::default(),
                Some(name) => UsageMode::from_name(name).ok_or_else(|| {
                    let shown: String = name.chars().take(32).collect();
                    ConfigError::new(
                        "usage_stats",
                        format!(r#"must be "final", "continuous" or "off", got {shown:?}"#),
                    )
                })?,
            },
            health,
        })
    }
}

fn parse_raw(config: &[u8]) -> Result<RawConfig, ConfigError> {
    if config.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(RawConfig::default());
    }
    // serde would accept `[...]` as a struct in field order; a config is an object.
    if config.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ConfigError::new("(config)", "must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(config);
    let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = path_name(e.path());
        // An empty key at the root (`{"":1}`) is a path of one empty name.
        let at_root = path.is_empty() || path == "?" || path == r#""""#;
        let msg = e.into_inner().to_string();
        // Below the root the path names the field (an unknown one included); at the root
        // serde's message does.
        let field = match (at_root, unknown_field_name(&msg)) {
            (true, Some(name)) => key_name(name),
            (true, None) => "(config)".to_string(),
            (false, _) => path,
        };
        ConfigError::new(&field, bound_serde_message(strip_position(&msg)))
    })?;
    de.end().map_err(|e| {
        ConfigError::new(
            "(config)",
            bound_serde_message(strip_position(&e.to_string())),
        )
    })?;
    Ok(raw)
}

/// `unknown field `foo`, expected ...` -> `foo`.
fn unknown_field_name(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("unknown field `")?;
    // The name may itself hold a backquote: its end is where serde's own text resumes.
    let end = rest
        .rfind("`, expected")
        .or_else(|| rest.rfind("`, there are no fields"))?;
    // An empty key (`{"":1}`) would name no field at all (found by fuzzing).
    rest.get(..end).filter(|name| !name.is_empty())
}

/// serde_json appends ` at line 1 column 20`; the field name already says where.
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => msg.get(..i).unwrap_or(msg),
        None => msg,
    }
}

/// Prometheus metric names: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn validate_prefix(prefix: &str) -> Result<(), String> {
    let mut bytes = prefix.bytes();
    let first_ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_');
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "{} is not a valid metric prefix (must match [a-zA-Z_][a-zA-Z0-9_]*)",
            quote(prefix)
        ));
    }
    if prefix.len() > 64 {
        return Err(format!("{} is longer than 64 characters", quote(prefix)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> ConfigError {
        Config::parse(json.as_bytes(), None).unwrap_err()
    }

    #[test]
    fn empty_config_gives_defaults() {
        for input in ["", "  \n", "{}"] {
            let c = Config::parse(input.as_bytes(), None).unwrap();
            assert_eq!(c.metrics_prefix, "llm");
            assert_eq!(c.max_models, 32);
            assert_eq!(c.usage_stats, UsageMode::Final);
            assert!(!c.worker_label);
            assert_eq!(c.max_workers, 32);
        }
        let c = Config::parse(br#"{"usage_stats":"continuous"}"#, None).unwrap();
        assert_eq!(c.usage_stats, UsageMode::Continuous);
    }

    #[test]
    fn health_targets_with_a_host_name_workers() {
        let c = Config::parse(
            br#"{"worker_label":true,"max_workers":3,"health":{"targets":[
                {"name":"gpu-0","cluster":"c","backend":"vllm","model":"m","host":"10.0.0.1:8000"},
                {"name":"pool","cluster":"c","backend":"vllm","model":"m"}]}}"#,
            None,
        )
        .unwrap();
        assert!(c.worker_label);
        assert_eq!(c.max_workers, 3);
        assert_eq!(
            c.named_workers(),
            vec![("gpu-0".to_string(), "10.0.0.1:8000".to_string())]
        );
    }

    #[test]
    fn prefix_from_config_beats_env() {
        let c = Config::parse(br#"{"metrics_prefix":"dynamo_frontend"}"#, Some("env_p")).unwrap();
        assert_eq!(c.metrics_prefix, "dynamo_frontend");
        let c = Config::parse(b"{}", Some("env_p")).unwrap();
        assert_eq!(c.metrics_prefix, "env_p");
        let c = Config::parse(b"{}", Some("")).unwrap();
        assert_eq!(c.metrics_prefix, "llm");
    }

    #[test]
    fn every_error_names_its_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                r#"{"metrics_prefix":"9abc"}"#,
                "metrics_prefix",
                "not a valid metric prefix",
            ),
            (
                r#"{"metrics_prefix":"a-b"}"#,
                "metrics_prefix",
                "not a valid metric prefix",
            ),
            (
                r#"{"metrics_prefix":""}"#,
                "metrics_prefix",
                "not a valid metric prefix",
            ),
            (r#"{"metrics_prefix":7}"#, "metrics_prefix", "invalid type"),
            (r#"{"max_models":0}"#, "max_models", "between 1 and"),
            (r#"{"max_models":5000}"#, "max_models", "between 1 and"),
            (r#"{"max_models":-1}"#, "max_models", "invalid value"),
            (r#"{"max_models":"3"}"#, "max_models", "invalid type"),
            (r#"{"max_workers":0}"#, "max_workers", "between 1 and"),
            (r#"{"max_workers":1025}"#, "max_workers", "between 1 and"),
            (r#"{"worker_label":"yes"}"#, "worker_label", "invalid type"),
            (r#"{"colour":"red"}"#, "colour", "unknown field"),
            (
                r#"{"usage_stats":"Final"}"#,
                "usage_stats",
                r#"must be "final", "continuous" or "off", got "Final""#,
            ),
            (r#"{"usage_stats":true}"#, "usage_stats", "invalid type"),
            (
                r#"{"metrics_prefix":"a"} x"#,
                "(config)",
                "trailing characters",
            ),
            (r#"not json"#, "(config)", "must be a JSON object"),
            (r#"[1]"#, "(config)", "must be a JSON object"),
            (r#"{"max_models":3"#, "(config)", "EOF"),
        ];
        for (json, field, reason) in cases {
            let e = err(json);
            assert_eq!(&e.field, field, "{json}: {e}");
            assert!(e.reason.contains(reason), "{json}: {e}");
            assert!(!e.reason.contains(" at line "), "{json}: {e}");
        }
    }

    /// Fuzz finding (fuzz/ target `config`): an empty unknown key gave an empty field name,
    /// so the log line read `invalid plugin configuration: : unknown field ...`.
    #[test]
    fn an_empty_unknown_key_still_names_a_field() {
        for json in [r#"{"":1}"#, r#"{"max_models":1,"":"x"}"#] {
            let e = err(json);
            assert_eq!(e.field, "(config)", "{json}: {e}");
            assert!(e.reason.contains("unknown field"), "{json}: {e}");
        }
        let e = err(r#"{"health":{"":1}}"#);
        assert!(!e.field.is_empty(), "{e}");
    }

    #[test]
    fn bad_env_prefix_names_the_variable() {
        let e = Config::parse(b"{}", Some("bad prefix")).unwrap_err();
        assert_eq!(e.field, "DYN_METRICS_PREFIX");
    }
}

/// A refused value is quoted, never echoed whole (a 10 MB value made a
/// 20 MB log line), and no control character of it reaches the log line.
#[cfg(test)]
mod bounded_echo {
    use super::*;

    /// The longest error line a config may produce, whatever its values.
    const MAX_LINE: usize = 1024;

    fn line(json: &str) -> String {
        let e = Config::parse(json.as_bytes(), None).unwrap_err();
        e.to_string()
    }

    #[test]
    fn every_refused_value_is_quoted_in_bounded_bytes() {
        let big = "x".repeat(1 << 20);
        let big_ctl = format!("\n{}", "y".repeat(1 << 20));
        let t = r#""name":"w","cluster":"c","backend":"vllm""#;
        let health = |fields: &str| format!(r#"{{"health":{{{fields}"targets":[{{{t}}}]}}}}"#);
        let target = |fields: &str| format!(r#"{{"health":{{"targets":[{{{t},{fields}}}]}}}}"#);
        let rows: Vec<String> = vec![
            format!(r#"{{"metrics_prefix":"-{big}"}}"#),
            format!(r#"{{"metrics_prefix":"{big}"}}"#),
            format!(r#"{{"models":["{big}"]}}"#),
            format!(r#"{{"models":["other{big}\u0000"]}}"#),
            format!(r#"{{"max_models":"{big}"}}"#),
            format!(r#"{{"{big}":1}}"#),
            format!(r#"{{"a\nb{big}":1}}"#),
            format!(r#"{{"health":{{"{big}":1}}}}"#),
            health(&format!(r#""serve":"{big}","#)),
            health(&format!(r#""serve":"/{big}","#)),
            health(&format!(r#""path":"{big}","#)),
            health(&format!(r#""path":"/{big}/v1/models","#)),
            health(&format!(r#""path":"/{big}","live_path":"/{big}","#)),
            health(&format!(r#""details":"{big}","#)),
            format!(
                r#"{{"health":{{"targets":[{{"name":"{big}","cluster":"c","backend":"vllm"}}]}}}}"#
            ),
            format!(
                r#"{{"health":{{"targets":[{{"name":"w","cluster":"c","backend":"{big}"}}]}}}}"#
            ),
            format!(
                r#"{{"health":{{"targets":[{{"name":"w","cluster":"c","backend":"a\u0000b{big}"}}]}}}}"#
            ),
            target(&format!(r#""host":"{big}""#)),
            target(&format!(r#""authority":"{big} ""#)),
            target(&format!(r#""cluster2":"{big}""#)),
            target(&format!(r#""{big}":1"#)),
            target(&format!(r#""interval":"{big}""#)),
            target(&format!(r#""interval":"1{big}""#)),
            target(&format!(r#""timeout":"1.{big}s""#)),
            target(&format!(r#""mode":"{big}""#)),
            target(&format!(r#""model":"{big_ctl}""#)),
            target(&format!(r#""payload":"{big}""#)),
            target(&format!(r#""bos_token_id":"{big}""#)),
        ];
        for json in &rows {
            let shown = line(json);
            let head: String = json.chars().take(60).collect();
            assert!(shown.len() <= MAX_LINE, "{head}: {} bytes", shown.len());
            assert!(!shown.contains(char::is_control), "{head}: {shown:?}");
        }
        // The cut says so, with the length of what was cut.
        let shown = line(&health(&format!(r#""serve":"{big}","#)));
        assert!(shown.contains("…"), "{shown}");
        assert!(shown.contains("(1048576 bytes)"), "{shown}");
    }

    #[test]
    fn a_long_env_prefix_is_quoted_too() {
        let e = Config::parse(b"{}", Some(&"-".repeat(1 << 20))).unwrap_err();
        assert_eq!(e.field, PREFIX_ENV_VAR);
        assert!(e.to_string().len() <= MAX_LINE);
    }
}
