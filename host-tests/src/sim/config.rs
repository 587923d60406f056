//! Server-wide settings of the simulated worker.
//!
//! Every knob here is a default: a request can override timing and faults with `x-sim-*`
//! headers (see [`super::plan`]). Faults live in the config too because the filter's health
//! probes are built by the filter, not by the test, so they cannot carry test headers: a test
//! that wants a failing or hung worker flips the config with [`super::SimHandle::update_config`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Whose OpenAI-compatible server the sim imitates on `/v1/completions` and `/v1/models`
/// (chat and SGLang's `/generate` are the same in every flavor).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// vLLM's serializers (the default).
    #[default]
    Vllm,
    /// `trtllm-serve`: every optional field present as `null` (`token_ids`,
    /// `context_logits`, `disaggregated_params`, `avg_decoded_tokens_per_iter`, top-level
    /// `prompt_token_ids`), `"usage": null` on every stream chunk, usage always with
    /// `prompt_tokens_details`, models `owned_by: "tensorrt_llm"`.
    Trtllm,
}

impl Flavor {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vllm => "vllm",
            Self::Trtllm => "trtllm",
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Flavor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "vllm" => Ok(Self::Vllm),
            "trtllm" | "trt-llm" => Ok(Self::Trtllm),
            other => Err(format!("unknown flavor `{other}` (want vllm or trtllm)")),
        }
    }
}

/// Settings of one simulated worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Request arrival -> first token chunk.
    pub ttft: Duration,
    /// Per-token latency after the first chunk (a chunk of k tokens waits k × `itl`).
    pub itl: Duration,
    /// Output tokens per response when the request has no `max_tokens`.
    pub tokens: u32,
    /// Tokens per streamed chunk (the last chunk may carry fewer).
    pub tokens_per_chunk: u32,
    /// Served model name: `/v1/models`, and the echo when a request names no model.
    pub model: String,
    /// Report `prompt_tokens_details.cached_tokens` in usage.
    pub cached_tokens: Option<u32>,
    /// Answer every inference request at once with this 4xx/5xx status.
    pub fail_status: Option<u16>,
    /// Streaming: after this many tokens, send vLLM's in-stream error event.
    pub error_after: Option<u32>,
    /// Streaming: after this many tokens, drop the connection mid-body.
    pub reset_after: Option<u32>,
    /// Unary: answer 200 `application/json` with a body that is not JSON.
    pub unary_garbage: bool,
    /// TTFT multiplier in [`super::Mode::Slow`].
    pub slow_factor: u32,
    /// Response shapes of `/v1/completions` and `/v1/models`.
    pub flavor: Flavor,
    /// `/v1/images/generations`: each image's `b64_json` is this many base64 characters (a
    /// real 512x512 PNG is ~0.3-1.4 MB of them) instead of the 1x1 PNG.
    pub image_b64_len: Option<usize>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            ttft: Duration::from_millis(150),
            itl: Duration::from_millis(20),
            tokens: 16,
            tokens_per_chunk: 1,
            model: "sim-model".to_owned(),
            cached_tokens: None,
            fail_status: None,
            error_after: None,
            reset_after: None,
            unary_garbage: false,
            slow_factor: 10,
            flavor: Flavor::Vllm,
            image_b64_len: None,
        }
    }
}

impl SimConfig {
    /// Rejects settings the generator cannot honour, naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.tokens == 0 {
            anyhow::bail!("tokens must be at least 1");
        }
        if self.tokens_per_chunk == 0 {
            anyhow::bail!("tokens_per_chunk must be at least 1");
        }
        if self.slow_factor == 0 {
            anyhow::bail!("slow_factor must be at least 1");
        }
        if self.model.is_empty() {
            anyhow::bail!("model must not be empty");
        }
        if let Some(status) = self.fail_status {
            if !(400..=599).contains(&status) {
                anyhow::bail!("fail_status must be a 4xx or 5xx status, got {status}");
            }
        }
        Ok(())
    }
}
