//! Driving HTTP streams through the plugin the way Envoy's wasm filter does.
//!
//! Per stream: `proxy_on_context_create` (at request headers, or at the end for a stream that
//! never got any), header/body/trailer callbacks as the test sends them, then on completion,
//! reset or disconnect: `proxy_on_log` (the access-log phase), `proxy_on_done`,
//! `proxy_on_delete` (Envoy logs, then destroys filters).
//!
//! A body callback that returns Pause makes the host buffer, as Envoy's
//! StopIterationAndBuffer: the next chunk is appended and the plugin sees all buffered bytes;
//! they pass on the next Continue or `proxy_continue_stream`.

use anyhow::{anyhow, bail, Result};

use super::abi::{join_path, Action, Pairs, StreamType};
use super::host::Host;
use super::records::{response_flags, Callback, EndReason, StreamId, StreamRecord};
use super::state::{AfterCall, MapSlot, StreamState};

pub(crate) fn to_strings(pairs: &Pairs) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

fn to_pairs(headers: &[(&str, &str)]) -> Pairs {
    headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase().into_bytes(), v.as_bytes().to_vec()))
        .collect()
}

fn header<'a>(pairs: &'a Pairs, name: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(k, _)| k == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

/// Envoy serializes CEL ints as 8 little-endian bytes.
pub fn prop_i64(v: i64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// Envoy serializes CEL uints as 8 little-endian bytes.
pub fn prop_u64(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

#[derive(Clone, Copy)]
enum Dir {
    Request,
    Response,
}

impl Host {
    /// Opens a stream on VM 0.
    pub fn new_stream(&mut self) -> Result<StreamId> {
        self.new_stream_on(0)
    }

    /// Opens a stream on VM `vm`. Properties `request.time` (int64 ns) and `response.flags`
    /// (0) are set; the test may overwrite them.
    pub fn new_stream_on(&mut self, vm: usize) -> Result<StreamId> {
        let now = self.now_ns();
        let st = self.vm_mut(vm)?.store.data_mut();
        let context_id = st.next_context_id;
        st.next_context_id += 1;
        let mut stream = StreamState {
            started_ns: now,
            ..StreamState::default()
        };
        stream
            .properties
            .insert(join_path(&["request", "time"]), prop_i64(now as i64));
        stream
            .properties
            .insert(join_path(&["response", "flags"]), prop_u64(0));
        st.streams.insert(context_id, stream);
        Ok(StreamId { vm, context_id })
    }

    fn state(&self, s: StreamId) -> Result<&StreamState> {
        self.vm(s.vm)?
            .store
            .data()
            .streams
            .get(&s.context_id)
            .ok_or_else(|| anyhow!("no stream {s:?}"))
    }

    fn state_mut(&mut self, s: StreamId) -> Result<&mut StreamState> {
        self.vm_mut(s.vm)?
            .store
            .data_mut()
            .streams
            .get_mut(&s.context_id)
            .ok_or_else(|| anyhow!("no stream {s:?}"))
    }

    fn live_state_mut(&mut self, s: StreamId) -> Result<&mut StreamState> {
        let stream = self.state_mut(s)?;
        if let Some(end) = stream.end {
            bail!("stream {s:?} already ended ({end:?})");
        }
        Ok(stream)
    }

    /// Sets a property the plugin reads on this stream, e.g. `&["response", "code_details"]`.
    /// Values are bytes as Envoy serializes them: strings as is, ints as 8 bytes LE
    /// ([`prop_i64`], [`prop_u64`]).
    pub fn set_property(
        &mut self,
        s: StreamId,
        path: &[&str],
        value: impl Into<Vec<u8>>,
    ) -> Result<()> {
        self.state_mut(s)?
            .properties
            .insert(join_path(path), value.into());
        Ok(())
    }

    /// Sets `response.flags` (see [`response_flags`]).
    pub fn set_response_flags(&mut self, s: StreamId, flags: u64) -> Result<()> {
        self.set_property(s, &["response", "flags"], prop_u64(flags))
    }

    /// Sets `response.code_details`.
    pub fn set_response_code_details(&mut self, s: StreamId, details: &str) -> Result<()> {
        self.set_property(s, &["response", "code_details"], details.as_bytes())
    }

    fn set_default_property(&mut self, s: StreamId, path: &[&str], value: Vec<u8>) -> Result<()> {
        self.state_mut(s)?
            .properties
            .entry(join_path(path))
            .or_insert(value);
        Ok(())
    }

    /// What the host saw on the stream so far.
    pub fn stream(&self, s: StreamId) -> Result<StreamRecord> {
        let st = self.state(s)?;
        let held = |b: &super::state::BodySlot| {
            if b.buffering {
                b.buffer.clone()
            } else {
                Vec::new()
            }
        };
        Ok(StreamRecord {
            id: Some(s),
            request_headers: st
                .request_headers
                .pairs
                .as_ref()
                .map(to_strings)
                .unwrap_or_default(),
            request_trailers: st.request_trailers.pairs.as_ref().map(to_strings),
            response_headers: st.response_headers.pairs.as_ref().map(to_strings),
            response_trailers: st.response_trailers.pairs.as_ref().map(to_strings),
            request_body: st.request_body.passed.clone(),
            response_body: st.response_body.passed.clone(),
            request_body_held: held(&st.request_body),
            response_body_held: held(&st.response_body),
            callbacks: st.callbacks.clone(),
            filter_state: st
                .filter_state
                .iter()
                .map(|(k, v)| (format!("wasm.{}", String::from_utf8_lossy(k)), v.clone()))
                .collect(),
            local_reply: st.local_reply.clone(),
            continued: st.continued.clone(),
            closed: st.closed.clone(),
            end: st.end,
        })
    }

    fn ensure_created(&mut self, s: StreamId) -> Result<()> {
        if self.state(s)?.created_in_vm {
            return Ok(());
        }
        let vm = self.vm_mut(s.vm)?;
        let root = vm.root_context_id();
        let f = vm.exports.context_create.clone();
        vm.call(
            "proxy_on_context_create",
            s.context_id,
            f,
            (s.context_id as i32, root as i32),
        )?;
        self.state_mut(s)?.created_in_vm = true;
        Ok(())
    }

    /// Calls a header/body callback and records what it returned.
    fn run(&mut self, s: StreamId, cb: Callback, count: usize, eos: bool) -> Result<Action> {
        let vm = self.vm_mut(s.vm)?;
        let (name, f) = match cb {
            Callback::RequestHeaders => (
                "proxy_on_request_headers",
                vm.exports.request_headers.clone(),
            ),
            Callback::RequestBody => ("proxy_on_request_body", vm.exports.request_body.clone()),
            Callback::ResponseHeaders => (
                "proxy_on_response_headers",
                vm.exports.response_headers.clone(),
            ),
            Callback::ResponseBody => ("proxy_on_response_body", vm.exports.response_body.clone()),
            _ => bail!("{cb:?} is not a header or body callback"),
        };
        let raw = vm.call(
            name,
            s.context_id,
            f,
            (s.context_id as i32, count as i32, eos as i32),
        )?;
        let action = raw.map(Action::from_raw).unwrap_or(Action::Continue);
        let now = self.now_ns();
        self.state_mut(s)?.record(cb, Some(action), now);
        Ok(action)
    }

    fn run_trailers(&mut self, s: StreamId, cb: Callback, count: usize) -> Result<Action> {
        let vm = self.vm_mut(s.vm)?;
        let (name, f) = match cb {
            Callback::RequestTrailers => (
                "proxy_on_request_trailers",
                vm.exports.request_trailers.clone(),
            ),
            _ => (
                "proxy_on_response_trailers",
                vm.exports.response_trailers.clone(),
            ),
        };
        let raw = vm.call(name, s.context_id, f, (s.context_id as i32, count as i32))?;
        let action = raw.map(Action::from_raw).unwrap_or(Action::Continue);
        let now = self.now_ns();
        self.state_mut(s)?.record(cb, Some(action), now);
        Ok(action)
    }

    /// Sends request headers (names are lower-cased, as Envoy's codecs do). Sets the
    /// `request.path`, `request.url_path`, `request.method`, `request.host` and
    /// `request.scheme` properties unless the test set them.
    pub fn send_request_headers(
        &mut self,
        s: StreamId,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Action> {
        let pairs = to_pairs(headers);
        {
            let stream = self.live_state_mut(s)?;
            if stream.request_headers.pairs.is_some() {
                bail!("stream {s:?}: request headers were already sent");
            }
            stream.request_headers = MapSlot {
                pairs: Some(pairs.clone()),
                live: true,
            };
            stream.request_body.end_seen = end_of_stream;
        }
        for (name, path) in [
            (":path", ["request", "path"]),
            (":method", ["request", "method"]),
            (":authority", ["request", "host"]),
            (":scheme", ["request", "scheme"]),
        ] {
            if let Some(v) = header(&pairs, name) {
                self.set_default_property(s, &path, v.to_vec())?;
            }
        }
        if let Some(path) = header(&pairs, ":path") {
            let url_path = path
                .split(|b| *b == b'?')
                .next()
                .unwrap_or_default()
                .to_vec();
            self.set_default_property(s, &["request", "url_path"], url_path)?;
        }
        self.ensure_created(s)?;
        let action = self.run(s, Callback::RequestHeaders, pairs.len(), end_of_stream)?;
        if action == Action::Continue {
            self.state_mut(s)?.request_headers.live = false;
        }
        self.after_calls(s.vm)?;
        Ok(action)
    }

    /// Sends a request body chunk.
    pub fn send_request_body(
        &mut self,
        s: StreamId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Action> {
        self.send_body(s, Dir::Request, chunk, end_of_stream)
    }

    /// Sends request trailers (ends the request).
    pub fn send_request_trailers(
        &mut self,
        s: StreamId,
        trailers: &[(&str, &str)],
    ) -> Result<Action> {
        self.send_trailers(s, Dir::Request, trailers)
    }

    /// Sends response headers. Sets `response.code` (from `:status`) and
    /// `response.code_details` (`via_upstream`) unless the test set them.
    pub fn send_response_headers(
        &mut self,
        s: StreamId,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Action> {
        if self.live_state_mut(s)?.response_headers.pairs.is_some() {
            bail!("stream {s:?}: response headers were already sent");
        }
        self.set_default_property(s, &["response", "code_details"], b"via_upstream".to_vec())?;
        self.deliver_response_headers(s, to_pairs(headers), end_of_stream, false)
    }

    fn deliver_response_headers(
        &mut self,
        s: StreamId,
        pairs: Pairs,
        eos: bool,
        force_code: bool,
    ) -> Result<Action> {
        if let Some(code) = header(&pairs, ":status")
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse::<i64>().ok())
        {
            if force_code {
                self.set_property(s, &["response", "code"], prop_i64(code))?;
            } else {
                self.set_default_property(s, &["response", "code"], prop_i64(code))?;
            }
        }
        {
            let stream = self.live_state_mut(s)?;
            stream.response_headers = MapSlot {
                pairs: Some(pairs.clone()),
                live: true,
            };
            stream.response_body.end_seen = eos;
        }
        self.ensure_created(s)?;
        let action = self.run(s, Callback::ResponseHeaders, pairs.len(), eos)?;
        if action == Action::Continue {
            self.state_mut(s)?.response_headers.live = false;
        }
        self.after_calls(s.vm)?;
        Ok(action)
    }

    /// Sends a response body chunk.
    pub fn send_response_body(
        &mut self,
        s: StreamId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Action> {
        self.send_body(s, Dir::Response, chunk, end_of_stream)
    }

    /// Sends response trailers (ends the response).
    pub fn send_response_trailers(
        &mut self,
        s: StreamId,
        trailers: &[(&str, &str)],
    ) -> Result<Action> {
        self.send_trailers(s, Dir::Response, trailers)
    }

    fn send_body(&mut self, s: StreamId, dir: Dir, chunk: &[u8], eos: bool) -> Result<Action> {
        let len = {
            let stream = self.live_state_mut(s)?;
            let (headers_sent, slot) = match dir {
                Dir::Request => (
                    stream.request_headers.pairs.is_some(),
                    &mut stream.request_body,
                ),
                Dir::Response => (
                    stream.response_headers.pairs.is_some(),
                    &mut stream.response_body,
                ),
            };
            if !headers_sent {
                bail!("stream {s:?}: send the headers before a body chunk");
            }
            if slot.end_seen {
                bail!("stream {s:?}: that direction already ended");
            }
            if slot.buffering {
                slot.buffer.extend_from_slice(chunk);
            } else {
                slot.buffer = chunk.to_vec();
            }
            slot.live = true;
            slot.end_seen = eos;
            slot.buffer.len()
        };
        let cb = match dir {
            Dir::Request => Callback::RequestBody,
            Dir::Response => Callback::ResponseBody,
        };
        let action = self.run(s, cb, len, eos)?;
        let stream = self.state_mut(s)?;
        if stream.end.is_none() {
            let slot = match dir {
                Dir::Request => &mut stream.request_body,
                Dir::Response => &mut stream.response_body,
            };
            if action == Action::Continue {
                let passed = std::mem::take(&mut slot.buffer);
                slot.passed.extend_from_slice(&passed);
                slot.live = false;
                slot.buffering = false;
            } else {
                slot.buffering = true;
            }
        }
        self.after_calls(s.vm)?;
        Ok(action)
    }

    fn send_trailers(
        &mut self,
        s: StreamId,
        dir: Dir,
        trailers: &[(&str, &str)],
    ) -> Result<Action> {
        let pairs = to_pairs(trailers);
        {
            let stream = self.live_state_mut(s)?;
            let (slot, body) = match dir {
                Dir::Request => (&mut stream.request_trailers, &mut stream.request_body),
                Dir::Response => (&mut stream.response_trailers, &mut stream.response_body),
            };
            if body.end_seen {
                bail!("stream {s:?}: that direction already ended");
            }
            body.end_seen = true;
            *slot = MapSlot {
                pairs: Some(pairs.clone()),
                live: true,
            };
        }
        let cb = match dir {
            Dir::Request => Callback::RequestTrailers,
            Dir::Response => Callback::ResponseTrailers,
        };
        let action = self.run_trailers(s, cb, pairs.len())?;
        if action == Action::Continue {
            let stream = self.state_mut(s)?;
            match dir {
                Dir::Request => stream.request_trailers.live = false,
                Dir::Response => stream.response_trailers.live = false,
            }
        }
        self.after_calls(s.vm)?;
        Ok(action)
    }

    /// Ends the stream normally: `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`.
    pub fn complete_stream(&mut self, s: StreamId) -> Result<()> {
        self.finish(s, EndReason::Completed)
    }

    /// The upstream resets the stream: `response.flags` gains UpstreamRemoteReset (UR), then the
    /// stream ends like [`Host::complete_stream`]. (Before response headers, Envoy's router
    /// answers 503 itself: send those response headers first if the test needs them.)
    pub fn reset_stream(&mut self, s: StreamId) -> Result<()> {
        self.add_flags(s, response_flags::UPSTREAM_REMOTE_RESET)?;
        self.finish(s, EndReason::UpstreamReset)
    }

    /// The client goes away: `response.flags` gains DownstreamConnectionTermination (DC), then
    /// the stream ends like [`Host::complete_stream`].
    pub fn disconnect(&mut self, s: StreamId) -> Result<()> {
        self.add_flags(s, response_flags::DOWNSTREAM_CONNECTION_TERMINATION)?;
        self.finish(s, EndReason::Disconnected)
    }

    fn add_flags(&mut self, s: StreamId, flags: u64) -> Result<()> {
        let stream = self.live_state_mut(s)?;
        let key = join_path(&["response", "flags"]);
        let current = stream
            .properties
            .get(&key)
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        stream.properties.insert(key, prop_u64(current | flags));
        Ok(())
    }

    /// The access-log phase and context teardown.
    pub(crate) fn finish(&mut self, s: StreamId, reason: EndReason) -> Result<()> {
        if self.state(s)?.end.is_some() {
            return Ok(());
        }
        self.ensure_created(s)?;
        let now = self.now_ns();
        {
            let stream = self.state_mut(s)?;
            let duration = now.saturating_sub(stream.started_ns) as i64;
            stream
                .properties
                .entry(join_path(&["request", "duration"]))
                .or_insert_with(|| prop_i64(duration));
            stream.access_log_phase = true;
        }
        let vm = self.vm_mut(s.vm)?;
        let (log, done, delete) = (
            vm.exports.log.clone(),
            vm.exports.done.clone(),
            vm.exports.delete.clone(),
        );
        let ctx = s.context_id;
        let logged = vm.call("proxy_on_log", ctx, log, ctx as i32);
        self.state_mut(s)?.access_log_phase = false;
        logged?;
        self.state_mut(s)?.record(Callback::Log, None, now);
        self.vm_mut(s.vm)?
            .call("proxy_on_done", ctx, done, ctx as i32)?;
        self.state_mut(s)?.record(Callback::Done, None, now);
        self.vm_mut(s.vm)?
            .call("proxy_on_delete", ctx, delete, ctx as i32)?;
        let stream = self.state_mut(s)?;
        stream.record(Callback::Delete, None, now);
        stream.end = Some(reason);
        for slot in [
            &mut stream.request_headers,
            &mut stream.request_trailers,
            &mut stream.response_headers,
            &mut stream.response_trailers,
        ] {
            slot.live = false;
        }
        stream.request_body.live = false;
        stream.response_body.live = false;
        self.after_calls(s.vm)
    }

    /// Runs what the plugin asked for during its last calls on VM `vm` (Envoy's after-VM-call
    /// actions): local replies, stream continues and closes.
    pub(crate) fn after_calls(&mut self, vm: usize) -> Result<()> {
        loop {
            let actions = std::mem::take(&mut self.vm_mut(vm)?.store.data_mut().after_call);
            if actions.is_empty() {
                return Ok(());
            }
            for action in actions {
                match action {
                    AfterCall::LocalReply(ctx) => self.deliver_local_reply(StreamId {
                        vm,
                        context_id: ctx,
                    })?,
                    AfterCall::Continue(ctx, kind) => self.resume(
                        StreamId {
                            vm,
                            context_id: ctx,
                        },
                        kind,
                    )?,
                    AfterCall::Close(ctx, _) => self.finish(
                        StreamId {
                            vm,
                            context_id: ctx,
                        },
                        EndReason::ClosedByPlugin,
                    )?,
                }
            }
        }
    }

    pub(crate) fn after_calls_all(&mut self) -> Result<()> {
        for vm in 0..self.vms.len() {
            self.after_calls(vm)?;
        }
        Ok(())
    }

    /// `proxy_continue_stream`: headers stop being reachable, buffered body bytes pass.
    fn resume(&mut self, s: StreamId, kind: StreamType) -> Result<()> {
        let stream = self.state_mut(s)?;
        if stream.end.is_some() {
            return Ok(());
        }
        // Envoy's continueStream drops the request maps whichever direction continues.
        stream.request_headers.live = false;
        stream.request_trailers.live = false;
        let body = match kind {
            StreamType::HttpResponse => {
                stream.response_headers.live = false;
                &mut stream.response_body
            }
            _ => &mut stream.request_body,
        };
        if body.buffering {
            let held = std::mem::take(&mut body.buffer);
            body.passed.extend_from_slice(&held);
            body.buffering = false;
            body.live = false;
        }
        Ok(())
    }

    /// Envoy's `sendLocalReply`: the reply goes through the plugin's own response callbacks,
    /// then the stream completes. Headers: `:status`, `content-length`, `content-type:
    /// text/plain` for a non-empty body, then the plugin's headers.
    fn deliver_local_reply(&mut self, s: StreamId) -> Result<()> {
        let stream = self.state(s)?;
        let Some(reply) = stream.local_reply.clone() else {
            return Ok(());
        };
        if stream.end.is_some() {
            return Ok(());
        }
        if stream.response_headers.pairs.is_some() {
            // The response already started: Envoy can only reset the stream.
            return self.finish(s, EndReason::LocalReply);
        }
        {
            let stream = self.state_mut(s)?;
            stream.request_body.end_seen = true;
        }
        if !reply.details.is_empty() {
            self.set_property(s, &["response", "code_details"], reply.details.as_bytes())?;
        }
        let mut headers: Pairs = vec![
            (b":status".to_vec(), reply.status.to_string().into_bytes()),
            (
                b"content-length".to_vec(),
                reply.body.len().to_string().into_bytes(),
            ),
        ];
        if !reply.body.is_empty() {
            headers.push((b"content-type".to_vec(), b"text/plain".to_vec()));
        }
        headers.extend(
            reply
                .headers
                .iter()
                .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes())),
        );
        self.deliver_response_headers(s, headers, reply.body.is_empty(), true)?;
        if !reply.body.is_empty() && self.state(s)?.end.is_none() {
            self.send_body(s, Dir::Response, &reply.body, true)?;
        }
        self.finish(s, EndReason::LocalReply)
    }
}
