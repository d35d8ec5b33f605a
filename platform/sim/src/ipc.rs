//! Syscalls: IPC through endpoints, notifications, reply capabilities and fault delivery.
//!
//! The semantics are seL4's (non-MCS): Send and Call rendezvous with a
//! receiver or queue in FIFO order; NBSend drops the message when no
//! receiver waits; a Call leaves a one-shot reply capability in the
//! receiver's TCB (moved to a CNode slot by `CNode_SaveCaller`); a cap moves
//! only through an endpoint cap with Grant, and a cap to the receiving
//! endpoint itself arrives unwrapped as its badge; a send without Write is
//! dropped silently (a Call gets InvalidCapability); a receive without Read
//! is a capability fault. Signals OR badges into a notification, which wakes
//! a waiter, or the TCB bound to it if that TCB waits in a Recv.

use abi::error::LookupFailure;
use abi::fault::{CapFault, Fault};
use abi::{CapRights, ErrorReply, MessageInfo, Syscall, Word};

use crate::kernel::{Halt, Kernel, TraceEvent};
use crate::object::*;

/// How a syscall ends for the caller.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SysOut {
    /// It returns now with x0, x1 and MR0..MR3.
    Return { x0: Word, x1: Word, mrs: [Word; 4] },
    /// The caller blocked (or stopped); it continues when woken.
    Block,
}

/// Which kind of send a syscall is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendKind {
    Call,
    Send,
    NBSend,
}

impl Kernel {
    /// Handles one syscall of thread `me`.
    pub fn syscall(
        &mut self,
        me: ObjId,
        sys: Syscall,
        dest: Word,
        info: Word,
        mrs: [Word; 4],
    ) -> SysOut {
        self.record(TraceEvent::Syscall(me, sys.number()));
        if let Some(tcb) = self.objs.tcb_mut(me) {
            tcb.context[abi::invocation::CONTEXT_X0] = dest;
            tcb.context[abi::invocation::CONTEXT_X0 + 1] = info;
            tcb.context[abi::invocation::CONTEXT_X0 + 2..abi::invocation::CONTEXT_X0 + 6]
                .copy_from_slice(&mrs);
            tcb.context[abi::invocation::CONTEXT_X0 + 7] = sys.number() as Word;
        }
        if self.count_syscall(me) {
            return SysOut::Block;
        }
        let info = MessageInfo::from_word(info);
        let ret = SysOut::Return { x0: 0, x1: 0, mrs };
        match sys {
            Syscall::Call => self.send_or_invoke(me, dest, info, mrs, SendKind::Call),
            Syscall::Send => self.send_or_invoke(me, dest, info, mrs, SendKind::Send),
            Syscall::NBSend => self.send_or_invoke(me, dest, info, mrs, SendKind::NBSend),
            Syscall::Recv => self.recv(me, dest, true, mrs),
            Syscall::NBRecv => self.recv(me, dest, false, mrs),
            Syscall::Reply => {
                self.reply(me, info, mrs);
                ret
            }
            Syscall::ReplyRecv => {
                self.reply(me, info, mrs);
                self.recv(me, dest, true, mrs)
            }
            Syscall::Yield => {
                self.preempt = true;
                self.yield_back = true;
                ret
            }
            Syscall::DebugPutChar => {
                let c = [dest as u8];
                self.console_write(me, &String::from_utf8_lossy(&c));
                ret
            }
            Syscall::DebugHalt => {
                self.halted = Some(Halt::Requested(dest as i32));
                ret
            }
            Syscall::DebugPutString => {
                let len = (info.word()).min(1 << 16) as usize;
                let mut buf = vec![0; len];
                if self.peek_user(me, dest, &mut buf) {
                    self.console_write(me, &String::from_utf8_lossy(&buf));
                }
                ret
            }
        }
    }

    /// Counts a syscall of `me`'s process; fault injection may kill it here
    /// (then returns true, and the syscall does not happen).
    pub fn count_syscall(&mut self, me: ObjId) -> bool {
        if let Some(p) = self.objs.tcb(me).and_then(|t| t.process)
            && let Some(pr) = self.procs.get_mut(p)
        {
            pr.syscalls += 1;
            if pr.kill_at == Some(pr.syscalls) {
                let n = pr.syscalls;
                self.end_process(p, crate::kernel::ExitReason::KilledAtSyscall(n));
                return true;
            }
        }
        false
    }

