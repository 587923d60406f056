//! Where a streamed chat/completions or completions request gets the `stream_options` the
//! filter asks for, decided chunk by chunk as the body streams past: nothing is held back, so a
//! multi-MiB prompt passes as it would without the filter. An edit is made only in the chunk
//! that holds the place it changes:
//!
//! - no `stream_options` (or `null`): `"stream_options":{...}` goes before the top-level
//!   object's closing `}`, in the chunk that closes it, once `"stream": true` is known;
//! - an object with `include_usage` other than `true`: that value becomes `true` (and
//!   `continuous_usage_stats` likewise in `continuous` mode), in the chunk holding the whole
//!   object, if `stream` is known by then;
//! - an object without `include_usage` is left alone: vLLM reads it as `true`, SGLang as
//!   `false`, and the client gets what its worker gives it;
//! - `"include_usage": true` already: `final` changes nothing; `continuous` adds
//!   `continuous_usage_stats` the same way.
//!
//! What cannot be edited where it stands (a key split across chunks, `stream_options` before
//! `stream` in an earlier chunk, a second `stream_options`, a body that is not one JSON object)
//! is left unchanged, and the figures are counted from the deltas.

use super::members::{member_value, object_members};
use super::{Asked, UsageMode};
use crate::protocol::request::{ChunkMarks, RequestFacts};
use std::ops::Range;

const INCLUDE_USAGE: &[u8] = b"include_usage";
const CONTINUOUS_USAGE: &[u8] = b"continuous_usage_stats";

/// The usage edit of one request's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestUsage {
    mode: UsageMode,
    decided: Option<Asked>,
}

/// One replacement in a chunk: `at` (empty for an insertion) becomes `with`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Splice {
    at: Range<usize>,
    with: Vec<u8>,
}

impl RequestUsage {
    pub fn new(mode: UsageMode) -> RequestUsage {
        RequestUsage {
            mode,
            decided: (mode == UsageMode::Off).then(Asked::default),
        }
    }

    /// What was asked: final once decided (before that, as if not edited).
    pub fn asked(&self) -> Asked {
        self.decided.unwrap_or_default()
    }

    /// A chunk was scanned (`facts` and `marks` include it): its replacement, when this chunk
    /// is the one edited. `end`: the body ends with it; `failed`: the body is not JSON.
    pub fn on_chunk(
        &mut self,
        chunk: &[u8],
        facts: &RequestFacts,
        marks: ChunkMarks,
        failed: bool,
        end: bool,
    ) -> Option<Vec<u8>> {
        if self.decided.is_some() {
            return None;
        }
        let (asked, splices) = if failed || facts.stream_options_keys > 1 {
            (Some(Asked::default()), Vec::new())
        } else if facts.stream_options_keys == 1 {
            // Decided in the chunk that holds the key: its bytes are gone after it.
            let stream_known = facts.stream.is_some() || marks.closed_at.is_some();
            match marks.stream_options_at {
                Some(at) if stream_known && facts.stream == Some(true) => {
                    match self.merge(chunk, at) {
                        Some((asked, splices)) => (Some(asked), splices),
                        None => (Some(Asked::default()), Vec::new()),
                    }
                }
                _ => (Some(Asked::default()), Vec::new()),
            }
        } else if let Some(close) = marks.closed_at {
            if facts.stream == Some(true) {
                let mut with = b",\"stream_options\":".to_vec();
                with.extend_from_slice(&self.options_object());
                let asked = Asked {
                    edited: true,
                    continuous_added: self.mode == UsageMode::Continuous,
                    ..Asked::default()
                };
                (
                    Some(asked),
                    vec![Splice {
                        at: close..close,
                        with,
                    }],
                )
            } else {
                (Some(Asked::default()), Vec::new())
            }
        } else if end {
            (Some(Asked::default()), Vec::new())
        } else {
            (None, Vec::new())
        };
        self.decided = asked;
        (!splices.is_empty()).then(|| apply(chunk, &splices))
    }

    /// `{"include_usage":true}`, with `continuous_usage_stats` in `continuous` mode.
    fn options_object(&self) -> Vec<u8> {
        match self.mode {
            UsageMode::Continuous => {
                br#"{"include_usage":true,"continuous_usage_stats":true}"#.to_vec()
            }
            _ => br#"{"include_usage":true}"#.to_vec(),
        }
    }

