//! Object invocations: Untyped, CNode, TCB, frames, page tables, VSpaces, ASID pools, IRQs.
//!
//! Every invocation is decoded by [`abi::invocation::Invocation::decode`]
//! (the decoder the aarch64 kernel uses too), then checked argument by
//! argument in seL4's order; only when every check has passed does anything
//! change, so an invocation with bad arguments returns seL4's error code and
//! changes nothing.

use abi::error::LookupFailure;
use abi::invocation::{Invocation, MAX_BATCH_FRAMES, MAX_COPY_RUN, Target, USER_CONTEXT_WORDS};
use abi::object::{self, ObjectType};
use abi::vm::{EXECUTE_NEVER, USER_VADDR_END, USER_VADDR_MIN};
use abi::{CapRights, ErrorReply, Word};
use vmsa::PageAttrs;

use crate::kernel::{Kernel, mask};
use crate::object::*;

/// A failed invocation; `frame` is the index of the frame at fault in a
/// batched map or unmap (`Word::MAX` when no single frame is at fault).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InvErr {
    pub frame: Option<Word>,
    pub error: ErrorReply,
}

impl From<ErrorReply> for InvErr {
    fn from(error: ErrorReply) -> Self {
        InvErr { frame: None, error }
    }
}

type InvResult = Result<Vec<Word>, InvErr>;

use ErrorReply as E;

/// The failure of a lookup that ended on a missing table at `level`.
fn missing_table(level: u8) -> ErrorReply {
    E::FailedLookup {
        source: false,
        failure: LookupFailure::MissingCapability {
            bits_left: vmsa::level_shift(level.saturating_sub(1)) as u8,
        },
    }
}

/// seL4's maskCapRights.
fn mask_rights(cap: Cap, rights: CapRights) -> Cap {
    match cap {
        Cap::Endpoint {
            obj,
            badge,
            rights: r,
        } => Cap::Endpoint {
            obj,
            badge,
            rights: r.intersect(rights),
        },
        Cap::Notification {
            obj,
            badge,
            rights: r,
        } => Cap::Notification {
            obj,
            badge,
            rights: r.intersect(rights),
        },
        Cap::Frame {
            obj,
            paddr,
            size_bits,
            rights: r,
            device,
            mapped,
        } => Cap::Frame {
            obj,
            paddr,
            size_bits,
            rights: r.intersect(rights),
            device,
            mapped,
        },
        Cap::Reply {
            tcb,
            nonce,
            can_grant,
        } => Cap::Reply {
            tcb,
            nonce,
            can_grant: can_grant && rights.can_grant(),
        },
        c => c,
    }
}

/// seL4's updateCapData: set a badge (once) or a CNode guard. `Null` when not allowed.
pub(crate) fn update_cap_data(preserve: bool, data: Word, cap: Cap) -> Cap {
    match cap {
        Cap::Endpoint { obj, badge, rights } => {
            if !preserve && badge == 0 {
                Cap::Endpoint {
                    obj,
                    badge: data,
                    rights,
                }
            } else {
                Cap::Null
            }
        }
        Cap::Notification { obj, badge, rights } => {
            if !preserve && badge == 0 {
                Cap::Notification {
                    obj,
                    badge: data,
                    rights,
                }
            } else {
                Cap::Null
            }
        }
        Cap::CNode { obj, radix, .. } => {
            let guard_size = (data & 0x3f) as u8;
            if guard_size as u32 + radix as u32 > 64 {
                return Cap::Null;
            }
            Cap::CNode {
                obj,
                radix,
                guard: (data >> 6) & mask(guard_size as u32),
                guard_size,
            }
        }
        c => c,
    }
}

/// The page attributes a mapping with `rights` and `attr` gets.
fn page_attrs(rights: CapRights, attr: Word) -> PageAttrs {
    PageAttrs {
        user: true,
        writable: rights.can_write(),
        user_exec: attr & EXECUTE_NEVER == 0,
        kernel_exec: false,
        memory: match abi::vm::MemoryType::from_attributes(attr) {
            abi::vm::MemoryType::NormalWriteBack => vmsa::MemoryType::NormalWriteBack,
            abi::vm::MemoryType::NormalUncached => vmsa::MemoryType::NormalUncached,
            abi::vm::MemoryType::Device => vmsa::MemoryType::Device,
        },
        global: false,
    }
}

