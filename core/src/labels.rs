//! Label values of the metric contract (docs/design.md, "Metrics") and how client-supplied values
//! are made safe to put in an Envoy stat name.

use crate::config::quote;

/// The API a request was sent to, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Responses,
    Embeddings,
    Generate,
    Other,
}

impl Endpoint {
    /// Classifies by the end of the path (query string ignored), so a gateway's route prefix
    /// (`/openai/v1/chat/completions`) is still recognised.
    pub fn from_path(path: &[u8]) -> Endpoint {
        let end = path.iter().position(|&b| b == b'?' || b == b'#');
        let path = match end {
            Some(i) => path.get(..i).unwrap_or(path),
            None => path,
        };
        let path = path.strip_suffix(b"/").unwrap_or(path);
        if path.ends_with(b"/chat/completions") {
            Endpoint::ChatCompletions
        } else if path.ends_with(b"/completions") {
            Endpoint::Completions
        } else if path.ends_with(b"/responses") {
            Endpoint::Responses
        } else if path.ends_with(b"/embeddings") {
            Endpoint::Embeddings
        } else if path.ends_with(b"/generate") {
            Endpoint::Generate
        } else {
            Endpoint::Other
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Completions => "completions",
            Endpoint::Responses => "responses",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Generate => "generate",
            Endpoint::Other => "other",
        }
    }

    /// Endpoints whose responses carry generated tokens (TTFT, ITL, output tokens).
    pub fn generates_tokens(self) -> bool {
        !matches!(self, Endpoint::Embeddings | Endpoint::Other)
    }

    pub fn is_inference(self) -> bool {
        !matches!(self, Endpoint::Other)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestType {
    Stream,
    Unary,
}

impl RequestType {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Stream => "stream",
            RequestType::Unary => "unary",
        }
    }
}

/// Why a request failed, in Dynamo's vocabulary plus `bad_response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    Validation,
    NotFound,
    Overload,
    Unavailable,
    Internal,
    /// 501: the worker does not implement what was asked (Dynamo's `not_implemented`).
    NotImplemented,
    ResponseTimeout,
    Cancelled,
    BackendError,
    TruncatedStream,
    BadResponse,
}

impl ErrorType {
    pub const ALL: [ErrorType; 11] = [
        ErrorType::Validation,
        ErrorType::NotFound,
        ErrorType::Overload,
        ErrorType::Unavailable,
        ErrorType::Internal,
        ErrorType::NotImplemented,
        ErrorType::ResponseTimeout,
        ErrorType::Cancelled,
        ErrorType::BackendError,
        ErrorType::TruncatedStream,
        ErrorType::BadResponse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Validation => "validation",
            ErrorType::NotFound => "not_found",
            ErrorType::Overload => "overload",
            ErrorType::Unavailable => "unavailable",
            ErrorType::Internal => "internal",
            ErrorType::NotImplemented => "not_implemented",
            ErrorType::ResponseTimeout => "response_timeout",
            ErrorType::Cancelled => "cancelled",
            ErrorType::BackendError => "backend_error",
            ErrorType::TruncatedStream => "truncated_stream",
            ErrorType::BadResponse => "bad_response",
        }
    }

    /// The error an HTTP status stands for, `None` for a success status.
    pub fn from_status(status: u32) -> Option<ErrorType> {
        match status {
            404 => Some(ErrorType::NotFound),
            429 | 529 => Some(ErrorType::Overload),
            501 => Some(ErrorType::NotImplemented),
            503 => Some(ErrorType::Unavailable),
            504 => Some(ErrorType::ResponseTimeout),
            400..=499 => Some(ErrorType::Validation),
            500..=599 => Some(ErrorType::Internal),
            _ => None,
        }
    }
}

/// Longest label value kept; longer values are cut (on a character boundary).
pub const MAX_LABEL_LEN: usize = 128;

