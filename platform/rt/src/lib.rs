//! The process runtime: the one API a server or client is written against.
//!
//! A process — the MM server, the block server, a client — uses only this
//! crate to reach the kernel, so the same source runs in both places:
//!
//! - in QEMU (`target_os = "none"`), on our aarch64 kernel: syscalls are
//!   `svc #0`, the IPC buffer and the process's memory are reached with
//!   pointers (backend `backend/qemu.rs`);
//! - in the simulator (the host), as a host thread of a simulated process:
//!   syscalls enter the simulated kernel, and the process's memory is
//!   simulated RAM reached through the software MMU (backend `backend/sim.rs`).
//!
//! # The backend contract
//!
//! Each backend is a module `backend` providing exactly these primitives;
//! everything else in this crate is shared code on top of them:
//!
//! ```text
//! /// Traps into the kernel with x0 = dest, x1 = info, x2..x5 = mrs[0..4],
//! /// x7 = the syscall number; returns (x0, x1) and leaves x2..x5 in mrs.
//! fn syscall(sys: Syscall, dest: Word, info: Word, mrs: &mut [Word; 4]) -> (Word, Word);
//! /// Runs `f` on the calling thread's IPC buffer.
//! fn with_ipc_buffer<R>(f: impl FnOnce(&mut IpcBuffer) -> R) -> R;
//! /// The process's boot info.
//! fn boot_info() -> &'static BootInfo;
//! /// Reads/writes/fills the process's own virtual memory. An access that
//! /// faults is delivered to the thread's fault handler and retried after its
//! /// reply, exactly as a load or store would be; `Err` only for an address
//! /// range that cannot be valid at all (non-canonical, overflowing).
//! fn read_bytes(vaddr: Word, buf: &mut [u8]) -> Result<(), MemoryError>;
//! fn write_bytes(vaddr: Word, data: &[u8]) -> Result<(), MemoryError>;
//! fn fill_bytes(vaddr: Word, len: Word, byte: u8) -> Result<(), MemoryError>;
//! /// Writes text on the console (DebugPutString in QEMU).
//! fn console_write(text: &str);
//! /// Ends the calling process with a status; does not return.
//! fn exit(status: i32) -> !;
//! ```
//!
//! # The API
//!
//! On top of the backend, shared by both places and written like libsel4
//! (each function names the seL4 call it corresponds to):
//!
//! - [`ipc`]: message registers ([`set_mr`], [`get_mr`]; MR0–MR3 travel in
//!   registers), the syscalls ([`call`], [`send`], [`nb_send`], [`recv`],
//!   [`nb_recv`], [`reply`], [`reply_recv`], [`yield_now`], [`signal`],
//!   [`wait`], [`poll`]), extra caps and unwrapped badges, the receive slot;
//! - [`invoke`]: typed object invocations (Untyped, CNode, TCB, frames,
//!   page tables, ASID pools, the batched map/unmap extension, IRQs), each
//!   returning `Result<_, ErrorReply>`;
//! - [`mem`]: the process's own memory ([`mem::read_u64`], [`mem::write_bytes`], ...);
//! - [`console`]: [`print!`] and [`println!`] on the console;
//! - startup: a process's main function is `fn(&'static BootInfo)`: the
//!   simulator's harness calls it (`sim::ProcessBuilder::spawn`), the QEMU
//!   backend's entry calls the one named by `rt::qemu_main!(main)` (which
//!   compiles to nothing on the host, so one source serves both);
//!   [`boot_info`] returns the same structure anywhere in the process.
//!   [`exit`] ends the process.
//!
//! `MemoryError` (below) is the error type of the memory primitives.
#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_op_in_unsafe_fn)]

pub use abi;
pub use abi::boot::BootInfo;
pub use abi::{Badge, CPtr, CapRights, Error, ErrorReply, MessageInfo, Word};

mod backend;
pub mod console;
pub mod invoke;
pub mod ipc;
pub mod mem;

pub use ipc::*;

/// Why a memory access could not be made at all. (An access to an address
/// that is merely unmapped or not permitted is not an error: it faults to
/// the thread's fault handler and is retried after the handler's reply.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// The range is not a user address range (not canonical, or it wraps).
    InvalidRange,
    /// The calling thread is being stopped (simulator: its process ended
    /// while it unwinds); nothing was accessed.
    Stopped,
}

/// The process's boot info: its slots and the capabilities it was given.
pub fn boot_info() -> &'static BootInfo {
    backend::boot_info()
}

/// Ends the calling process with a status; does not return.
pub fn exit(status: i32) -> ! {
    backend::exit(status)
}

/// Names a process's main function for the QEMU entry. On the host the
/// simulator's harness calls the function itself, so this only checks its type.
#[cfg(not(target_os = "none"))]
#[macro_export]
macro_rules! qemu_main {
    ($main:path) => {
        const _: fn(&'static $crate::BootInfo) = $main;
    };
}
