//! The life of one request as metrics (docs/design.md, "A request's life"): plain Rust driven by
//! the HTTP glue, with every host interaction behind [`Host`].

use crate::config::Config;
use crate::host::{EnvoyEnd, Host};
use crate::labels::{Endpoint, ErrorType, RequestType};
use crate::metrics::{Lookup, Metric, Metrics, ModelId, Series, WorkerId};
use crate::models::Models;
use crate::outcome::Outcome;
use crate::protocol::request::RequestScanner;
use crate::protocol::response::{JsonResponse, SseResponse, Summary};
use crate::timing::{StreamClock, TokenTiming};
use crate::usage::events::SseEditor;
use crate::usage::refusal::{self, RefusalScan};
use crate::usage::request::RequestUsage;
use crate::usage::{Asked, UsageMode};
use crate::workers::Workers;

/// Per-VM state shared by all streams of one worker thread.
pub struct VmMeter {
    pub metrics: Metrics,
    /// `usage_stats`: whether streamed requests are asked for usage.
    pub usage: UsageMode,
}

impl VmMeter {
    pub fn new(config: &Config) -> VmMeter {
        VmMeter {
            metrics: Metrics::new(
                &config.metrics_prefix,
                Models::new(&config.metrics_prefix, config.max_models, &config.models),
                Workers::new(
                    &config.metrics_prefix,
                    config.worker_label,
                    config.max_workers,
                    &config.named_workers(),
                ),
            ),
            usage: config.usage_stats,
        }
    }
}

/// What the response headers said, as the glue reads them.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseHead<'a> {
    pub status: u32,
    pub content_type: &'a [u8],
    /// `content-encoding`, empty when absent.
    pub content_encoding: &'a [u8],
}

enum Body {
    /// Not parsed: not an inference endpoint, an error status, or an encoded body.
    Opaque,
    /// The error answer to a request the filter added usage to: read for a refusal of it.
    Refusal(RefusalScan),
    Sse(SseResponse),
    Json(JsonResponse),
}

pub struct StreamMeter {
    /// Started when the request is complete (docs/design.md, "Timing": TTFT and duration leave the
    /// client's upload out); `None` until then.
    clock: Option<StreamClock>,
    endpoint: Endpoint,
    /// A `HEAD` request: its answer has no body to parse.
    head: bool,
    request: Option<RequestScanner>,
    asked_stream: bool,
    /// The label this request's figures go to; `None` until the request is complete.
    model: Option<ModelId>,
    /// A model name no worker has accepted yet: admitted if this request's answer is 2xx.
    pending_model: Option<String>,
    /// Where this request's inflight +1 went, so the -1 goes to the same series (with
    /// `worker`).
    inflight_model: Option<ModelId>,
    /// The worker that served the request (`worker_label`): [`WorkerId::NONE`] until the
    /// response says, or when the label is off.
    worker: WorkerId,
    /// Whether Envoy was asked for the worker (once per request).
    worker_read: bool,
    /// The request counts in `queued_requests` (under `inflight_model`): its body arrived and
    /// no first token yet.
    queued: bool,
    /// A 2xx answer whose body names the model that served it: the label waits for the
    /// first JSON event (or the unary body) to say which.
    awaiting_answer_model: bool,
    /// Cached per stream so each token costs one host call, not a map lookup and a call.
    itl_id: Option<u32>,
    /// The output-token counter's id, cached likewise: at a real worker's pace (a token every
    /// 20-50 ms) the counter is bumped every few tokens, and the map lookup (hash and key
    /// compare) cost more than the host call in V8.
    output_tokens_id: Option<u32>,
    status: u32,
    body: Body,
    /// Set when the response ended; for unary bodies, the parsed summary.
    summary: Option<Summary>,
    response_complete: bool,
    /// The request's one verdict (error type or none), decided once: at the response's end,
    /// or at `on_log` for a stream that never completed.
    verdict: Option<Option<ErrorType>>,
    /// Output tokens not yet added to the counter, and when it was last bumped: the counter
    /// is bumped every few tokens or milliseconds, not per token, to keep about one host call
    /// per token (the ITL record).
    tokens_pending: u64,
    tokens_counted: u64,
    last_flush_ns: u64,
    /// ITL sample values not yet added to their exact-sum counter (flushed with the tokens).
    itl_sum_pending: u64,
    itl_total_id: Option<u32>,
    /// The usage edit, when the filter may ask the worker for usage (boxed: most streams of a
    /// VM with `usage_stats: off`, and every non-streamed one after its body, need none).
    usage: Option<Box<UsageEdit>>,
}

