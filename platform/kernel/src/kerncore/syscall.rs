//! The system calls: seL4's `handleSyscall`, `handleInvocation` and `handleRecv`, and kernel entry.
//!
//! The architecture code saves the user registers into the current thread's
//! [`Context`] and calls [`Kernel::handle_event`]
//! (or [`Kernel::enter_syscall`]); afterwards `sched.current` names the
//! thread to resume (whose context it restores) or `None` to idle.
//!
//! # The fastpaths
//!
//! A register-only Call or ReplyRecv (no extra caps, at most the four
//! register MRs) goes first through [`Kernel::fastpath_call`] or
//! [`Kernel::fastpath_reply_recv`] (seL4's `fastpath_call` and
//! `fastpath_reply_recv`), which check seL4's conditions — the endpoint
//! cap and its rights, the endpoint's state and queue, the other thread's
//! state, priority and fault, the reply cap, no higher-priority thread
//! ready, both address spaces valid — then do the whole IPC and the
//! switch in one step, or, having changed nothing, leave it to the general
//! path. They are invisible: the tests run random system-call sequences
//! with and without them and compare everything a thread can observe.
//!
//! Three more follow the same rules. A VM fault goes first to
//! [`Kernel::fastpath_vm_fault`] (its four MRs fit the registers: the fault
//! is a register-only Call to the thread's fault endpoint), and the
//! handler's ReplyRecv to a thread that faulted takes the ReplyRecv
//! fastpath when the fault is one any reply resolves (VM and capability
//! faults): the thread restarts at its faulting instruction with its
//! registers as they were. (Both fastpaths let the thread that runs next
//! have a lower priority than the one that blocks, when no queued thread
//! outranks it: what the general path's `schedule` decides then.) And
//! a Call of `VSpace_MapFrames` with its five arguments, the MM server's
//! batched map on every fault it serves, goes through
//! [`Kernel::fast_invoke_map_frames`]: the general path's steps for that
//! one invocation, without its generic parts, reusing the slots the
//! thread's last such call found (kept in its [`FastInfo`] under the same
//! generation rule).
//!
//! They are written for few instructions, in safe Rust:
//! - each thread caches what they need of its CSpace and VSpace roots and
//!   its last endpoint lookup ([`FastInfo`]), valid while the kernel's
//!   `cap_generation` is unchanged (every change that could make a cached
//!   view wrong bumps it: see `Kernel::cap_changed`); the general path
//!   refreshes the caches of the threads it runs (and remembers the
//!   endpoint caps it looks up), so the fastpaths never call out and stay
//!   leaf functions;
//! - the TCB's own slots (reply and caller caps) are an array in the TCB,
//!   threads and endpoints are one load from their tables, and the queues
//!   are linked through the TCBs, so nothing is copied or allocated;
//! - the two threads are borrowed at once (`Slab::get_pair_mut`), and
//!   every check precedes the first write.

use abi::error::{ErrorReply, LookupFailure};
use abi::fault::{CapFault, Fault, FaultLabel, UnknownSyscall, VmFault};
use abi::invocation::Label as InvocationLabel;
use abi::syscall::FAST_MESSAGE_REGISTERS;
use abi::{MessageInfo, Syscall, Word};

use super::Kernel;
use super::cap::{Cap, ObjId};
use super::invoke::{Failure, FrameRun};
use super::object::{
    AddressSpace, Boxed, CNode, Context, Endpoint, EndpointState, FastInfo, QueueLinks, Slab, Slot,
    SlotRef, Tcb, ThreadState, tcb_slot,
};
use super::sched::Action;
use crate::machine::Machine;

/// Why the kernel was entered from user level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `svc #0`: a system call, number in x7.
    Syscall,
    /// A fault of the current thread (abort, unknown instruction...).
    Fault(Fault),
    /// The timer interrupt.
    Timer,
    /// A device interrupt.
    Irq(u32),
}

/// Copies the first `length` (at most four) register MRs, x2.., of a
/// sender's registers into a receiver's, leaving the others as they were
/// (the fastpaths' transfer).
#[inline(always)]
fn copy_message_registers(to: &mut [Word; 31], from: &[Word; 31], length: usize) {
    const _: () = assert!(FAST_MESSAGE_REGISTERS == 4);
    match length {
        0 => {}
        1 => to[2] = from[2],
        2 => to[2..4].copy_from_slice(&from[2..4]),
        3 => to[2..5].copy_from_slice(&from[2..5]),
        _ => to[2..6].copy_from_slice(&from[2..6]),
    }
}

/// Longest string DebugPutString prints at once.
pub const MAX_DEBUG_STRING: u64 = 4096;

