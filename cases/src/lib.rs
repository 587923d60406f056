//! The metric contract (docs/design.md, "A request's life" and "Metrics") as one table of cases,
//! plain data: a request, response chunks at clock offsets, how the stream ends, and every metric
//! sample and filter-state value it must leave behind. The same table runs natively
//! (llm-pulse-core's `contract_cases.rs`, on its `FakeHost`) and against the built `.wasm`
//! (`host-tests/tests/suite/wasm_meter_cases.rs`). It depends on nothing of the filter's: its
//! constants are its own.
//!
//! Expectations are complete: a runner compares every metric with a non-zero value (counters,
//! gauges) or a sample (histograms) to [`Expect::samples`], and every filter-state value to
//! [`Expect::properties`]. All metrics use the default prefix `llm` and the model `m`, which
//! [`PLUGIN_CONFIG`] pins (the cap's admission rule has its own tests).

/// Envoy's response-flag bits (`response.flags`), as Envoy 1.40 defines them
/// (`envoy/stream_info/stream_info.h`, `ResponseFlag`). Written here from Envoy's source, not
/// imported from the filter: a wrong bit in the filter must fail against this table.
pub mod response_flags {
    pub const NO_HEALTHY_UPSTREAM: u64 = 0x2; // UH
    pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 0x4; // UT
    pub const LOCAL_RESET: u64 = 0x8; // LR
    pub const UPSTREAM_REMOTE_RESET: u64 = 0x10; // UR
    pub const UPSTREAM_CONNECTION_FAILURE: u64 = 0x20; // UF
    pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 0x40; // UC
    pub const UPSTREAM_OVERFLOW: u64 = 0x80; // UO
    pub const DOWNSTREAM_CONNECTION_TERMINATION: u64 = 0x4000; // DC
    pub const STREAM_IDLE_TIMEOUT: u64 = 0x10000; // SI
    pub const DOWNSTREAM_PROTOCOL_ERROR: u64 = 0x40000; // DPE
    pub const UPSTREAM_MAX_STREAM_DURATION: u64 = 0x80000; // UMSDR
    pub const DURATION_TIMEOUT: u64 = 0x400000; // DT
    pub const UPSTREAM_PROTOCOL_ERROR: u64 = 0x800000; // UPE
    pub const NO_CLUSTER_FOUND: u64 = 0x1000000; // NC
    pub const OVERLOAD_MANAGER: u64 = 0x2000000; // OM
    pub const DOWNSTREAM_REMOTE_RESET: u64 = 0x10000000; // DR
}

/// The plugin configuration every case runs under: `m` pinned, so a case's labels do not
/// depend on whether a worker accepted the model before.
pub const PLUGIN_CONFIG: &str = r#"{"models":["m"]}"#;

use response_flags as flags;

/// One request through the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub name: String,
    pub method: &'static str,
    pub path: &'static str,
    /// The request body: one chunk, or with [`Case::upload_gap_us`] one byte per chunk.
    pub request_body: Vec<u8>,
    /// Microseconds before each byte of a slowly uploaded body (0: one chunk at once).
    pub upload_gap_us: u64,
    /// Whether that chunk ends the request (false: the client stops sending mid-body).
    pub request_ends: bool,
    pub response: Option<Response>,
    pub end: End,
    pub expect: Expect,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Microseconds from the end of the request body to the response headers.
    pub after_us: u64,
    pub status: u32,
    pub content_type: &'static str,
    pub chunks: Vec<Chunk>,
    /// Whether the response ends (an empty body chunk with end of stream after the chunks).
    pub ends: bool,
}

/// A response body chunk, `after_us` after the previous step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub after_us: u64,
    pub bytes: Vec<u8>,
}

/// The access-log phase (`on_log`): `after_us` after the last step, with Envoy's
/// `response.flags` and `response.code_details`. For a response that ends, runners set them
/// before the response headers, as Envoy does for its own replies (UO, UH, UF): the filter
/// makes its verdict when the response ends, before `on_log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    pub after_us: u64,
    pub flags: u64,
    pub details: &'static str,
}

impl End {
    pub fn normal() -> End {
        End {
            after_us: 0,
            flags: 0,
            details: "via_upstream",
        }
    }
}

/// A metric as a runner reads it back (full Envoy stat name without `wasmcustom.`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sample {
    Counter(String, u64),
    Gauge(String, i64),
    Histogram(String, Vec<u64>),
}

impl Sample {
    pub fn name(&self) -> &str {
        match self {
            Sample::Counter(n, _) | Sample::Gauge(n, _) | Sample::Histogram(n, _) => n,
        }
    }

    /// Nothing recorded: a counter or gauge at 0, a histogram without a sample.
    fn is_empty(&self) -> bool {
        match self {
            Sample::Counter(_, v) => *v == 0,
            Sample::Gauge(_, v) => *v == 0,
            Sample::Histogram(_, v) => v.is_empty(),
        }
    }
}

impl Case {
    /// The response body as the worker sends it, every chunk in order: what the client must
    /// receive unchanged.
    pub fn response_body(&self) -> Vec<u8> {
        self.response
            .iter()
            .flat_map(|r| r.chunks.iter().flat_map(|c| c.bytes.iter().copied()))
            .collect()
    }
}

