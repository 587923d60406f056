//! An incremental JSON scanner that picks a few fields out of a document fed in arbitrary
//! chunks, without keeping the document: O(1) memory whatever its size.
//!
//! A [`Visitor`] names the parts it cares about as small integer *slots*: the scanner asks it
//! for the slot of each key (`child`) and array element (`element`) under a slot it cares
//! about, and hands it the scalars found at those slots. Everything under [`IGNORE`] is skipped
//! by bracket counting alone, which is what keeps large prompts and logprobs cheap.
//! Syntax errors outside skipped parts are detected and reported by [`JsonScanner::failed`].

use super::find::{find2, find_structural};

pub type Slot = u8;
/// The slot of everything the visitor does not care about.
pub const IGNORE: Slot = 0;

/// Longest key or string value captured (longer ones are truncated and flagged).
pub const CAPTURE_CAP: usize = 128;
/// Containers tracked with full syntax checking; deeper ones are skipped.
const MAX_DEPTH: usize = 32;

/// A key's length and first eight bytes, as integers. Visitors match keys on this rather than
/// on byte strings: wasm has no inline `memcmp`, so a byte-string `match` costs a call per
/// candidate arm. A key longer than eight bytes must still be compared whole once its tag
/// matches (a match guard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTag {
    len: usize,
    head: u64,
}

impl KeyTag {
    /// For constants.
    pub const fn new(key: &[u8]) -> KeyTag {
        let mut head = 0u64;
        let mut shift = 0;
        let mut rest = key;
        while shift < 64 {
            match rest.split_first() {
                Some((b, tail)) => {
                    head |= (*b as u64) << shift;
                    rest = tail;
                }
                None => break,
            }
            shift += 8;
        }
        KeyTag {
            len: key.len(),
            head,
        }
    }

