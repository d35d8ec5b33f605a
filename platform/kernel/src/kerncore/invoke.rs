//! Object invocations: each operation of `abi::invocation`, with seL4's checks in seL4's order.
//!
//! [`Kernel::invoke`] decodes a Call or Send on a kernel-object capability
//! with the one decoder both kernels share (`abi::invocation::Invocation`),
//! checks that the operation fits the capability, then runs the operation's
//! checks; an invocation either fails with an error (and changes nothing)
//! or succeeds completely.

use abi::error::{ErrorReply, LookupFailure};
use abi::invocation::{
    CONTEXT_PC, CONTEXT_SP, CONTEXT_SPSR, CONTEXT_TPIDR, CONTEXT_X0, Invocation, MAX_BATCH_FRAMES,
    MAX_COPY_RUN, Target, USER_CONTEXT_WORDS,
};
use abi::ipc_buffer::IPC_BUFFER_ALIGN_BITS;
use abi::object::{MAX_RETYPE_COUNT, MAX_UNTYPED_BITS, MIN_UNTYPED_BITS, ObjectType, SLOT_BITS};
use abi::vm::{USER_VADDR_END, USER_VADDR_MIN};
use abi::{CapRights, Word};

use super::Kernel;
use super::cap::{Cap, Mapping, ObjId, TableMapping};
use super::ipc::{ExtraCaps, sanitise_spsr};
use super::object::TCB_TABLE;
use super::object::{
    Boxed, CNode, Endpoint, Notification, Slot, SlotRef, Tcb, ThreadQueue, ThreadState, tcb_slot,
};
use super::vspace::page_attrs;
use crate::machine::Machine;

/// The results of a successful invocation: the reply's message registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The words.
    pub words: [Word; USER_CONTEXT_WORDS],
    /// How many are used.
    pub len: usize,
}

impl Reply {
    /// A reply with no words.
    pub const EMPTY: Reply = Reply {
        words: [0; USER_CONTEXT_WORDS],
        len: 0,
    };

    /// A reply with one word.
    pub fn one(w: Word) -> Reply {
        let mut r = Reply::EMPTY;
        r.words[0] = w;
        r.len = 1;
        r
    }
}

/// A failed invocation: the error, and for batched operations the index of
/// the frame at fault, which the reply carries first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The error.
    pub error: ErrorReply,
    /// Batch index (MR0 of the reply, before the error's details).
    pub batch_index: Option<Word>,
}

impl From<ErrorReply> for Failure {
    fn from(error: ErrorReply) -> Self {
        Failure {
            error,
            batch_index: None,
        }
    }
}

/// The result of an invocation.
pub type InvocationResult = Result<Reply, Failure>;

fn target_matches(target: Target, cap: &Cap) -> bool {
    matches!(
        (target, cap),
        (Target::Untyped, Cap::Untyped { .. })
            | (Target::Tcb, Cap::Tcb { .. })
            | (Target::CNode, Cap::CNode { .. })
            | (Target::IrqControl, Cap::IrqControl)
            | (Target::IrqHandler, Cap::IrqHandler { .. })
            | (Target::PageTable, Cap::PageTable { .. })
            | (Target::Frame, Cap::Frame { .. })
            | (Target::AsidPool, Cap::AsidPool)
            | (Target::VSpace, Cap::VSpace { .. })
    )
}

/// The caps of an invocation's extra-cap arguments.
struct Extra {
    caps: ExtraCaps,
}

impl Extra {
    fn cap(&self, i: usize) -> Cap {
        self.caps[i].map_or(Cap::Null, |(c, _)| c)
    }
    fn slot(&self, i: usize) -> Option<SlotRef> {
        self.caps[i].map(|(_, s)| s)
    }
    fn count(&self) -> usize {
        self.caps.iter().take_while(|c| c.is_some()).count()
    }
}

