//! A small JSON document: a complete JSON text parsed into a tree, and a compact writer.
//!
//! For the few whole documents the filter reads (the plugin config, probe answers, the shared
//! health state), which are small and read rarely; traffic bodies go through the incremental
//! scanner in `protocol/` instead. Hand-written rather than serde_json because the filter ships
//! as wasm: serde, serde_json and float formatting cost ~120 KB of it. Numbers keep their text
//! (no floating point): integers are read exactly, anything else is written back as it came.

mod parse;
#[cfg(test)]
mod tests;
mod write;

pub use parse::{parse, Error, ErrorKind, PathSeg, MAX_DEPTH};
pub use write::{push_opt_str, push_opt_u64, push_str, push_u64};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    /// Entries in document order; a repeated key is kept twice ([`Value::get`] finds the last,
    /// as a JSON map would keep it).
    Object(Vec<(String, Value)>),
}

/// A JSON number as written: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number(String);

impl Number {
    /// The text, as in the document.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Written without fraction or exponent (`1.0` and `1e2` are not integers, as in serde_json).
    pub fn is_integer(&self) -> bool {
        !self.0.contains(['.', 'e', 'E'])
    }

    /// The value when it is an integer that fits `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        self.is_integer().then(|| self.0.parse().ok()).flatten()
    }

    /// The value when it is an integer that fits `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.is_integer().then(|| self.0.parse().ok()).flatten()
    }
}

impl Value {
    /// The value under `key` when this is an object (the last one if the key repeats).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}
