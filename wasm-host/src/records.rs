//! What a test reads back: plain data records of what the plugin did.

use std::collections::BTreeMap;
use std::time::Duration;

use super::abi::{Action, LogLevel, StreamType};

/// One HTTP stream: the VM it runs on and its context id there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    pub vm: usize,
    pub context_id: u32,
}

/// One `dispatch_http_call`: the VM it came from and the token the plugin got back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CalloutId {
    pub vm: usize,
    pub token: u32,
}

/// A line the plugin logged (`proxy_log`, or WASI stdout/stderr as Envoy maps them: info/error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub vm: usize,
    /// The context the call ran in (root or stream).
    pub context_id: u32,
    pub level: LogLevel,
    pub message: String,
    /// Test-clock time, nanoseconds since the Unix epoch.
    pub at_ns: u64,
    /// Host-wide order of the entry.
    pub seq: u64,
}

/// A local reply the plugin sent (`proxy_send_local_response`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply {
    pub stream: StreamId,
    pub status: u32,
    pub details: String,
    pub body: Vec<u8>,
    /// Additional headers as the plugin passed them (names lower-cased, as Envoy stores them).
    pub headers: Vec<(String, String)>,
    pub grpc_status: i32,
}

/// What became of a callout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CalloutState {
    Pending,
    /// The test answered it (or the host's timeout did, with a 504).
    Answered {
        status: u16,
    },
    /// Failed as a reset: the plugin saw zero headers, zero body.
    Failed,
}

/// An HTTP callout the plugin dispatched (`proxy_http_call`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callout {
    pub id: CalloutId,
    /// The context that was current when the plugin dispatched it.
    pub context_id: u32,
    pub cluster: String,
    /// Headers as Envoy builds them: names lower-cased; `content-length` added for a body.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    /// None: no timeout (the plugin passed 0).
    pub timeout: Option<Duration>,
    pub dispatched_at_ns: u64,
    pub state: CalloutState,
}

impl Callout {
    /// First value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// Which plugin callback ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callback {
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
    Log,
    Done,
    Delete,
    CallResponse,
}

/// One callback the host made on a stream and what it returned (`None` for callbacks without
/// an action: log, done, delete, callout responses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackRecord {
    pub callback: Callback,
    pub action: Option<Action>,
    pub at_ns: u64,
}

/// How a stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// `Host::complete_stream`.
    Completed,
    /// `Host::reset_stream`: the upstream reset the stream.
    UpstreamReset,
    /// `Host::disconnect`: the client went away.
    Disconnected,
    /// The plugin's local reply was delivered and the stream completed.
    LocalReply,
    /// The plugin closed the stream (`proxy_close_stream`).
    ClosedByPlugin,
}

/// Everything the host saw on one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamRecord {
    pub id: Option<StreamId>,
    /// Request headers as they left the filter (after the plugin's changes).
    pub request_headers: Vec<(String, String)>,
    pub request_trailers: Option<Vec<(String, String)>>,
    /// Response headers as they left the filter (a local reply's headers included).
    pub response_headers: Option<Vec<(String, String)>>,
    pub response_trailers: Option<Vec<(String, String)>>,
    /// Request body bytes the filter let through, in order.
    pub request_body: Vec<u8>,
    /// Response body bytes the filter let through, in order.
    pub response_body: Vec<u8>,
    /// Bytes held back because a body callback paused (Envoy buffers them).
    pub request_body_held: Vec<u8>,
    pub response_body_held: Vec<u8>,
    /// Every callback on this stream, in order, with what it returned.
    pub callbacks: Vec<CallbackRecord>,
    /// Properties the plugin set (`proxy_set_property`), keyed the way Envoy's filter state
    /// keys them: `wasm.` + the serialized path (parts joined by NUL).
    pub filter_state: BTreeMap<String, Vec<u8>>,
    pub local_reply: Option<LocalReply>,
    /// `proxy_continue_stream` calls.
    pub continued: Vec<StreamType>,
    /// `proxy_close_stream` calls.
    pub closed: Vec<StreamType>,
    pub end: Option<EndReason>,
}

impl StreamRecord {
    /// Actions the given callback returned, in order.
    pub fn actions(&self, callback: Callback) -> Vec<Action> {
        self.callbacks
            .iter()
            .filter(|c| c.callback == callback)
            .filter_map(|c| c.action)
            .collect()
    }

    /// True if no body or header callback returned `Pause`.
    pub fn never_paused(&self) -> bool {
        self.callbacks
            .iter()
            .all(|c| c.action != Some(Action::Pause))
    }

    /// A property the plugin set, by its one-element path (`llm_pulse.ttft_us`) or its Envoy
    /// filter-state key (`wasm.llm_pulse.ttft_us`).
    pub fn property(&self, name: &str) -> Option<&[u8]> {
        let key = if name.starts_with("wasm.") {
            name.to_string()
        } else {
            format!("wasm.{name}")
        };
        self.filter_state.get(&key).map(Vec::as_slice)
    }

    /// A property the plugin set, as UTF-8 text.
    pub fn property_str(&self, name: &str) -> Option<String> {
        self.property(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn request_header(&self, name: &str) -> Option<&str> {
        find_header(&self.request_headers, name)
    }

    pub fn response_header(&self, name: &str) -> Option<&str> {
        self.response_headers
            .as_deref()
            .and_then(|h| find_header(h, name))
    }
}

pub(crate) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Envoy's response flag bits, as `response.flags` carries them: the filter's own table, so the
/// host sets the bits the filter reads (the contract cases keep an independent copy to check it).
pub use llm_pulse_core::outcome::flags as response_flags;
