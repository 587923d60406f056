//! Reads the top-level `model`, `stream` and `stream_options` of an inference request body as
//! it streams past, without keeping the body (prompts can be megabytes).

use super::json::{JsonScanner, KeyTag, Scalar, Slot, Visitor, IGNORE};
use crate::labels::MAX_LABEL_LEN;

const ROOT: Slot = 1;
const MODEL: Slot = 2;
const STREAM: Slot = 3;
const STREAM_OPTIONS: Slot = 4;
const INCLUDE_USAGE: Slot = 5;
const CONTINUOUS_USAGE: Slot = 6;

/// What the request asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestFacts {
    /// The raw `model` value (capped at the label length), if present.
    pub model: Option<Vec<u8>>,
    pub stream: Option<bool>,
    pub include_usage: Option<bool>,
    pub continuous_usage: Option<bool>,
    /// How many top-level `stream_options` keys the body has (a second one is not edited).
    pub stream_options_keys: u8,
}

/// The facts, plus where the top-level `stream_options` key stands in the chunk being fed:
/// what an edit of the request needs, found by the scan the facts already take.
struct Fields<'a> {
    facts: &'a mut RequestFacts,
    chunk: &'a [u8],
    stream_options_at: Option<usize>,
}

impl Visitor for Fields<'_> {
    fn child(&mut self, parent: Slot, key: &[u8]) -> Slot {
        let slot = self.facts.child(parent, key);
        if slot == STREAM_OPTIONS {
            self.facts.stream_options_keys = self.facts.stream_options_keys.saturating_add(1);
            // A key read whole from the chunk is a slice of it (the scanner's own buffer
            // otherwise): its address says where it is; the opening quote is one before.
            let at = (key.as_ptr() as usize).wrapping_sub(self.chunk.as_ptr() as usize);
            self.stream_options_at = (at >= 1 && at < self.chunk.len()).then(|| at - 1);
        }
        slot
    }

    fn capture_len(&self, slot: Slot) -> usize {
        self.facts.capture_len(slot)
    }

    fn scalar(&mut self, slot: Slot, value: Scalar<'_>) {
        self.facts.scalar(slot, value);
    }
}

impl Visitor for RequestFacts {
    fn child(&mut self, parent: Slot, key: &[u8]) -> Slot {
        const MODEL_K: KeyTag = KeyTag::new(b"model");
        const STREAM_K: KeyTag = KeyTag::new(b"stream");
        const STREAM_OPTIONS_K: KeyTag = KeyTag::new(b"stream_options");
        const INCLUDE_USAGE_K: KeyTag = KeyTag::new(b"include_usage");
        const CONTINUOUS_USAGE_K: KeyTag = KeyTag::new(b"continuous_usage_stats");
        // Keys over eight bytes are confirmed whole (guards) once their tag matches.
        match (parent, KeyTag::of(key)) {
            (ROOT, MODEL_K) => MODEL,
            (ROOT, STREAM_K) => STREAM,
            (ROOT, STREAM_OPTIONS_K) if key == b"stream_options" => STREAM_OPTIONS,
            (STREAM_OPTIONS, INCLUDE_USAGE_K) if key == b"include_usage" => INCLUDE_USAGE,
            (STREAM_OPTIONS, CONTINUOUS_USAGE_K) if key == b"continuous_usage_stats" => {
                CONTINUOUS_USAGE
            }
            _ => IGNORE,
        }
    }

    fn capture_len(&self, slot: Slot) -> usize {
        if slot == MODEL {
            MAX_LABEL_LEN
        } else {
            0
        }
    }

    fn scalar(&mut self, slot: Slot, value: Scalar<'_>) {
        match (slot, value) {
            (MODEL, Scalar::Str { text, .. }) => self.model = Some(text.to_vec()),
            (STREAM, Scalar::Bool(b)) => self.stream = Some(b),
            (INCLUDE_USAGE, Scalar::Bool(b)) => self.include_usage = Some(b),
            (CONTINUOUS_USAGE, Scalar::Bool(b)) => self.continuous_usage = Some(b),
            _ => {}
        }
    }
}

/// The request body scanner.
pub struct RequestScanner {
    scanner: JsonScanner,
    pub facts: RequestFacts,
}

impl Default for RequestScanner {
    fn default() -> Self {
        RequestScanner {
            scanner: JsonScanner::new(ROOT),
            facts: RequestFacts::default(),
        }
    }
}

/// What one chunk showed of the places a usage edit may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChunkMarks {
    /// The offset of the top-level `"stream_options"` key's opening quote, when the chunk
    /// holds the key whole.
    pub stream_options_at: Option<usize>,
    /// The offset of the top-level object's closing `}`, when this chunk closed it.
    pub closed_at: Option<usize>,
}