/// A request the filter may add usage to, and what it does to the answer.
struct UsageEdit {
    request: RequestUsage,
    /// The upstream cluster, where a refusal is recorded.
    cluster: String,
    response: Option<SseEditor>,
}

/// Output-token counter batching: far finer than any scrape interval.
const FLUSH_TOKENS: u64 = 32;
const FLUSH_NS: u64 = 100_000_000;
/// ITL samples recorded for one event at most: a worker's cumulative count can jump by
/// billions (a bug or hostile), and each sample is a host call.
pub const MAX_ITL_SAMPLES_PER_EVENT: u32 = 4096;

/// The [`TokenRecorder`] of a stream's figures. A macro, not a method: it borrows the fields
/// it needs one by one, so it can be built while the stream's body parser is borrowed too.
macro_rules! recorder {
    ($s:ident, $vm:expr, $host:expr, $now:expr) => {
        TokenRecorder {
            vm: $vm,
            host: $host,
            now: $now,
            series: Series::labels($s.model.unwrap_or(ModelId::OTHER), $s.worker),
            clock: $s.clock.get_or_insert_with(|| StreamClock::new($now)),
            itl_id: &mut $s.itl_id,
            tokens: &mut $s.tokens_pending,
            itl_sum: &mut $s.itl_sum_pending,
            queued: &mut $s.queued,
        }
    };
}

impl StreamMeter {
    /// Request headers arrived. `method` is `:method`; `encoded_body`: the request has a
    /// `content-encoding`, so its body cannot be scanned.
    pub fn start(method: &[u8], path: &[u8], encoded_body: bool) -> StreamMeter {
        let endpoint = Endpoint::from_path(path);
        StreamMeter {
            clock: None,
            endpoint,
            head: method == b"HEAD",
            request: (endpoint.is_inference() && !encoded_body).then(RequestScanner::default),
            asked_stream: false,
            model: None,
            pending_model: None,
            inflight_model: None,
            worker: WorkerId::NONE,
            worker_read: false,
            queued: false,
            awaiting_answer_model: false,
            itl_id: None,
            output_tokens_id: None,
            status: 0,
            body: Body::Opaque,
            summary: None,
            response_complete: false,
            verdict: None,
            tokens_pending: 0,
            tokens_counted: 0,
            last_flush_ns: 0,
            itl_sum_pending: 0,
            itl_total_id: None,
            usage: None,
        }
    }

    /// Whether this request is one the filter may ask the worker for usage on: a `POST` to
    /// chat/completions or completions with a body it can read. The glue then drops the
    /// request's `content-length` (an edit changes the length; Envoy frames the body chunked
    /// or by HTTP/2 frames instead) and calls [`StreamMeter::edit_usage`].
    pub fn may_edit_usage(&self, mode: UsageMode, method: &[u8]) -> bool {
        mode != UsageMode::Off
            && method == b"POST"
            && self.request.is_some()
            && matches!(
                self.endpoint,
                Endpoint::ChatCompletions | Endpoint::Completions
            )
    }

    pub fn edit_usage(&mut self, mode: UsageMode, cluster: String) {
        self.usage = Some(Box::new(UsageEdit {
            request: RequestUsage::new(mode),
            cluster,
            response: None,
        }));
    }

    /// What this request asked the worker for, and who asked.
    pub fn usage_asked(&self) -> Asked {
        self.usage
            .as_ref()
            .map(|u| u.request.asked())
            .unwrap_or_default()
    }

    /// Whether the response body is worth copying out of Envoy (it is parsed).
    pub fn wants_response_body(&self) -> bool {
        !matches!(self.body, Body::Opaque)
    }

    pub fn wants_request_body(&self) -> bool {
        self.request.is_some() && self.model.is_none()
    }

