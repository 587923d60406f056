//! The upstreams of the Envoy cases:
//!
//! - [`Sim`]: the `gpu-sim` binary, no delay;
//! - [`Nginx`]: Debian's nginx serving recorded vLLM-style answers as static files (the whole
//!   answer arrives at once: many SSE events per read), the file chosen per request by the
//!   `x-bench-file` header, so one nginx serves every static case;
//! - [`Paced`]: this binary in `--serve-paced` mode, a minimal HTTP/1.1 worker that streams
//!   one SSE event per write (TCP_NODELAY) every ITL, either all streams on one shared tick (a
//!   batching GPU's decode step: `x-bench-pacing: batched`) or each on its own timer with its
//!   own phase (`x-bench-pacing: independent`); `x-bench-tokens` overrides the token count
//!   (the warm-up uses few); `x-bench-json: spaced` writes Python's separators.
//!
//! The bench's own workers answer a request's `stream_options` as vLLM does ([`UsageAsk`]):
//! with `include_usage`, `"usage": null` on every chunk and a usage-only event
//! (`"choices": []`) before `[DONE]`; with `continuous_usage_stats` too, the running usage on
//! every chunk. So llm-pulse's `usage_stats` edits meet what they meet in front of vLLM. nginx
//! serves its files whatever the request says.
//!
//! Each runs as its own process on 127.0.0.1 (pinned with the load generator), killed on
//! drop.

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};

/// JSON as the worker writes it: compact (`serde_json`, pydantic's `model_dump_json`: vLLM,
/// SGLang) or with a space after `:` and `,` (Python's `json.dumps` defaults).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum JsonStyle {
    Compact,
    Spaced,
}

fn styled(compact: &str, style: JsonStyle) -> String {
    match style {
        JsonStyle::Compact => compact.to_string(),
        // The templates hold no `:` or `,` inside strings.
        JsonStyle::Spaced => compact.replace(':', ": ").replace(',', ", "),
    }
}

/// What a request's `stream_options` asks the worker for, as vLLM reads it: `include_usage`
/// is true once the object is there, `continuous_usage_stats` counts only with it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum UsageAsk {
    #[default]
    None,
    Final,
    Continuous,
}

impl UsageAsk {
    /// The ask of a JSON request body; anything unreadable asks nothing.
    pub fn of_body(body: &[u8]) -> UsageAsk {
        let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice(body) else {
            return UsageAsk::None;
        };
        let Some(serde_json::Value::Object(so)) = obj.get("stream_options") else {
            return UsageAsk::None;
        };
        let flag = |k: &str, default| so.get(k).and_then(|v| v.as_bool()).unwrap_or(default);
        match (
            flag("include_usage", true),
            flag("continuous_usage_stats", false),
        ) {
            (false, _) => UsageAsk::None,
            (true, false) => UsageAsk::Final,
            (true, true) => UsageAsk::Continuous,
        }
    }

