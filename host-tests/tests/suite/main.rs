//! Every test of llm-pulse beyond its unit tests, in one binary (each test binary links
//! wasmtime): `wasm_*` run the built `.wasm` in the wasmtime host,
//! `module_*` the dynamic module under a fake Envoy, `sim_*` test gpu-sim, `e2e_*`
//! run a real Envoy, `docs_*` hold the docs to the code. Filter by module:
//! `cargo test -p host-tests --test suite e2e_metrics`.

mod docs_troubleshooting;
mod e2e_config;
mod e2e_config_table;
mod e2e_eject;
mod e2e_faults;
mod e2e_health;
mod e2e_health_hostile;
mod e2e_hostile;
mod e2e_istio;
mod e2e_metrics;
mod e2e_module;
mod e2e_package;
mod e2e_passthrough;
mod e2e_prometheus;
mod e2e_traffic;
mod e2e_unfinished;
mod e2e_usage;
mod engine_usage;
mod module_meter_cases;
mod sim_api;
mod sim_faults;
mod sim_health;
mod wasm_config;
mod wasm_health;
mod wasm_hostile;
mod wasm_llm_pulse_smoke;
mod wasm_meter_cases;
mod wasm_soak;