impl Kernel {
    /// Performs an invocation of `cap` (in `slot`) by thread `me`.
    pub fn invoke(
        &mut self,
        me: ObjId,
        slot: SlotRef,
        cap: Cap,
        label: Word,
        args: &[Word],
        extra: &[(SlotRef, Cap)],
    ) -> InvResult {
        let inv = Invocation::decode(label, args, extra.len())?;
        let ok = matches!(
            (inv.target(), cap),
            (Target::Untyped, Cap::Untyped { .. })
                | (Target::Tcb, Cap::Tcb { .. })
                | (Target::CNode, Cap::CNode { .. })
                | (Target::IrqControl, Cap::IrqControl)
                | (Target::IrqHandler, Cap::IrqHandler { .. })
                | (Target::PageTable, Cap::PageTable { .. })
                | (Target::Frame, Cap::Frame { .. })
                | (Target::AsidPool, Cap::AsidPool { .. })
                | (Target::VSpace, Cap::VSpace { .. })
        );
        if !ok {
            return Err(E::IllegalOperation.into());
        }
        use Invocation as I;
        match inv {
            I::UntypedRetype {
                object_type,
                size_bits,
                node_index,
                node_depth,
                node_offset,
                num_objects,
            } => self.retype(
                slot,
                cap,
                [
                    object_type,
                    size_bits,
                    node_index,
                    node_depth,
                    node_offset,
                    num_objects,
                ],
                extra[0].1,
            ),
            I::CNodeCopy { .. }
            | I::CNodeMint { .. }
            | I::CNodeMove { .. }
            | I::CNodeMutate { .. }
            | I::CNodeRevoke { .. }
            | I::CNodeDelete { .. }
            | I::CNodeSaveCaller { .. }
            | I::CNodeCancelBadgedSends { .. } => self.cnode_op(me, cap, inv, extra),
            I::CNodeCopyRun {
                dest_index,
                dest_depth,
                src_index,
                src_depth,
                count,
                rights,
            } => self.cnode_copy_run(
                cap,
                extra[0].1,
                [dest_index, dest_depth, src_index, src_depth, count, rights],
            ),
            I::TcbConfigure { .. }
            | I::TcbSetSpace { .. }
            | I::TcbSetIpcBuffer { .. }
            | I::TcbSetPriority { .. }
            | I::TcbSuspend
            | I::TcbResume
            | I::TcbReadRegisters { .. }
            | I::TcbWriteRegisters { .. }
            | I::TcbBindNotification
            | I::TcbUnbindNotification => {
                let Cap::Tcb { obj } = cap else {
                    return Err(E::IllegalOperation.into());
                };
                self.tcb_op(me, obj, inv, args, extra)
            }
            I::PageMap {
                vaddr,
                rights,
                attr,
            } => self.page_map(slot, cap, extra[0].1, vaddr, rights, attr),
            I::PageUnmap => {
                self.page_unmap(slot, cap);
                Ok(Vec::new())
            }
            I::PageGetAddress => match cap {
                Cap::Frame { paddr, .. } => Ok(vec![paddr]),
                _ => Err(E::IllegalOperation.into()),
            },
            I::PageTableMap { vaddr, .. } => self.page_table_map(slot, cap, extra[0].1, vaddr),
            I::PageTableUnmap => self.page_table_unmap(slot, cap),
            I::AsidPoolAssign => self.asid_assign(cap, extra[0].1),
            I::VSpaceMapFrames {
                first_frame,
                count,
                vaddr,
                rights,
                attr,
            } => self.map_frames(me, cap, first_frame, count, vaddr, rights, attr),
            I::VSpaceUnmapFrames { first_frame, count } => {
                self.unmap_frames(me, cap, first_frame, count)
            }
            I::VSpaceMapFrame {
                frame,
                vaddr,
                rights,
                attr,
            } => self.map_frames(me, cap, frame, 1, vaddr, rights, attr),
            I::IrqIssueIrqHandler { irq, index, depth } => {
                self.irq_issue(slot, extra[0].1, irq, index, depth)
            }
            I::IrqAckIrq | I::IrqSetIrqHandler | I::IrqClearIrqHandler => {
                let Cap::IrqHandler { irq } = cap else {
                    return Err(E::IllegalOperation.into());
                };
                self.irq_handler_op(irq, inv, extra)
            }
        }
    }

    // ----- Untyped -----

    fn retype(&mut self, slot: SlotRef, cap: Cap, a: [Word; 6], root: Cap) -> InvResult {
        let [
            object_type,
            size_bits,
            node_index,
            node_depth,
            node_offset,
            num_objects,
        ] = a;
        let Cap::Untyped {
            paddr,
            size_bits: ut_bits,
            device,
            free,
        } = cap
        else {
            return Err(E::IllegalOperation.into());
        };
        let ty = ObjectType::from_word(object_type).ok_or(E::InvalidArgument { index: 0 })?;
        if ty == ObjectType::HugePage {
            return Err(E::InvalidArgument { index: 0 }.into());
        }
        let obj_bits: u64 = match ty {
            ObjectType::Untyped => size_bits,
            ObjectType::CNode => size_bits.saturating_add(object::SLOT_BITS as u64),
            t => t.size_bits(0).unwrap_or(0) as u64,
        };
        if size_bits >= 64 || obj_bits > object::MAX_UNTYPED_BITS as u64 {
            return Err(E::RangeError {
                min: 0,
                max: object::MAX_UNTYPED_BITS as Word,
            }
            .into());
        }
        if (ty == ObjectType::Untyped && size_bits < object::MIN_UNTYPED_BITS as u64)
            || (ty == ObjectType::CNode && size_bits == 0)
        {
            return Err(E::InvalidArgument { index: 1 }.into());
        }
        if num_objects > object::MAX_RETYPE_COUNT {
            return Err(E::RangeError {
                min: 1,
                max: object::MAX_RETYPE_COUNT,
            }
            .into());
        }
        let node_cap = if node_depth == 0 {
            root
        } else {
            let s = self.lookup_for_op(false, root, node_index, node_depth)?;
            self.cap(s)
        };
        let Cap::CNode { obj: cn, radix, .. } = node_cap else {
            return Err(E::FailedLookup {
                source: false,
                failure: LookupFailure::MissingCapability {
                    bits_left: node_depth as u8,
                },
            }
            .into());
        };
        let node_size = 1u64 << radix.min(63);
        if node_offset > node_size - 1 {
            return Err(E::RangeError {
                min: 0,
                max: node_size - 1,
            }
            .into());
        }
        if num_objects < 1 || num_objects > node_size - node_offset {
            return Err(E::RangeError {
                min: 1,
                max: node_size - node_offset,
            }
            .into());
        }
        for i in node_offset..node_offset + num_objects {
            if !self.cap(SlotRef::CNode(cn, i as u32)).is_null() {
                return Err(E::DeleteFirst.into());
            }
        }
        let reset = !self.has_children(slot);
        let watermark = if reset { 0 } else { free };
        let ut_size = 1u64 << ut_bits;
        let available = ut_size.saturating_sub(watermark);
        let obj_bits = obj_bits as u32;
        if obj_bits > ut_bits as u32 || (available >> obj_bits) < num_objects {
            return Err(E::NotEnoughMemory { available }.into());
        }
        if device && !(ty.is_frame() || ty == ObjectType::Untyped) {
            return Err(E::InvalidArgument { index: 1 }.into());
        }
        let offset = object::retype_offset(ut_bits as u32, watermark, obj_bits, num_objects)
            .ok_or(E::NotEnoughMemory { available })?;
        self.retypes += 1;
        if self.fail_retypes.contains(&self.retypes) {
            return Err(E::NotEnoughMemory { available }.into());
        }
        // Every check passed: create.
        self.set_cap(
            slot,
            Cap::Untyped {
                paddr,
                size_bits: ut_bits,
                device,
                free: offset + (num_objects << obj_bits),
            },
        );
        let parent = self.slot(slot).map(|s| s.id);
        for i in 0..num_objects {
            let p = paddr + offset + (i << obj_bits);
            let new = self.create_object(ty, p, obj_bits, size_bits as u8, device, Origin::Untyped);
            self.insert_cap(
                SlotRef::CNode(cn, (node_offset + i) as u32),
                new,
                parent,
                true,
            );
        }
        Ok(Vec::new())
    }

