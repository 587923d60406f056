//! The JSON and SSE bytes vLLM's OpenAI-compatible server emits, field for field and in
//! vLLM's field order (serde derives keep declaration order; `serde_json::json!` would sort
//! keys). Shapes follow vLLM's 0.6–0.9 serializers: `"usage":null` on every chunk when
//! `include_usage` is on, and `{"object":"error",...}` error objects.
//!
//! [`Shapes`] also builds SGLang's `/generate` events ([`super::sglang`]) and, with
//! [`Flavor::Trtllm`], trtllm-serve's `/v1/completions` ([`super::trtllm`]).

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use tokio::time::Instant;

use super::config::Flavor;
use super::plan::{Api, Plan};
use super::{sglang, trtllm};

/// `created` of every response: the unix second the first sim of this process started, so
/// the same request body gives the same bytes for the life of the process.
pub fn created() -> u64 {
    static CREATED: OnceLock<u64> = OnceLock::new();
    *CREATED.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// Text of output tokens `range` (0-based): token `i` is ` t{i}`.
pub fn token_text(range: std::ops::Range<u32>) -> String {
    let mut text = String::new();
    for i in range {
        // Writing to a String cannot fail.
        let _ = write!(text, " t{i}");
    }
    text
}

/// vLLM's error `type` for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "AuthenticationError",
        403 => "PermissionDeniedError",
        404 => "NotFoundError",
        408 => "RequestTimeoutError",
        413 => "RequestEntityTooLargeError",
        422 => "UnprocessableEntityError",
        429 => "RateLimitError",
        501 => "NotImplementedError",
        502 => "BadGatewayError",
        503 => "ServiceUnavailableError",
        504 => "GatewayTimeoutError",
        // vLLM reports the remaining client errors as BadRequestError.
        400..=499 => "BadRequestError",
        _ => "InternalServerError",
    }
}

/// vLLM's HTTP error body: `{"object":"error","message":..,"type":..,"param":null,"code":..}`.
pub fn error_body(status: u16, message: &str) -> Bytes {
    to_json(&ErrorObject::new(status, message))
}

/// `GET /v1/models` body in `flavor`'s shape.
pub fn models_body_for(flavor: Flavor, model: &str, created: u64) -> Bytes {
    if flavor == Flavor::Trtllm {
        return to_json(&trtllm::ModelList {
            object: "list",
            data: [trtllm::ModelCard {
                id: model,
                object: "model",
                created,
                owned_by: "tensorrt_llm",
            }],
        });
    }
    to_json(&ModelList {
        object: "list",
        data: [ModelCard {
            id: model,
            object: "model",
            created,
            owned_by: "vllm",
            root: model,
            parent: None,
            max_model_len: 4096,
        }],
    })
}

/// Builds every event of one response; owns what it needs so the generator task can hold it.
#[derive(Debug, Clone)]
pub struct Shapes {
    api: Api,
    flavor: Flavor,
    /// Request arrival, for SGLang's `e2e_latency`.
    arrived: Instant,
    id: String,
    model: String,
    created: u64,
    prompt_tokens: u32,
    include_usage: bool,
    continuous_usage: bool,
    cached_tokens: Option<u32>,
}

impl Shapes {
    pub fn new(plan: &Plan, created: u64) -> Self {
        Self {
            api: plan.api,
            flavor: plan.flavor,
            arrived: Instant::now(),
            id: plan.id.clone(),
            model: plan.model.clone(),
            created,
            prompt_tokens: plan.prompt_tokens,
            include_usage: plan.include_usage,
            continuous_usage: plan.continuous_usage,
            cached_tokens: plan.cached_tokens,
        }
    }

    /// Sets the arrival instant `e2e_latency` is measured from (default: construction).
    #[must_use]
    pub fn arrived_at(mut self, arrived: Instant) -> Self {
        self.arrived = arrived;
        self
    }

    fn trtllm_completions(&self) -> bool {
        self.api == Api::Completions && self.flavor == Flavor::Trtllm
    }

    /// Chat's first event, `delta: {"role":"assistant","content":""}`, sent before any token.
    /// Completions have none.
    pub fn role_chunk(&self) -> Option<Bytes> {
        match self.api {
            Api::Chat => Some(self.chat_chunk(
                ChatDelta {
                    role: Some("assistant"),
                    content: "",
                },
                None,
                0,
            )),
            Api::Completions | Api::Generate => None,
        }
    }

