//! The lockstep group's worker and client in one process: this binary in `--serve-lockstep`
//! mode ([`Lockstep`] starts it, pinned with the other load, and kills it on drop).
//!
//! - **Upstream**: a minimal HTTP/1.1 worker on 127.0.0.1 (as `--serve-paced`): for each
//!   request it answers `200`, `text/event-stream`, chunked, writes the role event at once,
//!   then each next event (a token, then `[DONE]` with the terminating chunk) only when the
//!   client side of this process has received the previous one from Envoy. One `write` per
//!   event, `TCP_NODELAY`. So an upstream socket never holds more than one event: Envoy
//!   reads one event per read by construction, with no timer involved. The stream is named by
//!   the request's `x-bench-stream: K` header; `x-bench-json: spaced|compact` and
//!   `x-bench-tokens: N` choose the bytes, the same as the paced and static cases
//!   ([`upstreams::chat_event`], [`upstreams::DONE`]), and the body's `stream_options` the
//!   usage in them as vLLM sends it ([`UsageAsk`]). A usage-only event goes out in one write
//!   with `[DONE]`: the filter may cut it, and a client waiting for it would wait forever.
//! - **Client**: on the stdin command `run ENVOY_ADDR STREAMS BATCHES TOKENS compact|spaced
//!   [ASK]` it (with several comma-separated addresses: for each Envoy at the same time,
//!   `--together`; ASK is one `none|final|continuous` per address, what its client's
//!   `stream_options` asks for, `none` if left out) drives `STREAMS` keep-alive connections to
//!   Envoy concurrently, each sending `BATCHES`
//!   streamed chat requests one after another; each complete SSE event it receives (ends with
//!   a blank line; events split across reads and the chunk framing are handled) releases the
//!   next event of the same stream upstream (an in-process channel per stream K). When all
//!   are done it prints `done EVENTS ELAPSED_MS P50_US P99_US BYTES` (events received; wall
//!   time of the run; median and 99th percentile of the requests' wall times; body bytes
//!   received), or `error MSG`, and
//!   waits for the next command. Connections are kept per Envoy address across runs (the
//!   first run on an Envoy opens them: the warm-up); a run that fails drops its connections.
//!
//! Everything on one current-thread tokio runtime; a plain thread only reads stdin.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::upstreams::{answer_tail, chat_event, find, JsonStyle, UsageAsk};

/// The client side's signal to upstream stream K: one message per event received.
type Registry = Arc<Mutex<HashMap<u64, mpsc::UnboundedReceiver<()>>>>;

/// An answer's writes, rendered once per (tokens, JSON style, usage asked): the head with the
/// role event, then one chunk per token, then the usage event if asked and `[DONE]`, with the
/// terminating chunk.
type Frames = Arc<Vec<Vec<u8>>>;
type FrameCache = Arc<Mutex<HashMap<(u32, bool, UsageAsk), Frames>>>;

fn frames(cache: &FrameCache, tokens: u32, style: JsonStyle, usage: UsageAsk) -> Frames {
    let mut cache = cache.lock().unwrap();
    cache
        .entry((tokens, style == JsonStyle::Spaced, usage))
        .or_insert_with(|| {
            let chunk = |event: &str| format!("{:x}\r\n{event}\r\n", event.len());
            let mut out = Vec::with_capacity(tokens as usize + 2);
            // The head and the role event in one write: the role event is the answer's first
            // body data either way.
            out.push(format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                 cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n{}",
                chunk(&chat_event(None, style, usage, 0))
            ));
            for i in 0..tokens {
                out.push(chunk(&chat_event(
                    Some(&format!(" t{i}")),
                    style,
                    usage,
                    i + 1,
                )));
            }
            out.push(format!(
                "{}0\r\n\r\n",
                chunk(&answer_tail(tokens, style, usage))
            ));
            Arc::new(out.into_iter().map(String::into_bytes).collect())
        })
        .clone()
}

/// One stream's whole request, from its first byte written to its terminating chunk read.
const STREAM_TIMEOUT: Duration = Duration::from_secs(120);

/// This binary in `--serve-lockstep` mode, as its own process.
pub struct Lockstep {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub addr: SocketAddr,
}

/// What the client reports of one run.
pub struct Outcome {
    pub events: u64,
    pub seconds: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Response body bytes the client received (chunk data, without the framing).
    pub bytes: u64,
}

