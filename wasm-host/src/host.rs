//! The test-facing host: start a plugin on N VMs, move the clock, read what it did.
//! Stream and callout operations are in `streams.rs` and `callouts.rs`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _, Result};

use super::abi::{join_path, LogLevel};
use super::clock::TestClock;
use super::imports;
use super::metrics::{Metric, ENVOY_CUSTOM_NAMESPACE};
use super::module_cache;
use super::records::{Callout, LocalReply, LogEntry};
use super::state::Shared;
use super::vm::{Vm, VmSetup};

/// Configures and starts a [`Host`].
#[derive(Clone, Debug)]
pub struct HostBuilder {
    wasm: PathBuf,
    missing_hint: String,
    vms: usize,
    start_time: SystemTime,
    setup: VmSetup,
}

impl HostBuilder {
    /// A host for the `.wasm` at `path`.
    pub fn new(path: impl Into<PathBuf>) -> HostBuilder {
        HostBuilder {
            wasm: path.into(),
            missing_hint: "build it first".to_string(),
            vms: 1,
            // 2025-01-01T00:00:00Z: a fixed, realistic wall clock.
            start_time: UNIX_EPOCH + Duration::from_secs(1_735_689_600),
            setup: VmSetup {
                vm_config: Vec::new(),
                plugin_config: Vec::new(),
                env: Vec::new(),
                log_level: LogLevel::Info,
                host_properties: HashMap::new(),
                clusters: None,
            },
        }
    }

    /// What the "wasm module not found" error tells the reader to do.
    pub fn missing_hint(mut self, hint: impl Into<String>) -> Self {
        self.missing_hint = hint.into();
        self
    }

    /// The plugin configuration (Envoy's `configuration`), read during `on_configure`.
    pub fn plugin_config(mut self, config: impl Into<Vec<u8>>) -> Self {
        self.setup.plugin_config = config.into();
        self
    }

    /// The VM configuration (`vm_config.configuration`), read during `on_vm_start`.
    pub fn vm_config(mut self, config: impl Into<Vec<u8>>) -> Self {
        self.setup.vm_config = config.into();
        self
    }

    /// A VM environment variable (`vm_config.environment_variables`), seen through WASI.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.setup.env.push((key.into(), value.into()));
        self
    }

    /// How many VMs (Envoy worker threads, plus the main thread if you count it) run the
    /// plugin. They share one shared-data store, one metrics registry and the clock.
    pub fn vms(mut self, n: usize) -> Self {
        self.vms = n.max(1);
        self
    }

    /// The test clock's start time.
    pub fn start_time(mut self, t: SystemTime) -> Self {
        self.start_time = t;
        self
    }

    /// What `proxy_get_log_level` answers (default Info, Envoy's default). All log calls are
    /// recorded whatever the level.
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.setup.log_level = level;
        self
    }

    /// Clusters `dispatch_http_call` accepts; others get `BadArgument`, as an unknown cluster
    /// does in Envoy. By default every cluster is accepted.
    pub fn clusters(mut self, names: &[&str]) -> Self {
        self.setup.clusters = Some(names.iter().map(|n| n.to_string()).collect());
        self
    }

    /// A property every context reads (`proxy_get_property`), e.g. `&["plugin_name"]`.
    /// `plugin_root_id`, `plugin_vm_id` and `plugin_name` default to empty strings.
    pub fn property(mut self, path: &[&str], value: impl Into<Vec<u8>>) -> Self {
        self.setup
            .host_properties
            .insert(join_path(path), value.into());
        self
    }

    /// Loads the module and starts every VM; fails if any VM's `on_vm_start` or
    /// `on_configure` returns false (the error carries the plugin's log lines).
    pub fn start(self) -> Result<Host> {
        let host = self.start_unchecked()?;
        for (i, vm) in host.vms.iter().enumerate() {
            if !vm.vm_started || !vm.configured {
                let step = if vm.vm_started {
                    "on_configure"
                } else {
                    "on_vm_start"
                };
                let logs: Vec<String> = host
                    .logs()
                    .iter()
                    .filter(|l| l.vm == i)
                    .map(|l| format!("[{}] {}", l.level, l.message))
                    .collect();
                bail!(
                    "{step} returned false on VM {i}; plugin logs:\n  {}",
                    logs.join("\n  ")
                );
            }
        }
        Ok(host)
    }

    /// Like [`HostBuilder::start`], but a plugin that rejects its configuration still gives a
    /// host: see [`Host::configured`].
    pub fn start_unchecked(mut self) -> Result<Host> {
        let module = module_cache::load(&self.wasm, &self.missing_hint)?;
        let engine = module_cache::engine()?;
        let linker = imports::linker(engine, &module)
            .with_context(|| format!("linking {}", self.wasm.display()))?;
        for name in ["plugin_root_id", "plugin_vm_id", "plugin_name"] {
            self.setup
                .host_properties
                .entry(join_path(&[name]))
                .or_default();
        }
        let shared = Arc::new(Shared::new(TestClock::starting_at(self.start_time)));
        let mut vms = Vec::with_capacity(self.vms);
        for i in 0..self.vms {
            let mut vm = Vm::instantiate(&linker, &module, shared.clone(), i, &self.setup)?;
            vm.start()
                .with_context(|| format!("starting VM {i} of {}", self.wasm.display()))?;
            vms.push(vm);
        }
        let mut host = Host {
            vms,
            shared,
            wasm: self.wasm,
        };
        host.after_calls_all()?;
        Ok(host)
    }
}

