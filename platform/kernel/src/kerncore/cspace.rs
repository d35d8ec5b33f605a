//! CSpace lookup and the capability derivation tree (seL4's CTE and MDB code).
//!
//! Every slot is linked into one list that holds the derivation tree in
//! preorder, as seL4's mapping database does: a cap derived from another is
//! inserted right after it, and the caps after a slot that satisfy
//! [`Kernel::is_mdb_parent_of`] are its descendants. Revoke deletes them;
//! a cap is *final* when neither neighbour in the list names the same
//! object, and deleting a final cap destroys the object (finalisation).
//!
//! Invariants (checked by the tests after every operation):
//! - the list is consistent: `next.prev == self` for every linked slot;
//! - a slot is linked iff it holds a cap;
//! - every cap names a live object.

use abi::error::{ErrorReply, LookupFailure};
use abi::object::{ENDPOINT_BITS, NOTIFICATION_BITS, PAGE_TABLE_BITS, SLOT_BITS, TCB_BITS};

use super::Kernel;
use super::cap::{Cap, ObjId, Region, low_mask};
use super::object::{
    Chain, Doomed, EndpointState, Slot, SlotRef, TCB_TABLE, ThreadState, tcb_slot,
};
use crate::machine::Machine;

impl<M: Machine> Kernel<M> {
    /// The slots of the CNode (or TCB, see [`SlotRef`]) `table`.
    #[inline(always)]
    pub(crate) fn table(&self, table: ObjId) -> Option<&[Slot]> {
        if table & TCB_TABLE != 0 {
            self.tcbs.get(table & !TCB_TABLE).map(|t| &t.slots[..])
        } else {
            self.cnodes.get(table).map(|c| &c.slots[..])
        }
    }

    /// The slot at `r`. Panics on a dangling reference (a kernel bug).
    #[inline(always)]
    pub fn slot(&self, r: SlotRef) -> &Slot {
        &self.table(r.cnode).expect("live CNode")[r.index as usize]
    }

    /// The slot at `r`, mutably.
    #[inline(always)]
    pub fn slot_mut(&mut self, r: SlotRef) -> &mut Slot {
        let slots = if r.cnode & TCB_TABLE != 0 {
            self.tcbs
                .get_mut(r.cnode & !TCB_TABLE)
                .map(|t| &mut t.slots[..])
        } else {
            self.cnodes.get_mut(r.cnode).map(|c| &mut c.slots[..])
        };
        &mut slots.expect("live CNode")[r.index as usize]
    }

    /// Whether `r` names a slot of a live CNode or TCB.
    pub fn slot_exists(&self, r: SlotRef) -> bool {
        self.table(r.cnode)
            .is_some_and(|slots| (r.index as usize) < slots.len())
    }

    /// A slot of a thread's own slots.
    pub fn tcb_slot(&self, tcb: ObjId, which: u32) -> SlotRef {
        SlotRef::tcb(tcb, which)
    }

    /// seL4 `resolveAddressBits`: walks `depth` bits of `cptr` from the CNode
    /// `root`; returns the slot reached and the bits left unresolved.
    pub fn resolve(
        &self,
        root: Cap,
        cptr: u64,
        depth: u32,
    ) -> Result<(SlotRef, u32), LookupFailure> {
        let Cap::CNode { .. } = root else {
            return Err(LookupFailure::InvalidRoot);
        };
        let mut node = root;
        let mut n_bits = depth;
        loop {
            let Cap::CNode {
                id,
                radix,
                guard_size,
                guard,
            } = node
            else {
                unreachable!("checked before the loop and before each iteration");
            };
            let radix = radix as u32;
            let guard_bits = guard_size as u32;
            let level_bits = radix + guard_bits;
            let found = if guard_bits == 0 || guard_bits > n_bits {
                0
            } else {
                (cptr >> (n_bits - guard_bits)) & low_mask(guard_bits)
            };
            if guard_bits > n_bits || found != guard {
                return Err(LookupFailure::GuardMismatch {
                    bits_left: n_bits as u8,
                    guard_found: guard,
                    guard_size: guard_bits as u8,
                });
            }
            if level_bits > n_bits {
                return Err(LookupFailure::DepthMismatch {
                    bits_left: n_bits as u8,
                    bits_found: level_bits as u8,
                });
            }
            let offset = if radix == 0 {
                0
            } else {
                (cptr >> (n_bits - level_bits)) & low_mask(radix)
            };
            let slot = SlotRef {
                cnode: id,
                index: offset as u32,
            };
            if n_bits == level_bits {
                return Ok((slot, 0));
            }
            n_bits -= level_bits;
            let next = self.slot(slot).cap;
            if !matches!(next, Cap::CNode { .. }) {
                return Ok((slot, n_bits));
            }
            node = next;
        }
    }