impl<M: Machine> Kernel<M> {
    /// Handles one kernel entry, then decides what runs next.
    pub fn handle_event(&mut self, event: Event) {
        match event {
            Event::Syscall => {
                if let Some(cur) = self.sched.current
                    && (self.fastpath(cur).is_some() || self.fast_invoke_map_frames(cur))
                {
                    #[cfg(test)]
                    {
                        self.fastpath_hits += 1;
                    }
                    return;
                }
                return self.enter_syscall();
            }
            Event::Fault(fault) => {
                if let Some(cur) = self.sched.current {
                    if let Fault::VmFault(v) = fault
                        && self.fastpath_vm_fault(cur, v).is_some()
                    {
                        #[cfg(test)]
                        {
                            self.fastpath_hits += 1;
                        }
                        return;
                    }
                    self.handle_fault(cur, fault);
                    self.schedule();
                    self.activate();
                    // Warm the fastpaths' caches of the threads involved.
                    for t in [Some(cur), self.sched.current].into_iter().flatten() {
                        self.warm_fast_info(t);
                    }
                    return;
                }
            }
            Event::Timer => self.timer_tick(),
            Event::Irq(irq) => self.handle_device_irq(irq),
        }
        self.schedule();
        self.activate();
    }

    /// A system call by the current thread through the general path (the
    /// fastpaths were tried first: see [`Kernel::fastpath`]), then the
    /// scheduling decision.
    pub fn enter_syscall(&mut self) {
        let caller = self.sched.current;
        self.handle_syscall();
        self.schedule();
        self.activate();
        // Warm the fastpaths' caches of the threads involved.
        for t in [caller, self.sched.current].into_iter().flatten() {
            self.warm_fast_info(t);
        }
    }

    fn handle_syscall(&mut self) {
        let Some(cur) = self.sched.current else {
            return;
        };
        let Some(t) = self.tcbs.get(cur) else {
            return;
        };
        let number = t.context.x[7] as i64;
        let Some(sys) = Syscall::from_number(number) else {
            let c = &t.context;
            let mut x = [0; 8];
            x.copy_from_slice(&c.x[..8]);
            let fault = Fault::UnknownSyscall(UnknownSyscall {
                x,
                pc: c.pc,
                sp: c.sp,
                lr: c.x[30],
                spsr: c.spsr,
                syscall: c.x[7],
            });
            self.handle_fault(cur, fault);
            return;
        };
        match sys {
            Syscall::Call => self.handle_invocation(cur, true, true),
            Syscall::Send => self.handle_invocation(cur, false, true),
            Syscall::NBSend => self.handle_invocation(cur, false, false),
            Syscall::Recv => self.handle_recv(cur, true),
            Syscall::NBRecv => self.handle_recv(cur, false),
            Syscall::Reply => self.handle_reply(cur),
            Syscall::ReplyRecv => {
                self.handle_reply(cur);
                self.handle_recv(cur, true);
            }
            Syscall::Yield => self.yield_current(),
            Syscall::DebugPutChar => {
                let c = t.context.x[0] as u8;
                self.machine.console_write(&[c]);
            }
            Syscall::DebugPutString => self.debug_put_string(cur),
            Syscall::DebugHalt => {
                let status = t.context.x[0] as u32;
                self.machine.halt(status);
            }
        }
    }

    fn cap_fault(
        &mut self,
        cur: ObjId,
        cptr: Word,
        in_receive_phase: bool,
        failure: LookupFailure,
    ) {
        let pc = self.tcbs.get(cur).map_or(0, |t| t.context.restart_pc);
        self.handle_fault(
            cur,
            Fault::CapFault(CapFault {
                pc,
                cptr,
                in_receive_phase,
                failure,
            }),
        );
    }

