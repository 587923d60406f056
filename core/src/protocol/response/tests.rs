use super::*;

/// Token callbacks and summary of `chunks`, with the resumed scan on or off.
fn stream_with(chunks: &[&[u8]], resume: bool) -> (Vec<u32>, Summary) {
    let mut r = if resume {
        SseResponse::default()
    } else {
        SseResponse::without_resume()
    };
    let mut events = Vec::new();
    for c in chunks {
        r.feed(c, &mut |k| events.push(k));
    }
    (events, *r.summary())
}

/// Streams whose events share starts, differ in them, split anywhere: the resumed scan
/// must give what a scan of every byte gives.
#[test]
fn resuming_from_the_previous_event_start_changes_nothing() {
    let chunk = |id: &str, delta: &str, tail: &str| {
        format!(
            "data: {{\"id\":\"{id}\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{tail}}}]}}\n\n"
        )
    };
    let spaced = |s: String| s.replace("\":", "\": ").replace(",\"", ", \"");
    let bodies: Vec<String> = vec![
        // vLLM: role chunk, tokens, finish, usage, [DONE].
        [
            chunk("a", r#"{"role":"assistant","content":""}"#, "null"),
            chunk("a", r#"{"content":"x"}"#, "null"),
            chunk("a", r#"{"content":"y\u0073"}"#, "null"),
            chunk("a", r#"{"content":""}"#, "null"),
            chunk("a", r#"{"content":"z"}"#, "\"stop\""),
            "data: {\"id\":\"a\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":9}}\n\n".into(),
            "data: [DONE]\n\n".into(),
        ]
        .concat(),
        // The start changes mid-stream (id), an error object, a malformed event, tool calls.
        [
            chunk("a", r#"{"content":"x"}"#, "null"),
            chunk("b", r#"{"content":"x"}"#, "null"),
            chunk("b", r#"{"content":"x"}"#, "null"),
            "data: {\"id\":\"b\",\"error\":{\"message\":\"boom\"},\"choices\":[{\"index\":0,\"delta\":{\"content\":\"q\"}}]}\n\n".into(),
            chunk("b", r#"{"content":"x"#, "null"),
            chunk("b", r#"{"content":"x"}"#, "null"),
            chunk("b", r#"{"tool_calls":[{"index":0},{"index":1}],"content":"t"}"#, "null"),
            chunk("b", r#"{"content":"x"}"#, "null"),
        ]
        .concat(),
        // Reasoning first, then content; the same start as a key of another name.
        [
            chunk("r", r#"{"reasoning_content":"think"}"#, "null"),
            chunk("r", r#"{"reasoning_content":"more"}"#, "null"),
            chunk("r", r#"{"content":"answer"}"#, "null"),
            chunk("r", r#"{"content":"again"}"#, "\"length\""),
        ]
        .concat(),
    ];
    for body in bodies
        .iter()
        .cloned()
        .chain(bodies.iter().cloned().map(spaced))
    {
        let b = body.as_bytes();
        let want = stream_with(&[b], false);
        assert_eq!(stream_with(&[b], true), want, "whole: {body}");
        let mut r = SseResponse::default();
        r.feed(b, &mut |_| {});
        assert!(
            r.events.scan.resume.resumed >= 2,
            "resumed {} times: {body}",
            r.events.scan.resume.resumed
        );
        // One event per chunk, as a paced worker sends them.
        let events: Vec<&[u8]> = body.split_inclusive("\n\n").map(str::as_bytes).collect();
        assert_eq!(stream_with(&events, true), want, "per event: {body}");
        // Every split point, and every pair of them.
        for i in 0..=b.len() {
            let got = stream_with(&[&b[..i], &b[i..]], true);
            assert_eq!(got, want, "split at {i}: {body}");
        }
        for i in (0..=b.len()).step_by(7) {
            for j in (i..=b.len()).step_by(5) {
                let got = stream_with(&[&b[..i], &b[i..j], &b[j..]], true);
                assert_eq!(got, want, "split at {i}, {j}: {body}");
            }
        }
    }
}

fn stream(chunks: &[&[u8]]) -> (Vec<u32>, Summary) {
    let mut r = SseResponse::default();
    let mut events = Vec::new();
    for c in chunks {
        r.feed(c, &mut |k| events.push(k));
    }
    (events, *r.summary())
}

fn chat_chunk(content: &str, usage: Option<u64>) -> String {
    let usage = match usage {
        Some(n) => format!(
            r#","usage":{{"prompt_tokens":7,"completion_tokens":{n},"total_tokens":{}}}"#,
            n + 7
        ),
        None => String::new(),
    };
    format!(
        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}]{usage}}}\n\n"
    )
}

const ROLE: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n";

#[test]
fn role_only_and_empty_chunks_are_not_tokens() {
    let body = format!(
        "{ROLE}{}{}data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\ndata: [DONE]\n\n",
        chat_chunk("a", None),
        chat_chunk("b", None)
    );
    let (events, s) = stream(&[body.as_bytes()]);
    assert_eq!(events, vec![1, 1]);
    assert_eq!(s.output_tokens(), 2);
    assert!(s.complete && !s.backend_error);
    assert_eq!(s.malformed, 0);
    assert_eq!(s.input_tokens, None);
}

#[test]
fn final_usage_corrects_the_total_but_not_the_events() {
    let body = format!(
        "{ROLE}{}{}data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":7,\"completion_tokens\":6,\"prompt_tokens_details\":{{\"cached_tokens\":3}}}}}}\n\ndata: [DONE]\n\n",
        chat_chunk("abc", None),
        chat_chunk("def", None)
    );
    let (events, s) = stream(&[body.as_bytes()]);
    assert_eq!(events, vec![1, 1]);
    assert_eq!(s.streamed_tokens, 2);
    assert_eq!(s.output_tokens(), 6);
    assert_eq!(s.input_tokens, Some(7));
    assert_eq!(s.cached_tokens, Some(3));
}

#[test]
fn continuous_usage_counts_growth() {
    let role = ROLE.replace(
        "]}\n",
        "],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":0}}\n",
    );
    let body = format!(
        "{role}{}{}{}data: [DONE]\n\n",
        chat_chunk("abc", Some(3)),
        chat_chunk("def", Some(6)),
        chat_chunk("g", Some(7))
    );
    let (events, s) = stream(&[body.as_bytes()]);
    assert_eq!(events, vec![3, 3, 1]);
    assert_eq!(s.output_tokens(), 7);
}

#[test]
fn completions_and_sglang_and_responses_shapes() {
    let completions = "data: {\"choices\":[{\"index\":0,\"text\":\" t0\",\"finish_reason\":null}]}\n\ndata: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n";
    let (events, s) = stream(&[completions.as_bytes()]);
    assert_eq!((events, s.complete), (vec![1], true));

    let sglang = "data: {\"text\":\"a\",\"meta_info\":{\"prompt_tokens\":4,\"completion_tokens\":1,\"cached_tokens\":0,\"finish_reason\":null}}\n\ndata: {\"text\":\"abc\",\"meta_info\":{\"prompt_tokens\":4,\"completion_tokens\":3,\"finish_reason\":{\"type\":\"length\"}}}\n\ndata: [DONE]\n\n";
    let (events, s) = stream(&[sglang.as_bytes()]);
    assert_eq!(events, vec![1, 2]);
    assert_eq!((s.output_tokens(), s.input_tokens), (3, Some(4)));

    let responses = "event: response.created\ndata: {\"type\":\"response.created\"}\n\nevent: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\ndata: {\"delta\":\"!\",\"type\":\"response.output_text.delta\"}\n\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":2}}}\n\n";
    let (events, s) = stream(&[responses.as_bytes()]);
    assert_eq!(events, vec![1, 1]);
    assert!(s.complete);
    assert_eq!((s.output_tokens(), s.input_tokens), (2, Some(5)));
}

#[test]
fn tool_calls_and_reasoning_are_tokens() {
    let body = "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"hm\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\"}}]}}]}\n\ndata: {\"choices\":[{\"delta\":{\"tool_calls\":[]}}]}\n\n";
    let (events, _) = stream(&[body.as_bytes()]);
    assert_eq!(events, vec![1, 1]);
}

#[test]
fn error_events_are_backend_errors() {
    for body in [
        "data: {\"error\":{\"object\":\"error\",\"message\":\"x\",\"code\":500}}\n\ndata: [DONE]\n\n",
        "data: {\"object\":\"error\",\"message\":\"x\"}\n\n",
        "event: error\ndata: {\"message\":\"x\"}\n\n",
        "data: {\"type\":\"error\",\"message\":\"x\"}\n\n",
    ] {
        let (_, s) = stream(&[body.as_bytes()]);
        assert!(s.backend_error, "{body}");
    }
    let ok = "event: errorish\ndata: {\"error\":null}\n\n";
    assert!(!stream(&[ok.as_bytes()]).1.backend_error);
}

#[test]
fn malformed_events_are_counted_and_skipped() {
    let body = format!(
        "data: {{not json}}\n\ndata: [DON\n\ndata: [DONE] x\n\n{}data: \n\n",
        chat_chunk("a", None)
    );
    let (events, s) = stream(&[body.as_bytes()]);
    assert_eq!(events, vec![1]);
    assert_eq!(s.malformed, 3);
    assert!(!s.complete);
}

#[test]
fn every_byte_split_gives_the_same_events() {
    let body = format!(
        "{ROLE}{}{}data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":7,\"completion_tokens\":2}}}}\r\n\r\ndata: [DONE]\n\n",
        chat_chunk("a\\\"b", None),
        chat_chunk("c", None)
    );
    let bytes = body.as_bytes();
    let whole = stream(&[bytes]);
    for i in 0..=bytes.len() {
        assert_eq!(stream(&[&bytes[..i], &bytes[i..]]), whole, "split at {i}");
    }
    // One byte per chunk.
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(stream(&singles), whole);
}

#[test]
fn unary_bodies() {
    let body = br#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"length"}],"usage":{"prompt_tokens":9,"total_tokens":14,"completion_tokens":5}}"#;
    for split in [0, 1, 50, body.len()] {
        let mut r = JsonResponse::default();
        r.feed(&body[..split]);
        r.feed(&body[split..]);
        let s = r.finish();
        assert_eq!(
            (s.output_tokens(), s.input_tokens, s.malformed),
            (5, Some(9), 0)
        );
    }
    let mut r = JsonResponse::default();
    r.feed(b"{\"id\": broken");
    assert_eq!(r.finish().malformed, 1);
}

#[test]
fn the_answers_model_is_read_from_the_first_json_event_at_any_split() {
    let vllm = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"tiny\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"model\":\"other\",\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n";
    // llama.cpp: `model` after the choices; a keep-alive comment first.
    let llama = ": ping\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"created\":1,\"model\":\"tiny\"}\n\n";
    for body in [vllm, llama] {
        let b = body.as_bytes();
        for i in 0..=b.len() {
            let mut sse = SseResponse::default();
            let mut seen = Vec::new();
            for part in [&b[..i], &b[i..]] {
                sse.feed(part, &mut |_| {});
                // Told once, after the read that ends the first JSON event.
                if let Some(m) = sse.take_model() {
                    seen.push(m);
                }
            }
            assert_eq!(seen, vec![Some(b"tiny".to_vec())], "split at {i}");
        }
    }
    // None in the first JSON event: told as such; a later event's model is not used.
    let mut sse = SseResponse::default();
    sse.feed(
        b"data: {\"choices\":[]}\n\ndata: {\"model\":\"late\"}\n\n",
        &mut |_| {},
    );
    assert_eq!(sse.take_model(), Some(None));
    assert_eq!(sse.take_model(), None);
    // Not a string, or empty: none.
    for first in [&b"{\"model\":{\"a\":1}}"[..], b"{\"model\":\"\"}"] {
        let mut sse = SseResponse::default();
        let mut event = b"data: ".to_vec();
        event.extend_from_slice(first);
        event.extend_from_slice(b"\n\n");
        sse.feed(&event, &mut |_| {});
        assert_eq!(sse.take_model(), Some(None));
    }
    // A unary body, the model after a long content.
    let mut r = JsonResponse::default();
    let body = format!(
        "{{\"choices\":[{{\"message\":{{\"content\":\"{}\"}}}}],\"model\":\"tiny\",\"usage\":{{\"completion_tokens\":3}}}}",
        "x".repeat(10_000)
    );
    for part in body.as_bytes().chunks(7) {
        r.feed(part);
    }
    assert_eq!(r.finish().output_tokens(), 3);
    assert_eq!(r.take_model().as_deref(), Some(&b"tiny"[..]));
}
