//! Judging a worker's answer to a probe (a completion, or an image from an image-diffusion
//! worker) or to `GET /v1/models` (docs/design.md, "Health probes" and "Untrusted input"): the
//! body is fed in chunks to the streaming JSON scanner
//! ([`crate::protocol::json`]) and never kept or parsed into a tree, so judging it costs O(1)
//! memory whatever the worker sends. The caller refuses probe answers over
//! `health.max_answer_bytes` before reading a byte of them ([`too_large`]), and reads a model list
//! only until its first id, at most `health.max_answer_bytes` of it.
//!
//! Every string that comes out of here is bounded: a model id to [`MAX_MODEL_ID_BYTES`], the
//! worker's own words (only kept when `health.details` is on) to [`WORKER_TEXT_BYTES`]; the
//! rest of an error is our own fixed text.

use crate::config::health::{Backend, Expect};
use crate::protocol::json::{JsonScanner, Scalar, Slot, Visitor, CAPTURE_CAP, IGNORE};

/// Longest model id taken from `/v1/models`: a longer one is a failed discovery, never cut
/// (a cut id would name another model). Hugging Face ids are at most 96 + 1 + 96 bytes in
/// theory, far less in practice; set `model` in the config for anything longer.
pub const MAX_MODEL_ID_BYTES: usize = CAPTURE_CAP;
/// Most of the worker's own text (an error body or message) an error keeps, with details on.
pub const WORKER_TEXT_BYTES: usize = 120;

/// `finish_reason` values that mean the generation did not happen: vLLM's `abort` and
/// `error` (`FINISH_REASON_STRINGS`), TRT-LLM's `cancelled` and `timeout`; SGLang reports
/// `meta_info.finish_reason: {"type": "abort", ...}`.
const FAILED_FINISH: [&[u8]; 4] = [b"abort", b"error", b"cancelled", b"timeout"];

const ROOT: Slot = 1;
/// An element of a root array (SGLang's batched answer), judged as the root object.
const ITEM: Slot = 2;
const OBJECT: Slot = 3;
const CHOICES: Slot = 4;
const CHOICE: Slot = 5;
const FINISH: Slot = 6;
const TEXT: Slot = 7;
const META: Slot = 8;
const META_FINISH: Slot = 9;
const META_FINISH_TYPE: Slot = 10;
const ERROR: Slot = 11;
const MESSAGE: Slot = 12;
const DATA: Slot = 13;
const MODEL: Slot = 14;
const MODEL_ID: Slot = 15;
/// An element of an image answer's `data`.
const IMAGE: Slot = 16;
/// An image's `b64_json` or `url`.
const IMAGE_REF: Slot = 17;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A completion of this backend.
    Completion(Backend),
    /// The OpenAI Images API's answer: `{"created":..,"data":[{"b64_json":".."}]}`.
    Image,
    Models,
}

/// What the scanner saw: counts and flags, a few bounded captures.
#[derive(Default)]
struct Facts {
    root_items: u32,
    choices: u32,
    texts: u32,
    /// An `"object": "error"`, or an `"error"` member that is not `null`.
    error_object: bool,
    failed_finish: Option<&'static str>,
    message: Option<Vec<u8>>,
    models: u32,
    /// Elements of an image answer's `data`, and how many `b64_json`/`url` strings in them
    /// were not empty.
    images: u32,
    image_refs: u32,
    model_id: Option<Vec<u8>>,
    model_id_too_long: bool,
    /// Whether to keep the worker's `message` (`health.details`).
    keep_message: bool,
}

struct Judge {
    kind: Kind,
    facts: Facts,
}

fn failed_finish(text: &[u8]) -> Option<&'static str> {
    FAILED_FINISH
        .iter()
        .find(|f| **f == text)
        .and_then(|f| std::str::from_utf8(f).ok())
}

