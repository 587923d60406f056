/work/main/bench/noop-filter/target/wasm32-wasip1/debug/deps/noop_filter-0ed0fd90a8b9c58f.d: /work/main/clippy.toml src/lib.rs Cargo.toml

/work/main/bench/noop-filter/target/wasm32-wasip1/debug/deps/libnoop_filter-0ed0fd90a8b9c58f.rmeta: /work/main/clippy.toml src/lib.rs Cargo.toml

/work/main/clippy.toml:
src/lib.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
