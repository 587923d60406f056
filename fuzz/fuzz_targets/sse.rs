//! SSE framer and event parser (`SseResponse::feed`) under arbitrary bytes and chunk splits.
//! Invariants: any split gives the same token events and summary as the whole body, and the
//! same framed events; the streamed token count is the sum of the events; resuming events
//! from the previous event's start gives what scanning every byte gives.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use llm_pulse_core::protocol::response::{SseResponse, Summary};
use llm_pulse_core::protocol::sse::{SseFramer, SseSink};
use llm_pulse_fuzz::split;

#[derive(Arbitrary, Debug)]
struct Input {
    cuts: Vec<u16>,
    body: Vec<u8>,
}

fn run(chunks: &[&[u8]]) -> (Vec<u32>, Summary) {
    run_on(SseResponse::default(), chunks)
}

fn run_on(mut r: SseResponse, chunks: &[&[u8]]) -> (Vec<u32>, Summary) {
    let mut events = Vec::new();
    for c in chunks {
        r.feed(c, &mut |k| events.push(k));
    }
    (events, *r.summary())
}

#[derive(Default, PartialEq, Debug)]
struct Frames {
    done: Vec<(Vec<u8>, Vec<u8>)>,
    data: Vec<u8>,
    name: Vec<u8>,
}

impl SseSink for Frames {
    fn data(&mut self, bytes: &[u8]) {
        assert!(!bytes.is_empty(), "empty data piece");
        assert!(
            bytes == b"\n" || !bytes.iter().any(|&b| b == b'\n' || b == b'\r'),
            "line ending inside a data piece"
        );
        self.data.extend_from_slice(bytes);
    }
    fn event_name(&mut self, bytes: &[u8]) {
        self.name.extend_from_slice(bytes);
    }
    fn dispatch(&mut self, _end: usize, _cr: bool) {
        let d = std::mem::take(&mut self.data);
        let n = std::mem::take(&mut self.name);
        self.done.push((n, d));
    }
}

fn frame(chunks: &[&[u8]]) -> Frames {
    let mut f = SseFramer::default();
    let mut s = Frames::default();
    for c in chunks {
        f.feed(c, &mut s);
    }
    s
}

fuzz_target!(|input: Input| {
    let body = &input.body[..];
    let whole = run(&[body]);
    let (events, summary) = &whole;
    assert!(
        events.iter().all(|&k| k > 0),
        "an event of 0 tokens was reported"
    );
    let sum: u64 = events.iter().map(|&k| u64::from(k)).sum();
    assert_eq!(sum, summary.streamed_tokens);
    if summary.usage_output_tokens.is_none() {
        assert_eq!(summary.output_tokens(), summary.streamed_tokens);
    }

    assert_eq!(
        run_on(SseResponse::without_resume(), &[body]),
        whole,
        "resumed scan differs from the scan of every byte"
    );

    let chunks = split(body, &input.cuts);
    assert_eq!(run(&chunks), whole, "split at {:?}", input.cuts);
    let singles: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(run(&singles), whole, "one byte per chunk");

    let framed = frame(&[body]);
    assert_eq!(frame(&chunks), framed, "framing split at {:?}", input.cuts);
    assert_eq!(frame(&singles), framed, "framing one byte per chunk");
    // Never more token events or malformed events than framed events.
    assert!(events.len() + summary.malformed as usize <= framed.done.len());
});
