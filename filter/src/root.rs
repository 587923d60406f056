//! The proxy-wasm `RootContext`: validates the plugin config, hands each HTTP stream a filter
//! sharing this VM's metrics, and drives the health prober (ticks, call responses).

use crate::host::ProxyWasmHost;
use crate::http_filter::{HealthEndpoint, HttpFilter};
use crate::VERSION_LINE;
use llm_pulse_core::config::{Config, PREFIX_ENV_VAR};
use llm_pulse_core::health::fail_fast::FailFast;
use llm_pulse_core::health::prober::Prober;
use llm_pulse_core::health::report::Endpoints;
use llm_pulse_core::host::Host;
use llm_pulse_core::meter::VmMeter;
use llm_pulse_core::metrics::publish_build_info;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};
use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::time::Duration;

/// The stream context of a VM without a valid config: every callback continues.
struct PassThrough;

impl Context for PassThrough {}
impl HttpContext for PassThrough {}

#[derive(Default)]
pub struct Root {
    vm: Option<Rc<RefCell<VmMeter>>>,
    health: Option<Rc<HealthEndpoint>>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(health) = &self.health else {
            return;
        };
        // Envoy reports a failed call (timeout, reset, refused) with no headers at all.
        let status = if num_headers == 0 {
            None
        } else {
            hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
                .ok()
                .flatten()
                .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u32>().ok())
        };
        // The body stays in Envoy: the prober reads what it judges, in bounded chunks, and
        // nothing of an answer over `health.max_answer_bytes`.
        if let Ok(mut prober) = health.prober.try_borrow_mut() {
            prober.on_http_call_response(&ProxyWasmHost, token_id, status, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let raw = if plugin_configuration_size == 0 {
            Vec::new()
        } else {
            hostcalls::get_buffer(
                BufferType::PluginConfiguration,
                0,
                plugin_configuration_size,
            )
            .ok()
            .flatten()
            .unwrap_or_default()
        };
        let env_prefix = std::env::var(PREFIX_ENV_VAR).ok();
        let config = match Config::parse(&raw, env_prefix.as_deref()) {
            Ok(config) => config,
            Err(e) => {
                // Envoy refuses the config when this returns false; this line says why.
                log::error!("llm-pulse: invalid plugin configuration: {e}");
                return false;
            }
        };
        log::info!(
            "{VERSION_LINE} configured: prefix={}, max_models={}, targets={}",
            config.metrics_prefix,
            config.max_models,
            config.health.as_ref().map_or(0, |h| h.targets.len())
        );
        publish_build_info(
            &ProxyWasmHost,
            &config.metrics_prefix,
            env!("CARGO_PKG_VERSION"),
            env!("LLM_PULSE_COMMIT"),
        );
        self.vm = Some(Rc::new(RefCell::new(VmMeter::new(&config))));
        self.health = config.health.map(|h| {
            let host = ProxyWasmHost;
            let now = host.now_ns();
            // Leases must tell this VM from the others: std's hasher seeds come from WASI
            // random_get.
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u64(now);
            let nonce = hasher.finish();
            let endpoints = Endpoints::new(&h);
            let mut prober = Prober::new(&config.metrics_prefix, h.targets, nonce)
                .answers(h.max_answer_bytes, h.details);
            prober.start(&host);
            if let Some(ms) = prober.tick_period_ms() {
                let _ = hostcalls::set_tick_period(Duration::from_millis(ms));
            }
            let fail_fast = FailFast::new(h.fail_fast, &prober);
            Rc::new(HealthEndpoint {
                prober: RefCell::new(prober),
                endpoints,
                details: h.details,
                started_ns: now,
                fail_fast,
            })
        });
        true
    }

    fn on_tick(&mut self) {
        if let Some(health) = &self.health {
            if let Ok(mut prober) = health.prober.try_borrow_mut() {
                prober.tick(&ProxyWasmHost);
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match self.vm.clone() {
            Some(vm) => Some(Box::new(HttpFilter::new(vm, self.health.clone()))),
            // Not configured: pass traffic through. Never None: the SDK aborts the VM on it.
            None => Some(Box::new(PassThrough)),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