impl Expect {
    /// What a host observed after a case, in the table's terms: every metric but
    /// `llm_build_info` (set at configure, not by traffic) with something recorded, sorted; the
    /// filter state with Envoy's `wasm.` prefix taken off, as the table names it.
    pub fn observed<K: AsRef<str>, V: AsRef<[u8]>>(
        samples: impl IntoIterator<Item = Sample>,
        filter_state: impl IntoIterator<Item = (K, V)>,
    ) -> Expect {
        let mut samples: Vec<Sample> = samples
            .into_iter()
            .filter(|s| !s.name().starts_with("llm_build_info.") && !s.is_empty())
            .collect();
        samples.sort();
        let properties = filter_state
            .into_iter()
            .map(|(k, v)| {
                let k = k.as_ref();
                (
                    k.strip_prefix("wasm.").unwrap_or(k).to_string(),
                    String::from_utf8_lossy(v.as_ref()).into_owned(),
                )
            })
            .collect();
        Expect {
            samples,
            properties,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    /// Every metric with a non-zero value or any sample, sorted.
    pub samples: Vec<Sample>,
    /// Filter state the filter set (`llm_pulse.ttft_us` ...), sorted by name.
    pub properties: Vec<(String, String)>,
}

pub const MODEL: &str = "m";
pub const CHAT: &str = "/v1/chat/completions";
pub const COMPLETIONS: &str = "/v1/completions";
/// The inflight gauge of model `m`: back to 0 after every case.
pub const INFLIGHT: &str = "llm_inflight_requests.model=.=m;.;";

/// The histograms with an exact-sum counter `<name>_total` beside them.
pub const EXACT_SUMS: [&str; 5] = [
    "time_to_first_token_microseconds",
    "inter_token_latency_microseconds",
    "request_duration_microseconds",
    "input_sequence_tokens",
    "output_sequence_tokens",
];

fn by_model(metric: &str) -> String {
    format!("llm_{metric}.model=.={MODEL};.;")
}

/// Builds an [`Expect`] one metric at a time.
#[derive(Debug, Clone, Default)]
struct Want(Expect);

impl Want {
    fn requests(mut self, endpoint: &str, request_type: &str, error: Option<&str>) -> Self {
        let (status, error) = match error {
            Some(e) => ("error", e),
            None => ("success", ""),
        };
        self.0.samples.push(Sample::Counter(
            format!("llm_requests_total.model=.={MODEL};.;endpoint=.={endpoint};.;request_type=.={request_type};.;status=.={status};.;error_type=.={error};.;"),
            1,
        ));
        self
    }
    fn duration(mut self, request_type: &str, us: u64) -> Self {
        self.0.samples.push(Sample::Histogram(
            format!("llm_request_duration_microseconds.model=.={MODEL};.;request_type=.={request_type};.;"),
            vec![us],
        ));
        self
    }
    fn ttft(mut self, us: u64) -> Self {
        let name = by_model("time_to_first_token_microseconds");
        self.0.samples.push(Sample::Histogram(name, vec![us]));
        self.prop("ttft_us", us)
    }
    /// ITL samples and the exact mean as filter state (`itl_avg_us`).
    fn itl(mut self, samples: Vec<u64>, avg_us: u64) -> Self {
        if samples.is_empty() {
            return self;
        }
        let name = by_model("inter_token_latency_microseconds");
        self.0.samples.push(Sample::Histogram(name, samples));
        self.prop("itl_avg_us", avg_us)
    }
    /// Output tokens: the counter, the per-request histogram, the filter state.
    fn output(mut self, n: u64) -> Self {
        if n > 0 {
            self.0
                .samples
                .push(Sample::Counter(by_model("output_tokens_total"), n));
            self.0.samples.push(Sample::Histogram(
                by_model("output_sequence_tokens"),
                vec![n],
            ));
        }
        self.prop("output_tokens", n)
    }
    fn input(mut self, n: u64) -> Self {
        let name = by_model("input_sequence_tokens");
        self.0.samples.push(Sample::Histogram(name, vec![n]));
        self.prop("input_tokens", n)
    }
    fn cached(mut self, n: u64) -> Self {
        let name = by_model("cached_tokens");
        self.0.samples.push(Sample::Histogram(name, vec![n]));
        self
    }
    fn prop(mut self, name: &str, value: impl ToString) -> Self {
        self.0
            .properties
            .push((format!("llm_pulse.{name}"), value.to_string()));
        self
    }
    /// The same series under another model label (a request that names none is `unknown`).
    fn model(mut self, model: &str) -> Self {
        let from = format!(".model=.={MODEL};.;");
        let to = format!(".model=.={model};.;");
        for sample in &mut self.0.samples {
            let name = match sample {
                Sample::Counter(n, _) | Sample::Gauge(n, _) | Sample::Histogram(n, _) => n,
            };
            *name = name.replace(&from, &to);
        }
        self
    }
    fn done(mut self) -> Expect {
        // Where the token figures came from: the worker's usage brings input tokens with it;
        // a case where it does not says so with `prop("token_source", ...)`.
        let has = |w: &Want, name: &str| w.0.properties.iter().any(|(k, _)| k == name);
        if has(&self, "llm_pulse.output_tokens") && !has(&self, "llm_pulse.token_source") {
            let source = if has(&self, "llm_pulse.input_tokens") {
                "usage"
            } else {
                "counted"
            };
            self = self.prop("token_source", source);
        }
        // Each histogram whose mean is charted has an exact-sum counter beside it: the sum of
        // the same samples.
        let totals: Vec<Sample> = self
            .0
            .samples
            .iter()
            .filter_map(|s| match s {
                Sample::Histogram(name, values) => {
                    let (metric, labels) = name.split_once('.')?;
                    EXACT_SUMS.contains(&metric.strip_prefix("llm_")?).then(|| {
                        let sum = values.iter().sum::<u64>();
                        Sample::Counter(format!("{metric}_total.{labels}"), sum)
                    })
                }
                _ => None,
            })
            .filter(|s| !matches!(s, Sample::Counter(_, 0)))
            .collect();
        self.0.samples.extend(totals);
        self.0.samples.sort();
        self.0.properties.sort();
        self.0
    }
}

// ----- response bodies -----

pub const ROLE: &str =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
pub const DONE: &str = "data: [DONE]\n\n";

/// A chat delta event with one token.
pub fn chat(text: &str) -> String {
    format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n")
}

/// A completions event with one token.
pub fn completion(text: &str) -> String {
    format!(
        "data: {{\"choices\":[{{\"index\":0,\"text\":\"{text}\",\"finish_reason\":null}}]}}\n\n"
    )
}

/// A chat event carrying vLLM's continuous usage: `total` output tokens so far.
pub fn chat_cumulative(text: &str, total: u64) -> String {
    format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}}}}],\"usage\":{{\"prompt_tokens\":4,\"completion_tokens\":{total}}}}}\n\n")
}

/// The final usage-only event of `stream_options.include_usage`.
pub fn usage(prompt: u64, completion: u64) -> String {
    format!("data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{prompt},\"completion_tokens\":{completion}}}}}\n\n")
}

