//! Stage 4 of the response path: each event's facts folded into the stream's token events and
//! summary (docs/design.md, "What counts as a token").

use super::demux::{Data, Event};
use super::edges::EventEnd;
use super::facts::EventFacts;

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

    /// Folds in an event as the demultiplexer ended it; returns what an editor needs of it.
    #[inline]
    pub(super) fn on_ended(&mut self, event: Event<'_>) -> EventEnd {
        let end = match event.data {
            Data::Done => {
                self.complete = true;
                EventEnd::default()
            }
            Data::Empty => EventEnd::default(),
            Data::Json(facts) => {
                let tokens = self.on_event(facts);
                facts.end(tokens)
            }
            Data::Malformed => {
                self.malformed += 1;
                EventEnd::default()
            }
        };
        if event.named_error {
            self.backend_error = true;
        }
        end
    }

    /// The request's output token count: the worker's usage when reported, else what streamed.
    pub fn output_tokens(&self) -> u64 {
        self.usage_output_tokens.unwrap_or(self.streamed_tokens)
    }
}
