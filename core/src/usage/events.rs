//! Takes out of an SSE answer the usage the filter asked for and the client did not: the
//! usage-only event (`"choices": []` plus `usage`) and `usage` members of other events, as the
//! events pass. The event scan the metrics already make says where each event starts and ends
//! ([`EventEdges`]); this only cuts.
//!
//! An event is cut whole: while one that may be edited is split across reads, its bytes so far
//! are held back (up to [`HOLD_CAP`]) and go out with the read that ends it. A choice event
//! with a `finish_reason` is held until the next event: a worker may move members from it to
//! the usage-only event when asked for usage (llama.cpp moves `timings`), and they go back
//! where the client would have had them. Nothing else is held. Chunks with nothing to cut pass
//! untouched (no copy).

use super::members::{object_members, removal};
use super::Asked;
use crate::protocol::response::{EventEdges, EventEnd};
use std::ops::Range;

/// The most of one event held back while it is split across reads: a usage event is a few
/// hundred bytes; a longer event is let through as it is (and counted), so a worker's stream
/// cannot grow the VM's memory.
pub const HOLD_CAP: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Cut {
    /// The whole event, and a `\n` right after it when its blank line ended in `\r`.
    Event { bytes: Range<u64>, cr: bool },
    /// The `usage` member inside the event.
    UsageMember(Range<u64>),
    /// Members of the usage-only event `from` that the finished event `into` lacks (but
    /// `usage` and `choices`) go before `into`'s closing brace.
    MoveInto { from: Range<u64>, into: Range<u64> },
}

impl Cut {
    fn start(&self) -> u64 {
        match self {
            Cut::Event { bytes, .. } | Cut::UsageMember(bytes) => bytes.start,
            Cut::MoveInto { into, .. } => into.start,
        }
    }
}

#[derive(Debug, Default)]
pub struct SseEditor {
    asked: Asked,
    /// Stream offset of the current chunk's first byte.
    base: u64,
    /// Bytes held back from earlier reads: the stream's `[base - held.len(), base)`.
    held: Vec<u8>,
    /// Stream offset of the current event's first byte, between its start and its end.
    event_start: Option<u64>,
    /// The current event's bytes were let through before it ended (too long to hold).
    event_passed: bool,
    /// This read's cuts, in stream order.
    cuts: Vec<Cut>,
    /// A cut event ended in `\r` at the end of the previous read: a `\n` starting this read
    /// belongs to it.
    lf_pending: bool,
    /// Whether the stream's first event (other than a usage-only one) carried usage figures:
    /// the worker honours `continuous_usage_stats`. Figures on later events are cut only
    /// then, so a worker that always puts usage on its last event (llama.cpp's completions)
    /// keeps it there.
    running_figures: Option<bool>,
    /// The finished choice event held until the next event ends.
    held_finish: Option<Range<u64>>,
    pub stats: EditStats,
}

/// What the editor did to one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EditStats {
    pub events_cut: u32,
    pub members_cut: u32,
    /// Events the usage-only event's extra members were moved back into.
    pub members_moved: u32,
    /// Events to edit that were let through unedited: longer than [`HOLD_CAP`] while split,
    /// or a `usage` member the cut could not place (an event of several `data:` lines).
    pub left: u32,
    /// The most bytes held back at once.
    pub held_max: usize,
}

impl SseEditor {
    pub fn new(asked: Asked) -> SseEditor {
        SseEditor {
            asked,
            ..SseEditor::default()
        }
    }

    /// Whether this stream is edited at all.
    pub fn active(&self) -> bool {
        self.asked.drops_usage_event()
            || self.asked.strips_null_usage()
            || self.asked.strips_usage_figures()
    }

