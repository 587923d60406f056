//! The event hooks the module exports: Envoy resolves every `envoy_dynamic_module_on_http_filter_*`
//! symbol when it loads an HTTP filter config, so the ones llm-pulse has no use for are here
//! too, doing nothing. Each hook turns Envoy's pointers into the crate's safe types and hands
//! over: [`FilterConfig`] (one per filter config, shared by the worker threads) and
//! [`StreamFilter`] (one per HTTP stream).
//!
//! # Safety
//!
//! The hooks are `unsafe`: only Envoy calls them, with the pointers abi.h documents for each
//! (a live filter config or stream of this module, Envoy buffers valid for the hook).

// The contract above is the same for every hook.
#![allow(clippy::missing_safety_doc)]

use super::calls::{CalloutAnswer, ConfigHandle, Stream};
use super::*;
use crate::config::FilterConfig;
use crate::filter::{Flow, StreamFilter};
use std::ffi::c_char;
use std::mem::ManuallyDrop;
use std::sync::Arc;

fn status(flow: Flow) -> u32 {
    match flow {
        Flow::Continue => CONTINUE,
        Flow::Stop => STOP_ITERATION,
    }
}

/// The module config behind `config_module_ptr`, borrowed for one hook.
///
/// SAFETY (for callers): `ptr` is null or a pointer [`envoy_dynamic_module_on_http_filter_config_new`]
/// returned and `..._config_destroy` has not released.
unsafe fn config<'a>(ptr: *const c_void) -> Option<&'a FilterConfig> {
    // SAFETY: the caller vouches that a non-null `ptr` is a live `Arc<FilterConfig>`'s.
    unsafe { ptr.cast::<FilterConfig>().as_ref() }
}

/// Runs `f` on the stream filter behind `filter_module_ptr`.
///
/// SAFETY (for callers): `ptr` is null or a pointer [`envoy_dynamic_module_on_http_filter_new`]
/// returned and `..._destroy` has not released; Envoy runs one stream's hooks one at a time on
/// one thread, so the `&mut` is exclusive.
unsafe fn with_filter<R>(
    ptr: *const c_void,
    default: R,
    f: impl FnOnce(&mut StreamFilter) -> R,
) -> R {
    // SAFETY: see above.
    match unsafe { ptr.cast::<StreamFilter>().cast_mut().as_mut() } {
        Some(filter) => f(filter),
        None => default,
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    crate::logger::install();
    ABI_VERSION.as_ptr().cast()
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy_ptr: *mut c_void,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    // SAFETY: Envoy's config bytes, valid during this hook; parsed before it returns.
    let raw = unsafe { envoy_bytes(config) };
    match FilterConfig::new(ConfigHandle::new(config_envoy_ptr), raw) {
        Some(c) => Arc::into_raw(c).cast(),
        // Envoy refuses the filter config; FilterConfig::new logged why.
        None => std::ptr::null(),
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config_module_ptr: *const c_void,
) {
    if !config_module_ptr.is_null() {
        // SAFETY: the `Arc::into_raw` of `..._config_new`, released once, here.
        let config = unsafe { Arc::from_raw(config_module_ptr.cast::<FilterConfig>()) };
        config.shut_down();
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _config_envoy_ptr: *mut c_void,
    config_module_ptr: *const c_void,
    event_id: u64,
) {
    // SAFETY: Envoy passes the live config of this hook.
    if let Some(c) = unsafe { config(config_module_ptr) } {
        c.on_scheduled(event_id);
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config_envoy_ptr: *mut c_void,
    config_module_ptr: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    // SAFETY: Envoy passes the live config of this hook.
    let Some(c) = (unsafe { config(config_module_ptr) }) else {
        return;
    };
    // SAFETY: the arrays and lengths Envoy passed to this hook.
    let answer = unsafe {
        CalloutAnswer::copy(
            result,
            headers,
            headers_size,
            body_chunks,
            body_chunks_size,
            c.max_callout_body(),
        )
    };
    c.on_callout_done(callout_id, answer);
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config_module_ptr: *const c_void,
    _filter_envoy_ptr: *mut c_void,
) -> *const c_void {
    if config_module_ptr.is_null() {
        return std::ptr::null();
    }
    // SAFETY: the live `Arc<FilterConfig>` of `..._config_new`, borrowed (not released) to
    // take one more reference for the stream.
    let shared =
        ManuallyDrop::new(unsafe { Arc::from_raw(config_module_ptr.cast::<FilterConfig>()) });
    let filter = StreamFilter::new(Arc::clone(&shared));
    Box::into_raw(Box::new(filter)).cast_const().cast()
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(
    filter_module_ptr: *const c_void,
) {
    if !filter_module_ptr.is_null() {
        // SAFETY: the `Box::into_raw` of `..._filter_new`, released once, here.
        drop(unsafe { Box::from_raw(filter_module_ptr.cast::<StreamFilter>().cast_mut()) });
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: the stream filter of this hook.
    unsafe {
        with_filter(filter_module_ptr, CONTINUE, |f| {
            status(f.on_request_headers(Stream::new(filter_envoy_ptr), end_of_stream))
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: the stream filter of this hook.
    unsafe {
        with_filter(filter_module_ptr, CONTINUE, |f| {
            f.on_request_body(Stream::new(filter_envoy_ptr), end_of_stream);
            CONTINUE
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
) -> u32 {
    // As the .wasm: trailers change nothing the meter sees.
    let _ = (filter_envoy_ptr, filter_module_ptr);
    CONTINUE
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: the stream filter of this hook.
    unsafe {
        with_filter(filter_module_ptr, CONTINUE, |f| {
            f.on_response_headers(Stream::new(filter_envoy_ptr), end_of_stream);
            CONTINUE
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    // SAFETY: the stream filter of this hook.
    unsafe {
        with_filter(filter_module_ptr, CONTINUE, |f| {
            f.on_response_body(Stream::new(filter_envoy_ptr), end_of_stream);
            CONTINUE
        })
    }
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
) -> u32 {
    // As the .wasm: trailers change nothing the meter sees.
    let _ = (filter_envoy_ptr, filter_module_ptr);
    CONTINUE
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
) {
    // SAFETY: the stream filter of this hook.
    unsafe {
        with_filter(filter_module_ptr, (), |f| {
            f.on_stream_complete(Stream::new(filter_envoy_ptr))
        })
    }
}

// Hooks llm-pulse has no use for: per-route config, per-stream callouts and schedulers,
// streamed callouts, watermarks, local replies.

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const c_void {
    // No per-route settings: a per-route config of this filter is refused.
    std::ptr::null()
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _config: *const c_void,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *const EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _event_id: u64,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _stream_id: u64,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _stream_id: u64,
    _trailers: *const EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _stream_id: u64,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _config_envoy_ptr: *mut c_void,
    _config_module_ptr: *const c_void,
    _stream_id: u64,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _config_envoy_ptr: *mut c_void,
    _config_module_ptr: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _config_envoy_ptr: *mut c_void,
    _config_module_ptr: *const c_void,
    _stream_id: u64,
    _trailers: *const EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _config_envoy_ptr: *mut c_void,
    _config_module_ptr: *const c_void,
    _stream_id: u64,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _config_envoy_ptr: *mut c_void,
    _config_module_ptr: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
) {
}

#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    CONTINUE
}
