//! The last stage of the response path: where each event starts and ends in the read being
//! fed, and what it was, for an editor of the stream (the usage edits,
//! [`SseEditor`](crate::usage::events::SseEditor)). A stream nobody edits passes [`NoEdges`].

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
    /// See [`SseSink::event_start`](crate::protocol::sse::SseSink::event_start).
    fn event_start(&mut self, at: usize);
    /// See [`SseSink::dispatch`](crate::protocol::sse::SseSink::dispatch).
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
