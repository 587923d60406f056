//! Plugin configuration: the JSON Envoy hands the filter (DESIGN §5), parsed and validated.
//!
//! Every error names the field it is about (`metrics_prefix: ...`), because the operator only
//! sees one log line from Envoy when a config is refused.

mod fields;

use crate::health::config::{HealthConfig, RawHealth};
use crate::json_doc;
pub(crate) use fields::Field;
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

#[derive(Default)]
struct RawConfig {
    metrics_prefix: Option<String>,
    max_models: Option<u32>,
    health: Option<RawHealth>,
}

impl RawConfig {
    const FIELDS: &'static [&'static str] = &["metrics_prefix", "max_models", "health"];

    fn read(root: Field) -> Result<RawConfig, ConfigError> {
        let mut raw = RawConfig::default();
        for field in root.fields(Self::FIELDS)? {
            let (name, f) = field?;
            let Some(f) = f.non_null() else { continue };
            match name {
                "metrics_prefix" => raw.metrics_prefix = Some(f.string()?),
                "max_models" => raw.max_models = Some(f.u32()?),
                "health" => raw.health = Some(RawHealth::read(f)?),
                _ => {}
            }
        }
        Ok(raw)
    }
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
        let health = raw.health.map(HealthConfig::validate).transpose()?;
        Ok(Config {
            metrics_prefix: prefix.to_string(),
            max_models,
            health,
        })
    }
}

fn parse_raw(config: &[u8]) -> Result<RawConfig, ConfigError> {
    if config.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(RawConfig::default());
    }
    if config.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ConfigError::new("(config)", "must be a JSON object"));
    }
    let doc = json_doc::parse(config).map_err(|e| fields::syntax_error(&e))?;
    RawConfig::read(Field {
        value: doc,
        path: String::new(),
    })
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
        }
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
