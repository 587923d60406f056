//! Header maps, with Envoy's availability rules (`Context::getMap` / `getConstMap`):
//! - a stream's request (response) headers are reachable while their callback runs and, if it
//!   paused, until the stream continues; once the callback returns Continue Envoy drops them,
//!   and reading them later is `BadArgument` (the SDK then panics);
//! - in `on_log` (the access-log phase) the final request/response headers and response
//!   trailers are readable (a missing one reads as `NotFound`), and none is writable;
//! - callout response headers/trailers exist only during `on_http_call_response`;
//! - keys are lower-cased (Envoy's `LowerCaseString`); a lookup returns the first value;
//! - `get_header_map_pairs` of an unavailable map is an empty map, not an error.

use anyhow::Result;
use wasmtime::Linker;

use super::{guard, wrap};
use crate::abi::{deserialize_pairs, serialize_pairs, MapType, Pairs, Status};
use crate::memory::{copy_out, finish, read, Ctx, HostResult};
use crate::state::{HostState, MapSlot, StreamState};

pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
    wrap(
        linker,
        "proxy_get_header_map_pairs",
        |mut c: Ctx<'_>, map: i32, ret_ptr: i32, ret_len: i32| {
            finish(get_pairs(&mut c, map, ret_ptr, ret_len))
        },
    )?;
    wrap(
        linker,
        "proxy_set_header_map_pairs",
        |mut c: Ctx<'_>, map: i32, ptr: i32, len: i32| finish(set_pairs(&mut c, map, ptr, len)),
    )?;
    wrap(
        linker,
        "proxy_get_header_map_value",
        |mut c: Ctx<'_>, map: i32, key: i32, key_len: i32, ret_ptr: i32, ret_len: i32| {
            finish(get_value(&mut c, map, key, key_len, ret_ptr, ret_len))
        },
    )?;
    wrap(
        linker,
        "proxy_add_header_map_value",
        |mut c: Ctx<'_>, map: i32, key: i32, key_len: i32, value: i32, value_len: i32| {
            finish(mutate(
                &mut c,
                "proxy_add_header_map_value",
                map,
                key,
                key_len,
                Some((value, value_len)),
                Edit::Add,
            ))
        },
    )?;
    wrap(
        linker,
        "proxy_replace_header_map_value",
        |mut c: Ctx<'_>, map: i32, key: i32, key_len: i32, value: i32, value_len: i32| {
            finish(mutate(
                &mut c,
                "proxy_replace_header_map_value",
                map,
                key,
                key_len,
                Some((value, value_len)),
                Edit::Replace,
            ))
        },
    )?;
    wrap(
        linker,
        "proxy_remove_header_map_value",
        |mut c: Ctx<'_>, map: i32, key: i32, key_len: i32| {
            finish(mutate(
                &mut c,
                "proxy_remove_header_map_value",
                map,
                key,
                key_len,
                None,
                Edit::Remove,
            ))
        },
    )?;
    Ok(())
}

fn stream_slot(stream: &StreamState, map: MapType) -> Option<&MapSlot> {
    match map {
        MapType::RequestHeaders => Some(&stream.request_headers),
        MapType::RequestTrailers => Some(&stream.request_trailers),
        MapType::ResponseHeaders => Some(&stream.response_headers),
        MapType::ResponseTrailers => Some(&stream.response_trailers),
        _ => None,
    }
}

fn stream_slot_mut(stream: &mut StreamState, map: MapType) -> Option<&mut MapSlot> {
    match map {
        MapType::RequestHeaders => Some(&mut stream.request_headers),
        MapType::RequestTrailers => Some(&mut stream.request_trailers),
        MapType::ResponseHeaders => Some(&mut stream.response_headers),
        MapType::ResponseTrailers => Some(&mut stream.response_trailers),
        _ => None,
    }
}