    /// Ends a read whose events went through [`EventEdges`]: the bytes to send instead of
    /// `chunk`, or `None` to send it as it is. `end`: the stream ends with it (nothing held).
    pub fn finish_chunk(&mut self, chunk: &[u8], end: bool) -> Option<Vec<u8>> {
        let window_start = self.base - self.held.len() as u64;
        let chunk_end = self.base + chunk.len() as u64;
        self.base = chunk_end;
        let mut hold_from = self
            .event_start
            .filter(|_| !end && !self.event_passed && self.active());
        if let Some(h) = hold_from {
            if chunk_end - h > HOLD_CAP as u64 {
                hold_from = None;
                self.event_passed = true;
                self.stats.left += 1;
            }
        }
        if let Some(h) = self.held_finish.clone() {
            if end || chunk_end - h.start > HOLD_CAP as u64 {
                self.held_finish = None;
            } else {
                hold_from = Some(hold_from.map_or(h.start, |p| p.min(h.start)));
            }
        }
        let lf_pending = std::mem::take(&mut self.lf_pending);
        if self.held.is_empty() && self.cuts.is_empty() && hold_from.is_none() && !lf_pending {
            return None;
        }
        let mut window = std::mem::take(&mut self.held);
        window.extend_from_slice(chunk);
        let at = |abs: u64| usize::try_from(abs - window_start).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(window.len());
        let mut pos = 0;
        if lf_pending && window.first() == Some(&b'\n') {
            pos = 1;
        }
        // Cuts inside held bytes wait for the read that lets those bytes go.
        let mut cuts = std::mem::take(&mut self.cuts);
        let later = match hold_from {
            Some(h) => {
                let first_held = cuts
                    .iter()
                    .position(|c| c.start() >= h)
                    .unwrap_or(cuts.len());
                cuts.split_off(first_held)
            }
            None => Vec::new(),
        };
        for cut in &cuts {
            let range = match cut {
                Cut::Event { bytes, cr } => {
                    let mut r = at(bytes.start)..at(bytes.end);
                    if *cr {
                        match window.get(r.end) {
                            Some(b'\n') => r.end += 1,
                            Some(_) => {}
                            None => self.lf_pending = true,
                        }
                    }
                    self.stats.events_cut += 1;
                    Some(r)
                }
                Cut::UsageMember(bytes) => {
                    let event = at(bytes.start)..at(bytes.end);
                    let found = window
                        .get(event.clone())
                        .and_then(usage_member)
                        .map(|r| r.start + event.start..r.end + event.start);
                    match found {
                        Some(_) => self.stats.members_cut += 1,
                        None => self.stats.left += 1,
                    }
                    found
                }
                Cut::MoveInto { from, into } => {
                    let into = at(into.start)..at(into.end);
                    let from = at(from.start)..at(from.end);
                    if let Some((close, moved)) = moved_members(&window, into, from) {
                        if close >= pos {
                            out.extend_from_slice(window.get(pos..close).unwrap_or_default());
                            out.extend_from_slice(&moved);
                            pos = close;
                            self.stats.members_moved += 1;
                        }
                    }
                    None
                }
            };
            if let Some(r) = range {
                if r.start >= pos {
                    out.extend_from_slice(window.get(pos..r.start).unwrap_or_default());
                    pos = r.end;
                }
            }
        }
        let keep_to = hold_from.map_or(window.len(), at).max(pos);
        out.extend_from_slice(window.get(pos..keep_to).unwrap_or_default());
        if hold_from.is_some() {
            self.held = window.split_off(keep_to.min(window.len()));
            self.stats.held_max = self.stats.held_max.max(self.held.len());
        }
        self.cuts = later;
        Some(out)
    }
}

impl EventEdges for SseEditor {
    fn event_start(&mut self, at: usize) {
        self.event_start = Some(self.base + at as u64);
        self.event_passed = false;
    }

    fn event_end(&mut self, end: usize, cr: bool, event: EventEnd) {
        let Some(start) = self.event_start.take() else {
            return;
        };
        if self.event_passed {
            return;
        }
        let bytes = start..self.base + end as u64;
        // Whatever this event is, the finished one before it goes with it.
        let held = self.held_finish.take();
        if event.usage_only {
            if self.asked.drops_usage_event() {
                if let Some(into) = held {
                    self.cuts.push(Cut::MoveInto {
                        from: bytes.clone(),
                        into,
                    });
                }
                self.cuts.push(Cut::Event { bytes, cr });
            }
        } else {
            if event.finished && self.asked.drops_usage_event() {
                self.held_finish = Some(bytes.clone());
            }
            let running = *self.running_figures.get_or_insert(event.usage_figures);
            let cut = if event.usage_figures {
                running && self.asked.strips_usage_figures()
            } else {
                event.usage_member && self.asked.strips_null_usage()
            };
            if cut {
                self.cuts.push(Cut::UsageMember(bytes));
            }
        }
    }
}