impl<M: Machine> Kernel<M> {
    /// Performs the invocation `label` with message registers `mrs` on the
    /// object cap `cap` in `slot`, by thread `cur`.
    pub fn invoke(
        &mut self,
        cur: ObjId,
        cap: Cap,
        slot: SlotRef,
        label: Word,
        mrs: &[Word],
        caps: ExtraCaps,
    ) -> InvocationResult {
        let extra = Extra { caps };
        let inv = Invocation::decode(label, mrs, extra.count())?;
        if !target_matches(inv.target(), &cap) {
            return Err(ErrorReply::IllegalOperation.into());
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
            } => self.untyped_retype(
                cap,
                slot,
                &extra,
                [
                    object_type,
                    size_bits,
                    node_index,
                    node_depth,
                    node_offset,
                    num_objects,
                ],
            ),
            I::CNodeCopy { .. }
            | I::CNodeMint { .. }
            | I::CNodeMove { .. }
            | I::CNodeMutate { .. }
            | I::CNodeRevoke { .. }
            | I::CNodeDelete { .. }
            | I::CNodeSaveCaller { .. }
            | I::CNodeCancelBadgedSends { .. } => self.cnode_invocation(cur, cap, inv, &extra),
            I::CNodeCopyRun {
                dest_index,
                dest_depth,
                src_index,
                src_depth,
                count,
                rights,
            } => self.cnode_copy_run(
                cap,
                &extra,
                [dest_index, dest_depth, src_index, src_depth, count, rights],
            ),
            I::TcbReadRegisters { .. }
            | I::TcbWriteRegisters { .. }
            | I::TcbConfigure { .. }
            | I::TcbSetPriority { .. }
            | I::TcbSetIpcBuffer { .. }
            | I::TcbSetSpace { .. }
            | I::TcbSuspend
            | I::TcbResume
            | I::TcbBindNotification
            | I::TcbUnbindNotification => self.tcb_invocation(cur, cap, inv, mrs, &extra),
            I::IrqIssueIrqHandler { irq, index, depth } => {
                self.irq_issue(slot, &extra, irq, index, depth)
            }
            I::IrqAckIrq | I::IrqSetIrqHandler | I::IrqClearIrqHandler => {
                self.irq_handler_invocation(cap, inv, &extra)
            }
            I::PageMap {
                vaddr,
                rights,
                attr,
            } => self.page_map(cap, slot, &extra, vaddr, rights, attr),
            I::PageUnmap => {
                if let Cap::Frame {
                    paddr,
                    size_bits,
                    mapping: Some(m),
                    ..
                } = cap
                {
                    self.unmap_frame_at(m, paddr, 1 << size_bits);
                    self.set_frame_mapping(slot, None);
                }
                Ok(Reply::EMPTY)
            }
            I::PageGetAddress => match cap {
                Cap::Frame { paddr, .. } => Ok(Reply::one(paddr)),
                _ => Err(ErrorReply::IllegalOperation.into()),
            },
            I::PageTableMap { vaddr, .. } => self.page_table_map(cap, slot, &extra, vaddr),
            I::PageTableUnmap => self.page_table_unmap(cap, slot),
            I::AsidPoolAssign => self.asid_pool_assign(&extra),
            I::VSpaceMapFrames {
                first_frame,
                count,
                vaddr,
                rights,
                attr,
            } => self.map_frames(cur, cap, first_frame, count, vaddr, rights, attr),
            I::VSpaceUnmapFrames { first_frame, count } => {
                self.unmap_frames(cur, cap, first_frame, count)
            }
            I::VSpaceMapFrame {
                frame,
                vaddr,
                rights,
                attr,
            } => self.map_frames(cur, cap, frame, 1, vaddr, rights, attr),
        }
    }

    fn untyped_retype(
        &mut self,
        cap: Cap,
        slot: SlotRef,
        extra: &Extra,
        args: [Word; 6],
    ) -> InvocationResult {
        let [
            object_type,
            user_size,
            node_index,
            node_depth,
            node_offset,
            window,
        ] = args;
        let Cap::Untyped {
            paddr,
            size_bits,
            device,
            free_index,
        } = cap
        else {
            return Err(ErrorReply::IllegalOperation.into());
        };
        let ty = ObjectType::from_word(object_type)
            .filter(|t| *t != ObjectType::HugePage)
            .ok_or(ErrorReply::InvalidArgument { index: 0 })?;
        let range = ErrorReply::RangeError {
            min: 0,
            max: MAX_UNTYPED_BITS as Word,
        };
        if user_size >= 64 {
            return Err(range.into());
        }
        let object_bits = match ty {
            ObjectType::Untyped => user_size,
            ObjectType::CNode => user_size + SLOT_BITS as Word,
            other => other.size_bits(0).unwrap_or(0) as Word,
        };
        if object_bits > MAX_UNTYPED_BITS as Word {
            return Err(range.into());
        }
        if ty == ObjectType::CNode && user_size == 0 {
            return Err(ErrorReply::InvalidArgument { index: 1 }.into());
        }
        if ty == ObjectType::Untyped && user_size < MIN_UNTYPED_BITS as Word {
            return Err(ErrorReply::InvalidArgument { index: 1 }.into());
        }
        let root = extra.cap(0);
        let node_cap = if node_depth == 0 {
            root
        } else {
            let s = self.lookup_slot_for_cnode_op(false, root, node_index, node_depth)?;
            self.slot(s).cap
        };
        let Cap::CNode {
            id: dest_cnode,
            radix,
            ..
        } = node_cap
        else {
            return Err(ErrorReply::FailedLookup {
                source: false,
                failure: LookupFailure::MissingCapability {
                    bits_left: node_depth.min(64) as u8,
                },
            }
            .into());
        };
        let node_size: Word = 1 << radix;
        if node_offset > node_size - 1 {
            return Err(ErrorReply::RangeError {
                min: 0,
                max: node_size - 1,
            }
            .into());
        }
        if !(1..=MAX_RETYPE_COUNT).contains(&window) {
            return Err(ErrorReply::RangeError {
                min: 1,
                max: MAX_RETYPE_COUNT,
            }
            .into());
        }
        if window > node_size - node_offset {
            return Err(ErrorReply::RangeError {
                min: 1,
                max: node_size - node_offset,
            }
            .into());
        }
        for i in node_offset..node_offset + window {
            self.ensure_empty(SlotRef {
                cnode: dest_cnode,
                index: i as u32,
            })?;
        }
        let free_index = if self.has_children(slot) {
            free_index
        } else {
            0
        };
        let free_bytes = (1u64 << size_bits) - free_index;
        if (free_bytes >> object_bits) < window {
            return Err(ErrorReply::NotEnoughMemory {
                available: free_bytes,
            }
            .into());
        }
        if device && !ty.is_frame() && ty != ObjectType::Untyped {
            return Err(ErrorReply::InvalidArgument { index: 1 }.into());
        }
        let Some(offset) =
            abi::object::retype_offset(size_bits as u32, free_index, object_bits as u32, window)
        else {
            return Err(ErrorReply::NotEnoughMemory {
                available: free_bytes,
            }
            .into());
        };
        // The objects' bookkeeping lives on the kernel heap: all of it is
        // allocated now, fallibly, so that a heap too full for it refuses
        // the retype as the Untyped would refuse what it cannot hold (this
        // kernel's limit, beyond seL4's accounting). Nothing else in the
        // kernel allocates after boot.
        let Some(mut prepared) = self.prepare_objects(ty, user_size as u8, window as usize) else {
            return Err(ErrorReply::NotEnoughMemory {
                available: free_bytes,
            }
            .into());
        };
        // Checks done: from here on the retype cannot fail.
        self.slot_mut(slot).cap = Cap::Untyped {
            paddr,
            size_bits,
            device,
            free_index: offset + (window << object_bits),
        };
        for i in 0..window {
            let at = paddr + offset + (i << object_bits);
            let new = self.create_object(ty, at, user_size as u8, device, &mut prepared);
            let dest = SlotRef {
                cnode: dest_cnode,
                index: (node_offset + i) as u32,
            };
            self.insert_new_cap(Some(slot), dest, new);
        }
        Ok(Reply::EMPTY)
    }

    /// Allocates the kernel-heap bookkeeping of `n` objects of `ty`: room
    /// in the object tables, each TCB's block and each CNode's slots.
    /// `None` when the heap cannot hold it all; nothing is kept then.
    fn prepare_objects(&mut self, ty: ObjectType, user_size: u8, n: usize) -> Option<Prepared> {
        match ty {
            ObjectType::Tcb => {
                self.tcbs.try_reserve(n).ok()?;
                let mut threads = alloc::vec::Vec::new();
                threads.try_reserve_exact(n).ok()?;
                for _ in 0..n {
                    threads.push(Boxed::try_new(Tcb::new(0, 0)).ok()?);
                }
                Some(Prepared::Threads(threads))
            }
            ObjectType::CNode => {
                self.cnodes.try_reserve(n).ok()?;
                let mut tables = alloc::vec::Vec::new();
                tables.try_reserve_exact(n).ok()?;
                for _ in 0..n {
                    tables.push(CNode::try_slots(user_size).ok()?);
                }
                Some(Prepared::Tables(tables))
            }
            ObjectType::Endpoint => {
                self.endpoints.try_reserve(n).ok()?;
                let mut endpoints = alloc::vec::Vec::new();
                endpoints.try_reserve_exact(n).ok()?;
                for _ in 0..n {
                    endpoints.push(Boxed::try_new(Endpoint::new(0)).ok()?);
                }
                Some(Prepared::Endpoints(endpoints))
            }
            ObjectType::Notification => {
                self.notifications.try_reserve(n).ok()?;
                Some(Prepared::Nothing)
            }
            _ => Some(Prepared::Nothing),
        }
    }

    /// Creates one object at `paddr` (seL4 `createObject`); frames and
    /// tables come zeroed. A TCB or CNode takes its heap memory from
    /// `prepared`, or allocates it (at boot).
    pub fn create_object(
        &mut self,
        ty: ObjectType,
        paddr: u64,
        user_size: u8,
        device: bool,
        prepared: &mut Prepared,
    ) -> Cap {
        match ty {
            ObjectType::Untyped => Cap::Untyped {
                paddr,
                size_bits: user_size,
                device,
                free_index: 0,
            },
            ObjectType::Tcb => Cap::Tcb {
                id: self.create_tcb(paddr, prepared.thread()),
            },
            ObjectType::Endpoint => Cap::Endpoint {
                id: self.endpoints.insert(match prepared.endpoint() {
                    Some(mut b) => {
                        *b = Endpoint::new(paddr);
                        b
                    }
                    None => Boxed::new(Endpoint::new(paddr)),
                }),
                badge: 0,
                rights: CapRights::ALL,
            },
            ObjectType::Notification => Cap::Notification {
                id: self.notifications.insert(Notification {
                    paddr,
                    active: false,
                    word: 0,
                    waiting: ThreadQueue::default(),
                    bound_tcb: None,
                }),
                badge: 0,
                rights: CapRights::READ_WRITE,
            },
            ObjectType::CNode => Cap::CNode {
                id: self.cnodes.insert(match prepared.table() {
                    Some(slots) => CNode::with_slots(paddr, user_size, slots),
                    None => CNode::new(paddr, user_size),
                }),
                radix: user_size,
                guard_size: 0,
                guard: 0,
            },
            ObjectType::SmallPage | ObjectType::LargePage | ObjectType::HugePage => {
                let bits = ty.size_bits(0).unwrap_or(12) as u8;
                if !device {
                    self.machine.zero(paddr, 1 << bits);
                }
                Cap::Frame {
                    paddr,
                    size_bits: bits,
                    device,
                    rights: CapRights::READ_WRITE,
                    mapping: None,
                }
            }
            ObjectType::PageTable => {
                self.machine.zero(paddr, vmsa::TABLE_SIZE);
                Cap::PageTable {
                    paddr,
                    mapping: None,
                }
            }
            ObjectType::VSpace => {
                self.machine.zero(paddr, vmsa::TABLE_SIZE);
                Cap::VSpace { paddr, asid: None }
            }
        }
    }

    /// Creates a TCB (inactive, priority 0) with its master reply cap, in
    /// `block` (from `prepare_objects`) or a new one (at boot).
    pub fn create_tcb(&mut self, paddr: u64, block: Option<Boxed<Tcb>>) -> ObjId {
        let tcb = Tcb::new(paddr, self.tcbs.next_id());
        let id = self.tcbs.insert(match block {
            Some(mut b) => {
                *b = tcb;
                b
            }
            None => Boxed::new(tcb),
        });
        self.insert_new_cap(
            None,
            SlotRef::tcb(id, tcb_slot::REPLY),
            Cap::Reply {
                tcb: id,
                can_grant: true,
                master: true,
            },
        );
        id
    }

    fn cnode_invocation(
        &mut self,
        cur: ObjId,
        cap: Cap,
        inv: Invocation,
        extra: &Extra,
    ) -> InvocationResult {
        use Invocation as I;
        let (index, depth) = match inv {
            I::CNodeCopy {
                dest_index,
                dest_depth,
                ..
            }
            | I::CNodeMint {
                dest_index,
                dest_depth,
                ..
            }
            | I::CNodeMove {
                dest_index,
                dest_depth,
                ..
            }
            | I::CNodeMutate {
                dest_index,
                dest_depth,
                ..
            } => (dest_index, dest_depth),
            I::CNodeRevoke { index, depth }
            | I::CNodeDelete { index, depth }
            | I::CNodeSaveCaller { index, depth }
            | I::CNodeCancelBadgedSends { index, depth } => (index, depth),
            _ => return Err(ErrorReply::IllegalOperation.into()),
        };
        let dest = self.lookup_slot_for_cnode_op(false, cap, index, depth)?;
        match inv {
            I::CNodeCopy {
                src_index,
                src_depth,
                rights,
                ..
            } => {
                let src = self.source_slot(dest, extra, src_index, src_depth)?;
                let new = self.slot(src).cap.mask_rights(CapRights::from_word(rights));
                let derived = self.derive_cap(src, new)?;
                if derived.is_null() {
                    return Err(ErrorReply::IllegalOperation.into());
                }
                self.cte_insert(derived, src, dest);
            }
            I::CNodeMint {
                src_index,
                src_depth,
                rights,
                badge,
                ..
            } => {
                let src = self.source_slot(dest, extra, src_index, src_depth)?;
                let new = self
                    .slot(src)
                    .cap
                    .update_data(false, badge)
                    .mask_rights(CapRights::from_word(rights));
                let derived = self.derive_cap(src, new)?;
                if derived.is_null() {
                    return Err(ErrorReply::IllegalOperation.into());
                }
                self.cte_insert(derived, src, dest);
            }
            I::CNodeMove {
                src_index,
                src_depth,
                ..
            } => {
                let src = self.source_slot(dest, extra, src_index, src_depth)?;
                let cap = self.slot(src).cap;
                self.cte_move(cap, src, dest);
            }
            I::CNodeMutate {
                src_index,
                src_depth,
                badge,
                ..
            } => {
                let src = self.source_slot(dest, extra, src_index, src_depth)?;
                let new = self.slot(src).cap.update_data(true, badge);
                if new.is_null() {
                    return Err(ErrorReply::IllegalOperation.into());
                }
                self.cte_move(new, src, dest);
            }
            I::CNodeRevoke { .. } => self.revoke(dest),
            I::CNodeDelete { .. } => self.delete_slot(dest),
            I::CNodeSaveCaller { .. } => {
                self.ensure_empty(dest)?;
                let caller = self.tcb_slot(cur, tcb_slot::CALLER);
                let cap = self.slot(caller).cap;
                if let Cap::Reply { .. } = cap {
                    self.cte_move(cap, caller, dest);
                }
            }
            I::CNodeCancelBadgedSends { .. } => {
                let Cap::Endpoint { id, badge, rights } = self.slot(dest).cap else {
                    return Err(ErrorReply::IllegalOperation.into());
                };
                if rights != CapRights::ALL {
                    return Err(ErrorReply::IllegalOperation.into());
                }
                if badge != 0 {
                    self.cancel_badged_sends(id, badge);
                }
            }
            _ => return Err(ErrorReply::IllegalOperation.into()),
        }
        Ok(Reply::EMPTY)
    }

    /// **Extension** `CNode_CopyRun`: `count` `CNode_Copy`s from consecutive
    /// source CPtrs into consecutive slots of one CNode, all or nothing.
    ///
    /// The destination slots are the one found at (`dest_index`,
    /// `dest_depth`) and those following it in its CNode, so they are
    /// distinct by construction. Two passes and no allocation, as in
    /// `map_frames`: every pair is checked, then every cap inserted. The
    /// checks of one pair do not depend on the copies of the others (the
    /// destinations are distinct empty slots, and a copy changes no cap a
    /// later pair derives from in a way its checks see), so the second pass
    /// repeats the first one's results.
    fn cnode_copy_run(&mut self, cap: Cap, extra: &Extra, args: [Word; 6]) -> InvocationResult {
        let [dest_index, dest_depth, src_index, src_depth, count, rights] = args;
        if !(1..=MAX_COPY_RUN).contains(&count) {
            return Err(Self::whole(ErrorReply::RangeError {
                min: 1,
                max: MAX_COPY_RUN,
            }));
        }
        let first = self
            .lookup_slot_for_cnode_op(false, cap, dest_index, dest_depth)
            .map_err(Self::whole)?;
        let size = self
            .cnodes
            .get(first.cnode)
            .map_or(0, |c| c.slots.len() as Word);
        let room = size.saturating_sub(first.index as Word);
        if count > room {
            return Err(Self::whole(ErrorReply::RangeError { min: 1, max: room }));
        }
        let mask = CapRights::from_word(rights);
        if self.copy_frame_run(first, extra, [src_index, src_depth, count], mask) {
            return Ok(Reply::EMPTY);
        }
        // The sources are found through a cursor over runs of consecutive
        // slots (as `batch_frame_run` does for CPtrs), the second pass
        // starting from the first one's first lookup.
        let mut run0 = FrameRun::NONE;
        for pass in 0..2 {
            let mut run = run0;
            for i in 0..count {
                let at = |error| Failure {
                    error,
                    batch_index: Some(i),
                };
                let dest = SlotRef {
                    cnode: first.cnode,
                    index: first.index + i as u32,
                };
                let index = src_index.wrapping_add(i);
                let src = if pass == 1 && run.left > 0 && run.cptr == index {
                    // The first pass checked this pair: the cursor's next
                    // slot, as `source_slot_run` finds it, without the
                    // checks again.
                    let src = SlotRef {
                        cnode: run.cnode,
                        index: run.index,
                    };
                    run.left -= 1;
                    run.index += 1;
                    run.cptr = index.wrapping_add(1);
                    src
                } else {
                    self.source_slot_run(dest, extra, index, src_depth, &mut run)
                        .map_err(at)?
                };
                if pass == 0 && i == 0 {
                    run0 = FrameRun {
                        cptr: src_index,
                        cnode: src.cnode,
                        index: src.index,
                        left: run.left + 1,
                        back: 0,
                    };
                }
                let cap = self.slot(src).cap;
                let derived = match frame_copy(&cap, mask) {
                    Some(copy) => copy,
                    None => {
                        let derived = self.derive_cap(src, cap.mask_rights(mask)).map_err(at)?;
                        if derived.is_null() {
                            return Err(at(ErrorReply::IllegalOperation));
                        }
                        derived
                    }
                };
                if pass == 1 {
                    self.cte_insert(derived, src, dest);
                }
            }
        }
        Ok(Reply::EMPTY)
    }

    /// `CNode_CopyRun`'s common case in one check pass over two slices:
    /// every source a frame cap in one CNode run, every destination empty.
    /// Returns whether it copied the run; `false` (nothing changed) when any
    /// of that does not hold, and the general loop then finds the exact
    /// error (or copies what is not a frame cap).
    ///
    /// The copies are what the general loop makes: [`frame_copy`] of each
    /// source, linked right after it by [`Kernel::cte_insert`].
    fn copy_frame_run(
        &mut self,
        first: SlotRef,
        extra: &Extra,
        [src_index, src_depth, count]: [Word; 3],
        mask: CapRights,
    ) -> bool {
        let Ok(src0) = self.source_slot(first, extra, src_index, src_depth) else {
            return false;
        };
        let n = count as usize;
        if src0.cnode & TCB_TABLE != 0 || first.cnode & TCB_TABLE != 0 {
            return false;
        }
        let (Some(srcs), Some(dests)) = (self.table(src0.cnode), self.table(first.cnode)) else {
            return false;
        };
        let (Some(srcs), Some(dests)) = (
            srcs.get(src0.index as usize..src0.index as usize + n),
            dests.get(first.index as usize..first.index as usize + n),
        ) else {
            return false;
        };
        let all_frames = srcs.iter().all(|s| matches!(s.cap, Cap::Frame { .. }));
        if !all_frames || !dests.iter().all(|d| d.cap.is_null()) {
            return false;
        }
        // The sources are non-null and the destinations empty, so no
        // destination is a source: each copy leaves the later sources as
        // they were checked.
        for i in 0..n as u32 {
            let src = SlotRef {
                cnode: src0.cnode,
                index: src0.index + i,
            };
            let dest = SlotRef {
                cnode: first.cnode,
                index: first.index + i,
            };
            let Some(copy) = frame_copy(&self.slot(src).cap, mask) else {
                // Unreachable: every source was checked to be a frame cap.
                return false;
            };
            self.cte_insert(copy, src, dest);
        }
        true
    }

    /// The source slot of a Copy/Mint/Move/Mutate, after the destination's
    /// emptiness check (seL4's order).
    fn source_slot(
        &self,
        dest: SlotRef,
        extra: &Extra,
        index: Word,
        depth: Word,
    ) -> Result<SlotRef, ErrorReply> {
        self.ensure_empty(dest)?;
        let src = self.lookup_slot_for_cnode_op(true, extra.cap(0), index, depth)?;
        if self.slot(src).cap.is_null() {
            return Err(ErrorReply::FailedLookup {
                source: true,
                failure: LookupFailure::MissingCapability {
                    bits_left: depth as u8,
                },
            });
        }
        Ok(src)
    }

    /// [`Kernel::source_slot`] of consecutive indices through a cursor
    /// (see [`Kernel::batch_frame_run`]): the same checks, in the same
    /// order, with the same errors.
    fn source_slot_run(
        &self,
        dest: SlotRef,
        extra: &Extra,
        index: Word,
        depth: Word,
        run: &mut FrameRun,
    ) -> Result<SlotRef, ErrorReply> {
        if run.left == 0 || run.cptr != index {
            // `source_slot`'s own checks and lookup, remembering the run.
            let src = self.source_slot(dest, extra, index, depth)?;
            run.left = match self.table(src.cnode) {
                // `lookup_slot_for_cnode_op` succeeded: no bits were left,
                // so the lookup ended at the index bits of `src`'s CNode.
                Some(slots) if src.cnode & TCB_TABLE == 0 => slots.len() as u32 - src.index,
                _ => 1,
            };
            run.cnode = src.cnode;
            run.left -= 1;
            run.index = src.index + 1;
            run.cptr = index.wrapping_add(1);
            return Ok(src);
        }
        self.ensure_empty(dest)?;
        let src = SlotRef {
            cnode: run.cnode,
            index: run.index,
        };
        run.left -= 1;
        run.index += 1;
        run.cptr = index.wrapping_add(1);
        if self.slot(src).cap.is_null() {
            return Err(ErrorReply::FailedLookup {
                source: true,
                failure: LookupFailure::MissingCapability {
                    bits_left: depth as u8,
                },
            });
        }
        Ok(src)
    }

    fn tcb_invocation(
        &mut self,
        cur: ObjId,
        cap: Cap,
        inv: Invocation,
        mrs: &[Word],
        extra: &Extra,
    ) -> InvocationResult {
        let Cap::Tcb { id: target } = cap else {
            return Err(ErrorReply::IllegalOperation.into());
        };
        use Invocation as I;
        match inv {
            I::TcbReadRegisters {
                suspend_source,
                count,
                ..
            } => {
                if !(1..=USER_CONTEXT_WORDS as Word).contains(&count) {
                    return Err(ErrorReply::RangeError {
                        min: 1,
                        max: USER_CONTEXT_WORDS as Word,
                    }
                    .into());
                }
                if target == cur {
                    return Err(ErrorReply::IllegalOperation.into());
                }
                if suspend_source {
                    self.suspend(target);
                }
                let t = self.tcbs.get(target).ok_or(ErrorReply::IllegalOperation)?;
                let c = &t.context;
                let mut r = Reply::EMPTY;
                r.words[CONTEXT_PC] = if matches!(t.state, ThreadState::Restart) {
                    c.restart_pc
                } else {
                    c.pc
                };
                r.words[CONTEXT_SP] = c.sp;
                r.words[CONTEXT_SPSR] = c.spsr;
                r.words[CONTEXT_X0..CONTEXT_X0 + 31].copy_from_slice(&c.x);
                r.words[CONTEXT_TPIDR] = c.tpidr;
                r.len = count as usize;
                Ok(r)
            }
            I::TcbWriteRegisters {
                resume_target,
                count,
                ..
            } => {
                if target == cur {
                    return Err(ErrorReply::IllegalOperation.into());
                }
                let n = (count as usize).min(USER_CONTEXT_WORDS);
                let values = &mrs[3..3 + n];
                if let Some(t) = self.tcbs.get_mut(target) {
                    let c = &mut t.context;
                    for (i, &v) in values.iter().enumerate() {
                        match i {
                            CONTEXT_PC => {
                                c.pc = v;
                                c.restart_pc = v;
                            }
                            CONTEXT_SP => c.sp = v,
                            CONTEXT_SPSR => c.spsr = sanitise_spsr(v),
                            CONTEXT_TPIDR => c.tpidr = v,
                            _ => c.x[i - CONTEXT_X0] = v,
                        }
                    }
                }
                if resume_target {
                    self.restart(target);
                }
                Ok(Reply::EMPTY)
            }
            I::TcbConfigure {
                fault_ep,
                cspace_root_data,
                buffer,
                ..
            } => {
                let buffer_cap = self.check_ipc_buffer(extra, 2, buffer)?;
                let (cspace, vspace) = self.check_space(extra, 0, 1, cspace_root_data)?;
                self.set_space(target, fault_ep, cspace, vspace);
                self.set_ipc_buffer(target, buffer, buffer_cap);
                Ok(Reply::EMPTY)
            }
            I::TcbSetSpace {
                fault_ep,
                cspace_root_data,
                ..
            } => {
                let (cspace, vspace) = self.check_space(extra, 0, 1, cspace_root_data)?;
                self.set_space(target, fault_ep, cspace, vspace);
                Ok(Reply::EMPTY)
            }
            I::TcbSetIpcBuffer { buffer } => {
                let buffer_cap = self.check_ipc_buffer(extra, 0, buffer)?;
                self.set_ipc_buffer(target, buffer, buffer_cap);
                Ok(Reply::EMPTY)
            }
            I::TcbSetPriority { priority } => {
                let Cap::Tcb { id: authority } = extra.cap(0) else {
                    return Err(ErrorReply::InvalidCapability { index: 1 }.into());
                };
                let mcp = self.tcbs.get(authority).map_or(0, |t| t.mcp) as Word;
                if priority > mcp {
                    return Err(ErrorReply::RangeError { min: 0, max: mcp }.into());
                }
                self.set_priority(target, priority as u8);
                Ok(Reply::EMPTY)
            }
            I::TcbSuspend => {
                self.suspend(target);
                Ok(Reply::EMPTY)
            }
            I::TcbResume => {
                self.restart(target);
                Ok(Reply::EMPTY)
            }
            I::TcbBindNotification => {
                if self
                    .tcbs
                    .get(target)
                    .is_some_and(|t| t.bound_ntfn.is_some())
                {
                    return Err(ErrorReply::IllegalOperation.into());
                }
                let Cap::Notification { id, rights, .. } = extra.cap(0) else {
                    return Err(ErrorReply::InvalidCapability { index: 1 }.into());
                };
                if !rights.can_read() {
                    return Err(ErrorReply::IllegalOperation.into());
                }
                let n = self
                    .notifications
                    .get(id)
                    .ok_or(ErrorReply::IllegalOperation)?;
                if !n.waiting.is_empty() || n.bound_tcb.is_some() {
                    return Err(ErrorReply::IllegalOperation.into());
                }
                if let Some(n) = self.notifications.get_mut(id) {
                    n.bound_tcb = Some(target);
                }
                if let Some(t) = self.tcbs.get_mut(target) {
                    t.bound_ntfn = Some(id);
                }
                Ok(Reply::EMPTY)
            }
            I::TcbUnbindNotification => {
                if self.tcbs.get(target).is_none_or(|t| t.bound_ntfn.is_none()) {
                    return Err(ErrorReply::IllegalOperation.into());
                }
                self.unbind_notification(target);
                Ok(Reply::EMPTY)
            }
            _ => Err(ErrorReply::IllegalOperation.into()),
        }
    }

    /// seL4 `checkValidIPCBuffer` (with `deriveCap`): the frame cap to
    /// install, or `None` for "no buffer" (address 0).
    fn check_ipc_buffer(
        &self,
        extra: &Extra,
        which: usize,
        buffer: Word,
    ) -> Result<Option<(Cap, SlotRef)>, ErrorReply> {
        if buffer == 0 {
            return Ok(None);
        }
        let slot = extra.slot(which).ok_or(ErrorReply::TruncatedMessage)?;
        let cap = self.derive_cap(slot, extra.cap(which))?;
        let Cap::Frame { device: false, .. } = cap else {
            return Err(ErrorReply::IllegalOperation);
        };
        if buffer & ((1 << IPC_BUFFER_ALIGN_BITS) - 1) != 0 {
            return Err(ErrorReply::AlignmentError);
        }
        Ok(Some((cap, slot)))
    }

    /// The CSpace and VSpace root caps for TCB_Configure/SetSpace, checked.
    #[allow(clippy::type_complexity)]
    fn check_space(
        &self,
        extra: &Extra,
        c: usize,
        v: usize,
        cspace_root_data: Word,
    ) -> Result<((Cap, SlotRef), (Cap, SlotRef)), ErrorReply> {
        let cslot = extra.slot(c).ok_or(ErrorReply::TruncatedMessage)?;
        let vslot = extra.slot(v).ok_or(ErrorReply::TruncatedMessage)?;
        let mut ccap = extra.cap(c);
        if cspace_root_data != 0 {
            ccap = ccap.update_data(false, cspace_root_data);
        }
        let ccap = self.derive_cap(cslot, ccap)?;
        if !matches!(ccap, Cap::CNode { .. }) {
            return Err(ErrorReply::IllegalOperation);
        }
        let vcap = self.derive_cap(vslot, extra.cap(v))?;
        if !matches!(vcap, Cap::VSpace { asid: Some(_), .. }) {
            return Err(ErrorReply::IllegalOperation);
        }
        Ok(((ccap, cslot), (vcap, vslot)))
    }

    /// Installs a thread's CSpace and VSpace roots and fault endpoint.
    pub fn set_space(
        &mut self,
        target: ObjId,
        fault_ep: Word,
        cspace: (Cap, SlotRef),
        vspace: (Cap, SlotRef),
    ) {
        if let Some(t) = self.tcbs.get_mut(target) {
            t.fault_ep = fault_ep;
        }
        for (which, (cap, src)) in [(tcb_slot::CSPACE, cspace), (tcb_slot::VSPACE, vspace)] {
            let Some(ctable) = self.tcbs.get(target).map(|t| t.ctable) else {
                return;
            };
            let dest = SlotRef {
                cnode: ctable,
                index: which,
            };
            self.delete_slot(dest);
            if self.slot_exists(src)
                && self.slot_exists(dest)
                && self.same_object_as(&cap, &self.slot(src).cap)
            {
                self.cte_insert(cap, src, dest);
            }
        }
    }

    /// Installs a thread's IPC buffer address and frame.
    pub fn set_ipc_buffer(&mut self, target: ObjId, buffer: Word, frame: Option<(Cap, SlotRef)>) {
        let Some(ctable) = self.tcbs.get(target).map(|t| t.ctable) else {
            return;
        };
        let dest = SlotRef {
            cnode: ctable,
            index: tcb_slot::BUFFER,
        };
        self.delete_slot(dest);
        if let Some(t) = self.tcbs.get_mut(target) {
            t.ipc_buffer = buffer;
        }
        if let Some((cap, src)) = frame
            && self.slot_exists(src)
            && self.same_object_as(&cap, &self.slot(src).cap)
        {
            self.cte_insert(cap, src, dest);
        }
    }

    /// seL4 `setPriority`.
    pub fn set_priority(&mut self, target: ObjId, priority: u8) {
        self.sched_dequeue(target);
        if let Some(t) = self.tcbs.get_mut(target) {
            t.priority = priority;
        }
        if self.tcbs.get(target).is_some_and(|t| t.state.is_runnable()) {
            if self.sched.current == Some(target) {
                self.reschedule_required();
            } else {
                self.sched_enqueue(target, false);
                self.possible_switch_to(target);
            }
        }
    }

    fn irq_issue(
        &mut self,
        control: SlotRef,
        extra: &Extra,
        irq: Word,
        index: Word,
        depth: Word,
    ) -> InvocationResult {
        let count = self.irqs.len() as Word;
        if irq >= count {
            return Err(ErrorReply::RangeError {
                min: 0,
                max: count.saturating_sub(1),
            }
            .into());
        }
        let state = self.irqs[irq as usize];
        if state.issued || state.reserved {
            return Err(ErrorReply::RevokeFirst.into());
        }
        let dest = self.lookup_slot_for_cnode_op(false, extra.cap(0), index, depth)?;
        self.ensure_empty(dest)?;
        self.irqs[irq as usize].issued = true;
        self.cte_insert(Cap::IrqHandler { irq: irq as u32 }, control, dest);
        self.machine.irq_set_enabled(irq as u32, true);
        Ok(Reply::EMPTY)
    }

    fn irq_handler_invocation(
        &mut self,
        cap: Cap,
        inv: Invocation,
        extra: &Extra,
    ) -> InvocationResult {
        let Cap::IrqHandler { irq } = cap else {
            return Err(ErrorReply::IllegalOperation.into());
        };
        match inv {
            Invocation::IrqAckIrq => self.machine.irq_set_enabled(irq, true),
            Invocation::IrqSetIrqHandler => {
                let Cap::Notification { id, badge, rights } = extra.cap(0) else {
                    return Err(ErrorReply::InvalidCapability { index: 1 }.into());
                };
                if !rights.can_write() {
                    return Err(ErrorReply::InvalidCapability { index: 1 }.into());
                }
                self.irqs[irq as usize].notification = Some((id, badge));
            }
            Invocation::IrqClearIrqHandler => self.irqs[irq as usize].notification = None,
            _ => return Err(ErrorReply::IllegalOperation.into()),
        }
        Ok(Reply::EMPTY)
    }

    /// An interrupt from a device: mask it until acknowledged and signal its notification.
    pub fn handle_device_irq(&mut self, irq: u32) {
        self.machine.irq_set_enabled(irq, false);
        if let Some((ntfn, badge)) = self.irqs.get(irq as usize).and_then(|s| s.notification) {
            self.send_signal(ntfn, badge);
        }
    }

    /// The ASID and root of a VSpace cap that has one; error `index` otherwise.
    fn valid_vspace(&self, cap: Cap, index: Word) -> Result<u16, ErrorReply> {
        match cap {
            Cap::VSpace {
                paddr,
                asid: Some(asid),
            } if self.vspace_root(asid) == Some(paddr) => Ok(asid),
            _ => Err(ErrorReply::InvalidCapability { index }),
        }
    }

    fn set_frame_mapping(&mut self, slot: SlotRef, mapping: Option<Mapping>) {
        if let Cap::Frame { mapping: m, .. } = &mut self.slot_mut(slot).cap {
            *m = mapping;
        }
    }

    /// The checks of one frame mapping, in seL4's order: the frame cap's
    /// own mapping, alignment, range, the tables on the way and the slot,
    /// then the rights. `index_of_rights` is the argument index a missing
    /// Read right is reported with. Returns the descriptor attributes.
    #[allow(clippy::too_many_arguments)]
    fn check_frame_map(
        &mut self,
        frame: Cap,
        asid: u16,
        root: u64,
        vaddr: Word,
        rights: Word,
        attr: Word,
        index_of_rights: Word,
    ) -> Result<vmsa::PageAttrs, ErrorReply> {
        let Cap::Frame {
            paddr,
            size_bits,
            rights: cap_rights,
            mapping,
            ..
        } = frame
        else {
            return Err(ErrorReply::InvalidCapability { index: 0 });
        };
        if let Some(m) = mapping {
            if m.asid != asid {
                return Err(ErrorReply::InvalidCapability { index: 1 });
            }
            if m.vaddr != vaddr {
                return Err(ErrorReply::InvalidArgument { index: 0 });
            }
        }
        let size = 1u64 << size_bits;
        if vaddr & (size - 1) != 0 {
            return Err(ErrorReply::AlignmentError);
        }
        match vaddr.checked_add(size) {
            Some(end) if vaddr >= USER_VADDR_MIN && end <= USER_VADDR_END => {}
            _ => return Err(ErrorReply::InvalidArgument { index: 0 }),
        }
        let leaf = if size == vmsa::PAGE_SIZE { 3 } else { 2 };
        match vmsa::walk(&super::vspace::Tables(&mut self.machine), root, vaddr) {
            Err(f) if f.level == leaf => {}
            Err(f) if f.level < leaf => {
                return Err(super::vspace::map_error(vmsa::MapError::MissingTable {
                    level: f.level + 1,
                }));
            }
            Ok(t) if mapping.is_some() && t.level == leaf && t.descriptor.address() == paddr => {}
            _ => return Err(ErrorReply::DeleteFirst),
        }
        let rights = cap_rights.intersect(CapRights::from_word(rights));
        if !rights.can_read() {
            return Err(ErrorReply::InvalidArgument {
                index: index_of_rights,
            });
        }
        Ok(page_attrs(rights, attr))
    }

    fn page_map(
        &mut self,
        cap: Cap,
        slot: SlotRef,
        extra: &Extra,
        vaddr: Word,
        rights: Word,
        attr: Word,
    ) -> InvocationResult {
        let asid = self.valid_vspace(extra.cap(0), 1)?;
        let root = self
            .vspace_root(asid)
            .ok_or(ErrorReply::InvalidCapability { index: 1 })?;
        let attrs = self.check_frame_map(cap, asid, root, vaddr, rights, attr, 1)?;
        let Cap::Frame {
            paddr, size_bits, ..
        } = cap
        else {
            return Err(ErrorReply::IllegalOperation.into());
        };
        self.map_frame(asid, vaddr, paddr, 1 << size_bits, attrs)?;
        self.set_frame_mapping(slot, Some(Mapping { asid, vaddr }));
        Ok(Reply::EMPTY)
    }

    fn page_table_map(
        &mut self,
        cap: Cap,
        slot: SlotRef,
        extra: &Extra,
        vaddr: Word,
    ) -> InvocationResult {
        let Cap::PageTable { paddr, mapping } = cap else {
            return Err(ErrorReply::IllegalOperation.into());
        };
        if mapping.is_some() {
            return Err(ErrorReply::InvalidCapability { index: 0 }.into());
        }
        let asid = self.valid_vspace(extra.cap(0), 1)?;
        if vaddr >= USER_VADDR_END {
            return Err(ErrorReply::InvalidArgument { index: 0 }.into());
        }
        let level = self.install_table(asid, vaddr, paddr)?;
        let span = 1u64 << vmsa::level_shift(level - 1);
        if let Cap::PageTable { mapping, .. } = &mut self.slot_mut(slot).cap {
            *mapping = Some(TableMapping {
                asid,
                vaddr: vaddr & !(span - 1),
                level,
            });
        }
        Ok(Reply::EMPTY)
    }

    fn page_table_unmap(&mut self, cap: Cap, slot: SlotRef) -> InvocationResult {
        let Cap::PageTable { paddr, mapping } = cap else {
            return Err(ErrorReply::IllegalOperation.into());
        };
        if !self.is_final(slot) {
            return Err(ErrorReply::RevokeFirst.into());
        }
        if let Some(m) = mapping {
            self.unmap_table_at(m, paddr);
            self.machine.zero(paddr, vmsa::TABLE_SIZE);
            if let Cap::PageTable { mapping, .. } = &mut self.slot_mut(slot).cap {
                *mapping = None;
            }
        }
        Ok(Reply::EMPTY)
    }

    fn asid_pool_assign(&mut self, extra: &Extra) -> InvocationResult {
        let Cap::VSpace { paddr, asid: None } = extra.cap(0) else {
            return Err(ErrorReply::InvalidCapability { index: 1 }.into());
        };
        let slot = extra.slot(0).ok_or(ErrorReply::TruncatedMessage)?;
        let asid = self.assign_asid(paddr).ok_or(ErrorReply::DeleteFirst)?;
        self.cap_generation += 1;
        self.slot_mut(slot).cap = Cap::VSpace {
            paddr,
            asid: Some(asid),
        };
        Ok(Reply::EMPTY)
    }

    /// A whole-batch failure (no single frame at fault): MR0 is `Word::MAX`.
    fn whole(error: ErrorReply) -> Failure {
        Failure {
            error,
            batch_index: Some(Word::MAX),
        }
    }

    /// The VSpace and the checked count of a batch.
    fn batch_vspace(&self, vspace: Cap, count: Word) -> Result<(u16, u64), Failure> {
        let asid = self.valid_vspace(vspace, 0).map_err(Self::whole)?;
        let root = self
            .vspace_root(asid)
            .ok_or(Self::whole(ErrorReply::InvalidCapability { index: 0 }))?;
        if !(1..=MAX_BATCH_FRAMES).contains(&count) {
            return Err(Self::whole(ErrorReply::RangeError {
                min: 1,
                max: MAX_BATCH_FRAMES,
            }));
        }
        Ok((asid, root))
    }

    /// The frame cap at `first + i` in `cur`'s CSpace (what a batch needs of
    /// it), found through a cursor over a run of consecutive
    /// slots: when a lookup ends exactly at the last bits of the CPtr in a
    /// CNode (the usual case), the following CPtrs up to the end of that
    /// CNode take the same path to the following slots, so they are found
    /// without walking the CSpace again. Same results and errors as a full
    /// lookup of each CPtr.
    #[inline(always)]
    fn batch_frame_run(
        &self,
        cur: ObjId,
        first: Word,
        i: Word,
        run: &mut FrameRun,
    ) -> Result<(FrameView, SlotRef), Failure> {
        let at = |error| Failure {
            error,
            batch_index: Some(i),
        };
        let cptr = first.wrapping_add(i);
        let slot = if run.left > 0 && run.cptr == cptr {
            SlotRef {
                cnode: run.cnode,
                index: run.index,
            }
        } else {
            let (slot, bits_left) =
                self.resolve(self.cspace_root(cur), cptr, 64)
                    .map_err(|failure| {
                        at(ErrorReply::FailedLookup {
                            source: true,
                            failure,
                        })
                    })?;
            // The slots after it in the same CNode, when the lookup ended
            // at its index bits (then the next CPtrs differ from this one
            // in those bits only, until they carry out of them).
            (run.left, run.back) = match self.table(slot.cnode) {
                Some(slots) if bits_left == 0 && slot.cnode & TCB_TABLE == 0 => {
                    (slots.len() as u32 - slot.index, slot.index)
                }
                _ => (1, 0),
            };
            run.cnode = slot.cnode;
            slot
        };
        run.left -= 1;
        run.back += 1;
        run.index = slot.index + 1;
        run.cptr = cptr.wrapping_add(1);
        match self.slot(slot).cap {
            Cap::Frame {
                paddr,
                size_bits,
                rights,
                mapping,
                ..
            } => Ok((
                FrameView {
                    paddr,
                    size_bits,
                    rights,
                    mapping,
                },
                slot,
            )),
            _ => Err(at(ErrorReply::InvalidCapability { index: 0 })),
        }
    }

    /// The level-3 table of the 2 MiB region holding `vaddr` (a user
    /// address), or the error [`Kernel::check_frame_map`] gives for a 4 KiB
    /// frame there: its walk stops above level 3 at an invalid entry
    /// (MissingTable) or at a block (DeleteFirst).
    fn leaf_table_4k(&self, root: u64, vaddr: Word) -> Result<u64, ErrorReply> {
        leaf_table_4k(&self.machine, root, vaddr)
    }

    #[allow(clippy::too_many_arguments)]
    fn map_frames(
        &mut self,
        cur: ObjId,
        vspace: Cap,
        first: Word,
        count: Word,
        vaddr: Word,
        rights: Word,
        attr: Word,
    ) -> InvocationResult {
        let mut hint = FrameRun::NONE;
        let args = [first, count, vaddr, rights, attr];
        self.vspace_map_frames(cur, vspace, args, &mut hint)
            .map(|()| Reply::EMPTY)
    }

    /// `VSpace_MapFrames` on the VSpace cap `vspace` by thread `cur`, with
    /// its arguments (first frame, count, address, rights, attributes):
    /// the invocation, without building a reply (which has no words).
    /// `hint` is a run of slots that `cur`'s CPtrs are known to name (the
    /// caller guarantees it still holds), or [`FrameRun::NONE`]; it is set
    /// to the run found for the first frame.
    pub fn vspace_map_frames(
        &mut self,
        cur: ObjId,
        vspace: Cap,
        args: [Word; 5],
        hint: &mut FrameRun,
    ) -> Result<(), Failure> {
        let mut wrote = false;
        let r = self.map_frames_checked(cur, vspace, args, &mut wrote, hint);
        if wrote {
            // The entries written without `map_frame` (and its barrier each).
            self.machine.table_write_barrier();
        }
        r
    }

    /// [`Kernel::map_frames_checked`] of one frame (a demand fault's map):
    /// the same checks in the same order, then the mapping, without the
    /// batch loop's bookkeeping.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn map_one_checked(
        &mut self,
        cur: ObjId,
        asid: u16,
        root: u64,
        first: Word,
        va: Word,
        rights: Word,
        attr: Word,
        wrote: &mut bool,
        hint: &mut FrameRun,
    ) -> Result<(), Failure> {
        let at = |error| Failure {
            error,
            batch_index: Some(0),
        };
        let mut run = hint_run(hint, first);
        let (frame, slot) = self.batch_frame_run(cur, first, 0, &mut run)?;
        // As `map_frames_checked`'s hint: the whole run found.
        *hint = run.whole();
        let FrameView {
            paddr,
            size_bits,
            rights: cap_rights,
            mapping,
        } = frame;
        if mapping.is_some_and(|m| m.asid != asid || m.vaddr != va) {
            return Err(at(ErrorReply::InvalidCapability { index: 0 }));
        }
        if 1u64 << size_bits != vmsa::PAGE_SIZE {
            let cap = Cap::Frame {
                paddr,
                size_bits,
                device: false,
                rights: cap_rights,
                mapping,
            };
            let attrs = self
                .check_frame_map(cap, asid, root, va, rights, attr, 3)
                .map_err(at)?;
            self.map_frame(asid, va, paddr, 1 << size_bits, attrs)?;
            self.set_frame_mapping(slot, Some(Mapping { asid, vaddr: va }));
            return Ok(());
        }
        let mask = CapRights::from_word(rights);
        let mut leaf = (Word::MAX, 0);
        let (entry, existing) =
            check_4k(&self.machine, root, asid, mask, va, &frame, &mut leaf).map_err(at)?;
        let attrs = page_attrs(cap_rights.intersect(mask), attr);
        if existing.0 == 0 {
            let d = vmsa::Descriptor::page(paddr, attrs);
            self.machine.write_word(entry, d.0);
            *wrote = true;
        } else {
            self.map_frame(asid, va, paddr, vmsa::PAGE_SIZE, attrs)?;
        }
        if let Cap::Frame { mapping, .. } = &mut self.slot_mut(slot).cap {
            *mapping = Some(Mapping { asid, vaddr: va });
        }
        Ok(())
    }

    /// [`Kernel::map_frames_checked`] of a batch whose first frame is a
    /// 4 KiB frame (a populate's): the same checks in the same order, in a
    /// pass of their own, then a pass that only maps (the checks passed and
    /// nothing changed in between, so it meets the same slots and tables).
    /// Each pass finds a run of slots through the cursor, then takes the
    /// rest of the run straight from its CNode's slots. `None`, having
    /// changed nothing, when the first frame is a frame cap of another size
    /// (the general loop's road).
    #[inline(never)]
    fn map_frames_4k(
        &mut self,
        cur: ObjId,
        asid: u16,
        root: u64,
        [first, count, vaddr, rights, attr]: [Word; 5],
        wrote: &mut bool,
        hint: &mut FrameRun,
    ) -> Option<Result<(), Failure>> {
        let mask = CapRights::from_word(rights);
        let fail = |error, i| {
            Some(Err(Failure {
                error,
                batch_index: Some(i),
            }))
        };
        let mut run = hint_run(hint, first);
        let mut run0 = run;
        // (2 MiB region, its level-3 table)
        let mut leaf: (Word, u64) = (Word::MAX, 0);
        let mut leaf0 = leaf;
        let mut i = 0;
        while i < count {
            let (frame, slot) = match self.batch_frame_run(cur, first, i, &mut run) {
                Ok(found) => found,
                Err(failure) => return Some(Err(failure)),
            };
            if i == 0 {
                if 1u64 << frame.size_bits != vmsa::PAGE_SIZE {
                    return None;
                }
                run0 = run.starting_at(first);
                *hint = run.whole();
            }
            // This frame, then the rest of its run in the batch.
            let more = (run.left as Word).min(count - i - 1);
            let slots = self.table(slot.cnode).expect("live CNode");
            let rest = &slots[run.index as usize..][..more as usize];
            let pages = core::iter::once(Ok(frame)).chain(rest.iter().map(|s| frame_view(&s.cap)));
            for (k, view) in pages.enumerate() {
                let at = i + k as Word;
                let va = vaddr.wrapping_add(at.wrapping_mul(vmsa::PAGE_SIZE));
                let checked = view.and_then(|f| {
                    check_4k(&self.machine, root, asid, mask, va, &f, &mut leaf)?;
                    if at == 0 {
                        leaf0 = leaf;
                    }
                    Ok(())
                });
                if let Err(error) = checked {
                    return fail(error, at);
                }
            }
            run.left -= more as u32;
            run.index += more as u32;
            run.back += more as u32;
            run.cptr = run.cptr.wrapping_add(more);
            i += 1 + more;
        }
        // The map pass: every check above held, and still holds.
        let mut run = run0;
        let mut leaf = leaf0;
        // The descriptor bits but the address, for the last rights seen.
        let mut template: Option<(CapRights, u64)> = None;
        let mut i = 0;
        while i < count {
            let (_, slot) = match self.batch_frame_run(cur, first, i, &mut run) {
                Ok(found) => found,
                Err(failure) => return Some(Err(failure)),
            };
            let n = 1 + (run.left as Word).min(count - i - 1);
            let mut k = 0;
            while k < n {
                // Fresh entries written here; an entry to replace (the same
                // frame again) goes through `map_frame`, outside the borrows.
                let Kernel {
                    machine,
                    cnodes,
                    tcbs,
                    ..
                } = self;
                let slots: &mut [Slot] = if slot.cnode & TCB_TABLE != 0 {
                    &mut tcbs
                        .get_mut(slot.cnode & !TCB_TABLE)
                        .expect("live TCB")
                        .slots[..]
                } else {
                    &mut cnodes.get_mut(slot.cnode).expect("live CNode").slots[..]
                };
                let mut stop = None;
                for (j, s) in slots[slot.index as usize..][k as usize..n as usize]
                    .iter_mut()
                    .enumerate()
                {
                    let at = i + k + j as Word;
                    let va = vaddr.wrapping_add(at.wrapping_mul(vmsa::PAGE_SIZE));
                    let Cap::Frame {
                        paddr,
                        rights: cap_rights,
                        mapping,
                        ..
                    } = &mut s.cap
                    else {
                        unreachable!("checked by the first pass");
                    };
                    let region = va >> vmsa::level_shift(2);
                    if leaf.0 != region {
                        match leaf_table_4k(machine, root, va) {
                            Ok(t) => leaf = (region, t),
                            Err(error) => return fail(error, at),
                        }
                    }
                    let entry = leaf.1 + vmsa::index(va, 3) as u64 * 8;
                    if machine.read_word(entry) != 0 {
                        stop = Some((k + j as Word, *paddr, cap_rights.intersect(mask)));
                        break;
                    }
                    let granted = cap_rights.intersect(mask);
                    let bits = match template {
                        Some((r, bits)) if r == granted => bits,
                        _ => {
                            let bits = vmsa::Descriptor::page(0, page_attrs(granted, attr)).0;
                            template = Some((granted, bits));
                            bits
                        }
                    };
                    machine.write_word(entry, bits | *paddr & PAGE_ADDRESS_MASK);
                    *wrote = true;
                    *mapping = Some(Mapping { asid, vaddr: va });
                }
                let Some((kk, paddr, granted)) = stop else {
                    break;
                };
                let at = i + kk;
                let va = vaddr.wrapping_add(at.wrapping_mul(vmsa::PAGE_SIZE));
                if let Err(error) =
                    self.map_frame(asid, va, paddr, vmsa::PAGE_SIZE, page_attrs(granted, attr))
                {
                    return Some(Err(error.into()));
                }
                let s = SlotRef {
                    cnode: slot.cnode,
                    index: slot.index + kk as u32,
                };
                self.set_frame_mapping(s, Some(Mapping { asid, vaddr: va }));
                k = kk + 1;
            }
            let more = n - 1;
            run.left -= more as u32;
            run.index += more as u32;
            run.back += more as u32;
            run.cptr = run.cptr.wrapping_add(more);
            i += n;
        }
        Some(Ok(()))
    }

    /// [`Kernel::map_frames`]; sets `wrote` when it wrote entries that
    /// still need the table-write barrier.
    fn map_frames_checked(
        &mut self,
        cur: ObjId,
        vspace: Cap,
        [first, count, vaddr, rights, attr]: [Word; 5],
        wrote: &mut bool,
        hint: &mut FrameRun,
    ) -> Result<(), Failure> {
        let (asid, root) = self.batch_vspace(vspace, count)?;
        // The measured cases take dedicated roads with the same checks and
        // results: one frame (a demand fault), and a batch that starts
        // with a 4 KiB frame (a populate). The loop below handles every
        // case; with the fastpaths off (host tests that compare them with
        // the general path) it takes these too, so those tests hold the
        // roads to its results.
        if self.fastpath && count == 1 {
            return self.map_one_checked(cur, asid, root, first, vaddr, rights, attr, wrote, hint);
        }
        let args = [first, count, vaddr, rights, attr];
        if self.fastpath
            && let Some(r) = self.map_frames_4k(cur, asid, root, args, wrote, hint)
        {
            return r;
        }
        // Two passes, so that nothing is allocated: check every frame, then
        // map them. The checks of one frame do not depend on the mappings
        // of the others (distinct addresses), so the second pass repeats
        // the first one's results.
        //
        // 4 KiB frames take a shorter road with the same checks, in
        // `check_frame_map`'s order: the CSpace walked once per run of
        // slots (`batch_frame_run`), the tables once per 2 MiB (only level-3
        // entries change here), and an entry that was invalid written
        // without a TLB invalidation (no TLB holds an invalid entry), with
        // one barrier for the batch. Other sizes go through
        // `check_frame_map` and `map_frame`.
        // The second pass starts from the first one's first lookups: the
        // first pass changes nothing, so they still hold. The first starts
        // from the hint, when it covers the first frame.
        let mut run0 = hint_run(hint, first);
        // (2 MiB region, its level-3 table or the error for it)
        let mut leaf0: Option<(Word, Result<u64, ErrorReply>)> = None;
        // One frame needs one pass: its checks, then its mapping (a second
        // pass would repeat the same checks).
        let map_pass = if count == 1 { 0 } else { 1 };
        for pass in 0..=map_pass {
            let mut size0 = None;
            let mut va = vaddr;
            let mut run = run0;
            let mut leaf = leaf0;
            for i in 0..count {
                let at = |error| Failure {
                    error,
                    batch_index: Some(i),
                };
                let (frame, slot) = self.batch_frame_run(cur, first, i, &mut run)?;
                if pass == 0 && i == 0 {
                    run0 = run.starting_at(first);
                    // The hint covers the whole run found, the slots before
                    // this one included (when the lookup ended at its
                    // CNode's index bits, that is the whole CNode): the
                    // next call's frame is often another slot of it.
                    *hint = run.whole();
                }
                let FrameView {
                    paddr,
                    size_bits,
                    rights: cap_rights,
                    mapping,
                } = frame;
                if *size0.get_or_insert(size_bits) != size_bits {
                    return Err(at(ErrorReply::InvalidArgument { index: 0 }));
                }
                if mapping.is_some_and(|m| m.asid != asid || m.vaddr != va) {
                    return Err(at(ErrorReply::InvalidCapability { index: 0 }));
                }
                if 1u64 << size_bits != vmsa::PAGE_SIZE {
                    // (`check_frame_map` reads no other field of the cap.)
                    let cap = Cap::Frame {
                        paddr,
                        size_bits,
                        device: false,
                        rights: cap_rights,
                        mapping,
                    };
                    let attrs = self
                        .check_frame_map(cap, asid, root, va, rights, attr, 3)
                        .map_err(at)?;
                    if pass == map_pass {
                        self.map_frame(asid, va, paddr, 1 << size_bits, attrs)?;
                        self.set_frame_mapping(slot, Some(Mapping { asid, vaddr: va }));
                    }
                    va = va.wrapping_add(1 << size_bits);
                    continue;
                }
                // A 4 KiB frame: `check_frame_map`'s checks, in its order.
                if va & (vmsa::PAGE_SIZE - 1) != 0 {
                    return Err(at(ErrorReply::AlignmentError));
                }
                match va.checked_add(vmsa::PAGE_SIZE) {
                    Some(end) if va >= USER_VADDR_MIN && end <= USER_VADDR_END => {}
                    _ => return Err(at(ErrorReply::InvalidArgument { index: 0 })),
                }
                let region = va >> vmsa::level_shift(2);
                let table = match leaf {
                    Some((r, t)) if r == region => t,
                    _ => {
                        let t = self.leaf_table_4k(root, va);
                        leaf = Some((region, t));
                        if leaf0.is_none() {
                            leaf0 = leaf;
                        }
                        t
                    }
                }
                .map_err(at)?;
                let entry = table + vmsa::index(va, 3) as u64 * 8;
                let existing = vmsa::Descriptor(self.machine.read_word(entry));
                let fresh = !existing.is_valid() || !existing.is_leaf(3);
                let same = mapping.is_some() && existing.address() == paddr;
                if !(fresh || same) {
                    return Err(at(ErrorReply::DeleteFirst));
                }
                let granted = cap_rights.intersect(CapRights::from_word(rights));
                if !granted.can_read() {
                    return Err(at(ErrorReply::InvalidArgument { index: 3 }));
                }
                if pass == map_pass {
                    if existing.0 == 0 {
                        let d = vmsa::Descriptor::page(paddr, page_attrs(granted, attr));
                        self.machine.write_word(entry, d.0);
                        *wrote = true;
                    } else {
                        self.map_frame(
                            asid,
                            va,
                            paddr,
                            vmsa::PAGE_SIZE,
                            page_attrs(granted, attr),
                        )?;
                    }
                    if let Cap::Frame { mapping, .. } = &mut self.slot_mut(slot).cap {
                        *mapping = Some(Mapping { asid, vaddr: va });
                    }
                }
                va = va.wrapping_add(vmsa::PAGE_SIZE);
            }
        }
        Ok(())
    }

    fn unmap_frames(
        &mut self,
        cur: ObjId,
        vspace: Cap,
        first: Word,
        count: Word,
    ) -> InvocationResult {
        let (asid, _) = self.batch_vspace(vspace, count)?;
        // Check every frame first, then unmap (no allocation, see
        // `map_frames`; the second pass starts from the first one's first
        // lookup, as there).
        let mut run0 = FrameRun::NONE;
        let mut run = run0;
        for i in 0..count {
            self.batch_frame_run(cur, first, i, &mut run)?;
            if i == 0 {
                run0 = run.starting_at(first);
            }
        }
        let mut run = run0;
        for i in 0..count {
            let (frame, slot) = self.batch_frame_run(cur, first, i, &mut run)?;
            if let Some(m) = frame.mapping
                && m.asid == asid
            {
                self.unmap_frame_at(m, frame.paddr, 1u64 << frame.size_bits);
                self.set_frame_mapping(slot, None);
            }
        }
        Ok(Reply::EMPTY)
    }
}

