/work/main/bench/noop-filter/target/wasm32-wasip1/debug/deps/proxy_wasm-1503d8c81a2adbf5.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/hostcalls.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/traits.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/types.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/allocator.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/dispatcher.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/logger.rs

/work/main/bench/noop-filter/target/wasm32-wasip1/debug/deps/libproxy_wasm-1503d8c81a2adbf5.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/hostcalls.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/traits.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/types.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/allocator.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/dispatcher.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/logger.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/hostcalls.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/traits.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/types.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/allocator.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/dispatcher.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/proxy-wasm-0.2.5/src/logger.rs:
