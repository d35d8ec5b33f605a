//! The seL4-style ABI: what crosses the boundary between a process and the kernel.
//!
//! Shared by the aarch64 kernel, the host simulator and all user code, so that
//! the two kernels implement one interface and a server is written once. The
//! interface is seL4's (non-MCS, AArch64), kept faithfully enough that a
//! backend for the real seL4 kernel could sit behind `platform/rt`:
//!
//! - [`syscall`]: the system call numbers and which registers carry what;
//! - [`message`]: `MessageInfo` packed as seL4 packs it, message-register limits;
//! - [`ipc_buffer`]: the per-thread IPC buffer layout;
//! - [`cap`]: capability pointers, badges and rights;
//! - [`error`]: seL4's error codes and the details an error reply carries;
//! - [`object`]: kernel object types and their sizes;
//! - [`invocation`]: object-invocation labels and their typed arguments, with
//!   the one decoder both kernels use, so that both reject the same bad input;
//! - [`vm`]: mapping rights and memory attributes;
//! - [`fault`]: the fault messages a thread's fault handler receives;
//! - [`boot`]: what a process finds at start: its capabilities and memory.
//!
//! Where we go beyond seL4 it is marked **extension**: a batched map and
//! unmap of a run of frames in one invocation, a batched copy of a run of
//! caps (`CNode_CopyRun`), a Normal non-cacheable memory attribute, and a
//! debug halt that carries an exit status.
#![no_std]
#![forbid(unsafe_code)]

pub mod boot;
pub mod cap;
pub mod error;
pub mod fault;
pub mod invocation;
pub mod ipc_buffer;
pub mod message;
pub mod object;
pub mod syscall;
pub mod vm;

/// A machine word: every register and message register is one.
pub type Word = u64;

pub use cap::{Badge, CPtr, CapRights};
pub use error::{Error, ErrorReply};
pub use message::MessageInfo;
pub use syscall::Syscall;
