//! Metrics hostcalls; the rules live in `wasm_host::metrics`.

use anyhow::Result;
use wasmtime::Linker;

use super::{guard, wrap};
use crate::memory::{finish, read_string, write_u32, write_u64, Ctx, HostResult};
use crate::state::HostState;

pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
    wrap(
        linker,
        "proxy_define_metric",
        |mut c: Ctx<'_>, kind: i32, name: i32, name_len: i32, id_ptr: i32| {
            finish(define(&mut c, kind, name, name_len, id_ptr))
        },
    )?;
    wrap(
        linker,
        "proxy_increment_metric",
        |c: Ctx<'_>, id: i32, offset: i64| finish(increment(&c, id, offset)),
    )?;
    wrap(
        linker,
        "proxy_record_metric",
        |c: Ctx<'_>, id: i32, value: i64| finish(record(&c, id, value)),
    )?;
    wrap(
        linker,
        "proxy_get_metric",
        |mut c: Ctx<'_>, id: i32, ret_ptr: i32| finish(get(&mut c, id, ret_ptr)),
    )?;
    Ok(())
}

fn define(c: &mut Ctx<'_>, kind: i32, name: i32, name_len: i32, id_ptr: i32) -> HostResult<()> {
    guard(c, "proxy_define_metric")?;
    let name = read_string(c, name, name_len)?;
    let st = c.data_mut();
    let shared = st.shared.clone();
    let id = st
        .metric_ids
        .define(&mut shared.metrics(), kind as u32, &name)?;
    write_u32(c, id_ptr, id)
}

fn increment(c: &Ctx<'_>, id: i32, offset: i64) -> HostResult<()> {
    guard(c, "proxy_increment_metric")?;
    let st = c.data();
    Ok(st
        .metric_ids
        .increment(&mut st.shared.metrics(), id as u32, offset)?)
}

fn record(c: &Ctx<'_>, id: i32, value: i64) -> HostResult<()> {
    guard(c, "proxy_record_metric")?;
    let st = c.data();
    Ok(st
        .metric_ids
        .record(&mut st.shared.metrics(), id as u32, value as u64)?)
}

fn get(c: &mut Ctx<'_>, id: i32, ret_ptr: i32) -> HostResult<()> {
    guard(c, "proxy_get_metric")?;
    let st = c.data();
    let value = st.metric_ids.get(&mut st.shared.metrics(), id as u32)?;
    write_u64(c, ret_ptr, value)
}
