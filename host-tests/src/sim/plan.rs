//! Turns one inference request (headers + JSON body + server config) into a [`Plan`]: what to
//! answer and when. Precedence, highest first: `x-sim-*` headers, the body (`max_tokens`),
//! the server config.
//!
//! Prompt token count (tests recompute it the same way, there is no tokenizer):
//! - chat: whitespace-separated words across every message's `content` (a string, or an array
//!   of parts whose `text` fields count);
//! - completions: words in `prompt` when it is a string; its length when it is an array of
//!   token ids; the sum over the items when it is an array of strings or of token-id arrays.
//! - SGLang `/generate`: words in `text`, or the length of `input_ids` (exactly one of the two).

use std::time::Duration;

use hyper::HeaderMap;
use serde_json::Value;

use super::config::{Flavor, SimConfig};

/// Which API the request came in on; picks the JSON shapes and the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /v1/chat/completions`
    Chat,
    /// `POST /v1/completions`
    Completions,
    /// SGLang's native `POST /generate`
    Generate,
}

impl Api {
    /// The API served on `path` for `POST`, if any.
    pub fn from_path(path: &str) -> Option<Self> {
        match path {
            "/v1/chat/completions" => Some(Self::Chat),
            "/v1/completions" => Some(Self::Completions),
            "/generate" => Some(Self::Generate),
            _ => None,
        }
    }
}

/// Timing and faults after header overrides, before the body is looked at. Split from
/// [`Plan`] so that `x-sim-fail-status` answers even a request whose body is not JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overrides {
    pub ttft: Duration,
    pub itl: Duration,
    /// `x-sim-tokens`, which beats the body's `max_tokens`, which beats `config_tokens`.
    pub header_tokens: Option<u32>,
    pub config_tokens: u32,
    pub tokens_per_chunk: u32,
    /// `x-sim-tokens-per-chunk: 1,4,2`: chunk j carries `pattern[j % len]` tokens (speculative
    /// decoding's uneven chunks); empty: every chunk `tokens_per_chunk`.
    pub tokens_pattern: Vec<u32>,
    /// `x-sim-id`: the answer's id, whatever the body (so an edited body answers the same).
    pub id: Option<String>,
    /// `x-sim-served-model: NAME`: the answer's `model` whatever the request named, as a
    /// worker serving one model answers any name (llama.cpp's `llama-server`).
    pub served_model: Option<String>,
    /// `x-sim-refuse-stream-options: 1`: a strict OpenAI-compatible server that does not know
    /// `stream_options` answers 400 naming it.
    pub refuse_stream_options: bool,
    pub cached_tokens: Option<u32>,
    pub fail_status: Option<u16>,
    pub error_after: Option<u32>,
    pub reset_after: Option<u32>,
    pub unary_garbage: bool,
    pub flavor: Flavor,
}

/// Everything needed to produce one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub api: Api,
    pub flavor: Flavor,
    /// `chatcmpl-`/`cmpl-` + FNV-1a of the body: same body, same bytes. trtllm completions:
    /// `cmpl-` + 32 hex digits (its uuid4 hex); `/generate`: the request's `rid`, else 32 hex
    /// digits (SGLang's uuid4 hex).
    pub id: String,
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub continuous_usage: bool,
    pub prompt_tokens: u32,
    /// Output tokens. At least 1, except on `/generate` with `max_new_tokens: 0`.
    pub tokens: u32,
    pub tokens_per_chunk: u32,
    pub tokens_pattern: Vec<u32>,
    pub ttft: Duration,
    pub itl: Duration,
    pub cached_tokens: Option<u32>,
    pub error_after: Option<u32>,
    pub reset_after: Option<u32>,
    pub unary_garbage: bool,
}

impl Plan {
    /// When streamed token chunk `chunk` (0-based) is due, measured from request arrival:
    /// TTFT, then k × ITL per chunk. An absolute schedule, so late wake-ups do not add up.
    /// `None` when the sum overflows: such a chunk never comes.
    pub fn chunk_offset(&self, chunk: u32) -> Option<Duration> {
        let tokens_before = if self.tokens_pattern.is_empty() {
            chunk.checked_mul(self.tokens_per_chunk)?
        } else {
            (0..chunk).try_fold(0u32, |sum, j| sum.checked_add(self.chunk_tokens(j)))?
        };
        self.itl.checked_mul(tokens_before)?.checked_add(self.ttft)
    }

