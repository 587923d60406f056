//! What a worker's response says about tokens: per-event facts from OpenAI chat/completions
//! chunks, the Responses API, and SGLang's `/generate`, folded into token events and a
//! per-stream summary (docs/design.md, "What counts as a token").

use super::json::{JsonScanner, KeyMark, KeyTag, Scalar, Slot, Visitor, IGNORE};
use super::sse::{SseFramer, SseSink};
use crate::labels::MAX_LABEL_LEN;

const ROOT: Slot = 1;
const CHOICES: Slot = 2;
const CHOICE: Slot = 3;
const DELTA: Slot = 4;
const CONTENT: Slot = 5;
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
    resp_type_delta: bool,
    resp_delta_nonempty: bool,
    resp_completed: bool,
}

impl EventFacts {
    fn token_pieces(&self) -> u32 {
        self.pieces + u32::from(self.resp_type_delta && self.resp_delta_nonempty)
    }

    /// The event `include_usage` adds at a stream's end: usage figures and no choice.
    fn usage_only(&self) -> bool {
        self.choices == 0
            && self.token_pieces() == 0
            && !self.error
            && (self.output_tokens.is_some() || self.input_tokens.is_some())
    }
}

/// What an editor of the stream needs to know of an event once it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventEnd {
    /// The new output tokens it carried.
    pub tokens: u32,
    /// It has a top-level `usage` member.
    pub usage_member: bool,
    /// That member carries token figures (not `null`).
    pub usage_figures: bool,
    /// It is the usage-only event `include_usage` adds (no choice, usage figures).
    pub usage_only: bool,
    /// A choice in it has a `finish_reason`.
    pub finished: bool,
}

/// Receives where events start and end in the chunk being fed, for an editor of the stream.
pub trait EventEdges {
    /// See [`SseSink::event_start`].
    fn event_start(&mut self, at: usize);
    /// See [`SseSink::dispatch`].
    fn event_end(&mut self, end: usize, cr: bool, event: EventEnd);
}

/// The edges of a stream nobody edits: compiled away.
pub struct NoEdges;

impl EventEdges for NoEdges {
    #[inline(always)]
    fn event_start(&mut self, _at: usize) {}
    #[inline(always)]
    fn event_end(&mut self, _end: usize, _cr: bool, _event: EventEnd) {}
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counting {
    Unknown,
    /// Every event carries a running output count: new tokens are its growth.
    Cumulative,
    /// One token per non-empty delta; a final `usage` only corrects the total.
    PerDelta,
}

/// What the whole response said, folded event by event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    counting: Counting,
    last_cumulative: u64,
    /// Output tokens emitted as token events so far.
    pub streamed_tokens: u64,
    /// Output tokens as reported by the worker's usage, when it reported them.
    pub usage_output_tokens: Option<u64>,
    pub input_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    /// A `[DONE]`, a finish reason or `response.completed` was seen.
    pub complete: bool,
    /// An error event arrived inside the stream.
    pub backend_error: bool,
    /// Events (or a unary body) that did not parse.
    pub malformed: u32,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            counting: Counting::Unknown,
            last_cumulative: 0,
            streamed_tokens: 0,
            usage_output_tokens: None,
            input_tokens: None,
            cached_tokens: None,
            complete: false,
            backend_error: false,
            malformed: 0,
        }
    }
}

impl Summary {
    /// Folds one event in; returns how many new output tokens it carries.
    pub fn on_event(&mut self, e: &EventFacts) -> u32 {
        if e.error {
            self.backend_error = true;
        }
        if e.finished || e.resp_completed {
            self.complete = true;
        }
        if e.input_tokens.is_some() {
            self.input_tokens = e.input_tokens;
        }
        if e.cached_tokens.is_some() {
            self.cached_tokens = e.cached_tokens;
        }
        let pieces = e.token_pieces();
        let new = match (e.output_tokens, self.counting) {
            (Some(count), Counting::Unknown | Counting::Cumulative) => {
                self.counting = Counting::Cumulative;
                let new = count.saturating_sub(self.last_cumulative);
                self.last_cumulative = self.last_cumulative.max(count);
                self.usage_output_tokens = Some(self.last_cumulative);
                new
            }
            (Some(count), Counting::PerDelta) => {
                self.usage_output_tokens = Some(count);
                u64::from(pieces)
            }
            (None, Counting::Cumulative) => 0,
            (None, _) => {
                if pieces > 0 {
                    self.counting = Counting::PerDelta;
                }
                u64::from(pieces)
            }
        };
        self.streamed_tokens += new;
        u32::try_from(new).unwrap_or(u32::MAX)
    }