/// The kernel-heap memory of objects a retype is about to create,
/// allocated before it changes anything.
pub enum Prepared {
    /// The objects need none beyond their tables' room.
    Nothing,
    /// The slots of each new CNode.
    Tables(alloc::vec::Vec<alloc::vec::Vec<Slot>>),
    /// The block of each new TCB.
    Threads(alloc::vec::Vec<Boxed<Tcb>>),
    /// The block of each new endpoint.
    Endpoints(alloc::vec::Vec<Boxed<Endpoint>>),
}

impl Prepared {
    fn thread(&mut self) -> Option<Boxed<Tcb>> {
        match self {
            Prepared::Threads(v) => v.pop(),
            _ => None,
        }
    }

    fn endpoint(&mut self) -> Option<Boxed<Endpoint>> {
        match self {
            Prepared::Endpoints(v) => v.pop(),
            _ => None,
        }
    }

    fn table(&mut self) -> Option<alloc::vec::Vec<Slot>> {
        match self {
            Prepared::Tables(v) => v.pop(),
            _ => None,
        }
    }
}

/// [`Kernel::leaf_table_4k`], on the machine alone.
#[inline(always)]
fn leaf_table_4k<M: Machine>(machine: &M, root: u64, vaddr: Word) -> Result<u64, ErrorReply> {
    let mut table = root;
    for level in 0..3u8 {
        let entry = table + vmsa::index(vaddr, level) as u64 * 8;
        let d = vmsa::Descriptor(machine.read_word(entry));
        if !d.is_valid() || (!d.is_leaf(level) && !d.is_table(level)) {
            return Err(super::vspace::map_error(vmsa::MapError::MissingTable {
                level: level + 1,
            }));
        }
        if d.is_leaf(level) {
            return Err(ErrorReply::DeleteFirst);
        }
        table = d.address();
    }
    Ok(table)
}

