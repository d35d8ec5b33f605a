//! Kernel objects, capabilities and the slots that hold them.
//!
//! Objects live in an arena indexed by [`ObjId`]; a capability names an
//! object (or, for Untyped and IRQ handlers, a region or a line) with the
//! rights and per-cap state seL4 keeps in the cap itself: badges, CNode
//! guards, an Untyped's watermark, a frame's mapping. Objects are reference
//! counted by their capabilities: deleting the last one destroys the object.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use abi::invocation::USER_CONTEXT_WORDS;
use abi::ipc_buffer::IpcBuffer;
use abi::{CapRights, Word};

use crate::sched::HostCtl;

/// Index of an object in the arena.
pub(crate) type ObjId = u32;
/// A capability's identity in the derivation tree (stable across moves).
pub(crate) type CapId = u64;

/// A capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum Cap {
    /// The empty slot.
    #[default]
    Null,
    /// A region of memory to retype; `free` is the watermark in bytes.
    Untyped {
        paddr: u64,
        size_bits: u8,
        device: bool,
        free: u64,
    },
    Endpoint {
        obj: ObjId,
        badge: Word,
        rights: CapRights,
    },
    Notification {
        obj: ObjId,
        badge: Word,
        rights: CapRights,
    },
    /// A one-shot reply capability to `tcb`, valid while its nonce matches.
    Reply {
        tcb: ObjId,
        nonce: u64,
        can_grant: bool,
    },
    Tcb {
        obj: ObjId,
    },
    CNode {
        obj: ObjId,
        radix: u8,
        guard: Word,
        guard_size: u8,
    },
    Frame {
        obj: ObjId,
        paddr: u64,
        size_bits: u8,
        rights: CapRights,
        device: bool,
        /// (ASID, vaddr) of this cap's mapping.
        mapped: Option<(u16, Word)>,
    },
    PageTable {
        obj: ObjId,
        paddr: u64,
        /// (ASID, vaddr, level) where it is installed.
        mapped: Option<(u16, Word, u8)>,
    },
    VSpace {
        obj: ObjId,
        paddr: u64,
    },
    AsidPool {
        obj: ObjId,
    },
    IrqControl,
    IrqHandler {
        irq: u32,
    },
}

impl Cap {
    /// The object whose lifetime this cap holds, if any.
    pub fn obj(&self) -> Option<ObjId> {
        match *self {
            Cap::Endpoint { obj, .. }
            | Cap::Notification { obj, .. }
            | Cap::Tcb { obj }
            | Cap::CNode { obj, .. }
            | Cap::Frame { obj, .. }
            | Cap::PageTable { obj, .. }
            | Cap::VSpace { obj, .. }
            | Cap::AsidPool { obj } => Some(obj),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Cap::Null)
    }

    /// The badge of an endpoint or notification cap.
    pub fn badge(&self) -> Word {
        match *self {
            Cap::Endpoint { badge, .. } | Cap::Notification { badge, .. } => badge,
            _ => 0,
        }
    }

    /// Whether `self` and `other` cover the same memory or object
    /// (seL4's sameRegionAs, for the derivation tree).
    pub fn same_region(&self, other: &Cap) -> bool {
        match (*self, *other) {
            (
                Cap::Untyped {
                    paddr, size_bits, ..
                },
                o,
            ) => {
                let end = paddr + (1u64 << size_bits);
                let (p, len) = match o {
                    Cap::Untyped {
                        paddr, size_bits, ..
                    } => (paddr, 1u64 << size_bits),
                    Cap::Frame {
                        paddr, size_bits, ..
                    } => (paddr, 1u64 << size_bits),
                    Cap::PageTable { paddr, .. } | Cap::VSpace { paddr, .. } => (paddr, 4096),
                    _ => return false, // other objects: checked through `obj_region`
                };
                p >= paddr && p + len <= end
            }
            (Cap::IrqControl, Cap::IrqHandler { .. }) => true,
            (Cap::IrqHandler { irq: a }, Cap::IrqHandler { irq: b }) => a == b,
            (a, b) => a.obj().is_some() && a.obj() == b.obj(),
        }
    }
}

/// A slot: a cap and its identity in the derivation tree.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Slot {
    pub cap: Cap,
    pub id: CapId,
}

/// Where a slot is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SlotRef {
    /// Slot `index` of a CNode.
    CNode(ObjId, u32),
    /// One of a TCB's own slots.
    Tcb(ObjId, TcbSlot),
}

/// The slots a TCB holds (as seL4's TCB CNode does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TcbSlot {
    CSpace = 0,
    VSpace = 1,
    Buffer = 2,
    Caller = 3,
}

/// A thread's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ThreadState {
    /// Not runnable until resumed.
    Inactive,
    /// Runnable (in a ready queue, or the current thread).
    Ready,
    BlockedOnSend {
        ep: ObjId,
        badge: Word,
        can_grant: bool,
        can_grant_reply: bool,
        is_call: bool,
    },
    BlockedOnRecv {
        ep: ObjId,
        can_grant: bool,
    },
    BlockedOnReply,
    BlockedOnNotification {
        ntfn: ObjId,
    },
    /// Killed: its host thread unwinds.
    Dead,
}

/// How a blocked syscall completes when the thread runs again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Nothing yet.
    None,
    /// The syscall returns these registers.
    Done { x0: Word, x1: Word, mrs: [Word; 4] },
    /// The syscall (or memory access) is executed again.
    Restart,
}

/// A message a blocked sender holds until a receiver takes it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    pub info: abi::MessageInfo,
    pub mrs: [Word; 4],
    /// A fault message (sent on the thread's behalf by the kernel).
    pub fault: bool,
}

/// A function a thread starts in.
pub(crate) type StartFn = Box<dyn FnOnce() + Send>;

/// A thread control block.
pub(crate) struct Tcb {
    pub state: ThreadState,
    pub priority: u8,
    pub mcp: u8,
    pub fault_ep: Word,
    pub ipc_buffer: Word,
    pub slots: [Slot; 4],
    pub context: [Word; USER_CONTEXT_WORDS],
    pub bound: Option<ObjId>,
    /// Nonce of the outstanding reply cap while blocked on reply.
    pub reply_nonce: u64,
    /// That reply cap, to delete it when the call is cancelled.
    pub reply_cap: Option<CapId>,
    pub wake: Wake,
    pub pending: Option<Pending>,
    /// The fault being handled, if any.
    pub fault: Option<abi::fault::Fault>,
    pub host: Option<Arc<HostCtl>>,
    /// The pc its host thread was started at.
    pub started_pc: Option<Word>,
    pub start: Option<StartFn>,
    pub process: Option<usize>,
    pub ipc: Arc<Mutex<IpcBuffer>>,
    /// Faulted with no handler (kept for reports).
    pub dead_fault: Option<abi::fault::Fault>,
    /// What its syscall returns when resumed after suspending itself.
    pub resume_result: Option<Wake>,
}

impl Tcb {
    pub fn new() -> Tcb {
        Tcb {
            state: ThreadState::Inactive,
            priority: 0,
            mcp: 0,
            fault_ep: 0,
            ipc_buffer: 0,
            slots: [Slot::default(); 4],
            context: [0; USER_CONTEXT_WORDS],
            bound: None,
            reply_nonce: 0,
            reply_cap: None,
            wake: Wake::None,
            pending: None,
            fault: None,
            host: None,
            started_pc: None,
            start: None,
            process: None,
            ipc: Arc::new(Mutex::new(IpcBuffer::default())),
            dead_fault: None,
            resume_result: None,
        }
    }

    pub fn has_ipc_buffer(&self) -> bool {
        !self.slots[TcbSlot::Buffer as usize].cap.is_null()
    }
}

/// A synchronous endpoint: a queue of senders or of receivers.
#[derive(Default)]
pub(crate) struct Endpoint {
    pub queue: VecDeque<ObjId>,
    /// Whether the queue holds receivers (else senders, or empty).
    pub receivers: bool,
}

/// A notification: a word of badges and the threads waiting for it.
#[derive(Default)]
pub(crate) struct Notification {
    pub word: Word,
    pub active: bool,
    pub waiters: VecDeque<ObjId>,
    pub bound: Option<ObjId>,
}