impl RequestScanner {
    pub fn feed(&mut self, chunk: &[u8]) -> ChunkMarks {
        if self.scanner.failed() {
            return ChunkMarks::default();
        }
        let was_done = self.scanner.is_done();
        let mut fields = Fields {
            facts: &mut self.facts,
            chunk,
            stream_options_at: None,
        };
        self.scanner.feed(chunk, &mut fields);
        let stream_options_at = fields.stream_options_at;
        // A document done in this chunk closed here: at its last byte that is not whitespace.
        let closed_at = (!was_done && self.scanner.is_done())
            .then(|| chunk.iter().rposition(|b| !b.is_ascii_whitespace()))
            .flatten()
            .filter(|&i| chunk.get(i) == Some(&b'}'));
        ChunkMarks {
            stream_options_at,
            closed_at,
        }
    }

    /// Whether the body so far cannot be one JSON document.
    pub fn failed(&self) -> bool {
        self.scanner.failed()
    }

    /// Ends the body: true when it was one well-formed JSON document.
    pub fn finish(&mut self) -> bool {
        self.scanner.finish(&mut self.facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> (RequestFacts, bool) {
        let mut s = RequestScanner::default();
        for c in chunks {
            s.feed(c);
        }
        let ok = s.finish();
        (s.facts, ok)
    }

    #[test]
    fn reads_the_top_level_fields_only() {
        let body = br#"{"messages":[{"role":"user","content":"say \"model\": x","model":"inner"}],
            "model":"meta-llama/Llama-3.1-8B-Instruct","stream":true,
            "stream_options":{"include_usage":true,"continuous_usage_stats":false},
            "tools":[{"model":"no","stream":false}]}"#;
        let (f, ok) = scan(&[body]);
        assert!(ok);
        assert_eq!(
            f.model.as_deref(),
            Some(&b"meta-llama/Llama-3.1-8B-Instruct"[..])
        );
        assert_eq!(f.stream, Some(true));
        assert_eq!(f.include_usage, Some(true));
        assert_eq!(f.continuous_usage, Some(false));
        for i in 0..=body.len() {
            assert_eq!(
                scan(&[&body[..i], &body[i..]]),
                (f.clone(), true),
                "split {i}"
            );
        }
    }

    #[test]
    fn absent_and_odd_fields() {
        let (f, ok) = scan(&[br#"{"prompt":"hi"}"#]);
        assert!(ok);
        assert_eq!(f, RequestFacts::default());
        let (f, _) = scan(&[br#"{"model":42,"stream":"yes"}"#]);
        assert_eq!((f.model, f.stream), (None, None));
        let (f, ok) = scan(&[b"\x1f\x8b\x08garbage"]);
        assert!(!ok);
        assert_eq!(f, RequestFacts::default());
    }

    #[test]
    fn a_huge_prompt_keeps_no_state() {
        let prompt = "x".repeat(10 << 20);
        let body = format!(r#"{{"prompt":"{prompt}","model":"m","stream":false}}"#);
        let mut s = RequestScanner::default();
        for c in body.as_bytes().chunks(65536) {
            s.feed(c);
        }
        assert!(s.finish());
        assert_eq!(s.facts.model.as_deref(), Some(&b"m"[..]));
        assert_eq!(s.facts.stream, Some(false));
        assert!(std::mem::size_of::<RequestScanner>() < 512);
    }

    /// Escapes are decoded in the fields read, keys included, at any split.
    #[test]
    fn escapes_are_decoded_in_keys_and_values() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"model":"\u0073im-model"}"#, "sim-model"),
            (br#"{"mod\u0065l":"sim-model"}"#, "sim-model"),
            (br#"{"\u006d\u006F\u0064\u0065\u006c":"a\/b\"c"}"#, "a/b\"c"),
            (br#"{"model":"\u00e9\u6a21\ud83d\ude00"}"#, "é模😀"),
            // A lone surrogate half is U+FFFD, never a forged byte.
            (br#"{"model":"x\ud83dy\ude00"}"#, "x\u{fffd}y\u{fffd}"),
            (br#"{"model":"\ud83d"}"#, "\u{fffd}"),
        ];
        for (body, want) in cases {
            for i in 0..=body.len() {
                let (f, ok) = scan(&[&body[..i], &body[i..]]);
                assert!(ok, "{}", String::from_utf8_lossy(body));
                assert_eq!(
                    f.model.as_deref(),
                    Some(want.as_bytes()),
                    "{} split {i}",
                    String::from_utf8_lossy(body)
                );
            }
        }
        let (f, _) = scan(&[br#"{"stre\u0061m":true,"model":"m"}"#]);
        assert_eq!(f.stream, Some(true));
    }
}