/// What a batch reads of the cap in one of its slots: a frame cap's
/// fields, or `batch_frame_run`'s error for any other cap.
#[inline(always)]
fn frame_view(cap: &Cap) -> Result<FrameView, ErrorReply> {
    match *cap {
        Cap::Frame {
            paddr,
            size_bits,
            rights,
            mapping,
            ..
        } => Ok(FrameView {
            paddr,
            size_bits,
            rights,
            mapping,
        }),
        _ => Err(ErrorReply::InvalidCapability { index: 0 }),
    }
}

/// The checks of `map_frames_checked` for a 4 KiB frame (`frame`) mapped
/// at `va`, in their order (a batch's frame, or the one frame of a demand
/// fault's map); `leaf` caches the last 2 MiB region's level-3 table.
/// Returns the address of the level-3 entry for `va` and what it holds.
#[inline(always)]
fn check_4k<M: Machine>(
    machine: &M,
    root: u64,
    asid: u16,
    mask: CapRights,
    va: Word,
    frame: &FrameView,
    leaf: &mut (Word, u64),
) -> Result<(u64, vmsa::Descriptor), ErrorReply> {
    if 1u64 << frame.size_bits != vmsa::PAGE_SIZE {
        return Err(ErrorReply::InvalidArgument { index: 0 });
    }
    if frame
        .mapping
        .is_some_and(|m| m.asid != asid || m.vaddr != va)
    {
        return Err(ErrorReply::InvalidCapability { index: 0 });
    }
    if va & (vmsa::PAGE_SIZE - 1) != 0 {
        return Err(ErrorReply::AlignmentError);
    }
    match va.checked_add(vmsa::PAGE_SIZE) {
        Some(end) if va >= USER_VADDR_MIN && end <= USER_VADDR_END => {}
        _ => return Err(ErrorReply::InvalidArgument { index: 0 }),
    }
    let region = va >> vmsa::level_shift(2);
    if leaf.0 != region {
        *leaf = (region, leaf_table_4k(machine, root, va)?);
    }
    let entry = leaf.1 + vmsa::index(va, 3) as u64 * 8;
    let existing = vmsa::Descriptor(machine.read_word(entry));
    let fresh = !existing.is_valid() || !existing.is_leaf(3);
    let same = frame.mapping.is_some() && existing.address() == frame.paddr;
    if !(fresh || same) {
        return Err(ErrorReply::DeleteFirst);
    }
    if !frame.rights.intersect(mask).can_read() {
        return Err(ErrorReply::InvalidArgument { index: 3 });
    }
    Ok((entry, existing))
}