impl Visitor for Judge {
    fn child(&mut self, parent: Slot, key: &[u8]) -> Slot {
        match (self.kind, parent, key) {
            (Kind::Models, ROOT, b"data") => DATA,
            (Kind::Models, MODEL, b"id") => MODEL_ID,
            (Kind::Models, _, _) => IGNORE,
            (Kind::Image, ROOT, b"data") => DATA,
            (Kind::Image, IMAGE, b"b64_json" | b"url") => IMAGE_REF,
            (Kind::Image, ROOT, b"object") => OBJECT,
            (Kind::Image, ROOT, b"error") => {
                self.facts.error_object = true;
                ERROR
            }
            (Kind::Image, ERROR, b"message") => MESSAGE,
            (Kind::Image, _, _) => IGNORE,
            (_, ROOT | ITEM, b"object") => OBJECT,
            (_, ROOT | ITEM, b"choices") => CHOICES,
            (_, ROOT | ITEM, b"text") => TEXT,
            (_, ROOT | ITEM, b"meta_info") => META,
            (_, ROOT | ITEM, b"message") => MESSAGE,
            (_, ROOT | ITEM, b"error") => {
                // `"error": null` takes it back (see `scalar`).
                self.facts.error_object = true;
                ERROR
            }
            (_, ERROR, b"message") => MESSAGE,
            (_, CHOICE, b"finish_reason") => FINISH,
            (_, META, b"finish_reason") => META_FINISH,
            (_, META_FINISH, b"type") => META_FINISH_TYPE,
            _ => IGNORE,
        }
    }

    fn element(&mut self, parent: Slot) -> Slot {
        match (self.kind, parent) {
            (Kind::Models, DATA) => {
                self.facts.models = self.facts.models.saturating_add(1);
                if self.facts.models == 1 {
                    MODEL
                } else {
                    IGNORE
                }
            }
            (Kind::Image, DATA) => {
                self.facts.images = self.facts.images.saturating_add(1);
                IMAGE
            }
            (Kind::Completion(Backend::Sglang), ROOT) => {
                self.facts.root_items = self.facts.root_items.saturating_add(1);
                ITEM
            }
            (Kind::Completion(_), CHOICES) => {
                self.facts.choices = self.facts.choices.saturating_add(1);
                CHOICE
            }
            _ => IGNORE,
        }
    }

    fn capture_len(&self, slot: Slot) -> usize {
        match slot {
            MODEL_ID => MAX_MODEL_ID_BYTES,
            MESSAGE if self.facts.keep_message => WORKER_TEXT_BYTES,
            OBJECT | FINISH | META_FINISH_TYPE => 16,
            _ => 0,
        }
    }

    fn scalar(&mut self, slot: Slot, value: Scalar<'_>) {
        match (slot, value) {
            (ERROR, Scalar::Null) => self.facts.error_object = false,
            (OBJECT, Scalar::Str { text, .. }) if text == b"error" => {
                self.facts.error_object = true;
            }
            (FINISH | META_FINISH_TYPE | META_FINISH, Scalar::Str { text, .. }) => {
                if let Some(f) = failed_finish(text) {
                    self.facts.failed_finish = Some(f);
                }
            }
            (TEXT, Scalar::Str { .. }) => self.facts.texts = self.facts.texts.saturating_add(1),
            // vLLM-Omni sends `"url": null` beside the `b64_json`: only a string counts.
            (IMAGE_REF, Scalar::Str { empty: false, .. }) => {
                self.facts.image_refs = self.facts.image_refs.saturating_add(1);
            }
            (MESSAGE, Scalar::Str { text, .. })
                if self.facts.message.is_none() && self.facts.keep_message =>
            {
                self.facts.message = Some(text.to_vec());
            }
            (
                MODEL_ID,
                Scalar::Str {
                    text, truncated, ..
                },
            ) => {
                self.facts.model_id_too_long = truncated;
                self.facts.model_id = Some(text.to_vec());
            }
            _ => {}
        }
    }
}

/// A probe or model-list answer being read, chunk by chunk.
pub struct AnswerScan {
    scanner: JsonScanner,
    judge: Judge,
}

impl AnswerScan {
    /// A probe answer judged as `expect` says ([`Expect::Any2xx`] is judged by its status
    /// alone: nothing to scan, so it is judged as the backend's completion here).
    /// `keep_worker_text`: an error may quote the worker's own message (bounded).
    pub fn probe(backend: Backend, expect: Expect, keep_worker_text: bool) -> AnswerScan {
        let kind = match expect {
            Expect::Image => Kind::Image,
            Expect::Completion | Expect::Any2xx => Kind::Completion(backend),
        };
        AnswerScan::new(kind, keep_worker_text)
    }

