//! The event scan's resume cache: the previous event's data up to its first token-text key
//! (`"content"` ...: id, object, created, model, choices, index, delta, which consecutive
//! chunks of one stream repeat byte for byte), with the scan's [`Position`] and the facts
//! there. An event that starts with the same bytes resumes from there instead of scanning them
//! again: the scan is deterministic, so the state after the same bytes is the same state.
//! About two thirds of a chunk's scan.

use super::facts::EventFacts;
use crate::protocol::json::Position;

/// The longest event start kept (ids and model names make it ~100-300 bytes).
const RESUME_CAP: usize = 512;

/// One remembered event start.
pub(super) struct Start {
    /// The data bytes up to and including the token-text key.
    pub(super) prefix: Vec<u8>,
    /// Where the scan stood right after that key.
    pub(super) at: Position,
    /// The facts the prefix gave.
    pub(super) facts: EventFacts,
}

#[derive(Default)]
pub(super) struct ResumeCache {
    /// Boxed: allocated at a stream's first chunk, and most of a stream's state is not it.
    start: Option<Box<Start>>,
    /// The oracle switch: every byte scanned, nothing remembered.
    #[cfg(any(test, feature = "test-support"))]
    off: bool,
    /// Events that resumed (tests: the resumed path must be the one taken).
    #[cfg(test)]
    pub(super) resumed: u32,
}

impl ResumeCache {
    /// Whether events resume at all: always in the product.
    #[inline(always)]
    pub(super) fn enabled(&self) -> bool {
        #[cfg(any(test, feature = "test-support"))]
        {
            !self.off
        }
        #[cfg(not(any(test, feature = "test-support")))]
        {
            true
        }
    }

    /// Turns resuming off: the scan every resumed event is checked against.
    #[cfg(any(test, feature = "test-support"))]
    pub(super) fn turn_off(&mut self) {
        self.off = true;
    }

    /// The remembered start, when the event's first data `data` begins with it.
    #[inline]
    pub(super) fn find(&mut self, data: &[u8]) -> Option<&Start> {
        let start = self.start.as_deref()?;
        let head = data.get(..start.prefix.len())?;
        if !same_bytes(head, &start.prefix) {
            return None;
        }
        #[cfg(test)]
        {
            self.resumed += 1;
        }
        Some(start)
    }

    /// Remembers an event's start, if it is short enough to keep.
    pub(super) fn remember(&mut self, prefix: &[u8], at: Position, facts: EventFacts) {
        if prefix.len() > RESUME_CAP {
            return;
        }
        let start = self.start.get_or_insert_with(|| {
            Box::new(Start {
                prefix: Vec::new(),
                at,
                facts: EventFacts::default(),
            })
        });
        start.prefix.clear();
        start.prefix.extend_from_slice(prefix);
        start.at = at;
        start.facts = facts;
    }
}

/// `a == b` eight bytes at a time (a slice compare is a byte-by-byte `memcmp` call in wasm).
/// The bytes after the last whole word are compared as the last eight bytes, which overlap
/// it: an event start is longer than a word.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let words = a
        .chunks_exact(8)
        .zip(b.chunks_exact(8))
        .all(|(x, y)| x.first_chunk::<8>() == y.first_chunk::<8>());
    words
        && match (a.last_chunk::<8>(), b.last_chunk::<8>()) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        }
}

#[cfg(test)]
mod tests {
    use super::same_bytes;

    #[test]
    fn same_bytes_is_slice_equality_at_every_length() {
        let a: Vec<u8> = (0..40u8).collect();
        for len in 0..=a.len() {
            let x = &a[..len];
            assert!(same_bytes(x, x), "length {len}");
            for at in 0..len {
                let mut y = x.to_vec();
                y[at] ^= 1;
                assert!(!same_bytes(x, &y), "length {len}, byte {at}");
            }
            if len > 0 {
                assert!(!same_bytes(x, &a[..len - 1]), "length {len}");
            }
        }
    }
}
