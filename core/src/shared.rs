//! Proxy-wasm shared data, which every VM of one `vm_id` (one per Envoy worker thread) reads and
//! writes: the one compare-and-swap loop its writers use, so a write that lost a race against
//! another VM is decided again on the value that won.

use crate::host::{Host, HostError};

/// A write is tried this often when another VM wrote in between.
pub const CAS_RETRIES: usize = 8;

/// What a writer makes of the value it read.
pub enum Step<T> {
    /// Nothing to write; `T` is the answer.
    Keep(T),
    /// Write these bytes; `T` is the answer once they are written.
    Write(Vec<u8>, T),
}

/// How an [`update`] ended; each case carries the answer of the last read.
#[derive(Debug, PartialEq, Eq)]
pub enum Cas<T> {
    /// Written, or nothing to write.
    Done(T),
    /// Another VM wrote in between on each of [`CAS_RETRIES`] tries.
    Contended(T),
    /// The host refused the write for another reason than a race.
    Refused(T, HostError),
}

/// Reads `key` (`None` when it does not exist), lets `decide` say what to write, and writes it
/// with the read's CAS token; on a race, reads and decides again.
pub fn update<T>(
    host: &dyn Host,
    key: &str,
    mut decide: impl FnMut(Option<Vec<u8>>) -> Step<T>,
) -> Cas<T> {
    let mut tries = 0;
    loop {
        tries += 1;
        let (value, cas) = host.get_shared_data(key);
        let (next, answer) = match decide(value) {
            Step::Keep(answer) => return Cas::Done(answer),
            Step::Write(next, answer) => (next, answer),
        };
        match host.set_shared_data(key, &next, cas) {
            Ok(()) => return Cas::Done(answer),
            Err(HostError::CasMismatch) if tries < CAS_RETRIES => {}
            Err(HostError::CasMismatch) => return Cas::Contended(answer),
            Err(e) => return Cas::Refused(answer, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;

    fn append(value: Option<Vec<u8>>, byte: u8) -> Step<usize> {
        let mut next = value.unwrap_or_default();
        next.push(byte);
        let len = next.len();
        Step::Write(next, len)
    }

    #[test]
    fn a_write_is_decided_on_the_value_read() {
        let host = FakeHost::default();
        assert_eq!(update(&host, "k", |v| append(v, b'a')), Cas::Done(1));
        assert_eq!(update(&host, "k", |v| append(v, b'b')), Cas::Done(2));
        assert_eq!(update(&host, "k", |_| Step::Keep(7)), Cas::Done(7));
        assert_eq!(host.get_shared_data("k").0.as_deref(), Some(&b"ab"[..]));
    }

    #[test]
    fn a_lost_race_is_decided_again_on_the_winner() {
        let host = FakeHost::default();
        // An existing key: a write to a missing one carries no CAS token to lose with.
        let _ = host.set_shared_data("k", b"", None);
        let mut raced = false;
        let written = update(&host, "k", |v| {
            if !raced {
                // Another VM writes between this read and this write.
                raced = true;
                let _ = host.set_shared_data("k", b"x", None);
            }
            append(v, b'a')
        });
        assert_eq!(written, Cas::Done(2));
        assert_eq!(host.get_shared_data("k").0.as_deref(), Some(&b"xa"[..]));
    }

    #[test]
    fn a_race_lost_every_time_gives_up() {
        let host = FakeHost::default();
        let _ = host.set_shared_data("k", b"", None);
        let mut reads = 0;
        let written = update(&host, "k", |v| {
            reads += 1;
            let _ = host.set_shared_data("k", b"", None);
            append(v, b'a')
        });
        assert_eq!(written, Cas::Contended(1));
        assert_eq!(reads, CAS_RETRIES);
    }
}