/// A CNode's slots, stored sparsely (a large CNode costs only what it holds).
#[derive(Default)]
pub(crate) struct CNodeSlots {
    pub radix: u8,
    pub slots: std::collections::BTreeMap<u32, Slot>,
}

impl CNodeSlots {
    pub fn new(radix: u8) -> CNodeSlots {
        CNodeSlots {
            radix,
            slots: Default::default(),
        }
    }

    pub fn in_range(&self, i: u32) -> bool {
        self.radix >= 32 || (i as u64) < (1u64 << self.radix)
    }
}

/// The empty slot, for reads of slots never written.
pub(crate) static NULL_SLOT: Slot = Slot {
    cap: Cap::Null,
    id: 0,
};

/// What an object is.
pub(crate) enum Kind {
    Endpoint(Endpoint),
    Notification(Notification),
    Tcb(Box<Tcb>),
    CNode(CNodeSlots),
    Frame,
    PageTable,
    VSpace {
        asid: Option<u16>,
    },
    AsidPool {
        base: u16,
        entries: Vec<Option<ObjId>>,
    },
}

/// Where an object's memory came from, so destroying it can return it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Retyped from an Untyped: the Untyped's watermark owns the memory.
    Untyped,
    /// Carved by the harness from the boot region.
    Boot,
    /// Host-only (the harness CNode): no simulated memory.
    Host,
}

/// An object.
pub(crate) struct Object {
    pub kind: Kind,
    pub paddr: u64,
    pub size_bits: u32,
    /// Capabilities referring to it.
    pub refs: u32,
    pub origin: Origin,
}

/// The object arena.
#[derive(Default)]
pub(crate) struct Arena {
    objs: Vec<Option<Object>>,
    free: Vec<ObjId>,
}

impl Arena {
    pub fn insert(&mut self, o: Object) -> ObjId {
        match self.free.pop() {
            Some(id) => {
                self.objs[id as usize] = Some(o);
                id
            }
            None => {
                self.objs.push(Some(o));
                (self.objs.len() - 1) as ObjId
            }
        }
    }

    pub fn remove(&mut self, id: ObjId) -> Option<Object> {
        let o = self.objs.get_mut(id as usize)?.take();
        if o.is_some() {
            self.free.push(id);
        }
        o
    }

    pub fn get(&self, id: ObjId) -> Option<&Object> {
        self.objs.get(id as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, id: ObjId) -> Option<&mut Object> {
        self.objs.get_mut(id as usize)?.as_mut()
    }

    pub fn tcb(&self, id: ObjId) -> Option<&Tcb> {
        match &self.get(id)?.kind {
            Kind::Tcb(t) => Some(t),
            _ => None,
        }
    }

    pub fn tcb_mut(&mut self, id: ObjId) -> Option<&mut Tcb> {
        match &mut self.get_mut(id)?.kind {
            Kind::Tcb(t) => Some(t),
            _ => None,
        }
    }

    pub fn ep_mut(&mut self, id: ObjId) -> Option<&mut Endpoint> {
        match &mut self.get_mut(id)?.kind {
            Kind::Endpoint(e) => Some(e),
            _ => None,
        }
    }

    pub fn ntfn_mut(&mut self, id: ObjId) -> Option<&mut Notification> {
        match &mut self.get_mut(id)?.kind {
            Kind::Notification(n) => Some(n),
            _ => None,
        }
    }

    pub fn cnode(&self, id: ObjId) -> Option<&CNodeSlots> {
        match &self.get(id)?.kind {
            Kind::CNode(s) => Some(s),
            _ => None,
        }
    }

    pub fn cnode_mut(&mut self, id: ObjId) -> Option<&mut CNodeSlots> {
        match &mut self.get_mut(id)?.kind {
            Kind::CNode(s) => Some(s),
            _ => None,
        }
    }

    /// Ids of live objects (for reports).
    pub fn ids(&self) -> impl Iterator<Item = ObjId> + '_ {
        self.objs
            .iter()
            .enumerate()
            .filter(|(_, o)| o.is_some())
            .map(|(i, _)| i as ObjId)
    }
}