    /// The CSpace root cap of a thread.
    pub fn cspace_root(&self, tcb: ObjId) -> Cap {
        self.slot(self.tcb_slot(tcb, tcb_slot::CSPACE)).cap
    }

    /// seL4 `lookupSlot`: the slot a CPtr names in a thread's CSpace.
    pub fn lookup_slot(&self, tcb: ObjId, cptr: u64) -> Result<SlotRef, LookupFailure> {
        self.resolve(self.cspace_root(tcb), cptr, 64)
            .map(|(slot, _)| slot)
    }

    /// seL4 `lookupCap`: the cap (possibly null) a CPtr names.
    pub fn lookup_cap(&self, tcb: ObjId, cptr: u64) -> Result<(Cap, SlotRef), LookupFailure> {
        let slot = self.lookup_slot(tcb, cptr)?;
        Ok((self.slot(slot).cap, slot))
    }

    /// seL4 `lookupSlotForCNodeOp`: a slot named by (index, depth) from the
    /// CNode cap `root`, for a CNode operation; `source` says which side
    /// failed in the error.
    pub fn lookup_slot_for_cnode_op(
        &self,
        source: bool,
        root: Cap,
        index: u64,
        depth: u64,
    ) -> Result<SlotRef, ErrorReply> {
        if !matches!(root, Cap::CNode { .. }) {
            return Err(ErrorReply::FailedLookup {
                source,
                failure: LookupFailure::InvalidRoot,
            });
        }
        if !(1..=64).contains(&depth) {
            return Err(ErrorReply::RangeError { min: 1, max: 64 });
        }
        match self.resolve(root, index, depth as u32) {
            Err(failure) => Err(ErrorReply::FailedLookup { source, failure }),
            Ok((_, bits)) if bits != 0 => Err(ErrorReply::FailedLookup {
                source,
                failure: LookupFailure::DepthMismatch {
                    bits_left: bits as u8,
                    bits_found: 0,
                },
            }),
            Ok((slot, _)) => Ok(slot),
        }
    }

    /// seL4 `ensureEmptySlot`.
    pub fn ensure_empty(&self, slot: SlotRef) -> Result<(), ErrorReply> {
        if self.slot(slot).cap.is_null() {
            Ok(())
        } else {
            Err(ErrorReply::DeleteFirst)
        }
    }

    /// The physical region a cap's object occupies, if it has one.
    pub fn cap_region(&self, cap: &Cap) -> Option<Region> {
        Some(match *cap {
            Cap::Untyped {
                paddr, size_bits, ..
            } => Region {
                base: paddr,
                bits: size_bits,
            },
            Cap::Endpoint { id, .. } => Region {
                base: self.endpoints.get(id)?.paddr,
                bits: ENDPOINT_BITS as u8,
            },
            Cap::Notification { id, .. } => Region {
                base: self.notifications.get(id)?.paddr,
                bits: NOTIFICATION_BITS as u8,
            },
            Cap::CNode { id, radix, .. } => Region {
                base: self.cnodes.get(id)?.paddr,
                bits: radix + SLOT_BITS as u8,
            },
            Cap::Tcb { id } => Region {
                base: self.tcbs.get(id)?.paddr,
                bits: TCB_BITS as u8,
            },
            Cap::Frame {
                paddr, size_bits, ..
            } => Region {
                base: paddr,
                bits: size_bits,
            },
            Cap::PageTable { paddr, .. } | Cap::VSpace { paddr, .. } => Region {
                base: paddr,
                bits: PAGE_TABLE_BITS as u8,
            },
            Cap::Null
            | Cap::Reply { .. }
            | Cap::AsidPool
            | Cap::IrqControl
            | Cap::IrqHandler { .. } => return None,
        })
    }