    /// A request body chunk; returns the bytes to send instead when the usage edit changes it.
    pub fn on_request_body(
        &mut self,
        vm: &mut VmMeter,
        host: &dyn Host,
        chunk: &[u8],
        end: bool,
    ) -> Option<Vec<u8>> {
        let mut edited = None;
        if let Some(scanner) = self.request.as_mut() {
            let marks = scanner.feed(chunk);
            if let Some(usage) = self.usage.as_mut() {
                let failed = scanner.failed();
                edited = usage
                    .request
                    .on_chunk(chunk, &scanner.facts, marks, failed, end);
            }
        }
        if end {
            self.on_request_end(vm, host);
        }
        edited
    }

    /// The request is complete (or the response starts first): the clock starts, the model is
    /// as known as it will be, and the request counts as in flight under its label.
    pub fn on_request_end(&mut self, vm: &mut VmMeter, host: &dyn Host) {
        if self.model.is_some() {
            return;
        }
        // One clock read starts both TTFT and the output-token counter's flush period.
        let now = host.now_ns();
        self.clock = Some(StreamClock::new(now));
        self.last_flush_ns = now;
        let facts = self.request.take().map(|s| s.facts).unwrap_or_default();
        self.asked_stream = facts.stream == Some(true);
        let model = match vm.metrics.models.lookup(facts.model.as_deref()) {
            Lookup::Known(id) => id,
            Lookup::Pending(name) => {
                self.pending_model = Some(name);
                ModelId::OTHER
            }
        };
        self.model = Some(model);
        self.inflight_model = Some(model);
        self.queued = true;
        let m = &mut vm.metrics;
        let series = Series::labels(model, self.worker);
        m.increment(host, Metric::InflightRequests, series, 1);
        m.increment(host, Metric::QueuedRequests, series, 1);
    }

    /// The request leaves `queued_requests`: its first token, or an answer without tokens.
    fn dequeue(&mut self, vm: &mut VmMeter, host: &dyn Host) {
        if std::mem::take(&mut self.queued) {
            let label = self.inflight_model.unwrap_or(ModelId::OTHER);
            vm.metrics
                .increment(host, Metric::QueuedRequests, Series::model_only(label), -1);
        }
    }

    /// A 2xx answer that does not say which model served it: the worker accepted the
    /// request's model, which may now enter the cap.
    fn accept_model(&mut self, vm: &mut VmMeter, host: &dyn Host) {
        let Some(name) = self.pending_model.take() else {
            return;
        };
        let id = vm.metrics.models.admit(host, name);
        if id != ModelId::OTHER {
            self.relabel(vm, host, id);
        }
    }

    /// The answer's `model` (`None`: the answer has none) labels the request: a worker that
    /// answers any name (llama.cpp serves its one model whatever is asked) says here which
    /// model ran, so a made-up name it ignored never enters the cap. Without one, the
    /// request's own name does, as the worker accepted it.
    fn on_answer_model(&mut self, vm: &mut VmMeter, host: &dyn Host, answer: Option<Vec<u8>>) {
        self.awaiting_answer_model = false;
        let Some(raw) = answer else {
            self.accept_model(vm, host);
            return;
        };
        self.pending_model = None;
        let id = match vm.metrics.models.lookup(Some(&raw)) {
            Lookup::Known(id) => id,
            Lookup::Pending(name) => vm.metrics.models.admit(host, name),
        };
        self.relabel(vm, host, id);
    }

    /// Moves the request to another label before any figure but its in-flight +1 was
    /// recorded; the +1 moves with it, so its -1 finds it.
    fn relabel(&mut self, vm: &mut VmMeter, host: &dyn Host, id: ModelId) {
        if self.model == Some(id) {
            return;
        }
        if let Some(old) = self.inflight_model {
            let m = &mut vm.metrics;
            let (was, now) = (
                Series::labels(old, self.worker),
                Series::labels(id, self.worker),
            );
            m.increment(host, Metric::InflightRequests, was, -1);
            m.increment(host, Metric::InflightRequests, now, 1);
            if self.queued {
                m.increment(host, Metric::QueuedRequests, Series::model_only(old), -1);
                m.increment(host, Metric::QueuedRequests, Series::model_only(id), 1);
            }
        }
        self.inflight_model = Some(id);
        self.model = Some(id);
        self.forget_ids();
    }

    /// Ids cached for an old label would send this request's figures there.
    fn forget_ids(&mut self) {
        self.itl_id = None;
        self.output_tokens_id = None;
        self.itl_total_id = None;
    }

    /// Asks Envoy once which worker serves the request (`worker_label` on) and labels the
    /// request with it; `accepted`: that worker answered 2xx, so it may enter the cap. The
    /// in-flight +1 moves to the worker's series.
    fn learn_worker(&mut self, vm: &mut VmMeter, host: &dyn Host, accepted: bool) {
        if !vm.metrics.workers.enabled() || std::mem::replace(&mut self.worker_read, true) {
            return;
        }
        let Some(address) = host.upstream_address() else {
            return;
        };
        let id = vm.metrics.workers.resolve(host, &address, accepted);
        if id == self.worker {
            return;
        }
        if let Some(model) = self.inflight_model {
            let m = &mut vm.metrics;
            let (was, now) = (
                Series::labels(model, self.worker),
                Series::labels(model, id),
            );
            m.increment(host, Metric::InflightRequests, was, -1);
            m.increment(host, Metric::InflightRequests, now, 1);
        }
        self.worker = id;
        self.forget_ids();
    }

    /// The labels of this request's per-request figures.
    fn labels(&self) -> Series {
        Series::labels(self.model.unwrap_or(ModelId::OTHER), self.worker)
    }

    /// The response headers; returns whether the filter will change the body's length (the
    /// glue then drops the response's `content-length`).
    pub fn on_response_headers(
        &mut self,
        vm: &mut VmMeter,
        host: &dyn Host,
        head: ResponseHead<'_>,
        end: bool,
    ) -> bool {
        self.on_request_end(vm, host);
        self.status = head.status;
        let identity = head.content_encoding.is_empty()
            || head.content_encoding.eq_ignore_ascii_case(b"identity");
        let success = (200..300).contains(&head.status);
        if !success {
            self.pending_model = None;
        }
        self.learn_worker(vm, host, success);
        // HEAD, 204 and 304 answers have no body whatever their headers say.
        let bodiless = self.head || head.status == 204 || head.status == 304;
        self.body = if !self.endpoint.is_inference() || !success || !identity || bodiless {
            Body::Opaque
        } else if media_type_is(head.content_type, b"text/event-stream") {
            Body::Sse(SseResponse::default())
        } else if media_type_is(head.content_type, b"application/json") {
            Body::Json(JsonResponse::default())
        } else {
            Body::Opaque
        };
        if success {
            if matches!(self.body, Body::Sse(_) | Body::Json(_)) {
                self.awaiting_answer_model = true;
            } else {
                self.accept_model(vm, host);
            }
        }
        if !matches!(self.body, Body::Sse(_) | Body::Json(_)) {
            // No token will be read from this answer: it is no longer waiting for one.
            self.dequeue(vm, host);
        }
        let asked = self.usage_asked();
        let mut edits_body = false;
        if asked.edited && identity && !bodiless {
            if matches!(self.body, Body::Sse(_)) {
                if let Some(usage) = self.usage.as_mut() {
                    let editor = SseEditor::new(asked);
                    edits_body = editor.active();
                    usage.response = Some(editor);
                }
            } else if (400..500).contains(&head.status) {
                self.body = Body::Refusal(RefusalScan::default());
            }
        }
        if end {
            self.on_response_body(vm, host, &[], true);
        }
        edits_body
    }

    /// A response body chunk; returns the bytes to send instead when the usage edit changes
    /// it.
    pub fn on_response_body(
        &mut self,
        vm: &mut VmMeter,
        host: &dyn Host,
        chunk: &[u8],
        end: bool,
    ) -> Option<Vec<u8>> {
        let now = host.now_ns();
        let mut edited = None;
        if let (Body::Sse(sse), true) = (&mut self.body, self.awaiting_answer_model) {
            // Until the first JSON event says which model served the request, token reports
            // wait, so that its TTFT goes to that label; they are replayed with this read's
            // time, as they would have been recorded.
            let mut early = Vec::new();
            edited = feed_sse(sse, self.usage.as_deref_mut(), chunk, end, &mut |k| {
                early.push(k)
            });
            if let Some(answer) = sse.take_model() {
                self.on_answer_model(vm, host, answer);
            }
            let mut r = recorder!(self, vm, host, now);
            for k in early {
                r.tokens(k);
            }
        } else if let Body::Sse(sse) = &mut self.body {
            let mut r = recorder!(self, vm, host, now);
            edited = feed_sse(sse, self.usage.as_deref_mut(), chunk, end, &mut |k| {
                r.tokens(k)
            });
        } else if let Body::Json(json) = &mut self.body {
            json.feed(chunk);
        } else if let Body::Refusal(scan) = &mut self.body {
            scan.feed(chunk);
            if end && scan.found {
                if let Some(usage) = &self.usage {
                    refusal::mark(host, vm.metrics.prefix(), &usage.cluster, self.status);
                }
            }
        }
        if end {
            self.finish_response(vm, host, now);
            self.flush_output_tokens(vm, host, now);
        } else if self.tokens_pending >= FLUSH_TOKENS
            || now.saturating_sub(self.last_flush_ns) >= FLUSH_NS
        {
            self.flush_output_tokens(vm, host, now);
        }
        edited
    }

    fn finish_response(&mut self, vm: &mut VmMeter, host: &dyn Host, now: u64) {
        self.response_complete = true;
        let mut answer = match &mut self.body {
            Body::Json(json) => {
                let summary = json.finish();
                Some((summary, json.take_model()))
            }
            _ => None,
        };
        if self.awaiting_answer_model {
            // A stream with no JSON event says nothing: the request's name, as accepted.
            let model = answer.as_mut().and_then(|(_, m)| m.take());
            self.on_answer_model(vm, host, model);
        }
        let summary = match &mut self.body {
            Body::Sse(sse) => Some(*sse.summary()),
            Body::Json(_) => {
                let summary = answer.map(|(s, _)| s).unwrap_or_default();
                if summary.malformed == 0 && self.endpoint.generates_tokens() {
                    // A unary answer's first token reaches the client with its last.
                    let clock = self.clock.get_or_insert_with(|| StreamClock::new(now));
                    clock.on_tokens(now, 1);
                    let ttft_us = clock.elapsed_us(now);
                    let series = self.labels();
                    vm.metrics.record_with_total(
                        host,
                        (Metric::TimeToFirstToken, Metric::TimeToFirstTokenTotal),
                        series,
                        ttft_us,
                    );
                }
                self.dequeue(vm, host);
                Some(summary)
            }
            Body::Opaque | Body::Refusal(_) => None,
        };
        self.summary = summary;
        if let Some(s) = summary {
            // Usage can report more tokens than the deltas showed (several per chunk).
            let reported = s.output_tokens();
            let seen = self.tokens_counted + self.tokens_pending;
            if self.endpoint.generates_tokens() && reported > seen {
                self.tokens_pending += reported - seen;
            }
        }
        // Published now, not at `on_log`: Envoy 1.31 and older run the HCM's access logs
        // before the filters' (`on_log`), so only state set here reaches them there.
        let verdict = self.decide(host);
        self.publish_filter_state(host, verdict);
    }

    fn flush_output_tokens(&mut self, vm: &mut VmMeter, host: &dyn Host, now: u64) {
        self.last_flush_ns = now;
        let series = self.labels();
        if self.itl_sum_pending > 0 {
            if self.itl_total_id.is_none() {
                self.itl_total_id = vm.metrics.id(host, Metric::InterTokenLatencyTotal, series);
            }
            if let Some(id) = self.itl_total_id {
                host.increment_metric(id, i64::try_from(self.itl_sum_pending).unwrap_or(i64::MAX));
            }
            self.itl_sum_pending = 0;
        }
        if self.tokens_pending == 0 {
            return;
        }
        let delta = i64::try_from(self.tokens_pending).unwrap_or(i64::MAX);
        if self.output_tokens_id.is_none() {
            self.output_tokens_id = vm.metrics.id(host, Metric::OutputTokensTotal, series);
        }
        if let Some(id) = self.output_tokens_id {
            host.increment_metric(id, delta);
        }
        self.tokens_counted += self.tokens_pending;
        self.tokens_pending = 0;
    }

    fn request_type(&self) -> RequestType {
        if matches!(self.body, Body::Sse(_)) || self.asked_stream {
            RequestType::Stream
        } else {
            RequestType::Unary
        }
    }

