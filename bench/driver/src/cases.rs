//! The case table: what each Envoy case sends (request body, headers) and what its answer
//! holds (SSE events), per group.

use crate::args::Args;
use crate::upstreams::{JsonStyle, UsageAsk};

pub struct Case {
    pub name: String,
    pub group: &'static str,
    pub what: String,
    pub body: Vec<u8>,
    /// Extra request headers (which file nginx serves, the paced worker's pacing).
    pub headers: Vec<String>,
    /// SSE events per response (0: unary).
    pub events: u32,
    /// A paced case: `--streams` connections, one request each, per run.
    pub paced: bool,
    /// A lockstep case (the lockstep process is the client, not h2load), with its JSON.
    pub lockstep: Option<JsonStyle>,
}

/// A chat request; a streamed one with the `stream_options` that asks for `ask`.
pub fn chat_request(content: &str, stream: bool, tokens: u32, ask: UsageAsk) -> Vec<u8> {
    let mut body = serde_json::json!({
        "model": "bench-model",
        "messages": [{"role": "user", "content": content}],
        "stream": stream,
        "max_tokens": tokens,
    });
    if let (true, Some(options)) = (stream, ask.stream_options()) {
        body["stream_options"] = options;
    }
    body.to_string().into_bytes()
}

/// `body` as a client asking for `ask` sends it (streamed requests only).
pub fn body_asking(body: &[u8], ask: UsageAsk) -> Vec<u8> {
    let Some(options) = ask.stream_options() else {
        return body.to_vec();
    };
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut v) if v["stream"] == true => {
            v["stream_options"] = options;
            v.to_string().into_bytes()
        }
        _ => body.to_vec(),
    }
}

/// The cases of `group` that `--cases` selects.
pub fn cases(group: &'static str, args: &Args) -> Vec<Case> {
    let t = args.tokens;
    let tiny = |stream| chat_request("hello", stream, t, UsageAsk::None);
    // 100 KiB of prompt: 20,480 five-byte words.
    let big = || chat_request(&"word ".repeat(100 * 1024 / 5), true, t, UsageAsk::None);
    let file = |name: &str| vec![format!("x-bench-file: {name}")];
    let case = |name: &str, what: String, body, headers, events, paced| Case {
        name: name.to_string(),
        group,
        what,
        body,
        headers,
        events,
        paced,
        lockstep: None,
    };
    let all = match group {
        "sim" => vec![
            case(
                "sim-stream",
                format!("gpu-sim, no delay, chat stream, {t} tokens"),
                tiny(true),
                vec![],
                t + 2,
                false,
            ),
            case(
                "sim-unary",
                format!("gpu-sim, chat unary, {t} tokens"),
                tiny(false),
                vec![],
                0,
                false,
            ),
            case(
                "sim-prompt100k",
                format!("gpu-sim, no delay, chat stream, {t} tokens, 100 KiB prompt"),
                big(),
                vec![],
                t + 2,
                false,
            ),
        ],
        "static" => vec![
            case(
                "static-compact",
                format!("nginx static file, compact JSON, {t} tokens"),
                tiny(true),
                file("compact.sse"),
                t + 2,
                false,
            ),
            case(
                "static-spaced",
                format!(
                    "nginx static file, JSON with \", \" / \": \" (Python json.dumps), {t} tokens"
                ),
                tiny(true),
                file("spaced.sse"),
                t + 2,
                false,
            ),
            case(
                "static-unary",
                format!("nginx static file, chat unary, {t} tokens"),
                tiny(false),
                file("unary.json"),
                0,
                false,
            ),
            case(
                "static-prompt100k",
                format!("nginx static file, compact JSON, {t} tokens, 100 KiB prompt"),
                big(),
                file("compact.sse"),
                t + 2,
                false,
            ),
        ],
        "paced" => vec![
            case(
                "paced-batched",
                format!(
                    "{} streams, {t} tokens at {} ms ITL, all on one tick (a decode step)",
                    args.streams, args.itl_ms
                ),
                tiny(true),
                vec!["x-bench-pacing: batched".into()],
                t + 2,
                true,
            ),
            case(
                "paced-independent",
                format!(
                    "{} streams, {t} tokens at {} ms ITL, a timer per stream",
                    args.streams, args.itl_ms
                ),
                tiny(true),
                vec!["x-bench-pacing: independent".into()],
                t + 2,
                true,
            ),
            case(
                "paced-spaced",
                "as paced-independent, JSON with \", \" / \": \" (Python json.dumps)".to_string(),
                tiny(true),
                vec![
                    "x-bench-pacing: independent".into(),
                    "x-bench-json: spaced".into(),
                ],
                t + 2,
                true,
            ),
        ],
        "lockstep" => [
            ("lockstep-compact", JsonStyle::Compact, "compact JSON"),
            (
                "lockstep-spaced",
                JsonStyle::Spaced,
                "JSON with \", \" / \": \" (Python json.dumps)",
            ),
        ]
        .into_iter()
        .map(|(name, style, json)| Case {
            lockstep: Some(style),
            ..case(
                name,
                format!(
                    "{} streams in lockstep (each next event written when the client has the \
                     previous one), {t} tokens, {json}; req/s and latencies are the lockstep \
                     client's",
                    args.lockstep_streams
                ),
                tiny(true),
                vec![],
                t + 2,
                false,
            )
        })
        .collect(),
        _ => vec![case(
            "probe",
            "nginx static 64 KiB answer; the probe modes' host calls per request".into(),
            tiny(false),
            file("probe.bin"),
            0,
            false,
        )],
    };
    all.into_iter()
        .filter(|c| {
            args.cases
                .as_ref()
                .is_none_or(|only| only.contains(&c.name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client asking for usage sends `stream_options` on streamed requests only.
    #[test]
    fn bodies_ask_as_their_setup() {
        let stream = chat_request("hello", true, 8, UsageAsk::None);
        let asked = body_asking(&stream, UsageAsk::Continuous);
        assert_eq!(UsageAsk::of_body(&asked), UsageAsk::Continuous);
        assert_eq!(asked, chat_request("hello", true, 8, UsageAsk::Continuous));
        assert_eq!(body_asking(&stream, UsageAsk::None), stream);
        let unary = chat_request("hello", false, 8, UsageAsk::None);
        assert_eq!(body_asking(&unary, UsageAsk::Final), unary);
    }
}
