//! The `log` crate's macros, written to Envoy's log (its `dynamic_modules` logger), so the
//! module logs the same lines the `.wasm` does with the same calls.

use crate::ffi::calls;
use crate::ffi::{LOG_CRITICAL, LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_WARN};
use crate::VERSION_LINE;

struct EnvoyLogger;

fn level(l: log::Level) -> u32 {
    match l {
        log::Level::Error => LOG_ERROR,
        log::Level::Warn => LOG_WARN,
        log::Level::Info => LOG_INFO,
        log::Level::Debug | log::Level::Trace => LOG_DEBUG,
    }
}

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        calls::log_enabled(level(metadata.level()))
    }

    fn log(&self, record: &log::Record<'_>) {
        let l = level(record.level());
        if calls::log_enabled(l) {
            calls::log(l, &record.args().to_string());
        }
    }

    fn flush(&self) {}
}

static LOGGER: EnvoyLogger = EnvoyLogger;

/// Installs the logger and a panic hook that says what and where before the abort (the
/// module's own code has no panics; std or the allocator could still raise one).
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    std::panic::set_hook(Box::new(|info| {
        calls::log(LOG_CRITICAL, &format!("{VERSION_LINE} panicked: {info}"));
    }));
}