    /// The client's own `stream_options`, whose key's quote is at `chunk[at]`.
    fn merge(&self, chunk: &[u8], at: usize) -> Option<(Asked, Vec<Splice>)> {
        let (_, value) = member_value(chunk, at)?;
        if chunk.get(value..value + 4) == Some(b"null") {
            let after = chunk.get(value + 4)?;
            if !matches!(after, b',' | b'}' | b' ' | b'\t' | b'\r' | b'\n') {
                return None;
            }
            let asked = Asked {
                edited: true,
                continuous_added: self.mode == UsageMode::Continuous,
                ..Asked::default()
            };
            let with = self.options_object();
            return Some((
                asked,
                vec![Splice {
                    at: value..value + 4,
                    with,
                }],
            ));
        }
        let (members, close) = object_members(chunk, value)?;
        let find = |name: &[u8]| {
            let mut found = members.iter().filter(|m| m.raw_key(chunk) == name);
            match (found.next(), found.next()) {
                (Some(m), None) => Some(Some(m)),
                (None, _) => Some(None),
                (Some(_), Some(_)) => None, // twice: which one the worker keeps is its own affair
            }
        };
        let include = find(INCLUDE_USAGE)?;
        let continuous = find(CONTINUOUS_USAGE)?;
        let is_true = |m: Option<&super::members::Member>| {
            m.is_some_and(|m| chunk.get(m.value.clone()) == Some(b"true"))
        };
        let Some(include) = include else {
            return Some((Asked::default(), Vec::new()));
        };
        let client_usage = is_true(Some(include));
        let client_continuous = client_usage && is_true(continuous);
        // Running figures the client did not ask for: ours, or the client's own
        // `continuous_usage_stats` made effective by the `include_usage` we set.
        let continuous_added =
            !client_continuous && (self.mode == UsageMode::Continuous || is_true(continuous));
        let mut splices = Vec::new();
        if !client_usage {
            splices.push(Splice {
                at: include.value.clone(),
                with: b"true".to_vec(),
            });
        }
        if self.mode == UsageMode::Continuous && !is_true(continuous) {
            match continuous {
                Some(m) => splices.push(Splice {
                    at: m.value.clone(),
                    with: b"true".to_vec(),
                }),
                None => {
                    // After the last member (the object has one: include_usage).
                    let end = members.last().map_or(close, |m| m.value.end);
                    splices.push(Splice {
                        at: end..end,
                        with: b",\"continuous_usage_stats\":true".to_vec(),
                    });
                }
            }
        }
        splices.sort_by_key(|s| s.at.start);
        let asked = Asked {
            edited: !splices.is_empty(),
            client_usage,
            client_continuous,
            continuous_added,
        };
        Some((asked, splices))
    }
}