/// A proxy-wasm host running one plugin on several VMs with a test clock.
pub struct Host {
    pub(crate) vms: Vec<Vm>,
    pub(crate) shared: Arc<Shared>,
    wasm: PathBuf,
}

impl Host {
    /// The `.wasm` this host runs.
    pub fn wasm_path(&self) -> &Path {
        &self.wasm
    }

    pub fn vm_count(&self) -> usize {
        self.vms.len()
    }

    pub(crate) fn vm_mut(&mut self, vm: usize) -> Result<&mut Vm> {
        let count = self.vms.len();
        self.vms
            .get_mut(vm)
            .ok_or_else(|| anyhow!("no VM {vm}: the host runs {count}"))
    }

    pub(crate) fn vm(&self, vm: usize) -> Result<&Vm> {
        self.vms
            .get(vm)
            .ok_or_else(|| anyhow!("no VM {vm}: the host runs {}", self.vms.len()))
    }

    /// Whether VM `vm` started and accepted its configuration.
    pub fn configured(&self, vm: usize) -> bool {
        self.vms
            .get(vm)
            .is_some_and(|v| v.vm_started && v.configured)
    }

    /// The failure that stopped VM `vm`, if a call into it trapped.
    pub fn vm_failure(&self, vm: usize) -> Option<&str> {
        self.vms.get(vm).and_then(|v| v.failed.as_deref())
    }

    // ----- clock and ticks -----

    /// Current test-clock time.
    pub fn now(&self) -> SystemTime {
        self.shared.clock.now()
    }

    /// Current test-clock time in nanoseconds since the Unix epoch.
    pub fn now_ns(&self) -> u64 {
        self.shared.clock.now_ns()
    }

    /// Moves the clock forward by `d`, firing what falls due on the way, in time order: each
    /// VM's tick (`proxy_on_tick`, every tick period) and callout timeouts (answered with a 504,
    /// as Envoy's async client does).
    pub fn advance(&mut self, d: Duration) -> Result<()> {
        let target = self.now_ns().saturating_add(d.as_nanos() as u64);
        loop {
            let next_timeout = self.next_callout_timeout();
            let next_tick = (0..self.vms.len())
                .filter_map(|i| self.vms[i].store.data().next_tick_ns.map(|t| (t, i)))
                .min();
            let due = match (next_timeout, next_tick) {
                (Some((t, id)), tick) if t <= target && tick.is_none_or(|(tt, _)| t <= tt) => {
                    self.shared.clock.set_ns(t.max(self.now_ns()));
                    self.time_out_callout(id)?;
                    continue;
                }
                (_, Some((t, vm))) if t <= target => (t, vm),
                _ => break,
            };
            self.shared.clock.set_ns(due.0.max(self.now_ns()));
            self.fire_tick(due.1)?;
        }
        self.shared.clock.set_ns(target);
        Ok(())
    }

    /// Like [`Host::advance`], in milliseconds.
    pub fn advance_ms(&mut self, ms: u64) -> Result<()> {
        self.advance(Duration::from_millis(ms))
    }

    /// Calls `proxy_on_tick` on VM `vm` now, whether or not a tick is due, and re-arms its timer.
    pub fn tick(&mut self, vm: usize) -> Result<()> {
        self.fire_tick(vm)
    }

    /// Calls `proxy_on_tick` on every VM that set a tick period, in VM order.
    pub fn tick_all(&mut self) -> Result<()> {
        for vm in 0..self.vms.len() {
            if self.vms[vm].store.data().tick_period_ms > 0 {
                self.fire_tick(vm)?;
            }
        }
        Ok(())
    }

