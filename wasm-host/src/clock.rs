//! The test clock: a wall-clock time the test sets and advances, shared by every VM of a host.
//!
//! `proxy_get_current_time_nanoseconds` reads it, and so do WASI `clock_time_get` (realtime and
//! monotonic), so `SystemTime::now()` and `Instant::now()` inside the plugin follow it too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, shared and cheap to clone.
#[derive(Clone, Debug)]
pub struct TestClock {
    now_ns: Arc<AtomicU64>,
    /// The time the clock started at: the monotonic clock counts from here.
    origin_ns: u64,
}

impl TestClock {
    pub(crate) fn starting_at(start: SystemTime) -> TestClock {
        let ns = start
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        TestClock {
            now_ns: Arc::new(AtomicU64::new(ns)),
            origin_ns: ns,
        }
    }

    /// Current time in nanoseconds since the Unix epoch.
    pub fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::SeqCst)
    }

    /// Current time.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.now_ns())
    }

    /// Nanoseconds since the clock started.
    pub fn elapsed_ns(&self) -> u64 {
        self.now_ns().saturating_sub(self.origin_ns)
    }

    pub(crate) fn set_ns(&self, ns: u64) {
        self.now_ns.store(ns, Ordering::SeqCst);
    }

    pub(crate) fn wasi_wall(&self) -> WasiWallClock {
        WasiWallClock(self.clone())
    }

    pub(crate) fn wasi_monotonic(&self) -> WasiMonotonicClock {
        WasiMonotonicClock(self.clone())
    }
}

/// WASI realtime clock backed by the test clock.
pub(crate) struct WasiWallClock(TestClock);

impl wasmtime_wasi::HostWallClock for WasiWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.now_ns())
    }
}

/// WASI monotonic clock backed by the test clock: nanoseconds since the clock started, plus one
/// second so that no reading is zero.
pub(crate) struct WasiMonotonicClock(TestClock);

impl wasmtime_wasi::HostMonotonicClock for WasiMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.0.elapsed_ns() + 1_000_000_000
    }
}