fn body(model_stream: bool, include_usage: bool) -> Vec<u8> {
    match (model_stream, include_usage) {
        (true, true) => {
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#.to_vec()
        }
        (true, false) => br#"{"model":"m","stream":true}"#.to_vec(),
        (false, _) => br#"{"model":"m","prompt":"hi"}"#.to_vec(),
    }
}

fn sse(status: u32, after_us: u64, chunks: Vec<Chunk>, ends: bool) -> Option<Response> {
    Some(Response {
        after_us,
        status,
        content_type: "text/event-stream",
        chunks,
        ends,
    })
}

fn json(status: u32, after_us: u64, chunks: Vec<Chunk>) -> Option<Response> {
    Some(Response {
        after_us,
        status,
        content_type: "application/json",
        chunks,
        ends: true,
    })
}

fn at(after_us: u64, bytes: impl AsRef<[u8]>) -> Chunk {
    Chunk {
        after_us,
        bytes: bytes.as_ref().to_vec(),
    }
}

/// Envoy's stat rounding of a gap shared by `k` tokens: ns / k, to the nearest microsecond.
fn share_us(gap_us: u64, k: u64) -> u64 {
    (gap_us * 1_000 / k.max(1) + 500) / 1_000
}

/// The ITL rule (docs/design.md, "Timing") applied to token events `(time_us, k)`: TTFT at the
/// first, then for each later event d/k, k times. Returns (ttft, itl samples, exact mean).
fn timeline(events: &[(u64, u64)]) -> (Option<u64>, Vec<u64>, u64) {
    let mut it = events.iter();
    let Some(&(first, _)) = it.next() else {
        return (None, Vec::new(), 0);
    };
    let (mut prev, mut itl, mut sum_ns, mut n) = (first, Vec::new(), 0u64, 0u64);
    for &(t, k) in it {
        let gap = t.saturating_sub(prev);
        prev = t;
        itl.extend(std::iter::repeat_n(share_us(gap, k), k as usize));
        sum_ns += gap * 1_000;
        n += k;
    }
    let avg = sum_ns.checked_div(n).map_or(0, |v| (v + 500) / 1_000);
    (Some(first), itl, avg)
}

/// A successful stream's expectations from its token events.
fn streamed(
    endpoint: &str,
    events: &[(u64, u64)],
    usage: Option<(u64, u64)>,
    duration_us: u64,
) -> Expect {
    let (ttft, itl, avg) = timeline(events);
    let streamed: u64 = events.iter().map(|(_, k)| k).sum();
    let mut w = Want::default()
        .requests(endpoint, "stream", None)
        .duration("stream", duration_us)
        .itl(itl, avg);
    if let Some(t) = ttft {
        w = w.ttft(t);
    }
    match usage {
        Some((input, output)) => w.input(input).output(output),
        None => w.output(streamed),
    }
    .done()
}

// ----- the table -----

/// Every case: hand-written ones first, then the generated families.
pub fn all() -> Vec<Case> {
    let mut cases = hand_written();
    cases.extend(errors());
    cases.extend(tokens_per_event());
    cases.extend(events_per_chunk());
    cases.extend(splits());
    cases.extend(hardening());
    cases
}

