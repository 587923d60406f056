//! Recursive descent over one complete JSON text (RFC 8259), strict as serde_json is: no
//! trailing commas, no comments, UTF-8 strings without lone surrogates, nothing after the value.

use super::{Number, Value};
use std::fmt;

/// Deepest nesting of arrays and objects accepted, as serde_json's recursion limit (128
/// levels, the last one refused): deeper input is an error, never a stack overflow.
pub const MAX_DEPTH: usize = 127;

/// Why and where a text is not JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    /// Byte offset of the problem.
    pub offset: usize,
    /// Keys and indices from the root to the value being parsed, as serde_path_to_error names
    /// it (empty: the root, or between the entries of the root object).
    pub path: Vec<PathSeg>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// The kinds of syntax error, worded as serde_json words them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    EofInValue,
    EofInObject,
    EofInArray,
    EofInString,
    ExpectedColon,
    ExpectedCommaOrBrace,
    ExpectedCommaOrBracket,
    ExpectedValue,
    ExpectedIdent,
    KeyMustBeAString,
    TrailingComma,
    TrailingCharacters,
    InvalidNumber,
    InvalidEscape,
    /// A `\u` escape of half a surrogate pair.
    LoneSurrogate,
    InvalidUtf8,
    ControlCharacter,
    RecursionLimit,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::EofInValue => "EOF while parsing a value",
            ErrorKind::EofInObject => "EOF while parsing an object",
            ErrorKind::EofInArray => "EOF while parsing a list",
            ErrorKind::EofInString => "EOF while parsing a string",
            ErrorKind::ExpectedColon => "expected `:`",
            ErrorKind::ExpectedCommaOrBrace => "expected `,` or `}`",
            ErrorKind::ExpectedCommaOrBracket => "expected `,` or `]`",
            ErrorKind::ExpectedValue => "expected value",
            ErrorKind::ExpectedIdent => "expected ident",
            ErrorKind::KeyMustBeAString => "key must be a string",
            ErrorKind::TrailingComma => "trailing comma",
            ErrorKind::TrailingCharacters => "trailing characters",
            ErrorKind::InvalidNumber => "invalid number",
            ErrorKind::InvalidEscape => "invalid escape",
            ErrorKind::LoneSurrogate => "lone surrogate in hex escape",
            ErrorKind::InvalidUtf8 => "invalid unicode code point",
            ErrorKind::ControlCharacter => {
                "control character (\\u0000-\\u001F) found while parsing a string"
            }
            ErrorKind::RecursionLimit => "recursion limit exceeded",
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind, self.offset)
    }
}

