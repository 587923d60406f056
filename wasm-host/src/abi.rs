//! Proxy-wasm ABI 0.2.1 constants and the byte formats the host and the plugin exchange.
//!
//! Values follow the spec (`proxy-wasm/spec`, abi-versions/v0.2.1) and Envoy's host
//! (`proxy-wasm-cpp-host` `exports.cc`, Envoy `source/extensions/common/wasm/context.cc`).

use std::fmt;

/// Result codes returned by hostcalls (`WasmResult` in Envoy; only those this host returns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    InvalidMemoryAccess = 6,
    CasMismatch = 8,
    Unimplemented = 12,
}

/// What a filter callback returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Anything but 0: the SDK's `Action::Pause` (Envoy: stop iteration, buffer for bodies).
    Pause,
}

impl Action {
    pub(crate) fn from_raw(raw: i32) -> Action {
        if raw == 0 {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

/// Log levels (`proxy_log` level argument), ordered like Envoy's spdlog levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

impl LogLevel {
    pub(crate) fn from_raw(raw: i32) -> Option<LogLevel> {
        Some(match raw {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
        };
        f.write_str(s)
    }
}

/// `proxy_*_header_map_*` map types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MapType {
    RequestHeaders,
    RequestTrailers,
    ResponseHeaders,
    ResponseTrailers,
    GrpcInitialMetadata,
    GrpcTrailingMetadata,
    CallResponseHeaders,
    CallResponseTrailers,
}

impl MapType {
    pub(crate) fn from_raw(raw: i32) -> Option<MapType> {
        Some(match raw {
            0 => MapType::RequestHeaders,
            1 => MapType::RequestTrailers,
            2 => MapType::ResponseHeaders,
            3 => MapType::ResponseTrailers,
            4 => MapType::GrpcInitialMetadata,
            5 => MapType::GrpcTrailingMetadata,
            6 => MapType::CallResponseHeaders,
            7 => MapType::CallResponseTrailers,
            _ => return None,
        })
    }
}

/// `proxy_get_buffer_bytes` / `proxy_set_buffer_bytes` buffer types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BufferType {
    RequestBody,
    ResponseBody,
    DownstreamData,
    UpstreamData,
    CallResponseBody,
    GrpcReceiveBuffer,
    VmConfiguration,
    PluginConfiguration,
    CallData,
}

impl BufferType {
    pub(crate) fn from_raw(raw: i32) -> Option<BufferType> {
        Some(match raw {
            0 => BufferType::RequestBody,
            1 => BufferType::ResponseBody,
            2 => BufferType::DownstreamData,
            3 => BufferType::UpstreamData,
            4 => BufferType::CallResponseBody,
            5 => BufferType::GrpcReceiveBuffer,
            6 => BufferType::VmConfiguration,
            7 => BufferType::PluginConfiguration,
            8 => BufferType::CallData,
            _ => return None,
        })
    }
}

/// `proxy_continue_stream` / `proxy_close_stream` stream types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamType {
    HttpRequest,
    HttpResponse,
    Downstream,
    Upstream,
}

impl StreamType {
    pub(crate) fn from_raw(raw: i32) -> Option<StreamType> {
        Some(match raw {
            0 => StreamType::HttpRequest,
            1 => StreamType::HttpResponse,
            2 => StreamType::Downstream,
            3 => StreamType::Upstream,
            _ => return None,
        })
    }
}

/// Metric kinds (`proxy_define_metric`); the low two bits of an Envoy metric id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricKind {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

impl MetricKind {
    pub(crate) fn from_raw(raw: u32) -> Option<MetricKind> {
        Some(match raw {
            0 => MetricKind::Counter,
            1 => MetricKind::Gauge,
            2 => MetricKind::Histogram,
            _ => return None,
        })
    }
}

/// Header pairs as the host keeps them: byte keys and values, in order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Serializes pairs the proxy-wasm way: u32 count, then (key len, value len) u32 pairs, then each
/// key and value followed by a NUL byte. All integers little-endian.
pub(crate) fn serialize_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let data: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = Vec::with_capacity(4 + pairs.len() * 8 + data);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Parses serialized pairs. Like Envoy (`toPairs`), a buffer too short for its own header yields
/// no pairs; unlike Envoy it also refuses data that runs past the end (Envoy would read beyond).
pub(crate) fn deserialize_pairs(bytes: &[u8]) -> Option<Pairs> {
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    if bytes.len() < 4 {
        return Some(Vec::new());
    }
    let count = word(0)?;
    let mut sizes = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        sizes.push((word(4 + i * 8)?, word(8 + i * 8)?));
    }
    let mut at = 4 + count * 8;
    let mut pairs = Vec::with_capacity(sizes.len());
    for (klen, vlen) in sizes {
        let key = bytes.get(at..at + klen)?.to_vec();
        at += klen + 1;
        let value = bytes.get(at..at + vlen)?.to_vec();
        at += vlen + 1;
        pairs.push((key, value));
    }
    Some(pairs)
}

/// Splits a serialized property path (`proxy_get_property`): parts separated by NUL bytes.
pub(crate) fn split_path(path: &[u8]) -> Vec<&[u8]> {
    if path.is_empty() {
        return Vec::new();
    }
    path.split(|b| *b == 0).collect()
}

/// Joins path parts the way the SDK serializes them (NUL-separated).
pub(crate) fn join_path(parts: &[&str]) -> Vec<u8> {
    parts.join("\0").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip() {
        let pairs: Pairs = vec![
            (b":method".to_vec(), b"GET".to_vec()),
            (b"x".to_vec(), Vec::new()),
        ];
        let bytes = serialize_pairs(&pairs);
        assert_eq!(&bytes[..4], &[2, 0, 0, 0]);
        assert_eq!(deserialize_pairs(&bytes), Some(pairs));
        assert_eq!(deserialize_pairs(&[]), Some(Vec::new()));
        assert_eq!(deserialize_pairs(&[1, 0, 0, 0, 9, 0, 0, 0]), None);
    }

    #[test]
    fn paths() {
        assert_eq!(
            split_path(b"response\0flags"),
            vec![&b"response"[..], b"flags"]
        );
        assert_eq!(join_path(&["a", "b"]), b"a\0b".to_vec());
    }
}