    /// seL4 `sameRegionAs`: whether `b` is `a`'s object or lies within it.
    pub fn same_region_as(&self, a: &Cap, b: &Cap) -> bool {
        match (*a, *b) {
            (Cap::Untyped { .. }, _) => match (self.cap_region(a), self.cap_region(b)) {
                (Some(ra), Some(rb)) => ra.contains(&rb),
                _ => false,
            },
            (Cap::Endpoint { id: x, .. }, Cap::Endpoint { id: y, .. })
            | (Cap::Notification { id: x, .. }, Cap::Notification { id: y, .. })
            | (Cap::Tcb { id: x }, Cap::Tcb { id: y })
            | (Cap::Reply { tcb: x, .. }, Cap::Reply { tcb: y, .. }) => x == y,
            (
                Cap::CNode {
                    id: x, radix: rx, ..
                },
                Cap::CNode {
                    id: y, radix: ry, ..
                },
            ) => x == y && rx == ry,
            (Cap::Frame { .. }, Cap::Frame { .. }) => {
                match (self.cap_region(a), self.cap_region(b)) {
                    (Some(ra), Some(rb)) => ra.contains(&rb),
                    _ => false,
                }
            }
            (Cap::PageTable { paddr: x, .. }, Cap::PageTable { paddr: y, .. })
            | (Cap::VSpace { paddr: x, .. }, Cap::VSpace { paddr: y, .. }) => x == y,
            (Cap::AsidPool, Cap::AsidPool) => true,
            (Cap::IrqControl, Cap::IrqControl | Cap::IrqHandler { .. }) => true,
            (Cap::IrqHandler { irq: x }, Cap::IrqHandler { irq: y }) => x == y,
            _ => false,
        }
    }

    /// seL4 `sameObjectAs`: whether `a` and `b` name the same object.
    pub fn same_object_as(&self, a: &Cap, b: &Cap) -> bool {
        match (*a, *b) {
            (Cap::Untyped { .. }, _) => false,
            (Cap::IrqControl, Cap::IrqHandler { .. }) => false,
            (
                Cap::Frame {
                    paddr: pa,
                    size_bits: sa,
                    device: da,
                    ..
                },
                Cap::Frame {
                    paddr: pb,
                    size_bits: sb,
                    device: db,
                    ..
                },
            ) => pa == pb && sa == sb && da == db,
            _ => self.same_region_as(a, b),
        }
    }

    /// seL4 `isMDBParentOf`: whether the cap in `b` descends from the one in `a`.
    pub fn is_mdb_parent_of(&self, a: SlotRef, b: SlotRef) -> bool {
        let sa = self.slot(a);
        let sb = self.slot(b);
        if !sa.revocable || !self.same_region_as(&sa.cap, &sb.cap) {
            return false;
        }
        match (sa.cap, sb.cap) {
            (Cap::Endpoint { badge: x, .. }, Cap::Endpoint { badge: y, .. })
            | (Cap::Notification { badge: x, .. }, Cap::Notification { badge: y, .. }) => {
                x == 0 || (x == y && !sb.first_badged)
            }
            _ => true,
        }
    }

    /// seL4 `isFinalCapability`: no other cap to the same object exists.
    pub fn is_final(&self, slot: SlotRef) -> bool {
        let s = self.slot(slot);
        let same = |other: Option<SlotRef>| {
            other.is_some_and(|o| self.same_object_as(&s.cap, &self.slot(o).cap))
        };
        !same(s.prev) && !same(s.next)
    }