    /// Tokens chunk `chunk` (0-based) carries, before the last chunk's cut.
    pub fn chunk_tokens(&self, chunk: u32) -> u32 {
        match self.tokens_pattern.len() {
            0 => self.tokens_per_chunk,
            n => self
                .tokens_pattern
                .get(chunk as usize % n)
                .copied()
                .unwrap_or(1),
        }
    }

    /// When a unary response is due: the moment its last token would have streamed.
    pub fn unary_offset(&self) -> Option<Duration> {
        self.itl
            .checked_mul(self.tokens.saturating_sub(1))?
            .checked_add(self.ttft)
    }
}

/// Reads the `x-sim-*` headers over the config. The error names the bad header.
pub fn overrides(headers: &HeaderMap, cfg: &SimConfig) -> Result<Overrides, String> {
    let ms = |name: &str, default: Duration| -> Result<Duration, String> {
        Ok(header_u64(headers, name)?.map_or(default, Duration::from_millis))
    };
    let ttft = ms("x-sim-ttft-ms", cfg.ttft)?;
    let itl = ms("x-sim-itl-ms", cfg.itl)?;
    let header_tokens = header_u32(headers, "x-sim-tokens")?;
    if header_tokens == Some(0) {
        return Err("x-sim-tokens must be at least 1".to_owned());
    }
    let (tokens_per_chunk, tokens_pattern) = match header_str(headers, "x-sim-tokens-per-chunk")? {
        Some(list) if list.contains(',') => {
            let pattern = list
                .split(',')
                .map(|n| n.trim().parse::<u32>().ok().filter(|&n| n > 0))
                .collect::<Option<Vec<u32>>>()
                .ok_or("x-sim-tokens-per-chunk: a list of whole numbers of at least 1")?;
            (1, pattern)
        }
        _ => (
            header_u32(headers, "x-sim-tokens-per-chunk")?.unwrap_or(cfg.tokens_per_chunk),
            Vec::new(),
        ),
    };
    if tokens_per_chunk == 0 {
        return Err("x-sim-tokens-per-chunk must be at least 1".to_owned());
    }
    let fail_status = match header_u64(headers, "x-sim-fail-status")? {
        Some(s) if (400..=599).contains(&s) => u16::try_from(s).ok(),
        Some(s) => return Err(format!("x-sim-fail-status must be 4xx or 5xx, got {s}")),
        None => cfg.fail_status,
    };
    let unary_garbage = match header_u64(headers, "x-sim-unary-garbage")? {
        Some(v) => v != 0,
        None => cfg.unary_garbage,
    };
    Ok(Overrides {
        ttft,
        itl,
        header_tokens,
        config_tokens: cfg.tokens,
        tokens_per_chunk,
        tokens_pattern,
        id: header_str(headers, "x-sim-id")?.map(str::to_owned),
        served_model: header_str(headers, "x-sim-served-model")?.map(str::to_owned),
        refuse_stream_options: header_u64(headers, "x-sim-refuse-stream-options")?.unwrap_or(0)
            != 0,
        cached_tokens: header_u32(headers, "x-sim-cached-tokens")?.or(cfg.cached_tokens),
        fail_status,
        error_after: header_u32(headers, "x-sim-error-after")?.or(cfg.error_after),
        reset_after: header_u32(headers, "x-sim-reset-after")?.or(cfg.reset_after),
        unary_garbage,
        flavor: cfg.flavor,
    })
}

