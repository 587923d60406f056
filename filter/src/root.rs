//! The proxy-wasm `RootContext`: validates the plugin config and hands each HTTP stream a
//! filter sharing this VM's metrics.

use crate::config::{Config, PREFIX_ENV_VAR};
use crate::http_filter::HttpFilter;
use crate::meter::VmMeter;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Default)]
pub struct Root {
    vm: Option<Rc<RefCell<VmMeter>>>,
}

impl Context for Root {}

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
        match Config::parse(&raw, env_prefix.as_deref()) {
            Ok(config) => {
                log::info!(
                    "llm-pulse: configured, metrics prefix {:?}, max_models {}",
                    config.metrics_prefix,
                    config.max_models
                );
                self.vm = Some(Rc::new(RefCell::new(VmMeter::new(&config))));
                true
            }
            Err(e) => {
                // Envoy refuses the config when this returns false; this line says why.
                log::error!("llm-pulse: invalid plugin configuration: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let vm = self.vm.clone()?;
        Some(Box::new(HttpFilter::new(vm)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