    /// seL4 `handleInvocation`: Send, NBSend or Call on the cap in x0.
    fn handle_invocation(&mut self, cur: ObjId, is_call: bool, blocking: bool) {
        let Some(t) = self.tcbs.get(cur) else {
            return;
        };
        let cptr = t.context.x[0];
        let info = MessageInfo::from_word(t.context.x[1]);
        let (cap, slot) = match self.lookup_cap(cur, cptr) {
            Ok(found) => found,
            Err(failure) => {
                if blocking {
                    self.cap_fault(cur, cptr, false, failure);
                }
                return;
            }
        };
        let buffer = self.lookup_ipc_buffer(cur, false);
        let caps = match self.lookup_extra_caps(cur, buffer, info) {
            Ok(caps) => caps,
            Err((cptr, failure)) => {
                if blocking {
                    self.cap_fault(cur, cptr, false, failure);
                }
                return;
            }
        };
        let mut length = info.length();
        if length > FAST_MESSAGE_REGISTERS && buffer.is_none() {
            length = FAST_MESSAGE_REGISTERS;
        }
        // An IPC cap's operation leaves no reply here (`Ok(None)`); an
        // object's invocation leaves its result in `invoked`, which is
        // replied from where it was built (a `Reply` is large to copy).
        let mut invoked: Option<super::invoke::InvocationResult> = None;
        let result: Result<(), Failure> = match cap {
            Cap::Endpoint { id, badge, rights } => {
                if rights.can_write() {
                    self.remember_endpoint(cur, cptr, cap);
                    self.send_ipc(
                        blocking,
                        is_call,
                        badge,
                        rights.can_grant(),
                        rights.can_grant_reply(),
                        cur,
                        id,
                    );
                    Ok(())
                } else {
                    Err(ErrorReply::InvalidCapability { index: 0 }.into())
                }
            }
            Cap::Notification { id, badge, rights } => {
                if rights.can_write() {
                    self.send_signal(id, badge);
                    Ok(())
                } else {
                    Err(ErrorReply::InvalidCapability { index: 0 }.into())
                }
            }
            Cap::Reply {
                tcb,
                can_grant,
                master: false,
            } => {
                self.do_reply_transfer(cur, tcb, slot, can_grant);
                Ok(())
            }
            Cap::Reply { master: true, .. } | Cap::Null => {
                Err(ErrorReply::InvalidCapability { index: 0 }.into())
            }
            _ => {
                // The message registers: most invocations have a few.
                let n = length.min(64);
                let mut small = [0; 8];
                let mut large;
                let mrs: &mut [Word] = if n <= small.len() {
                    &mut small[..n]
                } else {
                    large = [0; 64];
                    &mut large[..n]
                };
                for (i, m) in mrs.iter_mut().enumerate() {
                    *m = self.get_mr(cur, buffer, i);
                }
                invoked = Some(self.invoke(cur, cap, slot, info.label(), mrs, caps));
                Ok(())
            }
        };
        let still_running = self
            .tcbs
            .get(cur)
            .is_some_and(|t| matches!(t.state, ThreadState::Running));
        if !(is_call && still_running) {
            return;
        }
        let failure = match (&result, &invoked) {
            (Err(f), _) | (Ok(()), Some(Err(f))) => *f,
            (Ok(()), Some(Ok(reply))) => {
                let n = self.set_mrs(cur, buffer, &reply.words[..reply.len]);
                self.set_badge_and_info(cur, 0, MessageInfo::new(0, 0, 0, n));
                return;
            }
            (Ok(()), None) => return,
        };
        self.reply_failure(cur, buffer, failure);
    }

    /// The error reply of a failed invocation by `cur` (a Call): the batch
    /// index first, if any, then the error's details, label the error code.
    fn reply_failure(&mut self, cur: ObjId, buffer: Option<u64>, failure: Failure) {
        let (detail, n) = failure.error.to_mrs();
        let mut words = [0; 7];
        let mut len = 0;
        if let Some(i) = failure.batch_index {
            words[0] = i;
            len = 1;
        }
        words[len..len + n].copy_from_slice(&detail[..n]);
        len += n;
        let sent = self.set_mrs(cur, buffer, &words[..len]);
        self.set_badge_and_info(
            cur,
            0,
            MessageInfo::new(failure.error.code().word(), 0, 0, sent),
        );
    }

    /// Whether `cur`'s syscall is a Call that [`Kernel::fast_invoke_map_frames`]
    /// takes: `Some(true)` for `VSpace_MapFrame` with four words,
    /// `Some(false)` for `VSpace_MapFrames` with five, neither with caps.
    /// Inlined where the general path starts, so that its other syscalls
    /// pass by at the cost of these tests alone.
    #[inline(always)]
    pub fn map_call_kind(&self, cur: ObjId) -> Option<bool> {
        if cfg!(test) && !self.fastpath {
            return None;
        }
        let x = &self.tcbs.get(cur)?.context.x;
        let info = MessageInfo::from_word(x[1]);
        let one = info.label() == InvocationLabel::VSpaceMapFrame as Word && info.length() == 4;
        let many = info.label() == InvocationLabel::VSpaceMapFrames as Word && info.length() == 5;
        (x[7] == Syscall::Call.number() as Word && info.extra_caps() == 0 && (one || many))
            .then_some(one)
    }

