//! Health probes from the module: core's prober on Envoy's main thread. Envoy's HTTP-filter
//! ABI has callouts that belong to the filter config, not to a request
//! (`http_filter_config_http_callout`), and a scheduler that runs a config event on the main
//! thread when any thread commits one (`http_filter_config_scheduler_*`), but no timer: a
//! thread of the module's own sleeps the tick period and commits the event, and the prober
//! ticks, sends and judges probes on the main thread exactly as in a `.wasm` VM.

use crate::config::FilterConfig;
use crate::ffi::calls::{CalloutAnswer, ConfigHandle, Scheduler, Stream};
use crate::metrics::SeriesTable;
use llm_pulse_core::config::health::HealthConfig;
use llm_pulse_core::health::fail_fast::FailFast;
use llm_pulse_core::health::prober::Prober;
use llm_pulse_core::health::report::{self, Endpoint, Endpoints};
use llm_pulse_core::health::target;
use llm_pulse_core::host::Host;
use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Health {
    prober: Mutex<Prober>,
    /// The prober's series (defined at start, used from the main thread and by
    /// `on_real_success` on workers): config-scoped, one table.
    series: Mutex<RefCell<SeriesTable>>,
    endpoints: Endpoints,
    details: bool,
    started_ns: u64,
    max_answer_bytes: usize,
    period: Option<Duration>,
    ticker: Mutex<Option<Ticker>>,
    /// `health.fail_fast`: inference gets a local 503 while a target is not ready. Its cached
    /// readiness is per process here (one lock), as the `.wasm`'s is per VM.
    fail_fast: Option<Mutex<FailFast>>,
}

struct Ticker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
    _scheduler: Arc<Scheduler>,
}

impl Health {
    pub fn new(config: &FilterConfig, prefix: &str, h: HealthConfig) -> Health {
        let series = RefCell::new(SeriesTable::default());
        let host = config.config_host(&series, &[]);
        let now = host.now_ns();
        // Leases tell probers apart by nonce; one prober per config here, a nonce all the same.
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(now);
        let endpoints = Endpoints::new(&h);
        let mut prober =
            Prober::new(prefix, h.targets, hasher.finish()).answers(h.max_answer_bytes, h.details);
        prober.start(&host);
        let period = prober.tick_period_ms().map(Duration::from_millis);
        let fail_fast = FailFast::new(h.fail_fast, &prober).map(Mutex::new);
        Health {
            prober: Mutex::new(prober),
            series: Mutex::new(series),
            endpoints,
            details: h.details,
            started_ns: now,
            max_answer_bytes: h.max_answer_bytes,
            period,
            ticker: Mutex::new(None),
            fail_fast,
        }
    }

    /// The `retry-after` of the local 503, when fail-fast is on and refuses a request for
    /// `path`.
    pub fn refuses(&self, config: &FilterConfig, path: &[u8]) -> Option<String> {
        let fail_fast = self.fail_fast.as_ref()?.lock().ok()?;
        let prober = self.prober.lock().ok()?;
        let series = self.series.lock().ok()?;
        fail_fast
            .refuses(&config.config_host(&series, &[]), &prober, path)
            .then(|| fail_fast.retry_after.clone())
    }

    pub fn max_answer_bytes(&self) -> usize {
        self.max_answer_bytes
    }

    /// Starts the thread that commits a tick event every period.
    pub fn start_ticks(&self, config: &ConfigHandle) {
        if let Err(e) = self.spawn_ticker(config) {
            log::error!("llm-pulse: cannot schedule health probes: {e}");
        }
    }