    /// Makes an object of `ty` at `paddr` and returns a cap to it with all rights.
    pub fn create_object(
        &mut self,
        ty: ObjectType,
        paddr: u64,
        bits: u32,
        size_arg: u8,
        device: bool,
        origin: Origin,
    ) -> Cap {
        let new = |k: &mut Kernel, kind: Kind| {
            k.objs.insert(Object {
                kind,
                paddr,
                size_bits: bits,
                refs: 0,
                origin,
            })
        };
        match ty {
            ObjectType::Untyped => Cap::Untyped {
                paddr,
                size_bits: bits as u8,
                device,
                free: 0,
            },
            ObjectType::Tcb => Cap::Tcb {
                obj: new(self, Kind::Tcb(Box::new(Tcb::new()))),
            },
            ObjectType::Endpoint => Cap::Endpoint {
                obj: new(self, Kind::Endpoint(Endpoint::default())),
                badge: 0,
                rights: CapRights::ALL,
            },
            ObjectType::Notification => Cap::Notification {
                obj: new(self, Kind::Notification(Notification::default())),
                badge: 0,
                rights: CapRights::ALL,
            },
            ObjectType::CNode => Cap::CNode {
                obj: new(self, Kind::CNode(CNodeSlots::new(size_arg))),
                radix: size_arg,
                guard: 0,
                guard_size: 0,
            },
            ObjectType::SmallPage | ObjectType::LargePage | ObjectType::HugePage => {
                if !device {
                    self.ram.zero(paddr, 1 << bits);
                }
                Cap::Frame {
                    obj: new(self, Kind::Frame),
                    paddr,
                    size_bits: bits as u8,
                    rights: CapRights::ALL,
                    device,
                    mapped: None,
                }
            }
            ObjectType::PageTable => {
                self.ram.zero(paddr, 1 << bits);
                Cap::PageTable {
                    obj: new(self, Kind::PageTable),
                    paddr,
                    mapped: None,
                }
            }
            ObjectType::VSpace => {
                self.ram.zero(paddr, 1 << bits);
                Cap::VSpace {
                    obj: new(self, Kind::VSpace { asid: None }),
                    paddr,
                }
            }
        }
    }

    // ----- CNode -----