/// Reads the JSON body and combines it with the overrides. The error is the message of a
/// 400 answer (`BadRequestError`, as vLLM answers a malformed request; SGLang's
/// `{"error":{"message":..}}` on `/generate`).
pub fn plan(api: Api, body: &[u8], ov: &Overrides, default_model: &str) -> Result<Plan, String> {
    let req: Value =
        serde_json::from_slice(body).map_err(|e| format!("request body is not JSON: {e}"))?;
    let obj = req
        .as_object()
        .ok_or_else(|| "request body must be a JSON object".to_owned())?;

    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("stream must be a boolean".to_owned()),
    };
    if api == Api::Generate {
        return generate_plan(obj, body, stream, ov, default_model);
    }
    let model = match obj.get("model") {
        None | Some(Value::Null) => default_model.to_owned(),
        Some(Value::String(m)) => m.clone(),
        Some(_) => return Err("model must be a string".to_owned()),
    };
    let model = ov.served_model.clone().unwrap_or(model);
    // vLLM's StreamOptions defaults include_usage to true once the object is present, and
    // only honours continuous_usage_stats together with include_usage.
    if ov.refuse_stream_options && obj.contains_key("stream_options") {
        // What a strict server with `extra="forbid"` request models answers.
        return Err("[{'type': 'extra_forbidden', 'loc': ('body', 'stream_options'), 'msg': 'Extra inputs are not permitted'}]".to_owned());
    }
    let (include_usage, continuous_usage) = match obj.get("stream_options") {
        None | Some(Value::Null) => (false, false),
        Some(Value::Object(so)) => {
            let include = opt_bool(so.get("include_usage"), "include_usage")?.unwrap_or(true);
            let continuous = opt_bool(so.get("continuous_usage_stats"), "continuous_usage_stats")?
                .unwrap_or(false);
            (include, include && continuous)
        }
        Some(_) => return Err("stream_options must be an object".to_owned()),
    };

    let body_tokens = match api {
        // Newer OpenAI clients send max_completion_tokens on chat; vLLM accepts both.
        Api::Chat => max_tokens(obj.get("max_completion_tokens"), "max_completion_tokens")?
            .or(max_tokens(obj.get("max_tokens"), "max_tokens")?),
        _ => max_tokens(obj.get("max_tokens"), "max_tokens")?,
    };
    let tokens = ov.header_tokens.or(body_tokens).unwrap_or(ov.config_tokens);

    let prompt_tokens = match api {
        Api::Chat => chat_prompt_tokens(obj.get("messages")),
        _ => completion_prompt_tokens(obj.get("prompt")),
    };

    let id = match (api, ov.flavor) {
        _ if ov.id.is_some() => ov.id.clone().unwrap_or_default(),
        (Api::Chat, _) => format!("chatcmpl-{:016x}", fnv1a64(body)),
        (_, Flavor::Vllm) => format!("cmpl-{:016x}", fnv1a64(body)),
        (_, Flavor::Trtllm) => format!("cmpl-{}", hex128(body)),
    };
    Ok(Plan {
        api,
        flavor: ov.flavor,
        id,
        model,
        stream,
        include_usage,
        continuous_usage,
        prompt_tokens,
        tokens,
        tokens_per_chunk: ov.tokens_per_chunk,
        tokens_pattern: ov.tokens_pattern.clone(),
        ttft: ov.ttft,
        itl: ov.itl,
        cached_tokens: ov.cached_tokens,
        error_after: ov.error_after,
        reset_after: ov.reset_after,
        unary_garbage: ov.unary_garbage,
    })
}