/// The map a read sees (`getConstMap`), and whether the acting context is in the access-log
/// phase.
fn const_map(st: &HostState, map: MapType) -> (Option<&Pairs>, bool) {
    match map {
        MapType::CallResponseHeaders => (st.call_response.as_ref().map(|r| &r.headers), false),
        MapType::CallResponseTrailers => (
            st.call_response
                .as_ref()
                .map(|r| &r.trailers)
                .filter(|t| !t.is_empty()),
            false,
        ),
        MapType::GrpcInitialMetadata | MapType::GrpcTrailingMetadata => (None, false),
        _ => {
            let Some(stream) = st.stream() else {
                return (None, false);
            };
            let log_phase = stream.access_log_phase;
            let slot = stream_slot(stream, map);
            let pairs = match (log_phase, map) {
                (true, MapType::RequestTrailers) => None,
                (true, _) => slot.and_then(|s| s.pairs.as_ref()),
                (false, _) => slot.filter(|s| s.live).and_then(|s| s.pairs.as_ref()),
            };
            (pairs, log_phase)
        }
    }
}

fn map_type(raw: i32) -> HostResult<MapType> {
    Ok(MapType::from_raw(raw).ok_or(Status::BadArgument)?)
}

fn get_pairs(c: &mut Ctx<'_>, map: i32, ret_ptr: i32, ret_len: i32) -> HostResult<()> {
    guard(c, "proxy_get_header_map_pairs")?;
    let map = map_type(map)?;
    let bytes = match const_map(c.data(), map).0 {
        Some(pairs) if !pairs.is_empty() => serialize_pairs(pairs),
        _ => Vec::new(),
    };
    copy_out(c, &bytes, ret_ptr, ret_len)
}

fn get_value(
    c: &mut Ctx<'_>,
    map: i32,
    key: i32,
    key_len: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> HostResult<()> {
    guard(c, "proxy_get_header_map_value")?;
    let map = map_type(map)?;
    let key = read(c, key, key_len)?.to_ascii_lowercase();
    let value = match const_map(c.data(), map) {
        (None, true) => return Err(Status::NotFound.into()),
        (None, false) => return Err(Status::BadArgument.into()),
        (Some(pairs), _) => pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
            .ok_or(Status::NotFound)?,
    };
    copy_out(c, &value, ret_ptr, ret_len)
}

#[derive(Clone, Copy)]
enum Edit {
    Add,
    Replace,
    Remove,
}

/// The map a write may change (`getMap`): a stream map whose callback is running (or paused).
fn live_pairs(st: &mut HostState, map: MapType) -> HostResult<&mut Pairs> {
    let stream = st.stream_mut().ok_or(Status::BadArgument)?;
    if stream.access_log_phase {
        return Err(Status::BadArgument.into());
    }
    let slot = stream_slot_mut(stream, map).ok_or(Status::BadArgument)?;
    if !slot.live {
        return Err(Status::BadArgument.into());
    }
    Ok(slot.pairs.get_or_insert_with(Vec::new))
}

fn mutate(
    c: &mut Ctx<'_>,
    name: &'static str,
    map: i32,
    key: i32,
    key_len: i32,
    value: Option<(i32, i32)>,
    edit: Edit,
) -> HostResult<()> {
    guard(c, name)?;
    let map = map_type(map)?;
    let key = read(c, key, key_len)?.to_ascii_lowercase();
    let value = match value {
        Some((ptr, len)) => read(c, ptr, len)?,
        None => Vec::new(),
    };
    let pairs = live_pairs(c.data_mut(), map)?;
    match edit {
        Edit::Add => pairs.push((key, value)),
        Edit::Replace => match pairs.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => pairs.push((key, value)),
        },
        Edit::Remove => pairs.retain(|(k, _)| *k != key),
    }
    Ok(())
}

fn set_pairs(c: &mut Ctx<'_>, map: i32, ptr: i32, len: i32) -> HostResult<()> {
    guard(c, "proxy_set_header_map_pairs")?;
    let map = map_type(map)?;
    let raw = read(c, ptr, len)?;
    // Envoy's toPairs reads a malformed buffer as no pairs.
    let new_pairs: Pairs = deserialize_pairs(&raw)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let pairs = live_pairs(c.data_mut(), map)?;
    *pairs = new_pairs;
    Ok(())
}
