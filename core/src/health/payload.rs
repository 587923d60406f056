//! The smallest real inference each backend accepts (one output token, greedy, a one-token
//! prompt; for an image-diffusion worker, one small image in one denoising step). What counts
//! as a successful answer is `answer.rs`'s. As Dynamo's health checks: temperature 0,
//! `max_tokens` 1, `ignore_eos` false, the BOS token id as the prompt (or the text "Test");
//! an image of 512x512 in one step, returned inline (`b64_json`).

use crate::config::health::{Backend, TargetConfig};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRequest {
    pub method: &'static str,
    pub path: &'static str,
    pub body: Option<String>,
}

/// Where a model list comes from when a target names no model.
pub const MODELS_PATH: &str = "/v1/models";

/// SGLang's warm-up of a disaggregated prefill server uses this bootstrap host: the server
/// prefills and hands the KV cache to nobody, instead of waiting for a decode peer.
const SGLANG_FAKE_BOOTSTRAP_HOST: &str = "2.2.2.2";

/// The OpenAI Images API path that image-diffusion workers serve.
pub const IMAGES_PATH: &str = "/v1/images/generations";

/// Whether a probe of `t` needs a model name it does not have (then `GET /v1/models` first).
/// SGLang's `/generate` takes none; an image worker serves one model and takes the request
/// without one (vLLM-Omni refuses a `model` that is not the one it serves).
pub fn needs_model(t: &TargetConfig) -> bool {
    t.payload.is_none()
        && t.model.is_none()
        && !matches!(t.backend, Backend::Sglang | Backend::Diffusion)
}

pub fn models_request() -> ProbeRequest {
    ProbeRequest {
        method: "GET",
        path: MODELS_PATH,
        body: None,
    }
}

pub fn probe_request(t: &TargetConfig, model: Option<&str>) -> ProbeRequest {
    let path = match t.backend {
        Backend::Vllm | Backend::Trtllm => "/v1/completions",
        Backend::Sglang => "/generate",
        Backend::Openai => "/v1/chat/completions",
        Backend::Diffusion => IMAGES_PATH,
    };
    let body = match &t.payload {
        Some(custom) => custom.clone(),
        None => builtin_body(t, model.or(t.model.as_deref())),
    };
    ProbeRequest {
        method: "POST",
        path,
        body: Some(body),
    }
}

/// The built-in probe body (keys sorted, as serde_json's map writes them).
fn builtin_body(t: &TargetConfig, model: Option<&str>) -> String {
    let prompt = if t.use_text_input {
        json!("Test")
    } else {
        json!([t.bos_token_id])
    };
    let mut body = Map::new();
    let mut set = |key: &str, value: Value| {
        body.insert(key.to_string(), value);
    };
    match t.backend {
        Backend::Vllm | Backend::Trtllm => {
            if t.backend == Backend::Vllm {
                set("ignore_eos", json!(false));
            }
            set("max_tokens", json!(1));
            set("model", json!(model));
            set("prompt", prompt);
            set("stream", json!(false));
            set("temperature", json!(0));
            match (t.prefill, t.backend) {
                // What vLLM's P/D proxy sends a prefill worker (NixlConnector): prefill, keep
                // the KV cache for a remote decode.
                (true, Backend::Vllm) => set(
                    "kv_transfer_params",
                    json!({
                        "do_remote_decode": true,
                        "do_remote_prefill": false,
                        "remote_block_ids": null,
                        "remote_engine_id": null,
                        "remote_host": null,
                        "remote_port": null,
                    }),
                ),
                (true, _) => set(
                    "disaggregated_params",
                    json!({"request_type": "context_only"}),
                ),
                (false, _) => {}
            }
        }
        Backend::Sglang => {
            set(
                "sampling_params",
                json!({"ignore_eos": false, "max_new_tokens": 1, "temperature": 0}),
            );
            set("stream", json!(false));
            set(
                if t.use_text_input {
                    "text"
                } else {
                    "input_ids"
                },
                prompt,
            );
            if t.prefill {
                // SGLang's warm-up of a prefill server: no decode peer waits for the KV cache.
                set("bootstrap_host", json!(SGLANG_FAKE_BOOTSTRAP_HOST));
                set("bootstrap_room", json!(0));
            }
        }
        Backend::Openai => {
            set("max_tokens", json!(1));
            set("messages", json!([{"content": "Test", "role": "user"}]));
            set("model", json!(model));
            set("stream", json!(false));
            set("temperature", json!(0));
        }
        Backend::Diffusion => {
            // Dynamo's image-diffusion check, less its `guidance_scale` of 7.5: the model's
            // own default fits step-distilled models (guidance 0) and needs no second pass.
            if let Some(m) = model {
                set("model", json!(m));
            }
            set("n", json!(1));
            set("num_inference_steps", json!(1));
            set("prompt", json!("test"));
            set("response_format", json!("b64_json"));
            set("size", json!("512x512"));
        }
    }
    Value::Object(body).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn target(extra: &str, backend: &str) -> TargetConfig {
        let json = format!(
            r#"{{"health":{{"targets":[{{"name":"t","cluster":"c","backend":"{backend}"{extra}}}]}}}}"#
        );
        let c = Config::parse(json.as_bytes(), None).unwrap();
        c.health.unwrap().targets.remove(0)
    }

    // The exact payload of every backend is in the shared case table (llm-pulse-cases
    // `probe_payloads`), run natively and on the .wasm.

    #[test]
    fn configured_model_and_custom_payload() {
        let t = target(r#","model":"llama""#, "vllm");
        assert!(!needs_model(&t));
        assert!(probe_request(&t, None)
            .body
            .unwrap()
            .contains(r#""model":"llama""#));
        let t = target(r#","payload":{"prompt":"hi","max_tokens":1}"#, "vllm");
        assert!(!needs_model(&t));
        assert_eq!(
            probe_request(&t, None).body.as_deref(),
            Some(r#"{"max_tokens":1,"prompt":"hi"}"#)
        );
        assert!(needs_model(&target("", "vllm")));
        assert!(!needs_model(&target("", "sglang")));
    }

    #[test]
    fn diffusion_sends_one_small_image_in_one_step() {
        let t = target("", "diffusion");
        assert!(!needs_model(&t));
        let r = probe_request(&t, None);
        assert_eq!((r.method, r.path), ("POST", "/v1/images/generations"));
        assert_eq!(
            r.body.as_deref(),
            Some(
                r#"{"n":1,"num_inference_steps":1,"prompt":"test","response_format":"b64_json","size":"512x512"}"#
            )
        );
        // A configured model is named; a custom payload replaces the body, not the path.
        let t = target(r#","model":"Qwen/Qwen-Image""#, "diffusion");
        assert!(probe_request(&t, None)
            .body
            .unwrap()
            .starts_with(r#"{"model":"Qwen/Qwen-Image","n":1,"#));
        let t = target(r#","payload":{"prompt":"a","size":"256x256"}"#, "diffusion");
        let r = probe_request(&t, None);
        assert_eq!(r.path, "/v1/images/generations");
        assert_eq!(
            r.body.as_deref(),
            Some(r#"{"prompt":"a","size":"256x256"}"#)
        );
    }
}