    /// One token event carrying `text`; `completion_tokens` counts tokens sent so far,
    /// this event's included. `last` marks the final token event (`finish_reason`).
    pub fn token_chunk(&self, text: &str, completion_tokens: u32, last: bool) -> Bytes {
        if self.api == Api::Generate {
            // SGLang sends the whole text so far, not the delta.
            return sse_raw(&self.generate_output(completion_tokens, last));
        }
        let finish_reason = last.then_some("length");
        if self.trtllm_completions() {
            return self.sse(&trtllm::StreamChunk {
                id: &self.id,
                object: "text_completion",
                created: self.created,
                model: &self.model,
                choices: &[trtllm::StreamChoice {
                    index: 0,
                    text,
                    token_ids: None,
                    logprobs: None,
                    finish_reason,
                    stop_reason: None,
                    avg_decoded_tokens_per_iter: None,
                }],
                usage: self.continuous_usage.then(|| {
                    trtllm::Usage::new(self.prompt_tokens, completion_tokens, self.cached_tokens)
                }),
            });
        }
        match self.api {
            Api::Chat => self.chat_chunk(
                ChatDelta {
                    role: None,
                    content: text,
                },
                finish_reason,
                completion_tokens,
            ),
            Api::Completions => self.sse(&Chunk {
                id: &self.id,
                object: "text_completion",
                created: self.created,
                model: &self.model,
                choices: &[CompletionStreamChoice {
                    index: 0,
                    text,
                    logprobs: None,
                    finish_reason,
                    stop_reason: None,
                }],
                usage: self.chunk_usage(completion_tokens),
            }),
            Api::Generate => unreachable!("handled above"),
        }
    }

    /// The extra event after the last token when `include_usage` is on: no choices.
    pub fn usage_chunk(&self, completion_tokens: u32) -> Bytes {
        if self.trtllm_completions() {
            return self.sse(&trtllm::StreamChunk {
                id: &self.id,
                object: "text_completion",
                created: self.created,
                model: &self.model,
                choices: &[],
                usage: Some(trtllm::Usage::new(
                    self.prompt_tokens,
                    completion_tokens,
                    self.cached_tokens,
                )),
            });
        }
        self.sse(&Chunk::<ChatStreamChoice<'_>> {
            id: &self.id,
            object: self.chunk_object(),
            created: self.created,
            model: &self.model,
            choices: &[],
            // vLLM drops null fields on this one event, so details appear only when known.
            usage: Some(Some(Usage::new(
                self.prompt_tokens,
                completion_tokens,
                self.cached_tokens
                    .map(|c| Some(PromptTokensDetails { cached_tokens: c })),
            ))),
        })
    }

    /// vLLM's in-stream error event, sent inside a 200 stream when the engine fails.
    pub fn stream_error(&self) -> Bytes {
        if self.api == Api::Generate {
            return sse_raw(&sglang::error_body("simulated engine failure"));
        }
        self.sse(&StreamError {
            error: ErrorObject::new(500, "simulated engine failure"),
        })
    }

    /// The stream terminator.
    pub fn done() -> Bytes {
        Bytes::from_static(b"data: [DONE]\n\n")
    }

    /// The whole non-streaming response for `tokens` output tokens.
    pub fn unary(&self, tokens: u32) -> Bytes {
        if self.api == Api::Generate {
            return self.generate_output(tokens, true);
        }
        let text = token_text(0..tokens);
        if self.trtllm_completions() {
            return to_json(&trtllm::Completion {
                id: &self.id,
                object: "text_completion",
                created: self.created,
                model: &self.model,
                choices: [trtllm::Choice {
                    index: 0,
                    text: &text,
                    token_ids: None,
                    logprobs: None,
                    context_logits: None,
                    finish_reason: "length",
                    stop_reason: None,
                    disaggregated_params: None,
                    avg_decoded_tokens_per_iter: None,
                }],
                usage: trtllm::Usage::new(self.prompt_tokens, tokens, self.cached_tokens),
                prompt_token_ids: None,
            });
        }
        // Unary usage always carries prompt_tokens_details, null when unknown.
        let usage = Usage::new(
            self.prompt_tokens,
            tokens,
            Some(
                self.cached_tokens
                    .map(|c| PromptTokensDetails { cached_tokens: c }),
            ),
        );
        match self.api {
            Api::Chat => to_json(&Completion {
                id: &self.id,
                object: "chat.completion",
                created: self.created,
                model: &self.model,
                choices: [ChatChoice {
                    index: 0,
                    message: ChatMessage {
                        role: "assistant",
                        content: &text,
                        tool_calls: [],
                    },
                    logprobs: None,
                    finish_reason: "length",
                    stop_reason: None,
                }],
                usage,
            }),
            Api::Completions => to_json(&Completion {
                id: &self.id,
                object: "text_completion",
                created: self.created,
                model: &self.model,
                choices: [CompletionChoice {
                    index: 0,
                    text: &text,
                    logprobs: None,
                    finish_reason: "length",
                    stop_reason: None,
                }],
                usage,
            }),
            Api::Generate => unreachable!("handled above"),
        }
    }

    /// SGLang's output after `tokens` tokens: cumulative text and ids, the finish reason and
    /// `e2e_latency` only when `finished`.
    fn generate_output(&self, tokens: u32, finished: bool) -> Bytes {
        let text = token_text(0..tokens);
        to_json(&sglang::Output {
            text: &text,
            output_ids: (0..tokens).collect(),
            meta_info: sglang::MetaInfo {
                id: &self.id,
                finish_reason: finished.then(|| sglang::FinishReason::length(tokens)),
                prompt_tokens: self.prompt_tokens,
                weight_version: "default",
                total_retractions: 0,
                completion_tokens: tokens,
                cached_tokens: self.cached_tokens.unwrap_or(0),
                e2e_latency: finished.then(|| self.arrived.elapsed().as_secs_f64()),
            },
        })
    }

    fn chat_chunk(
        &self,
        delta: ChatDelta<'_>,
        finish_reason: Option<&'static str>,
        completion_tokens: u32,
    ) -> Bytes {
        let last = finish_reason.is_some();
        self.sse(&Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: &[ChatStreamChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
                // vLLM sets stop_reason only on the finishing chunk.
                stop_reason: last.then_some(None),
            }],
            usage: self.chunk_usage(completion_tokens),
        })
    }

    fn chunk_object(&self) -> &'static str {
        match self.api {
            Api::Chat => "chat.completion.chunk",
            Api::Completions | Api::Generate => "text_completion",
        }
    }

    /// `usage` of a role or token chunk: absent without include_usage, null with it, the
    /// running count with continuous_usage_stats.
    fn chunk_usage(&self, completion_tokens: u32) -> Option<Option<Usage>> {
        if self.continuous_usage {
            Some(Some(Usage::new(
                self.prompt_tokens,
                completion_tokens,
                None,
            )))
        } else if self.include_usage {
            Some(None)
        } else {
            None
        }
    }

    fn sse<T: Serialize>(&self, event: &T) -> Bytes {
        sse_raw(&to_json(event))
    }
}