/// Where the top-level `usage` member of the one-line `data:` event `event` is, with the
/// separator that goes with it. `None` for an event of several data lines (its JSON spans
/// line breaks the cut would have to keep) or without such a member.
fn usage_member(event: &[u8]) -> Option<Range<usize>> {
    if let Some(r) = last_usage_member(event) {
        return Some(r);
    }
    let (members, _) = data_object(event)?;
    let index = members.iter().position(|m| m.raw_key(event) == b"usage")?;
    removal(&members, index)
}

/// [`usage_member`] without parsing the event again, where `usage` is its JSON's last member
/// (vLLM's and SGLang's order): `,"usage":null` or `,"usage":{...}` (or with a space after
/// `,` and `:`) right before the closing brace the event ends with. The event parsed as JSON
/// with a top-level `usage` (the cut is only asked for then), so text that ends that way is
/// that member: a nested `usage` object would close before another brace, and anywhere else
/// it would be inside a string, which the closing brace would then be inside too (a string
/// cannot span the event's lines, so this holds for the last of several data lines as well,
/// and the cut stays within that line). Every event of such a worker is cut; this makes the
/// cut a few comparisons, where the parse cost 2.6 times the metering scan of the event.
fn last_usage_member(event: &[u8]) -> Option<Range<usize>> {
    let end = event.len()
        - event
            .iter()
            .rev()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .count();
    let json = event.get(..end)?;
    let close = end.checked_sub(1).filter(|&c| json.get(c) == Some(&b'}'))?;
    let before = json.get(..close)?;
    for null in [&b",\"usage\":null"[..], b", \"usage\": null"] {
        if before.ends_with(null) {
            return Some(close - null.len()..close);
        }
    }
    if before.last() != Some(&b'}') {
        return None;
    }
    // The usage object is short: look for its key near the end only.
    let from = close.saturating_sub(USAGE_TAIL);
    let tail = before.get(from..)?;
    for key in [&b",\"usage\":{"[..], b", \"usage\": {"] {
        let Some(at) = tail.windows(key.len()).rposition(|w| w == key) else {
            continue;
        };
        let start = from + at;
        let (_, value_close) = object_members(json, start + key.len() - 1)?;
        return (value_close + 1 == close).then_some(start..close);
    }
    None
}

/// How far back from an event's end [`last_usage_member`] looks for a `usage` object's key:
/// a usage object with token details is ~200 bytes.
const USAGE_TAIL: usize = 512;

/// The members of the usage-only event at `window[from]` that the finished event at
/// `window[into]` lacks (`usage` and `choices` aside), each with the separator the worker
/// wrote before it, and where they go: `into`'s closing brace. `None` when there are none or
/// either event is not one `data:` line of a JSON object.
fn moved_members(
    window: &[u8],
    into: Range<usize>,
    from: Range<usize>,
) -> Option<(usize, Vec<u8>)> {
    let held = window.get(into.clone())?;
    let (held_members, close) = data_object(held)?;
    let usage = window.get(from)?;
    let (members, _) = data_object(usage)?;
    if held_members.is_empty() {
        return None;
    }
    let mut moved = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let key = m.raw_key(usage);
        if key == b"usage"
            || key == b"choices"
            || held_members.iter().any(|h| h.raw_key(held) == key)
        {
            continue;
        }
        let sep = match i.checked_sub(1).and_then(|p| members.get(p)) {
            Some(prev) => usage.get(prev.value.end..m.key.start)?,
            None => b",",
        };
        moved.extend_from_slice(sep);
        moved.extend_from_slice(usage.get(m.key.start..m.value.end)?);
    }
    (!moved.is_empty()).then_some((into.start + close, moved))
}

