//! The simulated kernel's state: objects, the derivation tree, scheduling glue, destruction.
//!
//! One [`Kernel`] value holds the whole machine behind one lock (a big
//! kernel lock, as seL4 has). The syscall and invocation code lives in
//! [`crate::ipc`] and [`crate::invoke`]; this module has what they share:
//! slot access, capability derivation and deletion with seL4's
//! derivation-tree rules (so Revoke works and the last cap destroys its
//! object), thread wake-up and the choice of the next thread.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use abi::boot::BootInfo;
use abi::error::LookupFailure;
use abi::fault::Fault;
use abi::{Badge, ErrorReply, Word};

use crate::object::*;
use crate::ram::{PhysAlloc, Ram};
use crate::sched::{HostCtl, ReadyQueues, Rng, Schedule};

/// A simulated process's number (its index in the boot manifest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(pub usize);

/// Why a process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// Its main function returned (status 0) or it called exit.
    Exited(i32),
    /// The harness (or a supervisor through the harness API) killed it.
    Killed,
    /// Fault injection killed it at its `n`th syscall.
    KilledAtSyscall(u64),
    /// One of its threads panicked (a bug in the simulated code).
    Panicked(String),
    /// Its main thread faulted with no fault handler.
    Faulted(Fault),
}

/// One event of a run, recorded when tracing is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TraceEvent {
    /// The scheduler gave the CPU to thread (TCB object) `0`.
    Switch(u32),
    /// Thread `0` made syscall `1`.
    Syscall(u32, i64),
    /// Thread `0` accessed memory at `1`.
    Access(u32, u64),
    /// Thread `0` faulted.
    Fault(u32),
    /// Process `0` ended.
    Exit(usize),
}

/// A line a process printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleLine {
    /// The process (None: a thread outside any process).
    pub pid: Option<Pid>,
    /// The text, without its newline.
    pub text: String,
}

/// Why the whole machine stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Halt {
    /// A process called the debug halt with this status.
    Requested(i32),
    /// The run exceeded its tick budget (a livelock, or a too-small budget).
    TickLimit(u64),
}

/// A process record.
pub(crate) struct Process {
    pub name: String,
    pub status: Option<ExitReason>,
    pub threads: Vec<ObjId>,
    /// Harness slots holding the originals of the objects made for it.
    pub originals: Vec<u32>,
    pub boot: &'static BootInfo,
    pub daemon: bool,
    pub syscalls: u64,
    pub kill_at: Option<u64>,
    /// Notifications (harness slots) signalled with a badge when it ends.
    pub watchers: Vec<(u32, Badge)>,
    pub partial_line: String,
}

/// A node of the capability derivation tree.
#[derive(Clone, Debug)]
pub(crate) struct CdtNode {
    pub parent: Option<CapId>,
    pub children: BTreeSet<CapId>,
    pub loc: SlotRef,
    pub revocable: bool,
}

/// An entry function registered for a pc.
pub(crate) type Entry = Arc<dyn Fn(Word) + Send + Sync>;

/// What the thread giving up the CPU must do after releasing the lock.
pub(crate) enum Next {
    /// Wake this host thread.
    Wake(Arc<HostCtl>),
    /// Start a host thread for a thread never run (or restarted at a new pc).
    Spawn(Spawn),
    /// Nothing runs: tell the harness.
    Idle,
}

/// A host thread to start.
pub(crate) struct Spawn {
    pub tid: ObjId,
    pub host: Arc<HostCtl>,
    pub ipc: Arc<std::sync::Mutex<abi::ipc_buffer::IpcBuffer>>,
    pub boot: &'static BootInfo,
    pub start: StartFn,
}

/// An IRQ line.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IrqLine {
    pub caps: u32,
    pub ntfn: Option<(ObjId, Word)>,
    pub masked: bool,
    pub pending: bool,
}