    /// Whether the cap in `slot` has children in the derivation tree.
    pub fn has_children(&self, slot: SlotRef) -> bool {
        self.slot(slot)
            .next
            .is_some_and(|next| self.is_mdb_parent_of(slot, next))
    }

    /// Puts `cap` in the empty slot `dest` as a new root of the derivation
    /// tree, linked after `after` when given (seL4 `insertNewCap` for
    /// retyped objects, and the boot-time caps).
    pub fn insert_new_cap(&mut self, after: Option<SlotRef>, dest: SlotRef, cap: Cap) {
        self.link_after(after, dest, cap, true, true);
    }

    /// seL4 `cteInsert`: `cap`, derived from the cap in `src`, into the empty
    /// slot `dest`, as its child or sibling.
    #[inline(always)]
    pub fn cte_insert(&mut self, cap: Cap, src: SlotRef, dest: SlotRef) {
        if let Cap::Frame { .. } = cap {
            // A frame cap is never revocable (`is_cap_revocable`) nor an
            // Untyped: linked after its source, as below (the common case
            // of `CNode_CopyRun`).
            self.link_after(Some(src), dest, cap, false, false);
            return;
        }
        let revocable = super::cap::is_cap_revocable(&cap, &self.slot(src).cap);
        // seL4 `setUntypedCapAsFull`: while a copy of an Untyped exists, the
        // original cannot retype (its watermark is at the end).
        if let (
            Cap::Untyped {
                paddr, size_bits, ..
            },
            Cap::Untyped {
                paddr: p,
                size_bits: b,
                device,
                ..
            },
        ) = (cap, self.slot(src).cap)
            && paddr == p
            && size_bits == b
        {
            self.slot_mut(src).cap = Cap::Untyped {
                paddr,
                size_bits,
                device,
                free_index: 1 << size_bits,
            };
        }
        self.link_after(Some(src), dest, cap, revocable, revocable);
    }

    #[inline(always)]
    fn link_after(
        &mut self,
        after: Option<SlotRef>,
        dest: SlotRef,
        cap: Cap,
        revocable: bool,
        first_badged: bool,
    ) {
        self.cap_changed(dest, &cap, false);
        debug_assert!(self.slot(dest).cap.is_null());
        // `after`'s next becomes `dest` (`after` holds a cap, so it is not
        // the empty `dest`).
        let next = after.and_then(|a| self.slot_mut(a).next.replace(dest));
        *self.slot_mut(dest) = Slot {
            cap,
            prev: after,
            next,
            revocable,
            first_badged,
        };
        if let Some(n) = next {
            self.slot_mut(n).prev = Some(dest);
        }
    }

    /// seL4 `cteMove`: moves the cap (as `cap`) and its place in the tree
    /// from `src` to the empty slot `dest`.
    pub fn cte_move(&mut self, cap: Cap, src: SlotRef, dest: SlotRef) {
        let s = *self.slot(src);
        self.cap_changed(src, &s.cap, true);
        self.cap_changed(dest, &cap, false);
        *self.slot_mut(src) = Slot::default();
        *self.slot_mut(dest) = Slot { cap, ..s };
        if let Some(p) = s.prev {
            self.slot_mut(p).next = Some(dest);
        }
        if let Some(n) = s.next {
            self.slot_mut(n).prev = Some(dest);
        }
    }

    /// Empties a slot and unlinks it from the tree (seL4 `emptySlot`, the
    /// children of a revocable cap pass to its parent).
    fn unlink(&mut self, slot: SlotRef) {
        let s = *self.slot(slot);
        self.cap_changed(slot, &s.cap, true);
        if let Some(p) = s.prev {
            self.slot_mut(p).next = s.next;
        }
        if let Some(n) = s.next {
            let next = self.slot_mut(n);
            next.prev = s.prev;
            next.first_badged = next.first_badged || s.first_badged;
        }
        *self.slot_mut(slot) = Slot::default();
    }

