//! The kernel objects' bookkeeping: TCBs, endpoints, notifications, CNodes, and their tables.
//!
//! Objects are created by `Untyped_Retype`, which charges their size to the
//! Untyped's memory exactly as seL4 does (see `abi::object`); their
//! bookkeeping lives in tables on the kernel heap, indexed by [`ObjId`].
//! Frames, page tables and VSpaces are the memory itself and are named by
//! physical address instead.
//!
//! Nothing here grows after an object is made: threads wait in queues
//! linked through their TCBs ([`ThreadQueue`]), a table's free list has
//! room for every index, and the objects waiting to be destroyed are
//! linked through themselves ([`Doomed`]). The heap is touched only by
//! retype, fallibly, before it changes anything.

use alloc::boxed::Box;
use alloc::collections::TryReserveError;
use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};

use super::cap::{Cap, ObjId};
use abi::fault::Fault;

/// A table of objects with stable indices and reuse of freed ones.
///
/// It allocates only in [`Slab::try_reserve`] (and in [`Slab::insert`]
/// beyond what was reserved, which only boot does): the free list always
/// has room for every index, so [`Slab::remove`] never allocates.
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
    /// Makes room for `n` more objects, so that the next `n` inserts
    /// cannot fail; `Err` (nothing inserted, nothing lost) when the kernel
    /// heap cannot hold them.
    pub fn try_reserve(&mut self, n: usize) -> Result<(), TryReserveError> {
        let fresh = n.saturating_sub(self.free.len());
        self.items.try_reserve(fresh)?;
        let total = self.items.len() + fresh;
        self.free.try_reserve(total.saturating_sub(self.free.len()))
    }

    /// Adds an object; returns its index. Allocates (infallibly) only
    /// beyond what [`Slab::try_reserve`] reserved.
    pub fn insert(&mut self, value: T) -> ObjId {
        self.live += 1;
        if let Some(id) = self.free.pop() {
            self.items[id as usize] = Some(value);
            id
        } else {
            self.items.push(Some(value));
            if self.free.capacity() < self.items.len() {
                self.free.reserve(self.items.len() - self.free.len());
            }
            (self.items.len() - 1) as ObjId
        }
    }

    /// The index the next [`Slab::insert`] will return.
    pub fn next_id(&self) -> ObjId {
        match self.free.last() {
            Some(&id) => id,
            None => self.items.len() as ObjId,
        }
    }

    /// Removes an object; its index may be reused. Never allocates.
    pub fn remove(&mut self, id: ObjId) -> Option<T> {
        let value = self.items.get_mut(id as usize)?.take()?;
        debug_assert!(self.free.len() < self.free.capacity());
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

    /// Two distinct objects at once, mutably (`None` if either is missing
    /// or `a == b`).
    #[inline(always)]
    pub fn get_pair_mut(&mut self, a: ObjId, b: ObjId) -> Option<(&mut T, &mut T)> {
        match self.items.get_disjoint_mut([a as usize, b as usize]) {
            Ok([Some(x), Some(y)]) => Some((x, y)),
            _ => None,
        }
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

/// An object in a heap block of its own, allocated fallibly: what the
/// threads' table holds, so that finding a thread is one load.
#[derive(Debug)]
pub struct Boxed<T>(Box<[T; 1]>);

impl<T> Boxed<T> {
    /// Boxes `value` (allocating infallibly: for boot).
    pub fn new(value: T) -> Self {
        Boxed(Box::new([value]))
    }

    /// Boxes `value`, or gives it back when the kernel heap cannot hold it.
    pub fn try_new(value: T) -> Result<Self, T> {
        let mut v = Vec::new();
        if v.try_reserve_exact(1).is_err() {
            return Err(value);
        }
        v.push(value);
        match <Box<[T; 1]>>::try_from(v) {
            Ok(b) => Ok(Boxed(b)),
            Err(_) => unreachable!("a Vec of one element converts to an array of one"),
        }
    }
}

impl<T> Deref for Boxed<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0[0]
    }
}

impl<T> DerefMut for Boxed<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0[0]
    }
}

/// The threads' table.
pub type TcbTable = Slab<Boxed<Tcb>>;