/// The machine.
pub(crate) struct Kernel {
    pub ram: Ram,
    pub objs: Arena,
    pub cdt: BTreeMap<CapId, CdtNode>,
    pub next_cap: CapId,
    pub ready: ReadyQueues,
    pub current: Option<ObjId>,
    /// The host thread holding the baton.
    pub current_host: Option<Arc<HostCtl>>,
    /// The current thread goes to the back of its queue when it gives up the CPU.
    pub yield_back: bool,
    /// ASID pools the harness assigns its processes' VSpaces from.
    pub harness_pools: Vec<ObjId>,
    /// Harness slots of the Untyped covering the free RAM, once made.
    pub ram_untypeds: Option<Vec<(u32, u64, u32)>>,
    /// The thread last woken (seL4's switch candidate).
    pub candidate: Option<ObjId>,
    pub preempt: bool,
    pub schedule: Schedule,
    pub rng: Rng,
    pub ticks: u64,
    pub slice_left: u32,
    pub max_ticks: u64,
    pub halted: Option<Halt>,
    pub asids: BTreeMap<u16, ObjId>,
    pub next_pool_base: u32,
    pub irqs: Vec<IrqLine>,
    pub procs: Vec<Process>,
    pub entries: BTreeMap<Word, Entry>,
    pub next_pc: Word,
    pub harness: ObjId,
    pub harness_free: Vec<u32>,
    pub boot_alloc: PhysAlloc,
    pub pool_alloc: PhysAlloc,
    pub nonce: u64,
    pub retypes: u64,
    pub fail_retypes: BTreeSet<u64>,
    pub trace: Option<Vec<TraceEvent>>,
    pub hash: u64,
    pub console: Vec<ConsoleLine>,
    pub echo: bool,
    pub deaths: Vec<(Pid, ExitReason)>,
    pub empty_boot: &'static BootInfo,
}

impl Kernel {
    // ----- events -----

    pub fn record(&mut self, e: TraceEvent) {
        let v = match e {
            TraceEvent::Switch(t) => 1 << 60 | t as u64,
            TraceEvent::Syscall(t, s) => 2 << 60 | (t as u64) << 8 | (s as u64 & 0xff),
            TraceEvent::Access(t, a) => 3 << 60 ^ (t as u64) << 40 ^ a,
            TraceEvent::Fault(t) => 4 << 60 | t as u64,
            TraceEvent::Exit(p) => 5 << 60 | p as u64,
        };
        self.hash = (self.hash ^ v)
            .wrapping_mul(0x0100_0000_01b3)
            .rotate_left(7);
        if let Some(t) = &mut self.trace {
            t.push(e);
        }
    }

    // ----- slots and the derivation tree -----

    pub fn slot(&self, r: SlotRef) -> Option<&Slot> {
        match r {
            SlotRef::CNode(o, i) => {
                let c = self.objs.cnode(o)?;
                if !c.in_range(i) {
                    return None;
                }
                Some(c.slots.get(&i).unwrap_or(&NULL_SLOT))
            }
            SlotRef::Tcb(o, s) => Some(&self.objs.tcb(o)?.slots[s as usize]),
        }
    }

    pub fn slot_mut(&mut self, r: SlotRef) -> Option<&mut Slot> {
        match r {
            SlotRef::CNode(o, i) => {
                let c = self.objs.cnode_mut(o)?;
                if !c.in_range(i) {
                    return None;
                }
                Some(c.slots.entry(i).or_default())
            }
            SlotRef::Tcb(o, s) => Some(&mut self.objs.tcb_mut(o)?.slots[s as usize]),
        }
    }

    pub fn cap(&self, r: SlotRef) -> Cap {
        self.slot(r).map(|s| s.cap).unwrap_or(Cap::Null)
    }

    /// Replaces the cap in an occupied slot, keeping its place in the tree.
    pub fn set_cap(&mut self, r: SlotRef, cap: Cap) {
        if let Some(s) = self.slot_mut(r) {
            s.cap = cap;
        }
    }

