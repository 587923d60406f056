//! SGLang's native `POST /generate` shapes (SGLang 0.4/0.5 `TokenizerManager` output, single
//! request, text mode, `incremental_streaming_output` off), in SGLang's key order:
//!
//! - unary: `{"text": ALL, "output_ids": [..], "meta_info": {"id", "finish_reason",
//!   "prompt_tokens", "weight_version", "total_retractions", "completion_tokens",
//!   "cached_tokens", "e2e_latency"}}`;
//! - stream: one `data: {same shape}` event per chunk, `text` and `output_ids` cumulative,
//!   `completion_tokens` the running count, `finish_reason` null until the last event, which
//!   alone carries `e2e_latency`; then `data: [DONE]`. No role chunk, no usage event.
//! - `finish_reason` on the last event: `{"type": "length", "length": N}`;
//! - errors: `{"error": {"message": ..}}` (an HTTP error body, or an event inside a stream).
//!
//! Output token `i` has text ` t{i}` (as everywhere in the sim) and id `i`.

use bytes::Bytes;
use serde::Serialize;

/// One `/generate` answer or stream event.
#[derive(Serialize)]
pub struct Output<'a> {
    pub text: &'a str,
    pub output_ids: Vec<u32>,
    pub meta_info: MetaInfo<'a>,
}

#[derive(Serialize)]
pub struct MetaInfo<'a> {
    pub id: &'a str,
    pub finish_reason: Option<FinishReason>,
    pub prompt_tokens: u32,
    pub weight_version: &'static str,
    pub total_retractions: u32,
    pub completion_tokens: u32,
    pub cached_tokens: u32,
    /// Seconds from arrival to the last token; only on the finished output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e_latency: Option<f64>,
}

/// SGLang's `FINISH_LENGTH.to_json()`.
#[derive(Serialize)]
pub struct FinishReason {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub length: u32,
}

impl FinishReason {
    pub fn length(tokens: u32) -> Self {
        Self {
            kind: "length",
            length: tokens,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorMessage<'a>,
}

#[derive(Serialize)]
struct ErrorMessage<'a> {
    message: &'a str,
}

/// `{"error":{"message":..}}`: SGLang's error body, over HTTP and inside a stream.
pub fn error_body(message: &str) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&ErrorBody {
            error: ErrorMessage { message },
        })
        .expect("plain structs always serialize"),
    )
}