/// A thread's place in one queue: its neighbours (seL4's `tcbEPNext`/`tcbEPPrev`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueLinks {
    /// The thread before it.
    pub prev: Option<ObjId>,
    /// The thread after it.
    pub next: Option<ObjId>,
}

/// Which of a thread's two sets of links a queue uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chain {
    /// Endpoint and notification queues (a blocked thread waits in one).
    Ipc,
    /// The scheduler's ready queues.
    Ready,
}

/// A FIFO of threads linked through their TCBs (seL4's `tcb_queue_t`).
///
/// The links live in the threads themselves, so a queue never allocates
/// and any number of threads can wait: queueing cannot fail. A thread is
/// in at most one queue of each [`Chain`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadQueue {
    /// The first thread.
    pub head: Option<ObjId>,
    /// The last thread.
    pub tail: Option<ObjId>,
}

impl ThreadQueue {
    /// Whether no thread waits.
    #[inline(always)]
    pub const fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// Appends `id` (seL4 `tcbEPAppend`).
    #[inline(always)]
    pub fn push_back(&mut self, tcbs: &mut TcbTable, chain: Chain, id: ObjId) {
        let tail = self.tail;
        if let Some(t) = tcbs.get_mut(id) {
            *t.links(chain) = QueueLinks {
                prev: tail,
                next: None,
            };
        }
        match tail.and_then(|t| tcbs.get_mut(t)) {
            Some(t) => t.links(chain).next = Some(id),
            None => self.head = Some(id),
        }
        self.tail = Some(id);
    }

    /// Puts `id` first.
    pub fn push_front(&mut self, tcbs: &mut TcbTable, chain: Chain, id: ObjId) {
        let head = self.head;
        if let Some(t) = tcbs.get_mut(id) {
            *t.links(chain) = QueueLinks {
                prev: None,
                next: head,
            };
        }
        match head.and_then(|h| tcbs.get_mut(h)) {
            Some(h) => h.links(chain).prev = Some(id),
            None => self.tail = Some(id),
        }
        self.head = Some(id);
    }

    /// Takes the first thread out.
    #[inline(always)]
    pub fn pop_front(&mut self, tcbs: &mut TcbTable, chain: Chain) -> Option<ObjId> {
        let id = self.head?;
        self.remove(tcbs, chain, id);
        Some(id)
    }

    /// Takes `id`, which must be in this queue, out (seL4 `tcbEPDequeue`).
    #[inline(always)]
    pub fn remove(&mut self, tcbs: &mut TcbTable, chain: Chain, id: ObjId) {
        let Some(t) = tcbs.get_mut(id) else {
            return;
        };
        let QueueLinks { prev, next } = core::mem::take(t.links(chain));
        match prev.and_then(|p| tcbs.get_mut(p)) {
            Some(p) => p.links(chain).next = next,
            None => self.head = next,
        }
        match next.and_then(|n| tcbs.get_mut(n)) {
            Some(n) => n.links(chain).prev = prev,
            None => self.tail = prev,
        }
    }

    /// The threads in order.
    pub fn iter<'a>(&self, tcbs: &'a TcbTable, chain: Chain) -> QueueIter<'a> {
        QueueIter {
            tcbs,
            chain,
            at: self.head,
            left: tcbs.len(),
        }
    }

    /// Whether `id` is in the queue (a walk: for checks, not hot paths).
    pub fn contains(&self, tcbs: &TcbTable, chain: Chain, id: ObjId) -> bool {
        self.iter(tcbs, chain).any(|t| t == id)
    }

    /// Checks the links: each thread's `prev` is the one before it, the
    /// last is the tail, no thread appears twice.
    pub fn check(&self, tcbs: &TcbTable, chain: Chain) -> Result<usize, &'static str> {
        let mut prev = None;
        let mut count = 0;
        let mut at = self.head;
        while let Some(id) = at {
            let t = tcbs.get(id).ok_or("a queued thread is dead")?;
            let links = t.links_ref(chain);
            if links.prev != prev {
                return Err("a queued thread's prev link is wrong");
            }
            count += 1;
            if count > tcbs.len() {
                return Err("a queue has a cycle");
            }
            prev = at;
            at = links.next;
        }
        if self.tail != prev {
            return Err("a queue's tail is not its last thread");
        }
        Ok(count)
    }
}