    /// The request's output token count: the worker's usage when reported, else what streamed.
    pub fn output_tokens(&self) -> u64 {
        self.usage_output_tokens.unwrap_or(self.streamed_tokens)
    }
}

/// [`EventFacts`] plus the top-level `model` of the answer: which model served the request
/// (a worker that accepts any name says here which one it ran). Used for a stream's first JSON
/// event and for a unary body only, so the per-event scan keeps its one visitor.
struct ModelCapture<'a> {
    facts: &'a mut EventFacts,
    model: &'a mut Option<Vec<u8>>,
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

/// Where a response's `model` stands: looked for in the first JSON event, then told once.
#[derive(Debug, Default)]
enum AnswerModel {
    #[default]
    Wanted,
    /// The first JSON event ended: its `model` (`None`: it had none), not yet taken.
    Found(Option<Vec<u8>>),
    Taken,
}

const DONE: &[u8] = b"[DONE]";

/// The longest event start [`Resume`] keeps (ids and model names make it ~100-300 bytes).
const RESUME_CAP: usize = 512;

/// The previous event's data up to its first token-text key (`"content"` ...: id, object,
/// created, model, choices, index, delta, which consecutive chunks of one stream repeat byte
/// for byte) and the scan's state and facts there. An event that starts with the same bytes
/// resumes from there instead of scanning them again: the scan is deterministic, so the state
/// after the same bytes is the same state. About two thirds of a chunk's scan.
struct Resume {
    prefix: Vec<u8>,
    mark: KeyMark,
    facts: EventFacts,
}

/// Parses one SSE event's data as JSON, recognising the `[DONE]` sentinel without buffering.
struct EventParser {
    scanner: JsonScanner,
    facts: EventFacts,
    /// How much of `[DONE]` the data matched so far; `None` once it cannot be `[DONE]`.
    done_matched: Option<usize>,
    event_is_error: bool,
    name_matched: Option<usize>,
    summary: Summary,
    /// No data of the current event yet.
    at_event_start: bool,
    /// Boxed: allocated at a stream's first chunk, and most of a stream's state is not it.
    resume: Option<Box<Resume>>,
    /// The answer's `model`, captured while the first JSON event is scanned.
    model: AnswerModel,
    captured: Option<Vec<u8>>,
    /// Off only in tests, as the oracle the resumed scan is checked against.
    resume_enabled: bool,
    /// Events that resumed (tests: the resumed path must be the one taken).
    #[cfg(test)]
    resumed: u32,
}

impl EventParser {
    fn new() -> EventParser {
        EventParser {
            scanner: JsonScanner::new(ROOT),
            facts: EventFacts::default(),
            done_matched: Some(0),
            event_is_error: false,
            name_matched: Some(0),
            summary: Summary::default(),
            at_event_start: true,
            resume: None,
            model: AnswerModel::Wanted,
            captured: None,
            resume_enabled: true,
            #[cfg(test)]
            resumed: 0,
        }
    }