    /// A Call of `VSpace_MapFrame` with its four arguments in registers or
    /// of `VSpace_MapFrames` with its five (the MM server's mapping of a
    /// page, on every page fault it serves, and of runs of frames), done by
    /// `handle_invocation`'s steps without their generic parts: the cap
    /// lookup, the IPC buffer (only for the fifth word, or an error reply),
    /// the invocation and the reply, in the general path's order and with
    /// its results. The caller keeps running (the invocation changes no
    /// thread), so nothing is scheduled. Returns `false`, having changed
    /// nothing, for anything else, and for every case the general path
    /// turns into a fault or an error before the invocation runs (a failed
    /// lookup, no IPC buffer for a fifth word, another cap type).
    pub fn fast_invoke_map_frames(&mut self, cur: ObjId) -> bool {
        let Some(one) = self.map_call_kind(cur) else {
            return false;
        };
        let Some(t) = self.tcbs.get(cur) else {
            return false;
        };
        let x = &t.context.x;
        let (cptr, mr) = (x[0], [x[2], x[3], x[4], x[5]]);
        // The slots it named last time, if its cached view is current (see
        // `FastInfo`): the same lookups' results, found again without
        // walking the CSpace.
        let warm = t.fast_generation == self.cap_generation;
        let (object, mut frames) = match warm {
            true => (t.fast.object, t.fast.frames),
            false => (None, FrameRun::NONE),
        };
        let slot = match object {
            Some((c, slot)) if c == cptr => slot,
            _ => match self.lookup_slot(cur, cptr) {
                Ok(slot) => slot,
                Err(_) => return false,
            },
        };
        let vspace = match self.slot(slot).cap {
            Cap::VSpace { paddr, asid } => Cap::VSpace { paddr, asid },
            _ => return false,
        };
        // The arguments, as `Invocation::decode` reads them (with the
        // length and caps checked above it cannot fail).
        let (args, buffer) = if one {
            ([mr[0], 1, mr[1], mr[2], mr[3]], None)
        } else {
            let Some(buffer) = self.lookup_ipc_buffer(cur, false) else {
                return false;
            };
            let fifth = self.get_mr(cur, Some(buffer), 4);
            ([mr[0], mr[1], mr[2], mr[3], fifth], Some(buffer))
        };
        match self.vspace_map_frames(cur, vspace, args, &mut frames) {
            Ok(()) => self.set_badge_and_info(cur, 0, MessageInfo::new(0, 0, 0, 0)),
            Err(failure) => {
                let buffer = buffer.or_else(|| self.lookup_ipc_buffer(cur, false));
                self.reply_failure(cur, buffer, failure)
            }
        }
        // Remember the lookups (the invocation changes no cap but the
        // frames' mappings, so they still hold).
        let generation = self.cap_generation;
        if let Some(t) = self.tcbs.get_mut(cur)
            && t.fast_generation == generation
        {
            t.fast.object = Some((cptr, slot));
            t.fast.frames = frames;
        }
        true
    }

    /// seL4 `handleRecv`: Recv or NBRecv on the endpoint or notification in x0.
    fn handle_recv(&mut self, cur: ObjId, blocking: bool) {
        let Some(cptr) = self.tcbs.get(cur).map(|t| t.context.x[0]) else {
            return;
        };
        let cap = match self.lookup_cap(cur, cptr) {
            Ok((cap, _)) => cap,
            Err(failure) => {
                self.cap_fault(cur, cptr, true, failure);
                return;
            }
        };
        match cap {
            Cap::Endpoint { rights, .. } if rights.can_read() => {
                self.remember_endpoint(cur, cptr, cap);
                self.delete_caller_cap(cur);
                self.receive_ipc(cur, cap, blocking);
            }
            Cap::Notification { id, rights, .. }
                if rights.can_read()
                    && self
                        .notifications
                        .get(id)
                        .is_some_and(|n| n.bound_tcb.is_none_or(|b| b == cur)) =>
            {
                self.receive_signal(cur, id, blocking);
            }
            _ => self.cap_fault(
                cur,
                cptr,
                true,
                LookupFailure::MissingCapability { bits_left: 0 },
            ),
        }
    }

    /// The ASID of a thread's address space, if it has a valid one.
    pub fn thread_asid(&self, tcb: ObjId) -> Option<(u16, u64)> {
        match self.slot(self.tcb_slot(tcb, tcb_slot::VSPACE)).cap {
            Cap::VSpace {
                paddr,
                asid: Some(asid),
            } if self.vspace_root(asid) == Some(paddr) => Some((asid, paddr)),
            _ => None,
        }
    }