/// The threads of a [`ThreadQueue`], in order.
pub struct QueueIter<'a> {
    tcbs: &'a TcbTable,
    chain: Chain,
    at: Option<ObjId>,
    left: usize,
}

impl Iterator for QueueIter<'_> {
    type Item = ObjId;
    fn next(&mut self) -> Option<ObjId> {
        let id = self.at?;
        // A bound on the walk, in case of a (bug) cycle.
        self.left = self.left.checked_sub(1)?;
        self.at = self.tcbs.get(id).and_then(|t| t.links_ref(self.chain).next);
        Some(id)
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
    /// The number of slots.
    pub const COUNT: usize = 1 << RADIX;
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
    /// The name of its own slots in [`SlotRef`]s (its id with [`TCB_TABLE`]).
    pub ctable: ObjId,
    /// Its own slots (seL4's TCB CNode, see [`tcb_slot`]).
    pub slots: [Slot; tcb_slot::COUNT],
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
    /// Its place in the queue of the endpoint or notification it waits on.
    pub ipc_links: QueueLinks,
    /// Its place in its priority's ready queue (while `queued`).
    pub ready_links: QueueLinks,
    /// The next object waiting to be destroyed after this one (while this
    /// TCB is being destroyed; see `Kernel::delete_slot`).
    pub doomed_next: Option<Doomed>,
    /// What the fastpaths need of the thread's CSpace and VSpace roots,
    /// cached by the general path; valid while `fast_generation` equals
    /// the kernel's `cap_generation`.
    pub fast: FastInfo,
    /// The generation `fast` was computed at (0: never, or the thread
    /// cannot use the fastpaths).
    pub fast_generation: u64,
}

/// A thread's CSpace root, when it is one CNode resolving all 64 bits of a
/// CPtr (or else only that it is a CNode), its VSpace, when it can run, its
/// last endpoint lookup (by a fastpath or the general path) and the slots
/// its last batched map named: the fastpaths' view, cached in the TCB while
/// the kernel's `cap_generation` stays the same (it moves when an endpoint
/// or CNode cap is deleted or moved, a TCB's CSpace or VSpace root changes,
/// or an ASID is assigned or deleted: so a cached CPtr still names the slot
/// it named, and that slot's CNode lives).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastInfo {
    /// The root CNode.
    pub cnode: ObjId,
    /// The CPtr bits that index it (its radix, as a mask).
    pub index_mask: u64,
    /// What the CPtr bits above them must be (the guard, in place).
    pub guard_bits: u64,
    /// The address space.
    pub space: AddressSpace,
    /// The endpoint cap the thread last named in a fastpath, looked up
    /// (none while `endpoint_rights` has no rights: a fastpath then leaves
    /// the call to the general path).
    pub endpoint_cptr: u64,
    /// That cap's endpoint.
    pub endpoint: ObjId,
    /// That cap's badge.
    pub endpoint_badge: u64,
    /// That cap's rights.
    pub endpoint_rights: abi::CapRights,
    /// The slot of the object cap the thread last invoked through
    /// `fast_invoke_map_frames` (its CPtr and slot; the cap is read again).
    pub object: Option<(u64, SlotRef)>,
    /// The run of frame slots its last batched map found (see
    /// `Kernel::vspace_map_frames`).
    pub frames: super::invoke::FrameRun,
    /// The CSpace root is one CNode resolving all 64 bits, so `cnode`,
    /// `index_mask` and `guard_bits` look CPtrs up directly; otherwise only
    /// the endpoint lookup (filled by the general path) serves.
    pub direct: bool,
}

impl FastInfo {
    /// The placeholder of a thread that has none.
    pub const NONE: FastInfo = FastInfo {
        cnode: 0,
        index_mask: 0,
        guard_bits: u64::MAX,
        space: AddressSpace { root: 0, asid: 0 },
        endpoint_cptr: 0,
        endpoint: 0,
        endpoint_badge: 0,
        endpoint_rights: abi::CapRights::NONE,
        object: None,
        frames: super::invoke::FrameRun::NONE,
        direct: false,
    };
}

/// An address space the MMU can run: the root table and its ASID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressSpace {
    /// Physical address of the level-0 table.
    pub root: u64,
    /// The ASID the kernel assigned it.
    pub asid: u16,
}