    fn summary_now(&self) -> Option<Summary> {
        match (&self.summary, &self.body) {
            (Some(s), _) => Some(*s),
            (None, Body::Sse(sse)) => Some(*sse.summary()),
            _ => None,
        }
    }

    fn error_type(&self, end: &EnvoyEnd) -> Option<ErrorType> {
        let summary = self.summary_now().unwrap_or_default();
        Outcome {
            status: self.status,
            response_complete: self.response_complete,
            streaming: matches!(self.body, Body::Sse(_)),
            stream_finished: summary.complete,
            backend_error: summary.backend_error,
            malformed: summary.malformed > 0,
            response_flags: end.flags,
            code_details: &end.details,
        }
        .error_type()
    }

    /// The request's one verdict, made on first call: Envoy's account is read only when it
    /// can change it (not after a complete response below 400 the filter saw itself: no flag
    /// or detail turns that into an error, and each read is a host call).
    fn decide(&mut self, host: &dyn Host) -> Option<ErrorType> {
        if let Some(v) = self.verdict {
            return v;
        }
        let end = if self.response_complete && (1..400).contains(&self.status) {
            EnvoyEnd::default()
        } else {
            host.envoy_end()
        };
        if self.status == 0 {
            self.status = end.status;
        }
        let v = self.error_type(&end);
        self.verdict = Some(v);
        v
    }

    /// Per-request figures for access logs: `%FILTER_STATE(wasm.llm_pulse.ttft_us:PLAIN)%`.
    /// Set once per request: at the response's end, or at `on_log` when it never ended.
    fn publish_filter_state(&self, host: &dyn Host, verdict: Option<ErrorType>) {
        if !self.endpoint.is_inference() {
            return;
        }
        let put = |name: &str, value: Option<u64>| {
            if let Some(v) = value {
                host.set_property(name, v.to_string().as_bytes());
            }
        };
        put(
            "llm_pulse.ttft_us",
            self.clock.as_ref().and_then(StreamClock::ttft_us),
        );
        put(
            "llm_pulse.itl_avg_us",
            self.clock.as_ref().and_then(StreamClock::itl_avg_us),
        );
        let summary = self.summary_now();
        put(
            "llm_pulse.input_tokens",
            summary.and_then(|s| s.input_tokens),
        );
        put(
            "llm_pulse.output_tokens",
            summary.map(|s| s.output_tokens()),
        );
        // Where the token figures came from: the worker's own usage (exact), or counted
        // from the deltas (one per delta: low when a chunk carries several tokens).
        if let Some(s) = summary {
            let source: &[u8] = if s.usage_output_tokens.is_some() {
                b"usage"
            } else {
                b"counted"
            };
            host.set_property("llm_pulse.token_source", source);
        }
        if let Some(e) = verdict {
            host.set_property("llm_pulse.error_type", e.as_str().as_bytes());
        }
    }

