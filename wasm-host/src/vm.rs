//! One VM instance (one Envoy worker's copy of the plugin): instantiation, the startup sequence,
//! and calls into the plugin's exports with failure reporting.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _, Result};
use wasmtime::{Instance, Linker, Module, Store, TypedFunc, WasmParams, WasmResults};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::WasiCtxBuilder;

use super::abi::LogLevel;
use super::metrics::MetricIds;
use super::state::{HostState, Shared, Stdio};

/// What a VM is started with.
#[derive(Clone, Debug)]
pub(crate) struct VmSetup {
    pub vm_config: Vec<u8>,
    pub plugin_config: Vec<u8>,
    pub env: Vec<(String, String)>,
    pub log_level: LogLevel,
    pub host_properties: HashMap<Vec<u8>, Vec<u8>>,
    pub clusters: Option<Vec<String>>,
}

type F1 = Option<TypedFunc<i32, ()>>;
type F2 = Option<TypedFunc<(i32, i32), ()>>;
type F2r = Option<TypedFunc<(i32, i32), i32>>;
type F3r = Option<TypedFunc<(i32, i32, i32), i32>>;
type F5 = Option<TypedFunc<(i32, i32, i32, i32, i32), ()>>;

/// The plugin's callbacks. A missing one is skipped (Envoy treats it as a no-op/Continue).
#[derive(Default)]
pub(crate) struct Exports {
    pub initialize: Option<TypedFunc<(), ()>>,
    pub context_create: F2,
    pub vm_start: F2r,
    pub configure: F2r,
    pub tick: F1,
    pub request_headers: F3r,
    pub request_body: F3r,
    pub request_trailers: F2r,
    pub response_headers: F3r,
    pub response_body: F3r,
    pub response_trailers: F2r,
    pub log: F1,
    pub done: Option<TypedFunc<i32, i32>>,
    pub delete: F1,
    pub http_call_response: F5,
}

fn typed<P: WasmParams, R: WasmResults>(
    instance: &Instance,
    store: &mut Store<HostState>,
    name: &str,
) -> Result<Option<TypedFunc<P, R>>> {
    match instance.get_func(&mut *store, name) {
        None => Ok(None),
        Some(f) => f
            .typed::<P, R>(&*store)
            .map(Some)
            .map_err(|e| anyhow!("export {name} has an unexpected signature: {e}")),
    }
}

impl Exports {
    fn resolve(i: &Instance, s: &mut Store<HostState>) -> Result<Exports> {
        Ok(Exports {
            initialize: typed(i, s, "_initialize")?,
            context_create: typed(i, s, "proxy_on_context_create")?,
            vm_start: typed(i, s, "proxy_on_vm_start")?,
            configure: typed(i, s, "proxy_on_configure")?,
            tick: typed(i, s, "proxy_on_tick")?,
            request_headers: typed(i, s, "proxy_on_request_headers")?,
            request_body: typed(i, s, "proxy_on_request_body")?,
            request_trailers: typed(i, s, "proxy_on_request_trailers")?,
            response_headers: typed(i, s, "proxy_on_response_headers")?,
            response_body: typed(i, s, "proxy_on_response_body")?,
            response_trailers: typed(i, s, "proxy_on_response_trailers")?,
            log: typed(i, s, "proxy_on_log")?,
            done: typed(i, s, "proxy_on_done")?,
            delete: typed(i, s, "proxy_on_delete")?,
            http_call_response: typed(i, s, "proxy_on_http_call_response")?,
        })
    }
}

pub(crate) struct Vm {
    pub store: Store<HostState>,
    pub exports: Exports,
    /// Set once a call into the VM trapped; Envoy stops using a failed VM.
    pub failed: Option<String>,
    pub vm_started: bool,
    pub configured: bool,
}

const ROOT_CONTEXT_ID: u32 = 1;
const STDIO_CAPACITY: usize = 64 << 20;

fn check_abi(module: &Module) -> Result<()> {
    let exports: Vec<&str> = module.exports().map(|e| e.name()).collect();
    if exports.contains(&"proxy_abi_version_0_2_1") {
        return Ok(());
    }
    match exports.iter().find(|e| e.starts_with("proxy_abi_version_")) {
        Some(other) => bail!("the module declares {other}; this host implements ABI 0.2.1 only"),
        None => bail!("the module exports no proxy_abi_version_*: not a proxy-wasm module"),
    }
}