    fn data(&mut self, mut bytes: &[u8]) {
        let first = std::mem::replace(&mut self.at_event_start, false);
        // An event's first data that opens an object (not `[DONE]`, no whitespace to skip):
        // resume from the previous event's start when it repeats it, else scan to the
        // token-text key and remember how it got there.
        if first
            && self.resume_enabled
            && bytes.first() == Some(&b'{')
            && self.done_matched == Some(0)
        {
            self.done_matched = None;
            if let Some(r) = &self.resume {
                if let Some(head) = bytes.get(..r.prefix.len()) {
                    if same_bytes(head, &r.prefix) {
                        #[cfg(test)]
                        {
                            self.resumed += 1;
                        }
                        self.scanner.resume(&r.mark);
                        self.facts = r.facts;
                        let rest = bytes.get(r.prefix.len()..).unwrap_or_default();
                        self.scanner.feed(rest, &mut self.facts);
                        return;
                    }
                }
            }
            let to_key = if matches!(self.model, AnswerModel::Wanted) {
                let mut v = ModelCapture {
                    facts: &mut self.facts,
                    model: &mut self.captured,
                };
                self.scanner.feed_to_key(bytes, &mut v, CONTENT)
            } else {
                self.scanner.feed_to_key(bytes, &mut self.facts, CONTENT)
            };
            if let Some((n, mark)) = to_key {
                let prefix = bytes.get(..n).unwrap_or_default();
                if n <= RESUME_CAP {
                    let r = self.resume.get_or_insert_with(|| {
                        Box::new(Resume {
                            prefix: Vec::new(),
                            mark,
                            facts: EventFacts::default(),
                        })
                    });
                    r.prefix.clear();
                    r.prefix.extend_from_slice(prefix);
                    r.mark = mark;
                    r.facts = self.facts;
                }
                let rest = bytes.get(n..).unwrap_or_default();
                self.scan(rest);
            }
            return;
        }
        if let Some(pos) = self.done_matched {
            if pos == 0 {
                let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
                bytes = match start {
                    Some(s) => bytes.get(s..).unwrap_or_default(),
                    None => return,
                };
            }
            let want = DONE.get(pos..).unwrap_or_default();
            let common = bytes.iter().zip(want).take_while(|(a, b)| a == b).count();
            if common == bytes.len() {
                self.done_matched = Some(pos + common);
                return;
            }
            self.done_matched = None;
            // Not `[DONE]` after all: replay what was held back as JSON.
            self.scan(DONE.get(..pos).unwrap_or_default());
        }
        self.scan(bytes);
    }

    /// Scans event data, looking for the answer's `model` while it is wanted.
    fn scan(&mut self, bytes: &[u8]) {
        if matches!(self.model, AnswerModel::Wanted) {
            let mut v = ModelCapture {
                facts: &mut self.facts,
                model: &mut self.captured,
            };
            self.scanner.feed(bytes, &mut v);
        } else {
            self.scanner.feed(bytes, &mut self.facts);
        }
    }

    /// The answer's `model` once the first JSON event ended (`Some(None)`: it had none), told
    /// once.
    fn take_model(&mut self) -> Option<Option<Vec<u8>>> {
        match std::mem::replace(&mut self.model, AnswerModel::Taken) {
            AnswerModel::Found(m) => Some(m),
            other => {
                self.model = other;
                None
            }
        }
    }

    fn event_name(&mut self, bytes: &[u8]) {
        const ERROR_NAME: &[u8] = b"error";
        if let Some(pos) = self.name_matched {
            let want = ERROR_NAME.get(pos..).unwrap_or_default();
            if bytes.len() <= want.len() && want.starts_with(bytes) {
                self.name_matched = Some(pos + bytes.len());
                self.event_is_error = pos + bytes.len() == ERROR_NAME.len();
            } else {
                self.name_matched = None;
                self.event_is_error = false;
            }
        }
    }

    /// Ends the event; returns its new output tokens and what an editor needs of it.
    fn dispatch(&mut self) -> EventEnd {
        let mut end = EventEnd::default();
        let new = match self.done_matched {
            Some(n) if n == DONE.len() => {
                self.summary.complete = true;
                0
            }
            Some(0) if self.scanner.is_pristine() => 0, // no data at all
            matched => {
                if let Some(pos) = matched {
                    self.scan(DONE.get(..pos).unwrap_or_default());
                }
                if matches!(self.model, AnswerModel::Wanted) {
                    self.model = AnswerModel::Found(self.captured.take());
                }
                if self.scanner.finish(&mut self.facts) {
                    end.usage_member = self.facts.has_usage;
                    end.usage_figures = self.facts.has_usage
                        && (self.facts.output_tokens.is_some()
                            || self.facts.input_tokens.is_some());
                    end.usage_only = self.facts.usage_only();
                    end.finished = self.facts.finished;
                    self.summary.on_event(&self.facts)
                } else {
                    self.summary.malformed += 1;
                    0
                }
            }
        };
        if self.event_is_error {
            self.summary.backend_error = true;
        }
        self.facts = EventFacts::default();
        self.scanner.reset();
        self.done_matched = Some(0);
        self.name_matched = Some(0);
        self.event_is_error = false;
        self.at_event_start = true;
        end.tokens = new;
        end
    }
}

