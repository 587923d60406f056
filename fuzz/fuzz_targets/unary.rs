//! The unary JSON response scanner (usage / token extraction) under arbitrary bodies and splits.
//! Invariants: splits do not change the summary; every body serde_json accepts parses; the
//! same JSON sent as one SSE event yields the same usage and error facts.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use llm_pulse_core::protocol::response::{JsonResponse, SseResponse, Summary};
use llm_pulse_fuzz::split;

#[derive(Arbitrary, Debug)]
struct Input {
    cuts: Vec<u16>,
    body: Vec<u8>,
}

fn unary(chunks: &[&[u8]]) -> Summary {
    let mut r = JsonResponse::default();
    for c in chunks {
        r.feed(c);
    }
    r.finish()
}

fuzz_target!(|input: Input| {
    let body = &input.body[..];
    let whole = unary(&[body]);
    assert_eq!(unary(&split(body, &input.cuts)), whole);
    assert!(whole.malformed <= 1);
    assert_eq!(
        whole.streamed_tokens,
        whole.usage_output_tokens.unwrap_or(0)
    );

    if serde_json::from_slice::<serde_json::Value>(body).is_ok() {
        assert_eq!(
            whole.malformed,
            0,
            "valid JSON refused: {:?}",
            String::from_utf8_lossy(body)
        );
    }
    if whole.malformed == 0 && !body.iter().any(|&b| b == b'\n' || b == b'\r') {
        let mut sse = SseResponse::default();
        let mut event = b"data:".to_vec();
        event.extend_from_slice(body);
        event.extend_from_slice(b"\n\n");
        sse.feed(&event, &mut |_| {});
        let s = *sse.summary();
        if s.malformed == 0 && !s.complete {
            assert_eq!(s.usage_output_tokens, whole.usage_output_tokens);
            assert_eq!(s.input_tokens, whole.input_tokens);
            assert_eq!(s.cached_tokens, whole.cached_tokens);
            assert_eq!(s.backend_error, whole.backend_error);
        }
    }
});