/// The `model` of requests past the `max_models` cap, or whose model no worker accepted.
pub const OTHER_MODEL: &str = "other";
/// The `model` of requests that name none.
pub const UNKNOWN_MODEL: &str = "unknown";

/// Whether `name` may be pinned in the config's `models` list: a label value as is (not cut,
/// nothing replaced) and not a reserved bucket name.
pub fn check_pinned_model(name: &str) -> Result<(), String> {
    if name == OTHER_MODEL || name == UNKNOWN_MODEL {
        return Err(format!(
            "{} is reserved for the overflow and no-model buckets",
            quote(name)
        ));
    }
    if sanitize_label_value(name.as_bytes()) != name {
        return Err(format!(
            "{} is not a label value: 1-{MAX_LABEL_LEN} bytes, no `;`, `=` or control characters",
            quote(name)
        ));
    }
    Ok(())
}

/// Makes a client- or worker-supplied value safe inside `label=.=value;.;`: `;` and `=` would
/// let a value forge or end a label segment, control characters break log lines and the
/// Prometheus text format. Empty values become `unknown`, so every series has a model.
pub fn sanitize_label_value(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len().min(MAX_LABEL_LEN));
    for ch in text.chars() {
        if out.len() + ch.len_utf8() > MAX_LABEL_LEN {
            break;
        }
        let safe = if ch == ';' || ch == '=' || ch.is_control() {
            '_'
        } else {
            ch
        };
        out.push(safe);
    }
    if out.trim().is_empty() {
        return UNKNOWN_MODEL.to_string();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_from_paths() {
        let cases: &[(&str, Endpoint)] = &[
            ("/v1/chat/completions", Endpoint::ChatCompletions),
            ("/v1/chat/completions?x=1", Endpoint::ChatCompletions),
            ("/openai/v1/chat/completions/", Endpoint::ChatCompletions),
            ("/v1/completions", Endpoint::Completions),
            ("/v1/responses", Endpoint::Responses),
            ("/v1/embeddings", Endpoint::Embeddings),
            ("/generate", Endpoint::Generate),
            ("/v1/models", Endpoint::Other),
            ("/health", Endpoint::Other),
            ("", Endpoint::Other),
        ];
        for (path, want) in cases {
            assert_eq!(Endpoint::from_path(path.as_bytes()), *want, "{path}");
        }
    }

    #[test]
    fn status_to_error_type() {
        assert_eq!(ErrorType::from_status(200), None);
        assert_eq!(ErrorType::from_status(400), Some(ErrorType::Validation));
        assert_eq!(ErrorType::from_status(404), Some(ErrorType::NotFound));
        assert_eq!(ErrorType::from_status(429), Some(ErrorType::Overload));
        assert_eq!(ErrorType::from_status(529), Some(ErrorType::Overload));
        assert_eq!(ErrorType::from_status(500), Some(ErrorType::Internal));
        assert_eq!(ErrorType::from_status(503), Some(ErrorType::Unavailable));
        assert_eq!(
            ErrorType::from_status(504),
            Some(ErrorType::ResponseTimeout)
        );
    }

    #[test]
    fn sanitizing() {
        assert_eq!(
            sanitize_label_value(b"meta-llama/Llama-3.1-8B"),
            "meta-llama/Llama-3.1-8B"
        );
        assert_eq!(sanitize_label_value(b"a;.;b=.=c"), "a_._b_._c");
        assert_eq!(sanitize_label_value(b"x\ny\tz\x00"), "x_y_z_");
        assert_eq!(sanitize_label_value(b""), "unknown");
        assert_eq!(sanitize_label_value(b"   "), "unknown");
        assert_eq!(sanitize_label_value(b"\xff\xfeok"), "\u{fffd}\u{fffd}ok");
        let long = "é".repeat(1000);
        let s = sanitize_label_value(long.as_bytes());
        assert!(s.len() <= MAX_LABEL_LEN && s.len() >= MAX_LABEL_LEN - 1);
        assert!(s.chars().all(|c| c == 'é'));
    }
}
