//! A minimal HTTP/1.1 client for tests that talk to the sim (or to Envoy in front of it):
//! it records every body frame with its arrival time, so tests can check both the bytes and
//! the timing of a stream, and it reports a body that ends in an error (an upstream reset)
//! instead of hiding it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, HOST};
use hyper::{HeaderMap, Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// One response as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub status: u16,
    pub headers: HeaderMap,
    /// Body frames with their arrival time, measured from just before the request was sent.
    pub frames: Vec<(Duration, Bytes)>,
    /// Set when the body ended in an error (e.g. the connection dropped mid-body).
    pub body_error: Option<String>,
}

impl Recorded {
    /// The whole body as received.
    pub fn body(&self) -> Bytes {
        let mut body = BytesMut::new();
        for (_, frame) in &self.frames {
            body.extend_from_slice(frame);
        }
        body.freeze()
    }

    /// The `data:` payloads of the SSE events, each with the arrival time of the frame that
    /// completed it. `[DONE]` is included as is.
    pub fn events(&self) -> Vec<(Duration, String)> {
        let mut events = Vec::new();
        let mut pending = Vec::<u8>::new();
        for (at, frame) in &self.frames {
            pending.extend_from_slice(frame);
            while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = pending.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&event);
                let data = text
                    .lines()
                    .filter_map(|line| line.strip_prefix("data: "))
                    .collect::<Vec<_>>()
                    .join("\n");
                events.push((*at, data));
            }
        }
        events
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body()).context("response body is not JSON")
    }
}

/// Sends one request on a fresh connection and records the response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> anyhow::Result<Recorded> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    tcp.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    // The connection driver ends with the response; its error, if any, shows in the body.
    tokio::spawn(async move {
        let _ = conn.await;
    });

    let mut req = Request::new(Full::new(body.into()));
    *req.method_mut() = Method::from_bytes(method.as_bytes())?;
    *req.uri_mut() = path.parse()?;
    req.headers_mut()
        .insert(HOST, HeaderValue::from_str(&addr.to_string())?);
    for (name, value) in headers {
        req.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(value)?,
        );
    }

    let start = Instant::now();
    let response = sender.send_request(req).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let mut frames = Vec::new();
    let mut body_error = None;
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    frames.push((start.elapsed(), data));
                }
            }
            Some(Err(e)) => {
                body_error = Some(e.to_string());
                break;
            }
        }
    }
    Ok(Recorded {
        status,
        headers,
        frames,
        body_error,
    })
}

/// [`request`] for code without a runtime: runs it on a throwaway current-thread runtime.
pub fn request_blocking(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> anyhow::Result<Recorded> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(request(addr, method, path, headers, body))
}
