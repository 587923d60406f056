//! Reading LLM traffic as it streams: a JSON field scanner, SSE framing, and the request and
//! response shapes of the OpenAI, Responses and SGLang APIs.

pub mod find;
pub mod json;
pub mod request;
pub mod response;
pub mod sse;
