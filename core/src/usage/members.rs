//! The members of one JSON object, located in a byte slice: where each key starts and where its
//! value ends. Off the hot path: it runs only where the filter edits traffic (a request's
//! `stream_options`, an event's `usage` the client did not ask for), over bytes it already holds.

use std::ops::Range;

/// One member of an object: its key (the quotes included) and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub key: Range<usize>,
    pub value: Range<usize>,
}

impl Member {
    /// The key's text between its quotes, as written (escapes not decoded).
    pub fn raw_key<'a>(&self, text: &'a [u8]) -> &'a [u8] {
        text.get(self.key.start + 1..self.key.end - 1)
            .unwrap_or_default()
    }
}

/// The object that starts at `text[open]` (`{`): its members in order and the index of its
/// closing `}`. `None` when the object is not whole and well formed within `text`.
pub fn object_members(text: &[u8], open: usize) -> Option<(Vec<Member>, usize)> {
    if text.get(open) != Some(&b'{') {
        return None;
    }
    let mut members = Vec::new();
    let mut i = skip_ws(text, open + 1);
    if text.get(i) == Some(&b'}') {
        return Some((members, i));
    }
    loop {
        let (key_end, value_start) = member_value(text, i)?;
        let value_end = value_end(text, value_start)?;
        members.push(Member {
            key: i..key_end,
            value: value_start..value_end,
        });
        let next = skip_ws(text, value_end);
        match text.get(next) {
            Some(b',') => i = skip_ws(text, next + 1),
            Some(b'}') => return Some((members, next)),
            _ => return None,
        }
    }
}

/// The member whose key's opening quote is `text[key]`: where its key ends and its value
/// starts (past the `:` and whitespace). `None` when that is not a key and a colon.
pub fn member_value(text: &[u8], key: usize) -> Option<(usize, usize)> {
    if text.get(key) != Some(&b'"') {
        return None;
    }
    let key_end = string_end(text, key)?;
    let colon = skip_ws(text, key_end);
    if text.get(colon) != Some(&b':') {
        return None;
    }
    Some((key_end, skip_ws(text, colon + 1)))
}

/// The bytes to cut so that member `index` of `members` is gone and the object stays valid:
/// with the separator before it (`, "usage": null`), or, for the first member, with the
/// separator after it.
pub fn removal(members: &[Member], index: usize) -> Option<Range<usize>> {
    let member = members.get(index)?;
    if let Some(prev) = index.checked_sub(1).and_then(|p| members.get(p)) {
        return Some(prev.value.end..member.value.end);
    }
    match members.get(index + 1) {
        Some(next) => Some(member.key.start..next.key.start),
        None => Some(member.key.start..member.value.end),
    }
}

fn skip_ws(text: &[u8], mut i: usize) -> usize {
    while matches!(text.get(i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        i += 1;
    }
    i
}

/// The index after the closing quote of the string that starts at `text[start]`.
fn string_end(text: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match text.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// The index after the value that starts at `text[start]`.
fn value_end(text: &[u8], start: usize) -> Option<usize> {
    match text.get(start)? {
        b'"' => string_end(text, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match text.get(i)? {
                    b'"' => {
                        i = string_end(text, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = start;
            while let Some(&b) = text.get(i) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
                    break;
                }
                i += 1;
            }
            (i > start && i < text.len()).then_some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Option<(Vec<String>, usize)> {
        let t = text.as_bytes();
        let (m, close) = object_members(t, 0)?;
        let parts = m
            .iter()
            .map(|m| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(m.raw_key(t)),
                    String::from_utf8_lossy(&t[m.value.clone()])
                )
            })
            .collect();
        Some((parts, close))
    }

    #[test]
    fn finds_members_compact_and_spaced() {
        let (m, close) = keys(r#"{"a":1,"u\"s":{"x":[1,"}"]},"n":null}"#).unwrap();
        assert_eq!(m, vec!["a=1", r#"u\"s={"x":[1,"}"]}"#, "n=null"]);
        assert_eq!(close, 36);
        let (m, _) = keys("{ \"a\" : true ,\n \"b\": \"x\" }").unwrap();
        assert_eq!(m, vec!["a=true", "b=\"x\""]);
        assert_eq!(keys("{}").unwrap().0, Vec::<String>::new());
    }

    #[test]
    fn an_unfinished_or_broken_object_is_none() {
        for t in [
            r#"{"a":1"#,
            r#"{"a":"#,
            r#"{"a" 1}"#,
            r#"{"a":{"b":1}"#,
            "{1:2}",
            r#"{"a":1,}"#,
            "[]",
        ] {
            assert_eq!(keys(t), None, "{t}");
        }
    }

    #[test]
    fn removing_any_member_leaves_the_others() {
        let cut = |text: &str, index: usize| {
            let t = text.as_bytes();
            let (m, _) = object_members(t, 0).unwrap();
            let r = removal(&m, index).unwrap();
            format!("{}{}", &text[..r.start], &text[r.end..])
        };
        assert_eq!(cut(r#"{"a":1,"usage":null}"#, 1), r#"{"a":1}"#);
        assert_eq!(cut(r#"{"a": 1, "usage": {"b": 2}}"#, 1), r#"{"a": 1}"#);
        assert_eq!(cut(r#"{"usage":null,"a":1}"#, 0), r#"{"a":1}"#);
        assert_eq!(cut(r#"{"usage": null, "a": 1}"#, 0), r#"{"a": 1}"#);
        assert_eq!(cut(r#"{"a":1,"usage":2,"b":3}"#, 1), r#"{"a":1,"b":3}"#);
        assert_eq!(cut(r#"{"usage":2}"#, 0), r#"{}"#);
    }
}