    /// The same as [`KeyTag::new`] in one or two loads: most keys of OpenAI-style chunks are
    /// shorter than eight bytes (`id`, `model`, `choices`, `delta`, `content`), and
    /// [`KeyTag::new`]'s byte loop cost ~125 instructions per event. Two overlapping loads
    /// cover a short key; the bytes both hold are the same, so OR-ing them is exact.
    #[inline]
    pub fn of(key: &[u8]) -> KeyTag {
        let len = key.len();
        let head = if let Some(head) = key.first_chunk::<8>() {
            u64::from_le_bytes(*head)
        } else if let (Some(a), Some(b)) = (key.first_chunk::<4>(), key.last_chunk::<4>()) {
            u64::from(u32::from_le_bytes(*a)) | u64::from(u32::from_le_bytes(*b)) << ((len - 4) * 8)
        } else if let (Some(a), Some(b)) = (key.first_chunk::<2>(), key.last_chunk::<2>()) {
            u64::from(u16::from_le_bytes(*a)) | u64::from(u16::from_le_bytes(*b)) << ((len - 2) * 8)
        } else {
            key.first().map_or(0, |&b| u64::from(b))
        };
        KeyTag { len, head }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar<'a> {
    /// A string: its captured prefix (escapes decoded, `\u` to UTF-8), whether it was cut at the
    /// capture length, and whether it was empty.
    Str {
        text: &'a [u8],
        truncated: bool,
        empty: bool,
    },
    /// A number: its value when it is a non-negative integer that fits `u64`.
    Num(Option<u64>),
    Bool(bool),
    Null,
}

pub trait Visitor {
    /// Slot of the value under `key` in an object whose slot is `parent` (never [`IGNORE`]).
    fn child(&mut self, parent: Slot, key: &[u8]) -> Slot;
    /// Slot of an element of an array whose slot is `parent` (never [`IGNORE`]).
    fn element(&mut self, _parent: Slot) -> Slot {
        IGNORE
    }
    /// How many bytes of a string at `slot` to capture (0: only whether it is empty).
    fn capture_len(&self, _slot: Slot) -> usize {
        0
    }
    fn scalar(&mut self, slot: Slot, value: Scalar<'_>);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A value must start (root, after `:`, after `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    ArrayFirst,
    /// After `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    Key,
    Colon,
    /// After a value: `,`, a closing bracket, or the end at root.
    AfterValue,
    Str,
    StrEscape,
    StrUnicode(u8),
    Number,
    Literal,
    /// Inside a skipped container: only strings and brackets matter.
    Skip,
    SkipStr,
    SkipStrEscape,
    Done,
    Error,
}

pub struct JsonScanner {
    root: Slot,
    at: Position,
    str_is_key: bool,
    str_empty: bool,
    /// A `\uXXXX` escape: its code unit so far, and a high surrogate waiting for its low
    /// half (0: none). Decoded so a label cannot be forged with escapes a worker decodes.
    unit: u32,
    high: u32,
    capture: usize,
    buf: [u8; CAPTURE_CAP],
    buf_len: usize,
    truncated: bool,
    num: u64,
    num_ok: bool,
    literal: &'static [u8],
    literal_pos: usize,
    /// [`JsonScanner::feed_to_key`]: the slot whose key stops the scan ([`IGNORE`]: none), and
    /// whether it did.
    stop_at: Slot,
    stopped: bool,
}

/// Where a scan stands in the document's structure: the grammar state, the open containers
/// and the slot the next value goes to. Right after a key (where [`JsonScanner::feed_to_key`]
/// stops) it is everything the rest of the scan depends on: a string, number or literal
/// starts its own state afresh. [`JsonScanner::feed_to_key`] hands out a copy,
/// [`JsonScanner::resume`] puts one back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    state: State,
    depth: usize,
    /// Bit i set: container i is an object (else an array).
    objects: u32,
    slots: [Slot; MAX_DEPTH],
    skip_depth: u32,
    value_slot: Slot,
}

impl Position {
    /// Before a document's first byte.
    fn start(root: Slot) -> Position {
        Position {
            state: State::Value,
            depth: 0,
            objects: 0,
            slots: [IGNORE; MAX_DEPTH],
            skip_depth: 0,
            value_slot: root,
        }
    }
}

impl JsonScanner {
    pub fn new(root: Slot) -> JsonScanner {
        JsonScanner {
            root,
            at: Position::start(root),
            str_is_key: false,
            str_empty: true,
            unit: 0,
            high: 0,
            capture: 0,
            buf: [0; CAPTURE_CAP],
            buf_len: 0,
            truncated: false,
            num: 0,
            num_ok: false,
            literal: b"",
            literal_pos: 0,
            stop_at: IGNORE,
            stopped: false,
        }
    }

    /// Feeds `input` as [`JsonScanner::feed`] does, but stops right after the first key (read
    /// whole from `input`, the usual case) whose value goes to `slot`: then returns the bytes
    /// consumed and where the scan stands. `None`: no such key in `input`, all of it consumed.
    pub fn feed_to_key<V: Visitor>(
        &mut self,
        input: &[u8],
        v: &mut V,
        slot: Slot,
    ) -> Option<(usize, Position)> {
        self.stop_at = slot;
        let consumed = self.feed_inner(input, v);
        self.stop_at = IGNORE;
        if !std::mem::take(&mut self.stopped) {
            return None;
        }
        Some((consumed, self.at))
    }

    /// Puts a scan back where [`JsonScanner::feed_to_key`] stopped, as if the same bytes had
    /// been fed since the last reset.
    pub fn resume(&mut self, at: &Position) {
        self.at = *at;
    }

    /// Ready for the next document (the next SSE event).
    pub fn reset(&mut self) {
        self.at.state = State::Value;
        self.at.depth = 0;
        self.at.skip_depth = 0;
        self.at.value_slot = self.root;
    }

    /// True once the input so far cannot be the start of a JSON document.
    pub fn failed(&self) -> bool {
        self.at.state == State::Error
    }

    /// Whether a whole document has been read (only whitespace may follow).
    pub fn is_done(&self) -> bool {
        self.at.state == State::Done
    }

    /// Whether no byte but whitespace has been fed since the last reset.
    pub fn is_pristine(&self) -> bool {
        self.at.state == State::Value && self.at.depth == 0
    }

