//! The kernel objects' bookkeeping: TCBs, endpoints, notifications, CNodes, and their tables.
//!
//! Objects are created by `Untyped_Retype`, which charges their size to the
//! Untyped's memory exactly as seL4 does (see `abi::object`); their
//! bookkeeping lives in tables on the kernel heap, indexed by [`ObjId`].
//! Frames, page tables and VSpaces are the memory itself and are named by
//! physical address instead.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::cap::{Cap, ObjId};
use abi::fault::Fault;

/// A table of objects with stable indices and reuse of freed ones.
#[derive(Debug)]
pub struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<ObjId>,
    live: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            items: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Adds an object; returns its index.
    pub fn insert(&mut self, value: T) -> ObjId {
        self.live += 1;
        if let Some(id) = self.free.pop() {
            self.items[id as usize] = Some(value);
            id
        } else {
            self.items.push(Some(value));
            (self.items.len() - 1) as ObjId
        }
    }

    /// Removes an object; its index may be reused.
    pub fn remove(&mut self, id: ObjId) -> Option<T> {
        let value = self.items.get_mut(id as usize)?.take()?;
        self.free.push(id);
        self.live -= 1;
        Some(value)
    }

    /// The object at `id`.
    #[inline(always)]
    pub fn get(&self, id: ObjId) -> Option<&T> {
        self.items.get(id as usize)?.as_ref()
    }

    /// The object at `id`, mutably.
    #[inline(always)]
    pub fn get_mut(&mut self, id: ObjId) -> Option<&mut T> {
        self.items.get_mut(id as usize)?.as_mut()
    }

    /// How many objects are live.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no object is live.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The live objects with their indices.
    pub fn iter(&self) -> impl Iterator<Item = (ObjId, &T)> {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (i as ObjId, v)))
    }
}

/// A thread's user-level registers, saved on every kernel entry.
///
/// The layout is fixed (`repr(C)`): the exception entry code stores into it
/// directly. Offsets: `x` 0, `sp` 248, `pc` 256, `spsr` 264, `tpidr` 272,
/// `restart_pc` 280.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct Context {
    /// x0..=x30.
    pub x: [u64; 31],
    /// SP_EL0.
    pub sp: u64,
    /// ELR_EL1: where the thread continues.
    pub pc: u64,
    /// SPSR_EL1.
    pub spsr: u64,
    /// TPIDR_EL0.
    pub tpidr: u64,
    /// Where the thread resumes when restarted (seL4's FaultIP): the `svc`
    /// of an interrupted syscall, or the instruction that faulted.
    pub restart_pc: u64,
}

/// Byte offset of [`Context::sp`].
pub const CONTEXT_SP_OFFSET: usize = 248;
/// Byte offset of [`Context::restart_pc`].
pub const CONTEXT_RESTART_PC_OFFSET: usize = 280;
const _: () = assert!(core::mem::offset_of!(Context, sp) == CONTEXT_SP_OFFSET);
const _: () = assert!(core::mem::offset_of!(Context, restart_pc) == CONTEXT_RESTART_PC_OFFSET);
const _: () = assert!(core::mem::size_of::<Context>() == 288);

/// SPSR for EL0t with interrupts unmasked (DAIF clear).
pub const SPSR_EL0: u64 = 0;

impl Context {
    /// A fresh context starting at `pc` with stack `sp`, at EL0.
    pub const fn new(pc: u64, sp: u64) -> Self {
        Context {
            x: [0; 31],
            sp,
            pc,
            spsr: SPSR_EL0,
            tpidr: 0,
            restart_pc: pc,
        }
    }
}

/// What a thread is doing (seL4's thread states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadState {
    /// Stopped: not scheduled until resumed.
    Inactive,
    /// Runnable; continues at `pc`.
    Running,
    /// Runnable; restarts at `restart_pc` (an interrupted syscall or a fault).
    Restart,
    /// Waiting in a Recv on an endpoint.
    BlockedOnReceive {
        /// The endpoint.
        ep: ObjId,
        /// Whether the receive cap had the Grant right.
        can_grant: bool,
    },
    /// Waiting in a Send or Call (or a fault message) on an endpoint.
    BlockedOnSend {
        /// The endpoint.
        ep: ObjId,
        /// The sending cap's badge.
        badge: u64,
        /// The sending cap's Grant right.
        can_grant: bool,
        /// The sending cap's GrantReply right.
        can_grant_reply: bool,
        /// A Call (or a fault): the sender then waits for a reply.
        is_call: bool,
    },
    /// Waiting for a reply to a Call or a fault.
    BlockedOnReply,
    /// Waiting on a notification.
    BlockedOnNotification {
        /// The notification.
        ntfn: ObjId,
    },
}

impl ThreadState {
    /// Whether the scheduler may run the thread.
    pub const fn is_runnable(&self) -> bool {
        matches!(self, ThreadState::Running | ThreadState::Restart)
    }
}