    /// The stream is over (Envoy's `on_log`): completed, failed or abandoned. Returns whether
    /// it was a successful inference (evidence that its worker is healthy).
    pub fn on_log(&mut self, vm: &mut VmMeter, host: &dyn Host) -> bool {
        // A request abandoned mid-upload never reached a worker: it has no duration to give.
        let request_complete = self.model.is_some();
        self.on_request_end(vm, host);
        // A stream that ended before its answer (a refused connection, a reset): the worker
        // Envoy chose, if any, never answered a 2xx.
        self.learn_worker(vm, host, false);
        let now = host.now_ns();
        self.flush_output_tokens(vm, host, now);
        let model = self.model.unwrap_or(ModelId::OTHER);
        let error = self.decide(host);
        if !self.response_complete {
            // A stream that never finished (client gone, worker reset, timeout) has its
            // verdict only now; Envoy 1.40 runs the filters' access loggers (this `on_log`)
            // before the HCM's, so its access-log line still gets it.
            self.publish_filter_state(host, error);
        }
        let request_type = self.request_type();
        let series = Series {
            model,
            worker: self.worker,
            endpoint: self.endpoint,
            request_type,
            error,
        };
        let m = &mut vm.metrics;
        m.increment(host, Metric::RequestsTotal, series, 1);
        if let (true, Some(clock)) = (request_complete, &self.clock) {
            m.record_with_total(
                host,
                (Metric::RequestDuration, Metric::RequestDurationTotal),
                series,
                clock.elapsed_us(now),
            );
        }
        if let Some(s) = self.summary_now() {
            let by_model = Series::labels(model, self.worker);
            if let Some(n) = s.input_tokens {
                m.record_with_total(
                    host,
                    (
                        Metric::InputSequenceTokens,
                        Metric::InputSequenceTokensTotal,
                    ),
                    by_model,
                    n,
                );
            }
            if let Some(n) = s.cached_tokens {
                m.record(host, Metric::CachedTokens, by_model, n);
            }
            if self.endpoint.generates_tokens()
                && (s.streamed_tokens > 0 || s.usage_output_tokens.is_some())
            {
                m.record_with_total(
                    host,
                    (
                        Metric::OutputSequenceTokens,
                        Metric::OutputSequenceTokensTotal,
                    ),
                    by_model,
                    s.output_tokens(),
                );
            }
        }
        let inflight = self.inflight_model.unwrap_or(model);
        m.increment(
            host,
            Metric::InflightRequests,
            Series::labels(inflight, self.worker),
            -1,
        );
        self.dequeue(vm, host);
        error.is_none() && self.endpoint.is_inference() && (200..300).contains(&self.status)
    }
}

/// Feeds a read to the SSE parser, through the usage editor when the stream has one; returns
/// the bytes to send instead when the editor changed the read.
fn feed_sse<F: FnMut(u32)>(
    sse: &mut SseResponse,
    usage: Option<&mut UsageEdit>,
    chunk: &[u8],
    end: bool,
    on_tokens: &mut F,
) -> Option<Vec<u8>> {
    match usage.and_then(|u| u.response.as_mut()) {
        Some(editor) => {
            sse.feed_edges(chunk, on_tokens, editor);
            editor.finish_chunk(chunk, end)
        }
        None => {
            sse.feed(chunk, on_tokens);
            None
        }
    }
}

/// Records a stream's token reports: TTFT for the first, ITL samples (one per token of a
/// multi-token event) after, and the counts the output-token flush adds.
struct TokenRecorder<'a> {
    vm: &'a mut VmMeter,
    host: &'a dyn Host,
    now: u64,
    /// The request's labels (model, worker).
    series: Series,
    clock: &'a mut StreamClock,
    itl_id: &'a mut Option<u32>,
    tokens: &'a mut u64,
    itl_sum: &'a mut u64,
    /// Set while the request counts in `queued_requests` (under `model`).
    queued: &'a mut bool,
}

impl TokenRecorder<'_> {
    fn tokens(&mut self, k: u32) {
        *self.tokens += u64::from(k);
        match self.clock.on_tokens(self.now, k) {
            TokenTiming::First { ttft_us } => {
                let m = &mut self.vm.metrics;
                let series = self.series;
                m.record_with_total(
                    self.host,
                    (Metric::TimeToFirstToken, Metric::TimeToFirstTokenTotal),
                    series,
                    ttft_us,
                );
                if std::mem::take(self.queued) {
                    m.increment(self.host, Metric::QueuedRequests, series, -1);
                }
            }
            TokenTiming::Next { itl_us, samples } => {
                if self.itl_id.is_none() {
                    *self.itl_id =
                        self.vm
                            .metrics
                            .id(self.host, Metric::InterTokenLatency, self.series);
                }
                if let Some(id) = *self.itl_id {
                    let samples = samples.min(MAX_ITL_SAMPLES_PER_EVENT);
                    for _ in 0..samples {
                        self.host.record_metric(id, itl_us);
                    }
                    *self.itl_sum = self.itl_sum.saturating_add(itl_us * u64::from(samples));
                }
            }
        }
    }
}

/// `text/event-stream; charset=utf-8` is `text/event-stream`.
fn media_type_is(content_type: &[u8], want: &[u8]) -> bool {
    let end = content_type
        .iter()
        .position(|&b| b == b';')
        .unwrap_or(content_type.len());
    content_type
        .get(..end)
        .map(|t| t.trim_ascii().eq_ignore_ascii_case(want))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests;
