//! What a worker's response says about tokens: OpenAI chat/completions chunks, the Responses
//! API and SGLang's `/generate`, read as they stream (docs/design.md, "What counts as a
//! token").
//!
//! A streamed answer goes through one stage per job, in this order:
//!
//! 1. [`SseFramer`] (`protocol/sse.rs`): bytes into each event's start, `event:` name, data
//!    pieces and end, whatever the read boundaries.
//! 2. `EventDemux` (`demux.rs`): an event's data is the `[DONE]` sentinel or JSON; its name
//!    says whether it is an error event.
//! 3. `EventScan` (`scan.rs`): the event's JSON through the JSON scanner into [`EventFacts`]
//!    (the visitor in `facts.rs`: token pieces, usage, finish reasons, errors, the answer's
//!    `model`), resuming from the previous event's start when it repeats it (`ResumeCache`
//!    in `resume.rs`, which keeps the scanner's one
//!    [`Position`](crate::protocol::json::Position)).
//! 4. [`Summary`] (`summary.rs`): the facts folded into token events (the caller's
//!    `on_tokens`) and the stream's summary.
//! 5. [`EventEdges`] (`edges.rs`): where each event started and ended and what it was, for an
//!    editor of the stream (the usage edits, [`SseEditor`](crate::usage::events::SseEditor)).
//!
//! [`SseResponse`] wires them for one stream; [`JsonResponse`] reads a unary body with the
//! same facts visitor.

mod demux;
mod edges;
mod facts;
mod resume;
mod scan;
mod summary;
mod unary;

pub use edges::{EventEdges, EventEnd, NoEdges};
pub use facts::EventFacts;
pub use summary::Summary;
pub use unary::JsonResponse;

use super::sse::{SseFramer, SseSink};
use demux::EventDemux;
use scan::EventScan;

/// An SSE response body, fed chunk by chunk.
#[derive(Default)]
pub struct SseResponse {
    framer: SseFramer,
    events: EventStages,
}

/// Stages 2 to 4, for the events of one stream.
#[derive(Default)]
struct EventStages {
    demux: EventDemux,
    scan: EventScan,
    summary: Summary,
}

// The framer's loop calls these two out of line, as it did the single parser they replace:
// inlined, they cost it a register (an instruction per eight bytes framed).
impl EventStages {
    #[inline(never)]
    fn data(&mut self, bytes: &[u8]) {
        self.demux.data(bytes, &mut self.scan);
    }

    fn event_name(&mut self, bytes: &[u8]) {
        self.demux.event_name(bytes);
    }

    /// Ends the event: folds it into the summary, returns what an editor needs of it.
    #[inline(never)]
    fn end(&mut self) -> EventEnd {
        let end = self.summary.on_ended(self.demux.end(&mut self.scan));
        self.scan.clear();
        end
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
        let mut sink = Sink {
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
        self.events.scan.take_model()
    }
}

#[cfg(any(test, feature = "test-support"))]
impl SseResponse {
    /// A parser that scans every byte of every event, never resuming: the oracle the resumed
    /// scan is checked against.
    pub fn without_resume() -> SseResponse {
        let mut r = SseResponse::default();
        r.events.scan.resume.turn_off();
        r
    }
}

/// What the framer feeds for one read: stages 2 to 4, the caller's token callback and the
/// editor (stage 5).
struct Sink<'a, F: FnMut(u32), E: EventEdges> {
    events: &'a mut EventStages,
    on_tokens: &'a mut F,
    edges: &'a mut E,
}

impl<F: FnMut(u32), E: EventEdges> SseSink for Sink<'_, F, E> {
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
        let event = self.events.end();
        if event.tokens > 0 {
            (self.on_tokens)(event.tokens);
        }
        self.edges.event_end(end, cr, event);
    }
}

#[cfg(test)]
mod tests;