    /// Puts a new cap in an empty slot, under `parent` in the tree.
    pub fn insert_cap(
        &mut self,
        loc: SlotRef,
        cap: Cap,
        parent: Option<CapId>,
        revocable: bool,
    ) -> CapId {
        self.next_cap += 1;
        let id = self.next_cap;
        if let Some(s) = self.slot_mut(loc) {
            *s = Slot { cap, id };
        }
        self.cdt.insert(
            id,
            CdtNode {
                parent,
                children: BTreeSet::new(),
                loc,
                revocable,
            },
        );
        if let Some(p) = parent.and_then(|p| self.cdt.get_mut(&p)) {
            p.children.insert(id);
        }
        if let Some(o) = cap.obj().and_then(|o| self.objs.get_mut(o)) {
            o.refs += 1;
        }
        if let Cap::IrqHandler { irq } = cap
            && let Some(l) = self.irqs.get_mut(irq as usize)
        {
            l.caps += 1;
        }
        id
    }

    /// seL4's cteInsert: places `new` (derived from the cap at `src`) in the
    /// empty slot `dest`, as its child where the tree rules say so.
    pub fn derive_insert(&mut self, src: SlotRef, new: Cap, dest: SlotRef) -> CapId {
        let src_slot = self.slot(src).copied().unwrap_or_default();
        let src_node = self.cdt.get(&src_slot.id).cloned();
        let revocable = match (new, src_slot.cap) {
            (Cap::Endpoint { badge: a, .. }, Cap::Endpoint { badge: b, .. })
            | (Cap::Notification { badge: a, .. }, Cap::Notification { badge: b, .. }) => a != b,
            (Cap::Untyped { .. }, _) => true,
            (Cap::IrqHandler { .. }, Cap::IrqControl) => true,
            _ => false,
        };
        let parent = match &src_node {
            Some(n) if n.revocable && is_mdb_parent(&src_slot.cap, &new, revocable) => {
                Some(src_slot.id)
            }
            Some(n) => n.parent,
            None => None,
        };
        // seL4's setUntypedCapAsFull: a copy of an Untyped uses up the original.
        if let (
            Cap::Untyped {
                paddr, size_bits, ..
            },
            Cap::Untyped {
                paddr: p2,
                size_bits: s2,
                device,
                ..
            },
        ) = (new, src_slot.cap)
            && paddr == p2
            && size_bits == s2
        {
            self.set_cap(
                src,
                Cap::Untyped {
                    paddr,
                    size_bits,
                    device,
                    free: 1u64 << size_bits,
                },
            );
        }
        self.insert_cap(dest, new, parent, revocable)
    }

    /// Moves the cap at `from` (replaced by `cap`) to the empty `to`.
    pub fn move_cap(&mut self, from: SlotRef, to: SlotRef, cap: Cap) {
        if self.cap(from).is_null() || self.slot(to).is_none() {
            return;
        }
        let Some(s) = self.slot_mut(from) else { return };
        let id = s.id;
        *s = Slot::default();
        if let SlotRef::CNode(o, i) = from
            && let Some(c) = self.objs.cnode_mut(o)
        {
            c.slots.remove(&i);
        }
        if let Some(d) = self.slot_mut(to) {
            *d = Slot { cap, id };
        }
        if let Some(n) = self.cdt.get_mut(&id) {
            n.loc = to;
        }
    }

    /// Whether the cap in `r` has children in the derivation tree.
    pub fn has_children(&self, r: SlotRef) -> bool {
        self.slot(r)
            .and_then(|s| self.cdt.get(&s.id))
            .is_some_and(|n| !n.children.is_empty())
    }

    /// Whether the cap in `r` is the last one to its object (seL4's isFinalCapability).
    pub fn is_final(&self, r: SlotRef) -> bool {
        match self.cap(r).obj().and_then(|o| self.objs.get(o)) {
            Some(o) => o.refs <= 1,
            None => true,
        }
    }

