//! `trtllm-serve`'s `/v1/completions` and `/v1/models` shapes (TensorRT-LLM 1.x
//! `openai_protocol.py` models, serialized with pydantic's `model_dump`, i.e. every optional
//! field present, `null` when unset), in its field order.
//!
//! Differences from vLLM that a parser may trip on:
//! - choices carry `token_ids`, `avg_decoded_tokens_per_iter` (and unary also
//!   `context_logits`, `disaggregated_params`) as `null`; the unary response has a top-level
//!   `"prompt_token_ids": null`;
//! - every stream chunk has `"usage": null` (vLLM omits it without `include_usage`);
//! - usage always has `prompt_tokens_details: {"cached_tokens": N}` (0 when unknown);
//! - ids are `cmpl-` + 32 hex digits; models are `owned_by: "tensorrt_llm"` with no `root`,
//!   `parent` or `max_model_len`.
//!
//! Errors and `[DONE]` are as vLLM's. A token-id prompt (`"prompt": [1]`) is accepted by both.

use serde::Serialize;

#[derive(Serialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
    pub completion_tokens: u32,
    pub prompt_tokens_details: PromptTokensDetails,
}

impl Usage {
    pub fn new(prompt: u32, completion: u32, cached: Option<u32>) -> Self {
        Self {
            prompt_tokens: prompt,
            total_tokens: prompt.saturating_add(completion),
            completion_tokens: completion,
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: cached.unwrap_or(0),
            },
        }
    }
}

#[derive(Serialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: u32,
}

/// `CompletionStreamResponse`: token chunks and the final usage chunk (empty `choices`).
#[derive(Serialize)]
pub struct StreamChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: &'a [StreamChoice<'a>],
    pub usage: Option<Usage>,
}

/// `CompletionResponseStreamChoice`.
#[derive(Serialize)]
pub struct StreamChoice<'a> {
    pub index: u32,
    pub text: &'a str,
    pub token_ids: Option<()>,
    pub logprobs: Option<()>,
    pub finish_reason: Option<&'static str>,
    pub stop_reason: Option<()>,
    pub avg_decoded_tokens_per_iter: Option<()>,
}

/// `CompletionResponse`.
#[derive(Serialize)]
pub struct Completion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: [Choice<'a>; 1],
    pub usage: Usage,
    pub prompt_token_ids: Option<()>,
}

/// `CompletionResponseChoice`.
#[derive(Serialize)]
pub struct Choice<'a> {
    pub index: u32,
    pub text: &'a str,
    pub token_ids: Option<()>,
    pub logprobs: Option<()>,
    pub context_logits: Option<()>,
    pub finish_reason: &'static str,
    pub stop_reason: Option<()>,
    pub disaggregated_params: Option<()>,
    pub avg_decoded_tokens_per_iter: Option<()>,
}

#[derive(Serialize)]
pub struct ModelList<'a> {
    pub object: &'static str,
    pub data: [ModelCard<'a>; 1],
}

#[derive(Serialize)]
pub struct ModelCard<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}