    /// Ends the document: true when it was one complete JSON value.
    pub fn finish<V: Visitor>(&mut self, v: &mut V) -> bool {
        if self.at.state == State::Number && self.at.depth == 0 {
            self.end_number(v);
        }
        self.at.state == State::Done
    }

    pub fn feed<V: Visitor>(&mut self, input: &[u8], v: &mut V) {
        self.feed_inner(input, v);
    }

    /// [`JsonScanner::feed`]; returns the bytes consumed (all of `input` unless a
    /// [`JsonScanner::feed_to_key`] stop was reached).
    fn feed_inner<V: Visitor>(&mut self, input: &[u8], v: &mut V) -> usize {
        let mut rest = input;
        // Each step consumes at least one byte; strings, numbers, literals and skipped values
        // are consumed whole when the chunk holds them, so the dispatch below runs per token,
        // not per byte.
        while let Some(&b) = rest.first() {
            if self.stopped {
                break;
            }
            let used = match self.at.state {
                State::Str => self.string_run(rest, v),
                State::Skip => self.skip_run(rest),
                State::SkipStr => match find2(rest, b'"', b'\\') {
                    None => rest.len(),
                    Some(p) => {
                        self.at.state = if rest.get(p) == Some(&b'"') {
                            State::Skip
                        } else {
                            State::SkipStrEscape
                        };
                        p + 1
                    }
                },
                State::SkipStrEscape => {
                    self.at.state = State::SkipStr;
                    1
                }
                State::StrEscape => {
                    let decoded = match b {
                        b'"' | b'\\' | b'/' => b,
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            self.unit = 0;
                            self.at.state = State::StrUnicode(4);
                            rest = rest.get(1..).unwrap_or_default();
                            continue;
                        }
                        _ => {
                            self.at.state = State::Error;
                            return input.len();
                        }
                    };
                    self.string_bytes(&[decoded]);
                    self.at.state = State::Str;
                    1
                }
                State::StrUnicode(left) => {
                    let Some(digit) = char::from(b).to_digit(16) else {
                        self.at.state = State::Error;
                        return input.len();
                    };
                    self.unit = self.unit << 4 | digit;
                    self.at.state = if left > 1 {
                        State::StrUnicode(left - 1)
                    } else {
                        self.unicode_unit();
                        State::Str
                    };
                    1
                }
                State::Number => self.number_run(rest, v),
                State::Literal => self.literal_run(rest, v),
                _ if is_ws(b) => 1,
                State::Value => self.start_value(rest, v),
                State::ArrayFirst => {
                    if b == b']' {
                        self.pop();
                        1
                    } else {
                        self.start_value(rest, v)
                    }
                }
                State::ObjectFirst | State::Key => {
                    if b == b'"' {
                        self.key(rest, v)
                    } else if b == b'}' && self.at.state == State::ObjectFirst {
                        self.pop();
                        1
                    } else {
                        self.at.state = State::Error;
                        return input.len();
                    }
                }
                State::Colon => {
                    if b != b':' {
                        self.at.state = State::Error;
                        return input.len();
                    }
                    self.at.state = State::Value;
                    // `: value`, one space after the colon as Python's `json.dumps` writes
                    // it: the value in the same step (state `Value` would skip the space).
                    if let Some([b' ', value @ ..]) = rest.get(1..) {
                        if value.first().is_some_and(|&c| !is_ws(c)) {
                            let used = 2 + self.start_value(value, v);
                            rest = rest.get(used..).unwrap_or_default();
                            continue;
                        }
                    }
                    1
                }
                State::AfterValue => {
                    let in_object = self.top_is_object();
                    match (b, in_object) {
                        (b',', true) => {
                            self.at.state = State::Key;
                            // `,"key":value` in one step: the usual compact member; also
                            // `, "key"`, one space after the comma as Python's `json.dumps`
                            // writes it (the `is_ws` arm above would skip it in state `Key`;
                            // the `Colon` arm takes its `: value` likewise).
                            let next = match rest.get(1..) {
                                Some(next @ [b'"', ..]) => Some((1, next)),
                                Some([b' ', next @ ..]) if next.first() == Some(&b'"') => {
                                    Some((2, next))
                                }
                                _ => None,
                            };
                            if let Some((skip, next)) = next {
                                let used = skip + self.key(next, v);
                                rest = rest.get(used..).unwrap_or_default();
                                continue;
                            }
                        }
                        (b',', false) => self.at.state = State::Value,
                        (b'}', true) | (b']', false) => self.pop(),
                        _ => {
                            self.at.state = State::Error;
                            return input.len();
                        }
                    }
                    1
                }
                State::Done | State::Error => {
                    self.at.state = State::Error;
                    return input.len();
                }
            };
            rest = rest.get(used..).unwrap_or_default();
        }
        input.len() - rest.len()
    }