/// `a == b` eight bytes at a time (a slice compare is a byte-by-byte `memcmp` call in wasm).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (wa.remainder(), wb.remainder());
    wa.zip(wb)
        .all(|(x, y)| x.first_chunk::<8>() == y.first_chunk::<8>())
        && ra == rb
}

/// Couples the framer's callbacks to the event parser, the caller's token callback and an
/// editor's edges.
struct Dispatch<'a, F: FnMut(u32), E: EventEdges> {
    events: &'a mut EventParser,
    on_tokens: &'a mut F,
    edges: &'a mut E,
}

impl<F: FnMut(u32), E: EventEdges> SseSink for Dispatch<'_, F, E> {
    fn data(&mut self, bytes: &[u8]) {
        self.events.data(bytes);
    }
    fn event_name(&mut self, bytes: &[u8]) {
        self.events.event_name(bytes);
    }
    #[inline(always)]
    fn event_start(&mut self, at: usize) {
        self.edges.event_start(at);
    }
    fn dispatch(&mut self, end: usize, cr: bool) {
        let event = self.events.dispatch();
        if event.tokens > 0 {
            (self.on_tokens)(event.tokens);
        }
        self.edges.event_end(end, cr, event);
    }
}

/// An SSE response body, fed chunk by chunk.
pub struct SseResponse {
    framer: SseFramer,
    events: EventParser,
}

impl Default for SseResponse {
    fn default() -> Self {
        SseResponse {
            framer: SseFramer::default(),
            events: EventParser::new(),
        }
    }
}

impl SseResponse {
    /// Frames `chunk`; calls `on_tokens(k)` for each event that carries k > 0 new tokens.
    pub fn feed<F: FnMut(u32)>(&mut self, chunk: &[u8], on_tokens: &mut F) {
        self.feed_edges(chunk, on_tokens, &mut NoEdges);
    }

    /// [`SseResponse::feed`], telling `edges` where each event starts and ends.
    pub fn feed_edges<F: FnMut(u32), E: EventEdges>(
        &mut self,
        chunk: &[u8],
        on_tokens: &mut F,
        edges: &mut E,
    ) {
        let mut sink = Dispatch {
            events: &mut self.events,
            on_tokens,
            edges,
        };
        self.framer.feed(chunk, &mut sink);
    }

    pub fn summary(&self) -> &Summary {
        &self.events.summary
    }

    /// The answer's top-level `model`, once the stream's first JSON event has ended
    /// (`Some(None)`: that event had none); `None` before that and after it was taken.
    pub fn take_model(&mut self) -> Option<Option<Vec<u8>>> {
        self.events.take_model()
    }
}

/// A unary JSON response body, fed chunk by chunk, summarised at the end.
pub struct JsonResponse {
    scanner: JsonScanner,
    facts: EventFacts,
    model: Option<Vec<u8>>,
}

impl Default for JsonResponse {
    fn default() -> Self {
        JsonResponse {
            scanner: JsonScanner::new(ROOT),
            facts: EventFacts::default(),
            model: None,
        }
    }
}

