//! Guest memory helpers for hostcalls: bounds-checked reads and writes, and returning bytes to
//! the plugin in memory it allocates itself (`proxy_on_memory_allocate`, else `malloc`), the
//! way Envoy's `copyToPointerSize` does: empty data is returned as a null pointer and size 0.

use wasmtime::Caller;

use super::abi::Status;
use super::state::HostState;

/// Why a hostcall did not succeed: a status the plugin sees, or a trap that stops the VM.
pub(crate) enum HostError {
    Status(Status),
    Trap(wasmtime::Error),
}

impl From<Status> for HostError {
    fn from(s: Status) -> Self {
        HostError::Status(s)
    }
}

pub(crate) type HostResult<T> = Result<T, HostError>;

pub(crate) type Ctx<'a> = Caller<'a, HostState>;

/// Turns a hostcall outcome into what the import returns to wasm.
pub(crate) fn finish(result: HostResult<()>) -> wasmtime::Result<i32> {
    match result {
        Ok(()) => Ok(Status::Ok as i32),
        Err(HostError::Status(s)) => Ok(s as i32),
        Err(HostError::Trap(e)) => Err(e),
    }
}

pub(crate) fn trap(message: String) -> HostError {
    HostError::Trap(wasmtime::format_err!("{message}"))
}

fn range(ptr: i32, len: i32) -> HostResult<(usize, usize)> {
    let start = ptr as u32 as usize;
    let end = start
        .checked_add(len as u32 as usize)
        .ok_or(Status::InvalidMemoryAccess)?;
    Ok((start, end))
}

fn memory(caller: &Ctx<'_>) -> HostResult<wasmtime::Memory> {
    caller
        .data()
        .memory
        .ok_or_else(|| trap("the module exports no memory".to_string()))
}

/// Copies `len` bytes at `ptr` out of guest memory.
pub(crate) fn read(caller: &mut Ctx<'_>, ptr: i32, len: i32) -> HostResult<Vec<u8>> {
    let (start, end) = range(ptr, len)?;
    let mem = memory(caller)?;
    mem.data(&*caller)
        .get(start..end)
        .map(<[u8]>::to_vec)
        .ok_or(HostError::Status(Status::InvalidMemoryAccess))
}

/// Like [`read`], decoded as UTF-8 (invalid sequences replaced).
pub(crate) fn read_string(caller: &mut Ctx<'_>, ptr: i32, len: i32) -> HostResult<String> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).into_owned())
}

pub(crate) fn write(caller: &mut Ctx<'_>, ptr: i32, bytes: &[u8]) -> HostResult<()> {
    let (start, end) = range(ptr, bytes.len() as i32)?;
    let mem = memory(caller)?;
    let target = mem
        .data_mut(&mut *caller)
        .get_mut(start..end)
        .ok_or(Status::InvalidMemoryAccess)?;
    target.copy_from_slice(bytes);
    Ok(())
}

pub(crate) fn write_u32(caller: &mut Ctx<'_>, ptr: i32, value: u32) -> HostResult<()> {
    write(caller, ptr, &value.to_le_bytes())
}

pub(crate) fn write_u64(caller: &mut Ctx<'_>, ptr: i32, value: u64) -> HostResult<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Allocates `len` bytes in the guest through its allocator export.
fn alloc(caller: &mut Ctx<'_>, len: usize) -> HostResult<i32> {
    let allocator = caller.data().allocator.clone().ok_or_else(|| {
        trap("the module exports neither proxy_on_memory_allocate nor malloc".to_string())
    })?;
    let len = i32::try_from(len).map_err(|_| Status::InvalidMemoryAccess)?;
    caller
        .data()
        .count_host_call("proxy_on_memory_allocate (host calls the guest)");
    let ptr = allocator.call(&mut *caller, len).map_err(HostError::Trap)?;
    if ptr == 0 {
        return Err(Status::InvalidMemoryAccess.into());
    }
    Ok(ptr)
}

/// Returns `bytes` to the plugin: allocates guest memory, copies, and writes pointer and size to
/// `ptr_ptr` and `size_ptr`. Empty data writes a null pointer and size 0 without allocating.
pub(crate) fn copy_out(
    caller: &mut Ctx<'_>,
    bytes: &[u8],
    ptr_ptr: i32,
    size_ptr: i32,
) -> HostResult<()> {
    let addr = if bytes.is_empty() {
        0
    } else {
        let addr = alloc(caller, bytes.len())?;
        write(caller, addr, bytes)?;
        addr
    };
    write_u32(caller, ptr_ptr, addr as u32)?;
    write_u32(caller, size_ptr, bytes.len() as u32)
}