/// `derive_cap(mask_rights(cap, mask))` of a frame cap (a copy of it with
/// the rights masked and no mapping; never null), without going through
/// the general matches; `None` for any other cap.
#[inline(always)]
pub(crate) fn frame_copy(cap: &Cap, mask: CapRights) -> Option<Cap> {
    match *cap {
        Cap::Frame {
            paddr,
            size_bits,
            device,
            rights,
            ..
        } => {
            let r = rights.intersect(mask);
            Some(Cap::Frame {
                paddr,
                size_bits,
                device,
                rights: CapRights::new(false, false, r.can_read(), r.can_write()),
                mapping: None,
            })
        }
        _ => None,
    }
}

/// The output-address bits of a level-3 descriptor: `Descriptor::page(p,
/// a)` is `Descriptor::page(0, a)` with `p & PAGE_ADDRESS_MASK` set.
pub(crate) const PAGE_ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;

/// A cursor over a run of consecutive slots that consecutive CPtrs name
/// (see `Kernel::batch_frame_run`): CPtr `cptr + j` names slot `index + j`
/// of CNode `cnode` for `j < left`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRun {
    /// The CPtr the next slot answers.
    pub cptr: Word,
    /// The CNode of the run.
    pub cnode: ObjId,
    /// The next slot's index.
    pub index: u32,
    /// How many slots the run still has.
    pub left: u32,
    /// How many slots before the next one the run also covers: CPtr
    /// `cptr - k` names slot `index - k` of `cnode` for `0 < k <= back`.
    pub back: u32,
}

