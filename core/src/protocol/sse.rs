//! Incremental Server-Sent Events framing (the WHATWG `text/event-stream` rules): lines end in
//! `\n`, `\r\n` or `\r`, a blank line ends an event, `data:` lines of one event are joined with
//! `\n`, one space after the colon is dropped, `:` lines are comments. Events may split at any
//! byte across chunks; nothing is buffered beyond a field name.

use super::find::find2;

/// Receives the pieces of each event as they are framed.
pub trait SseSink {
    /// Bytes of the current event's data. Consecutive data lines arrive separated by `b"\n"`.
    fn data(&mut self, bytes: &[u8]);
    /// Bytes of the current event's `event:` field.
    fn event_name(&mut self, bytes: &[u8]);
    /// An event's first field line starts at `input[at]` (comments before it are not the
    /// event's). Only an editor of the stream needs it.
    fn event_start(&mut self, _at: usize) {}
    /// A blank line ended an event that had at least one field; `end` is the index in `input`
    /// after the blank line's first byte, and `cr` says that byte was `\r` (a `\n` may follow
    /// as part of the same line ending).
    fn dispatch(&mut self, end: usize, cr: bool);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Data,
    Event,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// At the start of a line.
    Start,
    /// Reading a field name.
    Name,
    /// Reading a value; `fresh` until its first byte (to drop one leading space).
    Value { field: Field, fresh: bool },
    /// Inside a comment line.
    Comment,
}

const NAME_CAP: usize = 8;

pub struct SseFramer {
    line: Line,
    /// The previous byte was `\r`: a following `\n` belongs to the same line ending.
    after_cr: bool,
    name: [u8; NAME_CAP],
    name_len: usize,
    data_lines: u32,
    event_has_field: bool,
}

impl Default for SseFramer {
    fn default() -> Self {
        SseFramer {
            line: Line::Start,
            after_cr: false,
            name: [0; NAME_CAP],
            name_len: 0,
            data_lines: 0,
            event_has_field: false,
        }
    }
}

impl SseFramer {
    pub fn feed<S: SseSink>(&mut self, input: &[u8], sink: &mut S) {
        let mut i = 0;
        while let Some(&b) = input.get(i) {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    i += 1;
                    continue;
                }
            }
            match self.line {
                Line::Value { field, fresh } => {
                    let rest = input.get(i..).unwrap_or_default();
                    let end = find2(rest, b'\n', b'\r');
                    let mut value = match end {
                        Some(p) => rest.get(..p).unwrap_or_default(),
                        None => rest,
                    };
                    if fresh && !value.is_empty() {
                        value = value.strip_prefix(b" ").unwrap_or(value);
                        self.line = Line::Value {
                            field,
                            fresh: false,
                        };
                    }
                    match field {
                        Field::Data if !value.is_empty() => sink.data(value),
                        Field::Event if !value.is_empty() => sink.event_name(value),
                        _ => {}
                    }
                    match end {
                        Some(p) => {
                            i += p;
                            self.line = Line::Start;
                            self.after_cr = rest.get(p) == Some(&b'\r');
                        }
                        None => return,
                    }
                }
                Line::Comment => {
                    if b == b'\n' || b == b'\r' {
                        self.after_cr = b == b'\r';
                        self.line = Line::Start;
                    }
                }
                Line::Start => {
                    if b == b'\n' || b == b'\r' {
                        self.after_cr = b == b'\r';
                        if self.event_has_field {
                            sink.dispatch(i + 1, self.after_cr);
                        }
                        self.event_has_field = false;
                        self.data_lines = 0;
                    } else if b == b':' {
                        self.line = Line::Comment;
                    } else if input.get(i..i + 5) == Some(b"data:") {
                        // The usual line, whole in this chunk: no byte-by-byte field name.
                        if !self.event_has_field {
                            sink.event_start(i);
                        }
                        self.start_field(Field::Data, sink);
                        i += 5;
                        continue;
                    } else {
                        if !self.event_has_field {
                            sink.event_start(i);
                        }
                        self.name_len = 0;
                        self.push_name(b);
                        self.line = Line::Name;
                    }
                }
                Line::Name => {
                    if b == b':' {
                        self.start_value(sink);
                    } else if b == b'\n' || b == b'\r' {
                        // A field name alone is a field with an empty value.
                        self.start_value(sink);
                        self.line = Line::Start;
                        self.after_cr = b == b'\r';
                    } else {
                        self.push_name(b);
                    }
                }
            }
            i += 1;
        }
    }

    fn push_name(&mut self, b: u8) {
        if let Some(slot) = self.name.get_mut(self.name_len) {
            *slot = b;
        }
        self.name_len = self.name_len.saturating_add(1);
    }

    fn start_value<S: SseSink>(&mut self, sink: &mut S) {
        let name = self.name.get(..self.name_len).unwrap_or(b"-");
        let field = match name {
            b"data" => Field::Data,
            b"event" => Field::Event,
            _ => Field::Other,
        };
        self.start_field(field, sink);
    }

    fn start_field<S: SseSink>(&mut self, field: Field, sink: &mut S) {
        if field == Field::Data {
            if self.data_lines > 0 {
                sink.data(b"\n");
            }
            self.data_lines += 1;
        }
        self.event_has_field = true;
        self.line = Line::Value { field, fresh: true };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Debug, PartialEq)]
    struct Events {
        done: Vec<(String, String)>,
        data: Vec<u8>,
        name: Vec<u8>,
    }

    impl SseSink for Events {
        fn data(&mut self, bytes: &[u8]) {
            self.data.extend_from_slice(bytes);
        }
        fn event_name(&mut self, bytes: &[u8]) {
            self.name.extend_from_slice(bytes);
        }
        fn dispatch(&mut self, _end: usize, _cr: bool) {
            let d = String::from_utf8_lossy(&std::mem::take(&mut self.data)).into_owned();
            let n = String::from_utf8_lossy(&std::mem::take(&mut self.name)).into_owned();
            self.done.push((n, d));
        }
    }

    fn frame(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut f = SseFramer::default();
        let mut e = Events::default();
        for c in chunks {
            f.feed(c, &mut e);
        }
        e.done
    }

    fn ev(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn frames_events_with_every_line_ending() {
        let input = b": keepalive\n\ndata: {\"a\":1}\n\nevent: error\r\ndata:x\r\ndata:  y\r\n\r\ndata\n\nid: 7\rdata: z\r\rretry: 5\n\ndata: [DONE]\n\n";
        let want = ev(&[
            ("", "{\"a\":1}"),
            ("error", "x\n y"),
            ("", ""),
            ("", "z"),
            ("", ""),
            ("", "[DONE]"),
        ]);
        assert_eq!(frame(&[input]), want);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let input: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\r\n\r\nevent: e\ndata: a\ndata: b\n\n: c\ndata: [DONE]\r\r";
        let whole = frame(&[input]);
        assert_eq!(whole.len(), 3);
        for i in 0..=input.len() {
            for j in i..=input.len() {
                assert_eq!(
                    frame(&[&input[..i], &input[i..j], &input[j..]]),
                    whole,
                    "split {i},{j}"
                );
            }
        }
    }

    #[test]
    fn an_unterminated_event_is_not_dispatched() {
        assert_eq!(frame(&[b"data: {\"a\":1}\n"]), ev(&[]));
    }

    #[test]
    fn long_field_names_are_other_fields() {
        assert_eq!(frame(&[b"datadata: x\ndata: y\n\n"]), ev(&[("", "y")]));
    }
}
