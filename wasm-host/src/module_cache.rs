//! Loading `.wasm` files: one engine per test process, each file compiled once (per change).
//!
//! Only compiled code is cached here; no test state is (that lives in each `Store`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use anyhow::{anyhow, Context as _, Result};
use wasmtime::{Config, Engine, Module};

pub(crate) fn engine() -> Result<&'static Engine> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            config.cranelift_opt_level(wasmtime::OptLevel::None);
            // `perf record` can name the compiled wasm functions (see docs/benchmarks.md).
            if std::env::var_os("WASM_HOST_PERFMAP").is_some() {
                config.profiler(wasmtime::ProfilingStrategy::PerfMap);
            }
            Engine::new(&config).map_err(|e| format!("{e:?}"))
        })
        .as_ref()
        .map_err(|e| anyhow!("creating the wasmtime engine: {e}"))
}

type Cache = Mutex<HashMap<PathBuf, (SystemTime, u64, Module)>>;

/// Compiles `path`, or returns the module compiled from the same file before. `hint` tells how
/// to build the file when it is missing.
pub(crate) fn load(path: &Path, hint: &str) -> Result<Module> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(anyhow!(
                "wasm module not found at {}: {hint}",
                path.display()
            ));
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let stamp = (
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        meta.len(),
    );
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((modified, len, module)) = cache.get(path) {
        if (*modified, *len) == stamp {
            return Ok(module.clone());
        }
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let module = Module::new(engine()?, &bytes)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("compiling {}", path.display()))?;
    cache.insert(path.to_path_buf(), (stamp.0, stamp.1, module.clone()));
    Ok(module)
}

/// The workspace target directory (`$CARGO_TARGET_DIR` or `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(|p| p.join("target"))
            .unwrap_or_else(|| PathBuf::from("target")),
    }
}