impl FrameRun {
    /// The whole run this cursor is in, the slots before it included: a
    /// hint for the next batch (its first frame is often another slot of
    /// the same CNode).
    fn whole(&self) -> FrameRun {
        FrameRun {
            cptr: self.cptr.wrapping_sub(self.back as Word),
            cnode: self.cnode,
            index: self.index - self.back,
            left: self.left + self.back,
            back: 0,
        }
    }

    /// The run from the slot just found for CPtr `first` (this cursor is
    /// just past it): where a second pass over the batch starts.
    fn starting_at(&self, first: Word) -> FrameRun {
        FrameRun {
            cptr: first,
            cnode: self.cnode,
            index: self.index - 1,
            left: self.left + 1,
            back: 0,
        }
    }

    /// No run.
    pub const NONE: FrameRun = FrameRun {
        cptr: 0,
        cnode: 0,
        index: 0,
        left: 0,
        back: 0,
    };
}

/// What a batched map or unmap reads of a frame cap.
#[derive(Clone, Copy, Debug)]
struct FrameView {
    paddr: u64,
    size_bits: u8,
    rights: CapRights,
    mapping: Option<Mapping>,
}

/// The run `hint` gives for CPtr `first` (the part of it from `first` on),
/// or [`FrameRun::NONE`] when it does not cover `first`.
fn hint_run(hint: &FrameRun, first: Word) -> FrameRun {
    match first.checked_sub(hint.cptr) {
        Some(j) if j < hint.left as Word => FrameRun {
            cptr: first,
            cnode: hint.cnode,
            index: hint.index + j as u32,
            left: hint.left - j as u32,
            back: hint.back + j as u32,
        },
        _ => FrameRun::NONE,
    }
}
