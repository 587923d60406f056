//! A unary (non-streamed) JSON answer: the whole body is one document, read by the same facts
//! visitor as a stream's events.

use super::facts::{EventFacts, ModelCapture, ROOT};
use super::summary::Summary;
use crate::protocol::json::JsonScanner;

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
