//! Exact token figures for every client: the filter asks the worker for usage when the client
//! did not (`stream_options.include_usage`, and `continuous_usage_stats` in `continuous` mode),
//! and takes out of the answer what the client did not ask for, so the client receives what the
//! worker would have sent it without the filter.
//!
//! - [`request`]: where and how a streamed request's body is edited, chunk by chunk.
//! - [`events`]: the answer's events the client did not ask for, cut as they pass.
//! - [`members`]: the members of one JSON object in bytes the edits already hold.
//! - [`refusal`]: a worker that refuses the added field is asked no more, per cluster.

pub mod events;
pub mod members;
pub mod refusal;
pub mod request;

/// The plugin setting `usage_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UsageMode {
    /// Never change a request.
    Off,
    /// Ask for the final usage event (`include_usage`).
    #[default]
    Final,
    /// Also ask for usage on every event (`continuous_usage_stats`): exact tokens per event.
    Continuous,
}

impl UsageMode {
    /// The setting's value, as written (lowercase only: `Final` is refused, not guessed).
    pub fn from_name(name: &str) -> Option<UsageMode> {
        [UsageMode::Off, UsageMode::Final, UsageMode::Continuous]
            .into_iter()
            .find(|m| m.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            UsageMode::Off => "off",
            UsageMode::Final => "final",
            UsageMode::Continuous => "continuous",
        }
    }
}

/// What a request asked the worker for, and who asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Asked {
    /// The filter changed the request: the answer carries usage the client may not want.
    pub edited: bool,
    /// The client itself asked for the final usage event.
    pub client_usage: bool,
    /// The client itself asked for usage on every event.
    pub client_continuous: bool,
    /// The filter asked for usage on every event (`continuous` mode, the client did not).
    pub continuous_added: bool,
}

impl Asked {
    /// Whether the usage-only event (`"choices": []` plus `usage`) is taken out.
    pub fn drops_usage_event(&self) -> bool {
        self.edited && !self.client_usage
    }

    /// Whether a `"usage": null` member of another event is taken out: vLLM adds one to every
    /// event once `include_usage` is on.
    pub fn strips_null_usage(&self) -> bool {
        self.drops_usage_event()
    }

    /// Whether a `usage` member with figures on an event with choices is taken out: the
    /// running counts `continuous_usage_stats` adds. (A worker that sends figures there
    /// unasked, as llama.cpp does on a completion's last event, keeps them: see
    /// [`events`].)
    pub fn strips_usage_figures(&self) -> bool {
        self.edited && self.continuous_added
    }
}
