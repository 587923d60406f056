//! The wasmtime proxy-wasm host, tested with its own test plugin (`test-plugin/`): one test
//! binary, a module per area.

mod callouts;
mod clock;
mod lifecycle;
mod shared;
mod streams;