    /// Inside a string: up to and including its closing quote, or to an escape.
    fn string_run<V: Visitor>(&mut self, rest: &[u8], v: &mut V) -> usize {
        match find2(rest, b'"', b'\\') {
            None => {
                self.string_bytes(rest);
                rest.len()
            }
            Some(p) => {
                self.string_bytes(rest.get(..p).unwrap_or_default());
                if rest.get(p) == Some(&b'"') {
                    self.end_string(v);
                } else {
                    self.at.state = State::StrEscape;
                }
                p + 1
            }
        }
    }

    /// Inside a skipped container: strings and brackets only.
    fn skip_run(&mut self, rest: &[u8]) -> usize {
        let Some(p) = find_structural(rest) else {
            return rest.len();
        };
        match rest.get(p) {
            Some(b'"') => self.at.state = State::SkipStr,
            Some(b'{') | Some(b'[') => self.at.skip_depth += 1,
            _ => {
                self.at.skip_depth -= 1;
                if self.at.skip_depth == 0 {
                    self.value_done();
                }
            }
        }
        p + 1
    }

    /// As much of `true`, `false` or `null` as `rest` holds (the whole of it, usually).
    fn literal_run<V: Visitor>(&mut self, rest: &[u8], v: &mut V) -> usize {
        let want = self.literal.get(self.literal_pos..).unwrap_or_default();
        let n = want.len().min(rest.len());
        if rest.get(..n) != want.get(..n) {
            self.at.state = State::Error;
            return rest.len();
        }
        self.literal_pos += n;
        if self.literal_pos == self.literal.len() {
            let value = match self.literal.first() {
                Some(b't') => Scalar::Bool(true),
                Some(b'f') => Scalar::Bool(false),
                _ => Scalar::Null,
            };
            self.emit(v, value);
            self.value_done();
        }
        n
    }