/// Slots of a TCB's own small CNode (seL4's `tcbCTable`).
pub mod tcb_slot {
    /// The CSpace root.
    pub const CSPACE: u32 = 0;
    /// The VSpace root.
    pub const VSPACE: u32 = 1;
    /// The master reply cap.
    pub const REPLY: u32 = 2;
    /// The reply cap of the thread that last called this one.
    pub const CALLER: u32 = 3;
    /// The IPC buffer's frame.
    pub const BUFFER: u32 = 4;
    /// log2 of the number of slots.
    pub const RADIX: u8 = 3;
}

/// A thread control block.
#[derive(Debug)]
pub struct Tcb {
    /// Saved user registers (first, so the entry code can find them).
    pub context: Context,
    /// Physical address of the object (in its Untyped).
    pub paddr: u64,
    /// State.
    pub state: ThreadState,
    /// Priority 0..=255.
    pub priority: u8,
    /// Maximum controlled priority: the highest priority it may give.
    pub mcp: u8,
    /// The TCB's own CNode (see [`tcb_slot`]).
    pub ctable: ObjId,
    /// The fault endpoint, a CPtr in the thread's CSpace.
    pub fault_ep: u64,
    /// Virtual address of the IPC buffer.
    pub ipc_buffer: u64,
    /// The bound notification.
    pub bound_ntfn: Option<ObjId>,
    /// The fault being delivered while blocked on its fault endpoint or reply.
    pub fault: Option<Fault>,
    /// Whether it sits in a ready queue.
    pub queued: bool,
    /// A name for diagnostics (the boot process's name).
    pub name: [u8; 16],
    /// What the fastpaths need of the thread's CSpace and VSpace roots,
    /// cached; valid while `fast_generation` equals the kernel's
    /// `cap_generation`.
    pub fast: Option<FastInfo>,
    /// The generation `fast` was computed at (0: never).
    pub fast_generation: u64,
}

/// A thread's CSpace root, when it is one CNode resolving all 64 bits of a
/// CPtr, and its VSpace, when it can run: the fastpaths' view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastInfo {
    /// The root CNode.
    pub cnode: ObjId,
    /// Its radix.
    pub radix: u8,
    /// Its guard (the CPtr's bits above the radix must equal it).
    pub guard: u64,
    /// The VSpace's root table.
    pub root: u64,
    /// The VSpace's ASID.
    pub asid: u16,
}

impl Tcb {
    /// A new, inactive thread.
    pub fn new(paddr: u64, ctable: ObjId) -> Box<Tcb> {
        Box::new(Tcb {
            context: Context::new(0, 0),
            paddr,
            state: ThreadState::Inactive,
            priority: 0,
            mcp: 0,
            ctable,
            fault_ep: 0,
            ipc_buffer: 0,
            bound_ntfn: None,
            fault: None,
            queued: false,
            name: [0; 16],
            fast: None,
            fast_generation: 0,
        })
    }

    /// The thread's name as text.
    pub fn name(&self) -> &str {
        let len = self.name.iter().position(|&b| b == 0).unwrap_or(16);
        core::str::from_utf8(&self.name[..len]).unwrap_or("?")
    }
}

/// An endpoint's state: who is queued on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointState {
    /// Nobody.
    Idle,
    /// Senders wait.
    Send,
    /// Receivers wait.
    Recv,
}

/// A synchronous IPC endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// Physical address of the object.
    pub paddr: u64,
    /// Who waits.
    pub state: EndpointState,
    /// The waiting threads, in order.
    pub queue: VecDeque<ObjId>,
}

/// A notification: a word of signal bits.
#[derive(Debug)]
pub struct Notification {
    /// Physical address of the object.
    pub paddr: u64,
    /// A signal is pending (seL4's Active state).
    pub active: bool,
    /// The pending badges, OR-ed.
    pub word: u64,
    /// Threads waiting.
    pub waiting: VecDeque<ObjId>,
    /// The TCB bound to it.
    pub bound_tcb: Option<ObjId>,
}

/// One capability slot, with its place in the derivation tree (seL4's CTE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// The capability.
    pub cap: Cap,
    /// Previous slot in the derivation list (preorder of the tree).
    pub prev: Option<SlotRef>,
    /// Next slot in the derivation list.
    pub next: Option<SlotRef>,
    /// Whether caps derived from this one are its children.
    pub revocable: bool,
    /// Whether this is the first cap with its badge (badged caps derived from
    /// it are its children).
    pub first_badged: bool,
}

/// A slot's address: the CNode and the index in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlotRef {
    /// The CNode.
    pub cnode: ObjId,
    /// The index.
    pub index: u32,
}

/// A CNode: `2^radix` slots.
#[derive(Debug)]
pub struct CNode {
    /// Physical address of the object (0 for a TCB's own CNode).
    pub paddr: u64,
    /// log2 of the number of slots.
    pub radix: u8,
    /// The slots.
    pub slots: Vec<Slot>,
}

impl CNode {
    /// An empty CNode.
    pub fn new(paddr: u64, radix: u8) -> CNode {
        CNode {
            paddr,
            radix,
            slots: alloc::vec![Slot::default(); 1usize << radix],
        }
    }
}