fn apply(chunk: &[u8], splices: &[Splice]) -> Vec<u8> {
    let extra: usize = splices.iter().map(|s| s.with.len()).sum();
    let mut out = Vec::with_capacity(chunk.len() + extra);
    let mut pos = 0;
    for s in splices {
        out.extend_from_slice(chunk.get(pos..s.at.start).unwrap_or_default());
        out.extend_from_slice(&s.with);
        pos = s.at.end;
    }
    out.extend_from_slice(chunk.get(pos..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::request::RequestScanner;

    /// The body as the worker gets it, and what was asked, for `chunks` fed in order.
    fn edit(mode: UsageMode, chunks: &[&str]) -> (String, Asked) {
        let mut scanner = RequestScanner::default();
        let mut usage = RequestUsage::new(mode);
        let mut out = String::new();
        for (i, c) in chunks.iter().enumerate() {
            let marks = scanner.feed(c.as_bytes());
            let end = i + 1 == chunks.len();
            let failed = scanner.failed();
            match usage.on_chunk(c.as_bytes(), &scanner.facts, marks, failed, end) {
                Some(new) => out.push_str(&String::from_utf8(new).unwrap()),
                None => out.push_str(c),
            }
        }
        (out, usage.asked())
    }

    fn every_split(mode: UsageMode, body: &str) -> Vec<(String, Asked)> {
        (0..=body.len())
            .filter(|&i| body.is_char_boundary(i))
            .map(|i| edit(mode, &[&body[..i], &body[i..]]))
            .collect()
    }

    const ADDED: Asked = Asked {
        edited: true,
        client_usage: false,
        client_continuous: false,
        continuous_added: false,
    };

    #[test]
    fn a_stream_without_options_gets_them_before_the_last_brace() {
        let body = r#"{"messages":[{"role":"user","content":"}{\"stream\":false}"}],"model":"m","stream":true}"#;
        let want = r#"{"messages":[{"role":"user","content":"}{\"stream\":false}"}],"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        for got in every_split(UsageMode::Final, body) {
            assert_eq!(got, (want.to_string(), ADDED));
        }
        let (got, _) = edit(UsageMode::Continuous, &[body]);
        assert!(got.ends_with(
            r#""stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}"#
        ));
        // Whitespace after the document stays where it was.
        let (got, _) = edit(UsageMode::Final, &["{\"stream\": true }\n", "  \n"]);
        assert_eq!(
            got,
            "{\"stream\": true ,\"stream_options\":{\"include_usage\":true}}\n  \n"
        );
    }

    #[test]
    fn what_is_not_a_stream_to_chat_passes_unchanged() {
        for body in [
            r#"{"model":"m","stream":false}"#,
            r#"{"model":"m"}"#,
            r#"{"model":"m","stream":"true"}"#,
            r#"{"model":"m","stream":true"#,
            r#"[{"stream":true}]"#,
            "not json",
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"stream":true,"stream_options":{}}"#,
            r#"{"stream":true,"stream_options":{"continuous_usage_stats":true}}"#,
            r#"{"stream":true,"stream_options":{"include_usage":false,"include_usage":false}}"#,
            r#"{"stream":true,"stream_options":"yes"}"#,
            r#"{"stream":false,"stream_options":{"include_usage":false}}"#,
        ] {
            for (got, asked) in every_split(UsageMode::Final, body) {
                assert_eq!(got, body);
                assert!(!asked.edited, "{body}");
            }
        }
        let asked = edit(
            UsageMode::Final,
            &[r#"{"stream":true,"stream_options":{"include_usage":true}}"#],
        )
        .1;
        assert!(asked.client_usage && !asked.edited);
        // A second `stream_options` seen with the first: which one the worker keeps is its
        // own affair.
        // Bytes after the document in the chunk that closes it: not JSON, unchanged. (In a
        // later chunk they come too late; the worker refuses that body with or without the
        // edit.)
        let trailing = r#"{"model":"m","stream":true} x"#;
        assert_eq!(edit(UsageMode::Final, &[trailing]).0, trailing);
        let twice =
            r#"{"stream":true,"stream_options":{"include_usage":false},"stream_options":{}}"#;
        assert_eq!(edit(UsageMode::Final, &[twice]).0, twice);
        let off = edit(UsageMode::Off, &[r#"{"stream":true}"#]);
        assert_eq!(off, (r#"{"stream":true}"#.to_string(), Asked::default()));
    }

    #[test]
    fn the_clients_options_are_merged() {
        let cases: &[(UsageMode, &str, &str, Asked)] = &[
            (
                UsageMode::Final,
                r#"{"stream":true,"stream_options":{"include_usage":false},"x":1}"#,
                r#"{"stream":true,"stream_options":{"include_usage":true},"x":1}"#,
                ADDED,
            ),
            (
                UsageMode::Final,
                r#"{"stream":true,"stream_options":{"continuous_usage_stats":true,"include_usage":false}}"#,
                r#"{"stream":true,"stream_options":{"continuous_usage_stats":true,"include_usage":true}}"#,
                Asked {
                    continuous_added: true,
                    ..ADDED
                },
            ),
            (
                UsageMode::Final,
                r#"{"stream": true, "stream_options": null}"#,
                r#"{"stream": true, "stream_options": {"include_usage":true}}"#,
                ADDED,
            ),
            (
                UsageMode::Continuous,
                r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
                r#"{"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}"#,
                Asked {
                    edited: true,
                    client_usage: true,
                    client_continuous: false,
                    continuous_added: true,
                },
            ),
            (
                UsageMode::Continuous,
                r#"{"stream":true,"stream_options":{"continuous_usage_stats":false, "include_usage" : null}}"#,
                r#"{"stream":true,"stream_options":{"continuous_usage_stats":true, "include_usage" : true}}"#,
                Asked {
                    continuous_added: true,
                    ..ADDED
                },
            ),
            (
                UsageMode::Continuous,
                r#"{"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}"#,
                r#"{"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}"#,
                Asked {
                    edited: false,
                    client_usage: true,
                    client_continuous: true,
                    continuous_added: false,
                },
            ),
        ];
        for (mode, body, want, asked) in cases {
            assert_eq!(edit(*mode, &[body]), (want.to_string(), *asked), "{body}");
        }
    }

    #[test]
    fn options_that_cannot_be_edited_where_they_stand_are_left() {
        let body = r#"{"stream_options":{"include_usage":false},"stream":true}"#;
        // `stream` is known in the chunk holding the options: edited.
        let (got, asked) = edit(UsageMode::Final, &[body]);
        assert!(asked.edited, "{got}");
        // Options in an earlier chunk than `stream`: they have passed; unchanged.
        let (got, asked) = edit(UsageMode::Final, &[&body[..42], &body[42..]]);
        assert_eq!((got.as_str(), asked), (body, Asked::default()));
        // The options object split across chunks: unchanged.
        let body = r#"{"stream":true,"stream_options":{"include_usage":false}}"#;
        let (got, asked) = edit(UsageMode::Final, &[&body[..40], &body[40..]]);
        assert_eq!((got.as_str(), asked), (body, Asked::default()));
    }
}