    /// Deletes the cap in `r`: it leaves the tree (its children move up),
    /// its mapping is undone, and the last cap to an object destroys it.
    pub fn delete_slot(&mut self, r: SlotRef) {
        if self.cap(r).is_null() {
            return;
        }
        let Some(s) = self.slot_mut(r) else { return };
        let slot = std::mem::take(s);
        if let SlotRef::CNode(o, i) = r
            && let Some(c) = self.objs.cnode_mut(o)
        {
            c.slots.remove(&i);
        }
        if let Some(node) = self.cdt.remove(&slot.id) {
            if let Some(p) = node.parent.and_then(|p| self.cdt.get_mut(&p)) {
                p.children.remove(&slot.id);
                p.children.extend(node.children.iter().copied());
            }
            for c in &node.children {
                if let Some(cn) = self.cdt.get_mut(c) {
                    cn.parent = node.parent;
                }
            }
        }
        let last = slot
            .cap
            .obj()
            .and_then(|o| self.objs.get(o))
            .is_some_and(|o| o.refs <= 1);
        self.finalise_cap(slot.cap, slot.id, last);
        if let Some(o) = slot.cap.obj()
            && let Some(obj) = self.objs.get_mut(o)
        {
            obj.refs -= 1;
            if obj.refs == 0 {
                self.destroy(o);
            }
        }
    }

    /// Deletes every cap derived from the one in `r` (seL4's Revoke).
    pub fn revoke(&mut self, r: SlotRef) {
        let Some(id) = self.slot(r).map(|s| s.id) else {
            return;
        };
        while let Some(child) = self.cdt.get(&id).and_then(|n| n.children.first().copied()) {
            let Some(loc) = self.cdt.get(&child).map(|n| n.loc) else {
                break;
            };
            self.delete_slot(loc);
            if self.cdt.contains_key(&child) {
                // The slot did not hold it (cannot happen): stop rather than spin.
                break;
            }
        }
    }

    /// Per-cap clean-up before a cap goes (seL4's finaliseCap for one cap).
    fn finalise_cap(&mut self, cap: Cap, id: CapId, last: bool) {
        match cap {
            Cap::Frame {
                paddr,
                size_bits,
                mapped: Some((asid, vaddr)),
                ..
            } => {
                if let Some(root) = self.vspace_root(asid) {
                    vmsa::unmap_frame(&mut self.ram, root, vaddr, paddr, 1 << size_bits);
                }
            }
            Cap::PageTable {
                paddr,
                mapped: Some((asid, vaddr, level)),
                ..
            } if last => {
                if let Some(root) = self.vspace_root(asid) {
                    vmsa::uninstall_table(&mut self.ram, root, vaddr, level, paddr);
                }
            }
            Cap::Reply { tcb, .. } => {
                if let Some(t) = self.objs.tcb_mut(tcb)
                    && t.reply_cap == Some(id)
                {
                    t.reply_cap = None;
                }
            }
            Cap::IrqHandler { irq } => {
                if let Some(l) = self.irqs.get_mut(irq as usize) {
                    l.caps = l.caps.saturating_sub(1);
                    if l.caps == 0 {
                        *l = IrqLine::default();
                    }
                }
            }
            _ => {}
        }
    }