    /// DebugPutString: prints the caller's bytes at x0..x0+x1 that it may
    /// read, stopping at the first it may not; x0 returns the count printed.
    fn debug_put_string(&mut self, cur: ObjId) {
        let Some(t) = self.tcbs.get(cur) else {
            return;
        };
        let (mut vaddr, len) = (t.context.x[0], t.context.x[1].min(MAX_DEBUG_STRING));
        let Some((asid, _)) = self.thread_asid(cur) else {
            return;
        };
        let mut printed = 0u64;
        let mut buf = [0u8; 256];
        while printed < len {
            let Some(tr) = self.translate(asid, vaddr) else {
                break;
            };
            if !tr.attrs().user || tr.attrs().memory != vmsa::MemoryType::NormalWriteBack {
                break;
            }
            let in_page = tr.size() - (vaddr & (tr.size() - 1));
            let n = in_page.min(len - printed).min(buf.len() as u64) as usize;
            self.machine.read_bytes(tr.paddr, &mut buf[..n]);
            self.machine.console_write(&buf[..n]);
            printed += n as u64;
            vaddr += n as u64;
        }
        if let Some(t) = self.tcbs.get_mut(cur) {
            t.context.x[0] = printed;
        }
    }

    /// The fastpaths' entry: a system call by `cur` that is a
    /// register-only Call or ReplyRecv under the common conditions is done
    /// here in one step, with the switch to the thread that runs next.
    /// Returns that thread's context (to resume at once, in its address
    /// space), or `None`, having changed nothing, for the general path.
    #[inline(always)]
    pub fn fastpath(&mut self, cur: ObjId) -> Option<FastSwitch> {
        let number = self.tcbs.get(cur)?.context.x[7];
        if number == Syscall::Call.number() as Word {
            self.fastpath_call(cur)
        } else if number == Syscall::ReplyRecv.number() as Word {
            self.fastpath_reply_recv(cur)
        } else {
            None
        }
    }

    /// The fastpath of Call (seL4 `fastpath_call`): a register-only message
    /// on an endpoint where a receiver of at least the caller's priority
    /// waits. Checks everything first, then transfers the registers, gives
    /// the receiver the reply cap and switches to it directly. Returns
    /// `None`, having changed nothing (but the caller's cached endpoint
    /// lookup), when any condition fails.
    #[inline(always)]
    pub fn fastpath_call(&mut self, cur: ObjId) -> Option<FastSwitch> {
        let Kernel {
            tcbs,
            cnodes,
            endpoints,
            sched,
            cap_generation,
            fastpath,
            ..
        } = self;
        // Every kernel entry finds the action decided on the way out.
        debug_assert_eq!(sched.action, Action::ResumeCurrent);
        if cfg!(test) && !*fastpath {
            return None;
        }
        // The caller, its message and the endpoint cap it names.
        let t: &mut Tcb = tcbs.get_mut(cur)?;
        let info = t.context.x[1];
        if !is_register_only(info) || t.fast_generation != *cap_generation {
            return None;
        }
        let cptr = t.context.x[0];
        let (id, badge, rights) = fast_endpoint(cnodes, &mut t.fast, cptr)?;
        if !rights.can_write() || !(rights.can_grant() || rights.can_grant_reply()) {
            return None;
        }
        // A receiver waits.
        let ep: &mut Endpoint = endpoints.get_mut(id)?;
        if ep.state != EndpointState::Recv {
            return None;
        }
        let dest = ep.queue.head?;
        let (t, d) = tcbs.get_pair_mut(cur, dest)?;
        let (t, d): (&mut Tcb, &mut Tcb) = (t, d);
        let ThreadState::BlockedOnReceive { can_grant, .. } = d.state else {
            return None;
        };
        if d.priority < t.priority
            || d.fast_generation != *cap_generation
            || !sched.may_run_first(d.priority)
        {
            return None;
        }
        let master = &mut t.slots[tcb_slot::REPLY as usize];
        let slot = &mut d.slots[tcb_slot::CALLER as usize];
        if !slot.cap.is_null() || master.next.is_some() {
            return None;
        }

        // Commit; nothing below fails.
        give_reply_cap(master, slot, cur, dest, can_grant);
        // The caller waits for the reply; the receiver gets the message.
        t.state = ThreadState::BlockedOnReply;
        d.context.x[0] = badge;
        transfer(&mut d.context.x, &t.context.x, info);
        d.state = ThreadState::Running;
        let switch = FastSwitch {
            context: &mut d.context as *mut Context,
            space: d.fast.space,
        };
        // The receiver leaves the endpoint's queue (it was its head).
        let next = core::mem::take(&mut d.ipc_links).next;
        pop_head(ep, tcbs, next);
        fast_switch(sched, dest);
        Some(switch)
    }