    /// Records that `cap` is being put in (`removed` false) or taken out
    /// of `slot`: the threads' cached [`FastInfo`](super::object::FastInfo)
    /// become stale when this could change what they were computed from —
    /// a TCB's CSpace or VSpace root, an endpoint cap a thread looked up
    /// (a slot's endpoint cap only changes by being deleted or moved away:
    /// caps go into empty slots), or a CNode cap on the way of a lookup a
    /// thread remembers (a CPtr that resolved through CNode caps to a slot
    /// resolves there while none of them goes; a cap put into an empty
    /// slot changes no such lookup). ASID changes count too (`vspace`).
    /// Everything else (retype, copies, mappings, the reply caps' traffic)
    /// keeps the caches valid.
    #[inline(always)]
    pub fn cap_changed(&mut self, slot: SlotRef, cap: &Cap, removed: bool) {
        let space_root = slot.cnode & TCB_TABLE != 0
            && (slot.index == tcb_slot::CSPACE || slot.index == tcb_slot::VSPACE);
        if space_root || (removed && matches!(cap, Cap::Endpoint { .. } | Cap::CNode { .. })) {
            self.cap_generation += 1;
        }
    }

    /// seL4 `cteDelete`: empties the slot; when its cap was the last one to
    /// its object, the object is destroyed.
    ///
    /// Objects to destroy wait on a stack linked through the objects
    /// themselves ([`Doomed`]), so deleting never allocates, however deep
    /// the CNodes nest. A nested call (finalising a thread deletes its
    /// reply cap) destroys only what it doomed itself.
    pub fn delete_slot(&mut self, slot: SlotRef) {
        let base = self.doomed;
        self.delete_one(slot);
        while self.doomed != base {
            let Some(object) = self.doomed else {
                break;
            };
            self.doomed = match object {
                Doomed::CNode(id) => self.cnodes.get_mut(id).and_then(|c| c.doomed_next.take()),
                Doomed::Tcb(id) => self.tcbs.get_mut(id).and_then(|t| t.doomed_next.take()),
            };
            self.destroy(object);
        }
    }

    fn push_doomed(&mut self, object: Doomed) {
        let below = self.doomed;
        let link = match object {
            Doomed::CNode(id) => self.cnodes.get_mut(id).map(|c| &mut c.doomed_next),
            Doomed::Tcb(id) => self.tcbs.get_mut(id).map(|t| &mut t.doomed_next),
        };
        if let Some(link) = link {
            *link = below;
            self.doomed = Some(object);
        }
    }

    fn delete_one(&mut self, slot: SlotRef) {
        if !self.slot_exists(slot) {
            return;
        }
        let cap = self.slot(slot).cap;
        if cap.is_null() {
            return;
        }
        let last = self.is_final(slot);
        self.unlink(slot);
        self.finalise(cap, last);
    }

    /// seL4 `finaliseCap`: what deleting `cap` does (`last`: it was final).
    fn finalise(&mut self, cap: Cap, last: bool) {
        match cap {
            Cap::Endpoint { id, .. } if last => {
                self.cancel_all_ipc(id);
                self.endpoints.remove(id);
            }
            Cap::Notification { id, .. } if last => {
                self.cancel_all_signals(id);
                if let Some(tcb) = self.notifications.get(id).and_then(|n| n.bound_tcb)
                    && let Some(t) = self.tcbs.get_mut(tcb)
                {
                    t.bound_ntfn = None;
                }
                for irq in self.irqs.iter_mut() {
                    if irq.notification.is_some_and(|(n, _)| n == id) {
                        irq.notification = None;
                    }
                }
                self.notifications.remove(id);
            }
            Cap::CNode { id, .. } if last => self.push_doomed(Doomed::CNode(id)),
            Cap::Tcb { id } if last => {
                // Stop it now, so nothing wakes it while it is taken apart.
                self.suspend(id);
                self.push_doomed(Doomed::Tcb(id));
            }
            Cap::Frame {
                paddr,
                size_bits,
                mapping: Some(m),
                ..
            } => self.unmap_frame_at(m, paddr, 1 << size_bits),
            Cap::PageTable {
                paddr,
                mapping: Some(m),
            } if last => self.unmap_table_at(m, paddr),
            Cap::VSpace {
                paddr,
                asid: Some(asid),
            } if last => self.delete_asid(asid, paddr),
            Cap::IrqHandler { irq } => {
                if let Some(state) = self.irqs.get_mut(irq as usize) {
                    state.issued = false;
                    state.notification = None;
                }
                self.machine.irq_set_enabled(irq, false);
            }
            _ => {}
        }
    }

