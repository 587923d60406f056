//! Reading HTTP/1.1 requests off a plain TCP connection, for the hand-written workers of the
//! hostile and fault tests: they answer with exact bytes (or misbehave on purpose), which a
//! real server library would not let them do.

use std::collections::BTreeMap;
use std::io::{self, BufRead};

/// One request as it came: the request line, the headers (names lowercased) and the body
/// (`content-length` or chunked).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub line: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn method(&self) -> &str {
        self.line.split(' ').next().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// The next request on the connection; `None` when the client closed it.
pub fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut req = Request {
        line: line.trim_end().to_string(),
        ..Request::default()
    };
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            req.headers
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    if req
        .header("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            let mut piece = vec![0; n + 2];
            reader.read_exact(&mut piece)?;
            if n == 0 {
                break;
            }
            req.body
                .extend_from_slice(piece.get(..n).unwrap_or_default());
        }
    } else {
        let n = req
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        req.body.resize(n, 0);
        reader.read_exact(&mut req.body)?;
    }
    Ok(Some(req))
}