/// SGLang's `GenerateReqInput`, single-request form: `text` or `input_ids`,
/// `sampling_params.max_new_tokens` (0 allowed), `stream`, optional `rid`.
fn generate_plan(
    obj: &serde_json::Map<String, Value>,
    body: &[u8],
    stream: bool,
    ov: &Overrides,
    default_model: &str,
) -> Result<Plan, String> {
    let present = |key: &str| obj.get(key).is_some_and(|v| !v.is_null());
    if present("text") == present("input_ids") {
        return Err("Either text, input_ids or input_embeds should be provided.".to_owned());
    }
    let prompt_tokens = match (obj.get("text"), obj.get("input_ids")) {
        (Some(Value::String(text)), _) => count_words(text),
        (_, Some(Value::Array(ids))) if ids.iter().all(Value::is_u64) => saturate(ids.len()),
        (Some(Value::Array(_)), _) | (_, Some(Value::Array(_))) => {
            return Err("gpu-sim: batched /generate requests are not supported".to_owned())
        }
        _ => return Err("text must be a string, input_ids an array of token ids".to_owned()),
    };
    let max_new_tokens = match obj.get("sampling_params") {
        None | Some(Value::Null) => None,
        Some(Value::Object(sp)) => match sp.get("max_new_tokens") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                "sampling_params.max_new_tokens must be a non-negative integer".to_owned()
            })?),
        },
        Some(_) => return Err("sampling_params must be an object".to_owned()),
    };
    let body_tokens = max_new_tokens.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let id = match obj.get("rid") {
        Some(Value::String(rid)) => rid.clone(),
        None | Some(Value::Null) => hex128(body),
        Some(_) => return Err("rid must be a string".to_owned()),
    };
    Ok(Plan {
        api: Api::Generate,
        flavor: ov.flavor,
        id,
        model: default_model.to_owned(),
        stream,
        include_usage: false,
        continuous_usage: false,
        prompt_tokens,
        tokens: ov.header_tokens.or(body_tokens).unwrap_or(ov.config_tokens),
        tokens_per_chunk: ov.tokens_per_chunk,
        tokens_pattern: ov.tokens_pattern.clone(),
        ttft: ov.ttft,
        itl: ov.itl,
        cached_tokens: ov.cached_tokens,
        error_after: ov.error_after,
        reset_after: ov.reset_after,
        unary_garbage: ov.unary_garbage,
    })
}

/// 32 hex digits from the body, the length of a uuid4 hex: stable like [`fnv1a64`].
fn hex128(body: &[u8]) -> String {
    let mut salted = Vec::with_capacity(body.len() + 1);
    salted.extend_from_slice(body);
    salted.push(0xff);
    format!("{:016x}{:016x}", fnv1a64(body), fnv1a64(&salted))
}

/// 64-bit FNV-1a: tiny, stable across runs and platforms (unlike `DefaultHasher`).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Words in a string, the sim's stand-in for a tokenizer.
pub fn count_words(text: &str) -> u32 {
    saturate(text.split_whitespace().count())
}

fn chat_prompt_tokens(messages: Option<&Value>) -> u32 {
    let Some(Value::Array(messages)) = messages else {
        return 0;
    };
    messages
        .iter()
        .map(|m| match m.get("content") {
            Some(Value::String(s)) => count_words(s),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .map(count_words)
                .fold(0, u32::saturating_add),
            _ => 0,
        })
        .fold(0, u32::saturating_add)
}

fn completion_prompt_tokens(prompt: Option<&Value>) -> u32 {
    match prompt {
        Some(Value::String(s)) => count_words(s),
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => saturate(items.len()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| completion_prompt_tokens(Some(item)))
            .fold(0, u32::saturating_add),
        _ => 0,
    }
}

fn max_tokens(v: Option<&Value>, field: &str) -> Result<Option<u32>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            // vLLM rejects a request that asks for no output at all.
            Some(0) => Err(format!("{field} must be at least 1, got 0.")),
            Some(n) => Ok(Some(u32::try_from(n).unwrap_or(u32::MAX))),
            None => Err(format!("{field} must be a positive integer")),
        },
    }
}

fn opt_bool(v: Option<&Value>, field: &str) -> Result<Option<bool>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("stream_options.{field} must be a boolean")),
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    headers
        .get(name)
        .map(|v| v.to_str().map_err(|_| format!("{name} must be ASCII")))
        .transpose()
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>, String> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| format!("{name} must be a non-negative integer"))
}