    /// The fastpath of a VM fault (seL4 has none; it follows
    /// [`Kernel::fastpath_call`]): the current thread's fault goes as a
    /// register-only message (the four MRs of `VmFault`) to its fault
    /// endpoint, where a handler of at least its priority waits, which
    /// gets the reply cap and runs at once — what `handle_fault` and
    /// `send_ipc` do through the general path. The thread's `restart_pc`
    /// must be set (the faulting instruction). Returns `None`, having
    /// changed nothing (but the thread's cached endpoint lookup), when any
    /// condition fails.
    #[inline(always)]
    pub fn fastpath_vm_fault(&mut self, cur: ObjId, fault: VmFault) -> Option<FastSwitch> {
        let Kernel {
            tcbs,
            cnodes,
            endpoints,
            sched,
            cap_generation,
            fastpath,
            ..
        } = self;
        debug_assert_eq!(sched.action, Action::ResumeCurrent);
        if cfg!(test) && !*fastpath {
            return None;
        }
        // The thread and the endpoint cap its fault goes to.
        let t: &mut Tcb = tcbs.get_mut(cur)?;
        if t.fast_generation != *cap_generation || t.fault.is_some() {
            return None;
        }
        let cptr = t.fault_ep;
        let (id, badge, rights) = fast_endpoint(cnodes, &mut t.fast, cptr)?;
        if !rights.can_write() || !(rights.can_grant() || rights.can_grant_reply()) {
            return None;
        }
        // A handler waits.
        let ep: &mut Endpoint = endpoints.get_mut(id)?;
        if ep.state != EndpointState::Recv {
            return None;
        }
        let dest = ep.queue.head?;
        let (t, d) = tcbs.get_pair_mut(cur, dest)?;
        let (t, d): (&mut Tcb, &mut Tcb) = (t, d);
        let ThreadState::BlockedOnReceive { can_grant, .. } = d.state else {
            return None;
        };
        if d.priority < t.priority
            || d.fast_generation != *cap_generation
            || !sched.may_run_first(d.priority)
        {
            return None;
        }
        let master = &mut t.slots[tcb_slot::REPLY as usize];
        let slot = &mut d.slots[tcb_slot::CALLER as usize];
        if !slot.cap.is_null() || master.next.is_some() {
            return None;
        }

        // Commit; nothing below fails.
        give_reply_cap(master, slot, cur, dest, can_grant);
        // The thread waits for the reply with its fault recorded; the
        // handler gets the fault message (`Fault::to_mrs`).
        t.fault = Some(Fault::VmFault(fault));
        t.state = ThreadState::BlockedOnReply;
        let x = &mut d.context.x;
        x[0] = badge;
        x[1] = MessageInfo::new(FaultLabel::VmFault as Word, 0, 0, 4).word();
        x[2] = fault.ip;
        x[3] = fault.addr;
        x[4] = fault.instruction as Word;
        x[5] = fault.fsr;
        d.state = ThreadState::Running;
        let switch = FastSwitch {
            context: &mut d.context as *mut Context,
            space: d.fast.space,
        };
        // The handler leaves the endpoint's queue (it was its head).
        let next = core::mem::take(&mut d.ipc_links).next;
        pop_head(ep, tcbs, next);
        fast_switch(sched, dest);
        Some(switch)
    }

