//! `size_of` of llm-pulse's per-stream state, natively (x86_64; wasm32 has 4-byte pointers,
//! so these are upper bounds of the in-VM sizes). A stream's heap allocations are measured in
//! the VM by `bench` (wasm memory per open stream).
//!
//! The stream context is the filter's own type: the filter crate is a cdylib only (a .wasm),
//! so its glue files are compiled here again, natively, for their types.

#[allow(dead_code)]
#[path = "../../../filter/src/host.rs"]
mod host;
#[allow(dead_code)]
#[path = "../../../filter/src/http_filter.rs"]
mod http_filter;

use http_filter::HttpFilter;
use llm_pulse_core::meter::StreamMeter;
use llm_pulse_core::protocol::request::RequestScanner;
use llm_pulse_core::protocol::response::{JsonResponse, SseResponse};
use std::mem::size_of;

fn main() {
    println!("| type | bytes (x86_64) |");
    println!("| --- | ---: |");
    for (name, size) in [
        (
            "HttpFilter (the context the SDK boxes)",
            size_of::<HttpFilter>(),
        ),
        ("StreamMeter (inside HttpFilter)", size_of::<StreamMeter>()),
        ("  RequestScanner", size_of::<RequestScanner>()),
        ("  SseResponse", size_of::<SseResponse>()),
        ("  JsonResponse", size_of::<JsonResponse>()),
    ] {
        println!("| {name} | {size} |");
    }
}
