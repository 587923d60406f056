//! The OpenAI Images API as an image-diffusion worker serves it (vLLM-Omni's
//! `POST /v1/images/generations`): the request checked as vLLM-Omni checks it, the answer in
//! its shape (`created`, `data` of `{"b64_json", "url": null, "revised_prompt": null}`,
//! `output_format`, `size`). Every image is the same 1x1 PNG (or, with
//! `SimConfig::image_b64_len`, that many base64 characters): the filter judges the answer's
//! shape, not the pixels.
//!
//! Generating takes the config's TTFT plus one ITL per denoising step (`num_inference_steps`,
//! 1 when absent), so a slow worker ([`super::Mode::Slow`]) is slow here too.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

pub const PATH: &str = "/v1/images/generations";

/// A valid 1x1 RGB PNG, base64-encoded (69 bytes decoded).
pub const PNG_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR42mNgYGAAAAAEAAHI6uv5AAAAAElFTkSuQmCC";

/// Where a `response_format: "url"` image is said to be.
const URL_BASE: &str = "http://gpu-sim.invalid/images/";

/// One generation request, as checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRequest {
    pub n: u32,
    pub steps: u32,
    /// `WIDTHxHEIGHT` as asked, if asked.
    pub size: Option<String>,
    pub by_url: bool,
}

impl ImageRequest {
    /// How long generating takes: TTFT, then `itl` per denoising step.
    pub fn duration(&self, ttft: Duration, itl: Duration) -> Duration {
        ttft.saturating_add(itl.saturating_mul(self.steps))
    }
}

/// Checks a request body: `prompt` a non-empty string, `n` 1-10, `size` `WxH`,
/// `response_format` `b64_json` or `url`, `num_inference_steps` 1-200. The error is the
/// message of a 400.
pub fn parse(body: &[u8]) -> Result<ImageRequest, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("request body is not JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| "request body must be a JSON object".to_owned())?;
    match obj.get("prompt").and_then(Value::as_str) {
        Some(p) if !p.is_empty() => {}
        _ => return Err("prompt: a non-empty string is required".to_owned()),
    }
    let int = |key: &str, lo: u64, hi: u64, default: u32| -> Result<u32, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => x
                .as_u64()
                .filter(|n| (lo..=hi).contains(n))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("{key}: an integer from {lo} to {hi} is required")),
        }
    };
    let n = int("n", 1, 10, 1)?;
    let steps = int("num_inference_steps", 1, 200, 1)?;
    let size = match obj.get("size") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if valid_size(s) => Some(s.clone()),
        Some(_) => return Err("size must be in format 'WIDTHxHEIGHT'".to_owned()),
    };
    let by_url = match obj.get("response_format").and_then(Value::as_str) {
        None | Some("b64_json") => false,
        Some("url") => true,
        Some(other) => return Err(format!("response_format {other:?} is not supported")),
    };
    Ok(ImageRequest {
        n,
        steps,
        size,
        by_url,
    })
}

fn valid_size(s: &str) -> bool {
    let positive = |d: &str| d.parse::<u32>().is_ok_and(|n| n > 0);
    s.split_once('x')
        .is_some_and(|(w, h)| positive(w) && positive(h))
}

#[derive(Serialize)]
struct ImageData<'a> {
    b64_json: Option<&'a str>,
    url: Option<String>,
    revised_prompt: Option<String>,
}

#[derive(Serialize)]
struct ImagesResponse<'a> {
    created: u64,
    data: Vec<ImageData<'a>>,
    output_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<&'a str>,
}

/// The answer to `req`, generated at `created` (unix seconds); each image `b64_len` base64
/// characters when given, else [`PNG_B64`].
pub fn answer_body(req: &ImageRequest, created: u64, b64_len: Option<usize>) -> Bytes {
    let padded = b64_len.map(|n| "A".repeat(n));
    let b64 = padded.as_deref().unwrap_or(PNG_B64);
    let data = (0..req.n)
        .map(|i| ImageData {
            b64_json: (!req.by_url).then_some(b64),
            url: req.by_url.then(|| format!("{URL_BASE}{i}.png")),
            revised_prompt: None,
        })
        .collect();
    let body = ImagesResponse {
        created,
        data,
        output_format: "png",
        size: req.size.as_deref(),
    };
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_requests_as_vllm_omni_does() {
        let probe = br#"{"prompt":"test","n":1,"size":"512x512","num_inference_steps":1,"response_format":"b64_json"}"#;
        let r = parse(probe).unwrap();
        assert_eq!(
            r,
            ImageRequest {
                n: 1,
                steps: 1,
                size: Some("512x512".into()),
                by_url: false
            }
        );
        assert_eq!(
            r.duration(Duration::from_millis(100), Duration::from_millis(20)),
            Duration::from_millis(120)
        );
        for bad in [
            &b"nope"[..],
            br#"[]"#,
            br#"{"n":1}"#,
            br#"{"prompt":""}"#,
            br#"{"prompt":"a","n":0}"#,
            br#"{"prompt":"a","n":11}"#,
            br#"{"prompt":"a","size":"512"}"#,
            br#"{"prompt":"a","size":"0x512"}"#,
            br#"{"prompt":"a","num_inference_steps":0}"#,
            br#"{"prompt":"a","response_format":"file"}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn answers_in_vllm_omni_shape() {
        let r = parse(br#"{"prompt":"a","n":2,"size":"64x64"}"#).unwrap();
        let v: Value = serde_json::from_slice(&answer_body(&r, 7, None)).unwrap();
        assert_eq!(v["created"], 7);
        assert_eq!(v["size"], "64x64");
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["data"][1]["b64_json"], PNG_B64);
        assert_eq!(v["data"][1]["url"], Value::Null);
        let r = parse(br#"{"prompt":"a","response_format":"url"}"#).unwrap();
        let v: Value = serde_json::from_slice(&answer_body(&r, 7, None)).unwrap();
        assert_eq!(v["data"][0]["url"], "http://gpu-sim.invalid/images/0.png");
        assert_eq!(v["data"][0]["b64_json"], Value::Null);
        assert!(v.get("size").is_none());
        let r = parse(br#"{"prompt":"a"}"#).unwrap();
        let v: Value = serde_json::from_slice(&answer_body(&r, 7, Some(1_000))).unwrap();
        assert_eq!(v["data"][0]["b64_json"].as_str().unwrap().len(), 1_000);
    }
}
