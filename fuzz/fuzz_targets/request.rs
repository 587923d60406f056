//! The request scanner (`model`, `stream`, `stream_options`) under arbitrary bodies and splits.
//! Invariants: splits do not change the facts; the model is at most 128 bytes; every body
//! serde_json accepts is accepted, with the same `model` and `stream` when unambiguous.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use llm_pulse_core::labels::MAX_LABEL_LEN;
use llm_pulse_core::protocol::request::{RequestFacts, RequestScanner};
use llm_pulse_fuzz::split;

#[derive(Arbitrary, Debug)]
struct Input {
    cuts: Vec<u16>,
    body: Vec<u8>,
}

fn scan(chunks: &[&[u8]]) -> (RequestFacts, bool) {
    let mut s = RequestScanner::default();
    for c in chunks {
        s.feed(c);
    }
    let ok = s.finish();
    (s.facts, ok)
}

fn occurrences(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fuzz_target!(|input: Input| {
    let body = &input.body[..];
    let whole = scan(&[body]);
    if let Some(m) = &whole.0.model {
        assert!(m.len() <= MAX_LABEL_LEN);
    }
    assert_eq!(scan(&split(body, &input.cuts)), whole);
    let singles: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(scan(&singles), whole);

    if let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(body) {
        assert!(
            whole.1,
            "valid JSON refused: {:?}",
            String::from_utf8_lossy(body)
        );
        if occurrences(body, b"\"model\"") == 1 && !body.contains(&b'\\') {
            let want = obj.get("model").and_then(|v| v.as_str()).map(|s| {
                let b = s.as_bytes();
                b[..b.len().min(MAX_LABEL_LEN)].to_vec()
            });
            assert_eq!(whole.0.model, want);
        }
        if occurrences(body, b"\"stream\"") == 1 {
            assert_eq!(whole.0.stream, obj.get("stream").and_then(|v| v.as_bool()));
        }
    }
});