    /// Reads a thread's memory without faulting (for DebugPutString).
    fn peek_user(&mut self, t: ObjId, vaddr: Word, buf: &mut [u8]) -> bool {
        let mut done = 0;
        while done < buf.len() {
            let Ok((pa, left)) = self.translate(t, vaddr + done as u64, false) else {
                return false;
            };
            let n = (left as usize).min(buf.len() - done);
            if !self.ram.read(pa, &mut buf[done..done + n]) {
                return false;
            }
            done += n;
        }
        true
    }

    /// Appends text to the console, line by line, attributed to `t`'s process.
    pub fn console_write(&mut self, t: ObjId, text: &str) {
        let pid = self.objs.tcb(t).and_then(|t| t.process);
        let mut line = match pid.and_then(|p| self.procs.get_mut(p)) {
            Some(p) => std::mem::take(&mut p.partial_line),
            None => String::new(),
        };
        for ch in text.chars() {
            if ch == '\n' {
                self.emit_line(pid, std::mem::take(&mut line));
            } else {
                line.push(ch);
            }
        }
        match pid.and_then(|p| self.procs.get_mut(p)) {
            Some(p) => p.partial_line = line,
            None if !line.is_empty() => self.emit_line(pid, line),
            None => {}
        }
    }

    pub fn emit_line(&mut self, pid: Option<usize>, text: String) {
        if self.echo {
            let name = pid
                .and_then(|p| self.procs.get(p))
                .map(|p| p.name.as_str())
                .unwrap_or("?");
            eprintln!("[{name}] {text}");
        }
        self.console.push(crate::kernel::ConsoleLine {
            pid: pid.map(crate::kernel::Pid),
            text,
        });
    }

    /// A send (Send, NBSend, Call) on a capability: IPC or an object invocation.
    fn send_or_invoke(
        &mut self,
        me: ObjId,
        dest: Word,
        info: MessageInfo,
        mrs: [Word; 4],
        kind: SendKind,
    ) -> SysOut {
        let ret = SysOut::Return { x0: 0, x1: 0, mrs };
        let (slot, cap) = match self.lookup(me, dest) {
            Ok(x) => x,
            Err(f) if kind != SendKind::NBSend => return self.cap_fault(me, dest, false, f),
            Err(_) => return ret,
        };
        let is_call = kind == SendKind::Call;
        let invalid = |k: &mut Kernel| {
            if is_call {
                k.error_reply(me, None, ErrorReply::InvalidCapability { index: 0 })
            } else {
                ret
            }
        };
        match cap {
            Cap::Endpoint { obj, badge, rights } => {
                if !rights.can_write() {
                    return invalid(self);
                }
                self.send_ipc(me, obj, badge, rights, kind, info, mrs)
            }
            Cap::Notification { obj, badge, rights } => {
                if !rights.can_write() {
                    return invalid(self);
                }
                self.signal(obj, badge);
                if is_call {
                    self.kernel_reply(me, 0, &[])
                } else {
                    ret
                }
            }
            Cap::Reply {
                tcb,
                nonce,
                can_grant,
            } => {
                self.do_reply(me, tcb, nonce, can_grant, info, mrs);
                self.delete_slot(slot);
                if is_call {
                    self.kernel_reply(me, 0, &[])
                } else {
                    ret
                }
            }
            Cap::Null => invalid(self),
            _ => self.invoke_object(me, slot, cap, info, mrs, kind),
        }
    }

