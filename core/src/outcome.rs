//! How a request ended, in the error vocabulary of docs/design.md ("Error types"), from what the
//! filter saw of the stream and what Envoy reports in `on_log` (`response.flags`,
//! `response.code_details`).

use crate::labels::ErrorType;

/// Envoy's legacy response-flag bits, as the `response.flags` property carries them.
pub mod flags {
    pub const NO_HEALTHY_UPSTREAM: u64 = 1 << 1; // UH
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 1 << 2; // UT
    pub const LOCAL_RESET: u64 = 1 << 3; // LR
    pub const UPSTREAM_REMOTE_RESET: u64 = 1 << 4; // UR
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 1 << 5; // UF
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 1 << 6; // UC
    pub const UPSTREAM_OVERFLOW: u64 = 1 << 7; // UO
    pub const DOWNSTREAM_CONNECTION_TERMINATION: u64 = 1 << 14; // DC
    pub const STREAM_IDLE_TIMEOUT: u64 = 1 << 16; // SI
    pub const DOWNSTREAM_PROTOCOL_ERROR: u64 = 1 << 18; // DPE
    pub const UPSTREAM_MAX_STREAM_DURATION: u64 = 1 << 19; // UMSDR
    pub const DURATION_TIMEOUT: u64 = 1 << 22; // DT
    pub const NO_CLUSTER_FOUND: u64 = 1 << 24; // NC
    pub const DOWNSTREAM_REMOTE_RESET: u64 = 1 << 28; // DR

    pub const DOWNSTREAM_GONE: u64 = DOWNSTREAM_CONNECTION_TERMINATION | DOWNSTREAM_REMOTE_RESET;
    pub const TIMEOUT: u64 = UPSTREAM_REQUEST_TIMEOUT
        | STREAM_IDLE_TIMEOUT
        | DURATION_TIMEOUT
        | UPSTREAM_MAX_STREAM_DURATION;
    pub const UNAVAILABLE: u64 =
        NO_HEALTHY_UPSTREAM | UPSTREAM_CONNECTION_FAILURE | NO_CLUSTER_FOUND;
}

/// Everything known about a request when it is logged.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome<'a> {
    /// Response status, 0 when no response headers were sent.
    pub status: u32,
    /// The response went out completely (end of stream seen by the filter).
    pub response_complete: bool,
    /// The response is an SSE stream.
    pub streaming: bool,
    /// The stream's last event (`[DONE]`, a finish reason) was seen.
    pub stream_finished: bool,
    pub backend_error: bool,
    /// The worker's body did not parse.
    pub malformed: bool,
    pub response_flags: u64,
    pub code_details: &'a str,
}