    /// The `stream_options` a client sends to ask this, if anything.
    pub fn stream_options(self) -> Option<serde_json::Value> {
        match self {
            UsageAsk::None => None,
            UsageAsk::Final => Some(serde_json::json!({"include_usage": true})),
            UsageAsk::Continuous => {
                Some(serde_json::json!({"include_usage": true, "continuous_usage_stats": true}))
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            UsageAsk::None => "none",
            UsageAsk::Final => "final",
            UsageAsk::Continuous => "continuous",
        }
    }

    pub fn from_name(name: &str) -> Option<UsageAsk> {
        [UsageAsk::None, UsageAsk::Final, UsageAsk::Continuous]
            .into_iter()
            .find(|u| u.name() == name)
    }
}

/// Prompt tokens the bench's workers report in `usage` (a fixed figure: the bench measures
/// the filter, not the count).
const PROMPT_TOKENS: u32 = 8;

fn usage_json(completion: u32) -> String {
    format!(
        r#"{{"prompt_tokens":{PROMPT_TOKENS},"total_tokens":{},"completion_tokens":{completion}}}"#,
        PROMPT_TOKENS + completion
    )
}

/// One vLLM-shaped chat chunk as an SSE event (`content: None`: the role chunk), with the
/// `usage` member vLLM adds for `usage` (`completion`: tokens sent so far, this one's included).
pub fn chat_event(
    content: Option<&str>,
    style: JsonStyle,
    usage: UsageAsk,
    completion: u32,
) -> String {
    let delta = match content {
        None => r#"{"role":"assistant","content":""}"#.to_string(),
        Some(c) => format!(r#"{{"content":"{c}"}}"#),
    };
    let usage = match usage {
        UsageAsk::None => String::new(),
        UsageAsk::Final => r#","usage":null"#.to_string(),
        UsageAsk::Continuous => format!(r#","usage":{}"#, usage_json(completion)),
    };
    let json = format!(
        r#"{{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"bench-model","choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":null}}]{usage}}}"#
    );
    format!("data: {}\n\n", styled(&json, style))
}

pub const DONE: &str = "data: [DONE]\n\n";

/// What ends an answer: vLLM's usage-only event when usage was asked for, then `[DONE]`.
/// The bench's workers write it in one write, so a usage event the filter cuts cannot leave a
/// lockstep client waiting for it.
pub fn answer_tail(tokens: u32, style: JsonStyle, usage: UsageAsk) -> String {
    match usage {
        UsageAsk::None => DONE.to_string(),
        UsageAsk::Final | UsageAsk::Continuous => {
            let json = format!(
                r#"{{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"bench-model","choices":[],"usage":{}}}"#,
                usage_json(tokens)
            );
            format!("data: {}\n\n{DONE}", styled(&json, style))
        }
    }
}

/// A whole streamed answer: the role chunk, `tokens` content chunks, `[DONE]`
/// (`tokens + 2` events, as vLLM sends without usage).
pub fn sse_answer(tokens: u32, style: JsonStyle) -> String {
    let mut out = chat_event(None, style, UsageAsk::None, 0);
    for i in 0..tokens {
        out.push_str(&chat_event(
            Some(&format!(" t{i}")),
            style,
            UsageAsk::None,
            i + 1,
        ));
    }
    out.push_str(DONE);
    out
}

/// A unary chat completion with `tokens` output tokens and its usage.
pub fn unary_answer(tokens: u32) -> String {
    let content: Vec<String> = (0..tokens).map(|i| format!("t{i}")).collect();
    serde_json::json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "bench-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content.join(" ")},
                     "logprobs": null, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1},
    })
    .to_string()
}

/// A port free on 127.0.0.1 right now (the OS picks it; released before the server binds it).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits (bounded) until `addr` accepts connections.
fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} did not listen on {addr} within 10 s")
}

/// Debian's nginx (one process, no master) serving the files of `dir/www`.
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
}

impl Nginx {
    pub fn binary() -> Option<PathBuf> {
        crate::procs::which("nginx").or_else(|| {
            let p = PathBuf::from("/usr/sbin/nginx");
            p.is_file().then_some(p)
        })
    }

    /// Starts nginx on a free port of 127.0.0.1 serving `files` (name, content).
    pub fn start(dir: &Path, cpus: &str, files: &[(&str, Vec<u8>)]) -> Result<Nginx> {
        let bin = Nginx::binary()
            .ok_or_else(|| anyhow!("nginx not found: scripts/bench installs it (apt-get)"))?;
        let www = dir.join("www");
        std::fs::create_dir_all(&www)?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        for (name, content) in files {
            std::fs::write(www.join(name), content)?;
        }
        let port = free_port()?;
        let d = dir.display();
        // POST to a static file answers 405; `error_page 405 =200 $uri` serves the file as the
        // answer instead (the internal redirect is a GET). The file is named by a header so
        // every case goes to the same path, /v1/chat/completions, as llm-pulse expects.
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush off;\n  tcp_nodelay on;\n\
               keepalive_requests 100000000;\n  keepalive_timeout 300s;\n\
               client_max_body_size 16m;\n  client_body_buffer_size 1m;\n\
               client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
               fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n\
               scgi_temp_path {d}/tmp/scgi;\n\
               types {{ text/event-stream sse; application/json json; application/octet-stream bin; }}\n\
               etag off;\n\
               server {{\n    listen 127.0.0.1:{port};\n    root {d}/www;\n\
                 location / {{\n      rewrite ^ /$http_x_bench_file break;\n\
                   error_page 405 =200 $uri;\n    }}\n  }}\n}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let mut child = crate::procs::pinned(&bin, cpus)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting nginx")?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        if let Err(e) = wait_listening(addr, &mut child, "nginx") {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            bail!("{e}\n{log}");
        }
        Ok(Nginx { child, addr })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `gpu-sim` binary as its own process (pinned away from Envoy), killed on drop.