fn header_u32(headers: &HeaderMap, name: &str) -> Result<Option<u32>, String> {
    header_u64(headers, name)?
        .map(|v| u32::try_from(v).map_err(|_| format!("{name} is too large")))
        .transpose()
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov() -> Overrides {
        overrides(&HeaderMap::new(), &SimConfig::default()).expect("defaults are valid")
    }

    #[test]
    fn counts_chat_words_across_messages_and_parts() {
        let body = br#"{"messages":[{"role":"system","content":"be  brief"},
            {"role":"user","content":[{"type":"text","text":"hello there world"}]}]}"#;
        let p = plan(Api::Chat, body, &ov(), "m").expect("valid");
        assert_eq!(p.prompt_tokens, 5);
        assert_eq!(p.model, "m");
        assert!(!p.stream);
    }

    #[test]
    fn counts_completion_prompts() {
        let count = |body: &[u8]| plan(Api::Completions, body, &ov(), "m").map(|p| p.prompt_tokens);
        assert_eq!(count(br#"{"prompt":"a b c"}"#), Ok(3));
        assert_eq!(count(br#"{"prompt":[1,2,3,4]}"#), Ok(4));
        assert_eq!(count(br#"{"prompt":[[1,2],[3]]}"#), Ok(3));
        assert_eq!(count(br#"{"prompt":["a b","c"]}"#), Ok(3));
    }

    #[test]
    fn header_beats_body_beats_config() {
        let mut h = HeaderMap::new();
        let body = br#"{"max_tokens":7}"#;
        assert_eq!(
            plan(Api::Completions, body, &ov(), "m").map(|p| p.tokens),
            Ok(7)
        );
        h.insert("x-sim-tokens", "3".parse().expect("header value"));
        let o = overrides(&h, &SimConfig::default()).expect("valid");
        assert_eq!(
            plan(Api::Completions, body, &o, "m").map(|p| p.tokens),
            Ok(3)
        );
        assert_eq!(
            plan(Api::Completions, b"{}", &ov(), "m").map(|p| p.tokens),
            Ok(16)
        );
    }

    #[test]
    fn stream_options_follow_vllm_defaults() {
        let p = |b: &[u8]| plan(Api::Chat, b, &ov(), "m").expect("valid");
        let a = p(br#"{"stream":true,"stream_options":{}}"#);
        assert!(a.include_usage && !a.continuous_usage);
        let b = p(br#"{"stream":true,"stream_options":{"include_usage":false,"continuous_usage_stats":true}}"#);
        assert!(!b.include_usage && !b.continuous_usage);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(plan(Api::Chat, b"nope", &ov(), "m").is_err());
        assert!(plan(Api::Chat, br#"{"max_tokens":0}"#, &ov(), "m").is_err());
        let mut h = HeaderMap::new();
        h.insert("x-sim-fail-status", "200".parse().expect("header value"));
        assert!(overrides(&h, &SimConfig::default()).is_err());
    }

    #[test]
    fn generate_reads_sglang_requests() {
        let p = |body: &[u8]| plan(Api::Generate, body, &ov(), "m");
        let a = p(br#"{"text":"a b c","sampling_params":{"max_new_tokens":2}}"#).expect("valid");
        assert_eq!((a.prompt_tokens, a.tokens, a.stream), (3, 2, false));
        assert!(!a.include_usage && a.id.len() == 32);
        let b = p(br#"{"input_ids":[1],"stream":true,"rid":"r1"}"#).expect("valid");
        assert_eq!((b.prompt_tokens, b.tokens, b.id.as_str()), (1, 16, "r1"));
        // SGLang allows a prefill-only request.
        let c = p(br#"{"input_ids":[1],"sampling_params":{"max_new_tokens":0}}"#);
        assert_eq!(c.map(|c| c.tokens), Ok(0));
        assert!(p(br#"{}"#).is_err());
        assert!(p(br#"{"text":"a","input_ids":[1]}"#).is_err());
        assert!(p(br#"{"input_ids":[[1],[2]]}"#).is_err());
        assert!(p(br#"{"text":"a","sampling_params":[]}"#).is_err());
    }

    #[test]
    fn trtllm_completion_ids_look_like_uuid_hex() {
        let mut h = HeaderMap::new();
        h.insert("x-sim-tokens", "1".parse().expect("header value"));
        let cfg = SimConfig {
            flavor: Flavor::Trtllm,
            ..SimConfig::default()
        };
        let o = overrides(&h, &cfg).expect("valid");
        let p = plan(Api::Completions, br#"{"prompt":[1]}"#, &o, "m").expect("valid");
        assert!(
            p.id.starts_with("cmpl-") && p.id.len() == 5 + 32,
            "{}",
            p.id
        );
        assert_eq!((p.prompt_tokens, p.flavor), (1, Flavor::Trtllm));
    }

    #[test]
    fn ids_are_stable() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
