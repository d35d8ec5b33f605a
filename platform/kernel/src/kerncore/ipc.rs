//! IPC: endpoints, notifications, message transfer, reply caps and fault delivery.
//!
//! seL4's (non-MCS) semantics, function by function: `sendIPC`,
//! `receiveIPC`, `doIPCTransfer` (registers, IPC buffer, capability
//! transfer and unwrapping), `setupCallerCap` (the one-shot reply cap in the
//! receiver's TCB), `doReplyTransfer`, `sendSignal`/`receiveSignal` on
//! notifications (and through a bound notification), `sendFaultIPC` and
//! `handleFaultReply`, and the cancellation paths used by suspend and delete.

use abi::fault::Fault;
use abi::ipc_buffer::{
    CAPS_OFFSET, MSG_OFFSET, RECEIVE_CNODE_OFFSET, RECEIVE_DEPTH_OFFSET, RECEIVE_INDEX_OFFSET,
};
use abi::syscall::FAST_MESSAGE_REGISTERS;
use abi::{MessageInfo, Word};

use super::Kernel;
use super::cap::{Cap, ObjId};
use super::object::{Chain, EndpointState, SlotRef, ThreadState, tcb_slot};
use crate::machine::Machine;

/// The capabilities a message carries, looked up in the sender's CSpace.
pub type ExtraCaps = [Option<(Cap, SlotRef)>; 3];

impl<M: Machine> Kernel<M> {
    /// seL4 `lookupIPCBuffer`: the physical address of a thread's IPC
    /// buffer, when it has a usable one (a receiver needs it writable).
    pub fn lookup_ipc_buffer(&self, tcb: ObjId, receiver: bool) -> Option<u64> {
        let t = self.tcbs.get(tcb)?;
        let cap = self.slot(self.tcb_slot(tcb, tcb_slot::BUFFER)).cap;
        let Cap::Frame {
            paddr,
            size_bits,
            device: false,
            rights,
            ..
        } = cap
        else {
            return None;
        };
        if !rights.can_read() || (receiver && !rights.can_write()) {
            return None;
        }
        Some(paddr + (t.ipc_buffer & ((1u64 << size_bits) - 1)))
    }

    /// Reads word `index` of the IPC buffer at `buffer`.
    pub fn buffer_word(&self, buffer: u64, index: usize) -> Word {
        self.machine.read_word(buffer + index as u64 * 8)
    }

    /// Writes word `index` of the IPC buffer at `buffer`.
    pub fn set_buffer_word(&mut self, buffer: u64, index: usize, value: Word) {
        self.machine.write_word(buffer + index as u64 * 8, value);
    }

    /// Message register `i` of a thread (x2..x5, then the IPC buffer).
    pub fn get_mr(&self, tcb: ObjId, buffer: Option<u64>, i: usize) -> Word {
        if i < FAST_MESSAGE_REGISTERS {
            self.tcbs.get(tcb).map_or(0, |t| t.context.x[2 + i])
        } else {
            buffer.map_or(0, |b| self.buffer_word(b, MSG_OFFSET + i))
        }
    }

    /// Sets message registers of a thread from `values`; returns how many
    /// fit (all of them with a buffer, at most 4 without).
    pub fn set_mrs(&mut self, tcb: ObjId, buffer: Option<u64>, values: &[Word]) -> usize {
        let mut n = 0;
        for (i, &v) in values.iter().enumerate() {
            if i < FAST_MESSAGE_REGISTERS {
                if let Some(t) = self.tcbs.get_mut(tcb) {
                    t.context.x[2 + i] = v;
                }
            } else if let Some(b) = buffer {
                self.set_buffer_word(b, MSG_OFFSET + i, v);
            } else {
                break;
            }
            n = i + 1;
        }
        n
    }

    /// Sets a thread's badge (x0) and message-info (x1) registers.
    pub fn set_badge_and_info(&mut self, tcb: ObjId, badge: Word, info: MessageInfo) {
        if let Some(t) = self.tcbs.get_mut(tcb) {
            t.context.x[0] = badge;
            t.context.x[1] = info.word();
        }
    }

