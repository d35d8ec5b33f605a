//! The deterministic host simulator of the seL4-style kernel.
//!
//! The same ABI semantics as the aarch64 kernel, on the host, so that
//! servers and clients run under `cargo test`: simulated processes are host
//! threads running ordinary Rust against `platform/rt`, whose simulator
//! backend enters this kernel through [`this_thread`].
//!
//! - Capabilities in per-process CSpaces, with seL4's lookup, derivation
//!   tree (Copy, Mint, Move, Mutate, Delete, Revoke) and object lifetime
//!   (deleting the last cap destroys the object).
//! - Endpoints (rendezvous, FIFO queues, badges, Call with one-shot reply
//!   caps, ReplyRecv, NBSend drops, cap transfer with Grant and unwrapping),
//!   notifications (OR-ed badges, Signal/Wait/Poll, binding to a TCB).
//! - Simulated physical RAM in one host allocation, Untyped retype under
//!   seL4's size, alignment and watermark rules, device Untyped for MMIO.
//! - Frames (4 KiB, 2 MiB) and page tables in simulated RAM in the real
//!   VMSAv8-64 format; every load and store a process makes through the
//!   runtime is translated by [`vmsa::walk`], and faults go as fault IPC to
//!   the thread's handler, whose reply retries the access.
//! - One thread runs at a time, chosen by seL4's priority rules, among equals
//!   in FIFO order or from a seeded RNG: a run replays exactly from its seed.
//! - Fault injection (kill a process at its Nth syscall, fail the Nth
//!   retype), kill from the harness, exit notifications, deadlock detection.
//!
//! Start with [`Sim::new`] and [`Sim::process`]:
//!
//! ```
//! use rt::{Badge, CapRights, MessageInfo};
//! use sim::{Sim, SimConfig};
//!
//! let sim = Sim::new(SimConfig::small());
//! let ep = sim.endpoint().unwrap();
//! sim.process("server")
//!     .endpoint("ep", &ep, Badge(0), CapRights::ALL)
//!     .daemon() // a run may end with it waiting
//!     .spawn(|boot| {
//!         let ep = rt::CPtr(boot.find("ep").unwrap().slot);
//!         let (mut info, mut badge) = rt::recv(ep);
//!         loop {
//!             rt::set_mr(0, rt::get_mr(0) + badge.0);
//!             (info, badge) = rt::reply_recv(ep, MessageInfo::new(0, 0, 0, 1));
//!             let _ = info;
//!         }
//!     })
//!     .unwrap();
//! let client = sim
//!     .process("client")
//!     .endpoint("server", &ep, Badge(7), CapRights::ALL)
//!     .spawn(|boot| {
//!         rt::set_mr(0, 35);
//!         rt::call(rt::CPtr(boot.find("server").unwrap().slot), MessageInfo::new(1, 0, 0, 1));
//!         rt::println!("{}", rt::get_mr(0));
//!     })
//!     .unwrap();
//! sim.run().unwrap(); // on failure, the error names the seed that replays it
//! assert_eq!(sim.console_of(client), "42\n");
//! ```
//!
//! The harness can also kill a process ([`Sim::kill`]), learn of deaths
//! ([`Sim::status`], [`Sim::exits`], or a notification signalled inside the
//! simulation: [`Sim::watch_exit`]), inject faults ([`Sim::kill_at_syscall`],
//! [`Sim::fail_retype`]), raise interrupts and model devices
//! ([`Sim::raise_irq`], [`Sim::mmio`]), and read the console and the trace.
//!
//! Known differences from seL4: the IPC buffer's contents live in the TCB on
//! the host rather than in the frame named by `TCB_Configure` (the frame is
//! still required and held, and a thread without one gets seL4's
//! register-only messages); a thread's pc names a host function registered
//! with [`Sim::register_entry`]; `TCB_ReadRegisters` reports the registers
//! of the thread's last syscall; the console write of the runtime is a
//! syscall (as DebugPutString is in QEMU) but memory accesses are not; each
//! process's boot info is leaked (a few KiB per process, for `&'static`).

mod harness;
mod invoke;
mod ipc;
mod kernel;
mod object;
mod ram;
mod sched;
mod thread;

#[cfg(test)]
mod tests;

pub use harness::{
    BOOT_INFO_VADDR, EndpointHandle, Failure, IPC_BUFFER_VADDR, MmioHandle, NotificationHandle,
    ProcessBuilder, RESERVED_VADDR, RunReport, SetupError, Sim, SimConfig, SimError, UntypedHandle,
};
pub use kernel::{ConsoleLine, ExitReason, Halt, Pid, TraceEvent};
pub use ram::{MmioDevice, RAM_BASE};
pub use sched::Schedule;

/// The simulated thread calling: what `platform/rt`'s simulator backend uses.
pub mod this_thread {
    pub use crate::thread::{
        AccessError, boot_info, console_write, exit, fill_bytes, in_simulation, read_bytes,
        syscall, with_ipc_buffer, write_bytes,
    };
}
