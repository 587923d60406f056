//! Shared data hostcalls; the CAS rules live in `wasm_host::shared_data`.

use anyhow::Result;
use wasmtime::Linker;

use super::{guard, wrap};
use crate::memory::{copy_out, finish, read, read_string, write_u32, Ctx, HostResult};
use crate::state::HostState;

pub(super) fn add(linker: &mut Linker<HostState>) -> Result<()> {
    wrap(
        linker,
        "proxy_get_shared_data",
        |mut c: Ctx<'_>, key: i32, key_len: i32, ret_ptr: i32, ret_len: i32, cas_ptr: i32| {
            finish(get(&mut c, key, key_len, ret_ptr, ret_len, cas_ptr))
        },
    )?;
    wrap(
        linker,
        "proxy_set_shared_data",
        |mut c: Ctx<'_>, key: i32, key_len: i32, value: i32, value_len: i32, cas: i32| {
            finish(set(&mut c, key, key_len, value, value_len, cas))
        },
    )?;
    Ok(())
}

fn get(
    c: &mut Ctx<'_>,
    key: i32,
    key_len: i32,
    ret_ptr: i32,
    ret_len: i32,
    cas_ptr: i32,
) -> HostResult<()> {
    guard(c, "proxy_get_shared_data")?;
    let key = read_string(c, key, key_len)?;
    let (value, cas) = c.data().shared.shared_data().get(&key)?;
    copy_out(c, &value, ret_ptr, ret_len)?;
    write_u32(c, cas_ptr, cas)
}

fn set(
    c: &mut Ctx<'_>,
    key: i32,
    key_len: i32,
    value: i32,
    value_len: i32,
    cas: i32,
) -> HostResult<()> {
    guard(c, "proxy_set_shared_data")?;
    let key = read_string(c, key, key_len)?;
    let value = read(c, value, value_len)?;
    c.data()
        .shared
        .shared_data()
        .set(&key, &value, cas as u32)?;
    Ok(())
}