    fn cnode_op(
        &mut self,
        me: ObjId,
        cap: Cap,
        inv: Invocation,
        extra: &[(SlotRef, Cap)],
    ) -> InvResult {
        use Invocation as I;
        match inv {
            I::CNodeCopy {
                dest_index,
                dest_depth,
                src_index,
                src_depth,
                ..
            }
            | I::CNodeMint {
                dest_index,
                dest_depth,
                src_index,
                src_depth,
                ..
            }
            | I::CNodeMove {
                dest_index,
                dest_depth,
                src_index,
                src_depth,
            }
            | I::CNodeMutate {
                dest_index,
                dest_depth,
                src_index,
                src_depth,
                ..
            } => {
                let dest = self.lookup_for_op(false, cap, dest_index, dest_depth)?;
                if !self.cap(dest).is_null() {
                    return Err(E::DeleteFirst.into());
                }
                let src = self.lookup_for_op(true, extra[0].1, src_index, src_depth)?;
                let src_cap = self.cap(src);
                if src_cap.is_null() {
                    return Err(E::FailedLookup {
                        source: true,
                        failure: LookupFailure::MissingCapability {
                            bits_left: src_depth as u8,
                        },
                    }
                    .into());
                }
                match inv {
                    I::CNodeCopy { rights, .. } => {
                        let c =
                            self.derive(src, mask_rights(src_cap, CapRights::from_word(rights)))?;
                        if c.is_null() {
                            return Err(E::IllegalOperation.into());
                        }
                        self.derive_insert(src, c, dest);
                    }
                    I::CNodeMint { rights, badge, .. } => {
                        let c = update_cap_data(
                            false,
                            badge,
                            mask_rights(src_cap, CapRights::from_word(rights)),
                        );
                        if c.is_null() {
                            return Err(E::IllegalOperation.into());
                        }
                        let c = self.derive(src, c)?;
                        if c.is_null() {
                            return Err(E::IllegalOperation.into());
                        }
                        self.derive_insert(src, c, dest);
                    }
                    I::CNodeMove { .. } => self.move_cap(src, dest, src_cap),
                    I::CNodeMutate { badge, .. } => {
                        let c = update_cap_data(true, badge, src_cap);
                        if c.is_null() {
                            return Err(E::IllegalOperation.into());
                        }
                        self.move_cap(src, dest, c);
                    }
                    _ => {}
                }
                Ok(Vec::new())
            }
            I::CNodeRevoke { index, depth } => {
                let s = self.lookup_for_op(false, cap, index, depth)?;
                self.revoke(s);
                Ok(Vec::new())
            }
            I::CNodeDelete { index, depth } => {
                let s = self.lookup_for_op(false, cap, index, depth)?;
                self.delete_slot(s);
                Ok(Vec::new())
            }
            I::CNodeSaveCaller { index, depth } => {
                let s = self.lookup_for_op(false, cap, index, depth)?;
                if !self.cap(s).is_null() {
                    return Err(E::DeleteFirst.into());
                }
                let caller = SlotRef::Tcb(me, TcbSlot::Caller);
                let c = self.cap(caller);
                if let Cap::Reply { .. } = c {
                    self.move_cap(caller, s, c);
                }
                Ok(Vec::new())
            }
            I::CNodeCancelBadgedSends { index, depth } => {
                let s = self.lookup_for_op(false, cap, index, depth)?;
                let Cap::Endpoint { obj, badge, .. } = self.cap(s) else {
                    return Err(E::IllegalOperation.into());
                };
                if badge != 0 {
                    let queued: Vec<ObjId> = match self.objs.ep_mut(obj) {
                        Some(e) if !e.receivers => e.queue.iter().copied().collect(),
                        _ => Vec::new(),
                    };
                    for t in queued {
                        if matches!(
                            self.objs.tcb(t).map(|x| x.state),
                            Some(ThreadState::BlockedOnSend { badge: b, .. }) if b == badge
                        ) {
                            self.restart(t);
                        }
                    }
                }
                Ok(Vec::new())
            }
            _ => Err(E::IllegalOperation.into()),
        }
    }

    /// **Extension** CNode_CopyRun: `count` CNode_Copys from consecutive
    /// source CPtrs into consecutive slots of the destination's CNode, all
    /// or nothing (every pair is checked, then every cap inserted).
    fn cnode_copy_run(&mut self, cap: Cap, src_root: Cap, a: [Word; 6]) -> InvResult {
        let [dest_index, dest_depth, src_index, src_depth, count, rights] = a;
        let whole = |e: ErrorReply| InvErr {
            frame: Some(Word::MAX),
            error: e,
        };
        if !(1..=MAX_COPY_RUN).contains(&count) {
            return Err(whole(E::RangeError {
                min: 1,
                max: MAX_COPY_RUN,
            }));
        }
        let first = self
            .lookup_for_op(false, cap, dest_index, dest_depth)
            .map_err(whole)?;
        let SlotRef::CNode(node, index) = first else {
            return Err(whole(E::IllegalOperation));
        };
        let size = self.objs.cnode(node).map_or(0, |c| 1u64 << c.radix.min(63));
        let room = size.saturating_sub(index as u64);
        if count > room {
            return Err(whole(E::RangeError { min: 1, max: room }));
        }
        let mask = CapRights::from_word(rights);
        let mut plan = Vec::with_capacity(count as usize);
        for i in 0..count {
            let at = |e: ErrorReply| InvErr {
                frame: Some(i),
                error: e,
            };
            let dest = SlotRef::CNode(node, index + i as u32);
            if !self.cap(dest).is_null() {
                return Err(at(E::DeleteFirst));
            }
            let d = src_index.wrapping_add(i);
            let src = self
                .lookup_for_op(true, src_root, d, src_depth)
                .map_err(at)?;
            let src_cap = self.cap(src);
            if src_cap.is_null() {
                return Err(at(E::FailedLookup {
                    source: true,
                    failure: LookupFailure::MissingCapability {
                        bits_left: src_depth as u8,
                    },
                }));
            }
            let c = self.derive(src, mask_rights(src_cap, mask)).map_err(at)?;
            if c.is_null() {
                return Err(at(E::IllegalOperation));
            }
            plan.push((src, c, dest));
        }
        for (src, c, dest) in plan {
            self.derive_insert(src, c, dest);
        }
        Ok(Vec::new())
    }

    // ----- TCB -----