    /// Reads the invocation's extra caps and arguments, performs it, replies.
    fn invoke_object(
        &mut self,
        me: ObjId,
        slot: SlotRef,
        cap: Cap,
        info: MessageInfo,
        mrs: [Word; 4],
        kind: SendKind,
    ) -> SysOut {
        let Some(tcb) = self.objs.tcb(me) else {
            return SysOut::Block;
        };
        let has_buffer = tcb.has_ipc_buffer();
        let ipc = tcb.ipc.clone();
        let (cptrs, args) = {
            let b = ipc.lock().unwrap_or_else(|e| e.into_inner());
            let n = if has_buffer { info.extra_caps() } else { 0 };
            let len = if has_buffer {
                info.length()
            } else {
                info.length().min(4)
            };
            let mut args: Vec<Word> = mrs[..len.min(4)].to_vec();
            if len > 4 {
                args.extend_from_slice(&b.msg[4..len]);
            }
            (b.caps_or_badges[..n].to_vec(), args)
        };
        let mut extra = Vec::with_capacity(cptrs.len());
        for c in cptrs {
            match self.lookup(me, c) {
                Ok(x) => extra.push(x),
                Err(f) if kind != SendKind::NBSend => return self.cap_fault(me, c, false, f),
                Err(_) => return SysOut::Return { x0: 0, x1: 0, mrs },
            }
        }
        let result = self.invoke(me, slot, cap, info.label(), &args, &extra);
        let alive_running = self
            .objs
            .tcb(me)
            .is_some_and(|t| t.state == ThreadState::Ready);
        let out = match (kind, result) {
            (SendKind::Call, Ok(words)) => self.kernel_reply(me, 0, &words),
            (SendKind::Call, Err(e)) => self.error_reply(me, e.frame, e.error),
            _ => SysOut::Return { x0: 0, x1: 0, mrs },
        };
        if alive_running {
            out
        } else {
            // It stopped itself (suspend): the reply waits for its resumption.
            if let (Some(t), SysOut::Return { x0, x1, mrs }) = (self.objs.tcb_mut(me), out) {
                t.resume_result = Some(Wake::Done { x0, x1, mrs });
            }
            SysOut::Block
        }
    }

    /// A reply from the kernel: label and message words (the first four in registers).
    pub fn kernel_reply(&mut self, me: ObjId, label: Word, words: &[Word]) -> SysOut {
        let mut mrs = [0; 4];
        let n = words.len().min(abi::message::MAX_LENGTH);
        mrs[..n.min(4)].copy_from_slice(&words[..n.min(4)]);
        if n > 4
            && let Some(t) = self.objs.tcb(me)
        {
            let mut b = t.ipc.lock().unwrap_or_else(|e| e.into_inner());
            b.msg[4..n].copy_from_slice(&words[4..n]);
        }
        SysOut::Return {
            x0: 0,
            x1: MessageInfo::new(label, 0, 0, n).word(),
            mrs,
        }
    }

    /// An error reply: the code in the label, the details in the MRs
    /// (after the index of the frame at fault, for batched invocations).
    pub fn error_reply(&mut self, me: ObjId, frame: Option<Word>, e: ErrorReply) -> SysOut {
        let (m, n) = e.to_mrs();
        let mut words = Vec::with_capacity(7);
        if let Some(f) = frame {
            words.push(f);
        }
        words.extend_from_slice(&m[..n]);
        self.kernel_reply(me, e.code().word(), &words)
    }

    /// Sends on an endpoint.
    #[allow(clippy::too_many_arguments)]
    fn send_ipc(
        &mut self,
        me: ObjId,
        ep: ObjId,
        badge: Word,
        rights: CapRights,
        kind: SendKind,
        info: MessageInfo,
        mrs: [Word; 4],
    ) -> SysOut {
        let is_call = kind == SendKind::Call;
        let receiver = match self.objs.ep_mut(ep) {
            Some(e) if e.receivers => {
                let r = e.queue.pop_front();
                if e.queue.is_empty() {
                    e.receivers = false;
                }
                r
            }
            _ => None,
        };
        if let Some(r) = receiver {
            let r_grant = match self.objs.tcb(r).map(|t| t.state) {
                Some(ThreadState::BlockedOnRecv { can_grant, .. }) => can_grant,
                _ => false,
            };
            let (x0, x1, m) = self.transfer(me, r, Some(ep), badge, info, mrs, rights.can_grant());
            self.wake(r, Wake::Done { x0, x1, mrs: m });
            if is_call {
                if rights.can_grant() || rights.can_grant_reply() {
                    self.setup_caller(me, r, r_grant);
                } else if let Some(t) = self.objs.tcb_mut(me) {
                    t.state = ThreadState::Inactive;
                }
                return SysOut::Block;
            }
            return SysOut::Return { x0: 0, x1: 0, mrs };
        }
        if kind == SendKind::NBSend {
            return SysOut::Return { x0: 0, x1: 0, mrs };
        }
        if let Some(t) = self.objs.tcb_mut(me) {
            t.state = ThreadState::BlockedOnSend {
                ep,
                badge,
                can_grant: rights.can_grant(),
                can_grant_reply: rights.can_grant_reply(),
                is_call,
            };
            t.pending = Some(Pending {
                info,
                mrs,
                fault: false,
            });
        }
        if let Some(e) = self.objs.ep_mut(ep) {
            e.queue.push_back(me);
            e.receivers = false;
        }
        SysOut::Block
    }

