//! llm-pulse's test harnesses: the simulated GPU worker (`sim`, also the `gpu-sim` binary, run
//! as a child process by `sim_process`),
//! the Envoy harness (`envoy`), Prometheus text parsing (`prom`), and where the tests find
//! Envoy and the built `.wasm` (`artifacts`). The tests themselves are in `tests/suite/`.

pub mod artifacts;
pub mod envoy;
pub mod prom;
pub mod raw_http;
pub mod sim;
pub mod sim_process;
