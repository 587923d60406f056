//! Stage 2 of the response path: sorts one event's pieces as the framer hands them over. Its
//! data is the `[DONE]` sentinel (matched as it arrives, without buffering) or JSON for the
//! event scan (stage 3); its `event:` name says whether it is an error event.

use super::facts::EventFacts;
use super::scan::EventScan;

const DONE: &[u8] = b"[DONE]";
const ERROR_NAME: &[u8] = b"error";

/// One event, as it ended.
pub(super) struct Event<'a> {
    pub(super) data: Data<'a>,
    /// Its `event:` name was `error`.
    pub(super) named_error: bool,
}

/// What an event's data was.
pub(super) enum Data<'a> {
    /// The `[DONE]` sentinel.
    Done,
    /// No data at all (or only whitespace).
    Empty,
    /// One JSON document, and what it said.
    Json(&'a EventFacts),
    /// Anything else.
    Malformed,
}

pub(super) struct EventDemux {
    /// No data of the current event yet.
    at_event_start: bool,
    /// How much of `[DONE]` the data matched so far; `None` once it cannot be `[DONE]`.
    done_matched: Option<usize>,
    /// How much of `error` the name matched so far; `None` once it cannot be `error`.
    name_matched: Option<usize>,
    event_is_error: bool,
}

impl Default for EventDemux {
    fn default() -> Self {
        EventDemux {
            at_event_start: true,
            done_matched: Some(0),
            name_matched: Some(0),
            event_is_error: false,
        }
    }
}

impl EventDemux {
    /// A piece of the current event's data.
    #[inline]
    pub(super) fn data(&mut self, bytes: &[u8], json: &mut EventScan) {
        let first = std::mem::replace(&mut self.at_event_start, false);
        // The usual event: a JSON object from its first byte, no whitespace, not `[DONE]`.
        if first && bytes.first() == Some(&b'{') && self.done_matched == Some(0) {
            self.done_matched = None;
            json.open(bytes);
            return;
        }
        if let Some(bytes) = self.past_done(bytes, json) {
            json.feed(bytes);
        }
    }

    /// Matches `bytes` against `[DONE]` while the data may still be it (holding them back);
    /// once it cannot, replays what was held back to `json` and returns the bytes that
    /// follow it, as it returns every piece after.
    fn past_done<'a>(&mut self, bytes: &'a [u8], json: &mut EventScan) -> Option<&'a [u8]> {
        let Some(pos) = self.done_matched else {
            return Some(bytes);
        };
        let bytes = if pos == 0 {
            let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
            bytes.get(start..).unwrap_or_default()
        } else {
            bytes
        };
        let want = DONE.get(pos..).unwrap_or_default();
        let common = bytes.iter().zip(want).take_while(|(a, b)| a == b).count();
        if common == bytes.len() {
            self.done_matched = Some(pos + common);
            return None;
        }
        self.done_matched = None;
        json.feed(DONE.get(..pos).unwrap_or_default());
        Some(bytes)
    }

    /// A piece of the current event's `event:` name.
    pub(super) fn event_name(&mut self, bytes: &[u8]) {
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

    /// Ends the event, ready for the next one (its JSON is cleared after its facts are read:
    /// [`EventScan::clear`]).
    #[inline]
    pub(super) fn end<'a>(&mut self, json: &'a mut EventScan) -> Event<'a> {
        let data = match self.done_matched {
            Some(n) if n == DONE.len() => Data::Done,
            Some(0) if json.is_pristine() => Data::Empty,
            held => {
                if let Some(pos) = held {
                    // `[DON` and the like: not the sentinel, so JSON (malformed).
                    json.feed(DONE.get(..pos).unwrap_or_default());
                }
                match json.finish() {
                    Some(facts) => Data::Json(facts),
                    None => Data::Malformed,
                }
            }
        };
        let named_error = self.event_is_error;
        *self = EventDemux::default();
        Event { data, named_error }
    }
}
