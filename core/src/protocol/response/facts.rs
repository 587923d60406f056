//! What one event's JSON says: the [`Visitor`] the event scan (stage 3) hands the JSON
//! scanner, also used for a unary body. The slots name the parts read (choices, deltas, usage, finish reasons, errors,
//! the Responses API's `type`); [`EventFacts`] collects one event's facts;
//! [`ModelCapture`] adds the answer's top-level `model` where it is wanted.

use super::edges::EventEnd;
use crate::labels::MAX_LABEL_LEN;
use crate::protocol::json::{KeyTag, Scalar, Slot, Visitor, IGNORE};

pub(super) const ROOT: Slot = 1;
const CHOICES: Slot = 2;
const CHOICE: Slot = 3;
const DELTA: Slot = 4;
pub(super) const CONTENT: Slot = 5;
const TOOL_CALLS: Slot = 6;
const FINISH: Slot = 7;
const USAGE: Slot = 8;
const OUT_TOKENS: Slot = 9;
const IN_TOKENS: Slot = 10;
const IN_DETAILS: Slot = 11;
const CACHED: Slot = 12;
const ERROR: Slot = 13;
const OBJECT: Slot = 14;
const META: Slot = 15;
const TYPE: Slot = 16;
const RESP_DELTA: Slot = 17;
const RESPONSE: Slot = 18;
/// The answer's top-level `model` (only while [`ModelCapture`] looks for it).
const ANSWER_MODEL: Slot = 19;

/// Facts of one SSE event (or of a whole unary body).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EventFacts {
    /// Choices with a non-empty content/text/reasoning delta or tool call.
    pub pieces: u32,
    /// Cumulative output tokens (`usage.completion_tokens`, SGLang `meta_info`).
    pub output_tokens: Option<u64>,
    pub input_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub finished: bool,
    pub error: bool,
    /// A top-level `usage` member (any value, `null` included).
    pub has_usage: bool,
    /// Elements of `choices`.
    pub choices: u32,
    /// Responses API: `type` ends in `.delta` and `delta` is non-empty.
    pub(super) resp_type_delta: bool,
    pub(super) resp_delta_nonempty: bool,
    pub(super) resp_completed: bool,
}

impl EventFacts {
    pub(super) fn token_pieces(&self) -> u32 {
        self.pieces + u32::from(self.resp_type_delta && self.resp_delta_nonempty)
    }

    /// The event `include_usage` adds at a stream's end: usage figures and no choice.
    fn usage_only(&self) -> bool {
        self.choices == 0
            && self.token_pieces() == 0
            && !self.error
            && (self.output_tokens.is_some() || self.input_tokens.is_some())
    }

    /// The usage editor's view of an event that parsed: its usage member and figures, whether
    /// it is the usage-only event, whether it finished a choice.
    pub(super) fn end(&self, tokens: u32) -> EventEnd {
        EventEnd {
            tokens,
            usage_member: self.has_usage,
            usage_figures: self.has_usage
                && (self.output_tokens.is_some() || self.input_tokens.is_some()),
            usage_only: self.usage_only(),
            finished: self.finished,
        }
    }
}

/// Tags of the keys the response shapes are read by.
mod key {
    use super::KeyTag;
    pub const CHOICES: KeyTag = KeyTag::new(b"choices");
    pub const USAGE: KeyTag = KeyTag::new(b"usage");
    pub const ERROR: KeyTag = KeyTag::new(b"error");
    pub const OBJECT: KeyTag = KeyTag::new(b"object");
    pub const META_INFO: KeyTag = KeyTag::new(b"meta_info");
    pub const TYPE: KeyTag = KeyTag::new(b"type");
    pub const DELTA: KeyTag = KeyTag::new(b"delta");
    pub const RESPONSE: KeyTag = KeyTag::new(b"response");
    pub const MESSAGE: KeyTag = KeyTag::new(b"message");
    pub const TEXT: KeyTag = KeyTag::new(b"text");
    pub const FINISH_REASON: KeyTag = KeyTag::new(b"finish_reason");
    pub const CONTENT: KeyTag = KeyTag::new(b"content");
    pub const REASONING_CONTENT: KeyTag = KeyTag::new(b"reasoning_content");
    pub const REASONING: KeyTag = KeyTag::new(b"reasoning");
    pub const TOOL_CALLS: KeyTag = KeyTag::new(b"tool_calls");
    pub const COMPLETION_TOKENS: KeyTag = KeyTag::new(b"completion_tokens");
    pub const OUTPUT_TOKENS: KeyTag = KeyTag::new(b"output_tokens");
    pub const PROMPT_TOKENS: KeyTag = KeyTag::new(b"prompt_tokens");
    pub const INPUT_TOKENS: KeyTag = KeyTag::new(b"input_tokens");
    pub const PROMPT_TOKENS_DETAILS: KeyTag = KeyTag::new(b"prompt_tokens_details");
    pub const INPUT_TOKENS_DETAILS: KeyTag = KeyTag::new(b"input_tokens_details");
    pub const CACHED_TOKENS: KeyTag = KeyTag::new(b"cached_tokens");
}