    /// Destroys an object whose last cap is gone.
    fn destroy(&mut self, o: ObjId) {
        let (paddr, size_bits, origin) = match self.objs.get(o) {
            Some(obj) => (obj.paddr, obj.size_bits, obj.origin),
            None => return,
        };
        let kind_tag = match &self.objs.get(o).map(|x| &x.kind) {
            Some(Kind::Endpoint(_)) => 0,
            Some(Kind::Notification(_)) => 1,
            Some(Kind::Tcb(_)) => 2,
            Some(Kind::CNode(_)) => 3,
            Some(Kind::VSpace { .. }) => 4,
            Some(Kind::AsidPool { .. }) => 5,
            _ => 6,
        };
        match kind_tag {
            0 => {
                let q: Vec<ObjId> = self
                    .objs
                    .ep_mut(o)
                    .map(|e| e.queue.drain(..).collect())
                    .unwrap_or_default();
                for t in q {
                    self.restart_blocked(t);
                }
            }
            1 => {
                let (waiters, bound) = match self.objs.ntfn_mut(o) {
                    Some(n) => (n.waiters.drain(..).collect::<Vec<_>>(), n.bound.take()),
                    None => (Vec::new(), None),
                };
                for t in waiters {
                    self.restart_blocked(t);
                }
                if let Some(t) = bound.and_then(|t| self.objs.tcb_mut(t)) {
                    t.bound = None;
                }
                for l in &mut self.irqs {
                    if l.ntfn.is_some_and(|(n, _)| n == o) {
                        l.ntfn = None;
                    }
                }
            }
            2 => {
                self.kill_thread(o);
                if let Some(n) = self.objs.tcb_mut(o).and_then(|t| t.bound.take())
                    && let Some(nt) = self.objs.ntfn_mut(n)
                {
                    nt.bound = None;
                }
                for s in [
                    TcbSlot::CSpace,
                    TcbSlot::VSpace,
                    TcbSlot::Buffer,
                    TcbSlot::Caller,
                ] {
                    self.delete_slot(SlotRef::Tcb(o, s));
                }
                for p in &mut self.procs {
                    p.threads.retain(|&t| t != o);
                }
            }
            3 => {
                let used: Vec<u32> = self
                    .objs
                    .cnode(o)
                    .map(|c| c.slots.keys().copied().collect())
                    .unwrap_or_default();
                for i in used {
                    self.delete_slot(SlotRef::CNode(o, i));
                }
            }
            4 => {
                if let Some(Kind::VSpace { asid: Some(a) }) = self.objs.get(o).map(|x| &x.kind) {
                    let a = *a;
                    self.asids.remove(&a);
                    for pool in self.objs.ids().collect::<Vec<_>>() {
                        if let Some(Object {
                            kind: Kind::AsidPool { base, entries },
                            ..
                        }) = self.objs.get_mut(pool)
                            && a >= *base
                            && ((a - *base) as usize) < entries.len()
                        {
                            entries[(a - *base) as usize] = None;
                        }
                    }
                }
            }
            5 => {
                let vs: Vec<ObjId> = match self.objs.get(o).map(|x| &x.kind) {
                    Some(Kind::AsidPool { entries, .. }) => {
                        entries.iter().flatten().copied().collect()
                    }
                    _ => Vec::new(),
                };
                for v in vs {
                    if let Some(Object {
                        kind: Kind::VSpace { asid },
                        ..
                    }) = self.objs.get_mut(v)
                        && let Some(a) = asid.take()
                    {
                        self.asids.remove(&a);
                    }
                }
            }
            _ => {}
        }
        match origin {
            Origin::Boot => self.boot_alloc.free(paddr, size_bits),
            Origin::Untyped | Origin::Host => {}
        }
        self.objs.remove(o);
    }

    /// The physical address of the VSpace with this ASID.
    pub fn vspace_root(&self, asid: u16) -> Option<u64> {
        let v = *self.asids.get(&asid)?;
        Some(self.objs.get(v)?.paddr)
    }

    /// The ASID of a VSpace object.
    pub fn vspace_asid(&self, v: ObjId) -> Option<u16> {
        match self.objs.get(v)?.kind {
            Kind::VSpace { asid } => asid,
            _ => None,
        }
    }

    // ----- CSpace lookup -----