    /// The fastpath of ReplyRecv (seL4 `fastpath_reply_recv`): reply
    /// (register-only) to a caller waiting for it, then wait on the
    /// endpoint in x0 where no sender is queued, and run the caller at once.
    /// Returns `None`, having changed nothing (but the replier's cached
    /// endpoint lookup), when any condition fails.
    #[inline(always)]
    pub fn fastpath_reply_recv(&mut self, cur: ObjId) -> Option<FastSwitch> {
        let Kernel {
            tcbs,
            cnodes,
            endpoints,
            sched,
            cap_generation,
            fastpath,
            ..
        } = self;
        debug_assert_eq!(sched.action, Action::ResumeCurrent);
        if cfg!(test) && !*fastpath {
            return None;
        }
        // The replier, its message, the reply cap and the endpoint cap.
        let t: &mut Tcb = tcbs.get_mut(cur)?;
        let info = t.context.x[1];
        if !is_register_only(info) || t.fast_generation != *cap_generation || t.bound_ntfn.is_some()
        {
            return None;
        }
        let slot = &t.slots[tcb_slot::CALLER as usize];
        let Cap::Reply {
            tcb: caller,
            master: false,
            ..
        } = slot.cap
        else {
            return None;
        };
        if slot.prev != Some(SlotRef::tcb(caller, tcb_slot::REPLY)) || slot.next.is_some() {
            return None;
        }
        let cptr = t.context.x[0];
        let (id, _, rights) = fast_endpoint(cnodes, &mut t.fast, cptr)?;
        if !rights.can_read() {
            return None;
        }
        // No sender waits; the caller waits for this reply and may run now.
        let ep: &mut Endpoint = endpoints.get_mut(id)?;
        if ep.state == EndpointState::Send {
            return None;
        }
        let (t, c) = tcbs.get_pair_mut(cur, caller)?;
        let (t, c): (&mut Tcb, &mut Tcb) = (t, c);
        // A caller that faulted takes the reply as the end of its fault:
        // here only faults that any reply resolves by restarting the
        // thread (VM and capability faults: `handle_fault_reply` reads no
        // message for them). The replier blocks on the endpoint, so the
        // caller runs next exactly when no queued thread outranks it
        // (what the general path's `possible_switch_to` and `schedule`
        // decide), whatever the replier's own priority.
        let restart = match c.fault {
            None => false,
            Some(Fault::VmFault(_) | Fault::CapFault(_)) => true,
            Some(_) => return None,
        };
        if !matches!(c.state, ThreadState::BlockedOnReply)
            || c.fast_generation != *cap_generation
            || !sched.may_run_first(c.priority)
        {
            return None;
        }

        // Commit; nothing below fails. The reply cap goes (a leaf of the
        // derivation tree: unlinking it is all), the caller gets the
        // message (or, ending a fault, restarts with its registers as they
        // were), and we wait on the endpoint.
        c.slots[tcb_slot::REPLY as usize].next = None;
        t.slots[tcb_slot::CALLER as usize] = Slot::default();
        if restart {
            c.fault = None;
            c.context.pc = c.context.restart_pc;
        } else {
            c.context.x[0] = 0;
            transfer(&mut c.context.x, &t.context.x, info);
        }
        c.state = ThreadState::Running;
        let switch = FastSwitch {
            context: &mut c.context as *mut Context,
            space: c.fast.space,
        };
        t.state = ThreadState::BlockedOnReceive {
            ep: id,
            can_grant: rights.can_grant(),
        };
        let tail = ep.queue.tail;
        t.ipc_links = QueueLinks {
            prev: tail,
            next: None,
        };
        match tail.and_then(|p| tcbs.get_mut(p)) {
            Some(p) => p.ipc_links.next = Some(cur),
            None => ep.queue.head = Some(cur),
        }
        ep.queue.tail = Some(cur);
        ep.state = EndpointState::Recv;
        fast_switch(sched, caller);
        Some(switch)
    }

    /// Remembers, in a thread's cached [`FastInfo`] (if it is current),
    /// the endpoint cap the general path just found at `cptr`, so that the
    /// fastpaths find it again without a lookup (a thread with a
    /// multi-level CSpace has no other way to them). Valid while the
    /// generation holds: deleting or moving an endpoint cap moves it.
    pub fn remember_endpoint(&mut self, tcb: ObjId, cptr: Word, cap: Cap) {
        let generation = self.cap_generation;
        if let Cap::Endpoint { id, badge, rights } = cap
            && let Some(t) = self.tcbs.get_mut(tcb)
            && t.fast_generation == generation
        {
            t.fast.endpoint_cptr = cptr;
            t.fast.endpoint = id;
            t.fast.endpoint_badge = badge;
            t.fast.endpoint_rights = rights;
        }
    }

    /// Brings a thread's cached [`FastInfo`] up to date (the general path
    /// does it for the threads it runs, so that their next Call or
    /// ReplyRecv can take the fastpath).
    pub fn warm_fast_info(&mut self, tcb: ObjId) {
        let generation = self.cap_generation;
        let Kernel {
            tcbs,
            cnodes,
            asids,
            ..
        } = self;
        let Some(t) = tcbs.get_mut(tcb) else {
            return;
        };
        if t.fast_generation == generation {
            return;
        }
        match compute_fast_info(t, cnodes, asids) {
            Some(info) => {
                t.fast = info;
                t.fast_generation = generation;
            }
            None => t.fast_generation = 0,
        }
    }
}

/// The bits of a message tag that hold its extra-cap count and length.
const CAPS_AND_LENGTH: Word = 0x1ff;
const _: () = {
    assert!(MessageInfo::new(0, 7, 3, 120).word() & !CAPS_AND_LENGTH == 7 << 9);
    assert!(MessageInfo::new(!0, 7, 0, 0).word() & CAPS_AND_LENGTH == 0);
};

/// Whether a message (its tag) is register-only: no extra caps, at most
/// the four register MRs (one comparison: with any extra cap the masked
/// bits exceed 4).
#[inline(always)]
fn is_register_only(info: Word) -> bool {
    info & CAPS_AND_LENGTH <= FAST_MESSAGE_REGISTERS as Word
}

/// The tag a register-only message (tag `info`) arrives with: its label
/// and length, no caps (`MessageInfo::new(label, 0, 0, length)`, in one
/// operation: the length needs no clamping and the label no masking).
#[inline(always)]
fn received_tag(info: Word) -> Word {
    info & (LABEL | LENGTH)
}

/// The bits of a message tag that hold its label.
const LABEL: Word = !0xfff;