pub struct Sim {
    child: Child,
    pub addr: SocketAddr,
}

impl Sim {
    pub fn start(bin: &Path, cpus: &str, tokens: u32) -> Result<Sim> {
        let mut child = crate::procs::pinned(bin, cpus)
            .args(["--ttft-ms", "0", "--itl-ms", "0", "--tokens"])
            .arg(tokens.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting gpu-sim")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("gpu-sim listening on http://")
            .ok_or_else(|| anyhow!("gpu-sim said {line:?}"))?
            .parse()?;
        Ok(Sim { child, addr })
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop();
    }
}

/// This binary in `--serve-paced` mode, as its own process.
pub struct Paced {
    child: Child,
    pub addr: SocketAddr,
}

impl Paced {
    pub fn start(cpus: &str, tokens: u32, itl_ms: u64) -> Result<Paced> {
        let args = [
            "--serve-paced".to_string(),
            "--tokens".into(),
            tokens.to_string(),
            "--itl-ms".into(),
            itl_ms.to_string(),
        ];
        let (child, _, addr) = start_self(cpus, &args, "paced", false)?;
        Ok(Paced { child, addr })
    }
}

/// This binary in one of its serving modes (`args`), pinned to `cpus`, with a piped stdout (and
/// stdin when `stdin` is set), once it printed `<what> listening on ADDR`: the child, its
/// stdout past that line, ADDR. Killed if it says anything else.
pub fn start_self(
    cpus: &str,
    args: &[String],
    what: &str,
    stdin: bool,
) -> Result<(Child, BufReader<std::process::ChildStdout>, SocketAddr)> {
    let me = std::env::current_exe()?;
    let mut child = crate::procs::pinned(&me, cpus)
        .args(args)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting the {what} worker"))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let prefix = format!("{what} listening on ");
    match line.trim().strip_prefix(prefix.as_str()).map(str::parse) {
        Some(Ok(addr)) => Ok((child, stdout, addr)),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the {what} worker said {line:?}");
        }
    }
}

