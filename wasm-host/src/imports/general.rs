//! Logging, time, tick period, effective context, `proxy_done`.

use anyhow::Result;
use wasmtime::Linker;

use super::{guard, wrap};
use crate::abi::{LogLevel, Status};
use crate::memory::{finish, read_string, write_u32, write_u64, Ctx, HostResult};
use crate::state::HostState;

pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
    wrap(
        linker,
        "proxy_log",
        |mut c: Ctx<'_>, level: i32, ptr: i32, len: i32| finish(log(&mut c, level, ptr, len)),
    )?;
    wrap(linker, "proxy_get_log_level", |mut c: Ctx<'_>, ptr: i32| {
        finish(get_log_level(&mut c, ptr))
    })?;
    wrap(
        linker,
        "proxy_get_current_time_nanoseconds",
        |mut c: Ctx<'_>, ptr: i32| finish(get_current_time(&mut c, ptr)),
    )?;
    wrap(
        linker,
        "proxy_set_tick_period_milliseconds",
        |mut c: Ctx<'_>, period: i32| finish(set_tick_period(&mut c, period)),
    )?;
    wrap(
        linker,
        "proxy_set_effective_context",
        |mut c: Ctx<'_>, id: i32| finish(set_effective_context(&mut c, id)),
    )?;
    wrap(linker, "proxy_done", |c: Ctx<'_>| {
        finish(guard(&c, "proxy_done").and(Err(Status::NotFound.into())))
    })?;
    Ok(())
}

fn log(c: &mut Ctx<'_>, level: i32, ptr: i32, len: i32) -> HostResult<()> {
    let level = LogLevel::from_raw(level).ok_or(Status::BadArgument)?;
    let message = read_string(c, ptr, len)?;
    c.data_mut().push_log(level, message);
    Ok(())
}

fn get_log_level(c: &mut Ctx<'_>, ptr: i32) -> HostResult<()> {
    guard(c, "proxy_get_log_level")?;
    let level = c.data().log_level as u32;
    write_u32(c, ptr, level)
}

fn get_current_time(c: &mut Ctx<'_>, ptr: i32) -> HostResult<()> {
    guard(c, "proxy_get_current_time_nanoseconds")?;
    let now = c.data().now_ns();
    write_u64(c, ptr, now)
}

/// One timer per root context (Envoy `Wasm::setTimerPeriod`): first tick one period from now;
/// 0 stops it.
fn set_tick_period(c: &mut Ctx<'_>, period: i32) -> HostResult<()> {
    guard(c, "proxy_set_tick_period_milliseconds")?;
    let st = c.data_mut();
    let period = period as u32;
    st.tick_period_ms = period;
    st.next_tick_ns = (period > 0).then(|| st.now_ns() + u64::from(period) * 1_000_000);
    Ok(())
}

fn set_effective_context(c: &mut Ctx<'_>, id: i32) -> HostResult<()> {
    guard(c, "proxy_set_effective_context")?;
    let st = c.data_mut();
    let id = id as u32;
    let known = id == st.root_context_id
        || st
            .streams
            .get(&id)
            .is_some_and(|s| s.created_in_vm && s.end.is_none());
    if !known {
        return Err(Status::BadArgument.into());
    }
    st.effective_context = Some(id);
    Ok(())
}
