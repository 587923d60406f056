//! Stage 3 of the response path: one event's JSON data through the JSON scanner into its
//! [`EventFacts`], with the answer's `model` looked for in the stream's first JSON event and
//! the event's start resumed from the [`ResumeCache`] when it repeats the previous one's.

use super::facts::{EventFacts, ModelCapture, CONTENT, ROOT};
use super::resume::ResumeCache;
use crate::protocol::json::JsonScanner;

/// Where a response's `model` stands: looked for in the first JSON event, then told once.
#[derive(Debug, Default)]
enum AnswerModel {
    #[default]
    Wanted,
    /// The first JSON event ended: its `model` (`None`: it had none), not yet taken.
    Found(Option<Vec<u8>>),
    Taken,
}

pub(super) struct EventScan {
    scanner: JsonScanner,
    facts: EventFacts,
    pub(super) resume: ResumeCache,
    model: AnswerModel,
    /// The `model` of the first JSON event, while it is scanned.
    captured: Option<Vec<u8>>,
}

impl Default for EventScan {
    fn default() -> Self {
        EventScan {
            scanner: JsonScanner::new(ROOT),
            facts: EventFacts::default(),
            resume: ResumeCache::default(),
            model: AnswerModel::Wanted,
            captured: None,
        }
    }
}

impl EventScan {
    /// An event's first data, which opens an object: resumed from the previous event's start
    /// when it repeats it, else scanned to the token-text key, remembering how it got there.
    pub(super) fn open(&mut self, data: &[u8]) {
        if !self.resume.enabled() {
            self.feed(data);
            return;
        }
        if let Some(start) = self.resume.find(data) {
            self.scanner.resume(&start.at);
            self.facts = start.facts;
            let rest = data.get(start.prefix.len()..).unwrap_or_default();
            self.feed(rest);
            return;
        }
        let to_key = if matches!(self.model, AnswerModel::Wanted) {
            let mut v = ModelCapture {
                facts: &mut self.facts,
                model: &mut self.captured,
            };
            self.scanner.feed_to_key(data, &mut v, CONTENT)
        } else {
            self.scanner.feed_to_key(data, &mut self.facts, CONTENT)
        };
        if let Some((n, at)) = to_key {
            self.resume
                .remember(data.get(..n).unwrap_or_default(), at, self.facts);
            self.feed(data.get(n..).unwrap_or_default());
        }
    }

    /// More of the event's JSON.
    pub(super) fn feed(&mut self, data: &[u8]) {
        if matches!(self.model, AnswerModel::Wanted) {
            let mut v = ModelCapture {
                facts: &mut self.facts,
                model: &mut self.captured,
            };
            self.scanner.feed(data, &mut v);
        } else {
            self.scanner.feed(data, &mut self.facts);
        }
    }

    /// Whether no JSON byte has been fed since the last event ended.
    pub(super) fn is_pristine(&self) -> bool {
        self.scanner.is_pristine()
    }

    /// Ends the event's JSON: its facts, or `None` when it was not one JSON document.
    pub(super) fn finish(&mut self) -> Option<&EventFacts> {
        if matches!(self.model, AnswerModel::Wanted) {
            self.model = AnswerModel::Found(self.captured.take());
        }
        self.scanner.finish(&mut self.facts).then_some(&self.facts)
    }

    /// Ready for the next event's JSON.
    pub(super) fn clear(&mut self) {
        self.facts = EventFacts::default();
        self.scanner.reset();
    }

    /// The answer's `model` once the first JSON event ended (`Some(None)`: it had none), told
    /// once.
    pub(super) fn take_model(&mut self) -> Option<Option<Vec<u8>>> {
        match std::mem::replace(&mut self.model, AnswerModel::Taken) {
            AnswerModel::Found(m) => Some(m),
            other => {
                self.model = other;
                None
            }
        }
    }
}