    /// Puts a one-shot reply cap to `caller` in `receiver`'s caller slot.
    fn setup_caller(&mut self, caller: ObjId, receiver: ObjId, can_grant: bool) {
        self.delete_slot(SlotRef::Tcb(receiver, TcbSlot::Caller));
        let nonce = self.new_nonce();
        if let Some(t) = self.objs.tcb_mut(caller) {
            t.state = ThreadState::BlockedOnReply;
            t.reply_nonce = nonce;
        }
        let id = self.insert_cap(
            SlotRef::Tcb(receiver, TcbSlot::Caller),
            Cap::Reply {
                tcb: caller,
                nonce,
                can_grant,
            },
            None,
            false,
        );
        if let Some(t) = self.objs.tcb_mut(caller) {
            t.reply_cap = Some(id);
        }
    }

    /// Copies a message from `from` to `to`: registers, buffer words, caps.
    /// Returns the receiver's x0 (badge), x1 (info) and MR0..MR3.
    #[allow(clippy::too_many_arguments)]
    fn transfer(
        &mut self,
        from: ObjId,
        to: ObjId,
        ep: Option<ObjId>,
        badge: Word,
        info: MessageInfo,
        mrs: [Word; 4],
        can_grant: bool,
    ) -> (Word, Word, [Word; 4]) {
        let (Some(f), Some(t)) = (self.objs.tcb(from), self.objs.tcb(to)) else {
            return (badge, 0, mrs);
        };
        let both = f.has_ipc_buffer() && t.has_ipc_buffer();
        let (fb, tb) = (f.ipc.clone(), t.ipc.clone());
        let len = if both {
            info.length()
        } else {
            info.length().min(4)
        };
        let mut cptrs = Vec::new();
        if !std::sync::Arc::ptr_eq(&fb, &tb) {
            let src = fb.lock().unwrap_or_else(|e| e.into_inner());
            if len > 4 {
                let mut dst = tb.lock().unwrap_or_else(|e| e.into_inner());
                dst.msg[4..len].copy_from_slice(&src.msg[4..len]);
            }
            if both && can_grant {
                cptrs.extend_from_slice(&src.caps_or_badges[..info.extra_caps()]);
            }
        }
        let mut caps = Vec::new();
        for c in cptrs {
            match self.lookup(from, c) {
                Ok(x) => caps.push(x),
                Err(_) => {
                    caps.clear();
                    break;
                }
            }
        }
        let mut unwrapped = 0u8;
        let mut count = 0;
        if !caps.is_empty() {
            let mut dest = self.receive_slot(to);
            for (i, (slot, cap)) in caps.iter().enumerate() {
                match *cap {
                    Cap::Endpoint { obj, badge: b, .. } if Some(obj) == ep => {
                        let mut dst = tb.lock().unwrap_or_else(|e| e.into_inner());
                        dst.caps_or_badges[i] = b;
                        unwrapped |= 1 << i;
                    }
                    _ => {
                        let Some(d) = dest else { break };
                        match self.derive(*slot, *cap) {
                            Ok(c) if !c.is_null() => {
                                self.derive_insert(*slot, c, d);
                                dest = None;
                            }
                            _ => break,
                        }
                    }
                }
                count = i + 1;
            }
        }
        (
            badge,
            MessageInfo::new(info.label(), unwrapped, count, len).word(),
            mrs,
        )
    }