    fn tcb_op(
        &mut self,
        me: ObjId,
        t: ObjId,
        inv: Invocation,
        args: &[Word],
        extra: &[(SlotRef, Cap)],
    ) -> InvResult {
        use Invocation as I;
        match inv {
            I::TcbConfigure {
                fault_ep,
                cspace_root_data,
                buffer,
                ..
            } => {
                let (cs, vs) = self.check_spaces(cspace_root_data, extra[0], extra[1])?;
                let buf = self.check_buffer(buffer, extra[2])?;
                self.set_spaces(t, fault_ep, extra[0].0, cs, extra[1].0, vs);
                self.set_buffer(t, buffer, extra[2].0, buf);
                Ok(Vec::new())
            }
            I::TcbSetSpace {
                fault_ep,
                cspace_root_data,
                ..
            } => {
                let (cs, vs) = self.check_spaces(cspace_root_data, extra[0], extra[1])?;
                self.set_spaces(t, fault_ep, extra[0].0, cs, extra[1].0, vs);
                Ok(Vec::new())
            }
            I::TcbSetIpcBuffer { buffer } => {
                let buf = self.check_buffer(buffer, extra[0])?;
                self.set_buffer(t, buffer, extra[0].0, buf);
                Ok(Vec::new())
            }
            I::TcbSetPriority { priority } => {
                let Cap::Tcb { obj: auth } = extra[0].1 else {
                    return Err(E::InvalidCapability { index: 1 }.into());
                };
                let mcp = self.objs.tcb(auth).map(|a| a.mcp).unwrap_or(0) as Word;
                if priority > mcp {
                    return Err(E::RangeError { min: 0, max: mcp }.into());
                }
                let old = self.prio(t);
                let ready = self
                    .objs
                    .tcb(t)
                    .is_some_and(|x| x.state == ThreadState::Ready)
                    && self.current != Some(t);
                if ready {
                    self.ready.remove(old, t);
                }
                if let Some(x) = self.objs.tcb_mut(t) {
                    x.priority = priority as u8;
                }
                if ready {
                    self.ready.push_back(priority as u8, t);
                    if let Some(c) = self.current
                        && priority as u8 > self.prio(c)
                    {
                        self.preempt = true;
                    }
                }
                if self.current == Some(t) {
                    // Lowering its own priority may let another run first.
                    self.preempt = true;
                }
                Ok(Vec::new())
            }
            I::TcbSuspend => {
                self.suspend(t);
                Ok(Vec::new())
            }
            I::TcbResume => {
                self.restart(t);
                Ok(Vec::new())
            }
            I::TcbReadRegisters {
                suspend_source,
                count,
                ..
            } => {
                if t == me {
                    return Err(E::IllegalOperation.into());
                }
                if count < 1 || count > USER_CONTEXT_WORDS as Word {
                    return Err(E::RangeError {
                        min: 1,
                        max: USER_CONTEXT_WORDS as Word,
                    }
                    .into());
                }
                if suspend_source {
                    self.suspend(t);
                }
                let ctx = self
                    .objs
                    .tcb(t)
                    .map(|x| x.context)
                    .unwrap_or([0; USER_CONTEXT_WORDS]);
                Ok(ctx[..count as usize].to_vec())
            }
            I::TcbWriteRegisters {
                resume_target,
                count,
                ..
            } => {
                if t == me {
                    return Err(E::IllegalOperation.into());
                }
                let n = (count as usize).min(USER_CONTEXT_WORDS);
                let Some(x) = self.objs.tcb_mut(t) else {
                    return Err(E::IllegalOperation.into());
                };
                x.context[..n].copy_from_slice(&args[3..3 + n]);
                let pc = x.context[abi::invocation::CONTEXT_PC];
                if x.started_pc.is_some_and(|p| p != pc)
                    && let Some(h) = x.host.take()
                {
                    // Its host thread runs code from the old pc: it unwinds,
                    // and the thread starts afresh at the new pc.
                    x.started_pc = None;
                    h.wake();
                }
                if resume_target {
                    self.restart(t);
                }
                Ok(Vec::new())
            }
            I::TcbBindNotification => {
                if self.objs.tcb(t).is_some_and(|x| x.bound.is_some()) {
                    return Err(E::IllegalOperation.into());
                }
                let Cap::Notification { obj, rights, .. } = extra[0].1 else {
                    return Err(E::InvalidCapability { index: 1 }.into());
                };
                if !rights.can_read() {
                    return Err(E::InvalidCapability { index: 1 }.into());
                }
                let Some(n) = self.objs.ntfn_mut(obj) else {
                    return Err(E::InvalidCapability { index: 1 }.into());
                };
                if n.bound.is_some() || !n.waiters.is_empty() {
                    return Err(E::IllegalOperation.into());
                }
                n.bound = Some(t);
                if let Some(x) = self.objs.tcb_mut(t) {
                    x.bound = Some(obj);
                }
                Ok(Vec::new())
            }
            I::TcbUnbindNotification => {
                let Some(n) = self.objs.tcb_mut(t).and_then(|x| x.bound.take()) else {
                    return Err(E::IllegalOperation.into());
                };
                if let Some(nt) = self.objs.ntfn_mut(n) {
                    nt.bound = None;
                }
                Ok(Vec::new())
            }
            _ => Err(E::IllegalOperation.into()),
        }
    }

    /// Checks a CSpace root and VSpace root for Configure/SetSpace.
    fn check_spaces(
        &self,
        cspace_root_data: Word,
        croot: (SlotRef, Cap),
        vroot: (SlotRef, Cap),
    ) -> Result<(Cap, Cap), InvErr> {
        let mut c = croot.1;
        if cspace_root_data != 0 {
            c = update_cap_data(false, cspace_root_data, c);
        }
        let c = self.derive(croot.0, c)?;
        if !matches!(c, Cap::CNode { .. }) {
            return Err(E::IllegalOperation.into());
        }
        let v = match vroot.1 {
            Cap::VSpace { .. } => self.derive(vroot.0, vroot.1)?,
            _ => return Err(E::IllegalOperation.into()),
        };
        Ok((c, v))
    }