impl Drop for Paced {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--serve-paced`: the paced worker (see the module doc). Runs until killed.
pub fn serve_paced(tokens: u32, itl: Duration) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(paced_main(tokens, itl))
}

async fn paced_main(tokens: u32, itl: Duration) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt as _;
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("paced listening on {}", listener.local_addr()?);
        use std::io::Write as _;
        std::io::stdout().flush()?;
        // The shared decode step: every batched stream writes its next event on this tick.
        let (tick_tx, tick_rx) = tokio::sync::watch::channel(0u64);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(itl);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut n = 0u64;
            loop {
                interval.tick().await;
                n += 1;
                if tick_tx.send(n).is_err() {
                    break;
                }
            }
        });
        let streams = Arc::new(AtomicU64::new(0));
        loop {
            let (mut sock, _) = listener.accept().await?;
            let _ = sock.set_nodelay(true);
            let mut ticks = tick_rx.clone();
            let streams = streams.clone();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(4096);
                // Bounded: one connection serves requests until the peer closes it.
                loop {
                    let Some(request) = read_request(&mut sock, &mut buf).await else {
                        return;
                    };
                    let batched =
                        request.header("x-bench-pacing").as_deref() != Some("independent");
                    let style = request.json_style();
                    let n_tokens = request.tokens(tokens);
                    let usage = request.usage();
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                                cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
                    if sock.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    // Independent arrivals: each stream on its own timer, phases spread
                    // evenly over one ITL (golden-ratio sequence).
                    let k = streams.fetch_add(1, Ordering::Relaxed);
                    let phase = itl.mul_f64((k as f64 * 0.618_033_988_75).fract());
                    let mut own =
                        tokio::time::interval_at(tokio::time::Instant::now() + phase, itl);
                    own.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    let _ = ticks.borrow_and_update();
                    for i in 0..n_tokens + 2 {
                        if batched {
                            if ticks.changed().await.is_err() {
                                return;
                            }
                        } else {
                            own.tick().await;
                        }
                        let event = match i {
                            0 => chat_event(None, style, usage, 0),
                            i if i == n_tokens + 1 => answer_tail(n_tokens, style, usage),
                            i => chat_event(Some(&format!(" t{}", i - 1)), style, usage, i),
                        };
                        let mut frame = format!("{:x}\r\n{event}\r\n", event.len());
                        if i == n_tokens + 1 {
                            frame.push_str("0\r\n\r\n");
                        }
                        // One write per event: one TCP segment, one read at Envoy.
                        if sock.write_all(frame.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    }
}

/// A request as the bench workers read it: its head (names lowercased) and its body.
pub struct RequestHead {
    head: String,
    body: Vec<u8>,
}

impl RequestHead {
    /// The value of header `name` (lowercase), trimmed.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    }

    /// `x-bench-json: spaced` asks for Python's separators; anything else is compact.
    pub fn json_style(&self) -> JsonStyle {
        if self.header("x-bench-json").as_deref() == Some("spaced") {
            JsonStyle::Spaced
        } else {
            JsonStyle::Compact
        }
    }

    /// `x-bench-tokens`, else `default`.
    pub fn tokens(&self, default: u32) -> u32 {
        self.header("x-bench-tokens")
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// The usage the body's `stream_options` asks for (the client's, or the filter's edit).
    pub fn usage(&self) -> UsageAsk {
        UsageAsk::of_body(&self.body)
    }
}

/// The most of a request the bench workers read: their requests are a few hundred bytes.
const REQUEST_CAP: usize = 1 << 20;

/// The next HTTP/1.1 request on a keep-alive connection, its body read whole from
/// `content-length` or the chunked framing Envoy uses once llm-pulse's usage edit dropped
/// `content-length`; `None` once the peer closes, or sends more than 1 MiB or a broken frame.
pub async fn read_request(
    sock: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Option<RequestHead> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > REQUEST_CAP || !read_more(sock, buf).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let mut request = RequestHead {
        head,
        body: Vec::new(),
    };
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"));
    let mut pos = head_end;
    if chunked {
        loop {
            let line_end = loop {
                if let Some(i) = find(&buf[pos..], b"\r\n") {
                    break pos + i;
                }
                if buf.len() > REQUEST_CAP || !read_more(sock, buf).await {
                    return None;
                }
            };
            let line = std::str::from_utf8(&buf[pos..line_end]).ok()?;
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            pos = line_end + 2;
            if size == 0 {
                // Trailers, if any, up to the empty line.
                loop {
                    match find(&buf[pos..], b"\r\n") {
                        Some(0) => break,
                        Some(i) => pos += i + 2,
                        None if buf.len() > REQUEST_CAP || !read_more(sock, buf).await => {
                            return None
                        }
                        None => {}
                    }
                }
                pos += 2;
                break;
            }
            if size > REQUEST_CAP {
                return None;
            }
            while buf.len() < pos + size + 2 {
                if !read_more(sock, buf).await {
                    return None;
                }
            }
            request.body.extend_from_slice(&buf[pos..pos + size]);
            pos += size + 2;
        }
    } else {
        let body_len: usize = request
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if body_len > REQUEST_CAP {
            return None;
        }
        while buf.len() < head_end + body_len {
            if !read_more(sock, buf).await {
                return None;
            }
        }
        request
            .body
            .extend_from_slice(&buf[head_end..head_end + body_len]);
        pos = head_end + body_len;
    }
    buf.drain(..pos);
    Some(request)
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One read from `sock` appended to `buf`; false once the peer closed or the read failed.
pub async fn read_more(sock: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut chunk = [0u8; 16 * 1024];
    match sock.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    /// vLLM's reading of `stream_options`.
    #[test]
    fn usage_ask_reads_stream_options_as_vllm() {
        let ask = |b: &str| UsageAsk::of_body(b.as_bytes());
        assert_eq!(ask(r#"{"stream":true}"#), UsageAsk::None);
        assert_eq!(ask(r#"{"stream_options":{}}"#), UsageAsk::Final);
        assert_eq!(
            ask(r#"{"stream_options":{"include_usage":false}}"#),
            UsageAsk::None
        );
        assert_eq!(
            ask(r#"{"stream_options":{"include_usage":true,"continuous_usage_stats":true}}"#),
            UsageAsk::Continuous
        );
        assert_eq!(
            ask(r#"{"stream_options":{"include_usage":false,"continuous_usage_stats":true}}"#),
            UsageAsk::None
        );
        assert_eq!(ask("not json"), UsageAsk::None);
    }

    /// Each answer's events are valid JSON, with `usage` where vLLM puts it.
    #[test]
    fn answers_carry_usage_as_asked() {
        for style in [JsonStyle::Compact, JsonStyle::Spaced] {
            for usage in [UsageAsk::None, UsageAsk::Final, UsageAsk::Continuous] {
                let mut events = vec![chat_event(None, style, usage, 0)];
                events.push(chat_event(Some(" t0"), style, usage, 1));
                let tail = answer_tail(1, style, usage);
                events.extend(tail.split_inclusive("\n\n").map(str::to_string));
                let json: Vec<serde_json::Value> = events
                    .iter()
                    .filter_map(|e| e.strip_prefix("data: ")?.strip_suffix("\n\n"))
                    .filter(|d| *d != "[DONE]")
                    .map(|d| serde_json::from_str(d).unwrap())
                    .collect();
                let last = events.last().unwrap();
                assert_eq!(last, DONE);
                match usage {
                    UsageAsk::None => {
                        assert_eq!(json.len(), 2);
                        assert!(json.iter().all(|j| j.get("usage").is_none()));
                    }
                    UsageAsk::Final => {
                        assert_eq!(json.len(), 3);
                        assert!(json[..2].iter().all(|j| j["usage"].is_null()));
                        assert_eq!(json[2]["choices"], serde_json::json!([]));
                        assert_eq!(json[2]["usage"]["completion_tokens"], 1);
                    }
                    UsageAsk::Continuous => {
                        assert_eq!(json[0]["usage"]["completion_tokens"], 0);
                        assert_eq!(json[1]["usage"]["completion_tokens"], 1);
                        assert_eq!(json[2]["usage"]["total_tokens"], 1 + PROMPT_TOKENS);
                    }
                }
            }
        }
    }

    /// A body framed by `content-length` or chunked (as Envoy sends an edited one), then the
    /// next request on the same connection.
    #[test]
    fn read_request_takes_both_framings() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let body = r#"{"stream":true,"stream_options":{"include_usage":true}}"#;
                let (a, b) = body.split_at(20);
                let wire = format!(
                    "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n\
                     {:x};ext=1\r\n{a}\r\n{:X}\r\n{b}\r\n0\r\n\r\n\
                     POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n{{}}",
                    a.len(),
                    b.len()
                );
                tokio::spawn(async move {
                    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
                    for piece in wire.as_bytes().chunks(5) {
                        c.write_all(piece).await.unwrap();
                        c.flush().await.unwrap();
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                });
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let first = read_request(&mut sock, &mut buf).await.unwrap();
                assert_eq!(first.body, body.as_bytes());
                assert_eq!(first.usage(), UsageAsk::Final);
                let second = read_request(&mut sock, &mut buf).await.unwrap();
                assert_eq!(second.body, b"{}");
                assert_eq!(second.usage(), UsageAsk::None);
                assert!(buf.is_empty());
            });
    }
}