    /// seL4's resolveAddressBits: walks CNodes from `root` for `n_bits` of `cptr`.
    pub fn resolve(
        &self,
        root: Cap,
        cptr: Word,
        mut n_bits: u32,
    ) -> Result<(SlotRef, u32), LookupFailure> {
        let Cap::CNode {
            mut obj,
            mut radix,
            mut guard,
            mut guard_size,
        } = root
        else {
            return Err(LookupFailure::InvalidRoot);
        };
        loop {
            let gs = guard_size as u32;
            let level = radix as u32 + gs;
            let mismatch = LookupFailure::GuardMismatch {
                bits_left: n_bits as u8,
                guard_found: guard,
                guard_size,
            };
            if gs > n_bits {
                return Err(mismatch);
            }
            let g = if gs == 0 {
                0
            } else {
                (cptr >> (n_bits - gs)) & mask(gs)
            };
            if g != guard {
                return Err(mismatch);
            }
            if level > n_bits || level == 0 {
                return Err(LookupFailure::DepthMismatch {
                    bits_left: n_bits as u8,
                    bits_found: level as u8,
                });
            }
            let offset = (cptr >> (n_bits - level)) & mask(radix as u32);
            let slot = SlotRef::CNode(obj, offset as u32);
            if n_bits == level {
                return Ok((slot, 0));
            }
            n_bits -= level;
            match self.cap(slot) {
                Cap::CNode {
                    obj: o,
                    radix: r,
                    guard: g,
                    guard_size: s,
                } => {
                    obj = o;
                    radix = r;
                    guard = g;
                    guard_size = s;
                }
                _ => return Ok((slot, n_bits)),
            }
        }
    }

    /// A thread's CSpace root cap.
    pub fn cspace_root(&self, t: ObjId) -> Cap {
        self.cap(SlotRef::Tcb(t, TcbSlot::CSpace))
    }

    /// seL4's lookupCapAndSlot: resolves a plain CPtr in a thread's CSpace.
    pub fn lookup(&self, t: ObjId, cptr: Word) -> Result<(SlotRef, Cap), LookupFailure> {
        let (slot, _) = self.resolve(self.cspace_root(t), cptr, 64)?;
        Ok((slot, self.cap(slot)))
    }