    /// Digits (and the rest of a number's grammar) up to, not including, the terminator.
    fn number_run<V: Visitor>(&mut self, rest: &[u8], v: &mut V) -> usize {
        for (i, &b) in rest.iter().enumerate() {
            if b.is_ascii_digit() {
                match self
                    .num
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(b - b'0')))
                {
                    Some(n) => self.num = n,
                    None => {
                        self.num_ok = false;
                        self.num = 0;
                    }
                }
            } else if matches!(b, b'.' | b'e' | b'E' | b'+' | b'-') {
                self.num_ok = false;
            } else {
                self.end_number(v);
                return i; // the terminator is the next token
            }
        }
        rest.len()
    }

    /// A key starts at `rest[0]` (`"`). Whole in this chunk and without escapes (the usual
    /// case), it goes to the visitor straight from the input; otherwise byte by byte.
    fn key<V: Visitor>(&mut self, rest: &[u8], v: &mut V) -> usize {
        let Some(key) = closed_string(rest) else {
            self.start_string(true, v);
            return 1;
        };
        let parent = self.top_slot();
        self.at.value_slot = if parent == IGNORE || key.len() > CAPTURE_CAP {
            IGNORE
        } else {
            v.child(parent, key)
        };
        self.at.state = State::Colon;
        let used = key.len() + 2;
        if self.at.value_slot == self.stop_at && self.stop_at != IGNORE {
            self.stopped = true;
            return used;
        }
        // `:value` straight after the key (compact JSON) needs no trip through `feed`.
        match rest.get(used..) {
            Some([b':', value @ ..]) if value.first().is_some_and(|&c| !is_ws(c)) => {
                self.at.state = State::Value;
                used + 1 + self.start_value(value, v)
            }
            _ => used,
        }
    }

    /// A string value starts at `rest[0]` (`"`); like [`Self::key`].
    fn string_value<V: Visitor>(&mut self, rest: &[u8], v: &mut V) -> usize {
        let Some(text) = closed_string(rest) else {
            self.start_string(false, v);
            return 1;
        };
        if self.at.value_slot != IGNORE {
            let cap = v.capture_len(self.at.value_slot).min(CAPTURE_CAP);
            let take = text.len().min(cap);
            v.scalar(
                self.at.value_slot,
                Scalar::Str {
                    text: text.get(..take).unwrap_or_default(),
                    truncated: take < text.len() && cap > 0,
                    empty: text.is_empty(),
                },
            );
        }
        self.value_done();
        text.len() + 2
    }

    fn top_is_object(&self) -> bool {
        self.at.depth > 0 && self.at.objects & (1 << (self.at.depth - 1)) != 0
    }

    fn top_slot(&self) -> Slot {
        self.at
            .depth
            .checked_sub(1)
            .and_then(|d| self.at.slots.get(d))
            .copied()
            .unwrap_or(IGNORE)
    }

    /// A value starts at `rest[0]` (not whitespace).
    fn start_value<V: Visitor>(&mut self, rest: &[u8], v: &mut V) -> usize {
        let b = rest.first().copied().unwrap_or_default();
        if self.at.depth > 0 && !self.top_is_object() {
            let parent = self.top_slot();
            self.at.value_slot = if parent == IGNORE {
                IGNORE
            } else {
                v.element(parent)
            };
        }
        match b {
            b'{' | b'[' => {
                if self.at.value_slot == IGNORE || self.at.depth == MAX_DEPTH {
                    self.at.skip_depth = 1;
                    self.at.state = State::Skip;
                    return 1;
                }
                if let Some(s) = self.at.slots.get_mut(self.at.depth) {
                    *s = self.at.value_slot;
                }
                if b == b'{' {
                    self.at.objects |= 1 << self.at.depth;
                    self.at.state = State::ObjectFirst;
                } else {
                    self.at.objects &= !(1 << self.at.depth);
                    self.at.state = State::ArrayFirst;
                }
                self.at.depth += 1;
                1
            }
            b'"' => self.string_value(rest, v),
            b'-' | b'0'..=b'9' => {
                self.num_ok = b != b'-';
                self.num = u64::from(b.saturating_sub(b'0'));
                self.at.state = State::Number;
                1 + self.number_run(rest.get(1..).unwrap_or_default(), v)
            }
            b't' | b'f' | b'n' => {
                self.literal = match b {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                self.literal_pos = 0;
                self.at.state = State::Literal;
                self.literal_run(rest, v)
            }
            _ => {
                self.at.state = State::Error;
                1
            }
        }
    }

    fn start_string<V: Visitor>(&mut self, is_key: bool, v: &mut V) {
        self.str_is_key = is_key;
        self.str_empty = true;
        self.high = 0;
        self.buf_len = 0;
        self.truncated = false;
        self.capture = if is_key {
            if self.top_slot() == IGNORE {
                0
            } else {
                CAPTURE_CAP
            }
        } else if self.at.value_slot == IGNORE {
            0
        } else {
            v.capture_len(self.at.value_slot).min(CAPTURE_CAP)
        };
        self.at.state = State::Str;
    }

    /// A `\uXXXX` code unit is complete: UTF-8 for it (surrogate pairs joined, a lone half
    /// as U+FFFD). Only strings with escapes come here; the usual ones never do.
    fn unicode_unit(&mut self) {
        let unit = self.unit;
        if (0xDC00..0xE000).contains(&unit) && self.high != 0 {
            let c = 0x10000 + ((self.high - 0xD800) << 10) + (unit - 0xDC00);
            self.high = 0;
            self.push_char(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
            return;
        }
        self.flush_high();
        if (0xD800..0xDC00).contains(&unit) {
            self.high = unit;
        } else {
            self.push_char(char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER));
        }
    }

    fn push_char(&mut self, c: char) {
        let mut utf8 = [0u8; 4];
        self.string_bytes(c.encode_utf8(&mut utf8).as_bytes());
    }

    /// A high surrogate not followed by its low half.
    fn flush_high(&mut self) {
        if self.high != 0 {
            self.high = 0;
            self.push_char(char::REPLACEMENT_CHARACTER);
        }
    }

    fn string_bytes(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.flush_high();
        self.str_empty = false;
        if self.capture == 0 {
            return;
        }
        let room = self.capture.saturating_sub(self.buf_len);
        let take = bytes.len().min(room);
        if let (Some(dst), Some(src)) = (
            self.buf.get_mut(self.buf_len..self.buf_len + take),
            bytes.get(..take),
        ) {
            dst.copy_from_slice(src);
            self.buf_len += take;
        }
        if take < bytes.len() {
            self.truncated = true;
        }
    }

    fn end_string<V: Visitor>(&mut self, v: &mut V) {
        self.flush_high();
        if self.str_is_key {
            let parent = self.top_slot();
            self.at.value_slot = if parent == IGNORE || self.truncated {
                IGNORE
            } else {
                v.child(parent, self.buf.get(..self.buf_len).unwrap_or_default())
            };
            self.at.state = State::Colon;
        } else {
            if self.at.value_slot != IGNORE {
                let text = self.buf.get(..self.buf_len).unwrap_or_default();
                v.scalar(
                    self.at.value_slot,
                    Scalar::Str {
                        text,
                        truncated: self.truncated,
                        empty: self.str_empty,
                    },
                );
            }
            self.value_done();
        }
    }

    fn end_number<V: Visitor>(&mut self, v: &mut V) {
        let value = Scalar::Num(if self.num_ok { Some(self.num) } else { None });
        self.emit(v, value);
        self.value_done();
    }

    fn emit<V: Visitor>(&mut self, v: &mut V, value: Scalar<'_>) {
        if self.at.value_slot != IGNORE {
            v.scalar(self.at.value_slot, value);
        }
    }

    fn pop(&mut self) {
        self.at.depth -= 1;
        self.value_done();
    }

    fn value_done(&mut self) {
        self.at.state = if self.at.depth == 0 {
            State::Done
        } else {
            State::AfterValue
        };
    }
}