    /// The tick period VM `vm` asked for.
    pub fn tick_period(&self, vm: usize) -> Option<Duration> {
        let ms = self.vms.get(vm)?.store.data().tick_period_ms;
        (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
    }

    fn fire_tick(&mut self, vm: usize) -> Result<()> {
        let now = self.now_ns();
        let v = self.vm_mut(vm)?;
        let root = v.root_context_id();
        {
            let st = v.store.data_mut();
            st.next_tick_ns =
                (st.tick_period_ms > 0).then(|| now + u64::from(st.tick_period_ms) * 1_000_000);
        }
        let tick = v.exports.tick.clone();
        v.call("proxy_on_tick", root, tick, root as i32)?;
        self.after_calls(vm)
    }

    // ----- reading results -----

    /// Every metric the plugin defined (all VMs share one registry), sorted by name.
    pub fn metrics(&self) -> Vec<Metric> {
        self.shared.metrics().all()
    }

    /// A metric by name, with or without Envoy's `wasmcustom.` prefix.
    pub fn metric(&self, name: &str) -> Option<Metric> {
        let name = name.strip_prefix(ENVOY_CUSTOM_NAMESPACE).unwrap_or(name);
        self.metrics().into_iter().find(|m| m.name == name)
    }

    /// Metrics whose name without labels is `base` (every label combination).
    pub fn metrics_named(&self, base: &str) -> Vec<Metric> {
        self.metrics()
            .into_iter()
            .filter(|m| m.base_name() == base)
            .collect()
    }

    /// A counter's value.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.metric(name).and_then(|m| m.counter())
    }

    /// A gauge's value.
    pub fn gauge(&self, name: &str) -> Option<i64> {
        self.metric(name).and_then(|m| m.gauge())
    }

    /// A histogram's recorded values, in order.
    pub fn histogram(&self, name: &str) -> Option<Vec<u64>> {
        self.metric(name)
            .and_then(|m| m.histogram().map(<[u64]>::to_vec))
    }

    /// Every log entry of every VM, in the order they were made.
    pub fn logs(&self) -> Vec<LogEntry> {
        let mut all: Vec<LogEntry> = self
            .vms
            .iter()
            .flat_map(|v| v.store.data().logs.iter().cloned())
            .collect();
        all.sort_by_key(|l| l.seq);
        all
    }

    /// True if some log message contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.vms.iter().any(|v| {
            v.store
                .data()
                .logs
                .iter()
                .any(|l| l.message.contains(needle))
        })
    }

    /// Every local reply sent, over all streams.
    pub fn local_replies(&self) -> Vec<LocalReply> {
        self.vms
            .iter()
            .flat_map(|v| v.store.data().streams.values())
            .filter_map(|s| s.local_reply.clone())
            .collect()
    }

    /// Every callout dispatched, over all VMs, in dispatch order per VM.
    pub fn callouts(&self) -> Vec<Callout> {
        self.vms
            .iter()
            .flat_map(|v| v.store.data().callouts.iter().cloned())
            .collect()
    }

    /// Shared data as the plugin sees it: key -> (value, CAS token).
    pub fn shared_data(&self) -> BTreeMap<String, (Vec<u8>, u32)> {
        self.shared.shared_data().snapshot()
    }

    /// Sets a shared-data key as a plugin would without CAS.
    pub fn set_shared_data(&self, key: &str, value: &[u8]) {
        // CAS 0 always succeeds.
        let _ = self.shared.shared_data().set(key, value, 0);
    }

    /// Bytes of callout response bodies VM `vm` copied into its memory so far.
    pub fn call_response_bytes_read(&self, vm: usize) -> Result<u64> {
        Ok(self.vm(vm)?.store.data().call_response_bytes_read)
    }

    /// Size of VM `vm`'s linear memory in bytes.
    pub fn memory_size(&self, vm: usize) -> Result<usize> {
        let v = self.vm(vm)?;
        let memory = v
            .store
            .data()
            .memory
            .ok_or_else(|| anyhow!("VM {vm} has no memory"))?;
        Ok(memory.data_size(&v.store))
    }

    /// How often VM `vm`'s plugin called each hostcall so far (`env` imports by name, plus
    /// `proxy_on_memory_allocate`: the host calling the guest's allocator to return bytes).
    pub fn host_calls(&self, vm: usize) -> Result<BTreeMap<String, u64>> {
        let v = self.vm(vm)?;
        let calls = v.store.data().host_calls.borrow();
        Ok(calls.iter().map(|(k, n)| (k.to_string(), *n)).collect())
    }
}