    /// The empty slot a thread receives a cap into, per its IPC buffer.
    fn receive_slot(&self, t: ObjId) -> Option<SlotRef> {
        let (cnode, index, depth) = {
            let b = self
                .objs
                .tcb(t)?
                .ipc
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            (b.receive_cnode, b.receive_index, b.receive_depth)
        };
        let (_, root) = self.lookup(t, cnode).ok()?;
        let slot = self.lookup_for_op(false, root, index, depth).ok()?;
        self.cap(slot).is_null().then_some(slot)
    }

    /// seL4's deriveCap: the cap a copy of `cap` (in `slot`) may be.
    pub fn derive(&self, slot: SlotRef, cap: Cap) -> Result<Cap, ErrorReply> {
        Ok(match cap {
            Cap::Untyped { .. } => {
                if self.has_children(slot) {
                    return Err(ErrorReply::RevokeFirst);
                }
                cap
            }
            Cap::Reply { .. } | Cap::IrqControl => Cap::Null,
            Cap::PageTable { mapped: None, .. } => return Err(ErrorReply::IllegalOperation),
            Cap::VSpace { obj, .. } => {
                if self.vspace_asid(obj).is_none() {
                    return Err(ErrorReply::IllegalOperation);
                }
                cap
            }
            Cap::Frame {
                obj,
                paddr,
                size_bits,
                rights,
                device,
                ..
            } => Cap::Frame {
                obj,
                paddr,
                size_bits,
                rights,
                device,
                mapped: None,
            },
            c => c,
        })
    }

    /// Receives on an endpoint or notification (Recv, NBRecv, the second half of ReplyRecv).
    ///
    /// As seL4's handleRecv, the thread's pending reply cap is deleted only
    /// once the lookup has found an endpoint it may receive on; a failed
    /// lookup or a notification leaves it in place.
    fn recv(&mut self, me: ObjId, cptr: Word, blocking: bool, mrs: [Word; 4]) -> SysOut {
        let cap = match self.lookup(me, cptr) {
            Ok((_, c)) => c,
            Err(f) => return self.cap_fault(me, cptr, true, f),
        };
        let none = SysOut::Return { x0: 0, x1: 0, mrs };
        let missing = LookupFailure::MissingCapability { bits_left: 0 };
        match cap {
            Cap::Endpoint { obj, rights, .. } => {
                if !rights.can_read() {
                    return self.cap_fault(me, cptr, true, missing);
                }
                self.delete_slot(SlotRef::Tcb(me, TcbSlot::Caller));
                if let Some(word) = self.take_bound_signal(me) {
                    return SysOut::Return {
                        x0: word,
                        x1: 0,
                        mrs,
                    };
                }
                let sender = match self.objs.ep_mut(obj) {
                    Some(e) if !e.receivers => e.queue.pop_front(),
                    _ => None,
                };
                if let Some(s) = sender {
                    return self.take_from_sender(me, s, obj, rights);
                }
                if !blocking {
                    return none;
                }
                if let Some(t) = self.objs.tcb_mut(me) {
                    t.state = ThreadState::BlockedOnRecv {
                        ep: obj,
                        can_grant: rights.can_grant(),
                    };
                }
                if let Some(e) = self.objs.ep_mut(obj) {
                    e.queue.push_back(me);
                    e.receivers = true;
                }
                SysOut::Block
            }
            Cap::Notification { obj, rights, .. } => {
                let bound = self.objs.ntfn_mut(obj).and_then(|n| n.bound);
                if !rights.can_read() || bound.is_some_and(|b| b != me) {
                    return self.cap_fault(me, cptr, true, missing);
                }
                let n = match self.objs.ntfn_mut(obj) {
                    Some(n) => n,
                    None => return none,
                };
                if n.active {
                    n.active = false;
                    let word = std::mem::take(&mut n.word);
                    return SysOut::Return {
                        x0: word,
                        x1: 0,
                        mrs,
                    };
                }
                if !blocking {
                    return none;
                }
                n.waiters.push_back(me);
                if let Some(t) = self.objs.tcb_mut(me) {
                    t.state = ThreadState::BlockedOnNotification { ntfn: obj };
                }
                SysOut::Block
            }
            _ => self.cap_fault(me, cptr, true, missing),
        }
    }

