//! Streaming responses: a task writes each SSE event into a channel at its scheduled time,
//! and the response body hands every event to hyper as its own chunk. The channel is what
//! lets timing live in a plain async loop, and its closing is how the loop learns that the
//! client went away.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::openai::{token_text, Shapes};
use super::plan::Plan;
use super::stats::InflightGuard;

/// Events buffered between the generator and hyper; the schedule, not the buffer, sets
/// the pace, so a few slots are plenty.
const CHANNEL_SLOTS: usize = 16;

/// A response body fed by the generator task. An `Err` item makes hyper abort the
/// connection without the terminating chunk: that is how a reset is simulated.
pub struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    /// A reset held back for one poll, so hyper flushes first (see `poll_frame`).
    reset: Option<io::Error>,
    /// The request stays inflight until hyper drops the body: fully written, or abandoned.
    _inflight: InflightGuard,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(reset) = this.reset.take() {
            return Poll::Ready(Some(Err(reset)));
        }
        match ready!(this.rx.poll_recv(cx)) {
            Some(Ok(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            // hyper drops the connection on a body error without flushing what it has
            // buffered, so the tokens sent just before the fault could vanish. Answering
            // Pending once makes hyper flush first; the wake brings it back for the error.
            Some(Err(reset)) => {
                this.reset = Some(reset);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            None => Poll::Ready(None),
        }
    }
}

/// Starts generating the stream for `plan`, timed from `arrived`, and returns its body.
pub fn start(plan: Plan, shapes: Shapes, arrived: Instant, inflight: InflightGuard) -> ChannelBody {
    let (tx, rx) = mpsc::channel(CHANNEL_SLOTS);
    tokio::spawn(async move {
        // `None` means the client left: nothing to clean up, the task just ends.
        let _ = generate(&plan, &shapes, arrived, &tx).await;
    });
    ChannelBody {
        rx,
        reset: None,
        _inflight: inflight,
    }
}

/// How a faulty stream ends early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// vLLM's in-stream error event, then `[DONE]`.
    Error,
    /// The connection drops mid-body.
    Reset,
}

/// The fault that fires, and after how many tokens. A fault needs `K < tokens` (else the
/// stream ends normally first); if both are set the smaller K wins, a reset on a tie.
fn cut(plan: &Plan) -> Option<(u32, Cut)> {
    let fires = |k: Option<u32>, cut| k.filter(|&k| k < plan.tokens).map(|k| (k, cut));
    match (
        fires(plan.reset_after, Cut::Reset),
        fires(plan.error_after, Cut::Error),
    ) {
        (Some(reset), Some(error)) if error.0 < reset.0 => Some(error),
        (reset, error) => reset.or(error),
    }
}

async fn generate(
    plan: &Plan,
    shapes: &Shapes,
    arrived: Instant,
    tx: &mpsc::Sender<io::Result<Bytes>>,
) -> Option<()> {
    // The role chunk goes out on arrival, before the first token: first byte != first token.
    if let Some(role) = shapes.role_chunk() {
        send(tx, Ok(role)).await?;
    }
    let cut = cut(plan);
    let emit = cut.map_or(plan.tokens, |(k, _)| k);
    let mut sent = 0;
    let mut chunks = 0;
    while sent < emit {
        wait_until(tx, plan, arrived, chunks).await?;
        let n = plan.chunk_tokens(chunks).min(emit - sent);
        let text = token_text(sent..sent + n);
        sent += n;
        chunks += 1;
        let last = cut.is_none() && sent == plan.tokens;
        send(tx, Ok(shapes.token_chunk(&text, sent, last))).await?;
    }
    match cut {
        // The engine fails while producing the next chunk: the fault lands in its slot.
        Some((_, Cut::Error)) => {
            wait_until(tx, plan, arrived, chunks).await?;
            send(tx, Ok(shapes.stream_error())).await?;
            send(tx, Ok(Shapes::done())).await
        }
        Some((_, Cut::Reset)) => {
            wait_until(tx, plan, arrived, chunks).await?;
            let reset = io::Error::new(io::ErrorKind::ConnectionReset, "simulated reset");
            send(tx, Err(reset)).await
        }
        None => {
            if plan.tokens == 0 {
                // `/generate` with `max_new_tokens: 0`: one finished event, no text, at TTFT.
                wait_until(tx, plan, arrived, 0).await?;
                send(tx, Ok(shapes.token_chunk("", 0, true))).await?;
            }
            if plan.include_usage {
                send(tx, Ok(shapes.usage_chunk(sent))).await?;
            }
            send(tx, Ok(Shapes::done())).await
        }
    }
}

/// Sleeps until chunk `chunk`'s slot; `None` if the client goes away meanwhile.
async fn wait_until(
    tx: &mpsc::Sender<io::Result<Bytes>>,
    plan: &Plan,
    arrived: Instant,
    chunk: u32,
) -> Option<()> {
    let due = plan
        .chunk_offset(chunk)
        .and_then(|offset| arrived.checked_add(offset));
    let sleep = async {
        match due {
            Some(due) => sleep_until(due).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = sleep => Some(()),
        () = tx.closed() => None,
    }
}

async fn send(tx: &mpsc::Sender<io::Result<Bytes>>, item: io::Result<Bytes>) -> Option<()> {
    tx.send(item).await.ok()
}
