//! [`FilterConfig`]: one per Envoy HTTP filter config, shared by every worker thread. It holds
//! what the `.wasm` keeps per VM, once per worker thread ([`Worker`]: the meter and the series
//! it defined), what the `.wasm`'s VMs share through proxy-wasm shared data ([`SharedData`]),
//! and the health prober, which runs on Envoy's main thread ([`crate::health`]).

use crate::ffi::calls::{self, ConfigHandle, Stream};
use crate::health::Health;
use crate::host::{ModuleHost, Scope};
use crate::metrics::{Families, SeriesTable};
use crate::shared::SharedData;
use crate::VERSION_LINE;
use llm_pulse_core::config::{Config, PREFIX_ENV_VAR};
use llm_pulse_core::meter::VmMeter;
use llm_pulse_core::metrics::publish_build_info;
use llm_pulse_core::usage::UsageMode;
use std::cell::RefCell;
use std::sync::{Arc, Mutex};

/// What one worker thread meters with: the `.wasm`'s per-VM state.
pub struct Worker {
    pub meter: VmMeter,
    pub series: RefCell<SeriesTable>,
}

pub struct FilterConfig {
    pub handle: ConfigHandle,
    pub families: Families,
    pub shared: SharedData,
    pub usage: UsageMode,
    /// One per Envoy worker thread (by worker index): uncontended locks.
    workers: Vec<Mutex<Worker>>,
    pub health: Option<Health>,
}

impl FilterConfig {
    /// Parses and sets up a filter config; `None` (Envoy refuses the config) after logging why.
    pub fn new(handle: ConfigHandle, raw: &[u8]) -> Option<Arc<FilterConfig>> {
        let env_prefix = std::env::var(PREFIX_ENV_VAR).ok();
        let config = match Config::parse(raw, env_prefix.as_deref()) {
            Ok(config) => config,
            Err(e) => {
                log::error!("llm-pulse: invalid plugin configuration: {e}");
                return None;
            }
        };
        let families = match Families::define(&handle, &config.metrics_prefix, config.worker_label)
        {
            Ok(f) => f,
            Err(e) => {
                log::error!("llm-pulse: cannot define the module's metrics: {e}");
                return None;
            }
        };
        log::info!(
            "{VERSION_LINE} configured: prefix={}, max_models={}, targets={}",
            config.metrics_prefix,
            config.max_models,
            config.health.as_ref().map_or(0, |h| h.targets.len())
        );
        let threads = calls::concurrency().max(1);
        let workers = (0..threads)
            .map(|_| {
                Mutex::new(Worker {
                    meter: VmMeter::new(&config),
                    series: RefCell::new(SeriesTable::default()),
                })
            })
            .collect();
        let mut me = FilterConfig {
            handle,
            families,
            shared: SharedData::default(),
            usage: config.usage_stats,
            workers,
            health: None,
        };
        let main_series = RefCell::new(SeriesTable::default());
        publish_build_info(
            &me.config_host(&main_series, &[]),
            &config.metrics_prefix,
            env!("CARGO_PKG_VERSION"),
            env!("LLM_PULSE_COMMIT"),
        );
        if let Some(h) = config.health {
            me.health = Some(Health::new(&me, &config.metrics_prefix, h));
        }
        let me = Arc::new(me);
        if let Some(h) = &me.health {
            h.start_ticks(&me.handle);
        }
        Some(me)
    }

    /// The worker state of the thread running `stream`.
    pub fn worker(&self, stream: Stream) -> Option<&Mutex<Worker>> {
        let i = usize::try_from(stream.worker_index()).unwrap_or(0);
        self.workers.get(i).or_else(|| self.workers.first())
    }

    pub fn stream_host<'a>(
        &'a self,
        stream: Stream,
        series: &'a RefCell<SeriesTable>,
    ) -> ModuleHost<'a> {
        ModuleHost {
            scope: Scope::Stream(stream),
            families: &self.families,
            series,
            shared: &self.shared,
            config: self.handle,
            callout_body: &[],
        }
    }

    pub fn config_host<'a>(
        &'a self,
        series: &'a RefCell<SeriesTable>,
        callout_body: &'a [u8],
    ) -> ModuleHost<'a> {
        ModuleHost {
            scope: Scope::Config(self.handle),
            families: &self.families,
            series,
            shared: &self.shared,
            config: self.handle,
            callout_body,
        }
    }

    /// How much of a callout answer is worth copying: the prober reads no more.
    pub fn max_callout_body(&self) -> usize {
        self.health.as_ref().map_or(0, Health::max_answer_bytes)
    }

    /// The health ticker's event, on Envoy's main thread.
    pub fn on_scheduled(&self, _event_id: u64) {
        if let Some(h) = &self.health {
            h.tick(self);
        }
    }

    pub fn on_callout_done(&self, callout_id: u64, answer: calls::CalloutAnswer) {
        if let Some(h) = &self.health {
            h.on_callout_done(self, callout_id, answer);
        }
    }

    /// Stops the health ticker thread before Envoy destroys its side of the config.
    pub fn shut_down(&self) {
        if let Some(h) = &self.health {
            h.stop_ticks();
        }
    }
}
