//! The imports a plugin links against: WASI preview1 (`wasmtime-wasi`) and the proxy-wasm ABI
//! 0.2.1 hostcalls in `env` that the Rust SDK (proxy-wasm 0.2.5) uses.
//!
//! Every function the module imports first gets a stub that fails the call, naming the import;
//! the real implementations then replace the stubs they cover. So a module that imports
//! something this host lacks still loads (as in Envoy, which provides every ABI function), and
//! the test fails with the import's name the moment the plugin calls it.

mod buffers;
mod general;
mod http;
mod maps;
mod metrics;
mod properties;
mod shared_data;

use anyhow::{bail, Context as _, Result};
use wasmtime::{Engine, ExternType, Linker, Module};

use super::memory::{trap, Ctx, HostResult};
use super::state::HostState;

/// Imports implemented in `env` (the proxy-wasm ABI).
pub const IMPLEMENTED: &[&str] = &[
    "proxy_log",
    "proxy_get_log_level",
    "proxy_get_current_time_nanoseconds",
    "proxy_set_tick_period_milliseconds",
    "proxy_set_effective_context",
    "proxy_done",
    "proxy_get_property",
    "proxy_set_property",
    "proxy_get_header_map_pairs",
    "proxy_set_header_map_pairs",
    "proxy_get_header_map_value",
    "proxy_add_header_map_value",
    "proxy_replace_header_map_value",
    "proxy_remove_header_map_value",
    "proxy_get_buffer_bytes",
    "proxy_set_buffer_bytes",
    "proxy_define_metric",
    "proxy_increment_metric",
    "proxy_record_metric",
    "proxy_get_metric",
    "proxy_get_shared_data",
    "proxy_set_shared_data",
    "proxy_http_call",
    "proxy_send_local_response",
    "proxy_continue_stream",
    "proxy_close_stream",
];

/// Builds the linker for `module`.
pub(crate) fn linker(engine: &Engine, module: &Module) -> Result<Linker<HostState>> {
    let mut linker: Linker<HostState> = Linker::new(engine);
    linker.allow_shadowing(true);
    for import in module.imports() {
        let (from, name) = (import.module().to_string(), import.name().to_string());
        let ExternType::Func(ty) = import.ty() else {
            bail!(
                "the module imports {from}.{name}, which is not a function: \
                 this host (like Envoy) only provides functions"
            );
        };
        let full = format!("{from}.{name}");
        linker
            .func_new(&from, &name, ty, move |mut caller, _, _| {
                caller.data_mut().unimplemented_calls.push(full.clone());
                Err(wasmtime::format_err!(
                    "the plugin called `{full}`, an import the wasm_host does not implement"
                ))
            })
            .map_err(anyhow::Error::from)
            .with_context(|| format!("stubbing import {from}.{name}"))?;
    }
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut HostState| &mut s.wasi)
        .map_err(anyhow::Error::from)
        .context("adding WASI preview1")?;
    general::add(&mut linker)?;
    properties::add(&mut linker)?;
    maps::add(&mut linker)?;
    buffers::add(&mut linker)?;
    metrics::add(&mut linker)?;
    shared_data::add(&mut linker)?;
    http::add(&mut linker)?;
    Ok(linker)
}

/// Envoy lets a module's `_initialize` call only logging and a few WASI functions
/// (`setRestrictedCallback` in proxy-wasm-cpp-host); any other hostcall fails the VM.
pub(crate) fn guard(caller: &Ctx<'_>, name: &'static str) -> HostResult<()> {
    caller.data().count_host_call(name);
    if caller.data().initializing {
        return Err(trap(format!(
            "the plugin called env.{name} during _initialize, where Envoy only allows proxy_log \
             and WASI calls"
        )));
    }
    Ok(())
}

/// Adds an `env` import, mapping wasmtime's error type for the `?` operator.
pub(crate) fn wrap<Params, Results>(
    linker: &mut Linker<HostState>,
    name: &str,
    func: impl wasmtime::IntoFunc<HostState, Params, Results>,
) -> Result<()> {
    linker
        .func_wrap("env", name, func)
        .map(|_| ())
        .map_err(anyhow::Error::from)
        .with_context(|| format!("defining env.{name}"))
}