    /// seL4 `lookupExtraCaps`: the caps named in the IPC buffer's
    /// `caps_or_badges`; `Err` carries the CPtr and why it failed.
    pub fn lookup_extra_caps(
        &self,
        tcb: ObjId,
        buffer: Option<u64>,
        info: MessageInfo,
    ) -> Result<ExtraCaps, (Word, abi::error::LookupFailure)> {
        let mut caps: ExtraCaps = [None; 3];
        let Some(buffer) = buffer else {
            return Ok(caps);
        };
        for (i, c) in caps.iter_mut().enumerate().take(info.extra_caps()) {
            let cptr = self.buffer_word(buffer, CAPS_OFFSET + i);
            let slot = self.lookup_slot(tcb, cptr).map_err(|f| (cptr, f))?;
            *c = Some((self.slot(slot).cap, slot));
        }
        Ok(caps)
    }

    /// seL4 `sendIPC`.
    #[allow(clippy::too_many_arguments)]
    pub fn send_ipc(
        &mut self,
        blocking: bool,
        do_call: bool,
        badge: Word,
        can_grant: bool,
        can_grant_reply: bool,
        thread: ObjId,
        ep: ObjId,
    ) {
        let Some(e) = self.endpoints.get_mut(ep) else {
            return;
        };
        match e.state {
            EndpointState::Idle | EndpointState::Send => {
                if blocking {
                    e.queue.push_back(&mut self.tcbs, Chain::Ipc, thread);
                    e.state = EndpointState::Send;
                    self.set_thread_state(
                        thread,
                        ThreadState::BlockedOnSend {
                            ep,
                            badge,
                            can_grant,
                            can_grant_reply,
                            is_call: do_call,
                        },
                    );
                }
            }
            EndpointState::Recv => {
                let Some(dest) = e.queue.pop_front(&mut self.tcbs, Chain::Ipc) else {
                    e.state = EndpointState::Idle;
                    return;
                };
                if e.queue.is_empty() {
                    e.state = EndpointState::Idle;
                }
                let reply_can_grant = match self.tcbs.get(dest).map(|t| t.state) {
                    Some(ThreadState::BlockedOnReceive { can_grant, .. }) => can_grant,
                    _ => false,
                };
                self.do_ipc_transfer(thread, Some(ep), badge, can_grant, dest);
                self.set_thread_state(dest, ThreadState::Running);
                self.possible_switch_to(dest);
                if do_call {
                    if can_grant || can_grant_reply {
                        self.setup_caller_cap(thread, dest, reply_can_grant);
                    } else {
                        self.set_thread_state(thread, ThreadState::Inactive);
                    }
                }
            }
        }
    }

    /// seL4 `receiveIPC`: `cap` is the endpoint cap received on.
    pub fn receive_ipc(&mut self, thread: ObjId, cap: Cap, blocking: bool) {
        let Cap::Endpoint { id: ep, rights, .. } = cap else {
            return;
        };
        if let Some(ntfn) = self.tcbs.get(thread).and_then(|t| t.bound_ntfn)
            && self.notifications.get(ntfn).is_some_and(|n| n.active)
        {
            self.complete_signal(ntfn, thread);
            return;
        }
        let Some(e) = self.endpoints.get_mut(ep) else {
            return;
        };
        match e.state {
            EndpointState::Idle | EndpointState::Recv => {
                if blocking {
                    e.queue.push_back(&mut self.tcbs, Chain::Ipc, thread);
                    e.state = EndpointState::Recv;
                    self.set_thread_state(
                        thread,
                        ThreadState::BlockedOnReceive {
                            ep,
                            can_grant: rights.can_grant(),
                        },
                    );
                } else {
                    self.nb_recv_failed(thread);
                }
            }
            EndpointState::Send => {
                let Some(sender) = e.queue.pop_front(&mut self.tcbs, Chain::Ipc) else {
                    e.state = EndpointState::Idle;
                    return;
                };
                if e.queue.is_empty() {
                    e.state = EndpointState::Idle;
                }
                let Some(ThreadState::BlockedOnSend {
                    badge,
                    can_grant,
                    can_grant_reply,
                    is_call,
                    ..
                }) = self.tcbs.get(sender).map(|t| t.state)
                else {
                    return;
                };
                self.do_ipc_transfer(sender, Some(ep), badge, can_grant, thread);
                let faulted = self.tcbs.get(sender).is_some_and(|t| t.fault.is_some());
                if is_call || faulted {
                    if can_grant || can_grant_reply {
                        self.setup_caller_cap(sender, thread, rights.can_grant());
                    } else {
                        self.set_thread_state(sender, ThreadState::Inactive);
                    }
                } else {
                    self.set_thread_state(sender, ThreadState::Running);
                    self.possible_switch_to(sender);
                }
            }
        }
    }

