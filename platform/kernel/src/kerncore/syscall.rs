//! The system calls: seL4's `handleSyscall`, `handleInvocation` and `handleRecv`, and kernel entry.
//!
//! The architecture code saves the user registers into the current thread's
//! [`Context`](super::object::Context) and calls [`Kernel::handle_event`];
//! afterwards `sched.current` names the thread to resume (whose context it
//! restores) or `None` to idle. Register-only Call and ReplyRecv go through
//! [`Kernel::fastpath_call`] and [`Kernel::fastpath_reply_recv`] first, which
//! do the whole IPC in one step when the common conditions hold and
//! otherwise leave it to the general path.

use abi::error::{ErrorReply, LookupFailure};
use abi::fault::{CapFault, Fault, UnknownSyscall};
use abi::syscall::FAST_MESSAGE_REGISTERS;
use abi::{MessageInfo, Syscall, Word};

use super::Kernel;
use super::cap::{Cap, ObjId};
use super::invoke::Failure;
use super::object::{EndpointState, ThreadState, tcb_slot};
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

/// Copies the first `length` of the four register MRs into x2..x5 of a
/// receiver's registers, leaving the others as they were (branch-free and
/// without a variable-length copy: the fastpaths' transfer).
#[inline(always)]
fn copy_message_registers(x: &mut [Word; 31], mrs: &[Word; FAST_MESSAGE_REGISTERS], length: usize) {
    for i in 0..FAST_MESSAGE_REGISTERS {
        x[2 + i] = if i < length { mrs[i] } else { x[2 + i] };
    }
}

/// Longest string DebugPutString prints at once.
pub const MAX_DEBUG_STRING: u64 = 4096;

impl<M: Machine> Kernel<M> {
    /// Handles one kernel entry, then decides what runs next.
    pub fn handle_event(&mut self, event: Event) {
        match event {
            Event::Syscall => return self.enter_syscall(),
            Event::Fault(fault) => {
                if let Some(cur) = self.sched.current {
                    self.handle_fault(cur, fault);
                }
            }
            Event::Timer => self.timer_tick(),
            Event::Irq(irq) => self.handle_device_irq(irq),
        }
        self.schedule();
        self.activate();
    }