impl Lockstep {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn start(cpus: &str) -> Result<Lockstep> {
        let args = ["--serve-lockstep".to_string()];
        let (mut child, stdout, addr) =
            crate::upstreams::start_self(cpus, &args, "lockstep", true)?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        Ok(Lockstep {
            child,
            stdin,
            stdout,
            addr,
        })
    }

    /// One run on every Envoy of `envoys` at the same time, each with its own `streams`
    /// connections and `batches` requests each; outcomes in the order of `envoys`.
    pub fn run_together(
        &mut self,
        envoys: &[SocketAddr],
        streams: u32,
        batches: u64,
        tokens: u32,
        style: JsonStyle,
        asks: &[UsageAsk],
    ) -> Result<Vec<Outcome>> {
        let style = match style {
            JsonStyle::Compact => "compact",
            JsonStyle::Spaced => "spaced",
        };
        let addrs: Vec<String> = envoys.iter().map(|a| a.to_string()).collect();
        let asks: Vec<&str> = envoys
            .iter()
            .enumerate()
            .map(|(i, _)| asks.get(i).copied().unwrap_or_default().name())
            .collect();
        writeln!(
            self.stdin,
            "run {} {streams} {batches} {tokens} {style} {}",
            addrs.join(","),
            asks.join(",")
        )?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the lockstep worker exited");
        }
        let line = line.trim();
        let Some(rest) = line.strip_prefix("done ") else {
            bail!("the lockstep worker said {line:?}");
        };
        let outcomes = rest
            .split(';')
            .map(|group| {
                let f: Vec<&str> = group.split_whitespace().collect();
                let num = |i: usize| -> Result<f64> {
                    f.get(i)
                        .ok_or_else(|| anyhow!("short `done` line {line:?}"))?
                        .parse::<f64>()
                        .with_context(|| format!("in {line:?}"))
                };
                Ok(Outcome {
                    events: num(0)? as u64,
                    seconds: num(1)? / 1e3,
                    p50_us: num(2)?,
                    p99_us: num(3)?,
                    bytes: num(4)? as u64,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if outcomes.len() != envoys.len() {
            bail!(
                "{} outcomes for {} Envoys: {line:?}",
                outcomes.len(),
                envoys.len()
            );
        }
        Ok(outcomes)
    }
}

impl Drop for Lockstep {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--serve-lockstep`: the worker and client (see the module doc). Runs until stdin closes.
pub fn serve_lockstep() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(lockstep_main())
}

async fn lockstep_main() -> Result<()> {
    let registry: Registry = Arc::default();
    let addr = start_upstream(registry.clone()).await?;
    println!("lockstep listening on {addr}");
    std::io::stdout().flush()?;
    // Commands: a thread reads stdin (blocking) and hands the lines over; EOF ends the process.
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if cmd_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut pools: HashMap<SocketAddr, Vec<Conn>> = HashMap::new();
    let next_stream = Arc::new(AtomicU64::new(1));
    while let Some(line) = cmd_rx.recv().await {
        let answer = match command(&line, &mut pools, &registry, &next_stream).await {
            Ok(done) => done,
            Err(e) => format!("error {}", format!("{e:#}").replace('\n', " ")),
        };
        println!("{answer}");
        std::io::stdout().flush()?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Upstream

/// Binds 127.0.0.1:0 and serves Envoy's connections on the current runtime.
async fn start_upstream(registry: Registry) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cache = FrameCache::default();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let _ = sock.set_nodelay(true);
            tokio::spawn(serve_connection(sock, registry.clone(), cache.clone()));
        }
    });
    Ok(addr)
}

/// One upstream connection from Envoy: requests one after another until Envoy closes it.
async fn serve_connection(mut sock: TcpStream, registry: Registry, cache: FrameCache) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let Some(request) = crate::upstreams::read_request(&mut sock, &mut buf).await else {
            return;
        };
        let style = request.json_style();
        let tokens = request.tokens(256);
        let usage = request.usage();
        let stream: Option<u64> = request
            .header("x-bench-stream")
            .and_then(|v| v.parse().ok());
        let rx = stream.and_then(|k| registry.lock().unwrap().remove(&k));
        let Some(mut rx) = rx else {
            let msg = format!("no lockstep client waits for x-bench-stream {stream:?}\n");
            let answer = format!(
                "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n\
                 content-length: {}\r\n\r\n{msg}",
                msg.len()
            );
            if sock.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            continue;
        };
        let frames = frames(&cache, tokens, style, usage);
        for (i, frame) in frames.iter().enumerate() {
            // From the first token on: the client has the previous event (or gave up: drop
            // the connection).
            if i > 0 && rx.recv().await.is_none() {
                return;
            }
            // One write per event: one TCP segment, one read at Envoy.
            if sock.write_all(frame).await.is_err() {
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client

/// A keep-alive connection to Envoy and the bytes read past what was parsed.
struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
}

/// One stdin command; `Ok` is the line to print.
///
/// `run ENVOY_ADDR[,ENVOY_ADDR...] STREAMS BATCHES TOKENS compact|spaced [ASK[,ASK...]]`:
/// with several addresses, every Envoy gets its own `STREAMS` streams and all run at the same
/// time (the `--together` rounds: whatever slows the machine down during a run slows every
/// setup alike); ASK is what each address's client asks for in `stream_options`; the answer is
/// one `done` group per address, separated by `;`.
async fn command(
    line: &str,
    pools: &mut HashMap<SocketAddr, Vec<Conn>>,
    registry: &Registry,
    next_stream: &Arc<AtomicU64>,
) -> Result<String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (["run", addrs, streams, batches, tokens, style]
    | ["run", addrs, streams, batches, tokens, style, _]) = f.as_slice()
    else {
        bail!("want `run ENVOY_ADDR[,ENVOY_ADDR...] STREAMS BATCHES TOKENS compact|spaced [ASK[,ASK...]]`, got {line:?}");
    };
    let asks: Vec<UsageAsk> = match f.get(6) {
        Some(list) => list
            .split(',')
            .map(|a| {
                UsageAsk::from_name(a)
                    .ok_or_else(|| anyhow!("ASK: want none, final or continuous, got {a}"))
            })
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };
    let addrs: Vec<SocketAddr> = addrs
        .split(',')
        .map(|a| a.parse().context("ENVOY_ADDR"))
        .collect::<Result<_>>()?;
    let streams: usize = streams.parse().context("STREAMS")?;
    let batches: u64 = batches.parse().context("BATCHES")?;
    let tokens: u32 = tokens.parse().context("TOKENS")?;
    let style = match *style {
        "compact" => "compact",
        "spaced" => "spaced",
        other => bail!("style: want compact or spaced, got {other}"),
    };
    if streams == 0 || batches == 0 {
        bail!("STREAMS and BATCHES must be at least 1");
    }
    let mut runs = Vec::new();
    for (i, &addr) in addrs.iter().enumerate() {
        let mut conns = pools.remove(&addr).unwrap_or_default();
        while conns.len() < streams {
            let sock = TcpStream::connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            sock.set_nodelay(true)?;
            conns.push(Conn {
                sock,
                buf: Vec::with_capacity(16 * 1024),
            });
        }
        let spare = conns.split_off(streams);
        let run = run_on(
            conns,
            registry.clone(),
            next_stream.clone(),
            batches,
            tokens,
            style,
            asks.get(i).copied().unwrap_or_default(),
        );
        runs.push((addr, spare, run));
    }
    let (meta, futures): (Vec<_>, Vec<_>) = runs
        .into_iter()
        .map(|(addr, spare, run)| ((addr, spare), run))
        .unzip();
    let outcomes = futures_join_all(futures).await;
    let mut answers = Vec::new();
    let mut failure: Option<anyhow::Error> = None;
    for ((addr, mut spare), (outcome, conns)) in meta.into_iter().zip(outcomes) {
        match outcome {
            Ok(done) => {
                spare.extend(conns);
                pools.insert(addr, spare);
                answers.push(done);
            }
            // The connections' state is unknown: the next run on this Envoy opens new ones.
            Err(e) => {
                failure.get_or_insert(e.context(format!("Envoy {addr}")));
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(format!("done {}", answers.join(";")))
}

/// Awaits every future on this (current-thread) runtime, concurrently.
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// One Envoy's part of a run: each connection sends `batches` requests one after another,
/// all connections at once. The outcome is `EVENTS ELAPSED_MS P50_US P99_US BYTES`; the
/// connections that finished cleanly come back for the next run.
async fn run_on(
    conns: Vec<Conn>,
    registry: Registry,
    next_stream: Arc<AtomicU64>,
    batches: u64,
    tokens: u32,
    style: &'static str,
    ask: UsageAsk,
) -> (Result<String>, Vec<Conn>) {
    let body = crate::cases::chat_request("hello", true, tokens, ask);
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for mut conn in conns {
        let (registry, next_stream, body) = (registry.clone(), next_stream.clone(), body.clone());
        set.spawn(async move {
            let mut out = (0u64, Vec::with_capacity(batches as usize), 0u64);
            for _ in 0..batches {
                let k = next_stream.fetch_add(1, Ordering::Relaxed);
                let r = tokio::time::timeout(
                    STREAM_TIMEOUT,
                    request(&mut conn, &registry, k, &body, tokens, style),
                )
                .await;
                // Whatever happened, the upstream no longer waits on this stream's channel.
                registry.lock().unwrap().remove(&k);
                match r {
                    Ok(Ok((events, us, bytes))) => {
                        out.0 += events;
                        out.1.push(us);
                        out.2 += bytes;
                    }
                    Ok(Err(e)) => return Err(e.context(format!("stream {k}"))),
                    Err(_) => bail!("stream {k}: no end within {STREAM_TIMEOUT:?}"),
                }
            }
            Ok((conn, out))
        });
    }
    let mut events = 0u64;
    let mut bytes = 0u64;
    let mut latencies: Vec<f64> = Vec::new();
    let mut kept = Vec::new();
    let mut failure: Option<anyhow::Error> = None;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok((conn, (n, us, b)))) => {
                events += n;
                bytes += b;
                latencies.extend(us);
                kept.push(conn);
            }
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(anyhow!("a stream task failed: {e}"));
            }
        }
    }
    let elapsed = t0.elapsed();
    if let Some(e) = failure {
        return (Err(e), Vec::new());
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies[i.min(latencies.len() - 1)]
    };
    let done = format!(
        "{events} {:.3} {:.0} {:.0} {bytes}",
        elapsed.as_secs_f64() * 1e3,
        pct(0.5),
        pct(0.99)
    );
    (Ok(done), kept)
}

/// One streamed chat request on `conn` as stream `k`: (SSE events received, µs from the
/// request's first byte written to the terminating chunk read, body bytes received).
async fn request(
    conn: &mut Conn,
    registry: &Registry,
    k: u64,
    body: &[u8],
    tokens: u32,
    style: &str,
) -> Result<(u64, f64, u64)> {
    let (tx, rx) = mpsc::unbounded_channel();
    registry.lock().unwrap().insert(k, rx);
    let mut req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: llm\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nx-bench-stream: {k}\r\nx-bench-json: {style}\r\n\
         x-bench-tokens: {tokens}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let t0 = Instant::now();
    let Conn { sock, buf } = conn;
    sock.write_all(&req).await?;
    // Response head.
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        read_more(sock, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.lines().next().unwrap_or("").to_string();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("Envoy answered {status:?}");
    }
    let chunked = head.lines().any(|l| {
        l.strip_prefix("transfer-encoding:")
            .is_some_and(|v| v.contains("chunked"))
    });
    if !chunked {
        bail!("the answer is not chunked: {head:?}");
    }
    buf.drain(..head_end);
    // Chunked body: size line, data, CRLF, ...; `0`, trailers, empty line. An event ends at
    // its blank line ("\n\n"), wherever the reads and the chunks cut it.
    let mut events = 0u64;
    let mut bytes = 0u64;
    let mut after_newline = false;
    loop {
        let line_end = loop {
            if let Some(i) = find(buf, b"\r\n") {
                break i;
            }
            read_more(sock, buf).await?;
        };
        let line = std::str::from_utf8(&buf[..line_end]).unwrap_or("");
        let hex = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(hex, 16).with_context(|| format!("chunk size line {line:?}"))?;
        buf.drain(..line_end + 2);
        bytes += size as u64;
        if size == 0 {
            // Trailers (none expected) up to the empty line.
            loop {
                match find(buf, b"\r\n") {
                    Some(0) => {
                        buf.drain(..2);
                        return Ok((events, t0.elapsed().as_secs_f64() * 1e6, bytes));
                    }
                    Some(i) => {
                        buf.drain(..i + 2);
                    }
                    None => read_more(sock, buf).await?,
                }
            }
        }
        let mut left = size;
        while left > 0 {
            if buf.is_empty() {
                read_more(sock, buf).await?;
            }
            let take = left.min(buf.len());
            for &b in &buf[..take] {
                if b != b'\n' {
                    after_newline = false;
                } else if after_newline {
                    events += 1;
                    after_newline = false;
                    // Release the stream's next event upstream (after [DONE] nobody listens).
                    let _ = tx.send(());
                } else {
                    after_newline = true;
                }
            }
            buf.drain(..take);
            left -= take;
        }
        while buf.len() < 2 {
            read_more(sock, buf).await?;
        }
        if &buf[..2] != b"\r\n" {
            bail!("chunk data not followed by CRLF");
        }
        buf.drain(..2);
    }
}

async fn read_more(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Result<()> {
    if !crate::upstreams::read_more(sock, buf).await {
        bail!("connection closed or failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// The upstream's bytes are the paced and static cases' answer, one event per write.
    #[test]
    fn frames_are_the_standard_answer() {
        for style in [JsonStyle::Compact, JsonStyle::Spaced] {
            let f = frames(&FrameCache::default(), 5, style, UsageAsk::None);
            assert_eq!(f.len(), 7);
            let mut body = String::new();
            for (i, frame) in f.iter().enumerate() {
                let mut text = std::str::from_utf8(frame).unwrap();
                if i == 0 {
                    text = text.split_once("\r\n\r\n").unwrap().1;
                }
                let text = text.strip_suffix("0\r\n\r\n").unwrap_or(text);
                let (size, data) = text.split_once("\r\n").unwrap();
                let data = data.strip_suffix("\r\n").unwrap();
                assert_eq!(usize::from_str_radix(size, 16).unwrap(), data.len());
                assert_eq!(data.matches("\n\n").count(), 1);
                body.push_str(data);
            }
            assert_eq!(body, crate::upstreams::sse_answer(5, style));
        }
    }

    /// The client against the upstream directly (no Envoy): every event arrives, in lockstep.
    #[test]
    fn client_and_upstream_in_lockstep() {
        block_on(async {
            let registry: Registry = Arc::default();
            let addr = start_upstream(registry.clone()).await.unwrap();
            let mut pools = HashMap::new();
            let next = Arc::new(AtomicU64::new(1));
            for style in ["compact", "spaced"] {
                let line = format!("run {addr} 3 2 16 {style}");
                let done = command(&line, &mut pools, &registry, &next).await.unwrap();
                let f: Vec<&str> = done.split_whitespace().collect();
                assert_eq!(f[..2], ["done", &(3 * 2 * 18).to_string()], "{done}");
            }
            // A client asking for usage gets the usage event too (no filter cuts it here),
            // and more bytes: the usage members.
            let mut bytes = Vec::new();
            for ask in ["none", "final", "continuous"] {
                let line = format!("run {addr} 3 2 16 compact {ask}");
                let done = command(&line, &mut pools, &registry, &next).await.unwrap();
                let f: Vec<&str> = done.split_whitespace().collect();
                let events = 3 * 2 * if ask == "none" { 18 } else { 19 };
                assert_eq!(f[..2], ["done", &events.to_string()], "{done}");
                bytes.push(f[5].parse::<u64>().unwrap());
            }
            assert!(bytes[0] < bytes[1] && bytes[1] < bytes[2], "{bytes:?}");
            // Connections kept for the next run, channels all taken or removed.
            assert_eq!(pools[&addr].len(), 3);
            assert!(registry.lock().unwrap().is_empty());
            let e = command("run nowhere", &mut pools, &registry, &next).await;
            assert!(e.is_err());
        });
    }

    /// Events split across reads and chunks, a chunk with two events, a chunk extension: the
    /// client counts each event once, where its blank line completes it.
    #[test]
    fn client_parses_any_chunking() {
        block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let body = crate::upstreams::sse_answer(3, JsonStyle::Compact);
                let (a, b) = body.split_at(body.len() / 3);
                let (b, c) = b.split_at(b.len() / 2);
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                while find(&buf, b"\r\n\r\n").is_none() {
                    read_more(&mut sock, &mut buf).await.unwrap();
                }
                let mut out = String::from(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                     Transfer-Encoding: chunked\r\n\r\n",
                );
                for (i, part) in [a, b, c].iter().enumerate() {
                    out.push_str(&format!("{:X};ext={i}\r\n{part}\r\n", part.len()));
                }
                out.push_str("0\r\n\r\n");
                for piece in out.as_bytes().chunks(7) {
                    sock.write_all(piece).await.unwrap();
                    sock.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_micros(50)).await;
                }
                // Keep the connection open until the client is done.
                let _ = sock.read(&mut [0u8; 16]).await;
            });
            let sock = TcpStream::connect(addr).await.unwrap();
            let mut conn = Conn {
                sock,
                buf: Vec::new(),
            };
            let registry: Registry = Arc::default();
            let (events, _, bytes) = request(&mut conn, &registry, 1, b"{}", 3, "compact")
                .await
                .unwrap();
            assert_eq!(events, 5);
            let answer = crate::upstreams::sse_answer(3, JsonStyle::Compact);
            assert_eq!(bytes, answer.len() as u64);
            assert!(conn.buf.is_empty());
        });
    }
}
