//! Buffers (`proxy_get_buffer_bytes`, `proxy_set_buffer_bytes`), as Envoy's `Context::getBuffer`
//! and `Buffer::copyFrom` define them:
//! - the request/response body is the chunk being delivered (or everything buffered while the
//!   plugin pauses); outside its callback it reads as empty;
//! - the plugin configuration exists only during `on_configure` (else `NotFound`); the VM
//!   configuration always;
//! - a callout response body only during `on_http_call_response` (else `NotFound`);
//! - reads past the end are cut short; an empty read writes nothing and returns Ok;
//! - a write replaces the whole body (start 0, size >= length), prepends (start 0, size 0) or
//!   appends (start >= length); anything else is `BadArgument`.

use anyhow::Result;
use wasmtime::Linker;

use super::{guard, wrap};
use crate::abi::{BufferType, Status};
use crate::memory::{copy_out, finish, read, Ctx, HostResult};
use crate::state::{BodySlot, HostState};

pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
    wrap(
        linker,
        "proxy_get_buffer_bytes",
        |mut c: Ctx<'_>, kind: i32, start: i32, max: i32, ret_ptr: i32, ret_len: i32| {
            finish(get_bytes(&mut c, kind, start, max, ret_ptr, ret_len))
        },
    )?;
    wrap(
        linker,
        "proxy_set_buffer_bytes",
        |mut c: Ctx<'_>, kind: i32, start: i32, size: i32, ptr: i32, len: i32| {
            finish(set_bytes(&mut c, kind, start, size, ptr, len))
        },
    )?;
    Ok(())
}

fn body_mut(st: &mut HostState, kind: BufferType) -> Option<&mut BodySlot> {
    let stream = st.stream_mut()?;
    match kind {
        BufferType::RequestBody => Some(&mut stream.request_body),
        BufferType::ResponseBody => Some(&mut stream.response_body),
        _ => None,
    }
}

/// The whole buffer a read sees; None is `NotFound`.
fn buffer(st: &HostState, kind: BufferType) -> Option<Vec<u8>> {
    match kind {
        BufferType::VmConfiguration => Some(st.vm_config.clone()),
        BufferType::PluginConfiguration => st.configuring.then(|| st.plugin_config.clone()),
        BufferType::CallResponseBody => st.call_response.as_ref().map(|r| r.body.clone()),
        BufferType::RequestBody | BufferType::ResponseBody => {
            let slot = st.stream().map(|s| {
                if kind == BufferType::RequestBody {
                    &s.request_body
                } else {
                    &s.response_body
                }
            });
            Some(match slot {
                Some(slot) if slot.live => slot.buffer.clone(),
                _ => Vec::new(),
            })
        }
        BufferType::DownstreamData
        | BufferType::UpstreamData
        | BufferType::GrpcReceiveBuffer
        | BufferType::CallData => Some(Vec::new()),
    }
}

fn get_bytes(
    c: &mut Ctx<'_>,
    kind: i32,
    start: i32,
    max: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> HostResult<()> {
    guard(c, "proxy_get_buffer_bytes")?;
    let kind = BufferType::from_raw(kind).ok_or(Status::BadArgument)?;
    let data = buffer(c.data(), kind).ok_or(Status::NotFound)?;
    let start = start as u32 as usize;
    let end = start.saturating_add(max as u32 as usize).min(data.len());
    match data.get(start..end) {
        Some(slice) if !slice.is_empty() => {
            if kind == BufferType::CallResponseBody {
                c.data_mut().call_response_bytes_read += slice.len() as u64;
            }
            copy_out(c, slice, ret_ptr, ret_len)
        }
        _ => Ok(()),
    }
}

fn set_bytes(
    c: &mut Ctx<'_>,
    kind: i32,
    start: i32,
    size: i32,
    ptr: i32,
    len: i32,
) -> HostResult<()> {
    guard(c, "proxy_set_buffer_bytes")?;
    let kind = BufferType::from_raw(kind).ok_or(Status::BadArgument)?;
    let data = read(c, ptr, len)?;
    let (start, size) = (start as u32 as usize, size as u32 as usize);
    let slot = match kind {
        BufferType::RequestBody | BufferType::ResponseBody => {
            body_mut(c.data_mut(), kind).ok_or(Status::NotFound)?
        }
        _ => return Err(Status::BadArgument.into()),
    };
    if !slot.live {
        return Err(Status::NotFound.into());
    }
    let current = slot.buffer.len();
    if start == 0 && size == 0 {
        slot.buffer.splice(0..0, data);
    } else if start == 0 && size >= current {
        slot.buffer = data;
    } else if start >= current && start != 0 {
        slot.buffer.extend_from_slice(&data);
    } else {
        return Err(Status::BadArgument.into());
    }
    Ok(())
}
