//! `proxy_get_property` / `proxy_set_property`.
//!
//! Reads look, in order, at the properties the test set on the stream (`request.path`,
//! `response.flags`, ...), the host-wide ones (`plugin_root_id`, ...), then what the plugin set
//! (Envoy's filter state `wasm.<path>`, found by the first path element only: a value set with
//! a one-element path reads back, a multi-element one does not, as in Envoy).
//! Writes need a stream (Envoy: no stream info in a root context -> NotFound).

use anyhow::Result;
use wasmtime::Linker;

use super::{guard, wrap};
use crate::abi::{split_path, Status};
use crate::memory::{copy_out, finish, read, Ctx, HostResult};
use crate::state::HostState;

pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
    wrap(
        linker,
        "proxy_get_property",
        |mut c: Ctx<'_>, path: i32, path_len: i32, ret_ptr: i32, ret_len: i32| {
            finish(get_property(&mut c, path, path_len, ret_ptr, ret_len))
        },
    )?;
    wrap(
        linker,
        "proxy_set_property",
        |mut c: Ctx<'_>, path: i32, path_len: i32, value: i32, value_len: i32| {
            finish(set_property(&mut c, path, path_len, value, value_len))
        },
    )?;
    Ok(())
}

fn lookup(st: &HostState, path: &[u8]) -> Result<Vec<u8>, Status> {
    let parts = split_path(path);
    let Some(first) = parts.first() else {
        return Err(Status::NotFound);
    };
    let stream = st.stream();
    if let Some(v) = stream.and_then(|s| s.properties.get(path)) {
        return Ok(v.clone());
    }
    if let Some(v) = st.host_properties.get(path) {
        return Ok(v.clone());
    }
    match stream.and_then(|s| s.filter_state.get(*first)) {
        Some(v) if parts.len() == 1 => Ok(v.clone()),
        _ => Err(Status::NotFound),
    }
}

fn get_property(
    c: &mut Ctx<'_>,
    path: i32,
    path_len: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> HostResult<()> {
    guard(c, "proxy_get_property")?;
    let path = read(c, path, path_len)?;
    let value = lookup(c.data(), &path)?;
    copy_out(c, &value, ret_ptr, ret_len)
}

fn set_property(
    c: &mut Ctx<'_>,
    path: i32,
    path_len: i32,
    value: i32,
    value_len: i32,
) -> HostResult<()> {
    guard(c, "proxy_set_property")?;
    let path = read(c, path, path_len)?;
    let value = read(c, value, value_len)?;
    let stream = c.data_mut().stream_mut().ok_or(Status::NotFound)?;
    stream.filter_state.insert(path, value);
    Ok(())
}