    fn destroy(&mut self, object: Doomed) {
        match object {
            Doomed::CNode(id) => {
                let count = self.cnodes.get(id).map_or(0, |c| c.slots.len());
                for index in 0..count as u32 {
                    self.delete_one(SlotRef { cnode: id, index });
                }
                self.cnodes.remove(id);
            }
            Doomed::Tcb(id) => {
                if self.tcbs.get(id).is_none() {
                    return;
                }
                self.unbind_notification(id);
                for index in 0..tcb_slot::COUNT as u32 {
                    self.delete_one(SlotRef::tcb(id, index));
                }
                if self.sched.current == Some(id) {
                    self.sched.current = None;
                    self.sched.reschedule_required_plain();
                }
                self.sched_forget(id);
                self.tcbs.remove(id);
            }
        }
    }

    /// seL4 `cteRevoke`: deletes every cap derived from the one in `slot`.
    pub fn revoke(&mut self, slot: SlotRef) {
        while self.slot_exists(slot) {
            let Some(next) = self.slot(slot).next else {
                return;
            };
            if !self.is_mdb_parent_of(slot, next) {
                return;
            }
            self.delete_slot(next);
        }
    }

    /// seL4 `deriveCap`: the cap to store when copying `cap` out of `slot`.
    #[inline(always)]
    pub fn derive_cap(&self, slot: SlotRef, cap: Cap) -> Result<Cap, ErrorReply> {
        Ok(match cap {
            Cap::Untyped { .. } => {
                if self.has_children(slot) {
                    return Err(ErrorReply::RevokeFirst);
                }
                cap
            }
            Cap::Reply { .. } | Cap::IrqControl => Cap::Null,
            Cap::Frame {
                paddr,
                size_bits,
                device,
                rights,
                ..
            } => Cap::Frame {
                paddr,
                size_bits,
                device,
                rights,
                mapping: None,
            },
            Cap::PageTable { mapping: None, .. } | Cap::VSpace { asid: None, .. } => {
                return Err(ErrorReply::IllegalOperation);
            }
            other => other,
        })
    }

    /// Deletes the reply cap in a thread's caller slot (seL4 `deleteCallerCap`).
    pub fn delete_caller_cap(&mut self, tcb: ObjId) {
        let slot = self.tcb_slot(tcb, tcb_slot::CALLER);
        self.delete_slot(slot);
    }