    /// Checks an IPC buffer address and frame; `Null` for none.
    fn check_buffer(&self, buffer: Word, frame: (SlotRef, Cap)) -> Result<Cap, InvErr> {
        match frame.1 {
            Cap::Null => Ok(Cap::Null),
            Cap::Frame {
                device, size_bits, ..
            } => {
                if device {
                    return Err(E::IllegalOperation.into());
                }
                if buffer & ((1 << abi::ipc_buffer::IPC_BUFFER_ALIGN_BITS) - 1) != 0 {
                    return Err(E::AlignmentError.into());
                }
                let _ = size_bits;
                Ok(self.derive(frame.0, frame.1)?)
            }
            _ => Err(E::IllegalOperation.into()),
        }
    }

    fn set_spaces(
        &mut self,
        t: ObjId,
        fault_ep: Word,
        cs_src: SlotRef,
        cs: Cap,
        vs_src: SlotRef,
        vs: Cap,
    ) {
        if let Some(x) = self.objs.tcb_mut(t) {
            x.fault_ep = fault_ep;
        }
        self.delete_slot(SlotRef::Tcb(t, TcbSlot::CSpace));
        if self.objs.tcb(t).is_some() && self.slot(cs_src).is_some() {
            self.derive_insert(cs_src, cs, SlotRef::Tcb(t, TcbSlot::CSpace));
        }
        self.delete_slot(SlotRef::Tcb(t, TcbSlot::VSpace));
        if self.objs.tcb(t).is_some() && self.slot(vs_src).is_some() {
            self.derive_insert(vs_src, vs, SlotRef::Tcb(t, TcbSlot::VSpace));
        }
    }

    fn set_buffer(&mut self, t: ObjId, buffer: Word, src: SlotRef, frame: Cap) {
        self.delete_slot(SlotRef::Tcb(t, TcbSlot::Buffer));
        if let Some(x) = self.objs.tcb_mut(t) {
            x.ipc_buffer = buffer;
        }
        if !frame.is_null() && self.objs.tcb(t).is_some() && self.slot(src).is_some() {
            self.derive_insert(src, frame, SlotRef::Tcb(t, TcbSlot::Buffer));
        }
    }

    // ----- frames and page tables -----

    /// The root table and ASID of a VSpace cap that has an ASID.
    fn vspace_of(&self, cap: Cap) -> Option<(u64, u16)> {
        let Cap::VSpace { obj, paddr } = cap else {
            return None;
        };
        Some((paddr, self.vspace_asid(obj)?))
    }

    /// Whether a frame of `2^bits` bytes at `paddr` may be mapped at `vaddr`
    /// (`remap`: this very cap is mapped there already).
    fn check_map(
        &self,
        root: u64,
        vaddr: Word,
        bits: u8,
        paddr: u64,
        remap: bool,
    ) -> Result<(), ErrorReply> {
        let size = 1u64 << bits;
        if vaddr & (size - 1) != 0 {
            return Err(E::AlignmentError);
        }
        match vaddr.checked_add(size) {
            Some(end) if vaddr >= USER_VADDR_MIN && end <= USER_VADDR_END => {}
            _ => return Err(E::InvalidArgument { index: 0 }),
        }
        let leaf = if bits as u32 == object::LARGE_PAGE_BITS {
            2
        } else {
            3
        };
        match vmsa::walk(&self.ram, root, vaddr) {
            Err(f) if f.level == leaf => Ok(()),
            Err(f) if f.level < leaf => Err(missing_table(f.level + 1)),
            Ok(tr) if remap && tr.level == leaf && tr.descriptor.address() == paddr => Ok(()),
            _ => Err(E::DeleteFirst),
        }
    }

    fn page_map(
        &mut self,
        slot: SlotRef,
        cap: Cap,
        vs: Cap,
        vaddr: Word,
        rights: Word,
        attr: Word,
    ) -> InvResult {
        let Cap::Frame {
            obj,
            paddr,
            size_bits,
            rights: cap_rights,
            device,
            mapped,
        } = cap
        else {
            return Err(E::IllegalOperation.into());
        };
        let (root, asid) = self
            .vspace_of(vs)
            .ok_or(E::InvalidCapability { index: 1 })?;
        if let Some((a, v)) = mapped {
            if a != asid {
                return Err(E::InvalidCapability { index: 1 }.into());
            }
            if v != vaddr {
                return Err(E::InvalidArgument { index: 0 }.into());
            }
        }
        self.check_map(root, vaddr, size_bits, paddr, mapped.is_some())?;
        let eff = cap_rights.intersect(CapRights::from_word(rights));
        if !eff.can_read() {
            return Err(E::InvalidArgument { index: 1 }.into());
        }
        let attrs = page_attrs(eff, attr);
        vmsa::map_frame(&mut self.ram, root, vaddr, paddr, 1 << size_bits, attrs)
            .map_err(|_| E::DeleteFirst)?;
        self.set_cap(
            slot,
            Cap::Frame {
                obj,
                paddr,
                size_bits,
                rights: cap_rights,
                device,
                mapped: Some((asid, vaddr)),
            },
        );
        Ok(Vec::new())
    }

    fn page_unmap(&mut self, slot: SlotRef, cap: Cap) {
        if let Cap::Frame {
            obj,
            paddr,
            size_bits,
            rights,
            device,
            mapped: Some((asid, vaddr)),
        } = cap
        {
            if let Some(root) = self.vspace_root(asid) {
                vmsa::unmap_frame(&mut self.ram, root, vaddr, paddr, 1 << size_bits);
            }
            self.set_cap(
                slot,
                Cap::Frame {
                    obj,
                    paddr,
                    size_bits,
                    rights,
                    device,
                    mapped: None,
                },
            );
        }
    }