    fn spawn_ticker(&self, config: &ConfigHandle) -> Result<(), String> {
        let Some(period) = self.period else {
            return Ok(());
        };
        let scheduler = config
            .scheduler()
            .map(Arc::new)
            .ok_or("Envoy gave no scheduler")?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (their_stop, their_scheduler) = (Arc::clone(&stop), Arc::clone(&scheduler));
        let thread = std::thread::Builder::new()
            .name("llm-pulse-ticks".to_string())
            .spawn(move || tick_loop(&their_stop, &their_scheduler, period))
            .map_err(|e| format!("no thread: {e}"))?;
        let mut ticker = self.ticker.lock().map_err(|_| "ticker lock poisoned")?;
        *ticker = Some(Ticker {
            stop,
            thread,
            _scheduler: scheduler,
        });
        Ok(())
    }

    /// Stops and joins the ticker thread: no commit after Envoy destroys the config.
    pub fn stop_ticks(&self) {
        let Some(ticker) = self.ticker.lock().ok().and_then(|mut t| t.take()) else {
            return;
        };
        let (flag, cv) = &*ticker.stop;
        if let Ok(mut stopped) = flag.lock() {
            *stopped = true;
        }
        cv.notify_all();
        let _ = ticker.thread.join();
    }

    pub fn tick(&self, config: &FilterConfig) {
        let (Ok(mut prober), Ok(series)) = (self.prober.lock(), self.series.lock()) else {
            return;
        };
        prober.tick(&config.config_host(&series, &[]));
    }

    pub fn on_callout_done(&self, config: &FilterConfig, callout_id: u64, answer: CalloutAnswer) {
        let Ok(token) = u32::try_from(callout_id) else {
            return;
        };
        let (Ok(mut prober), Ok(series)) = (self.prober.lock(), self.series.lock()) else {
            return;
        };
        prober.on_http_call_response(
            &config.config_host(&series, &answer.body),
            token,
            answer.status,
            answer.size,
        );
    }

    /// The local answer for a request, if it is one of ours: path first, then the method,
    /// then (only for `health.serve: <authority>`) the `:authority`.
    pub fn answer(
        &self,
        config: &FilterConfig,
        stream: Stream,
        method: &[u8],
        path: &[u8],
    ) -> Option<(u32, String)> {
        let endpoint = self.endpoints.endpoint(path)?;
        if !Endpoints::answers_method(method) {
            return None;
        }
        if endpoint == Endpoint::Target {
            // The authority names the target; one naming none passes, as any request.
            let authority = stream.request_header(":authority").unwrap_or_default();
            let prober = self.prober.lock().ok()?;
            let series = self.series.lock().ok()?;
            let host = config.config_host(&series, &[]);
            return target::answer_for(&prober, &host, &authority);
        }
        if self.endpoints.serve.needs_authority() {
            let authority = stream.request_header(":authority").unwrap_or_default();
            if !self.endpoints.serve.serves(&authority) {
                return None;
            }
        }
        // The prober's lock before the series', as the main thread takes them.
        let prober = self.prober.lock().ok()?;
        let series = self.series.lock().ok()?;
        let host = config.config_host(&series, &[]);
        let uptime = host.now_ns().saturating_sub(self.started_ns) / 1_000_000_000;
        match endpoint {
            Endpoint::Health => Some(report::health(&prober.views(&host), uptime, self.details)),
            Endpoint::Live => Some(report::live(uptime)),
            Endpoint::Target => None,
        }
    }

    /// A real request through `cluster` to `address` succeeded: the prober may count it.
    pub fn on_real_success(&self, config: &FilterConfig, cluster: &str, address: &str) {
        let (Ok(mut prober), Ok(series)) = (self.prober.try_lock(), self.series.try_lock()) else {
            return;
        };
        prober.on_real_success(&config.config_host(&series, &[]), cluster, address);
    }
}

fn tick_loop(stop: &(Mutex<bool>, Condvar), scheduler: &Scheduler, period: Duration) {
    let (flag, cv) = stop;
    let Ok(mut stopped) = flag.lock() else {
        return;
    };
    loop {
        match cv.wait_timeout(stopped, period) {
            Ok((guard, _)) => {
                if *guard {
                    return;
                }
                stopped = guard;
                scheduler.commit(0);
            }
            Err(_) => return,
        }
    }
}