/// Cases with literal numbers (three of them were `meter::tests` before the table).
pub fn hand_written() -> Vec<Case> {
    let mut cases = Vec::new();

    // TTFT is the first token, not the first byte: a role-only chunk at 1 ms carries none.
    let mut chunks = vec![at(1_000, ROLE), at(149_000, chat("a"))];
    chunks.extend((0..4).map(|_| at(20_000, chat("b"))));
    chunks.push(at(0, DONE));
    cases.push(Case {
        name: "chat stream: ttft is the first token, not the first byte".into(),
        path: CHAT,
        request_body: body(true, false),
        request_ends: true,
        response: sse(200, 0, chunks, true),
        end: End::normal(),
        expect: Want::default()
            .requests("chat_completions", "stream", None)
            .duration("stream", 230_000)
            .ttft(150_000)
            .itl(vec![20_000; 4], 20_000)
            .output(5)
            .done(),
        method: "POST",
        upload_gap_us: 0,
    });

    // Several tokens per event (vLLM continuous usage): 3, then 3 in 60 ms, then 1 in 30 ms.
    cases.push(Case {
        name: "chat stream: several tokens per event with continuous usage".into(),
        path: CHAT,
        request_body: br#"{"model":"m","stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}"#.to_vec(),
        request_ends: true,
        response: sse(
            200,
            0,
            vec![
                at(100_000, chat_cumulative("abc", 3)),
                at(60_000, chat_cumulative("def", 6)),
                at(30_000, chat_cumulative("g", 7)),
                at(0, DONE),
            ],
            true,
        ),
        end: End::normal(),
        expect: Want::default()
            .requests("chat_completions", "stream", None)
            .duration("stream", 190_000)
            .ttft(100_000)
            .itl(vec![20_000, 20_000, 20_000, 30_000], 22_500)
            .input(4)
            .output(7)
            .done(),
        method: "POST",
        upload_gap_us: 0,
    });

    // A final usage corrects the count (two deltas, six tokens) and reports cached tokens.
    cases.push(Case {
        name: "chat stream: final usage makes the output count exact".into(),
        path: CHAT,
        request_body: body(true, true),
        request_ends: true,
        response: sse(
            200,
            0,
            vec![
                at(100_000, chat("abc")),
                at(60_000, chat("def")),
                at(0, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":6,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n"),
                at(0, DONE),
            ],
            true,
        ),
        end: End::normal(),
        expect: Want::default()
            .requests("chat_completions", "stream", None)
            .duration("stream", 160_000)
            .ttft(100_000)
            .itl(vec![60_000], 60_000)
            .input(4)
            .output(6)
            .cached(2)
            .done(),
        method: "POST",
        upload_gap_us: 0,
    });

    // Microsecond-exact timing, odd offsets.
    cases.push(Case {
        name: "completions stream: microsecond timing, no usage".into(),
        path: COMPLETIONS,
        request_body: body(true, false),
        request_ends: true,
        response: sse(
            200,
            12_345,
            vec![
                at(87_001, completion("a")),
                at(7_777, completion("b")),
                at(1, completion("c")),
                at(0, DONE),
            ],
            true,
        ),
        end: End {
            after_us: 3,
            ..End::normal()
        },
        expect: Want::default()
            .requests("completions", "stream", None)
            .duration("stream", 107_127)
            .ttft(99_346)
            .itl(vec![7_777, 1], 3_889)
            .output(3)
            .done(),
        method: "POST",
        upload_gap_us: 0,
    });

    cases.push(Case {
        name: "completions stream: usage".into(),
        path: COMPLETIONS,
        request_body: body(true, true),
        request_ends: true,
        response: sse(
            200,
            1_000,
            vec![
                at(40_000, completion("a")),
                at(9_999, completion("b")),
                at(2, usage(11, 2)),
                at(0, DONE),
            ],
            true,
        ),
        end: End::normal(),
        expect: streamed(
            "completions",
            &[(41_000, 1), (50_999, 1)],
            Some((11, 2)),
            51_001,
        ),
        method: "POST",
        upload_gap_us: 0,
    });

    // Unary: TTFT = duration; tokens from usage; no ITL.
    cases.push(Case {
        name: "completions unary: ttft is the duration".into(),
        path: COMPLETIONS,
        request_body: body(false, false),
        request_ends: true,
        response: json(
            200,
            0,
            vec![
                at(
                    300_000,
                    r#"{"choices":[{"text":"x","finish_reason":"length"}],"#,
                ),
                at(0, r#""usage":{"prompt_tokens":1,"completion_tokens":16}}"#),
            ],
        ),
        end: End::normal(),
        expect: Want::default()
            .requests("completions", "unary", None)
            .duration("unary", 300_000)
            .ttft(300_000)
            .input(1)
            .output(16)
            .done(),
        method: "POST",
        upload_gap_us: 0,
    });

    cases.push(Case {
        name: "chat unary: usage with cached tokens".into(),
        path: CHAT,
        request_body: br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
        request_ends: true,
        response: json(
            200,
            5_000,
            vec![at(
                120_456,
                r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":8}}}"#,
            )],
        ),
        end: End {
            after_us: 44,
            ..End::normal()
        },
        expect: Want::default()
            .requests("chat_completions", "unary", None)
            .duration("unary", 125_500)
            .ttft(125_456)
            .input(9)
            .output(3)
            .cached(8)
            .done(),
        method: "POST",
        upload_gap_us: 0,
    });

    // Unary without usage: the answer is timed, but has no token count.
    cases.push(Case {
        name: "chat unary: no usage".into(),
        path: CHAT,
        request_body: br#"{"model":"m","messages":[]}"#.to_vec(),
        request_ends: true,
        response: json(
            200,
            0,
            vec![at(
                70_000,
                r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":"stop"}]}"#,
            )],
        ),
        end: End::normal(),
        expect: Want::default()
            .requests("chat_completions", "unary", None)
            .duration("unary", 70_000)
            .ttft(70_000)
            .prop("output_tokens", 0)
            .done(),
        method: "POST",
        upload_gap_us: 0,
    });

    // Every byte its own chunk, 1 µs apart.
    let stream = [ROLE.to_string(), chat("a"), chat("b"), DONE.to_string()].concat();
    let bytes = stream.as_bytes();
    let ends: Vec<usize> = event_ends(&stream);
    let token_event_ends = ends.get(1..3).unwrap_or_default();
    let events: Vec<(u64, u64)> = token_event_ends.iter().map(|&e| (e as u64, 1)).collect();
    cases.push(Case {
        name: "chat stream: one byte per chunk".into(),
        path: CHAT,
        request_body: body(true, false),
        request_ends: true,
        response: sse(200, 0, bytes.iter().map(|b| at(1, [*b])).collect(), true),
        end: End::normal(),
        expect: streamed("chat_completions", &events, None, bytes.len() as u64),
        method: "POST",
        upload_gap_us: 0,
    });
    cases
}

/// Byte offsets just past each event's blank line.
fn event_ends(stream: &str) -> Vec<usize> {
    stream.match_indices("\n\n").map(|(i, _)| i + 2).collect()
}

/// Compares what a runner saw with the case's expectation. Returns a failure message.
pub fn check(case: &Case, got: &Expect) -> Option<String> {
    (got != &case.expect)
        .then(|| format!("{}:\n  want {:?}\n  got  {:?}", case.name, case.expect, got))
}

/// `response.code_details` of a stream whose client sent an invalid HTTP/2 frame mid-stream
/// (flagged DPE), as Envoy 1.40 reports it (seen end to end by host-tests `e2e_traffic`).
pub const DPE_DETAILS: &str = "codec_error:The_user_callback_function_failed";
/// The same for a stream Envoy closed for its inbound empty-frame flood limit (also DPE).
pub const FLOOD_DETAILS: &str = "http2.inbound_empty_frames_flood";

/// Every error type (docs/design.md, "Error types"); each leaves `inflight_requests` at 0.
pub fn errors() -> Vec<Case> {
    let a = chat("a");
    let err_event =
        "data: {\"error\":{\"object\":\"error\",\"message\":\"boom\",\"code\":500}}\n\n";
    // (name, status, body chunks, response ends, flags, details, error type)
    type Row = (
        &'static str,
        u32,
        Vec<String>,
        bool,
        u64,
        &'static str,
        &'static str,
    );
    let rows: Vec<Row> = vec![
        (
            "400",
            400,
            vec![r#"{"object":"error"}"#.into()],
            true,
            0,
            "via_upstream",
            "validation",
        ),
        ("422", 422, vec![], true, 0, "via_upstream", "validation"),
        ("404", 404, vec![], true, 0, "via_upstream", "not_found"),
        ("429", 429, vec![], true, 0, "via_upstream", "overload"),
        ("529", 529, vec![], true, 0, "via_upstream", "overload"),
        (
            "503 from the worker",
            503,
            vec![],
            true,
            0,
            "via_upstream",
            "unavailable",
        ),
        (
            "no healthy upstream",
            503,
            vec!["no healthy upstream".into()],
            true,
            flags::NO_HEALTHY_UPSTREAM,
            "no_healthy_upstream",
            "unavailable",
        ),
        (
            "connect failure",
            503,
            vec!["upstream connect error".into()],
            true,
            flags::UPSTREAM_CONNECTION_FAILURE,
            "upstream_reset_before_response_started{connection_failure}",
            "unavailable",
        ),
        (
            "overflow",
            503,
            vec![],
            true,
            flags::UPSTREAM_OVERFLOW,
            "upstream_reset_before_response_started{overflow}",
            "overload",
        ),
        (
            "500",
            500,
            vec![r#"{"object":"error"}"#.into()],
            true,
            0,
            "via_upstream",
            "internal",
        ),
        ("502", 502, vec![], true, 0, "via_upstream", "internal"),
        (
            "504 upstream timeout",
            504,
            vec!["upstream request timeout".into()],
            true,
            flags::UPSTREAM_REQUEST_TIMEOUT,
            "response_timeout",
            "response_timeout",
        ),
        (
            "idle timeout mid-stream",
            200,
            vec![a.clone()],
            false,
            flags::STREAM_IDLE_TIMEOUT,
            "stream_idle_timeout",
            "response_timeout",
        ),
        (
            "client left mid-stream",
            200,
            vec![a.clone()],
            false,
            flags::DOWNSTREAM_CONNECTION_TERMINATION,
            "downstream_remote_disconnect",
            "cancelled",
        ),
        (
            "client breaks HTTP/2 framing mid-stream",
            200,
            vec![a.clone()],
            false,
            flags::DOWNSTREAM_PROTOCOL_ERROR,
            DPE_DETAILS,
            "cancelled",
        ),
        (
            "client floods empty HTTP/2 frames mid-stream",
            200,
            vec![a.clone()],
            false,
            flags::DOWNSTREAM_PROTOCOL_ERROR,
            FLOOD_DETAILS,
            "cancelled",
        ),
        (
            "error event in a 200 stream",
            200,
            vec![a.clone(), err_event.into(), DONE.into()],
            true,
            0,
            "via_upstream",
            "backend_error",
        ),
        (
            "reset mid-stream",
            200,
            vec![a.clone()],
            false,
            flags::UPSTREAM_REMOTE_RESET | flags::UPSTREAM_CONNECTION_TERMINATION,
            "upstream_reset_after_response_started{connection_termination}",
            "truncated_stream",
        ),
        (
            "clean end without [DONE]",
            200,
            vec![a.clone()],
            true,
            0,
            "via_upstream",
            "truncated_stream",
        ),
    ];
    let mut cases: Vec<Case> = rows
        .into_iter()
        .map(|(name, status, chunks, ends, flags, details, error)| {
            let n = chunks.len() as u64;
            let duration = 10_000 * (n + 1);
            let streaming = status == 200;
            let mut w = Want::default()
                .requests("chat_completions", "stream", Some(error))
                .duration("stream", duration);
            if streaming {
                // The first chunk ("a", 20 ms in) is the only token.
                w = w.output(1).ttft(20_000);
            }
            // A response that never ended gets its filter state at `on_log`, with the verdict:
            // Envoy 1.40 runs that before the HCM's access logs.
            w = w.prop("error_type", error);
            Case {
                name: format!("error: {name}"),
                path: CHAT,
                request_body: body(true, false),
                request_ends: true,
                response: Some(Response {
                    after_us: 10_000,
                    status,
                    content_type: if streaming {
                        "text/event-stream"
                    } else {
                        "application/json"
                    },
                    chunks: chunks.iter().map(|c| at(10_000, c)).collect(),
                    ends,
                }),
                end: End {
                    after_us: 0,
                    flags,
                    details,
                },
                expect: w.done(),
                method: "POST",
                upload_gap_us: 0,
            }
        })
        .collect();

    // Malformed unary body: bad_response, no TTFT.
    cases.push(Case {
        name: "error: malformed unary body".into(),
        path: CHAT,
        request_body: br#"{"model":"m"}"#.to_vec(),
        request_ends: true,
        response: json(200, 0, vec![at(5_000, "{\"id\": broken")]),
        end: End::normal(),
        expect: Want::default()
            .requests("chat_completions", "unary", Some("bad_response"))
            .duration("unary", 5_000)
            .prop("error_type", "bad_response")
            .prop("output_tokens", 0)
            .done(),
        method: "POST",
        upload_gap_us: 0,
    });
    // The client leaves before the request body ended: cancelled, no response at all.
    cases.push(Case {
        name: "error: client gone before any response".into(),
        path: CHAT,
        request_body: br#"{"model":"m","str"#.to_vec(),
        request_ends: false,
        response: None,
        end: End {
            after_us: 7_000,
            flags: flags::DOWNSTREAM_CONNECTION_TERMINATION,
            details: "downstream_remote_disconnect",
        },
        // Abandoned mid-upload: no worker ever had the request, so it has no duration.
        expect: Want::default()
            .requests("chat_completions", "unary", Some("cancelled"))
            .prop("error_type", "cancelled")
            .done(),
        method: "POST",
        upload_gap_us: 0,
    });
    // Connection refused before any response headers reached the filter.
    cases.push(Case {
        name: "error: upstream connect failure, no response headers".into(),
        path: CHAT,
        request_body: body(true, false),
        request_ends: true,
        response: None,
        end: End {
            after_us: 2_000,
            flags: flags::UPSTREAM_CONNECTION_FAILURE,
            details: "upstream_reset_before_response_started{connection_failure}",
        },
        expect: Want::default()
            .requests("chat_completions", "stream", Some("unavailable"))
            .duration("stream", 2_000)
            .prop("error_type", "unavailable")
            .done(),
        method: "POST",
        upload_gap_us: 0,
    });
    cases
}

/// k tokens per event (a cumulative count on every event), k = 1..=4, gaps that do not divide.
pub fn tokens_per_event() -> Vec<Case> {
    (1..=4u64)
        .map(|k| {
            let mut chunks = vec![at(0, ROLE)];
            let mut events = Vec::new();
            let (mut t, mut total) = (50_000u64, 0u64);
            for i in 0..4u64 {
                let gap = if i == 0 { 100_000 } else { 30_001 + i };
                t += gap;
                total += k;
                chunks.push(at(gap, chat_cumulative("xyz", total)));
                events.push((t, k));
            }
            chunks.push(at(0, DONE));
            Case {
                name: format!("chat stream: {k} tokens per event"),
                path: CHAT,
                request_body: br#"{"model":"m","stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}"#.to_vec(),
                request_ends: true,
                response: sse(200, 50_000, chunks, true),
                end: End::normal(),
                expect: streamed("chat_completions", &events, Some((4, 4 * k)), t),
                method: "POST",
        upload_gap_us: 0,
            }
        })
        .collect()
}

/// k one-token events in one body chunk, k = 1..=4: events of one chunk share its arrival time.
pub fn events_per_chunk() -> Vec<Case> {
    (1..=4u64)
        .map(|k| {
            let mut chunks = Vec::new();
            let mut events = Vec::new();
            let mut t = 0;
            for i in 0..3u64 {
                let gap = 25_000 + i * 1_111;
                t += gap;
                let bytes: String = (0..k).map(|_| chat("t")).collect();
                chunks.push(at(gap, bytes));
                events.extend((0..k).map(|_| (t, 1)));
            }
            chunks.push(at(0, DONE));
            Case {
                name: format!("chat stream: {k} events per chunk"),
                path: CHAT,
                request_body: body(true, false),
                request_ends: true,
                response: sse(200, 0, chunks, true),
                end: End::normal(),
                expect: streamed("chat_completions", &events, None, t),
                method: "POST",
                upload_gap_us: 0,
            }
        })
        .collect()
}

/// One stream split in two chunks at every byte offset: events whole in the first chunk arrive
/// at 100 ms, the rest at 130 ms.
pub fn splits() -> Vec<Case> {
    let stream = [
        ROLE.to_string(),
        chat("Hel"),
        chat("lo"),
        chat(" world"),
        usage(4, 3),
        DONE.to_string(),
    ]
    .concat();
    let ends = event_ends(&stream);
    let bytes = stream.as_bytes();
    (1..bytes.len())
        .map(|i| {
            let (first, second) = bytes.split_at(i);
            let events: Vec<(u64, u64)> = ends
                .get(1..4)
                .unwrap_or_default()
                .iter()
                .map(|&e| (if e <= i { 100_000 } else { 130_000 }, 1))
                .collect();
            Case {
                name: format!("chat stream: split at byte {i}"),
                path: CHAT,
                request_body: body(true, true),
                request_ends: true,
                response: sse(
                    200,
                    40_000,
                    vec![at(60_000, first), at(30_000, second)],
                    true,
                ),
                end: End::normal(),
                expect: streamed("chat_completions", &events, Some((4, 3)), 130_000),
                method: "POST",
                upload_gap_us: 0,
            }
        })
        .collect()
}

/// Cases from an attack pass: bodiless answers, a slow upload, escaped fields.
pub fn hardening() -> Vec<Case> {
    let mut cases = Vec::new();
    // A HEAD (no request body, so no model) answered 200 with a JSON content type and no body:
    // nothing to parse, not a bad response.
    cases.push(Case {
        name: "HEAD answered 200 with no body".into(),
        method: "HEAD",
        path: CHAT,
        request_body: Vec::new(),
        upload_gap_us: 0,
        request_ends: true,
        response: json(200, 5_000, vec![]),
        end: End::normal(),
        expect: Want::default()
            .requests("chat_completions", "unary", None)
            .duration("unary", 5_000)
            .model("unknown")
            .done(),
    });
    for status in [204, 304] {
        cases.push(Case {
            name: format!("{status} with a JSON content type and no body"),
            method: "POST",
            path: CHAT,
            request_body: body(false, false),
            upload_gap_us: 0,
            request_ends: true,
            response: json(status, 4_000, vec![]),
            end: End::normal(),
            expect: Want::default()
                .requests("chat_completions", "unary", None)
                .duration("unary", 4_000)
                .done(),
        });
    }
    // One byte of the body per second: TTFT and duration start when the body is complete
    // (docs/design.md, "Timing"), so the upload's ~27 s are in neither.
    let events = [(7_000, 1), (10_000, 1)];
    cases.push(Case {
        name: "slow upload: ttft from the end of the request body".into(),
        method: "POST",
        path: CHAT,
        request_body: body(true, false),
        upload_gap_us: 1_000_000,
        request_ends: true,
        response: sse(
            200,
            2_000,
            vec![at(5_000, chat("a")), at(3_000, chat("b")), at(0, DONE)],
            true,
        ),
        end: End::normal(),
        expect: streamed("chat_completions", &events, None, 10_000),
    });
    // JSON escapes decoded in the fields read: an escaped key is `model`, an escaped value `m`.
    for (what, request) in [
        ("escaped value", r#"{"model":"\u006d","stream":true}"#),
        ("escaped key", r#"{"mod\u0065l":"m","stream":true}"#),
        (
            "escaped key and value",
            r#"{"\u006dodel":"\u006D","\u0073tream":true}"#,
        ),
    ] {
        cases.push(Case {
            name: format!("request with an {what}"),
            method: "POST",
            path: CHAT,
            request_body: request.as_bytes().to_vec(),
            upload_gap_us: 0,
            request_ends: true,
            response: sse(200, 0, vec![at(9_000, chat("a")), at(0, DONE)], true),
            end: End::normal(),
            expect: streamed("chat_completions", &[(9_000, 1)], None, 9_000),
        });
    }
    cases
}

// ----- configuration -----

/// A plugin configuration `on_configure` must refuse, and what its one log line must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadConfig {
    pub json: String,
    /// `DYN_METRICS_PREFIX` in the VM's environment.
    pub env_prefix: Option<&'static str>,
    /// The field the error names (`health.targets[0].timeout`).
    pub field: String,
    /// A fragment of the reason.
    pub reason: &'static str,
}

/// One bad value per config field (docs/design.md, "Configuration" and "Untrusted input"), top
/// level and per target.
pub fn bad_configs() -> Vec<BadConfig> {
    let top = |json: &str, field: &str, reason: &'static str| BadConfig {
        json: json.to_string(),
        env_prefix: None,
        field: field.to_string(),
        reason,
    };
    let mut all = vec![
        top(
            r#"{"metrics_prefix":"9abc"}"#,
            "metrics_prefix",
            "not a valid metric prefix",
        ),
        top(
            r#"{"metrics_prefix":"a-b"}"#,
            "metrics_prefix",
            "not a valid metric prefix",
        ),
        top(r#"{"metrics_prefix":7}"#, "metrics_prefix", "invalid type"),
        top(r#"{"max_models":0}"#, "max_models", "between 1 and"),
        top(r#"{"max_models":5000}"#, "max_models", "between 1 and"),
        top(r#"{"max_models":"3"}"#, "max_models", "invalid type"),
        top(r#"{"colour":"red"}"#, "colour", "unknown field"),
        top(
            r#"{"health":{"path":"health"}}"#,
            "health.path",
            "starting with /",
        ),
        top(
            r#"{"health":{"live_path":"/l?x"}}"#,
            "health.live_path",
            "starting with /",
        ),
        top(
            r#"{"health":{"path":"/x","live_path":"/x"}}"#,
            "health.live_path",
            "must differ",
        ),
        top(
            r#"{"health":{"targets":{}}}"#,
            "health.targets",
            "invalid type",
        ),
        top(
            r#"{"health":{"colour":1}}"#,
            "health.colour",
            "unknown field",
        ),
        // A health section must probe something: with no target, /health would say ready
        // about nothing and shadow the worker's own.
        top(
            r#"{"health":{}}"#,
            "health.targets",
            "must list at least one target",
        ),
        top(
            r#"{"health":{"targets":[]}}"#,
            "health.targets",
            "must list at least one target",
        ),
        top(
            r#"{"health":{"serve":"http://gw/health","targets":[{"name":"w","cluster":"c","backend":"vllm"}]}}"#,
            "health.serve",
            "is not \"all\", \"off\" or an authority",
        ),
        top(
            r#"{"health":{"max_answer_bytes":100,"targets":[{"name":"w","cluster":"c","backend":"vllm"}]}}"#,
            "health.max_answer_bytes",
            "must be between 1024 and 4194304",
        ),
        // `expect` judges a custom payload's answer: without one it would contradict the
        // built-in probe's.
        top(
            r#"{"health":{"targets":[{"name":"w","cluster":"c","backend":"vllm","expect":"image"}]}}"#,
            "health.targets[0].expect",
            "set `payload` too",
        ),
        top(
            r#"{"health":{"targets":[{"name":"w","cluster":"c","backend":"vllm","payload":{},"expect":"json"}]}}"#,
            "health.targets[0].expect",
            "unknown variant `json`",
        ),
        top(
            r#"{"health":{"targets":[{"name":"w","cluster":"c","backend":"diffusion","prefill":true}]}}"#,
            "health.targets[0].prefill",
            "no prefill-only request",
        ),
        top(
            r#"{"health":{"targets":[{"backend":"vllm","cluster":"c"}]}}"#,
            "health.targets[0]",
            "missing field `name`",
        ),
        top(
            r#"{"health":{"targets":[{"name":"w","backend":"vllm"}]}}"#,
            "health.targets[0]",
            "missing field `cluster`",
        ),
        top(
            r#"{"health":{"targets":[{"name":"w","cluster":"c"}]}}"#,
            "health.targets[0]",
            "missing field `backend`",
        ),
        top(
            r#"{"health":{"target_path":"/health","targets":[{"name":"w","cluster":"c","backend":"vllm"}]}}"#,
            "health.target_path",
            "must differ from health.path and health.live_path",
        ),
        top(
            r#"{"health":{"target_path":"/v1/chat/completions","targets":[{"name":"w","cluster":"c","backend":"vllm"}]}}"#,
            "health.target_path",
            "is a path of the inference API",
        ),
        top(
            r#"{"health":{"fail_fast":"yes","targets":[{"name":"w","cluster":"c","backend":"vllm"}]}}"#,
            "health.fail_fast",
            "invalid type",
        ),
        BadConfig {
            json: "{}".into(),
            env_prefix: Some("bad prefix"),
            field: "DYN_METRICS_PREFIX".into(),
            reason: "not a valid metric prefix",
        },
        // `ALL` was an authority named `all`, so /health reached the
        // worker's own, which passes while inference is broken.
        top(
            r#"{"health":{"serve":"ALL","targets":[{"name":"w","cluster":"c","backend":"vllm"}]}}"#,
            "health.serve",
            "the keyword is lowercase, \"all\"",
        ),
        top(
            r#"{"health":{"serve":"Off","targets":[{"name":"w","cluster":"c","backend":"vllm"}]}}"#,
            "health.serve",
            "the keyword is lowercase, \"off\"",
        ),
        // A health path of the inference API would answer it locally (the end of the path
        // decides, as for the endpoint label).
        top(
            r#"{"health":{"path":"/v1/chat/completions","targets":[{"name":"w","cluster":"c","backend":"vllm"}]}}"#,
            "health.path",
            "is a path of the inference API",
        ),
        top(
            r#"{"health":{"live_path":"/openai/v1/models","targets":[{"name":"w","cluster":"c","backend":"vllm"}]}}"#,
            "health.live_path",
            "is a path of the inference API",
        ),
        top(
            r#"{"health":{"path":"/generate/","targets":[{"name":"w","cluster":"c","backend":"vllm"}]}}"#,
            "health.path",
            "is a path of the inference API",
        ),
        // Control characters would reach a header, a shared-data key or a log line.
        top(
            r#"{"health":{"path":"/h\u0000","targets":[{"name":"w","cluster":"c","backend":"vllm"}]}}"#,
            "health.path",
            "\"/h\\0\" has a control character",
        ),
        top(
            r#"{"models":["m\u001b[31m"]}"#,
            "models[0]",
            "is not a label value",
        ),
        // A refused value is quoted in at most 128 bytes, with its length: a 1 MB value was
        // echoed whole into Envoy's log.
        top(
            &format!(
                r#"{{"health":{{"serve":"{}","targets":[{{"name":"w","cluster":"c","backend":"vllm"}}]}}}}"#,
                "x".repeat(1 << 20)
            ),
            "health.serve",
            "x\"… (1048576 bytes) is not \"all\"",
        ),
        top(
            &format!(r#"{{"max_models":"{}"}}"#, "9".repeat(1 << 20)),
            "max_models",
            "9\"… (1048576 bytes), expected u32",
        ),
        top(
            &format!(r#"{{"{}":1}}"#, "k".repeat(1 << 20)),
            &format!("\"{}\"… (1048576 bytes)", "k".repeat(128)),
            "unknown field",
        ),
    ];
    let t = r#""name":"w0","cluster":"c","backend":"vllm""#;
    let target_rows: &[(&str, &str, &'static str)] = &[
        (
            r#""name":"w 0","cluster":"c","backend":"vllm""#,
            "name",
            "[A-Za-z0-9_.:-]",
        ),
        (
            r#""name":"w0","cluster":"","backend":"vllm""#,
            "cluster",
            "must not be empty",
        ),
        (
            r#""name":"w0","cluster":"c\u0000","backend":"vllm""#,
            "cluster",
            "has a control character",
        ),
        (
            r#""name":"w0","cluster":"c","backend":"tgi""#,
            "backend",
            "unknown variant",
        ),
        (
            r#""name":"w0","cluster":"c","backend":"openai","prefill":true"#,
            "prefill",
            "no prefill-only",
        ),
    ];
    for (body, field, reason) in target_rows {
        all.push(top(
            &format!(r#"{{"health":{{"targets":[{{{body}}}]}}}}"#),
            &format!("health.targets[0].{field}"),
            reason,
        ));
    }
    let extras: &[(&str, &str, &'static str)] = &[
        (r#""authority":"a b""#, "authority", "not a valid authority"),
        (
            r#""authority":"a\u0000b""#,
            "authority",
            "has a control character",
        ),
        (r#""model":"m\n""#, "model", "has a control character"),
        (r#""host":"worker-1""#, "host", "ip:port"),
        (r#""model":"""#, "model", "must not be empty"),
        (r#""payload":[1]"#, "payload", "JSON object"),
        (r#""interval":"10""#, "interval", "needs a unit"),
        (r#""interval":"50ms""#, "interval", "at least"),
        (r#""timeout":"0s""#, "timeout", "more than 0"),
        (
            r#""interval":"1s","timeout":"2s""#,
            "timeout",
            "at most the interval",
        ),
        (
            r#""healthy_threshold":0"#,
            "healthy_threshold",
            "between 1 and 100",
        ),
        (
            r#""unhealthy_threshold":101"#,
            "unhealthy_threshold",
            "between 1 and 100",
        ),
        (r#""mode":"sometimes""#, "mode", "unknown variant"),
        (r#""bos_token_id":-1"#, "bos_token_id", "invalid value"),
        (
            r#""use_text_input":"yes""#,
            "use_text_input",
            "invalid type",
        ),
        (r#""prefill":1"#, "prefill", "invalid type"),
        (r#""colour":1"#, "colour", "unknown field"),
    ];
    for (extra, field, reason) in extras {
        all.push(top(
            &format!(r#"{{"health":{{"targets":[{{{t},{extra}}}]}}}}"#),
            &format!("health.targets[0].{field}"),
            reason,
        ));
    }
    all.push(top(
        &format!(r#"{{"health":{{"targets":[{{{t}}},{{{t}}}]}}}}"#),
        "health.targets[1].name",
        "duplicate",
    ));
    all
}

// ----- health probes -----

/// A probe request each backend's target sends (docs/design.md, "Health probes"): `(backend, extra
/// target fields, path, exact JSON body)`, for a target with `"model":"m"`.
pub fn probe_payloads() -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    vec![
        (
            "vllm",
            "",
            "/v1/completions",
            r#"{"ignore_eos":false,"max_tokens":1,"model":"m","prompt":[1],"stream":false,"temperature":0}"#,
        ),
        (
            "vllm",
            r#","bos_token_id":128000"#,
            "/v1/completions",
            r#"{"ignore_eos":false,"max_tokens":1,"model":"m","prompt":[128000],"stream":false,"temperature":0}"#,
        ),
        (
            "vllm",
            r#","use_text_input":true"#,
            "/v1/completions",
            r#"{"ignore_eos":false,"max_tokens":1,"model":"m","prompt":"Test","stream":false,"temperature":0}"#,
        ),
        (
            "vllm",
            r#","prefill":true"#,
            "/v1/completions",
            r#"{"ignore_eos":false,"kv_transfer_params":{"do_remote_decode":true,"do_remote_prefill":false,"remote_block_ids":null,"remote_engine_id":null,"remote_host":null,"remote_port":null},"max_tokens":1,"model":"m","prompt":[1],"stream":false,"temperature":0}"#,
        ),
        (
            "trtllm",
            "",
            "/v1/completions",
            r#"{"max_tokens":1,"model":"m","prompt":[1],"stream":false,"temperature":0}"#,
        ),
        (
            "trtllm",
            r#","prefill":true"#,
            "/v1/completions",
            r#"{"disaggregated_params":{"request_type":"context_only"},"max_tokens":1,"model":"m","prompt":[1],"stream":false,"temperature":0}"#,
        ),
        (
            "sglang",
            "",
            "/generate",
            r#"{"input_ids":[1],"sampling_params":{"ignore_eos":false,"max_new_tokens":1,"temperature":0},"stream":false}"#,
        ),
        (
            "sglang",
            r#","use_text_input":true"#,
            "/generate",
            r#"{"sampling_params":{"ignore_eos":false,"max_new_tokens":1,"temperature":0},"stream":false,"text":"Test"}"#,
        ),
        (
            "sglang",
            r#","prefill":true"#,
            "/generate",
            r#"{"bootstrap_host":"2.2.2.2","bootstrap_room":0,"input_ids":[1],"sampling_params":{"ignore_eos":false,"max_new_tokens":1,"temperature":0},"stream":false}"#,
        ),
        (
            "diffusion",
            "",
            "/v1/images/generations",
            r#"{"model":"m","n":1,"num_inference_steps":1,"prompt":"test","response_format":"b64_json","size":"512x512"}"#,
        ),
        (
            "openai",
            "",
            "/v1/chat/completions",
            r#"{"max_tokens":1,"messages":[{"content":"Test","role":"user"}],"model":"m","stream":false,"temperature":0}"#,
        ),
        (
            "vllm",
            r#","payload":{"prompt":"hi","max_tokens":1}"#,
            "/v1/completions",
            r#"{"max_tokens":1,"prompt":"hi"}"#,
        ),
    ]
}