/// The bits of a message tag that hold its length.
const LENGTH: Word = 0x7f;

/// [`received_tag`], for the tests.
#[cfg(test)]
pub fn received_tag_for_tests(info: Word) -> Word {
    received_tag(info)
}

/// The fastpaths' message transfer of a register-only message: the tag
/// into x1, the first `length` register MRs into x2.. (the others stay).
#[inline(always)]
fn transfer(to: &mut [Word; 31], from: &[Word; 31], info: Word) {
    to[1] = received_tag(info);
    copy_message_registers(to, from, (info & LENGTH) as usize);
}

fn compute_fast_info(t: &Tcb, cnodes: &Slab<CNode>, asids: &[Option<u64>]) -> Option<FastInfo> {
    let Cap::CNode {
        id,
        radix,
        guard_size,
        guard,
    } = t.slots[tcb_slot::CSPACE as usize].cap
    else {
        return None;
    };
    cnodes.get(id)?;
    // A root that does not resolve a CPtr alone (a multi-level CSpace)
    // leaves only the endpoint lookups the general path remembers.
    let direct = radix as u32 + guard_size as u32 == 64 && radix != 0;
    let Cap::VSpace {
        paddr,
        asid: Some(asid),
    } = t.slots[tcb_slot::VSPACE as usize].cap
    else {
        return None;
    };
    (asids.get(asid as usize).copied().flatten() == Some(paddr)).then_some(FastInfo {
        cnode: id,
        index_mask: super::cap::low_mask(radix as u32),
        guard_bits: if direct { guard << radix } else { u64::MAX },
        space: AddressSpace { root: paddr, asid },
        direct,
        ..FastInfo::NONE
    })
}

/// The endpoint cap a CPtr names, through a thread's cached CSpace root
/// and its cached last lookup (which this refreshes).
#[inline(always)]
fn fast_endpoint(
    cnodes: &Slab<CNode>,
    info: &mut FastInfo,
    cptr: Word,
) -> Option<(ObjId, Word, abi::CapRights)> {
    if info.endpoint_cptr == cptr {
        return Some((info.endpoint, info.endpoint_badge, info.endpoint_rights));
    }
    if !info.direct || cptr & !info.index_mask != info.guard_bits {
        return None;
    }
    let slots = &cnodes.get(info.cnode)?.slots;
    match slots.get((cptr & info.index_mask) as usize)?.cap {
        Cap::Endpoint { id, badge, rights } => {
            info.endpoint_cptr = cptr;
            info.endpoint = id;
            info.endpoint_badge = badge;
            info.endpoint_rights = rights;
            Some((id, badge, rights))
        }
        _ => None,
    }
}

/// The fastpaths' reply cap: in the receiver's caller slot `slot`, a child
/// of the caller's master reply cap `master` (what `cte_insert` does,
/// field by field), for caller `cur` and receiver `dest`.
#[inline(always)]
fn give_reply_cap(master: &mut Slot, slot: &mut Slot, cur: ObjId, dest: ObjId, can_grant: bool) {
    master.next = Some(SlotRef::tcb(dest, tcb_slot::CALLER));
    *slot = Slot {
        cap: Cap::Reply {
            tcb: cur,
            can_grant,
            master: false,
        },
        prev: Some(SlotRef::tcb(cur, tcb_slot::REPLY)),
        next: None,
        revocable: false,
        first_badged: false,
    };
}

/// Ends the removal of the head of `ep`'s queue, whose links are taken:
/// `next` (its successor) becomes the head, or the endpoint goes idle.
#[inline(always)]
fn pop_head(ep: &mut Endpoint, tcbs: &mut Slab<Boxed<Tcb>>, next: Option<ObjId>) {
    ep.queue.head = next;
    match next.and_then(|n| tcbs.get_mut(n)) {
        Some(n) => n.ipc_links.prev = None,
        None => {
            ep.queue.tail = None;
            ep.state = EndpointState::Idle;
        }
    }
}

/// What a fastpath leaves for the way out to user level.
#[derive(Clone, Copy, Debug)]
pub struct FastSwitch {
    /// The registers of the thread to resume: a pointer into its TCB, valid
    /// until the kernel's object tables next change (the architecture code
    /// restores from it at once).
    pub context: *mut Context,
    /// Its address space.
    pub space: AddressSpace,
}

/// Makes `next` the running thread at once (the fastpaths' switch: the
/// current thread has just blocked, and `next`, another thread, may run
/// before every queued thread), with a fresh time slice.
#[inline(always)]
fn fast_switch(sched: &mut super::sched::Scheduler, next: ObjId) {
    sched.ticks_left = super::sched::TIME_SLICE_TICKS;
    sched.current = Some(next);
}
