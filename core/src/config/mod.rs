//! Plugin configuration: the JSON Envoy hands the filter (DESIGN §5), parsed and validated.
//!
//! Every error names the field it is about (`metrics_prefix: ...`), because the operator only
//! sees one log line from Envoy when a config is refused.

mod duration;
pub mod health;

use crate::usage::UsageMode;
pub use duration::parse_duration_ms;
use health::{HealthConfig, RawHealth};
use serde::Deserialize;
use std::fmt;

/// Environment variable (passed by Envoy's `vm_config.environment_variables`) that sets the
/// metric prefix when the plugin config does not, as `DYN_METRICS_PREFIX` does for Dynamo.
pub const PREFIX_ENV_VAR: &str = "DYN_METRICS_PREFIX";
pub const DEFAULT_PREFIX: &str = "llm";
pub const DEFAULT_MAX_MODELS: u32 = 32;
/// A stat name per label set is kept by Envoy for its lifetime; far more models than this is
/// a cardinality accident, not a deployment.
pub const MAX_MAX_MODELS: u32 = 1024;

/// Validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub metrics_prefix: String,
    pub max_models: u32,
    /// Models the operator pins: always labelled by name, outside the `max_models` cap.
    pub models: Vec<String>,
    /// Whether streamed requests are asked for usage the client did not ask for.
    pub usage_stats: UsageMode,
    /// Health probing and the `/health`, `/live` answers; `None` when not configured.
    pub health: Option<HealthConfig>,
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
    pub(crate) fn new(field: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    metrics_prefix: Option<String>,
    max_models: Option<u32>,
    models: Option<Vec<String>>,
    usage_stats: Option<String>,
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
        let health = raw.health.map(HealthConfig::validate).transpose()?;
        Ok(Config {
            metrics_prefix: prefix.to_string(),
            max_models,
            models,
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
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at_root = path == "." || path == "?" || path.is_empty();
        // Below the root the path names the field (an unknown one included); at the root
        // serde's message does.
        let field = match (at_root, unknown_field_name(&inner.to_string())) {
            (true, Some(name)) => name,
            (true, None) => "(config)".to_string(),
            (false, _) => path,
        };
        ConfigError::new(&field, strip_position(&inner.to_string()))
    })?;
    de.end()
        .map_err(|e| ConfigError::new("(config)", strip_position(&e.to_string())))?;
    Ok(raw)
}

/// `unknown field `foo`, expected ...` -> `foo`.
fn unknown_field_name(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    // An empty key (`{"":1}`) would name no field at all (found by fuzzing).
    rest.get(..end)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
}

/// serde_json appends ` at line 1 column 20`; the field name already says where.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg.get(..i).unwrap_or(msg).to_string(),
        None => msg.to_string(),
    }
}

/// Prometheus metric names: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn validate_prefix(prefix: &str) -> Result<(), String> {
    let mut bytes = prefix.bytes();
    let first_ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_');
    if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "{prefix:?} is not a valid metric prefix (must match [a-zA-Z_][a-zA-Z0-9_]*)"
        ));
    }
    if prefix.len() > 64 {
        return Err(format!("{prefix:?} is longer than 64 characters"));
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
        }
        let c = Config::parse(br#"{"usage_stats":"continuous"}"#, None).unwrap();
        assert_eq!(c.usage_stats, UsageMode::Continuous);
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