    /// seL4's lookupSlotForCNodeOp.
    pub fn lookup_for_op(
        &self,
        source: bool,
        root: Cap,
        index: Word,
        depth: Word,
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
            Ok((_, rem)) if rem != 0 => Err(ErrorReply::FailedLookup {
                source,
                failure: LookupFailure::DepthMismatch {
                    bits_left: rem as u8,
                    bits_found: 0,
                },
            }),
            Ok((slot, _)) => Ok(slot),
        }
    }

    // ----- threads and scheduling -----

    pub fn prio(&self, t: ObjId) -> u8 {
        self.objs.tcb(t).map(|t| t.priority).unwrap_or(0)
    }

    /// Makes a thread runnable with a syscall outcome; a woken thread of
    /// higher priority than the current one preempts it.
    pub fn wake(&mut self, t: ObjId, wake: Wake) {
        let Some(tcb) = self.objs.tcb_mut(t) else {
            return;
        };
        if tcb.state == ThreadState::Dead {
            return;
        }
        tcb.wake = wake;
        if tcb.state == ThreadState::Ready {
            return;
        }
        tcb.state = ThreadState::Ready;
        let p = tcb.priority;
        if self.current != Some(t) {
            self.ready.push_back(p, t);
            self.candidate = Some(t);
            if let Some(c) = self.current
                && p > self.prio(c)
            {
                self.preempt = true;
            }
        }
    }

    /// Takes a thread out of whatever queue it blocks in (seL4's cancelIPC).
    pub fn cancel_ipc(&mut self, t: ObjId) {
        let Some(tcb) = self.objs.tcb_mut(t) else {
            return;
        };
        let state = tcb.state;
        tcb.pending = None;
        match state {
            ThreadState::BlockedOnSend { ep, .. } | ThreadState::BlockedOnRecv { ep, .. } => {
                if let Some(e) = self.objs.ep_mut(ep) {
                    e.queue.retain(|&x| x != t);
                }
            }
            ThreadState::BlockedOnNotification { ntfn } => {
                if let Some(n) = self.objs.ntfn_mut(ntfn) {
                    n.waiters.retain(|&x| x != t);
                }
            }
            ThreadState::BlockedOnReply => {
                let cap = self.objs.tcb_mut(t).and_then(|tcb| {
                    tcb.reply_nonce = 0;
                    tcb.fault = None;
                    tcb.reply_cap.take()
                });
                if let Some(loc) = cap.and_then(|c| self.cdt.get(&c)).map(|n| n.loc) {
                    self.delete_slot(loc);
                }
            }
            ThreadState::Ready => {
                let p = self.prio(t);
                self.ready.remove(p, t);
            }
            _ => {}
        }
    }

    /// seL4's restart: a stopped or blocked thread runs again from its syscall.
    pub fn restart(&mut self, t: ObjId) {
        let state = match self.objs.tcb(t) {
            Some(tcb) => tcb.state,
            None => return,
        };
        if matches!(state, ThreadState::Ready | ThreadState::Dead) {
            return;
        }
        self.cancel_ipc(t);
        if let Some(tcb) = self.objs.tcb_mut(t) {
            tcb.state = ThreadState::Inactive;
            tcb.fault = None;
        }
        let proc = self
            .current
            .and_then(|c| self.objs.tcb(c))
            .and_then(|c| c.process);
        if let Some(tcb) = self.objs.tcb_mut(t)
            && tcb.process.is_none()
        {
            tcb.process = proc;
        }
        if let Some(p) = proc
            && self.objs.tcb(t).is_some_and(|x| x.process == Some(p))
            && let Some(pr) = self.procs.get_mut(p)
            && !pr.threads.contains(&t)
        {
            pr.threads.push(t);
        }
        let w = self
            .objs
            .tcb_mut(t)
            .and_then(|x| x.resume_result.take())
            .unwrap_or(Wake::Restart);
        self.wake(t, w);
    }

    /// A thread blocked in an object being destroyed restarts its syscall.
    fn restart_blocked(&mut self, t: ObjId) {
        if let Some(tcb) = self.objs.tcb_mut(t) {
            tcb.pending = None;
            tcb.state = ThreadState::Inactive;
        }
        self.wake(t, Wake::Restart);
    }

    /// seL4's suspend: the thread stops until resumed.
    pub fn suspend(&mut self, t: ObjId) {
        self.cancel_ipc(t);
        if let Some(tcb) = self.objs.tcb_mut(t)
            && tcb.state != ThreadState::Dead
        {
            tcb.state = ThreadState::Inactive;
        }
    }

    /// Ends a thread for good: its host thread unwinds.
    pub fn kill_thread(&mut self, t: ObjId) {
        self.cancel_ipc(t);
        let current = self.current == Some(t);
        if let Some(tcb) = self.objs.tcb_mut(t) {
            tcb.state = ThreadState::Dead;
            tcb.start = None;
            if let Some(h) = tcb.host.take()
                && !current
            {
                h.wake();
            }
        }
    }

    /// Whether the current thread should give up the CPU after a tick.
    pub fn tick(&mut self) -> bool {
        self.ticks += 1;
        if self.ticks > self.max_ticks && self.halted.is_none() {
            self.halted = Some(Halt::TickLimit(self.max_ticks));
        }
        if self.halted.is_some() {
            return true;
        }
        if std::mem::take(&mut self.preempt) {
            return true;
        }
        let expired = match self.schedule {
            Schedule::Seeded { preempt_one_in, .. } => {
                preempt_one_in != 0 && self.rng.below(preempt_one_in as u64) == 0
            }
            Schedule::Fifo { .. } => {
                self.slice_left = self.slice_left.saturating_sub(1);
                self.slice_left == 0
            }
        };
        if expired {
            self.yield_back = true;
        }
        expired
    }

    /// The current thread gives up the CPU (staying runnable if it is);
    /// returns what to do to run the next one.
    pub fn switch(&mut self) -> Next {
        self.current_host = None;
        let back = std::mem::take(&mut self.yield_back);
        if let Some(c) = self.current.take()
            && let Some(tcb) = self.objs.tcb(c)
            && tcb.state == ThreadState::Ready
        {
            let p = tcb.priority;
            if back {
                self.ready.push_back(p, c);
            } else {
                self.ready.push_front(p, c);
            }
        }
        self.preempt = false;
        loop {
            if self.halted.is_some() {
                return Next::Idle;
            }
            let candidate = self.candidate.take().filter(|&c| {
                self.objs
                    .tcb(c)
                    .is_some_and(|t| t.state == ThreadState::Ready)
                    && self.ready.highest().is_some_and(|h| self.prio(c) >= h)
            });
            let next = match (candidate, self.schedule) {
                (Some(c), Schedule::Fifo { .. }) => {
                    let p = self.prio(c);
                    self.ready.remove(p, c);
                    Some(c)
                }
                (_, Schedule::Seeded { .. }) => self.ready.pop(Some(&mut self.rng)),
                _ => self.ready.pop(None),
            };
            let Some(t) = next else {
                return Next::Idle;
            };
            if let Some(n) = self.dispatch(t) {
                return n;
            }
        }
    }

    /// Gives the CPU to `t`; `None` if it faulted instead of starting.
    fn dispatch(&mut self, t: ObjId) -> Option<Next> {
        self.current = Some(t);
        self.record(TraceEvent::Switch(t));
        if let Schedule::Fifo { slice } = self.schedule {
            self.slice_left = slice;
        }
        let proc = self.objs.tcb(t)?.process;
        let boot = proc
            .and_then(|p| self.procs.get(p))
            .map(|p| p.boot)
            .unwrap_or(self.empty_boot);
        let pc = self.objs.tcb(t)?.context[abi::invocation::CONTEXT_PC];
        let arg = self.objs.tcb(t)?.context[abi::invocation::CONTEXT_X0];
        let entry = self.entries.get(&pc).cloned();
        let tcb = self.objs.tcb_mut(t)?;
        if let Some(h) = &tcb.host {
            let h = h.clone();
            self.current_host = Some(h.clone());
            return Some(Next::Wake(h));
        }
        let start: StartFn = match (tcb.start.take(), entry) {
            (Some(s), _) => s,
            (None, Some(e)) => Box::new(move || e(arg)),
            (None, None) => {
                // Nothing at that pc: an instruction abort, as the CPU would take.
                self.current = None;
                self.current_host = None;
                tcb.state = ThreadState::Inactive;
                let f = Fault::VmFault(abi::fault::VmFault {
                    ip: pc,
                    addr: pc,
                    instruction: true,
                    fsr: abi::fault::fsc_translation(3),
                });
                self.send_fault(t, f);
                return None;
            }
        };
        let host = HostCtl::new();
        self.current_host = Some(host.clone());
        let tcb = self.objs.tcb_mut(t)?;
        tcb.host = Some(host.clone());
        tcb.started_pc = Some(pc);
        Some(Next::Spawn(Spawn {
            tid: t,
            host,
            ipc: tcb.ipc.clone(),
            boot,
            start,
        }))
    }

    /// A fresh nonce for a reply cap.
    pub fn new_nonce(&mut self) -> u64 {
        self.nonce += 1;
        self.nonce
    }

    /// Registers an entry function; returns its pc.
    pub fn register_entry(&mut self, e: Entry) -> Word {
        self.next_pc += 0x100;
        self.entries.insert(self.next_pc, e);
        self.next_pc
    }
}

/// `(1 << bits) - 1`, for up to 64 bits.
pub(crate) fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

/// seL4's isMDBParentOf for a cap `a` (revocable) and a new cap `b`.
fn is_mdb_parent(a: &Cap, b: &Cap, b_first_badged: bool) -> bool {
    if !a.same_region(b) {
        return false;
    }
    match a {
        Cap::Endpoint { badge, .. } | Cap::Notification { badge, .. } => {
            *badge == 0 || (*badge == b.badge() && !b_first_badged)
        }
        _ => true,
    }
}