    /// seL4 `doNBRecvFailedTransfer`: a poll found nothing.
    pub fn nb_recv_failed(&mut self, thread: ObjId) {
        self.set_badge_and_info(thread, 0, MessageInfo::new(0, 0, 0, 0));
    }

    /// seL4 `doIPCTransfer`: a message (or the sender's fault) to the receiver.
    pub fn do_ipc_transfer(
        &mut self,
        sender: ObjId,
        ep: Option<ObjId>,
        badge: Word,
        can_grant: bool,
        receiver: ObjId,
    ) {
        let rbuf = self.lookup_ipc_buffer(receiver, true);
        match self.tcbs.get(sender).and_then(|t| t.fault) {
            None => {
                let sbuf = self.lookup_ipc_buffer(sender, false);
                self.do_normal_transfer(sender, sbuf, ep, badge, can_grant, receiver, rbuf);
            }
            Some(fault) => self.do_fault_transfer(badge, fault, receiver, rbuf),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn do_normal_transfer(
        &mut self,
        sender: ObjId,
        sbuf: Option<u64>,
        ep: Option<ObjId>,
        badge: Word,
        can_grant: bool,
        receiver: ObjId,
        rbuf: Option<u64>,
    ) {
        let Some(tag) = self
            .tcbs
            .get(sender)
            .map(|t| MessageInfo::from_word(t.context.x[1]))
        else {
            return;
        };
        let caps = if can_grant {
            self.lookup_extra_caps(sender, sbuf, tag)
                .unwrap_or([None; 3])
        } else {
            [None; 3]
        };
        let length = self.copy_mrs(sender, sbuf, receiver, rbuf, tag.length());
        let (extra, unwrapped) = self.transfer_caps(caps, ep, receiver, rbuf);
        self.set_badge_and_info(
            receiver,
            badge,
            MessageInfo::new(tag.label(), unwrapped, extra, length),
        );
    }

    /// seL4 `copyMRs`: returns how many message registers arrived.
    pub fn copy_mrs(
        &mut self,
        sender: ObjId,
        sbuf: Option<u64>,
        receiver: ObjId,
        rbuf: Option<u64>,
        n: usize,
    ) -> usize {
        let fast = n.min(FAST_MESSAGE_REGISTERS);
        let mut regs = [0; FAST_MESSAGE_REGISTERS];
        if let Some(s) = self.tcbs.get(sender) {
            regs[..fast].copy_from_slice(&s.context.x[2..2 + fast]);
        }
        if let Some(r) = self.tcbs.get_mut(receiver) {
            r.context.x[2..2 + fast].copy_from_slice(&regs[..fast]);
        }
        match (sbuf, rbuf) {
            (Some(s), Some(r)) if n > fast => {
                for i in fast..n {
                    let w = self.buffer_word(s, MSG_OFFSET + i);
                    self.set_buffer_word(r, MSG_OFFSET + i, w);
                }
                n
            }
            _ => fast,
        }
    }

    /// seL4 `getReceiveSlots`: the empty slot the receiver named for a cap.
    fn receive_slot(&self, receiver: ObjId, rbuf: u64) -> Option<SlotRef> {
        let cptr = self.buffer_word(rbuf, RECEIVE_CNODE_OFFSET);
        let index = self.buffer_word(rbuf, RECEIVE_INDEX_OFFSET);
        let depth = self.buffer_word(rbuf, RECEIVE_DEPTH_OFFSET);
        let (root, _) = self.lookup_cap(receiver, cptr).ok()?;
        let slot = self
            .lookup_slot_for_cnode_op(false, root, index, depth)
            .ok()?;
        self.slot(slot).cap.is_null().then_some(slot)
    }

    /// seL4 `transferCaps`: returns (extra caps delivered, unwrapped bits).
    fn transfer_caps(
        &mut self,
        caps: ExtraCaps,
        ep: Option<ObjId>,
        receiver: ObjId,
        rbuf: Option<u64>,
    ) -> (usize, u8) {
        let Some(rbuf) = rbuf else {
            return (0, 0);
        };
        if caps[0].is_none() {
            return (0, 0);
        }
        let mut dest = self.receive_slot(receiver, rbuf);
        let mut unwrapped = 0u8;
        let mut count = 0;
        for (i, entry) in caps.iter().enumerate() {
            let Some((cap, slot)) = *entry else {
                break;
            };
            match cap {
                Cap::Endpoint { id, badge, .. } if Some(id) == ep => {
                    self.set_buffer_word(rbuf, CAPS_OFFSET + i, badge);
                    unwrapped |= 1 << i;
                }
                _ => {
                    let Some(d) = dest else {
                        break;
                    };
                    match self.derive_cap(slot, cap) {
                        Ok(derived) if !derived.is_null() => {
                            self.cte_insert(derived, slot, d);
                            dest = None;
                        }
                        _ => break,
                    }
                }
            }
            count = i + 1;
        }
        (count, unwrapped)
    }

    fn do_fault_transfer(&mut self, badge: Word, fault: Fault, receiver: ObjId, rbuf: Option<u64>) {
        let (mrs, n) = fault.to_mrs();
        let sent = self.set_mrs(receiver, rbuf, &mrs[..n]);
        self.set_badge_and_info(
            receiver,
            badge,
            MessageInfo::new(fault.label() as Word, 0, 0, sent),
        );
    }

    /// seL4 `setupCallerCap`: the sender waits for a reply through a reply
    /// cap placed in the receiver's caller slot.
    pub fn setup_caller_cap(&mut self, sender: ObjId, receiver: ObjId, can_grant: bool) {
        self.set_thread_state(sender, ThreadState::BlockedOnReply);
        let reply = self.tcb_slot(sender, tcb_slot::REPLY);
        let caller = self.tcb_slot(receiver, tcb_slot::CALLER);
        if !self.slot(caller).cap.is_null() {
            self.delete_slot(caller);
        }
        self.cte_insert(
            Cap::Reply {
                tcb: sender,
                can_grant,
                master: false,
            },
            reply,
            caller,
        );
    }

    /// seL4 `doReplyTransfer`: `sender` replies through the reply cap in
    /// `slot` to `receiver`.
    pub fn do_reply_transfer(
        &mut self,
        sender: ObjId,
        receiver: ObjId,
        slot: SlotRef,
        grant: bool,
    ) {
        if self.tcbs.get(receiver).map(|t| t.state) != Some(ThreadState::BlockedOnReply) {
            self.delete_slot(slot);
            return;
        }
        match self.tcbs.get(receiver).and_then(|t| t.fault) {
            None => {
                self.do_ipc_transfer(sender, None, 0, grant, receiver);
                self.delete_slot(slot);
                self.set_thread_state(receiver, ThreadState::Running);
                self.possible_switch_to(receiver);
            }
            Some(fault) => {
                self.delete_slot(slot);
                let restart = self.handle_fault_reply(receiver, sender, fault);
                if let Some(t) = self.tcbs.get_mut(receiver) {
                    t.fault = None;
                }
                if restart {
                    self.set_thread_state(receiver, ThreadState::Restart);
                    self.possible_switch_to(receiver);
                } else {
                    self.set_thread_state(receiver, ThreadState::Inactive);
                }
            }
        }
    }

    /// seL4 `handleReply`: reply through the caller slot, if it holds a reply cap.
    pub fn handle_reply(&mut self, thread: ObjId) {
        let slot = self.tcb_slot(thread, tcb_slot::CALLER);
        if let Cap::Reply {
            tcb,
            can_grant,
            master: false,
        } = self.slot(slot).cap
            && tcb != thread
        {
            self.do_reply_transfer(thread, tcb, slot, can_grant);
        }
    }

    /// seL4 `handleFaultReply`: what the handler's reply means for the
    /// faulted thread; returns whether it restarts.
    fn handle_fault_reply(&mut self, receiver: ObjId, sender: ObjId, fault: Fault) -> bool {
        let Some(tag) = self
            .tcbs
            .get(sender)
            .map(|t| MessageInfo::from_word(t.context.x[1]))
        else {
            return false;
        };
        let sbuf = self.lookup_ipc_buffer(sender, false);
        let label = tag.label();
        let n = tag.length();
        let mr = |k: &Self, i: usize| if i < n { k.get_mr(sender, sbuf, i) } else { 0 };
        match fault {
            Fault::CapFault(_) | Fault::VmFault(_) => true,
            Fault::UnknownSyscall(_) => {
                // MRs: x0..x7, pc, sp, lr, spsr.
                let words: [Word; 12] = core::array::from_fn(|i| mr(self, i));
                if let Some(t) = self.tcbs.get_mut(receiver) {
                    let c = &mut t.context;
                    for (i, &w) in words.iter().enumerate().take(n.min(8)) {
                        c.x[i] = w;
                    }
                    if n > 8 {
                        c.restart_pc = words[8];
                    }
                    if n > 9 {
                        c.sp = words[9];
                    }
                    if n > 10 {
                        c.x[30] = words[10];
                    }
                    if n > 11 {
                        c.spsr = sanitise_spsr(words[11]);
                    }
                }
                label == 0
            }
            Fault::UserException(_) => {
                // MRs: pc, sp, spsr.
                let words: [Word; 3] = core::array::from_fn(|i| mr(self, i));
                if let Some(t) = self.tcbs.get_mut(receiver) {
                    let c = &mut t.context;
                    if n > 0 {
                        c.restart_pc = words[0];
                    }
                    if n > 1 {
                        c.sp = words[1];
                    }
                    if n > 2 {
                        c.spsr = sanitise_spsr(words[2]);
                    }
                }
                label == 0
            }
        }
    }

    /// seL4 `handleFault` / `sendFaultIPC`: the thread's fault goes as a
    /// message to its fault endpoint; with no valid one the thread stops.
    pub fn handle_fault(&mut self, thread: ObjId, fault: Fault) {
        let Some(t) = self.tcbs.get_mut(thread) else {
            return;
        };
        t.fault = Some(fault);
        let cptr = t.fault_ep;
        match self.lookup_cap(thread, cptr) {
            Ok((cap @ Cap::Endpoint { id, badge, rights }, _))
                if rights.can_write() && (rights.can_grant() || rights.can_grant_reply()) =>
            {
                self.remember_endpoint(thread, cptr, cap);
                self.send_ipc(
                    true,
                    true,
                    badge,
                    rights.can_grant(),
                    rights.can_grant_reply(),
                    thread,
                    id,
                );
            }
            _ => {
                let name = self.tcbs.get(thread).map(|t| t.name).unwrap_or([0; 16]);
                let len = name.iter().position(|&b| b == 0).unwrap_or(16);
                let name = core::str::from_utf8(&name[..len]).unwrap_or("?");
                self.print(format_args!(
                    "kernel: thread `{name}` stopped: unhandled {}\n",
                    describe_fault(&fault)
                ));
                if let Some(t) = self.tcbs.get_mut(thread) {
                    t.fault = None;
                }
                self.set_thread_state(thread, ThreadState::Inactive);
            }
        }
    }

    /// seL4 `sendSignal`.
    pub fn send_signal(&mut self, ntfn: ObjId, badge: Word) {
        let Some(n) = self.notifications.get_mut(ntfn) else {
            return;
        };
        if n.active {
            n.word |= badge;
            return;
        }
        if let Some(dest) = n.waiting.pop_front(&mut self.tcbs, Chain::Ipc) {
            self.set_thread_state(dest, ThreadState::Running);
            self.set_badge_and_info(dest, badge, MessageInfo::new(0, 0, 0, 0));
            self.possible_switch_to(dest);
            return;
        }
        let bound = n.bound_tcb;
        if let Some(tcb) = bound
            && matches!(
                self.tcbs.get(tcb).map(|t| t.state),
                Some(ThreadState::BlockedOnReceive { .. })
            )
        {
            self.cancel_ipc(tcb);
            self.set_thread_state(tcb, ThreadState::Running);
            self.set_badge_and_info(tcb, badge, MessageInfo::new(0, 0, 0, 0));
            self.possible_switch_to(tcb);
            return;
        }
        if let Some(n) = self.notifications.get_mut(ntfn) {
            n.active = true;
            n.word = badge;
        }
    }

    /// seL4 `receiveSignal`: Wait (`blocking`) or Poll on a notification.
    pub fn receive_signal(&mut self, thread: ObjId, ntfn: ObjId, blocking: bool) {
        let Some(n) = self.notifications.get_mut(ntfn) else {
            return;
        };
        if n.active {
            self.complete_signal(ntfn, thread);
        } else if blocking {
            n.waiting.push_back(&mut self.tcbs, Chain::Ipc, thread);
            self.set_thread_state(thread, ThreadState::BlockedOnNotification { ntfn });
        } else {
            self.nb_recv_failed(thread);
        }
    }

    /// seL4 `completeSignal`: hands the pending word to `thread`.
    pub fn complete_signal(&mut self, ntfn: ObjId, thread: ObjId) {
        let Some(n) = self.notifications.get_mut(ntfn) else {
            return;
        };
        let word = n.word;
        n.word = 0;
        n.active = false;
        self.set_badge_and_info(thread, word, MessageInfo::new(0, 0, 0, 0));
    }

    /// seL4 `cancelIPC`: takes a thread out of whatever IPC it waits in.
    pub fn cancel_ipc(&mut self, thread: ObjId) {
        let Some(state) = self.tcbs.get(thread).map(|t| t.state) else {
            return;
        };
        match state {
            ThreadState::BlockedOnSend { ep, .. } | ThreadState::BlockedOnReceive { ep, .. } => {
                if let Some(e) = self.endpoints.get_mut(ep) {
                    e.queue.remove(&mut self.tcbs, Chain::Ipc, thread);
                    if e.queue.is_empty() {
                        e.state = EndpointState::Idle;
                    }
                }
                if let Some(t) = self.tcbs.get_mut(thread) {
                    t.fault = None;
                }
                self.set_thread_state(thread, ThreadState::Inactive);
            }
            ThreadState::BlockedOnNotification { ntfn } => {
                if let Some(n) = self.notifications.get_mut(ntfn) {
                    n.waiting.remove(&mut self.tcbs, Chain::Ipc, thread);
                }
                self.set_thread_state(thread, ThreadState::Inactive);
            }
            ThreadState::BlockedOnReply => {
                if let Some(t) = self.tcbs.get_mut(thread) {
                    t.fault = None;
                }
                let master = self.tcb_slot(thread, tcb_slot::REPLY);
                if let Some(next) = self.slot(master).next
                    && self.is_mdb_parent_of(master, next)
                {
                    self.delete_slot(next);
                }
            }
            _ => {}
        }
    }

    /// seL4 `suspend`.
    pub fn suspend(&mut self, thread: ObjId) {
        self.cancel_ipc(thread);
        if let Some(t) = self.tcbs.get_mut(thread)
            && matches!(t.state, ThreadState::Running)
        {
            t.context.restart_pc = t.context.pc;
        }
        self.set_thread_state(thread, ThreadState::Inactive);
        self.sched_dequeue(thread);
    }

    /// seL4 `restart` (TCB_Resume): a stopped thread runs again.
    pub fn restart(&mut self, thread: ObjId) {
        let stopped = matches!(
            self.tcbs.get(thread).map(|t| t.state),
            Some(ThreadState::Inactive | ThreadState::BlockedOnReply)
        );
        if stopped {
            self.cancel_ipc(thread);
            self.set_thread_state(thread, ThreadState::Restart);
            self.sched_enqueue(thread, false);
            self.possible_switch_to(thread);
        }
    }

    /// seL4 `cancelAllIPC`: an endpoint is being destroyed.
    pub fn cancel_all_ipc(&mut self, ep: ObjId) {
        let Some(e) = self.endpoints.get_mut(ep) else {
            return;
        };
        let mut at = core::mem::take(&mut e.queue).head;
        e.state = EndpointState::Idle;
        while let Some(thread) = at {
            at = self.unlink_waiter(thread);
            let faulted = self.tcbs.get(thread).is_some_and(|t| t.fault.is_some());
            if faulted {
                self.set_thread_state(thread, ThreadState::Inactive);
            } else {
                self.set_thread_state(thread, ThreadState::Restart);
                self.sched_enqueue(thread, false);
            }
        }
        self.reschedule_required();
    }

    /// seL4 `cancelAllSignals`: a notification is being destroyed.
    pub fn cancel_all_signals(&mut self, ntfn: ObjId) {
        let Some(n) = self.notifications.get_mut(ntfn) else {
            return;
        };
        let mut at = core::mem::take(&mut n.waiting).head;
        while let Some(thread) = at {
            at = self.unlink_waiter(thread);
            self.set_thread_state(thread, ThreadState::Restart);
            self.sched_enqueue(thread, false);
        }
        self.reschedule_required();
    }

    /// Clears the IPC links of a thread taken off a queue as a whole;
    /// returns the thread that followed it.
    fn unlink_waiter(&mut self, thread: ObjId) -> Option<ObjId> {
        let t = self.tcbs.get_mut(thread)?;
        core::mem::take(&mut t.ipc_links).next
    }

    /// seL4 `cancelBadgedSends`: senders with `badge` stop waiting and
    /// restart their send.
    pub fn cancel_badged_sends(&mut self, ep: ObjId, badge: Word) {
        let Some(e) = self.endpoints.get(ep) else {
            return;
        };
        if e.state != EndpointState::Send {
            return;
        }
        let mut at = e.queue.head;
        while let Some(thread) = at {
            let Some(t) = self.tcbs.get(thread) else {
                break;
            };
            at = t.ipc_links.next;
            if !matches!(t.state, ThreadState::BlockedOnSend { badge: b, .. } if b == badge) {
                continue;
            }
            if let Some(e) = self.endpoints.get_mut(ep) {
                e.queue.remove(&mut self.tcbs, Chain::Ipc, thread);
                if e.queue.is_empty() {
                    e.state = EndpointState::Idle;
                }
            }
            self.set_thread_state(thread, ThreadState::Restart);
            self.sched_enqueue(thread, false);
        }
        self.reschedule_required();
    }

    /// Unbinds a thread's notification, if any.
    pub fn unbind_notification(&mut self, tcb: ObjId) {
        if let Some(ntfn) = self.tcbs.get_mut(tcb).and_then(|t| t.bound_ntfn.take())
            && let Some(n) = self.notifications.get_mut(ntfn)
        {
            n.bound_tcb = None;
        }
    }
}

/// Keeps only the condition flags of a user-supplied SPSR and forces EL0t
/// with interrupts unmasked.
pub fn sanitise_spsr(spsr: Word) -> Word {
    spsr & 0xf000_0000
}

/// A one-line description of a fault, for the console (formats without
/// allocating).
pub fn describe_fault(fault: &Fault) -> impl core::fmt::Display + '_ {
    struct Describe<'a>(&'a Fault);
    impl core::fmt::Display for Describe<'_> {
        fn fmt(&self, out: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self.0 {
                Fault::VmFault(f) => write!(
                    out,
                    "{} fault at {:#x} (pc {:#x}, fsr {:#x})",
                    if f.instruction {
                        "instruction"
                    } else if f.is_write() {
                        "write"
                    } else {
                        "read"
                    },
                    f.addr,
                    f.ip,
                    f.fsr
                ),
                Fault::UnknownSyscall(s) => {
                    write!(out, "unknown syscall {} (pc {:#x})", s.syscall as i64, s.pc)
                }
                Fault::UserException(e) => write!(
                    out,
                    "user exception class {:#x} iss {:#x} (pc {:#x})",
                    e.number, e.code, e.pc
                ),
                Fault::CapFault(c) => write!(
                    out,
                    "capability fault on cptr {:#x} (pc {:#x})",
                    c.cptr, c.pc
                ),
            }
        }
    }
    Describe(fault)
}
