//! Host state: what one VM's `Store<HostState>` holds, and what all VMs of a host share.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use wasmtime::{Memory, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::abi::{LogLevel, Pairs, StreamType};
use super::clock::TestClock;
use super::metrics::{MetricIds, MetricRegistry};
use super::records::{Callback, CallbackRecord, Callout, EndReason, LocalReply, LogEntry};
use super::shared_data::SharedData;

/// State shared by every VM of one host: Envoy's per-process pieces.
#[derive(Debug)]
pub(crate) struct Shared {
    pub clock: TestClock,
    pub shared_data: Mutex<SharedData>,
    pub metrics: Mutex<MetricRegistry>,
    log_seq: AtomicU64,
}

impl Shared {
    pub(crate) fn new(clock: TestClock) -> Shared {
        Shared {
            clock,
            shared_data: Mutex::new(SharedData::default()),
            metrics: Mutex::new(MetricRegistry::default()),
            log_seq: AtomicU64::new(0),
        }
    }

    pub(crate) fn next_log_seq(&self) -> u64 {
        self.log_seq.fetch_add(1, Ordering::SeqCst)
    }

    /// The lock only guards plain data: a panic while holding it cannot leave it inconsistent,
    /// so a poisoned lock is used as is.
    pub(crate) fn shared_data(&self) -> MutexGuard<'_, SharedData> {
        self.shared_data.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn metrics(&self) -> MutexGuard<'_, MetricRegistry> {
        self.metrics.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Work Envoy defers until the VM call returns (`addAfterVmCallAction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AfterCall {
    LocalReply(u32),
    Continue(u32, StreamType),
    Close(u32, StreamType),
}

/// The response of the callout being delivered (`http_call_response_` in Envoy).
#[derive(Debug, Default)]
pub(crate) struct CallResponse {
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub trailers: Pairs,
}

/// A map and whether the plugin may touch it now (Envoy drops its pointer once a callback
/// returns Continue).
#[derive(Debug, Default)]
pub(crate) struct MapSlot {
    pub pairs: Option<Pairs>,
    pub live: bool,
}

/// A body direction: what passed, what is buffered, and whether the buffer is visible.
#[derive(Debug, Default)]
pub(crate) struct BodySlot {
    /// The bytes the current body callback sees (the chunk, or all buffered bytes).
    pub buffer: Vec<u8>,
    pub live: bool,
    /// The last body callback paused: Envoy keeps buffering.
    pub buffering: bool,
    pub passed: Vec<u8>,
    pub end_seen: bool,
}

/// One HTTP stream inside a VM.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    pub created_in_vm: bool,
    pub request_headers: MapSlot,
    pub request_trailers: MapSlot,
    pub response_headers: MapSlot,
    pub response_trailers: MapSlot,
    pub request_body: BodySlot,
    pub response_body: BodySlot,
    pub access_log_phase: bool,
    /// Properties the test set (serialized path -> value).
    pub properties: HashMap<Vec<u8>, Vec<u8>>,
    /// Properties the plugin set (serialized path -> value).
    pub filter_state: BTreeMap<Vec<u8>, Vec<u8>>,
    pub callbacks: Vec<CallbackRecord>,
    pub local_reply: Option<LocalReply>,
    pub continued: Vec<StreamType>,
    pub closed: Vec<StreamType>,
    pub end: Option<EndReason>,
    pub started_ns: u64,
}

impl StreamState {
    pub(crate) fn record(
        &mut self,
        callback: Callback,
        action: Option<super::abi::Action>,
        at: u64,
    ) {
        self.callbacks.push(CallbackRecord {
            callback,
            action,
            at_ns: at,
        });
    }
}

/// Captured WASI stdout/stderr and how much of each was already turned into log entries.
pub(crate) struct Stdio {
    pub stdout: MemoryOutputPipe,
    pub stderr: MemoryOutputPipe,
    pub stdout_seen: usize,
    pub stderr_seen: usize,
}

/// Everything one VM instance owns. Lives in its `Store`, never in a global.
pub(crate) struct HostState {
    pub wasi: WasiP1Ctx,
    pub stdio: Stdio,
    pub shared: Arc<Shared>,
    pub vm: usize,
    pub root_context_id: u32,
    pub next_context_id: u32,
    pub memory: Option<Memory>,
    /// `proxy_on_memory_allocate` (or `malloc`): where hostcalls put returned bytes.
    pub allocator: Option<TypedFunc<i32, i32>>,
    /// True while `_initialize` runs: Envoy then only allows logging and a few WASI calls.
    pub initializing: bool,
    pub current_context: u32,
    pub effective_context: Option<u32>,
    pub vm_config: Vec<u8>,
    pub plugin_config: Vec<u8>,
    pub configuring: bool,
    pub log_level: LogLevel,
    pub logs: Vec<LogEntry>,
    pub tick_period_ms: u32,
    pub next_tick_ns: Option<u64>,
    pub metric_ids: MetricIds,
    pub streams: BTreeMap<u32, StreamState>,
    pub callouts: Vec<Callout>,
    pub next_callout_token: u32,
    pub call_response: Option<CallResponse>,
    /// Properties every context reads (`plugin_root_id`, ...): serialized path -> value.
    pub host_properties: HashMap<Vec<u8>, Vec<u8>>,
    /// Known clusters; None accepts any.
    pub clusters: Option<Vec<String>>,
    pub after_call: Vec<AfterCall>,
    /// Imports the plugin called that this host does not implement.
    pub unimplemented_calls: Vec<String>,
    /// Bytes of callout response bodies copied into this VM (`proxy_get_buffer_bytes`).
    pub call_response_bytes_read: u64,
    /// How often the plugin called each `env` hostcall, plus the host's calls back into the
    /// guest's allocator (`proxy_on_memory_allocate`) to return bytes: what a benchmark reads
    /// to count host calls per event and per request.
    pub host_calls: std::cell::RefCell<BTreeMap<&'static str, u64>>,
}

impl HostState {
    /// Counts one call of `name` (see [`HostState::host_calls`]).
    pub(crate) fn count_host_call(&self, name: &'static str) {
        if let Ok(mut calls) = self.host_calls.try_borrow_mut() {
            *calls.entry(name).or_insert(0) += 1;
        }
    }

    /// The context hostcalls act on: the effective context if one is set, else the current one.
    pub(crate) fn context(&self) -> u32 {
        self.effective_context.unwrap_or(self.current_context)
    }

    /// The stream of the acting context, if it is a live stream.
    pub(crate) fn stream_mut(&mut self) -> Option<&mut StreamState> {
        let id = self.context();
        self.streams.get_mut(&id).filter(|s| s.end.is_none())
    }

    pub(crate) fn stream(&self) -> Option<&StreamState> {
        let id = self.context();
        self.streams.get(&id).filter(|s| s.end.is_none())
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.shared.clock.now_ns()
    }

    pub(crate) fn push_log(&mut self, level: LogLevel, message: String) {
        let entry = LogEntry {
            vm: self.vm,
            context_id: self.context(),
            level,
            message,
            at_ns: self.now_ns(),
            seq: self.shared.next_log_seq(),
        };
        self.logs.push(entry);
    }

    /// Turns new WASI stdout/stderr output into log entries (Envoy: stdout info, stderr error).
    pub(crate) fn drain_stdio(&mut self) {
        let out = self.stdio.stdout.contents();
        let err = self.stdio.stderr.contents();
        let new_out = out
            .get(self.stdio.stdout_seen..)
            .unwrap_or_default()
            .to_vec();
        let new_err = err
            .get(self.stdio.stderr_seen..)
            .unwrap_or_default()
            .to_vec();
        self.stdio.stdout_seen = out.len();
        self.stdio.stderr_seen = err.len();
        for (bytes, level) in [(new_out, LogLevel::Info), (new_err, LogLevel::Error)] {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            for line in text.lines().filter(|l| !l.is_empty()) {
                self.push_log(level, line.to_string());
            }
        }
    }
}