/// The members of the JSON object of the one-line `data:` event `event`, and the index of its
/// closing brace.
fn data_object(event: &[u8]) -> Option<(Vec<super::members::Member>, usize)> {
    let mut data = None;
    let mut line_start = 0;
    for line in event.split_inclusive(|&b| b == b'\n' || b == b'\r') {
        if line.starts_with(b"data:") {
            if data.is_some() {
                return None;
            }
            data = Some(line_start);
        }
        line_start += line.len();
    }
    let data = data?;
    let mut open = data + 5;
    if event.get(open) == Some(&b' ') {
        open += 1;
    }
    object_members(event, open)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::response::SseResponse;

    /// What the client receives when `chunks` pass one per read, and the token events seen.
    fn pass(asked: Asked, chunks: &[&[u8]]) -> (Vec<u8>, Vec<u32>, EditStats) {
        let mut sse = SseResponse::default();
        let mut editor = SseEditor::new(asked);
        let mut out = Vec::new();
        let mut tokens = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            sse.feed_edges(c, &mut |k| tokens.push(k), &mut editor);
            match editor.finish_chunk(c, i + 1 == chunks.len()) {
                Some(new) => out.extend_from_slice(&new),
                None => out.extend_from_slice(c),
            }
        }
        (out, tokens, editor.stats)
    }

    const ADDED: Asked = Asked {
        edited: true,
        client_usage: false,
        client_continuous: false,
        continuous_added: false,
    };

    const CONTINUOUS: Asked = Asked {
        continuous_added: true,
        ..ADDED
    };

    fn chunk(content: &str, usage: &str) -> String {
        format!("data: {{\"id\":\"c\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}}}}]{usage}}}\n\n")
    }

    const USAGE_EVENT: &str = "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}}\n\n";

    #[test]
    fn the_usage_event_and_null_members_go_at_every_split() {
        let plain = format!(
            "{}{}: keep-alive\n\n{}data: [DONE]\n\n",
            chunk("a", ""),
            chunk("b", ""),
            chunk("c", "")
        );
        let worker = format!(
            "{}{}: keep-alive\n\n{}{USAGE_EVENT}data: [DONE]\n\n",
            chunk("a", ",\"usage\":null"),
            chunk("b", ",\"usage\":null"),
            chunk("c", ",\"usage\":null")
        );
        let w = worker.as_bytes();
        let (out, tokens, stats) = pass(ADDED, &[w]);
        assert_eq!(String::from_utf8_lossy(&out), plain);
        assert_eq!(tokens, vec![1, 1, 1]);
        assert_eq!((stats.events_cut, stats.members_cut, stats.left), (1, 3, 0));
        for i in 0..=w.len() {
            let (out, tokens, _) = pass(ADDED, &[&w[..i], &w[i..]]);
            assert_eq!(String::from_utf8_lossy(&out), plain, "split at {i}");
            assert_eq!(tokens, vec![1, 1, 1]);
        }
        let singles: Vec<&[u8]> = w.chunks(1).collect();
        assert_eq!(pass(ADDED, &singles).0, plain.as_bytes());
        // The client asked: nothing changes, nothing is copied.
        let asked = Asked {
            edited: false,
            client_usage: true,
            client_continuous: false,
            continuous_added: false,
        };
        assert_eq!(pass(asked, &[w]).0, w);
    }

    #[test]
    fn continuous_usage_is_cut_from_every_event_but_the_one_asked_for() {
        let worker = format!(
            "{}{}{USAGE_EVENT}data: [DONE]\n\n",
            chunk(
                "a",
                ",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}"
            ),
            chunk(
                "bc",
                ",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}"
            ),
        );
        let (out, tokens, _) = pass(CONTINUOUS, &[worker.as_bytes()]);
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("{}{}data: [DONE]\n\n", chunk("a", ""), chunk("bc", ""))
        );
        assert_eq!(tokens, vec![1, 2]);
        let asked_final = Asked {
            edited: true,
            client_usage: true,
            client_continuous: false,
            continuous_added: true,
        };
        let (out, _, _) = pass(asked_final, &[worker.as_bytes()]);
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!(
                "{}{}{USAGE_EVENT}data: [DONE]\n\n",
                chunk("a", ""),
                chunk("bc", "")
            )
        );
    }

    #[test]
    fn usage_a_worker_sends_unasked_stays() {
        // llama.cpp's completions: usage on the last event whatever was asked, no running
        // counts. Neither mode takes it away; the usage-only event still goes.
        let last = chunk(
            "b",
            ",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}",
        );
        let worker = format!("{}{last}{USAGE_EVENT}data: [DONE]\n\n", chunk("a", ""));
        let want = format!("{}{last}data: [DONE]\n\n", chunk("a", ""));
        for asked in [ADDED, CONTINUOUS] {
            let (out, _, stats) = pass(asked, &[worker.as_bytes()]);
            assert_eq!(String::from_utf8_lossy(&out), want, "{asked:?}");
            assert_eq!((stats.events_cut, stats.members_cut), (1, 0));
        }
        // A client that asked for the final usage keeps the nulls `include_usage` brings,
        // while the running counts the filter added go.
        let worker = format!(
            "{}{}{USAGE_EVENT}data: [DONE]\n\n",
            chunk(
                "a",
                ",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}"
            ),
            chunk("b", ",\"usage\":null"),
        );
        let asked = Asked {
            client_usage: true,
            ..CONTINUOUS
        };
        let (out, _, _) = pass(asked, &[worker.as_bytes()]);
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!(
                "{}{}{USAGE_EVENT}data: [DONE]\n\n",
                chunk("a", ""),
                chunk("b", ",\"usage\":null")
            )
        );
    }

    #[test]
    fn members_a_worker_moved_to_the_usage_event_go_back_at_every_split() {
        // llama.cpp's chat stream: asked for usage, it moves `timings` from the last choice
        // event to the usage-only event.
        let head = "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":\"a\"}}],\"created\":1,\"id\":\"c\",\"model\":\"tiny\",\"object\":\"chat.completion.chunk\"}\n\n";
        let fin = "data: {\"choices\":[{\"finish_reason\":\"length\",\"index\":0,\"delta\":{}}],\"created\":1,\"id\":\"c\",\"model\":\"tiny\",\"object\":\"chat.completion.chunk\"";
        let timings = ",\"timings\":{\"prompt_n\":1,\"predicted_n\":8}";
        let asked = format!(
            "{head}{fin}}}\n\ndata: {{\"choices\":[],\"created\":1,\"id\":\"c\",\"model\":\"tiny\",\"object\":\"chat.completion.chunk\",\"usage\":{{\"completion_tokens\":8,\"prompt_tokens\":21}}{timings}}}\n\ndata: [DONE]\n\n"
        );
        let direct = format!("{head}{fin}{timings}}}\n\ndata: [DONE]\n\n");
        let w = asked.as_bytes();
        for i in 0..=w.len() {
            let (out, tokens, stats) = pass(ADDED, &[&w[..i], &w[i..]]);
            assert_eq!(String::from_utf8_lossy(&out), direct, "split at {i}");
            assert_eq!(tokens, vec![1]);
            assert_eq!(
                (stats.events_cut, stats.members_moved),
                (1, 1),
                "split at {i}"
            );
        }
        let singles: Vec<&[u8]> = w.chunks(1).collect();
        assert_eq!(String::from_utf8_lossy(&pass(ADDED, &singles).0), direct);
        // vLLM: nothing to move; a finished event with a null usage member and a held finish
        // event that another event follows pass as before, at every split.
        let worker = format!(
            "{}{}{}{USAGE_EVENT}data: [DONE]\n\n",
            chunk("a", ",\"usage\":null"),
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
            chunk("b", ",\"usage\":null"),
        );
        let want = format!(
            "{}{}{}data: [DONE]\n\n",
            chunk("a", ""),
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            chunk("b", ""),
        );
        let w = worker.as_bytes();
        for i in 0..=w.len() {
            for j in i..=w.len() {
                let (out, _, stats) = pass(ADDED, &[&w[..i], &w[i..j], &w[j..]]);
                assert_eq!(String::from_utf8_lossy(&out), want, "splits at {i}, {j}");
                assert_eq!(stats.members_moved, 0);
            }
        }
        // The stream ends after the finished event: it goes out with the stream's end.
        let last = format!("{head}{fin}}}\n\n");
        let mut sse = SseResponse::default();
        let mut editor = SseEditor::new(ADDED);
        sse.feed_edges(last.as_bytes(), &mut |_| {}, &mut editor);
        let held = editor.finish_chunk(last.as_bytes(), false).unwrap();
        assert_eq!(String::from_utf8_lossy(&held), head);
        assert_eq!(
            String::from_utf8_lossy(&editor.finish_chunk(b"", true).unwrap()),
            format!("{fin}}}\n\n")
        );
    }

    #[test]
    fn the_last_member_cut_agrees_with_the_parse() {
        let cases = [
            "data: {\"a\":1,\"usage\":null}\n\n",
            "data: {\"a\": 1, \"usage\": null}\r\n\r\n",
            "data: {\"a\":1,\"usage\":{\"prompt_tokens\":5,\"prompt_tokens_details\":{\"cached_tokens\":1}}}\n\n",
            "data: {\"a\": 1, \"usage\": {\"prompt_tokens\": 5}}\n\n",
        ];
        for event in cases {
            let e = event.as_bytes();
            let fast = last_usage_member(e);
            assert!(fast.is_some(), "{event}");
            let (members, _) = data_object(e).unwrap();
            let i = members
                .iter()
                .position(|m| m.raw_key(e) == b"usage")
                .unwrap();
            assert_eq!(fast, removal(&members, i), "{event}");
        }
        // Not the last member, nested, or several data lines: left to the parse.
        for event in [
            "data: {\"usage\":null,\"service_tier\":null}\n\n",
            "data: {\"usage\":null,\"x\":{\"a\":1,\"usage\":null}}\n\n",
            "data: {\"usage\":{\"a\":1},\"x\":{\"b\":1,\"usage\":{\"c\":2}}}\n\n",
            "data: {\"usage\":{\"a\":1,\"usage\":{\"c\":2}}}\n\n",
        ] {
            assert_eq!(last_usage_member(event.as_bytes()), None, "{event}");
        }
        // Several data lines: the member on the last one goes, the JSON they join stays whole.
        let e = b"data: {\"a\":1\ndata: ,\"usage\":null}\n\n";
        let r = last_usage_member(e).unwrap();
        assert_eq!(&e[r], b",\"usage\":null");
        // What the parse then finds for xpyd-sim's order.
        let e = b"data: {\"id\":\"c\",\"usage\":null,\"service_tier\":null}\n\n";
        assert_eq!(
            usage_member(e).map(|r| String::from_utf8_lossy(&e[r]).into_owned()),
            Some(",\"usage\":null".to_string())
        );
    }

    #[test]
    fn crlf_events_and_spaced_json_are_cut_whole() {
        let worker = "data: {\"choices\": [{\"delta\": {\"content\": \"a\"}}], \"usage\": null}\r\n\r\ndata: {\"choices\": [], \"usage\": {\"prompt_tokens\": 5}}\r\n\r\ndata: [DONE]\r\n\r\n";
        let want =
            "data: {\"choices\": [{\"delta\": {\"content\": \"a\"}}]}\r\n\r\ndata: [DONE]\r\n\r\n";
        let w = worker.as_bytes();
        for i in 0..=w.len() {
            let (out, _, _) = pass(ADDED, &[&w[..i], &w[i..]]);
            assert_eq!(String::from_utf8_lossy(&out), want, "split at {i}");
        }
    }

    #[test]
    fn only_a_split_event_is_held_and_a_long_one_passes() {
        let mut sse = SseResponse::default();
        let mut editor = SseEditor::new(ADDED);
        let first = chunk("a", "");
        let second = "data: {\"id\":\"c\",\"choi";
        let both = format!("{first}{second}");
        sse.feed_edges(both.as_bytes(), &mut |_| {}, &mut editor);
        let out = editor.finish_chunk(both.as_bytes(), false).unwrap();
        assert_eq!(out, first.as_bytes());
        assert_eq!(editor.held, second.as_bytes());
        // An event longer than the cap is let through, unedited, and counted.
        let long = format!("data: {{\"choices\":[],\"x\":\"{}\"", "y".repeat(HOLD_CAP));
        let tail: &[u8] = b",\"usage\":{\"prompt_tokens\":1}}\n\n";
        let (out, _, stats) = pass(ADDED, &[long.as_bytes(), tail]);
        assert_eq!(out.len(), long.len() + tail.len());
        assert_eq!(stats.left, 1);
        assert!(stats.held_max <= HOLD_CAP);
    }
}
