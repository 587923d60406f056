//! llm-pulse's proxy-wasm glue for `scripts/bench`: the very files of `filter/src`, compiled
//! again as modules of this crate, with at most one part of the work left out
//! (docs/benchmarks.md, `--ablations`):
//!
//! - `ablate-record`: [`host::ProxyWasmHost`] drops metric updates and filter-state writes
//!   (the scan and the timing still run);
//! - `ablate-scan`: [`http_filter::HttpFilter`] copies each response body chunk into the VM as
//!   llm-pulse does, but hands it to nothing (no scan, no timing);
//! - neither: the glue as it ships.
//!
//! The product files name their neighbours `crate::host` and `crate::http_filter`: here those
//! are this crate's [`host`] and [`http_filter`], which pass the product's items through except
//! the one an ablation replaces. So the product crate carries no bench switch, and an ablation
//! runs the product's code everywhere else.

#[path = "../../../filter/src/host.rs"]
pub mod product_host;
#[path = "../../../filter/src/http_filter.rs"]
pub mod product_http_filter;
#[path = "../../../filter/src/root.rs"]
pub mod root;

pub mod host;
pub mod http_filter;

/// `root.rs` logs it at VM start, as the filter's.
pub const VERSION_LINE: &str = concat!(
    "llm-pulse ",
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("LLM_PULSE_COMMIT"),
    ")"
);

// As filter/src/lib.rs, which cannot be included: it declares the product's modules.
proxy_wasm::main! {{
    std::panic::set_hook(Box::new(|info| {
        let _ = proxy_wasm::hostcalls::log(
            proxy_wasm::types::LogLevel::Critical,
            &format!("{VERSION_LINE} panicked: {info}"),
        );
    }));
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::default())
    });
}}
