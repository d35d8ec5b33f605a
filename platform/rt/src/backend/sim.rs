//! The simulator backend: every primitive enters `platform/sim` as the current simulated thread.
//!
//! The calling host thread must be a simulated thread (started by the
//! simulator for a process or a TCB); calling from any other host thread is
//! a misuse of the runtime and panics with a message saying so.

use abi::boot::BootInfo;
use abi::ipc_buffer::IpcBuffer;
use abi::{Syscall, Word};

use crate::MemoryError;
use sim::this_thread as sim_thread;

fn memory_error(e: sim_thread::AccessError) -> MemoryError {
    match e {
        sim_thread::AccessError::BadRange => MemoryError::InvalidRange,
        sim_thread::AccessError::Dead => MemoryError::Stopped,
    }
}

/// Traps into the simulated kernel.
pub(crate) fn syscall(sys: Syscall, dest: Word, info: Word, mrs: &mut [Word; 4]) -> (Word, Word) {
    sim_thread::syscall(sys, dest, info, mrs)
}

/// Runs `f` on the calling thread's IPC buffer.
pub(crate) fn with_ipc_buffer<R>(f: impl FnOnce(&mut IpcBuffer) -> R) -> R {
    sim_thread::with_ipc_buffer(f)
}

/// The process's boot info.
pub(crate) fn boot_info() -> &'static BootInfo {
    sim_thread::boot_info()
}

/// Reads the process's memory through the software MMU.
pub(crate) fn read_bytes(vaddr: Word, buf: &mut [u8]) -> Result<(), MemoryError> {
    sim_thread::read_bytes(vaddr, buf).map_err(memory_error)
}

/// Writes the process's memory through the software MMU.
pub(crate) fn write_bytes(vaddr: Word, data: &[u8]) -> Result<(), MemoryError> {
    sim_thread::write_bytes(vaddr, data).map_err(memory_error)
}

/// Fills the process's memory through the software MMU.
pub(crate) fn fill_bytes(vaddr: Word, len: Word, byte: u8) -> Result<(), MemoryError> {
    sim_thread::fill_bytes(vaddr, len, byte).map_err(memory_error)
}

/// Writes text on the simulated console.
pub(crate) fn console_write(text: &str) {
    sim_thread::console_write(text)
}

/// Ends the process.
pub(crate) fn exit(status: i32) -> ! {
    sim_thread::exit(status)
}
