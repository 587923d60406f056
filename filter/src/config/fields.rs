//! Reading the parsed config document field by field, with the rules and messages serde's
//! derive had (operators and tests know them): an object's fields are checked in document
//! order, an unknown or repeated field is an error, `null` is an absent optional field, and
//! every error names the path of the value it is about.

use super::ConfigError;
use crate::json_doc::{self, PathSeg, Value};

/// A value and where it sits (`health.targets[0].interval`; empty at the root).
pub(crate) struct Field {
    pub value: Value,
    pub path: String,
}

/// The error naming `path`; the root is `(config)`.
pub(crate) fn error_at(path: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(if path.is_empty() { "(config)" } else { path }, reason)
}

/// `parent.key`; an empty key names its object (a field must have a name).
fn child(parent: &str, key: &str) -> String {
    match (parent.is_empty(), key.is_empty()) {
        (_, true) => parent.to_string(),
        (true, false) => key.to_string(),
        (false, false) => format!("{parent}.{key}"),
    }
}

/// A syntax error, named by the value it broke (as serde_path_to_error named it).
pub(crate) fn syntax_error(e: &json_doc::Error) -> ConfigError {
    let path = e.path.iter().fold(String::new(), |path, seg| match seg {
        PathSeg::Key(k) => child(&path, k),
        PathSeg::Index(i) => format!("{path}[{i}]"),
    });
    error_at(&path, e.kind.to_string())
}

/// serde's wording of a value of the wrong type (`integer `7``, `string "3"`, `map`).
fn unexpected(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_integer() => format!("integer `{}`", n.as_str()),
        Value::Number(n) => format!("floating point `{}`", n.as_str()),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".to_string(),
        Value::Object(_) => "map".to_string(),
    }
}

/// serde's list of the accepted names: `` `a` ``, `` `a` or `b` ``, `` one of `a`, `b`, `c` ``.
fn one_of(names: impl ExactSizeIterator<Item = &'static str>) -> String {
    let n = names.len();
    let quoted: Vec<String> = names.map(|name| format!("`{name}`")).collect();
    match n {
        0 => "nothing".to_string(),
        1 | 2 => quoted.join(" or "),
        _ => format!("one of {}", quoted.join(", ")),
    }
}

impl Field {
    fn invalid_type(&self, expected: &str) -> ConfigError {
        error_at(
            &self.path,
            format!(
                "invalid type: {}, expected {expected}",
                unexpected(&self.value)
            ),
        )
    }

    /// `None` for `null`: an optional field left unset.
    pub fn non_null(self) -> Option<Field> {
        (!self.value.is_null()).then_some(self)
    }

    pub fn string(self) -> Result<String, ConfigError> {
        match self.value {
            Value::String(s) => Ok(s),
            _ => Err(self.invalid_type("a string")),
        }
    }

    pub fn bool(self) -> Result<bool, ConfigError> {
        self.value
            .as_bool()
            .ok_or_else(|| self.invalid_type("a boolean"))
    }

    pub fn u64(self) -> Result<u64, ConfigError> {
        self.unsigned(u64::MAX, "u64")
    }

    pub fn u32(self) -> Result<u32, ConfigError> {
        let n = self.unsigned(u64::from(u32::MAX), "u32")?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// An integer from 0 to `max`; `ty` names the type as serde did.
    fn unsigned(&self, max: u64, ty: &str) -> Result<u64, ConfigError> {
        match &self.value {
            Value::Number(n) if n.is_integer() => {
                n.as_u64().filter(|&v| v <= max).ok_or_else(|| {
                    error_at(
                        &self.path,
                        format!("invalid value: integer `{}`, expected {ty}", n.as_str()),
                    )
                })
            }
            _ => Err(self.invalid_type(ty)),
        }
    }

    /// One of the names in `variants`, exactly (lowercase).
    pub fn variant<T: Copy>(self, variants: &[(&'static str, T)]) -> Result<T, ConfigError> {
        let name = match &self.value {
            Value::String(s) => s,
            _ => return Err(self.invalid_type("a string")),
        };
        match variants.iter().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(*v),
            None => Err(error_at(
                &self.path,
                format!(
                    "unknown variant `{name}`, expected {}",
                    one_of(variants.iter().map(|(n, _)| *n))
                ),
            )),
        }
    }

    /// The elements of an array, each named `path[i]`.
    pub fn elements(self) -> Result<Vec<Field>, ConfigError> {
        match self.value {
            Value::Array(items) => Ok(items
                .into_iter()
                .enumerate()
                .map(|(i, value)| Field {
                    value,
                    path: format!("{}[{i}]", self.path),
                })
                .collect()),
            _ => Err(self.invalid_type("a sequence")),
        }
    }

    /// The fields of an object whose only fields are `names`, in document order.
    pub fn fields(self, names: &'static [&'static str]) -> Result<Fields, ConfigError> {
        match self.value {
            Value::Object(entries) => Ok(Fields {
                entries: entries.into_iter(),
                names,
                seen: 0,
                path: self.path,
            }),
            _ => Err(self.invalid_type("an object")),
        }
    }
}

/// The fields of one object, each yielded as `(its name in the schema, the field)`: an
/// unknown or repeated name is an error when the iteration reaches it.
pub(crate) struct Fields {
    entries: std::vec::IntoIter<(String, Value)>,
    names: &'static [&'static str],
    /// Bit `i`: `names[i]` was seen (schemas have far fewer than 64 fields).
    seen: u64,
    path: String,
}

impl Fields {
    /// The error for a required field the object did not have.
    pub fn missing(&self, name: &str) -> ConfigError {
        error_at(&self.path, format!("missing field `{name}`"))
    }
}

impl Iterator for Fields {
    type Item = Result<(&'static str, Field), ConfigError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (key, value) = self.entries.next()?;
        let path = child(&self.path, &key);
        let Some(i) = self.names.iter().position(|n| *n == key) else {
            return Some(Err(error_at(
                &path,
                format!(
                    "unknown field `{key}`, expected {}",
                    one_of(self.names.iter().copied())
                ),
            )));
        };
        let bit = 1u64
            .checked_shl(u32::try_from(i).unwrap_or(u32::MAX))
            .unwrap_or(0);
        if self.seen & bit != 0 {
            return Some(Err(error_at(
                &self.path,
                format!("duplicate field `{key}`"),
            )));
        }
        self.seen |= bit;
        let name = self.names.get(i).copied().unwrap_or_default();
        Some(Ok((name, Field { value, path })))
    }
}