impl Visitor for EventFacts {
    fn child(&mut self, parent: Slot, k: &[u8]) -> Slot {
        // Keys over eight bytes are confirmed whole (guards) once their tag matches.
        match (parent, KeyTag::of(k)) {
            (ROOT, key::CHOICES) => CHOICES,
            (ROOT, key::USAGE) => {
                self.has_usage = true;
                USAGE
            }
            (ROOT, key::ERROR) => ERROR,
            (ROOT, key::OBJECT) => OBJECT,
            (ROOT, key::META_INFO) if k == b"meta_info" => META,
            (ROOT, key::TYPE) => TYPE,
            (ROOT, key::DELTA) => RESP_DELTA,
            (ROOT, key::RESPONSE) => RESPONSE,
            (CHOICE, key::DELTA) | (CHOICE, key::MESSAGE) => DELTA,
            (CHOICE, key::TEXT) => CONTENT,
            (CHOICE, key::FINISH_REASON) if k == b"finish_reason" => FINISH,
            (DELTA, key::CONTENT) => CONTENT,
            (DELTA, key::REASONING_CONTENT) if k == b"reasoning_content" => CONTENT,
            (DELTA, key::REASONING) if k == b"reasoning" => CONTENT,
            (DELTA, key::TOOL_CALLS) if k == b"tool_calls" => TOOL_CALLS,
            (USAGE, key::COMPLETION_TOKENS) if k == b"completion_tokens" => OUT_TOKENS,
            (USAGE, key::OUTPUT_TOKENS) if k == b"output_tokens" => OUT_TOKENS,
            (USAGE, key::PROMPT_TOKENS) if k == b"prompt_tokens" => IN_TOKENS,
            (USAGE, key::INPUT_TOKENS) if k == b"input_tokens" => IN_TOKENS,
            (USAGE, key::PROMPT_TOKENS_DETAILS) if k == b"prompt_tokens_details" => IN_DETAILS,
            (USAGE, key::INPUT_TOKENS_DETAILS) if k == b"input_tokens_details" => IN_DETAILS,
            (IN_DETAILS, key::CACHED_TOKENS) if k == b"cached_tokens" => CACHED,
            (META, key::COMPLETION_TOKENS) if k == b"completion_tokens" => OUT_TOKENS,
            (META, key::PROMPT_TOKENS) if k == b"prompt_tokens" => IN_TOKENS,
            (META, key::CACHED_TOKENS) if k == b"cached_tokens" => CACHED,
            (META, key::FINISH_REASON) if k == b"finish_reason" => FINISH,
            (RESPONSE, key::USAGE) => USAGE,
            (ERROR, _) => {
                // Any member makes a non-empty error object.
                self.error = true;
                IGNORE
            }
            _ => IGNORE,
        }
    }

    fn element(&mut self, parent: Slot) -> Slot {
        match parent {
            CHOICES => {
                self.choices += 1;
                CHOICE
            }
            TOOL_CALLS => {
                self.pieces += 1;
                IGNORE
            }
            _ => IGNORE,
        }
    }

    fn capture_len(&self, slot: Slot) -> usize {
        match slot {
            OBJECT => 8,
            TYPE => 64,
            _ => 0,
        }
    }

    fn scalar(&mut self, slot: Slot, value: Scalar<'_>) {
        match (slot, value) {
            (CONTENT, Scalar::Str { empty: false, .. }) => self.pieces += 1,
            (FINISH, Scalar::Str { .. }) => self.finished = true,
            (OUT_TOKENS, Scalar::Num(n)) => self.output_tokens = n,
            (IN_TOKENS, Scalar::Num(n)) => self.input_tokens = n,
            (CACHED, Scalar::Num(n)) => self.cached_tokens = n,
            (ERROR, Scalar::Str { .. }) | (ERROR, Scalar::Num(_)) | (ERROR, Scalar::Bool(true)) => {
                self.error = true
            }
            (OBJECT, Scalar::Str { text, .. }) if text == b"error" => self.error = true,
            (TYPE, Scalar::Str { text, .. }) => {
                if text.ends_with(b".delta") {
                    self.resp_type_delta = true;
                } else if text == b"response.completed" {
                    self.resp_completed = true;
                } else if text == b"error" || text == b"response.failed" {
                    self.error = true;
                }
            }
            (RESP_DELTA, Scalar::Str { empty: false, .. }) => self.resp_delta_nonempty = true,
            _ => {}
        }
    }
}

/// [`EventFacts`] plus the top-level `model` of the answer: which model served the request
/// (a worker that accepts any name says here which one it ran). Used for a stream's first JSON
/// event and for a unary body only, so the per-event scan keeps its one visitor.
pub(super) struct ModelCapture<'a> {
    pub(super) facts: &'a mut EventFacts,
    pub(super) model: &'a mut Option<Vec<u8>>,
}

impl Visitor for ModelCapture<'_> {
    fn child(&mut self, parent: Slot, k: &[u8]) -> Slot {
        if parent == ROOT && k == b"model" {
            ANSWER_MODEL
        } else {
            self.facts.child(parent, k)
        }
    }

    fn element(&mut self, parent: Slot) -> Slot {
        self.facts.element(parent)
    }

    fn capture_len(&self, slot: Slot) -> usize {
        if slot == ANSWER_MODEL {
            MAX_LABEL_LEN
        } else {
            self.facts.capture_len(slot)
        }
    }

    fn scalar(&mut self, slot: Slot, value: Scalar<'_>) {
        match (slot, value) {
            (
                ANSWER_MODEL,
                Scalar::Str {
                    text, empty: false, ..
                },
            ) => {
                *self.model = Some(text.to_vec());
            }
            (ANSWER_MODEL, _) => {}
            _ => self.facts.scalar(slot, value),
        }
    }
}