/// `data: JSON\n\n`
fn sse_raw(json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn to_json<T: Serialize>(value: &T) -> Bytes {
    // The shapes are plain structs of strings and integers: serializing them cannot fail.
    Bytes::from(serde_json::to_vec(value).expect("plain structs always serialize"))
}

#[derive(Serialize)]
struct Chunk<'a, C> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [C],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
struct ChatDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    content: &'a str,
}

#[derive(Serialize)]
struct ChatStreamChoice<'a> {
    index: u32,
    delta: ChatDelta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_reason: Option<Option<()>>,
}

#[derive(Serialize)]
struct CompletionStreamChoice<'a> {
    index: u32,
    text: &'a str,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
    stop_reason: Option<()>,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u32,
    total_tokens: u32,
    completion_tokens: u32,
    /// Absent (`None`), null (`Some(None)`) or the details, depending on the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<Option<PromptTokensDetails>>,
}

impl Usage {
    fn new(prompt: u32, completion: u32, details: Option<Option<PromptTokensDetails>>) -> Self {
        Self {
            prompt_tokens: prompt,
            total_tokens: prompt.saturating_add(completion),
            completion_tokens: completion,
            prompt_tokens_details: details,
        }
    }
}

#[derive(Serialize)]
struct PromptTokensDetails {
    cached_tokens: u32,
}

#[derive(Serialize)]
struct Completion<'a, C> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [C; 1],
    usage: Usage,
}

#[derive(Serialize)]
struct ChatChoice<'a> {
    index: u32,
    message: ChatMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
    stop_reason: Option<()>,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'static str,
    content: &'a str,
    tool_calls: [(); 0],
}

#[derive(Serialize)]
struct CompletionChoice<'a> {
    index: u32,
    text: &'a str,
    logprobs: Option<()>,
    finish_reason: &'static str,
    stop_reason: Option<()>,
}

#[derive(Serialize)]
struct ErrorObject<'a> {
    object: &'static str,
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<()>,
    code: u16,
}

impl<'a> ErrorObject<'a> {
    fn new(status: u16, message: &'a str) -> Self {
        Self {
            object: "error",
            message,
            kind: error_type(status),
            param: None,
            code: status,
        }
    }
}

#[derive(Serialize)]
struct StreamError<'a> {
    error: ErrorObject<'a>,
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: [ModelCard<'a>; 1],
}

#[derive(Serialize)]
struct ModelCard<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
    root: &'a str,
    parent: Option<()>,
    max_model_len: u32,
}