    /// Checks the tree's invariants; returns the first violation found.
    pub fn check_cspace_invariants(&self) -> Result<(), alloc::string::String> {
        use alloc::format;
        let tables = self.cnodes.iter().map(|(id, c)| (id, &c.slots[..])).chain(
            self.tcbs
                .iter()
                .map(|(id, t)| (id | TCB_TABLE, &t.slots[..])),
        );
        for (id, slots) in tables {
            for (index, s) in slots.iter().enumerate() {
                let here = SlotRef {
                    cnode: id,
                    index: index as u32,
                };
                if s.cap.is_null() {
                    if s.prev.is_some() || s.next.is_some() {
                        return Err(format!("{here:?}: empty but linked"));
                    }
                    continue;
                }
                if let Some(n) = s.next
                    && (!self.slot_exists(n) || self.slot(n).prev != Some(here))
                {
                    return Err(format!("{here:?}: next {n:?} does not point back"));
                }
                if let Some(p) = s.prev
                    && (!self.slot_exists(p) || self.slot(p).next != Some(here))
                {
                    return Err(format!("{here:?}: prev {p:?} does not point forward"));
                }
                let live = match s.cap {
                    Cap::Endpoint { id, .. } => self.endpoints.get(id).is_some(),
                    Cap::Notification { id, .. } => self.notifications.get(id).is_some(),
                    Cap::CNode { id, .. } => self.cnodes.get(id).is_some(),
                    Cap::Tcb { id } | Cap::Reply { tcb: id, .. } => self.tcbs.get(id).is_some(),
                    _ => true,
                };
                if !live {
                    return Err(format!("{here:?}: {:?} names a dead object", s.cap));
                }
            }
        }
        // Queues: consistent links, the right members, nothing missing.
        let mut waiting = 0;
        for (id, e) in self.endpoints.iter() {
            let n = e
                .queue
                .check(&self.tcbs, Chain::Ipc)
                .map_err(|m| format!("endpoint {id}: {m}"))?;
            waiting += n;
            if (n == 0) != (e.state == EndpointState::Idle) {
                return Err(format!("endpoint {id}: {n} waiting in state {:?}", e.state));
            }
            for t in e.queue.iter(&self.tcbs, Chain::Ipc) {
                let ok = match (e.state, self.tcbs.get(t).map(|t| t.state)) {
                    (EndpointState::Send, Some(ThreadState::BlockedOnSend { ep, .. }))
                    | (EndpointState::Recv, Some(ThreadState::BlockedOnReceive { ep, .. })) => {
                        ep == id
                    }
                    _ => false,
                };
                if !ok {
                    return Err(format!("endpoint {id}: thread {t} should not be queued"));
                }
            }
        }
        for (id, n) in self.notifications.iter() {
            waiting += n
                .waiting
                .check(&self.tcbs, Chain::Ipc)
                .map_err(|m| format!("notification {id}: {m}"))?;
            for t in n.waiting.iter(&self.tcbs, Chain::Ipc) {
                if self.tcbs.get(t).map(|t| t.state)
                    != Some(ThreadState::BlockedOnNotification { ntfn: id })
                {
                    return Err(format!("notification {id}: thread {t} should not wait"));
                }
            }
        }
        let mut ready = 0;
        for prio in 0..=255u8 {
            let q = self.sched.queue(prio);
            ready += q
                .check(&self.tcbs, Chain::Ready)
                .map_err(|m| format!("ready queue {prio}: {m}"))?;
            for t in q.iter(&self.tcbs, Chain::Ready) {
                if !self
                    .tcbs
                    .get(t)
                    .is_some_and(|t| t.queued && t.priority == prio)
                {
                    return Err(format!(
                        "ready queue {prio}: thread {t} should not be there"
                    ));
                }
            }
        }
        let mut blocked = 0;
        for (id, t) in self.tcbs.iter() {
            if let ThreadState::BlockedOnSend { ep, .. }
            | ThreadState::BlockedOnReceive { ep, .. } = t.state
            {
                blocked += 1;
                let queued = self
                    .endpoints
                    .get(ep)
                    .is_some_and(|e| e.queue.contains(&self.tcbs, Chain::Ipc, id));
                if !queued {
                    return Err(format!("thread {id} blocked on {ep} but not queued"));
                }
            }
            if let ThreadState::BlockedOnNotification { .. } = t.state {
                blocked += 1;
            }
            if t.queued {
                ready = ready.wrapping_sub(1);
            }
        }
        if waiting != blocked {
            return Err(format!(
                "{waiting} threads queued on objects, {blocked} blocked"
            ));
        }
        if ready != 0 {
            return Err("the ready queues and the threads' `queued` flags disagree".into());
        }
        Ok(())
    }
}
