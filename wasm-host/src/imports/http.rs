//! HTTP callouts, local replies and stream control.
//!
//! - `proxy_http_call` (Envoy `Context::httpCall`, made on the root context): a negative timeout,
//!   an unknown cluster, or headers without `:method`, `:path` and `:authority` are
//!   `BadArgument`; a body adds `content-length`. The test answers the callout later.
//! - `proxy_send_local_response`: recorded; after the callback returns the host sends it
//!   through the plugin's own response callbacks and completes the stream, as Envoy's
//!   `sendLocalReply` does. In a root context it does nothing (Envoy has no stream there).
//! - `proxy_continue_stream` / `proxy_close_stream`: recorded and applied after the callback.

use std::time::Duration;

use anyhow::Result;
use wasmtime::Linker;

use super::{guard, wrap};
use crate::abi::{deserialize_pairs, Pairs, Status, StreamType};
use crate::memory::{finish, read, read_string, write_u32, Ctx, HostResult};
use crate::records::{Callout, CalloutId, CalloutState, LocalReply, StreamId};
use crate::state::{AfterCall, HostState};

pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
    wrap(
        linker,
        "proxy_http_call",
        |mut c: Ctx<'_>,
         upstream: i32,
         upstream_len: i32,
         headers: i32,
         headers_len: i32,
         body: i32,
         body_len: i32,
         trailers: i32,
         trailers_len: i32,
         timeout_ms: i32,
         token_ptr: i32| {
            let args = CallArgs {
                upstream: (upstream, upstream_len),
                headers: (headers, headers_len),
                body: (body, body_len),
                trailers: (trailers, trailers_len),
                timeout_ms,
                token_ptr,
            };
            finish(http_call(&mut c, args))
        },
    )?;
    wrap(
        linker,
        "proxy_send_local_response",
        |mut c: Ctx<'_>,
         status: i32,
         details: i32,
         details_len: i32,
         body: i32,
         body_len: i32,
         headers: i32,
         headers_len: i32,
         grpc_status: i32| {
            let args = ReplyArgs {
                status,
                details: (details, details_len),
                body: (body, body_len),
                headers: (headers, headers_len),
                grpc_status,
            };
            finish(send_local_response(&mut c, args))
        },
    )?;
    wrap(
        linker,
        "proxy_continue_stream",
        |mut c: Ctx<'_>, kind: i32| {
            finish(stream_control(&mut c, "proxy_continue_stream", kind, true))
        },
    )?;
    wrap(linker, "proxy_close_stream", |mut c: Ctx<'_>, kind: i32| {
        finish(stream_control(&mut c, "proxy_close_stream", kind, false))
    })?;
    Ok(())
}

struct CallArgs {
    upstream: (i32, i32),
    headers: (i32, i32),
    body: (i32, i32),
    trailers: (i32, i32),
    timeout_ms: i32,
    token_ptr: i32,
}

fn lower(pairs: Pairs) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(&k).to_ascii_lowercase(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect()
}

fn http_call(c: &mut Ctx<'_>, a: CallArgs) -> HostResult<()> {
    guard(c, "proxy_http_call")?;
    let cluster = read_string(c, a.upstream.0, a.upstream.1)?;
    let headers = read(c, a.headers.0, a.headers.1)?;
    let body = read(c, a.body.0, a.body.1)?;
    let trailers = read(c, a.trailers.0, a.trailers.1)?;
    // Envoy writes the token slot first, to check the memory before starting anything.
    write_u32(c, a.token_ptr, 0)?;
    if a.timeout_ms < 0 {
        return Err(Status::BadArgument.into());
    }
    let st = c.data_mut();
    if let Some(known) = &st.clusters {
        if !known.contains(&cluster) {
            return Err(Status::BadArgument.into());
        }
    }
    let mut headers = lower(deserialize_pairs(&headers).unwrap_or_default());
    let trailers = lower(deserialize_pairs(&trailers).unwrap_or_default());
    let has = |h: &[(String, String)], name: &str| h.iter().any(|(k, _)| k == name);
    if !has(&headers, ":path") || !has(&headers, ":method") || !has(&headers, ":authority") {
        return Err(Status::BadArgument.into());
    }
    if !body.is_empty() {
        headers.retain(|(k, _)| k != "content-length");
        headers.push(("content-length".to_string(), body.len().to_string()));
    }
    st.next_callout_token = st.next_callout_token.wrapping_add(1).max(1);
    let token = st.next_callout_token;
    let callout = Callout {
        id: CalloutId { vm: st.vm, token },
        context_id: st.context(),
        cluster,
        headers,
        body,
        trailers,
        timeout: (a.timeout_ms > 0).then(|| Duration::from_millis(a.timeout_ms as u64)),
        dispatched_at_ns: st.now_ns(),
        state: CalloutState::Pending,
    };
    st.callouts.push(callout);
    write_u32(c, a.token_ptr, token)
}

struct ReplyArgs {
    status: i32,
    details: (i32, i32),
    body: (i32, i32),
    headers: (i32, i32),
    grpc_status: i32,
}

fn send_local_response(c: &mut Ctx<'_>, a: ReplyArgs) -> HostResult<()> {
    guard(c, "proxy_send_local_response")?;
    let details = read_string(c, a.details.0, a.details.1)?;
    let body = read(c, a.body.0, a.body.1)?;
    let headers = read(c, a.headers.0, a.headers.1)?;
    let headers = lower(deserialize_pairs(&headers).unwrap_or_default());
    let st = c.data_mut();
    let (vm, context_id) = (st.vm, st.context());
    let Some(stream) = st.stream_mut() else {
        return Ok(());
    };
    if stream.local_reply.is_some() {
        return Ok(());
    }
    stream.local_reply = Some(LocalReply {
        stream: StreamId { vm, context_id },
        status: a.status as u32,
        details,
        body,
        headers,
        grpc_status: a.grpc_status,
    });
    st.after_call.push(AfterCall::LocalReply(context_id));
    Ok(())
}

fn stream_control(c: &mut Ctx<'_>, name: &'static str, kind: i32, resume: bool) -> HostResult<()> {
    guard(c, name)?;
    let kind = StreamType::from_raw(kind).ok_or(Status::BadArgument)?;
    if resume && kind == StreamType::Upstream {
        return Err(Status::Unimplemented.into());
    }
    let st = c.data_mut();
    let context_id = st.context();
    let Some(stream) = st.stream_mut() else {
        return Ok(());
    };
    if resume {
        stream.continued.push(kind);
    } else {
        stream.closed.push(kind);
    }
    if matches!(kind, StreamType::HttpRequest | StreamType::HttpResponse) {
        st.after_call.push(if resume {
            AfterCall::Continue(context_id, kind)
        } else {
            AfterCall::Close(context_id, kind)
        });
    }
    Ok(())
}