    /// A system call by the current thread (the hot entry: no [`Event`]
    /// to build), then the scheduling decision unless a fastpath made it.
    pub fn enter_syscall(&mut self) {
        self.handle_syscall();
        if core::mem::take(&mut self.sched.fast_switched) {
            return;
        }
        self.schedule();
        self.activate();
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
            Syscall::Call => {
                if !self.fastpath_call(cur) {
                    self.handle_invocation(cur, true, true);
                }
            }
            Syscall::Send => self.handle_invocation(cur, false, true),
            Syscall::NBSend => self.handle_invocation(cur, false, false),
            Syscall::Recv => self.handle_recv(cur, true),
            Syscall::NBRecv => self.handle_recv(cur, false),
            Syscall::Reply => self.handle_reply(cur),
            Syscall::ReplyRecv => {
                if !self.fastpath_reply_recv(cur) {
                    self.handle_reply(cur);
                    self.handle_recv(cur, true);
                }
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
        let result: Result<Option<super::invoke::Reply>, Failure> = match cap {
            Cap::Endpoint { id, badge, rights } => {
                if rights.can_write() {
                    self.send_ipc(
                        blocking,
                        is_call,
                        badge,
                        rights.can_grant(),
                        rights.can_grant_reply(),
                        cur,
                        id,
                    );
                    Ok(None)
                } else {
                    Err(ErrorReply::InvalidCapability { index: 0 }.into())
                }
            }
            Cap::Notification { id, badge, rights } => {
                if rights.can_write() {
                    self.send_signal(id, badge);
                    Ok(None)
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
                Ok(None)
            }
            Cap::Reply { master: true, .. } | Cap::Null => {
                Err(ErrorReply::InvalidCapability { index: 0 }.into())
            }
            _ => {
                let mut mrs = [0; 64];
                let n = length.min(mrs.len());
                for (i, m) in mrs.iter_mut().enumerate().take(n) {
                    *m = self.get_mr(cur, buffer, i);
                }
                self.invoke(cur, cap, slot, info.label(), &mrs[..n], caps)
                    .map(Some)
            }
        };
        let still_running = self
            .tcbs
            .get(cur)
            .is_some_and(|t| t.state == ThreadState::Running);
        match result {
            Ok(Some(reply)) if is_call && still_running => {
                let n = self.set_mrs(cur, buffer, &reply.words[..reply.len]);
                self.set_badge_and_info(cur, 0, MessageInfo::new(0, 0, 0, n));
            }
            Err(failure) if is_call && still_running => {
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
            _ => {}
        }
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

    /// A thread's [`FastInfo`](super::object::FastInfo): cached, or
    /// computed and cached. `None` when its CSpace root is not a single
    /// CNode resolving whole CPtrs or its VSpace cannot run it.
    #[inline(always)]
    fn fast_info(&mut self, tcb: ObjId) -> Option<super::object::FastInfo> {
        let generation = self.cap_generation;
        let t = self.tcbs.get(tcb)?;
        if t.fast_generation == generation {
            return t.fast;
        }
        let info = self.compute_fast_info(t.ctable);
        let t = self.tcbs.get_mut(tcb)?;
        t.fast = info;
        t.fast_generation = generation;
        info
    }

    #[inline(never)]
    fn compute_fast_info(&self, ctable: ObjId) -> Option<super::object::FastInfo> {
        let slots = &self.cnodes.get(ctable)?.slots;
        let Cap::CNode {
            id,
            radix,
            guard_size,
            guard,
        } = slots[tcb_slot::CSPACE as usize].cap
        else {
            return None;
        };
        if radix as u32 + guard_size as u32 != 64 {
            return None;
        }
        let Cap::VSpace {
            paddr,
            asid: Some(asid),
        } = slots[tcb_slot::VSPACE as usize].cap
        else {
            return None;
        };
        (self.vspace_root(asid) == Some(paddr)).then_some(super::object::FastInfo {
            cnode: id,
            radix,
            guard,
            root: paddr,
            asid,
        })
    }

    /// The endpoint cap a CPtr names, through a thread's cached CSpace root.
    #[inline(always)]
    fn fast_endpoint(
        &self,
        info: &super::object::FastInfo,
        cptr: Word,
    ) -> Option<(ObjId, Word, abi::CapRights)> {
        if cptr >> info.radix != info.guard {
            return None;
        }
        let slots = &self.cnodes.get(info.cnode)?.slots;
        match slots
            .get((cptr & super::cap::low_mask(info.radix as u32)) as usize)?
            .cap
        {
            Cap::Endpoint { id, badge, rights } => Some((id, badge, rights)),
            _ => None,
        }
    }

    /// The fastpath of Call (seL4 `fastpath_call`): a register-only message
    /// on an endpoint where a receiver of at least the caller's priority
    /// waits. Checks everything first, then transfers the registers, gives
    /// the receiver the reply cap and switches to it directly. Returns
    /// false, having changed nothing, when any condition fails.
    pub fn fastpath_call(&mut self, cur: ObjId) -> bool {
        if !self.fastpath || self.sched.action != super::sched::Action::ResumeCurrent {
            return false;
        }
        let Some(t) = self.tcbs.get(cur) else {
            return false;
        };
        let info = MessageInfo::from_word(t.context.x[1]);
        if info.extra_caps() != 0 || info.length() > FAST_MESSAGE_REGISTERS {
            return false;
        }
        let (ctable, prio, cptr) = (t.ctable, t.priority, t.context.x[0]);
        let Some(mine) = self.fast_info(cur) else {
            return false;
        };
        let Some((id, badge, rights)) = self.fast_endpoint(&mine, cptr) else {
            return false;
        };
        if !rights.can_write() || !(rights.can_grant() || rights.can_grant_reply()) {
            return false;
        }
        let Some(ep) = self.endpoints.get(id) else {
            return false;
        };
        let Some(&dest) = ep.queue.front() else {
            return false;
        };
        if !matches!(ep.state, EndpointState::Recv) {
            return false;
        }
        let Some(d) = self.tcbs.get(dest) else {
            return false;
        };
        let ThreadState::BlockedOnReceive { can_grant, .. } = d.state else {
            return false;
        };
        let dest_ctable = d.ctable;
        if d.priority < prio {
            return false;
        }
        let Some(theirs) = self.fast_info(dest) else {
            return false;
        };
        let space = (theirs.root, theirs.asid);
        let caller_slot = super::object::SlotRef {
            cnode: dest_ctable,
            index: tcb_slot::CALLER,
        };
        if !self.slot(caller_slot).cap.is_null() {
            return false;
        }
        // Commit.
        let Some(ep) = self.endpoints.get_mut(id) else {
            return false;
        };
        ep.queue.pop_front();
        if ep.queue.is_empty() {
            ep.state = EndpointState::Idle;
        }
        let length = info.length();
        let Some(t) = self.tcbs.get_mut(cur) else {
            return false;
        };
        let regs = [
            t.context.x[2],
            t.context.x[3],
            t.context.x[4],
            t.context.x[5],
        ];
        t.state = ThreadState::BlockedOnReply;
        let Some(d) = self.tcbs.get_mut(dest) else {
            return false;
        };
        d.context.x[0] = badge;
        d.context.x[1] = MessageInfo::new(info.label(), 0, 0, length).word();
        copy_message_registers(&mut d.context.x, &regs, length);
        d.state = ThreadState::Running;
        self.link_reply_cap(cur, ctable, caller_slot, can_grant);
        self.fast_switch(dest, space);
        true
    }

    /// Puts a reply cap to `caller` (whose own CNode is `caller_ctable`) in
    /// the empty `slot`, as a child of its master reply cap: what
    /// `cte_insert` does for this case, field by field.
    #[inline(always)]
    fn link_reply_cap(
        &mut self,
        caller: ObjId,
        caller_ctable: ObjId,
        slot: super::object::SlotRef,
        can_grant: bool,
    ) {
        let master = super::object::SlotRef {
            cnode: caller_ctable,
            index: tcb_slot::REPLY,
        };
        let Some(m) = self.cnodes.get_mut(caller_ctable) else {
            return;
        };
        let m = &mut m.slots[tcb_slot::REPLY as usize];
        let next = m.next;
        m.next = Some(slot);
        if let Some(n) = next {
            self.slot_mut(n).prev = Some(slot);
        }
        let d = self.slot_mut(slot);
        d.cap = Cap::Reply {
            tcb: caller,
            can_grant,
            master: false,
        };
        d.prev = Some(master);
        d.next = next;
        d.revocable = false;
        d.first_badged = false;
    }

    /// Deletes the reply cap in `slot`: a leaf of the derivation tree whose
    /// deletion destroys nothing, so unlinking it is all (field by field).
    #[inline(always)]
    fn unlink_reply_cap(&mut self, slot: super::object::SlotRef) {
        let s = self.slot_mut(slot);
        let (prev, next, first_badged) = (s.prev, s.next, s.first_badged);
        s.cap = Cap::Null;
        s.prev = None;
        s.next = None;
        s.revocable = false;
        s.first_badged = false;
        if let Some(p) = prev {
            self.slot_mut(p).next = next;
        }
        if let Some(n) = next {
            let n = self.slot_mut(n);
            n.prev = prev;
            n.first_badged |= first_badged;
        }
    }

    /// The fastpath of ReplyRecv (seL4 `fastpath_reply_recv`): reply
    /// (register-only) to a caller waiting for it, then wait on the
    /// endpoint in x0 where no sender is queued, and run the caller at once.
    /// Returns false, having changed nothing, when any condition fails.
    pub fn fastpath_reply_recv(&mut self, cur: ObjId) -> bool {
        if !self.fastpath || self.sched.action != super::sched::Action::ResumeCurrent {
            return false;
        }
        let Some(t) = self.tcbs.get(cur) else {
            return false;
        };
        let info = MessageInfo::from_word(t.context.x[1]);
        if info.extra_caps() != 0
            || info.length() > FAST_MESSAGE_REGISTERS
            || t.bound_ntfn.is_some()
        {
            return false;
        }
        let (ctable, prio, cptr) = (t.ctable, t.priority, t.context.x[0]);
        let Some(mine) = self.fast_info(cur) else {
            return false;
        };
        let Some((id, _, rights)) = self.fast_endpoint(&mine, cptr) else {
            return false;
        };
        if !rights.can_read() {
            return false;
        }
        let Some(ep) = self.endpoints.get(id) else {
            return false;
        };
        if matches!(ep.state, EndpointState::Send) {
            return false;
        }
        let caller_slot = super::object::SlotRef {
            cnode: ctable,
            index: tcb_slot::CALLER,
        };
        let Cap::Reply {
            tcb: caller,
            master: false,
            ..
        } = self.slot(caller_slot).cap
        else {
            return false;
        };
        let Some(c) = self.tcbs.get(caller) else {
            return false;
        };
        if !matches!(c.state, ThreadState::BlockedOnReply)
            || c.fault.is_some()
            || c.priority < prio
            || self.sched.highest().is_some_and(|h| h > c.priority)
            || caller == cur
        {
            return false;
        }
        let Some(theirs) = self.fast_info(caller) else {
            return false;
        };
        let space = (theirs.root, theirs.asid);
        // Commit: the reply cap goes, the caller gets the message, we wait.
        self.unlink_reply_cap(caller_slot);
        let length = info.length();
        let Some(t) = self.tcbs.get_mut(cur) else {
            return false;
        };
        let regs = [
            t.context.x[2],
            t.context.x[3],
            t.context.x[4],
            t.context.x[5],
        ];
        t.state = ThreadState::BlockedOnReceive {
            ep: id,
            can_grant: rights.can_grant(),
        };
        let Some(c) = self.tcbs.get_mut(caller) else {
            return false;
        };
        c.context.x[0] = 0;
        c.context.x[1] = MessageInfo::new(info.label(), 0, 0, length).word();
        copy_message_registers(&mut c.context.x, &regs, length);
        c.state = ThreadState::Running;
        if let Some(ep) = self.endpoints.get_mut(id) {
            ep.queue.push_back(cur);
            ep.state = EndpointState::Recv;
        }
        self.fast_switch(caller, space);
        true
    }

    /// Makes `next` the running thread at once (the fastpaths' switch: the
    /// current thread has just blocked, and `next` may run before every
    /// queued thread).
    #[inline(always)]
    fn fast_switch(&mut self, next: ObjId, space: (u64, u16)) {
        if self.sched.current != Some(next) {
            self.sched.ticks_left = super::sched::TIME_SLICE_TICKS;
        }
        self.sched.current = Some(next);
        self.sched.fast_switched = true;
        self.sched.next_space = Some(space);
    }
}