/// Parses `text` as one JSON value, optionally surrounded by whitespace.
pub fn parse(text: &[u8]) -> Result<Value, Error> {
    let mut p = Parser {
        text,
        pos: 0,
        depth: 0,
    };
    let value = p.value().map_err(|mut e| {
        // Segments were pushed innermost first, while unwinding.
        e.path.reverse();
        e
    })?;
    p.skip_ws();
    if p.pos < text.len() {
        return Err(p.error(ErrorKind::TrailingCharacters));
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
    /// Arrays and objects open around the current position.
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, kind: ErrorKind) -> Error {
        Error {
            kind,
            offset: self.pos,
            path: Vec::new(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<Value, Error> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.error(ErrorKind::EofInValue)),
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => {
                self.pos += 1;
                Ok(Value::String(self.string()?))
            }
            Some(b't') => self.ident(b"true", Value::Bool(true)),
            Some(b'f') => self.ident(b"false", Value::Bool(false)),
            Some(b'n') => self.ident(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error(ErrorKind::ExpectedValue)),
        }
    }

    /// Runs `parse` one level deeper, refusing to go past [`MAX_DEPTH`].
    fn nested(&mut self, parse: fn(&mut Self) -> Result<Value, Error>) -> Result<Value, Error> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(ErrorKind::RecursionLimit));
        }
        self.depth += 1;
        let value = parse(self);
        self.depth -= 1;
        value
    }

    fn ident(&mut self, word: &[u8], value: Value) -> Result<Value, Error> {
        for &expected in word {
            match self.next() {
                Some(b) if b == expected => {}
                Some(_) => return Err(self.error(ErrorKind::ExpectedIdent)),
                None => return Err(self.error(ErrorKind::EofInValue)),
            }
        }
        Ok(value)
    }

    /// At `{`.
    fn object(&mut self) -> Result<Value, Error> {
        self.pos += 1;
        let mut entries = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(entries));
        }
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'"') => self.pos += 1,
                Some(b'}') => return Err(self.error(ErrorKind::TrailingComma)),
                Some(_) => return Err(self.error(ErrorKind::KeyMustBeAString)),
                // serde_json's words: after a `,` a value was due.
                None if entries.is_empty() => return Err(self.error(ErrorKind::EofInObject)),
                None => return Err(self.error(ErrorKind::EofInValue)),
            }
            let key = self.string()?;
            self.skip_ws();
            match self.next() {
                Some(b':') => {}
                Some(_) => return Err(self.error(ErrorKind::ExpectedColon)),
                None => return Err(self.error(ErrorKind::EofInObject)),
            }
            let value = self.value().map_err(|mut e| {
                e.path.push(PathSeg::Key(key.clone()));
                e
            })?;
            entries.push((key, value));
            self.skip_ws();
            match self.next() {
                Some(b',') => {}
                Some(b'}') => return Ok(Value::Object(entries)),
                Some(_) => return Err(self.error(ErrorKind::ExpectedCommaOrBrace)),
                None => return Err(self.error(ErrorKind::EofInObject)),
            }
        }
    }

    /// At `[`.
    fn array(&mut self) -> Result<Value, Error> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        match self.peek() {
            Some(b']') => {
                self.pos += 1;
                return Ok(Value::Array(items));
            }
            None => return Err(self.error(ErrorKind::EofInArray)),
            Some(_) => {}
        }
        loop {
            let index = items.len();
            let item = self.value().map_err(|mut e| {
                e.path.push(PathSeg::Index(index));
                e
            })?;
            items.push(item);
            self.skip_ws();
            match self.next() {
                Some(b',') => {}
                Some(b']') => return Ok(Value::Array(items)),
                Some(_) => return Err(self.error(ErrorKind::ExpectedCommaOrBracket)),
                None => return Err(self.error(ErrorKind::EofInArray)),
            }
            self.skip_ws();
            if self.peek() == Some(b']') {
                return Err(self.error(ErrorKind::TrailingComma));
            }
        }
    }

    /// After the opening `"`; consumes the closing one.
    fn string(&mut self) -> Result<String, Error> {
        let mut bytes = Vec::new();
        loop {
            match self.next() {
                None => return Err(self.error(ErrorKind::EofInString)),
                Some(b'"') => break,
                Some(b'\\') => self.escape(&mut bytes)?,
                Some(0..=0x1f) => return Err(self.error(ErrorKind::ControlCharacter)),
                Some(b) => bytes.push(b),
            }
        }
        // Escapes only add whole characters, so any invalid UTF-8 came from the text.
        String::from_utf8(bytes).map_err(|_| self.error(ErrorKind::InvalidUtf8))
    }

    /// After a `\`.
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let byte = match self.next() {
            None => return Err(self.error(ErrorKind::EofInString)),
            Some(b'"') => b'"',
            Some(b'\\') => b'\\',
            Some(b'/') => b'/',
            Some(b'b') => 0x08,
            Some(b'f') => 0x0c,
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'u') => {
                let c = self.unicode_escape()?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                return Ok(());
            }
            Some(_) => return Err(self.error(ErrorKind::InvalidEscape)),
        };
        out.push(byte);
        Ok(())
    }

    /// After `\u`: one character, from a surrogate pair when it takes two escapes.
    fn unicode_escape(&mut self) -> Result<char, Error> {
        let first = self.hex4()?;
        let code = match first {
            0xd800..=0xdbff => {
                if self.next() != Some(b'\\') || self.next() != Some(b'u') {
                    return Err(self.error(ErrorKind::LoneSurrogate));
                }
                let second = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&second) {
                    return Err(self.error(ErrorKind::LoneSurrogate));
                }
                0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(self.error(ErrorKind::LoneSurrogate)),
            c => c,
        };
        char::from_u32(code).ok_or_else(|| self.error(ErrorKind::InvalidEscape))
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = match self.next() {
                None => return Err(self.error(ErrorKind::EofInString)),
                Some(b) => char::from(b)
                    .to_digit(16)
                    .ok_or_else(|| self.error(ErrorKind::InvalidEscape))?,
            };
            code = code * 16 + digit;
        }
        Ok(code)
    }

    /// At `-` or a digit.
    fn number(&mut self) -> Result<Value, Error> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.next() {
            Some(b'0') => {
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return Err(self.error(ErrorKind::InvalidNumber));
                }
            }
            Some(b'1'..=b'9') => self.skip_digits(),
            Some(_) => return Err(self.error(ErrorKind::InvalidNumber)),
            None => return Err(self.error(ErrorKind::EofInValue)),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.digits()?;
        }
        // Only ASCII digits and signs were consumed.
        let text = self.text.get(start..self.pos).unwrap_or_default();
        Ok(Value::Number(Number(
            text.iter().copied().map(char::from).collect(),
        )))
    }

    /// One or more digits.
    fn digits(&mut self) -> Result<(), Error> {
        match self.peek() {
            Some(b'0'..=b'9') => {
                self.skip_digits();
                Ok(())
            }
            Some(_) => Err(self.error(ErrorKind::InvalidNumber)),
            None => Err(self.error(ErrorKind::EofInValue)),
        }
    }

    fn skip_digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }
}