    fn page_table_map(&mut self, slot: SlotRef, cap: Cap, vs: Cap, vaddr: Word) -> InvResult {
        let Cap::PageTable { obj, paddr, mapped } = cap else {
            return Err(E::IllegalOperation.into());
        };
        if mapped.is_some() {
            return Err(E::InvalidCapability { index: 0 }.into());
        }
        let (root, asid) = self
            .vspace_of(vs)
            .ok_or(E::InvalidCapability { index: 1 })?;
        if vaddr >= USER_VADDR_END {
            return Err(E::InvalidArgument { index: 0 }.into());
        }
        let level =
            vmsa::install_table(&mut self.ram, root, vaddr, paddr).map_err(|e| match e {
                vmsa::MapError::OutOfRange => E::InvalidArgument { index: 0 },
                _ => E::DeleteFirst,
            })?;
        let cover = 1u64 << vmsa::level_shift(level - 1);
        self.set_cap(
            slot,
            Cap::PageTable {
                obj,
                paddr,
                mapped: Some((asid, vaddr & !(cover - 1), level)),
            },
        );
        Ok(Vec::new())
    }

    fn page_table_unmap(&mut self, slot: SlotRef, cap: Cap) -> InvResult {
        let Cap::PageTable { obj, paddr, mapped } = cap else {
            return Err(E::IllegalOperation.into());
        };
        if !self.is_final(slot) {
            return Err(E::RevokeFirst.into());
        }
        if let Some((asid, vaddr, level)) = mapped {
            if let Some(root) = self.vspace_root(asid) {
                vmsa::uninstall_table(&mut self.ram, root, vaddr, level, paddr);
            }
            self.ram.zero(paddr, vmsa::TABLE_SIZE);
            self.set_cap(
                slot,
                Cap::PageTable {
                    obj,
                    paddr,
                    mapped: None,
                },
            );
        }
        Ok(Vec::new())
    }

    fn asid_assign(&mut self, pool: Cap, vs: Cap) -> InvResult {
        let Cap::AsidPool { obj: pool } = pool else {
            return Err(E::IllegalOperation.into());
        };
        let Cap::VSpace { obj: v, .. } = vs else {
            return Err(E::InvalidCapability { index: 1 }.into());
        };
        if self.vspace_asid(v).is_some() {
            return Err(E::InvalidCapability { index: 1 }.into());
        }
        let asid = self.assign_asid(pool, v).ok_or(E::DeleteFirst)?;
        let _ = asid;
        Ok(Vec::new())
    }

    /// Gives VSpace `v` a free ASID of `pool`.
    pub fn assign_asid(&mut self, pool: ObjId, v: ObjId) -> Option<u16> {
        let Some(Object {
            kind: Kind::AsidPool { base, entries },
            ..
        }) = self.objs.get_mut(pool)
        else {
            return None;
        };
        let i = entries.iter().position(|e| e.is_none())?;
        // ASID 0 is never used (as in seL4).
        let asid = base.checked_add(i as u16)?;
        if asid == 0 {
            entries[0] = Some(ObjId::MAX);
            return self.assign_asid(pool, v);
        }
        entries[i] = Some(v);
        self.asids.insert(asid, v);
        if let Some(Object {
            kind: Kind::VSpace { asid: a },
            ..
        }) = self.objs.get_mut(v)
        {
            *a = Some(asid);
        }
        Some(asid)
    }

    /// **Extension** VSpace_MapFrames: all or nothing.
    #[allow(clippy::too_many_arguments)]
    fn map_frames(
        &mut self,
        me: ObjId,
        vs: Cap,
        first: Word,
        count: Word,
        vaddr: Word,
        rights: Word,
        attr: Word,
    ) -> InvResult {
        let whole = |e: ErrorReply| InvErr {
            frame: Some(Word::MAX),
            error: e,
        };
        let (root, asid) = self
            .vspace_of(vs)
            .ok_or(whole(E::InvalidCapability { index: 0 }))?;
        if !(1..=MAX_BATCH_FRAMES).contains(&count) {
            return Err(whole(E::RangeError {
                min: 1,
                max: MAX_BATCH_FRAMES,
            }));
        }
        let want = CapRights::from_word(rights);
        let mut plan = Vec::with_capacity(count as usize);
        let mut size_bits0 = None;
        let mut va = vaddr;
        for i in 0..count {
            let at = |e: ErrorReply| InvErr {
                frame: Some(i),
                error: e,
            };
            let (slot, cap) = self.lookup(me, first.wrapping_add(i)).map_err(|f| {
                at(E::FailedLookup {
                    source: true,
                    failure: f,
                })
            })?;
            let Cap::Frame {
                paddr,
                size_bits,
                rights: cr,
                mapped,
                ..
            } = cap
            else {
                return Err(at(E::InvalidCapability { index: 0 }));
            };
            if *size_bits0.get_or_insert(size_bits) != size_bits {
                return Err(at(E::InvalidArgument { index: 0 }));
            }
            let remap = match mapped {
                None => false,
                Some(m) if m == (asid, va) => true,
                Some(_) => return Err(at(E::InvalidCapability { index: 0 })),
            };
            self.check_map(root, va, size_bits, paddr, remap)
                .map_err(at)?;
            let eff = cr.intersect(want);
            if !eff.can_read() {
                return Err(at(E::InvalidArgument { index: 3 }));
            }
            plan.push((slot, cap, va, eff));
            va = va.wrapping_add(1 << size_bits);
        }
        for (slot, cap, va, eff) in plan {
            if let Cap::Frame {
                obj,
                paddr,
                size_bits,
                rights: cr,
                device,
                ..
            } = cap
            {
                let _ = vmsa::map_frame(
                    &mut self.ram,
                    root,
                    va,
                    paddr,
                    1 << size_bits,
                    page_attrs(eff, attr),
                );
                self.set_cap(
                    slot,
                    Cap::Frame {
                        obj,
                        paddr,
                        size_bits,
                        rights: cr,
                        device,
                        mapped: Some((asid, va)),
                    },
                );
            }
        }
        Ok(Vec::new())
    }