impl Outcome<'_> {
    pub fn error_type(&self) -> Option<ErrorType> {
        let f = self.response_flags;
        let client_gone =
            f & flags::DOWNSTREAM_GONE != 0 || self.code_details.starts_with("downstream_");
        // The client broke its own protocol (invalid HTTP/2 framing, a flood Envoy cut off):
        // DPE, or the downstream codec's own details (an upstream codec error is reported as
        // `upstream_reset_...{protocol_error}` and UPE, never like this).
        let client_broke_protocol = f & flags::DOWNSTREAM_PROTOCOL_ERROR != 0
            || self.code_details.starts_with("codec_error")
            || self.code_details.starts_with("http2.")
            || self.code_details.starts_with("http1.");
        if !self.response_complete && (client_gone || client_broke_protocol) {
            return Some(ErrorType::Cancelled);
        }
        if self.status >= 400 {
            if f & flags::TIMEOUT != 0 {
                return Some(ErrorType::ResponseTimeout);
            }
            if f & flags::UNAVAILABLE != 0 {
                return Some(ErrorType::Unavailable);
            }
            if f & flags::UPSTREAM_OVERFLOW != 0 {
                return Some(ErrorType::Overload);
            }
            return ErrorType::from_status(self.status);
        }
        if self.backend_error {
            return Some(ErrorType::BackendError);
        }
        if !self.response_complete {
            if f & flags::TIMEOUT != 0 {
                return Some(ErrorType::ResponseTimeout);
            }
            if self.status == 0 && f & flags::UNAVAILABLE != 0 {
                return Some(ErrorType::Unavailable);
            }
            if self.status == 0 && f == 0 && self.code_details.is_empty() {
                // Logged before any response and with no reason: the client left.
                return Some(ErrorType::Cancelled);
            }
            return Some(ErrorType::TruncatedStream);
        }
        if self.streaming && !self.stream_finished {
            return Some(ErrorType::TruncatedStream);
        }
        if self.malformed {
            return Some(ErrorType::BadResponse);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_stream() -> Outcome<'static> {
        Outcome {
            status: 200,
            response_complete: true,
            streaming: true,
            stream_finished: true,
            code_details: "via_upstream",
            ..Outcome::default()
        }
    }

    #[test]
    fn classification_table() {
        let base = ok_stream();
        let cases: Vec<(Outcome, Option<ErrorType>)> = vec![
            (base, None),
            (
                Outcome {
                    status: 500,
                    ..base
                },
                Some(ErrorType::Internal),
            ),
            (
                Outcome {
                    status: 400,
                    ..base
                },
                Some(ErrorType::Validation),
            ),
            (
                Outcome {
                    status: 404,
                    ..base
                },
                Some(ErrorType::NotFound),
            ),
            (
                Outcome {
                    status: 429,
                    ..base
                },
                Some(ErrorType::Overload),
            ),
            (
                Outcome {
                    status: 503,
                    ..base
                },
                Some(ErrorType::Unavailable),
            ),
            (
                Outcome {
                    status: 503,
                    response_flags: flags::UPSTREAM_CONNECTION_FAILURE,
                    code_details: "upstream_reset_before_response_started{connection_failure}",
                    ..base
                },
                Some(ErrorType::Unavailable),
            ),
            (
                Outcome {
                    status: 504,
                    response_flags: flags::UPSTREAM_REQUEST_TIMEOUT,
                    code_details: "response_timeout",
                    ..base
                },
                Some(ErrorType::ResponseTimeout),
            ),
            (
                Outcome {
                    backend_error: true,
                    ..base
                },
                Some(ErrorType::BackendError),
            ),
            (
                Outcome {
                    response_complete: false,
                    stream_finished: false,
                    response_flags: flags::UPSTREAM_CONNECTION_TERMINATION,
                    code_details: "upstream_reset_after_response_started{connection_termination}",
                    ..base
                },
                Some(ErrorType::TruncatedStream),
            ),
            (
                Outcome {
                    response_complete: false,
                    stream_finished: false,
                    response_flags: flags::DOWNSTREAM_CONNECTION_TERMINATION,
                    ..base
                },
                Some(ErrorType::Cancelled),
            ),
            (
                Outcome {
                    status: 0,
                    response_complete: false,
                    stream_finished: false,
                    code_details: "",
                    ..base
                },
                Some(ErrorType::Cancelled),
            ),
            (
                Outcome {
                    stream_finished: false,
                    ..base
                },
                Some(ErrorType::TruncatedStream),
            ),
            (
                Outcome {
                    streaming: false,
                    stream_finished: false,
                    malformed: true,
                    ..base
                },
                Some(ErrorType::BadResponse),
            ),
            (
                Outcome {
                    response_complete: false,
                    stream_finished: false,
                    response_flags: flags::DOWNSTREAM_PROTOCOL_ERROR,
                    code_details: "codec_error:The_user_callback_function_failed",
                    ..base
                },
                Some(ErrorType::Cancelled),
            ),
            (
                Outcome {
                    response_complete: false,
                    stream_finished: false,
                    code_details: "http2.too_many_headers",
                    ..base
                },
                Some(ErrorType::Cancelled),
            ),
            // A client leaving after the whole response went out cancelled nothing.
            (
                Outcome {
                    response_flags: flags::DOWNSTREAM_CONNECTION_TERMINATION,
                    ..base
                },
                None,
            ),
        ];
        for (i, (outcome, want)) in cases.iter().enumerate() {
            assert_eq!(outcome.error_type(), *want, "case {i}: {outcome:?}");
        }
    }
}
