//! Request counters and the request log behind `GET /sim/stats`: how many requests each path
//! received (tests count health probes with it), when the last ones arrived, what the last
//! one carried, and how many responses are still being served.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::HeaderMap;
use serde::{Deserialize, Serialize};

/// Arrival times kept per path.
pub const LOG_ARRIVALS: usize = 1000;

/// What `GET /sim/stats` returns, also readable in-process with
/// [`super::SimHandle::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Requests received per URL path (query excluded); `/sim/*` itself not counted.
    pub requests: BTreeMap<String, u64>,
    /// Requests whose response has not finished (a stream counts until its body ends or
    /// the client goes away; a hung request counts while it hangs).
    pub inflight: u64,
    /// Per path (same keys as `requests`): recent arrivals and the last request.
    #[serde(default)]
    pub log: BTreeMap<String, PathLog>,
}

/// The log of one path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathLog {
    /// Arrival (request head received) of the last [`LOG_ARRIVALS`] requests, as time since
    /// the sim started, in the order they were logged (once their body was read). JSON:
    /// `arrivals_us`, integer microseconds.
    #[serde(rename = "arrivals_us", with = "micros")]
    pub arrivals: Vec<Duration>,
    /// Body of the last request, as received. JSON: `last_body`, a string (lossy UTF-8).
    #[serde(with = "lossy_text")]
    pub last_body: Vec<u8>,
    /// Headers of the last request: every header (lowercase name; repeated ones joined with
    /// `, `) plus `:authority`, the URI's authority or else `host`. E.g.
    /// `x-envoy-original-dst-host`, `host`, `:authority`.
    pub last_headers: BTreeMap<String, String>,
}

impl PathLog {
    /// Logged arrivals at or after `since` (sim-start relative), of the last [`LOG_ARRIVALS`].
    pub fn count_since(&self, since: Duration) -> usize {
        self.arrivals.iter().filter(|&&at| at >= since).count()
    }
}

#[derive(Debug)]
pub struct Stats {
    /// What arrivals are measured from.
    started: Instant,
    paths: Mutex<BTreeMap<String, PathState>>,
    inflight: AtomicU64,
}

#[derive(Debug, Default)]
struct PathState {
    count: u64,
    arrivals: VecDeque<Instant>,
    last_body: Vec<u8>,
    last_headers: BTreeMap<String, String>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            paths: Mutex::default(),
            inflight: AtomicU64::new(0),
        }
    }
}

/// Keeps one request counted as inflight; dropping it (response done or abandoned) ends it.
#[derive(Debug)]
pub struct InflightGuard {
    stats: Arc<Stats>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.stats.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One request as the log sees it.
#[derive(Debug)]
pub struct Arrival<'a> {
    pub path: &'a str,
    pub at: Instant,
    pub authority: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl Stats {
    /// When the sim started: arrivals in snapshots are relative to this.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Counts and logs a request and marks it inflight until the guard drops.
    pub fn begin(self: &Arc<Self>, req: &Arrival<'_>) -> InflightGuard {
        {
            // A panic elsewhere cannot leave the map half-written: keep counting.
            let mut paths = self.paths.lock().unwrap_or_else(PoisonError::into_inner);
            let state = paths.entry(req.path.to_owned()).or_default();
            state.count += 1;
            if state.arrivals.len() == LOG_ARRIVALS {
                state.arrivals.pop_front();
            }
            state.arrivals.push_back(req.at);
            state.last_body = req.body.to_vec();
            state.last_headers = headers_of(req.headers, req.authority);
        }
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard {
            stats: Arc::clone(self),
        }
    }

    /// Requests to `path` logged with an arrival at or after `since` (of the last
    /// [`LOG_ARRIVALS`]).
    pub fn requests_since(&self, path: &str, since: Instant) -> usize {
        let paths = self.paths.lock().unwrap_or_else(PoisonError::into_inner);
        paths.get(path).map_or(0, |state| {
            state.arrivals.iter().filter(|&&at| at >= since).count()
        })
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let paths = self.paths.lock().unwrap_or_else(PoisonError::into_inner);
        let requests = paths
            .iter()
            .map(|(path, state)| (path.clone(), state.count))
            .collect();
        let log = paths
            .iter()
            .map(|(path, state)| {
                let log = PathLog {
                    arrivals: state
                        .arrivals
                        .iter()
                        // Whole microseconds, so a snapshot survives its JSON round trip.
                        .map(|at| micros::truncate(at.saturating_duration_since(self.started)))
                        .collect(),
                    last_body: state.last_body.clone(),
                    last_headers: state.last_headers.clone(),
                };
                (path.clone(), log)
            })
            .collect();
        StatsSnapshot {
            requests,
            inflight: self.inflight.load(Ordering::Relaxed),
            log,
        }
    }
}

fn headers_of(headers: &HeaderMap, authority: Option<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::<String, String>::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        out.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let authority = authority
        .map(str::to_owned)
        .or_else(|| out.get("host").cloned());
    if let Some(authority) = authority {
        out.insert(":authority".to_owned(), authority);
    }
    out
}

mod micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn truncate(d: Duration) -> Duration {
        Duration::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub fn serialize<S: Serializer>(arrivals: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        arrivals
            .iter()
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Ok(Vec::<u64>::deserialize(d)?
            .into_iter()
            .map(Duration::from_micros)
            .collect())
    }
}

mod lossy_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(body))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(String::deserialize(d)?.into_bytes())
    }
}