    /// An active bound notification completes a Recv at once.
    fn take_bound_signal(&mut self, me: ObjId) -> Option<Word> {
        let n = self.objs.tcb(me)?.bound?;
        let ntfn = self.objs.ntfn_mut(n)?;
        if !ntfn.active {
            return None;
        }
        ntfn.active = false;
        Some(std::mem::take(&mut ntfn.word))
    }

    /// Receiver `me` takes the message of the queued sender `s`.
    fn take_from_sender(&mut self, me: ObjId, s: ObjId, ep: ObjId, rights: CapRights) -> SysOut {
        let Some(st) = self.objs.tcb_mut(s) else {
            return SysOut::Block;
        };
        let ThreadState::BlockedOnSend {
            badge,
            can_grant,
            can_grant_reply,
            is_call,
            ..
        } = st.state
        else {
            return SysOut::Block;
        };
        let pending = st.pending.take();
        let fault = st.fault;
        let (x0, x1, m) = match (pending, fault) {
            (Some(p), Some(f)) if p.fault => self.fault_message(me, badge, f),
            (Some(p), _) => self.transfer(s, me, Some(ep), badge, p.info, p.mrs, can_grant),
            (None, _) => (badge, 0, [0; 4]),
        };
        let faulting = pending.is_some_and(|p| p.fault);
        if is_call || faulting {
            if can_grant || can_grant_reply {
                self.setup_caller(s, me, rights.can_grant());
            } else if let Some(t) = self.objs.tcb_mut(s) {
                t.state = ThreadState::Inactive;
            }
        } else {
            let sm = pending.map(|p| p.mrs).unwrap_or([0; 4]);
            if let Some(t) = self.objs.tcb_mut(s) {
                t.state = ThreadState::Inactive;
            }
            self.wake(
                s,
                Wake::Done {
                    x0: 0,
                    x1: 0,
                    mrs: sm,
                },
            );
        }
        SysOut::Return { x0, x1, mrs: m }
    }

    /// Writes a fault message into receiver `r`'s registers and buffer.
    fn fault_message(&mut self, r: ObjId, badge: Word, f: Fault) -> (Word, Word, [Word; 4]) {
        let (words, n) = f.to_mrs();
        if let Some(t) = self.objs.tcb(r)
            && n > 4
        {
            let mut b = t.ipc.lock().unwrap_or_else(|e| e.into_inner());
            b.msg[4..n].copy_from_slice(&words[4..n]);
        }
        let mut m = [0; 4];
        m.copy_from_slice(&words[..4]);
        (
            badge,
            MessageInfo::new(f.label() as Word, 0, 0, n).word(),
            m,
        )
    }

    /// Delivers a fault of thread `t` to its fault endpoint, as a Call made on
    /// its behalf; with no valid handler the thread stops (and if it is a
    /// process's main thread, the process ends).
    pub fn send_fault(&mut self, t: ObjId, f: Fault) {
        self.record(TraceEvent::Fault(t));
        let Some(fault_ep) = self.objs.tcb(t).map(|x| x.fault_ep) else {
            return;
        };
        let handler = self.lookup(t, fault_ep).ok().map(|(_, c)| c);
        match handler {
            Some(Cap::Endpoint { obj, badge, rights })
                if rights.can_write() && (rights.can_grant() || rights.can_grant_reply()) =>
            {
                if let Some(x) = self.objs.tcb_mut(t) {
                    x.fault = Some(f);
                }
                let receiver = match self.objs.ep_mut(obj) {
                    Some(e) if e.receivers => {
                        let r = e.queue.pop_front();
                        if e.queue.is_empty() {
                            e.receivers = false;
                        }
                        r
                    }
                    _ => None,
                };
                if let Some(r) = receiver {
                    let r_grant = match self.objs.tcb(r).map(|x| x.state) {
                        Some(ThreadState::BlockedOnRecv { can_grant, .. }) => can_grant,
                        _ => false,
                    };
                    let (x0, x1, m) = self.fault_message(r, badge, f);
                    self.wake(r, Wake::Done { x0, x1, mrs: m });
                    self.setup_caller(t, r, r_grant);
                } else {
                    if let Some(x) = self.objs.tcb_mut(t) {
                        x.state = ThreadState::BlockedOnSend {
                            ep: obj,
                            badge,
                            can_grant: rights.can_grant(),
                            can_grant_reply: rights.can_grant_reply(),
                            is_call: true,
                        };
                        x.pending = Some(Pending {
                            info: MessageInfo::new(f.label() as Word, 0, 0, 0),
                            mrs: [0; 4],
                            fault: true,
                        });
                    }
                    if let Some(e) = self.objs.ep_mut(obj) {
                        e.queue.push_back(t);
                        e.receivers = false;
                    }
                }
            }
            _ => {
                // A double fault: the thread stops.
                self.cancel_ipc(t);
                let proc = self.objs.tcb_mut(t).and_then(|x| {
                    x.state = ThreadState::Inactive;
                    x.dead_fault = Some(f);
                    x.process
                });
                if let Some(p) = proc
                    && self.procs.get(p).and_then(|pr| pr.threads.first()) == Some(&t)
                {
                    self.end_process(p, crate::kernel::ExitReason::Faulted(f));
                }
            }
        }
    }