impl Tcb {
    /// A new, inactive thread, with id `id` in the kernel's table.
    pub fn new(paddr: u64, id: ObjId) -> Tcb {
        Tcb {
            slots: [Slot::default(); tcb_slot::COUNT],
            context: Context::new(0, 0),
            paddr,
            state: ThreadState::Inactive,
            priority: 0,
            mcp: 0,
            ctable: id | TCB_TABLE,
            fault_ep: 0,
            ipc_buffer: 0,
            bound_ntfn: None,
            fault: None,
            queued: false,
            name: [0; 16],
            fast: FastInfo::NONE,
            fast_generation: 0,
            ipc_links: QueueLinks {
                prev: None,
                next: None,
            },
            ready_links: QueueLinks {
                prev: None,
                next: None,
            },
            doomed_next: None,
        }
    }

    /// The links of one of its queues.
    #[inline(always)]
    pub fn links(&mut self, chain: Chain) -> &mut QueueLinks {
        match chain {
            Chain::Ipc => &mut self.ipc_links,
            Chain::Ready => &mut self.ready_links,
        }
    }

    /// The links of one of its queues, to read.
    #[inline(always)]
    pub fn links_ref(&self, chain: Chain) -> &QueueLinks {
        match chain {
            Chain::Ipc => &self.ipc_links,
            Chain::Ready => &self.ready_links,
        }
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
    pub queue: ThreadQueue,
}

impl Endpoint {
    /// An endpoint nobody waits on.
    pub const fn new(paddr: u64) -> Endpoint {
        Endpoint {
            paddr,
            state: EndpointState::Idle,
            queue: ThreadQueue {
                head: None,
                tail: None,
            },
        }
    }
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
    pub waiting: ThreadQueue,
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
#[derive(Clone, Copy, Debug, Eq)]
#[repr(C, align(8))]
pub struct SlotRef {
    /// The CNode; with [`TCB_TABLE`] set, the thread whose own slots
    /// ([`tcb_slot`], kept in its TCB) these are.
    pub cnode: ObjId,
    /// The index.
    pub index: u32,
}

/// The bit of [`SlotRef::cnode`] that names a TCB's own slots.
pub const TCB_TABLE: ObjId = 1 << 31;

impl PartialEq for SlotRef {
    /// Field by field, as one 64-bit comparison (the fastpaths compare
    /// slot references).
    #[inline(always)]
    fn eq(&self, other: &SlotRef) -> bool {
        self.key() == other.key()
    }
}

impl core::hash::Hash for SlotRef {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl SlotRef {
    /// Both fields in one word (as they lie in memory).
    #[inline(always)]
    const fn key(self) -> u64 {
        (self.index as u64) << 32 | self.cnode as u64
    }

    /// Slot `index` of a thread's own slots.
    pub const fn tcb(tcb: ObjId, index: u32) -> SlotRef {
        SlotRef {
            cnode: tcb | TCB_TABLE,
            index,
        }
    }
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
    /// The next object waiting to be destroyed after this one (while this
    /// CNode is being destroyed; see `Kernel::delete_slot`).
    pub doomed_next: Option<Doomed>,
}

impl CNode {
    /// An empty CNode (allocates its slots infallibly: for boot).
    pub fn new(paddr: u64, radix: u8) -> CNode {
        CNode {
            paddr,
            radix,
            slots: alloc::vec![Slot::default(); 1usize << radix],
            doomed_next: None,
        }
    }

    /// The empty slots of a CNode of `2^radix` slots, or `Err` when the
    /// kernel heap cannot hold them.
    pub fn try_slots(radix: u8) -> Result<Vec<Slot>, TryReserveError> {
        let n = 1usize << radix;
        let mut slots = Vec::new();
        slots.try_reserve_exact(n)?;
        slots.resize(n, Slot::default());
        Ok(slots)
    }

    /// A CNode of `slots` (from [`CNode::try_slots`]).
    pub fn with_slots(paddr: u64, radix: u8, slots: Vec<Slot>) -> CNode {
        CNode {
            paddr,
            radix,
            slots,
            doomed_next: None,
        }
    }
}

/// An object whose last cap was deleted and that still has to be destroyed
/// (a stack of them is linked through the objects, so deleting never allocates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Doomed {
    /// A CNode.
    CNode(ObjId),
    /// A thread.
    Tcb(ObjId),
}