    /// **Extension** VSpace_UnmapFrames: unmaps those mapped in this VSpace.
    fn unmap_frames(&mut self, me: ObjId, vs: Cap, first: Word, count: Word) -> InvResult {
        let whole = |e: ErrorReply| InvErr {
            frame: Some(Word::MAX),
            error: e,
        };
        let (_, asid) = self
            .vspace_of(vs)
            .ok_or(whole(E::InvalidCapability { index: 0 }))?;
        if !(1..=MAX_BATCH_FRAMES).contains(&count) {
            return Err(whole(E::RangeError {
                min: 1,
                max: MAX_BATCH_FRAMES,
            }));
        }
        let mut plan = Vec::new();
        for i in 0..count {
            let at = |e: ErrorReply| InvErr {
                frame: Some(i),
                error: e,
            };
            let (slot, cap) = self.lookup(me, first.wrapping_add(i)).map_err(|f| {
                at(E::FailedLookup {
                    source: true,
                    failure: f,
                })
            })?;
            let Cap::Frame { mapped, .. } = cap else {
                return Err(at(E::InvalidCapability { index: 0 }));
            };
            if mapped.is_some_and(|(a, _)| a == asid) {
                plan.push((slot, cap));
            }
        }
        for (slot, cap) in plan {
            self.page_unmap(slot, cap);
        }
        Ok(Vec::new())
    }

    // ----- IRQs -----

    fn irq_issue(
        &mut self,
        control: SlotRef,
        root: Cap,
        irq: Word,
        index: Word,
        depth: Word,
    ) -> InvResult {
        let lines = self.irqs.len() as Word;
        if irq >= lines {
            return Err(E::RangeError {
                min: 0,
                max: lines.saturating_sub(1),
            }
            .into());
        }
        if self.irqs[irq as usize].caps > 0 {
            return Err(E::RevokeFirst.into());
        }
        let dest = self.lookup_for_op(false, root, index, depth)?;
        if !self.cap(dest).is_null() {
            return Err(E::DeleteFirst.into());
        }
        self.derive_insert(control, Cap::IrqHandler { irq: irq as u32 }, dest);
        Ok(Vec::new())
    }

    fn irq_handler_op(&mut self, irq: u32, inv: Invocation, extra: &[(SlotRef, Cap)]) -> InvResult {
        let i = irq as usize;
        if i >= self.irqs.len() {
            return Err(E::IllegalOperation.into());
        }
        match inv {
            Invocation::IrqAckIrq => {
                self.irqs[i].masked = false;
                if std::mem::take(&mut self.irqs[i].pending) {
                    self.raise_irq(irq);
                }
            }
            Invocation::IrqSetIrqHandler => match extra[0].1 {
                Cap::Notification { obj, badge, rights } if rights.can_write() => {
                    self.irqs[i].ntfn = Some((obj, badge));
                }
                _ => return Err(E::InvalidCapability { index: 1 }.into()),
            },
            Invocation::IrqClearIrqHandler => self.irqs[i].ntfn = None,
            _ => return Err(E::IllegalOperation.into()),
        }
        Ok(Vec::new())
    }

    /// An interrupt line fires: its notification is signalled and the line
    /// masked until acknowledged (a firing while masked stays pending).
    pub fn raise_irq(&mut self, irq: u32) {
        let Some(l) = self.irqs.get_mut(irq as usize) else {
            return;
        };
        match l.ntfn {
            Some((n, badge)) if !l.masked => {
                l.masked = true;
                self.signal(n, badge);
            }
            _ => l.pending = true,
        }
    }

    // ----- the software MMU -----

    /// Translates `vaddr` for thread `t`: the physical address and the bytes
    /// left in that page or block, or the fault an access takes.
    pub fn translate(
        &self,
        t: ObjId,
        vaddr: Word,
        write: bool,
    ) -> Result<(u64, u64), abi::fault::Fault> {
        let tcb = self.objs.tcb(t);
        let ip = tcb
            .map(|x| x.context[abi::invocation::CONTEXT_PC])
            .unwrap_or(0);
        let wnr = if write { abi::fault::ISS_WNR } else { 0 };
        let fault = |fsr: Word| {
            abi::fault::Fault::VmFault(abi::fault::VmFault {
                ip,
                addr: vaddr,
                instruction: false,
                fsr: fsr | wnr,
            })
        };
        let root = match self.cap(SlotRef::Tcb(t, TcbSlot::VSpace)) {
            Cap::VSpace { obj, paddr } if self.vspace_asid(obj).is_some() => paddr,
            _ => return Err(fault(abi::fault::fsc_translation(0))),
        };
        match vmsa::walk(&self.ram, root, vaddr) {
            Ok(tr) => {
                let access = if write {
                    vmsa::Access::Write
                } else {
                    vmsa::Access::Read
                };
                if !tr.permits(access, true) {
                    return Err(fault(abi::fault::fsc_permission(tr.level)));
                }
                let size = tr.size();
                Ok((tr.paddr, size - (vaddr & (size - 1))))
            }
            Err(f) => Err(fault(abi::fault::fsc_translation(f.level))),
        }
    }
}