    /// A capability fault of the current syscall.
    pub fn cap_fault(
        &mut self,
        me: ObjId,
        cptr: Word,
        in_receive_phase: bool,
        failure: LookupFailure,
    ) -> SysOut {
        let pc = self
            .objs
            .tcb(me)
            .map(|t| t.context[abi::invocation::CONTEXT_PC])
            .unwrap_or(0);
        self.send_fault(
            me,
            Fault::CapFault(CapFault {
                pc,
                cptr,
                in_receive_phase,
                failure,
            }),
        );
        SysOut::Block
    }

    /// Reply through the caller slot (Reply, and the first half of ReplyRecv).
    fn reply(&mut self, me: ObjId, info: MessageInfo, mrs: [Word; 4]) {
        let slot = SlotRef::Tcb(me, TcbSlot::Caller);
        if let Cap::Reply {
            tcb,
            nonce,
            can_grant,
        } = self.cap(slot)
        {
            self.do_reply(me, tcb, nonce, can_grant, info, mrs);
        }
        self.delete_slot(slot);
    }

    /// Delivers a reply to `caller` if it still waits for this reply cap.
    fn do_reply(
        &mut self,
        me: ObjId,
        caller: ObjId,
        nonce: u64,
        can_grant: bool,
        info: MessageInfo,
        mrs: [Word; 4],
    ) {
        let Some(c) = self.objs.tcb_mut(caller) else {
            return;
        };
        if c.state != ThreadState::BlockedOnReply || c.reply_nonce != nonce {
            return;
        }
        c.reply_nonce = 0;
        c.reply_cap = None;
        match c.fault.take() {
            Some(Fault::VmFault(_)) | Some(Fault::CapFault(_)) => self.wake(caller, Wake::Restart),
            Some(_) => {
                if info.label() == 0 {
                    self.wake(caller, Wake::Restart);
                } else {
                    c.state = ThreadState::Inactive;
                }
            }
            None => {
                let (x0, x1, m) = self.transfer(me, caller, None, 0, info, mrs, can_grant);
                self.wake(caller, Wake::Done { x0, x1, mrs: m });
            }
        }
    }

    /// Signals a notification with a badge.
    pub fn signal(&mut self, n: ObjId, badge: Word) {
        let Some(ntfn) = self.objs.ntfn_mut(n) else {
            return;
        };
        if let Some(w) = ntfn.waiters.pop_front() {
            self.wake(
                w,
                Wake::Done {
                    x0: badge,
                    x1: 0,
                    mrs: [0; 4],
                },
            );
            return;
        }
        if let Some(t) = ntfn.bound
            && matches!(
                self.objs.tcb(t).map(|x| x.state),
                Some(ThreadState::BlockedOnRecv { .. })
            )
        {
            self.cancel_ipc(t);
            self.wake(
                t,
                Wake::Done {
                    x0: badge,
                    x1: 0,
                    mrs: [0; 4],
                },
            );
            return;
        }
        if let Some(ntfn) = self.objs.ntfn_mut(n) {
            ntfn.word |= badge;
            ntfn.active = true;
        }
    }
}
