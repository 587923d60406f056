//! The clock core reads (`Host::now_ns`): wall-clock nanoseconds, as the `.wasm` reads them (shared
//! stamps compare across threads). With the `test-clock` feature (host-tests' case table on the
//! module, never a shipped build) each thread reads a time its test sets.

#[cfg(not(feature = "test-clock"))]
pub fn now_ns() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(feature = "test-clock")]
thread_local! {
    static NOW_NS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[cfg(feature = "test-clock")]
pub fn now_ns() -> u64 {
    NOW_NS.with(|n| n.get())
}

/// Sets this thread's time (`test-clock` only).
#[cfg(feature = "test-clock")]
pub fn set_now_ns(ns: u64) {
    NOW_NS.with(|n| n.set(ns));
}