    pub fn models() -> AnswerScan {
        AnswerScan::new(Kind::Models, false)
    }

    fn new(kind: Kind, keep_message: bool) -> AnswerScan {
        AnswerScan {
            scanner: JsonScanner::new(ROOT),
            judge: Judge {
                kind,
                facts: Facts {
                    keep_message,
                    ..Facts::default()
                },
            },
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if !self.scanner.failed() {
            self.scanner.feed(chunk, &mut self.judge);
        }
    }

    /// Whether more bytes can change the verdict: false once the input is not JSON, and for a
    /// model list once its first id is read (a list of 1,800 LoRA adapters is ~150 KB).
    pub fn wants_more(&self) -> bool {
        let f = &self.judge.facts;
        let first_id_read = f.model_id.is_some() || f.model_id_too_long;
        let done = self.judge.kind == Kind::Models && first_id_read;
        !self.scanner.failed() && !done
    }

    fn complete(&mut self) -> bool {
        !self.scanner.failed() && self.scanner.finish(&mut self.judge)
    }

    /// The verdict on a 2xx probe answer: Ok, or our own error text (plus, when asked for,
    /// the worker's bounded message).
    pub fn probe_verdict(mut self) -> Result<(), String> {
        if !self.complete() {
            return Err("answer is not JSON".to_string());
        }
        let kind = self.judge.kind;
        let f = &self.judge.facts;
        let quote = |base: String| match &f.message {
            Some(m) => format!("{base}: {}", worker_text(m)),
            None => base,
        };
        if f.error_object {
            return Err(quote("answer is an error object".to_string()));
        }
        if let Some(reason) = f.failed_finish {
            return Err(quote(format!(
                "generation ended with finish_reason {reason:?}"
            )));
        }
        match kind {
            Kind::Models => Err("not a probe answer".to_string()),
            Kind::Image if f.images == 0 => Err("answer has no image in `data`".to_string()),
            Kind::Image if f.image_refs == 0 => {
                Err("answer's images have no `b64_json` or `url`".to_string())
            }
            Kind::Image => Ok(()),
            Kind::Completion(Backend::Sglang) if f.texts == 0 => {
                Err("answer has no generated text".to_string())
            }
            Kind::Completion(Backend::Sglang) => Ok(()),
            Kind::Completion(_) if f.choices == 0 => Err("answer has no choices".to_string()),
            Kind::Completion(_) => Ok(()),
        }
    }

    /// The first model id of a `/v1/models` answer of `size` bytes, of which the first `read`
    /// were fed, bounded and checked. The id is all discovery needs: what follows it is not
    /// read, so not judged.
    pub fn model(mut self, read: usize, size: usize) -> Result<String, String> {
        let f = &self.judge.facts;
        let first_id_read = f.model_id.is_some() || f.model_id_too_long;
        if !first_id_read {
            if read < size && !self.scanner.failed() {
                return Err(format!(
                    "no model id in the first {read} bytes (health.max_answer_bytes) of an answer of {size} bytes; set `model` in the config"
                ));
            }
            if !self.complete() {
                return Err("answer is not JSON".to_string());
            }
        }
        let f = &self.judge.facts;
        if f.model_id_too_long {
            return Err(format!(
                "first model id is longer than {MAX_MODEL_ID_BYTES} bytes (set `model` in the config)"
            ));
        }
        let id = match &f.model_id {
            Some(id) if !id.is_empty() => id,
            _ => return Err("answer lists no model id".to_string()),
        };
        match std::str::from_utf8(id) {
            Ok(s) if !s.chars().any(char::is_control) => Ok(s.to_string()),
            _ => Err("first model id is not printable UTF-8".to_string()),
        }
    }
}

/// The error for an answer over the cap: its bytes are never read.
pub fn too_large(size: usize, cap: usize) -> String {
    format!("answer of {size} bytes is over health.max_answer_bytes ({cap}); not read")
}

/// The error for a non-2xx answer; `body_start` (at most [`WORKER_TEXT_BYTES`], only with
/// details on) is quoted.
pub fn bad_status(status: u32, body_start: Option<&[u8]>) -> String {
    match body_start {
        Some(b) if !b.is_empty() => format!("status {status}: {}", worker_text(b)),
        _ => format!("status {status}"),
    }
}

/// The worker's own words, at most [`WORKER_TEXT_BYTES`], control characters as spaces.
pub fn worker_text(bytes: &[u8]) -> String {
    let cut = bytes.get(..WORKER_TEXT_BYTES).unwrap_or(bytes);
    String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(backend: Backend, body: &[u8], details: bool) -> Result<(), String> {
        judge_as(backend, backend.answer(), body, details)
    }

    fn judge_as(
        backend: Backend,
        expect: Expect,
        body: &[u8],
        details: bool,
    ) -> Result<(), String> {
        // Every split of the body gives the same verdict.
        let whole = {
            let mut s = AnswerScan::probe(backend, expect, details);
            s.feed(body);
            s.probe_verdict()
        };
        for cut in [1, body.len() / 2, body.len().saturating_sub(1)] {
            let mut s = AnswerScan::probe(backend, expect, details);
            let (a, b) = body.split_at(cut.min(body.len()));
            s.feed(a);
            s.feed(b);
            assert_eq!(s.probe_verdict(), whole, "split at {cut}");
        }
        whole
    }

    fn model(body: &[u8]) -> Result<String, String> {
        let mut s = AnswerScan::models();
        for byte in body.chunks(7) {
            s.feed(byte);
        }
        s.model(body.len(), body.len())
    }

    #[test]
    fn completions() {
        let ok = br#"{"id":"c","object":"text_completion","choices":[{"index":0,"text":"x","finish_reason":"length"}]}"#;
        for b in [Backend::Vllm, Backend::Trtllm, Backend::Openai] {
            assert_eq!(judge(b, ok, false), Ok(()));
        }
        let stop = br#" {"choices":[{"message":{"role":"assistant","content":"T"},"finish_reason":"stop"}]} "#;
        assert_eq!(judge(Backend::Openai, stop, false), Ok(()));
        let null_finish = br#"{"choices":[{"text":"x","finish_reason":null}],"error":null}"#;
        assert_eq!(judge(Backend::Vllm, null_finish, false), Ok(()));
        assert_eq!(
            judge(Backend::Vllm, br#"{"choices":[]}"#, false),
            Err("answer has no choices".into())
        );
        assert_eq!(
            judge(Backend::Vllm, br#"{"choices":{"0":1}}"#, false),
            Err("answer has no choices".into())
        );
        for bad in [
            &b"<html>"[..],
            b"",
            b"{\"choices\":[1]",
            b"{\"choices\":[1]} x",
        ] {
            assert_eq!(
                judge(Backend::Openai, bad, false),
                Err("answer is not JSON".into()),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// A 200 that carries an error or an aborted generation is a failure.
    #[test]
    fn error_objects_and_aborted_generations_fail() {
        let vllm_error = br#"{"object":"error","message":"CUDA error: an illegal memory access","type":"InternalServerError","param":null,"code":500,"choices":[{"text":"x"}]}"#;
        assert_eq!(
            judge(Backend::Vllm, vllm_error, false),
            Err("answer is an error object".into())
        );
        assert_eq!(
            judge(Backend::Vllm, vllm_error, true),
            Err("answer is an error object: CUDA error: an illegal memory access".into())
        );
        let openai_error = br#"{"error":{"message":"engine dead","type":"server_error"}}"#;
        assert_eq!(
            judge(Backend::Openai, openai_error, false),
            Err("answer is an error object".into())
        );
        assert_eq!(
            judge(Backend::Openai, openai_error, true),
            Err("answer is an error object: engine dead".into())
        );
        assert_eq!(
            judge(Backend::Sglang, br#"{"error":{}}"#, false),
            Err("answer is an error object".into())
        );
        for reason in ["abort", "error", "cancelled", "timeout"] {
            let body =
                format!(r#"{{"choices":[{{"index":0,"text":"","finish_reason":"{reason}"}}]}}"#);
            assert_eq!(
                judge(Backend::Vllm, body.as_bytes(), false),
                Err(format!("generation ended with finish_reason {reason:?}"))
            );
        }
        let sglang_abort = br#"{"text":"","meta_info":{"id":"1","finish_reason":{"type":"abort","message":"KV cache full","status_code":503,"err_type":null},"prompt_tokens":1,"completion_tokens":0}}"#;
        assert_eq!(
            judge(Backend::Sglang, sglang_abort, false),
            Err("generation ended with finish_reason \"abort\"".into())
        );
        let sglang_ok = br#"{"text":"x","meta_info":{"id":"1","finish_reason":{"type":"length","length":1},"prompt_tokens":1,"completion_tokens":1}}"#;
        assert_eq!(judge(Backend::Sglang, sglang_ok, false), Ok(()));
        let batch = br#"[{"text":"x","meta_info":{}},{"text":"y","meta_info":{"finish_reason":{"type":"abort"}}}]"#;
        assert!(judge(Backend::Sglang, batch, false).is_err());
        assert_eq!(judge(Backend::Sglang, br#"[{"text":"x"}]"#, false), Ok(()));
        assert_eq!(
            judge(Backend::Sglang, br#"{"choices":[1]}"#, false),
            Err("answer has no generated text".into())
        );
    }

    fn image(body: &[u8], details: bool) -> Result<(), String> {
        judge(Backend::Diffusion, body, details)
    }

    #[test]
    fn images() {
        // The OpenAI Images API's answer, vLLM-Omni's (`url` and `revised_prompt` null beside
        // the image), and an answer by URL.
        for ok in [
            &br#"{"created":1795000000,"data":[{"b64_json":"iVBORw0KGgo="}]}"#[..],
            br#"{"created":1795000000,"data":[{"b64_json":"iVBORw0KGgo=","url":null,"revised_prompt":null}],"output_format":"png","size":"512x512"}"#,
            br#"{"data":[{"url":"https://images.example/1.png"}],"created":1}"#,
            br#"{"data":[{"b64_json":""},{"b64_json":"QUFB"}]}"#,
        ] {
            assert_eq!(image(ok, false), Ok(()), "{}", String::from_utf8_lossy(ok));
        }
        let no_image = Err("answer has no image in `data`".to_string());
        for body in [
            &br#"{"created":1,"data":[]}"#[..],
            br#"{"created":1}"#,
            br#"{"data":{"b64_json":"QUFB"}}"#,
            br#"{"data":null}"#,
            br#"[{"data":[{"b64_json":"QUFB"}]}]"#,
            // A completion is no image.
            br#"{"choices":[{"index":0,"text":"x","finish_reason":"length"}]}"#,
        ] {
            assert_eq!(
                image(body, false),
                no_image,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let no_ref = Err("answer's images have no `b64_json` or `url`".to_string());
        for body in [
            &br#"{"data":[{"revised_prompt":"a cat"}]}"#[..],
            br#"{"data":[{"b64_json":"","url":null}]}"#,
            br#"{"data":[{"b64_json":null,"url":""}]}"#,
            br#"{"data":[{"b64_json":7,"url":["x"]}]}"#,
            br#"{"data":[{"image":{"b64_json":"QUFB"}}]}"#,
            br#"{"data":[1,"QUFB",null]}"#,
        ] {
            assert_eq!(
                image(body, false),
                no_ref,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // vLLM-Omni's engine error, and one inside a 200 beside an image.
        let error = br#"{"error":{"message":"CUDA out of memory","type":"InternalServerError","param":null,"code":500,"request_id":"img_gen-1","error_stage_id":0}}"#;
        assert_eq!(image(error, false), Err("answer is an error object".into()));
        assert_eq!(
            image(error, true),
            Err("answer is an error object: CUDA out of memory".into())
        );
        let both = br#"{"data":[{"b64_json":"QUFB"}],"error":{"message":"x"}}"#;
        assert_eq!(image(both, false), Err("answer is an error object".into()));
        assert_eq!(
            image(br#"{"data":[{"b64_json":"QUFB"}],"error":null}"#, false),
            Ok(())
        );
        assert_eq!(
            image(br#"{"object":"error","message":"no"}"#, false),
            Err("answer is an error object".into())
        );
        // Cut off, or not JSON.
        let good = br#"{"created":1,"data":[{"b64_json":"QUFBQUFB"}]}"#;
        for cut in [1, 10, 30, good.len() - 1] {
            let truncated = good.get(..cut).unwrap();
            assert_eq!(
                image(truncated, false),
                Err("answer is not JSON".into()),
                "{}",
                String::from_utf8_lossy(truncated)
            );
        }
        for bad in [
            &b"<html>"[..],
            b"",
            b"\x89PNG\r\n",
            br#"{"data":[{"b64_json":"QUFB"}]} x"#,
            br#"{"data":[{"b64_json":"QU"FB"}]}"#,
        ] {
            assert_eq!(image(bad, false), Err("answer is not JSON".into()));
        }
    }

    /// A 512x512 image inline is over a megabyte: it is scanned in chunks, never kept.
    #[test]
    fn a_large_image_is_judged_in_chunks() {
        let b64 = "QUFB".repeat(1_400_000 / 4);
        let body = format!(r#"{{"created":1,"data":[{{"b64_json":"{b64}","url":null}}]}}"#);
        let mut s = AnswerScan::probe(Backend::Diffusion, Expect::Image, true);
        for chunk in body.as_bytes().chunks(16 * 1024) {
            assert!(s.wants_more());
            s.feed(chunk);
        }
        assert!(s.judge.facts.message.is_none());
        assert_eq!(s.probe_verdict(), Ok(()));
    }

    /// `expect` judges a custom payload's answer whatever the backend.
    #[test]
    fn expect_overrides_the_backend_answer() {
        let img = br#"{"created":1,"data":[{"b64_json":"QUFB"}]}"#;
        assert_eq!(
            judge(Backend::Openai, img, false),
            Err("answer has no choices".into())
        );
        assert_eq!(judge_as(Backend::Openai, Expect::Image, img, false), Ok(()));
        let done = br#"{"choices":[{"message":{"content":"T"},"finish_reason":"stop"}]}"#;
        assert_eq!(
            judge_as(Backend::Diffusion, Expect::Completion, done, false),
            Ok(())
        );
    }

    #[test]
    fn worker_text_is_bounded_and_printable() {
        let long = format!(r#"{{"object":"error","message":"{}"}}"#, "x".repeat(5_000));
        let e = judge(Backend::Vllm, long.as_bytes(), true).unwrap_err();
        assert_eq!(
            e.len(),
            "answer is an error object: ".len() + WORKER_TEXT_BYTES
        );
        assert_eq!(worker_text(b"a\nb\r\x01c"), "a b  c");
        assert_eq!(bad_status(500, None), "status 500");
        assert_eq!(bad_status(500, Some(b"boom\n")), "status 500: boom");
    }

    #[test]
    fn model_ids() {
        let body = br#"{"object":"list","data":[{"id":"meta-llama/Llama-3.1-8B","object":"model"},{"id":"x"}]}"#;
        assert_eq!(model(body).as_deref(), Ok("meta-llama/Llama-3.1-8B"));
        assert_eq!(
            model(br#"{"data":[]}"#),
            Err("answer lists no model id".into())
        );
        assert_eq!(
            model(br#"{"data":[{"id":""}]}"#),
            Err("answer lists no model id".into())
        );
        assert_eq!(model(b"nope"), Err("answer is not JSON".into()));
        let at_bound = format!(
            r#"{{"data":[{{"id":"{}"}}]}}"#,
            "m".repeat(MAX_MODEL_ID_BYTES)
        );
        assert_eq!(
            model(at_bound.as_bytes()).map(|m| m.len()),
            Ok(MAX_MODEL_ID_BYTES)
        );
        // A 5 MB id is refused, not kept.
        let huge = format!(r#"{{"data":[{{"id":"{}"}}]}}"#, "m".repeat(5 << 20));
        assert!(model(huge.as_bytes())
            .unwrap_err()
            .contains("longer than 128 bytes"));
        assert!(model(br#"{"data":[{"id":"a\nb"}]}"#)
            .unwrap_err()
            .contains("printable"));
    }

    #[test]
    fn too_large_says_so() {
        assert_eq!(
            too_large(31_981_568, 65_536),
            "answer of 31981568 bytes is over health.max_answer_bytes (65536); not read"
        );
    }
}
