//! The kernel's logic: capabilities, objects, IPC, faults and scheduling, over a [`Machine`].
//!
//! Everything here is safe Rust and runs in host unit tests against a fake
//! machine; `arch` only saves and restores registers and calls in. The
//! modules follow seL4's structure and names, so each operation can be read
//! side by side with the seL4 function it mirrors:
//!
//! - [`cap`]: capabilities and seL4's relations between them;
//! - [`object`]: TCBs, endpoints, notifications, CNodes and their tables;
//! - [`cspace`]: CSpace lookup and the derivation tree (insert, move,
//!   delete with finalisation, revoke);
//! - [`sched`]: ready queues by priority and the scheduler's decisions;
//! - [`ipc`]: endpoints, notifications, message transfer and fault delivery;
//! - [`vspace`]: ASIDs, frames and page tables (through `vmsa`);
//! - [`invoke`]: object invocations, decoded by `abi::invocation`;
//! - [`syscall`]: the system calls, and the fastpaths for register-only
//!   Call and ReplyRecv, VM faults and their replies, and the batched map.

pub mod cap;
pub mod cspace;
pub mod invoke;
pub mod ipc;
pub mod object;
pub mod sched;
pub mod syscall;
pub mod vspace;

#[cfg(test)]
pub mod testing;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;

use crate::machine::Machine;
use cap::ObjId;
use object::{CNode, Endpoint, Notification, Slab};
use sched::Scheduler;

/// Number of ASIDs (8-bit ASIDs; 0 is never assigned).
pub const ASID_COUNT: usize = 256;

/// What the kernel knows about one interrupt line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqState {
    /// The kernel uses it (the timer): no handler can be issued.
    pub reserved: bool,
    /// An IRQ handler cap exists for it.
    pub issued: bool,
    /// The notification (and badge) it signals.
    pub notification: Option<(ObjId, u64)>,
}

/// The whole kernel state.
pub struct Kernel<M: Machine> {
    /// The hardware (or the host tests' fake).
    pub machine: M,
    /// Threads.
    pub tcbs: object::TcbTable,
    /// Endpoints.
    pub endpoints: Slab<object::Boxed<Endpoint>>,
    /// Notifications.
    pub notifications: Slab<Notification>,
    /// CNodes (including each TCB's own small one).
    pub cnodes: Slab<CNode>,
    /// ASID → physical address of the VSpace's root table.
    pub asids: Vec<Option<u64>>,
    /// Interrupt lines, by number.
    pub irqs: Vec<IrqState>,
    /// The scheduler.
    pub sched: Scheduler,
    /// Counts the changes that can make a thread's cached
    /// [`object::FastInfo`] wrong (see [`Kernel::cap_changed`]): the cache
    /// is valid while it carries the current value.
    pub cap_generation: u64,
    /// Whether Call and ReplyRecv try their fastpaths, and VSpace_MapFrames
    /// its dedicated roads for one frame and for 4 KiB batches (off in
    /// tests that compare the fastpaths with the general path).
    pub fastpath: bool,
    /// The top of the stack of objects waiting to be destroyed (see
    /// [`Kernel::delete_slot`]).
    pub doomed: Option<object::Doomed>,
    /// System calls done by a fastpath through [`Kernel::handle_event`]
    /// (the tests check that their random sequences exercise them).
    #[cfg(test)]
    pub fastpath_hits: u64,
}

impl<M: Machine> Kernel<M> {
    /// A kernel with no objects, for a machine with `irq_count` interrupt lines.
    pub fn new(machine: M, irq_count: u32) -> Self {
        Kernel {
            machine,
            tcbs: Slab::default(),
            endpoints: Slab::default(),
            notifications: Slab::default(),
            cnodes: Slab::default(),
            asids: alloc::vec![None; ASID_COUNT],
            irqs: alloc::vec![IrqState::default(); irq_count as usize],
            sched: Scheduler::new(),
            fastpath: true,
            cap_generation: 1,
            doomed: None,
            #[cfg(test)]
            fastpath_hits: 0,
        }
    }

    /// Writes formatted text on the kernel console.
    pub fn print(&mut self, args: core::fmt::Arguments<'_>) {
        struct Out<'a, M: Machine>(&'a mut M);
        impl<M: Machine> core::fmt::Write for Out<'_, M> {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                self.0.console_write(s.as_bytes());
                Ok(())
            }
        }
        let _ = core::fmt::Write::write_fmt(&mut Out(&mut self.machine), args);
    }
}
