//! Answering the plugin's HTTP callouts. Envoy makes every callout on the root context, so the
//! answer is `proxy_on_http_call_response(root_context_id, token, headers, body_size,
//! trailers)`; the SDK routes it to the context that dispatched it. A failure (reset) is
//! reported as zero headers, zero body, zero trailers, with no response to read.

use anyhow::{anyhow, bail, Result};

use super::abi::Pairs;
use super::host::Host;
use super::records::{Callback, Callout, CalloutId, CalloutState};
use super::state::CallResponse;

/// The body Envoy's router answers a timed-out request with (HTTP 504).
pub const TIMEOUT_BODY: &[u8] = b"upstream request timeout";

impl Host {
    /// Callouts not answered yet.
    pub fn pending_callouts(&self) -> Vec<Callout> {
        self.callouts()
            .into_iter()
            .filter(|c| c.state == CalloutState::Pending)
            .collect()
    }

    /// One callout.
    pub fn callout(&self, id: CalloutId) -> Option<Callout> {
        self.callouts().into_iter().find(|c| c.id == id)
    }

    /// Answers a callout: `:status` plus `headers`, and `body`.
    pub fn respond_callout(
        &mut self,
        id: CalloutId,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<()> {
        let mut pairs: Pairs = vec![(b":status".to_vec(), status.to_string().into_bytes())];
        pairs.extend(
            headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase().into_bytes(), v.as_bytes().to_vec())),
        );
        let response = CallResponse {
            headers: pairs,
            body: body.to_vec(),
            trailers: Vec::new(),
        };
        self.deliver(id, Some(response), CalloutState::Answered { status })
    }

    /// Fails a callout as a reset would (Envoy `onHttpCallFailure`).
    pub fn fail_callout(&mut self, id: CalloutId) -> Result<()> {
        self.deliver(id, None, CalloutState::Failed)
    }

    /// Times a callout out now: Envoy answers it with a 504 and
    /// [`TIMEOUT_BODY`]. [`Host::advance`] does this by itself when a callout's timeout passes.
    pub fn time_out_callout(&mut self, id: CalloutId) -> Result<()> {
        let len = TIMEOUT_BODY.len().to_string();
        self.respond_callout(
            id,
            504,
            &[("content-length", &len), ("content-type", "text/plain")],
            TIMEOUT_BODY,
        )
    }

    /// The earliest deadline of a pending callout with a timeout.
    pub(crate) fn next_callout_timeout(&self) -> Option<(u64, CalloutId)> {
        self.callouts()
            .into_iter()
            .filter(|c| c.state == CalloutState::Pending)
            .filter_map(|c| {
                c.timeout
                    .map(|t| (c.dispatched_at_ns + t.as_nanos() as u64, c.id))
            })
            .min()
    }

    fn deliver(
        &mut self,
        id: CalloutId,
        response: Option<CallResponse>,
        state: CalloutState,
    ) -> Result<()> {
        let now = self.now_ns();
        let vm = self.vm_mut(id.vm)?;
        let root = vm.root_context_id();
        let st = vm.store.data_mut();
        let callout = st
            .callouts
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| anyhow!("no callout {id:?}"))?;
        if callout.state != CalloutState::Pending {
            bail!("callout {id:?} was already answered ({:?})", callout.state);
        }
        callout.state = state;
        let origin = callout.context_id;
        let counts = response.as_ref().map_or((0, 0, 0), |r| {
            (r.headers.len(), r.body.len(), r.trailers.len())
        });
        st.call_response = response;
        let f = vm.exports.http_call_response.clone();
        let args = (
            root as i32,
            id.token as i32,
            counts.0 as i32,
            counts.1 as i32,
            counts.2 as i32,
        );
        let result = vm.call("proxy_on_http_call_response", root, f, args);
        vm.store.data_mut().call_response = None;
        result?;
        if let Some(stream) = vm.store.data_mut().streams.get_mut(&origin) {
            stream.record(Callback::CallResponse, None, now);
        }
        self.after_calls(id.vm)
    }
}