/// The text of the string opening at `rest[0]` when `rest` holds all of it and it has no
/// escapes: the usual case, which needs no copy and no byte-by-byte state.
fn closed_string(rest: &[u8]) -> Option<&[u8]> {
    let body = rest.get(1..)?;
    let end = find2(body, b'"', b'\\')?;
    (body.get(end) == Some(&b'"'))
        .then(|| body.get(..end))
        .flatten()
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every scalar at a path of keys; `[]` for array elements.
    #[derive(Default)]
    struct PathRecorder {
        paths: Vec<String>,
        seen: Vec<(String, String)>,
    }

    impl PathRecorder {
        fn slot_for(&mut self, path: String) -> Slot {
            self.paths.push(path);
            self.paths.len() as Slot // 1-based: never IGNORE
        }
        fn path(&self, slot: Slot) -> String {
            if slot == 1 {
                return String::new();
            }
            self.paths[slot as usize - 1].clone()
        }
    }

    impl Visitor for PathRecorder {
        fn child(&mut self, parent: Slot, key: &[u8]) -> Slot {
            let p = format!("{}.{}", self.path(parent), String::from_utf8_lossy(key));
            if p.contains("skipme") {
                return IGNORE;
            }
            self.slot_for(p)
        }
        fn element(&mut self, parent: Slot) -> Slot {
            let p = format!("{}[]", self.path(parent));
            self.slot_for(p)
        }
        fn capture_len(&self, _slot: Slot) -> usize {
            16
        }
        fn scalar(&mut self, slot: Slot, value: Scalar<'_>) {
            let v = match value {
                Scalar::Str {
                    text,
                    truncated,
                    empty,
                } => format!(
                    "s:{}{}{}",
                    String::from_utf8_lossy(text),
                    if truncated { "…" } else { "" },
                    if empty { "(empty)" } else { "" }
                ),
                Scalar::Num(n) => format!("n:{n:?}"),
                Scalar::Bool(b) => format!("b:{b}"),
                Scalar::Null => "null".to_string(),
            };
            let p = self.path(slot);
            self.seen.push((p, v));
        }
    }

    fn scan_chunks(chunks: &[&[u8]]) -> (Vec<(String, String)>, bool, bool) {
        let mut r = PathRecorder::default();
        r.paths.push(String::new()); // slot 1 = root
        let mut s = JsonScanner::new(1);
        for c in chunks {
            s.feed(c, &mut r);
        }
        let failed = s.failed();
        let complete = s.finish(&mut r);
        (r.seen, failed, complete)
    }

    fn scan(doc: &str) -> (Vec<(String, String)>, bool, bool) {
        scan_chunks(&[doc.as_bytes()])
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn finds_scalars_by_path() {
        let doc = r#"{"model":"m\"x","stream":true,"n":12,"f":-1.5e3,"z":null,
            "o":{"include_usage":false},"a":[1,{"k":"v"},[]],"e":""}"#;
        let (seen, failed, complete) = scan(doc);
        assert!(!failed && complete);
        assert_eq!(
            seen,
            pairs(&[
                (".model", "s:m\"x"),
                (".stream", "b:true"),
                (".n", "n:Some(12)"),
                (".f", "n:None"),
                (".z", "null"),
                (".o.include_usage", "b:false"),
                (".a[]", "n:Some(1)"),
                (".a[].k", "s:v"),
                (".e", "s:(empty)"),
            ])
        );
    }

    #[test]
    fn every_split_gives_the_same_result() {
        // Whole, every token takes the fast paths; split, the byte-by-byte ones: both must
        // agree, including on captures cut at the cap and on keys too long to name a field.
        let long_key = "k".repeat(CAPTURE_CAP + 1);
        let doc = format!(
            r#"{{"id":"x","choices":[{{"delta":{{"content":"h\u00e9\\"}},"finish_reason":null}}],"usage":{{"completion_tokens":123456}},"long":"abcdefghijklmnopqrstuvwxyz","{long_key}":1, "sp" : [ true , false, null ] ,"n":-12}}"#
        );
        let doc = doc.as_str();
        let whole = scan(doc);
        assert!(whole
            .0
            .contains(&(".long".to_string(), "s:abcdefghijklmnop…".to_string())));
        assert!(!whole.0.iter().any(|(p, _)| p.contains("kkk")));
        assert!(whole.2);
        let bytes = doc.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let got = scan_chunks(&[&bytes[..i], &bytes[i..j], &bytes[j..]]);
                assert_eq!(got, whole, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn captures_are_capped() {
        let (seen, _, complete) = scan(r#"{"model":"abcdefghijklmnopqrstuvwxyz"}"#);
        assert!(complete);
        assert_eq!(seen, pairs(&[(".model", "s:abcdefghijklmnop…")]));
    }

    #[test]
    fn ignored_subtrees_are_skipped_but_balanced() {
        let doc = r#"{"skipme":{"a":[1,2,{"b":"}]{["}],"c":"\"}"},"after":1}"#;
        let (seen, failed, complete) = scan(doc);
        assert!(!failed && complete);
        assert_eq!(seen, pairs(&[(".after", "n:Some(1)")]));
    }

    #[test]
    fn deep_nesting_is_skipped_not_failed() {
        let doc = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let (_, failed, complete) = scan(&doc);
        assert!(!failed && complete);
    }

    #[test]
    fn malformed_documents_fail() {
        for doc in [
            "{\"a\" 1}",
            "{\"a\":1,}",
            "{\"a\":tru}",
            "[1 2]",
            "{\"a\":1]",
            "{} x",
            "}",
            "{\"a\":\"\\q\"}",
            "{\"a\":\"\\u12G4\"}",
            "{'a':1}",
        ] {
            let (_, failed, complete) = scan(doc);
            assert!(failed || !complete, "{doc} accepted");
            assert!(!complete, "{doc} complete");
        }
    }

    #[test]
    fn incomplete_documents_are_not_complete() {
        for doc in ["", "{", "{\"a\":", "{\"a\":\"x", "[1,2", "tr"] {
            let (_, failed, complete) = scan(doc);
            assert!(!failed, "{doc} failed");
            assert!(!complete, "{doc} complete");
        }
        let (seen, _, complete) = scan("42");
        assert!(complete);
        assert_eq!(seen, pairs(&[("", "n:Some(42)")]));
    }

    #[test]
    fn reset_starts_a_new_document() {
        let mut r = PathRecorder::default();
        r.paths.push(String::new());
        let mut s = JsonScanner::new(1);
        s.feed(br#"{"a":1}"#, &mut r);
        assert!(s.finish(&mut r));
        s.reset();
        assert!(s.is_pristine());
        s.feed(br#"{"b":2}"#, &mut r);
        assert!(s.finish(&mut r));
        assert_eq!(r.seen, pairs(&[(".a", "n:Some(1)"), (".b", "n:Some(2)")]));
    }

    #[test]
    fn key_tags_agree_and_tell_keys_apart() {
        let keys: [&[u8]; 7] = [
            b"",
            b"a",
            b"id",
            b"usage",
            b"choices!",
            b"finish_reason",
            b"finish_reasoN",
        ];
        for (i, a) in keys.iter().enumerate() {
            assert_eq!(KeyTag::of(a), KeyTag::new(a));
            for (j, b) in keys.iter().enumerate() {
                // Distinct tags for distinct keys of at most eight bytes; longer ones need a guard.
                if i != j && (a.len() <= 8 || b.len() <= 8) {
                    assert_ne!(KeyTag::of(a), KeyTag::of(b));
                }
            }
        }
        assert_eq!(KeyTag::of(b"finish_reason"), KeyTag::of(b"finish_reasoN"));
        assert_ne!(KeyTag::of(b"a\0"), KeyTag::of(b"a"));
        // The overlapping loads give the byte loop's tag at every length.
        let bytes: Vec<u8> = (0..12u8).map(|i| 0x41 + i * 7).collect();
        for len in 0..=bytes.len() {
            let key = &bytes[..len];
            assert_eq!(KeyTag::of(key), KeyTag::new(key), "length {len}");
        }
    }

    #[test]
    fn huge_numbers_are_not_values() {
        let (seen, _, _) = scan(r#"{"n":99999999999999999999999}"#);
        assert_eq!(seen, pairs(&[(".n", "n:None")]));
    }

    /// Python's `json.dumps` separators (`", "`, `": "`) take the fused steps of `feed`; the
    /// result, and every error, must be the compact document's, wherever a chunk splits.
    #[test]
    fn one_space_after_comma_and_colon_scans_as_compact_at_every_split() {
        let compact =
            r#"{"id":"x","n":12,"a":[1,{"b":true}],"skipme":{"c":"d"},"e":null,"f":"g\"h"}"#;
        let spaced = compact.replace(':', ": ").replace(',', ", ");
        let want = scan(compact);
        assert!(!want.1 && want.2, "{want:?}");
        for doc in [
            spaced.clone(),
            spaced.replace(": ", ":  "),
            spaced.replace(", ", ",\n "),
        ] {
            for i in 0..=doc.len() {
                let (a, b) = doc.as_bytes().split_at(i);
                assert_eq!(scan_chunks(&[a, b]), want, "{doc} split at {i}");
            }
        }
        // Still invalid where the compact form is: a space is not a value.
        for bad in [
            r#"{"a": }"#,
            r#"{"a": 1, }"#,
            r#"{"a" : ,}"#,
            r#"{"a": 1, , "b": 2}"#,
        ] {
            for i in 0..=bad.len() {
                let (a, b) = bad.as_bytes().split_at(i);
                let (_, failed, complete) = scan_chunks(&[a, b]);
                assert!(failed || !complete, "{bad} split at {i} passed");
            }
        }
    }
}