impl JsonResponse {
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut v = ModelCapture {
            facts: &mut self.facts,
            model: &mut self.model,
        };
        self.scanner.feed(chunk, &mut v);
    }

    /// The body's top-level `model`, if it had one (read after [`JsonResponse::finish`]).
    pub fn take_model(&mut self) -> Option<Vec<u8>> {
        self.model.take()
    }

    /// Ends the body. A unary answer is complete by definition; its tokens are its usage.
    pub fn finish(&mut self) -> Summary {
        let mut summary = Summary::default();
        let mut v = ModelCapture {
            facts: &mut self.facts,
            model: &mut self.model,
        };
        if self.scanner.finish(&mut v) {
            let facts = EventFacts {
                pieces: 0,
                ..self.facts
            };
            summary.on_event(&facts);
            summary.complete = true;
        } else {
            summary.malformed = 1;
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Token callbacks and summary of `chunks`, with the resumed scan on or off.
    fn stream_with(chunks: &[&[u8]], resume: bool) -> (Vec<u32>, Summary) {
        let mut r = SseResponse::default();
        r.events.resume_enabled = resume;
        let mut events = Vec::new();
        for c in chunks {
            r.feed(c, &mut |k| events.push(k));
        }
        (events, *r.summary())
    }

    /// Streams whose events share starts, differ in them, split anywhere: the resumed scan
    /// must give what a scan of every byte gives.
    #[test]
    fn resuming_from_the_previous_event_start_changes_nothing() {
        let chunk = |id: &str, delta: &str, tail: &str| {
            format!(
                "data: {{\"id\":\"{id}\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{tail}}}]}}\n\n"
            )
        };
        let spaced = |s: String| s.replace("\":", "\": ").replace(",\"", ", \"");
        let bodies: Vec<String> = vec![
            // vLLM: role chunk, tokens, finish, usage, [DONE].
            [
                chunk("a", r#"{"role":"assistant","content":""}"#, "null"),
                chunk("a", r#"{"content":"x"}"#, "null"),
                chunk("a", r#"{"content":"y\u0073"}"#, "null"),
                chunk("a", r#"{"content":""}"#, "null"),
                chunk("a", r#"{"content":"z"}"#, "\"stop\""),
                "data: {\"id\":\"a\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":9}}\n\n".into(),
                "data: [DONE]\n\n".into(),
            ]
            .concat(),
            // The start changes mid-stream (id), an error object, a malformed event, tool calls.
            [
                chunk("a", r#"{"content":"x"}"#, "null"),
                chunk("b", r#"{"content":"x"}"#, "null"),
                chunk("b", r#"{"content":"x"}"#, "null"),
                "data: {\"id\":\"b\",\"error\":{\"message\":\"boom\"},\"choices\":[{\"index\":0,\"delta\":{\"content\":\"q\"}}]}\n\n".into(),
                chunk("b", r#"{"content":"x"#, "null"),
                chunk("b", r#"{"content":"x"}"#, "null"),
                chunk("b", r#"{"tool_calls":[{"index":0},{"index":1}],"content":"t"}"#, "null"),
                chunk("b", r#"{"content":"x"}"#, "null"),
            ]
            .concat(),
            // Reasoning first, then content; the same start as a key of another name.
            [
                chunk("r", r#"{"reasoning_content":"think"}"#, "null"),
                chunk("r", r#"{"reasoning_content":"more"}"#, "null"),
                chunk("r", r#"{"content":"answer"}"#, "null"),
                chunk("r", r#"{"content":"again"}"#, "\"length\""),
            ]
            .concat(),
        ];
        for body in bodies
            .iter()
            .cloned()
            .chain(bodies.iter().cloned().map(spaced))
        {
            let b = body.as_bytes();
            let want = stream_with(&[b], false);
            assert_eq!(stream_with(&[b], true), want, "whole: {body}");
            let mut r = SseResponse::default();
            r.feed(b, &mut |_| {});
            assert!(
                r.events.resumed >= 2,
                "resumed {} times: {body}",
                r.events.resumed
            );
            // One event per chunk, as a paced worker sends them.
            let events: Vec<&[u8]> = body.split_inclusive("\n\n").map(str::as_bytes).collect();
            assert_eq!(stream_with(&events, true), want, "per event: {body}");
            // Every split point, and every pair of them.
            for i in 0..=b.len() {
                let got = stream_with(&[&b[..i], &b[i..]], true);
                assert_eq!(got, want, "split at {i}: {body}");
            }
            for i in (0..=b.len()).step_by(7) {
                for j in (i..=b.len()).step_by(5) {
                    let got = stream_with(&[&b[..i], &b[i..j], &b[j..]], true);
                    assert_eq!(got, want, "split at {i}, {j}: {body}");
                }
            }
        }
    }

    fn stream(chunks: &[&[u8]]) -> (Vec<u32>, Summary) {
        let mut r = SseResponse::default();
        let mut events = Vec::new();
        for c in chunks {
            r.feed(c, &mut |k| events.push(k));
        }
        (events, *r.summary())
    }

    fn chat_chunk(content: &str, usage: Option<u64>) -> String {
        let usage = match usage {
            Some(n) => format!(
                r#","usage":{{"prompt_tokens":7,"completion_tokens":{n},"total_tokens":{}}}"#,
                n + 7
            ),
            None => String::new(),
        };
        format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"finish_reason\":null}}]{usage}}}\n\n"
        )
    }

    const ROLE: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n";

    #[test]
    fn role_only_and_empty_chunks_are_not_tokens() {
        let body = format!(
            "{ROLE}{}{}data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\ndata: [DONE]\n\n",
            chat_chunk("a", None),
            chat_chunk("b", None)
        );
        let (events, s) = stream(&[body.as_bytes()]);
        assert_eq!(events, vec![1, 1]);
        assert_eq!(s.output_tokens(), 2);
        assert!(s.complete && !s.backend_error);
        assert_eq!(s.malformed, 0);
        assert_eq!(s.input_tokens, None);
    }

    #[test]
    fn final_usage_corrects_the_total_but_not_the_events() {
        let body = format!(
            "{ROLE}{}{}data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":7,\"completion_tokens\":6,\"prompt_tokens_details\":{{\"cached_tokens\":3}}}}}}\n\ndata: [DONE]\n\n",
            chat_chunk("abc", None),
            chat_chunk("def", None)
        );
        let (events, s) = stream(&[body.as_bytes()]);
        assert_eq!(events, vec![1, 1]);
        assert_eq!(s.streamed_tokens, 2);
        assert_eq!(s.output_tokens(), 6);
        assert_eq!(s.input_tokens, Some(7));
        assert_eq!(s.cached_tokens, Some(3));
    }

    #[test]
    fn continuous_usage_counts_growth() {
        let role = ROLE.replace(
            "]}\n",
            "],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":0}}\n",
        );
        let body = format!(
            "{role}{}{}{}data: [DONE]\n\n",
            chat_chunk("abc", Some(3)),
            chat_chunk("def", Some(6)),
            chat_chunk("g", Some(7))
        );
        let (events, s) = stream(&[body.as_bytes()]);
        assert_eq!(events, vec![3, 3, 1]);
        assert_eq!(s.output_tokens(), 7);
    }

    #[test]
    fn completions_and_sglang_and_responses_shapes() {
        let completions = "data: {\"choices\":[{\"index\":0,\"text\":\" t0\",\"finish_reason\":null}]}\n\ndata: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n";
        let (events, s) = stream(&[completions.as_bytes()]);
        assert_eq!((events, s.complete), (vec![1], true));

        let sglang = "data: {\"text\":\"a\",\"meta_info\":{\"prompt_tokens\":4,\"completion_tokens\":1,\"cached_tokens\":0,\"finish_reason\":null}}\n\ndata: {\"text\":\"abc\",\"meta_info\":{\"prompt_tokens\":4,\"completion_tokens\":3,\"finish_reason\":{\"type\":\"length\"}}}\n\ndata: [DONE]\n\n";
        let (events, s) = stream(&[sglang.as_bytes()]);
        assert_eq!(events, vec![1, 2]);
        assert_eq!((s.output_tokens(), s.input_tokens), (3, Some(4)));

        let responses = "event: response.created\ndata: {\"type\":\"response.created\"}\n\nevent: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\ndata: {\"delta\":\"!\",\"type\":\"response.output_text.delta\"}\n\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":2}}}\n\n";
        let (events, s) = stream(&[responses.as_bytes()]);
        assert_eq!(events, vec![1, 1]);
        assert!(s.complete);
        assert_eq!((s.output_tokens(), s.input_tokens), (2, Some(5)));
    }

    #[test]
    fn tool_calls_and_reasoning_are_tokens() {
        let body = "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"hm\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\"}}]}}]}\n\ndata: {\"choices\":[{\"delta\":{\"tool_calls\":[]}}]}\n\n";
        let (events, _) = stream(&[body.as_bytes()]);
        assert_eq!(events, vec![1, 1]);
    }

    #[test]
    fn error_events_are_backend_errors() {
        for body in [
            "data: {\"error\":{\"object\":\"error\",\"message\":\"x\",\"code\":500}}\n\ndata: [DONE]\n\n",
            "data: {\"object\":\"error\",\"message\":\"x\"}\n\n",
            "event: error\ndata: {\"message\":\"x\"}\n\n",
            "data: {\"type\":\"error\",\"message\":\"x\"}\n\n",
        ] {
            let (_, s) = stream(&[body.as_bytes()]);
            assert!(s.backend_error, "{body}");
        }
        let ok = "event: errorish\ndata: {\"error\":null}\n\n";
        assert!(!stream(&[ok.as_bytes()]).1.backend_error);
    }

    #[test]
    fn malformed_events_are_counted_and_skipped() {
        let body = format!(
            "data: {{not json}}\n\ndata: [DON\n\ndata: [DONE] x\n\n{}data: \n\n",
            chat_chunk("a", None)
        );
        let (events, s) = stream(&[body.as_bytes()]);
        assert_eq!(events, vec![1]);
        assert_eq!(s.malformed, 3);
        assert!(!s.complete);
    }

    #[test]
    fn every_byte_split_gives_the_same_events() {
        let body = format!(
            "{ROLE}{}{}data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":7,\"completion_tokens\":2}}}}\r\n\r\ndata: [DONE]\n\n",
            chat_chunk("a\\\"b", None),
            chat_chunk("c", None)
        );
        let bytes = body.as_bytes();
        let whole = stream(&[bytes]);
        for i in 0..=bytes.len() {
            assert_eq!(stream(&[&bytes[..i], &bytes[i..]]), whole, "split at {i}");
        }
        // One byte per chunk.
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(stream(&singles), whole);
    }

    #[test]
    fn unary_bodies() {
        let body = br#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"length"}],"usage":{"prompt_tokens":9,"total_tokens":14,"completion_tokens":5}}"#;
        for split in [0, 1, 50, body.len()] {
            let mut r = JsonResponse::default();
            r.feed(&body[..split]);
            r.feed(&body[split..]);
            let s = r.finish();
            assert_eq!(
                (s.output_tokens(), s.input_tokens, s.malformed),
                (5, Some(9), 0)
            );
        }
        let mut r = JsonResponse::default();
        r.feed(b"{\"id\": broken");
        assert_eq!(r.finish().malformed, 1);
    }

    #[test]
    fn the_answers_model_is_read_from_the_first_json_event_at_any_split() {
        let vllm = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"tiny\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"model\":\"other\",\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n";
        // llama.cpp: `model` after the choices; a keep-alive comment first.
        let llama = ": ping\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"created\":1,\"model\":\"tiny\"}\n\n";
        for body in [vllm, llama] {
            let b = body.as_bytes();
            for i in 0..=b.len() {
                let mut sse = SseResponse::default();
                let mut seen = Vec::new();
                for part in [&b[..i], &b[i..]] {
                    sse.feed(part, &mut |_| {});
                    // Told once, after the read that ends the first JSON event.
                    if let Some(m) = sse.take_model() {
                        seen.push(m);
                    }
                }
                assert_eq!(seen, vec![Some(b"tiny".to_vec())], "split at {i}");
            }
        }
        // None in the first JSON event: told as such; a later event's model is not used.
        let mut sse = SseResponse::default();
        sse.feed(
            b"data: {\"choices\":[]}\n\ndata: {\"model\":\"late\"}\n\n",
            &mut |_| {},
        );
        assert_eq!(sse.take_model(), Some(None));
        assert_eq!(sse.take_model(), None);
        // Not a string, or empty: none.
        for first in [&b"{\"model\":{\"a\":1}}"[..], b"{\"model\":\"\"}"] {
            let mut sse = SseResponse::default();
            let mut event = b"data: ".to_vec();
            event.extend_from_slice(first);
            event.extend_from_slice(b"\n\n");
            sse.feed(&event, &mut |_| {});
            assert_eq!(sse.take_model(), Some(None));
        }
        // A unary body, the model after a long content.
        let mut r = JsonResponse::default();
        let body = format!(
            "{{\"choices\":[{{\"message\":{{\"content\":\"{}\"}}}}],\"model\":\"tiny\",\"usage\":{{\"completion_tokens\":3}}}}",
            "x".repeat(10_000)
        );
        for part in body.as_bytes().chunks(7) {
            r.feed(part);
        }
        assert_eq!(r.finish().output_tokens(), 3);
        assert_eq!(r.take_model().as_deref(), Some(&b"tiny"[..]));
    }
}