impl Vm {
    pub(crate) fn instantiate(
        linker: &Linker<HostState>,
        module: &Module,
        shared: Arc<Shared>,
        vm: usize,
        setup: &VmSetup,
    ) -> Result<Vm> {
        check_abi(module)?;
        let stdout = MemoryOutputPipe::new(STDIO_CAPACITY);
        let stderr = MemoryOutputPipe::new(STDIO_CAPACITY);
        let wasi = WasiCtxBuilder::new()
            .envs(&setup.env)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(shared.clock.wasi_wall())
            .monotonic_clock(shared.clock.wasi_monotonic())
            .build_p1();
        let state = HostState {
            wasi,
            stdio: Stdio {
                stdout,
                stderr,
                stdout_seen: 0,
                stderr_seen: 0,
            },
            shared,
            vm,
            root_context_id: ROOT_CONTEXT_ID,
            next_context_id: ROOT_CONTEXT_ID + 1,
            memory: None,
            allocator: None,
            initializing: false,
            current_context: 0,
            effective_context: None,
            vm_config: setup.vm_config.clone(),
            plugin_config: setup.plugin_config.clone(),
            configuring: false,
            log_level: setup.log_level,
            logs: Vec::new(),
            tick_period_ms: 0,
            next_tick_ns: None,
            metric_ids: MetricIds::default(),
            streams: Default::default(),
            callouts: Vec::new(),
            next_callout_token: 0,
            call_response: None,
            host_properties: setup.host_properties.clone(),
            clusters: setup.clusters.clone(),
            after_call: Vec::new(),
            unimplemented_calls: Vec::new(),
            call_response_bytes_read: 0,
            host_calls: Default::default(),
        };
        let mut store = Store::new(module.engine(), state);
        let instance = linker
            .instantiate(&mut store, module)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("instantiating VM {vm}"))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| anyhow!("the module exports no memory"))?;
        let allocator = match typed::<i32, i32>(&instance, &mut store, "proxy_on_memory_allocate")?
        {
            Some(f) => Some(f),
            None => typed::<i32, i32>(&instance, &mut store, "malloc")?,
        };
        store.data_mut().memory = Some(memory);
        store.data_mut().allocator = allocator;
        let exports = Exports::resolve(&instance, &mut store)?;
        Ok(Vm {
            store,
            exports,
            failed: None,
            vm_started: false,
            configured: false,
        })
    }

    pub(crate) fn index(&self) -> usize {
        self.store.data().vm
    }

    pub(crate) fn root_context_id(&self) -> u32 {
        self.store.data().root_context_id
    }

    /// Envoy's startup sequence: `_initialize` (restricted hostcalls), root context creation,
    /// `proxy_on_vm_start`, `proxy_on_configure`.
    pub(crate) fn start(&mut self) -> Result<()> {
        let root = self.root_context_id() as i32;
        self.store.data_mut().initializing = true;
        let init = self.call("_initialize", 0, self.exports.initialize.clone(), ());
        self.store.data_mut().initializing = false;
        init?;
        self.call(
            "proxy_on_context_create",
            root as u32,
            self.exports.context_create.clone(),
            (root, 0),
        )?;
        let vm_config_len = self.store.data().vm_config.len() as i32;
        let started = self.call(
            "proxy_on_vm_start",
            root as u32,
            self.exports.vm_start.clone(),
            (root, vm_config_len),
        )?;
        self.vm_started = started.is_none_or(|r| r != 0);
        if !self.vm_started {
            return Ok(());
        }
        let config_len = self.store.data().plugin_config.len() as i32;
        self.store.data_mut().configuring = true;
        let configured = self.call(
            "proxy_on_configure",
            root as u32,
            self.exports.configure.clone(),
            (root, config_len),
        );
        self.store.data_mut().configuring = false;
        self.configured = configured?.is_none_or(|r| r != 0);
        Ok(())
    }

    /// Calls an export with `context` current. Ok(None) when the module does not export it.
    /// A trap fails the VM and comes back as an error that names the callback, the import the
    /// plugin called if this host lacks it, and the plugin's last error logs (a panic message).
    pub(crate) fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        what: &str,
        context: u32,
        func: Option<TypedFunc<P, R>>,
        args: P,
    ) -> Result<Option<R>> {
        if let Some(failure) = &self.failed {
            bail!(
                "VM {} failed earlier, {what} was not called. First failure: {failure}",
                self.index()
            );
        }
        let Some(func) = func else {
            return Ok(None);
        };
        let logs_before = {
            let st = self.store.data_mut();
            st.current_context = context;
            st.effective_context = None;
            st.unimplemented_calls.clear();
            st.logs.len()
        };
        let result = func.call(&mut self.store, args);
        let st = self.store.data_mut();
        st.effective_context = None;
        st.drain_stdio();
        match result {
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                let message = self.describe_failure(what, context, logs_before, &e);
                self.failed = Some(message.clone());
                Err(anyhow!(message))
            }
        }
    }

    fn describe_failure(
        &self,
        what: &str,
        context: u32,
        logs_before: usize,
        error: &wasmtime::Error,
    ) -> String {
        let st = self.store.data();
        let mut message = format!("{what} (VM {}, context {context}) failed", st.vm);
        if let Some(name) = st.unimplemented_calls.last() {
            message.push_str(&format!(
                ": the plugin called `{name}`, an import the wasm_host does not implement"
            ));
        }
        let plugin_errors: Vec<String> = st
            .logs
            .get(logs_before..)
            .unwrap_or_default()
            .iter()
            .filter(|l| l.level >= LogLevel::Error)
            .map(|l| format!("[{}] {}", l.level, l.message))
            .collect();
        if !plugin_errors.is_empty() {
            message.push_str(&format!("\nplugin logs: {}", plugin_errors.join("\n  ")));
        }
        message.push_str(&format!("\nwasm error: {error:#}"));
        message
    }
}
