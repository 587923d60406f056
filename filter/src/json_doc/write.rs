//! Compact JSON out: a [`Value`] tree, or single strings and integers for the documents the
//! filter writes field by field (`/health`, probe bodies, the shared health state). Escapes
//! and layout are serde_json's, so the bytes did not change when serde_json went.

use super::Value;

impl Value {
    /// Compact JSON text: no spaces, object entries in their stored order, numbers as parsed.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    pub fn write(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => out.push_str(n.as_str()),
            Value::String(s) => push_str(out, s),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Value::Object(entries) => {
                out.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_str(out, key);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    /// Every object as a JSON map holds it (serde_json's default map): keys sorted bytewise,
    /// a repeated key once with its last value.
    pub fn sort_keys(&mut self) {
        match self {
            Value::Array(items) => items.iter_mut().for_each(Value::sort_keys),
            Value::Object(entries) => {
                // Insertion in place rather than `sort_by`: objects here have a few keys, and
                // the std sort costs ~5 KB of wasm.
                let mut sorted: Vec<(String, Value)> = Vec::with_capacity(entries.len());
                for (key, mut value) in entries.drain(..) {
                    value.sort_keys();
                    match sorted.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
                        Ok(i) => {
                            if let Some(kept) = sorted.get_mut(i) {
                                kept.1 = value;
                            }
                        }
                        Err(i) => sorted.insert(i, (key, value)),
                    }
                }
                *entries = sorted;
            }
            _ => {}
        }
    }
}

/// A JSON string literal, escaped as serde_json escapes it: `"`, `\`, and control characters
/// (short forms where JSON has them, else `\u00XX`); everything else as is.
pub fn push_str(out: &mut String, s: &str) {
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

pub fn push_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_str(out, s),
        None => out.push_str("null"),
    }
}

pub fn push_u64(out: &mut String, mut n: u64) {
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

pub fn push_opt_u64(out: &mut String, n: Option<u64>) {
    match n {
        Some(n) => push_u64(out, n),
        None => out.push_str("null"),
    }
}
