//! Object invocations: labels, typed arguments, and the one decoder both kernels use.
//!
//! A kernel object is invoked by a `Call` (or `Send`) on a capability to it;
//! the message label selects the operation, the message registers carry the
//! arguments in seL4's order, and the extra capabilities (CPtrs in the IPC
//! buffer's `caps_or_badges`) carry capability arguments. The kernel replies
//! with label 0 and any results in the MRs, or with an error code
//! (see [`crate::error`]).
//!
//! [`Invocation::decode`] turns a label and MRs into a typed [`Invocation`],
//! failing with seL4's errors: an unknown label is IllegalOperation; fewer
//! MRs or extra caps than the operation needs is TruncatedMessage. Both the
//! aarch64 kernel and the simulator decode with it, so both reject the same
//! malformed invocations in the same way. [`Invocation::encode`] is its
//! inverse, used by the runtime's typed wrappers.

use crate::Word;
use crate::error::ErrorReply;

/// Invocation labels, in seL4's order (non-MCS, AArch64); extensions start at 0x100.
#[allow(missing_docs)] // each label is documented on its `Invocation` variant
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Label {
    UntypedRetype = 1,
    TcbReadRegisters = 2,
    TcbWriteRegisters = 3,
    TcbConfigure = 5,
    TcbSetPriority = 6,
    TcbSetIpcBuffer = 9,
    TcbSetSpace = 10,
    TcbSuspend = 11,
    TcbResume = 12,
    TcbBindNotification = 13,
    TcbUnbindNotification = 14,
    CNodeRevoke = 16,
    CNodeDelete = 17,
    CNodeCancelBadgedSends = 18,
    CNodeCopy = 19,
    CNodeMint = 20,
    CNodeMove = 21,
    CNodeMutate = 22,
    CNodeSaveCaller = 24,
    IrqIssueIrqHandler = 25,
    IrqAckIrq = 26,
    IrqSetIrqHandler = 27,
    IrqClearIrqHandler = 28,
    PageTableMap = 34,
    PageTableUnmap = 35,
    PageMap = 36,
    PageUnmap = 37,
    PageGetAddress = 42,
    AsidPoolAssign = 44,
    VSpaceMapFrames = 0x100,
    VSpaceUnmapFrames = 0x101,
    CNodeCopyRun = 0x102,
    VSpaceMapFrame = 0x103,
}

impl Label {
    /// The label for a word, `None` when unknown.
    pub const fn from_word(word: Word) -> Option<Label> {
        use Label::*;
        Some(match word {
            1 => UntypedRetype,
            2 => TcbReadRegisters,
            3 => TcbWriteRegisters,
            5 => TcbConfigure,
            6 => TcbSetPriority,
            9 => TcbSetIpcBuffer,
            10 => TcbSetSpace,
            11 => TcbSuspend,
            12 => TcbResume,
            13 => TcbBindNotification,
            14 => TcbUnbindNotification,
            16 => CNodeRevoke,
            17 => CNodeDelete,
            18 => CNodeCancelBadgedSends,
            19 => CNodeCopy,
            20 => CNodeMint,
            21 => CNodeMove,
            22 => CNodeMutate,
            24 => CNodeSaveCaller,
            25 => IrqIssueIrqHandler,
            26 => IrqAckIrq,
            27 => IrqSetIrqHandler,
            28 => IrqClearIrqHandler,
            34 => PageTableMap,
            35 => PageTableUnmap,
            36 => PageMap,
            37 => PageUnmap,
            42 => PageGetAddress,
            44 => AsidPoolAssign,
            0x100 => VSpaceMapFrames,
            0x101 => VSpaceUnmapFrames,
            0x102 => CNodeCopyRun,
            0x103 => VSpaceMapFrame,
            _ => return None,
        })
    }

    /// The label word.
    pub const fn word(self) -> Word {
        self as Word
    }
}

/// The kind of capability an invocation is addressed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// An Untyped.
    Untyped,
    /// A TCB.
    Tcb,
    /// A CNode.
    CNode,
    /// The IRQ control capability.
    IrqControl,
    /// An IRQ handler.
    IrqHandler,
    /// A page table.
    PageTable,
    /// A frame.
    Frame,
    /// An ASID pool.
    AsidPool,
    /// A VSpace (top-level table).
    VSpace,
}

/// Registers of a thread's user context, in the order `TCB_ReadRegisters` and
/// `TCB_WriteRegisters` carry them: `pc`, `sp`, `spsr`, `x0`..=`x30`, `tpidr_el0`.
pub const USER_CONTEXT_WORDS: usize = 35;
/// Index of `pc` in the user context.
pub const CONTEXT_PC: usize = 0;
/// Index of `sp` in the user context.
pub const CONTEXT_SP: usize = 1;
/// Index of `spsr` in the user context (only NZCV may be set from user level).
pub const CONTEXT_SPSR: usize = 2;
/// Index of `x0` in the user context; `xN` is at `CONTEXT_X0 + N`.
pub const CONTEXT_X0: usize = 3;
/// Index of `tpidr_el0` in the user context.
pub const CONTEXT_TPIDR: usize = 34;

/// A decoded invocation. Capability arguments are named "(extra cap *n*)";
/// the kernel resolves them from the IPC buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// `Untyped_Retype(type, size_bits, root (extra cap 0), node_index,
    /// node_depth, node_offset, num_objects)`: create `num_objects` objects
    /// and place their caps in consecutive empty slots from `node_offset` of
    /// the CNode found at (`node_index`, `node_depth`) from `root`.
    /// Errors: InvalidArgument (unknown type: 0; bad size: 1; a type other
    /// than a frame or an Untyped from a device Untyped: 1, as seL4),
    /// RangeError (num_objects outside 1..=256, or past the CNode's end),
    /// FailedLookup, DeleteFirst (a destination slot is occupied),
    /// NotEnoughMemory.
    UntypedRetype {
        /// [`crate::object::ObjectType`] number.
        object_type: Word,
        /// Size argument for Untyped and CNode objects.
        size_bits: Word,
        /// Index of the destination CNode from the root.
        node_index: Word,
        /// Depth of that index (0: the root itself).
        node_depth: Word,
        /// First destination slot.
        node_offset: Word,
        /// How many objects.
        num_objects: Word,
    },
    /// `TCB_ReadRegisters(suspend_source, arch_flags, count)`: the reply
    /// carries the first `count` user-context words.
    TcbReadRegisters {
        /// Suspend the thread first.
        suspend_source: bool,
        /// Architecture flags (none defined).
        arch_flags: Word,
        /// Words to read (1..=35).
        count: Word,
    },
    /// `TCB_WriteRegisters(resume_target, arch_flags, count, regs...)`: set the
    /// first `count` user-context words (from MR3 on), then resume if asked.
    TcbWriteRegisters {
        /// Resume the thread afterwards.
        resume_target: bool,
        /// Architecture flags (none defined).
        arch_flags: Word,
        /// Words to write (1..=35); they follow in MR3...
        count: Word,
    },
    /// `TCB_Configure(fault_ep, cspace_root (extra 0), cspace_root_data,
    /// vspace_root (extra 1), vspace_root_data, buffer, buffer_frame (extra 2))`.
    /// `fault_ep` is a CPtr resolved in the *new* CSpace when the fault occurs.
    TcbConfigure {
        /// CPtr of the fault endpoint, in the thread's CSpace.
        fault_ep: Word,
        /// Guard data for the CSpace root (0: leave the cap's guard).
        cspace_root_data: Word,
        /// Unused on AArch64 (seL4 compatibility).
        vspace_root_data: Word,
        /// Virtual address of the IPC buffer (1 KiB aligned, inside the frame).
        buffer: Word,
    },
    /// `TCB_SetPriority(authority (extra 0), priority)`: priority 0..=255, not
    /// above the authority TCB's maximum controlled priority.
    TcbSetPriority {
        /// The new priority.
        priority: Word,
    },
    /// `TCB_SetIPCBuffer(buffer, buffer_frame (extra 0))`.
    TcbSetIpcBuffer {
        /// Virtual address of the buffer.
        buffer: Word,
    },
    /// `TCB_SetSpace(fault_ep, cspace_root (extra 0), cspace_root_data,
    /// vspace_root (extra 1), vspace_root_data)`.
    TcbSetSpace {
        /// CPtr of the fault endpoint.
        fault_ep: Word,
        /// Guard data for the CSpace root.
        cspace_root_data: Word,
        /// Unused on AArch64.
        vspace_root_data: Word,
    },
    /// `TCB_Suspend()`: stop the thread; a pending IPC is cancelled.
    TcbSuspend,
    /// `TCB_Resume()`: make a suspended thread runnable.
    TcbResume,
    /// `TCB_BindNotification(notification (extra 0))`: signals to it wake
    /// the thread from a Recv on any endpoint.
    TcbBindNotification,
    /// `TCB_UnbindNotification()`.
    TcbUnbindNotification,
    /// `CNode_Revoke(index, depth)`: delete every cap derived from the one at the slot.
    CNodeRevoke {
        /// Slot index.
        index: Word,
        /// Depth.
        depth: Word,
    },
    /// `CNode_Delete(index, depth)`: empty the slot (destroying the object
    /// with its last cap).
    CNodeDelete {
        /// Slot index.
        index: Word,
        /// Depth.
        depth: Word,
    },
    /// `CNode_CancelBadgedSends(index, depth)`: abort sends through caps with
    /// that cap's badge.
    CNodeCancelBadgedSends {
        /// Slot index.
        index: Word,
        /// Depth.
        depth: Word,
    },
    /// `CNode_Copy(dest_index, dest_depth, src_root (extra 0), src_index,
    /// src_depth, rights)`: a derived cap with rights masked. Errors are
    /// checked destination first: an occupied destination is DeleteFirst even
    /// when the source is empty.
    CNodeCopy {
        /// Destination slot.
        dest_index: Word,
        /// Its depth.
        dest_depth: Word,
        /// Source slot (from the extra cap's CNode).
        src_index: Word,
        /// Its depth.
        src_depth: Word,
        /// Rights mask.
        rights: Word,
    },
    /// `CNode_Mint(dest_index, dest_depth, src_root (extra 0), src_index,
    /// src_depth, rights, badge)`: as Copy, setting a badge on an unbadged
    /// endpoint or notification cap (or a guard on a CNode cap).
    CNodeMint {
        /// Destination slot.
        dest_index: Word,
        /// Its depth.
        dest_depth: Word,
        /// Source slot.
        src_index: Word,
        /// Its depth.
        src_depth: Word,
        /// Rights mask.
        rights: Word,
        /// Badge (or CNode guard data).
        badge: Word,
    },
    /// `CNode_Move(dest_index, dest_depth, src_root (extra 0), src_index, src_depth)`.
    CNodeMove {
        /// Destination slot.
        dest_index: Word,
        /// Its depth.
        dest_depth: Word,
        /// Source slot.
        src_index: Word,
        /// Its depth.
        src_depth: Word,
    },
    /// `CNode_Mutate(dest_index, dest_depth, src_root (extra 0), src_index,
    /// src_depth, badge)`: move, setting the badge/guard.
    CNodeMutate {
        /// Destination slot.
        dest_index: Word,
        /// Its depth.
        dest_depth: Word,
        /// Source slot.
        src_index: Word,
        /// Its depth.
        src_depth: Word,
        /// Badge (or CNode guard data).
        badge: Word,
    },
    /// `CNode_SaveCaller(index, depth)`: move the thread's reply capability
    /// into an empty slot, to reply later.
    CNodeSaveCaller {
        /// Slot index.
        index: Word,
        /// Depth.
        depth: Word,
    },
    /// `IRQControl_Get(irq, root (extra 0), index, depth)`: an IRQ handler cap
    /// for `irq` in an empty slot.
    IrqIssueIrqHandler {
        /// Interrupt number.
        irq: Word,
        /// Destination slot.
        index: Word,
        /// Its depth.
        depth: Word,
    },
    /// `IRQHandler_Ack()`: unmask the interrupt after handling it.
    IrqAckIrq,
    /// `IRQHandler_SetNotification(notification (extra 0))`.
    IrqSetIrqHandler,
    /// `IRQHandler_Clear()`.
    IrqClearIrqHandler,
    /// `ARM_PageTable_Map(vspace (extra 0), vaddr, attr)`: install the table
    /// at the level that translates `vaddr` and lacks one. Errors:
    /// DeleteFirst (a table is already there), FailedLookup (a level above is
    /// missing), InvalidArgument (vaddr outside user space: 0).
    PageTableMap {
        /// A virtual address the table will translate.
        vaddr: Word,
        /// Attributes (ignored).
        attr: Word,
    },
    /// `ARM_PageTable_Unmap()`.
    PageTableUnmap,
    /// `ARM_Page_Map(vspace (extra 0), vaddr, rights, attr)`: map the frame
    /// at `vaddr` (aligned to the frame's size). Errors: AlignmentError,
    /// InvalidArgument (outside user space: 0), FailedLookup (a table on the
    /// way is missing), DeleteFirst (something is mapped there),
    /// InvalidCapability 1 (the frame cap is mapped in another VSpace),
    /// InvalidArgument 0 (it is mapped at another address in this one: a
    /// frame cap maps at one place; copy the cap for a second mapping),
    /// InvalidArgument 1 (the rights, masked by the cap's, lack Read).
    /// Mapping again at the same address with the same cap changes its rights.
    PageMap {
        /// Virtual address.
        vaddr: Word,
        /// [`crate::CapRights`] word (Read/Write).
        rights: Word,
        /// [`crate::vm`] attributes.
        attr: Word,
    },
    /// `ARM_Page_Unmap()`: remove the frame's mapping (no error if unmapped).
    PageUnmap,
    /// `ARM_Page_GetAddress()`: the reply's MR0 is the frame's physical address.
    PageGetAddress,
    /// `ARM_ASIDPool_Assign(vspace (extra 0))`: give the VSpace an ASID.
    AsidPoolAssign,
    /// **Extension** `VSpace_MapFrames(first_frame, count, vaddr, rights, attr)`,
    /// invoked on a VSpace: map the frames whose caps are in `count`
    /// consecutive CPtrs from `first_frame` at consecutive addresses from
    /// `vaddr`. All frames must be of one size. Either every frame is mapped
    /// or, on any error, none is: the reply's MR0 is then the index of the
    /// frame at fault, `Word::MAX` when the error concerns no single frame
    /// (count out of range, a VSpace without ASID), and the error's usual
    /// details follow in MR1... A frame's errors are those of `PageMap` for it
    /// (capability 0 being the frame), with a frame mapped anywhere but at its
    /// place in the run InvalidCapability 0 and frames of unequal sizes
    /// InvalidArgument 0.
    VSpaceMapFrames {
        /// CPtr of the first frame cap.
        first_frame: Word,
        /// How many frames (1..=1024).
        count: Word,
        /// Virtual address of the first.
        vaddr: Word,
        /// Rights word.
        rights: Word,
        /// Attributes.
        attr: Word,
    },
    /// **Extension** `VSpace_MapFrame(frame, vaddr, rights, attr)`, invoked
    /// on a VSpace: `VSpace_MapFrames` of the one frame at `frame`, its four
    /// arguments in the message registers (no IPC buffer): a demand
    /// fault's mapping. The same checks in the same order, the same result
    /// and the same errors, reported the same way (MR0 the batch index 0).
    VSpaceMapFrame {
        /// CPtr of the frame cap.
        frame: Word,
        /// Virtual address.
        vaddr: Word,
        /// Rights word.
        rights: Word,
        /// Attributes.
        attr: Word,
    },
    /// **Extension** `CNode_CopyRun(dest_index, dest_depth, src_root (extra
    /// 0), src_index, src_depth, count, rights)`, invoked on a CNode: copy the
    /// caps at `count` consecutive source CPtrs `src_index + i` (each found
    /// from `src_root` at `src_depth`, as `CNode_Copy` finds its source) into
    /// `count` consecutive empty slots, the first found at (`dest_index`,
    /// `dest_depth`) from the invoked CNode and the others following it in
    /// the same CNode, each with `rights` masked: `count` `CNode_Copy`s in
    /// one invocation. Either every cap is copied or, on any error, none is:
    /// the reply's MR0 is then the index `i` of the pair at fault, or
    /// `Word::MAX` when the error concerns the run as a whole, and the
    /// error's usual details follow in MR1... (as `VSpace_MapFrames`
    /// reports). Whole-run errors, in this order: RangeError 1..=1024
    /// (`count`), the destination's lookup failure (FailedLookup, source
    /// false; RangeError 1..=64 for a bad depth), RangeError 1..=room (the
    /// run passes the end of the destination CNode: `room` slots are left).
    /// Then per pair, in `CNode_Copy`'s order: DeleteFirst (the destination
    /// slot is occupied), the source's lookup failure (FailedLookup, source
    /// true), FailedLookup MissingCapability (the source is empty),
    /// RevokeFirst (an Untyped with children), IllegalOperation (a cap that
    /// cannot be copied).
    CNodeCopyRun {
        /// Index of the first destination slot.
        dest_index: Word,
        /// Its depth.
        dest_depth: Word,
        /// Index of the first source slot (from the extra cap's CNode).
        src_index: Word,
        /// Its depth.
        src_depth: Word,
        /// How many caps (1..=[`MAX_COPY_RUN`]).
        count: Word,
        /// Rights mask.
        rights: Word,
    },
    /// **Extension** `VSpace_UnmapFrames(first_frame, count)`: unmap the
    /// frames whose caps are in `count` consecutive CPtrs; unmapped ones are
    /// skipped. Errors only on an invalid cap, changing nothing.
    VSpaceUnmapFrames {
        /// CPtr of the first frame cap.
        first_frame: Word,
        /// How many frames (1..=1024).
        count: Word,
    },
}

/// The most frames one batched map or unmap covers.
pub const MAX_BATCH_FRAMES: Word = 1024;
/// The most caps one `CNode_CopyRun` copies.
pub const MAX_COPY_RUN: Word = 1024;

impl Invocation {
    /// Decodes an invocation from its label, message registers (`mrs` holds
    /// exactly the message's `length` words) and number of extra caps.
    pub fn decode(label: Word, mrs: &[Word], extra_caps: usize) -> Result<Invocation, ErrorReply> {
        let label = Label::from_word(label).ok_or(ErrorReply::IllegalOperation)?;
        let (needed_mrs, needed_caps) = label_arity(label);
        if mrs.len() < needed_mrs || extra_caps < needed_caps {
            return Err(ErrorReply::TruncatedMessage);
        }
        let m = |i: usize| mrs[i];
        use Invocation as I;
        Ok(match label {
            Label::UntypedRetype => I::UntypedRetype {
                object_type: m(0),
                size_bits: m(1),
                node_index: m(2),
                node_depth: m(3),
                node_offset: m(4),
                num_objects: m(5),
            },
            Label::TcbReadRegisters => I::TcbReadRegisters {
                suspend_source: m(0) != 0,
                arch_flags: m(1),
                count: m(2),
            },
            Label::TcbWriteRegisters => {
                let count = m(2);
                let available = (mrs.len() - 3) as Word;
                if count > available {
                    return Err(ErrorReply::TruncatedMessage);
                }
                I::TcbWriteRegisters {
                    resume_target: m(0) != 0,
                    arch_flags: m(1),
                    count,
                }
            }
            Label::TcbConfigure => I::TcbConfigure {
                fault_ep: m(0),
                cspace_root_data: m(1),
                vspace_root_data: m(2),
                buffer: m(3),
            },
            Label::TcbSetPriority => I::TcbSetPriority { priority: m(0) },
            Label::TcbSetIpcBuffer => I::TcbSetIpcBuffer { buffer: m(0) },
            Label::TcbSetSpace => I::TcbSetSpace {
                fault_ep: m(0),
                cspace_root_data: m(1),
                vspace_root_data: m(2),
            },
            Label::TcbSuspend => I::TcbSuspend,
            Label::TcbResume => I::TcbResume,
            Label::TcbBindNotification => I::TcbBindNotification,
            Label::TcbUnbindNotification => I::TcbUnbindNotification,
            Label::CNodeRevoke => I::CNodeRevoke {
                index: m(0),
                depth: m(1),
            },
            Label::CNodeDelete => I::CNodeDelete {
                index: m(0),
                depth: m(1),
            },
            Label::CNodeCancelBadgedSends => I::CNodeCancelBadgedSends {
                index: m(0),
                depth: m(1),
            },
            Label::CNodeCopy => I::CNodeCopy {
                dest_index: m(0),
                dest_depth: m(1),
                src_index: m(2),
                src_depth: m(3),
                rights: m(4),
            },
            Label::CNodeMint => I::CNodeMint {
                dest_index: m(0),
                dest_depth: m(1),
                src_index: m(2),
                src_depth: m(3),
                rights: m(4),
                badge: m(5),
            },
            Label::CNodeMove => I::CNodeMove {
                dest_index: m(0),
                dest_depth: m(1),
                src_index: m(2),
                src_depth: m(3),
            },
            Label::CNodeMutate => I::CNodeMutate {
                dest_index: m(0),
                dest_depth: m(1),
                src_index: m(2),
                src_depth: m(3),
                badge: m(4),
            },
            Label::CNodeSaveCaller => I::CNodeSaveCaller {
                index: m(0),
                depth: m(1),
            },
            Label::IrqIssueIrqHandler => I::IrqIssueIrqHandler {
                irq: m(0),
                index: m(1),
                depth: m(2),
            },
            Label::IrqAckIrq => I::IrqAckIrq,
            Label::IrqSetIrqHandler => I::IrqSetIrqHandler,
            Label::IrqClearIrqHandler => I::IrqClearIrqHandler,
            Label::PageTableMap => I::PageTableMap {
                vaddr: m(0),
                attr: m(1),
            },
            Label::PageTableUnmap => I::PageTableUnmap,
            Label::PageMap => I::PageMap {
                vaddr: m(0),
                rights: m(1),
                attr: m(2),
            },
            Label::PageUnmap => I::PageUnmap,
            Label::PageGetAddress => I::PageGetAddress,
            Label::AsidPoolAssign => I::AsidPoolAssign,
            Label::VSpaceMapFrames => I::VSpaceMapFrames {
                first_frame: m(0),
                count: m(1),
                vaddr: m(2),
                rights: m(3),
                attr: m(4),
            },
            Label::VSpaceUnmapFrames => I::VSpaceUnmapFrames {
                first_frame: m(0),
                count: m(1),
            },
            Label::VSpaceMapFrame => I::VSpaceMapFrame {
                frame: m(0),
                vaddr: m(1),
                rights: m(2),
                attr: m(3),
            },
            Label::CNodeCopyRun => I::CNodeCopyRun {
                dest_index: m(0),
                dest_depth: m(1),
                src_index: m(2),
                src_depth: m(3),
                count: m(4),
                rights: m(5),
            },
        })
    }

    /// The label of this invocation.
    pub const fn label(&self) -> Label {
        use Invocation as I;
        match self {
            I::UntypedRetype { .. } => Label::UntypedRetype,
            I::TcbReadRegisters { .. } => Label::TcbReadRegisters,
            I::TcbWriteRegisters { .. } => Label::TcbWriteRegisters,
            I::TcbConfigure { .. } => Label::TcbConfigure,
            I::TcbSetPriority { .. } => Label::TcbSetPriority,
            I::TcbSetIpcBuffer { .. } => Label::TcbSetIpcBuffer,
            I::TcbSetSpace { .. } => Label::TcbSetSpace,
            I::TcbSuspend => Label::TcbSuspend,
            I::TcbResume => Label::TcbResume,
            I::TcbBindNotification => Label::TcbBindNotification,
            I::TcbUnbindNotification => Label::TcbUnbindNotification,
            I::CNodeRevoke { .. } => Label::CNodeRevoke,
            I::CNodeDelete { .. } => Label::CNodeDelete,
            I::CNodeCancelBadgedSends { .. } => Label::CNodeCancelBadgedSends,
            I::CNodeCopy { .. } => Label::CNodeCopy,
            I::CNodeMint { .. } => Label::CNodeMint,
            I::CNodeMove { .. } => Label::CNodeMove,
            I::CNodeMutate { .. } => Label::CNodeMutate,
            I::CNodeSaveCaller { .. } => Label::CNodeSaveCaller,
            I::IrqIssueIrqHandler { .. } => Label::IrqIssueIrqHandler,
            I::IrqAckIrq => Label::IrqAckIrq,
            I::IrqSetIrqHandler => Label::IrqSetIrqHandler,
            I::IrqClearIrqHandler => Label::IrqClearIrqHandler,
            I::PageTableMap { .. } => Label::PageTableMap,
            I::PageTableUnmap => Label::PageTableUnmap,
            I::PageMap { .. } => Label::PageMap,
            I::PageUnmap => Label::PageUnmap,
            I::PageGetAddress => Label::PageGetAddress,
            I::AsidPoolAssign => Label::AsidPoolAssign,
            I::VSpaceMapFrames { .. } => Label::VSpaceMapFrames,
            I::VSpaceUnmapFrames { .. } => Label::VSpaceUnmapFrames,
            I::CNodeCopyRun { .. } => Label::CNodeCopyRun,
            I::VSpaceMapFrame { .. } => Label::VSpaceMapFrame,
        }
    }

    /// The kind of capability this invocation must be made on; any other
    /// kind answers IllegalOperation.
    pub const fn target(&self) -> Target {
        use Label as L;
        match self.label() {
            L::UntypedRetype => Target::Untyped,
            L::TcbReadRegisters
            | L::TcbWriteRegisters
            | L::TcbConfigure
            | L::TcbSetPriority
            | L::TcbSetIpcBuffer
            | L::TcbSetSpace
            | L::TcbSuspend
            | L::TcbResume
            | L::TcbBindNotification
            | L::TcbUnbindNotification => Target::Tcb,
            L::CNodeRevoke
            | L::CNodeDelete
            | L::CNodeCancelBadgedSends
            | L::CNodeCopy
            | L::CNodeMint
            | L::CNodeMove
            | L::CNodeMutate
            | L::CNodeSaveCaller
            | L::CNodeCopyRun => Target::CNode,
            L::IrqIssueIrqHandler => Target::IrqControl,
            L::IrqAckIrq | L::IrqSetIrqHandler | L::IrqClearIrqHandler => Target::IrqHandler,
            L::PageTableMap | L::PageTableUnmap => Target::PageTable,
            L::PageMap | L::PageUnmap | L::PageGetAddress => Target::Frame,
            L::AsidPoolAssign => Target::AsidPool,
            L::VSpaceMapFrames | L::VSpaceUnmapFrames | L::VSpaceMapFrame => Target::VSpace,
        }
    }

    /// Encodes the invocation's fixed arguments: the label, the MRs (written
    /// into `mrs`, which must hold at least 6 words) and their count, and the
    /// number of extra caps the caller must supply. `TcbWriteRegisters`'
    /// register values follow the three fixed words and are the caller's to add.
    pub fn encode(&self, mrs: &mut [Word]) -> (Label, usize, usize) {
        use Invocation as I;
        let label = self.label();
        let words: &[Word] = &match *self {
            I::UntypedRetype {
                object_type,
                size_bits,
                node_index,
                node_depth,
                node_offset,
                num_objects,
            } => [
                object_type,
                size_bits,
                node_index,
                node_depth,
                node_offset,
                num_objects,
            ],
            I::TcbReadRegisters {
                suspend_source,
                arch_flags,
                count,
            } => [suspend_source as Word, arch_flags, count, 0, 0, 0],
            I::TcbWriteRegisters {
                resume_target,
                arch_flags,
                count,
            } => [resume_target as Word, arch_flags, count, 0, 0, 0],
            I::TcbConfigure {
                fault_ep,
                cspace_root_data,
                vspace_root_data,
                buffer,
            } => [fault_ep, cspace_root_data, vspace_root_data, buffer, 0, 0],
            I::TcbSetPriority { priority } => [priority, 0, 0, 0, 0, 0],
            I::TcbSetIpcBuffer { buffer } => [buffer, 0, 0, 0, 0, 0],
            I::TcbSetSpace {
                fault_ep,
                cspace_root_data,
                vspace_root_data,
            } => [fault_ep, cspace_root_data, vspace_root_data, 0, 0, 0],
            I::CNodeRevoke { index, depth }
            | I::CNodeDelete { index, depth }
            | I::CNodeCancelBadgedSends { index, depth }
            | I::CNodeSaveCaller { index, depth } => [index, depth, 0, 0, 0, 0],
            I::CNodeCopy {
                dest_index,
                dest_depth,
                src_index,
                src_depth,
                rights,
            } => [dest_index, dest_depth, src_index, src_depth, rights, 0],
            I::CNodeMint {
                dest_index,
                dest_depth,
                src_index,
                src_depth,
                rights,
                badge,
            } => [dest_index, dest_depth, src_index, src_depth, rights, badge],
            I::CNodeMove {
                dest_index,
                dest_depth,
                src_index,
                src_depth,
            } => [dest_index, dest_depth, src_index, src_depth, 0, 0],
            I::CNodeMutate {
                dest_index,
                dest_depth,
                src_index,
                src_depth,
                badge,
            } => [dest_index, dest_depth, src_index, src_depth, badge, 0],
            I::IrqIssueIrqHandler { irq, index, depth } => [irq, index, depth, 0, 0, 0],
            I::PageTableMap { vaddr, attr } => [vaddr, attr, 0, 0, 0, 0],
            I::PageMap {
                vaddr,
                rights,
                attr,
            } => [vaddr, rights, attr, 0, 0, 0],
            I::VSpaceMapFrames {
                first_frame,
                count,
                vaddr,
                rights,
                attr,
            } => [first_frame, count, vaddr, rights, attr, 0],
            I::VSpaceUnmapFrames { first_frame, count } => [first_frame, count, 0, 0, 0, 0],
            I::VSpaceMapFrame {
                frame,
                vaddr,
                rights,
                attr,
            } => [frame, vaddr, rights, attr, 0, 0],
            I::CNodeCopyRun {
                dest_index,
                dest_depth,
                src_index,
                src_depth,
                count,
                rights,
            } => [dest_index, dest_depth, src_index, src_depth, count, rights],
            I::TcbSuspend
            | I::TcbResume
            | I::TcbBindNotification
            | I::TcbUnbindNotification
            | I::IrqAckIrq
            | I::IrqSetIrqHandler
            | I::IrqClearIrqHandler
            | I::PageTableUnmap
            | I::PageUnmap
            | I::PageGetAddress
            | I::AsidPoolAssign => [0; 6],
        };
        let (n, caps) = label_arity(label);
        mrs[..n].copy_from_slice(&words[..n]);
        (label, n, caps)
    }
}

/// How many MRs and extra caps an operation needs at least.
const fn label_arity(label: Label) -> (usize, usize) {
    use Label as L;
    match label {
        L::UntypedRetype => (6, 1),
        L::TcbReadRegisters => (3, 0),
        L::TcbWriteRegisters => (3, 0),
        L::TcbConfigure => (4, 3),
        L::TcbSetPriority => (1, 1),
        L::TcbSetIpcBuffer => (1, 1),
        L::TcbSetSpace => (3, 2),
        L::TcbSuspend | L::TcbResume | L::TcbUnbindNotification => (0, 0),
        L::TcbBindNotification => (0, 1),
        L::CNodeRevoke | L::CNodeDelete | L::CNodeCancelBadgedSends | L::CNodeSaveCaller => (2, 0),
        L::CNodeCopy => (5, 1),
        L::CNodeMint => (6, 1),
        L::CNodeMove => (4, 1),
        L::CNodeMutate => (5, 1),
        L::IrqIssueIrqHandler => (3, 1),
        L::IrqAckIrq | L::IrqClearIrqHandler => (0, 0),
        L::IrqSetIrqHandler => (0, 1),
        L::PageTableMap => (2, 1),
        L::PageTableUnmap => (0, 0),
        L::PageMap => (3, 1),
        L::PageUnmap | L::PageGetAddress => (0, 0),
        L::AsidPoolAssign => (0, 1),
        L::VSpaceMapFrames => (5, 0),
        L::VSpaceUnmapFrames => (2, 0),
        L::CNodeCopyRun => (6, 1),
        L::VSpaceMapFrame => (4, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_labels() -> impl Iterator<Item = Label> {
        (0..0x200).filter_map(Label::from_word)
    }

    #[test]
    fn unknown_labels_are_illegal() {
        assert_eq!(
            Invocation::decode(0, &[], 0),
            Err(ErrorReply::IllegalOperation)
        );
        assert_eq!(
            Invocation::decode(999, &[0; 10], 3),
            Err(ErrorReply::IllegalOperation)
        );
    }

    #[test]
    fn short_messages_are_truncated() {
        for label in all_labels() {
            let (mrs, caps) = label_arity(label);
            if mrs > 0 {
                let short = [0; 8];
                assert_eq!(
                    Invocation::decode(label.word(), &short[..mrs - 1], caps),
                    Err(ErrorReply::TruncatedMessage),
                    "{label:?}"
                );
            }
            if caps > 0 {
                assert_eq!(
                    Invocation::decode(label.word(), &[0; 8][..mrs], caps - 1),
                    Err(ErrorReply::TruncatedMessage),
                    "{label:?}"
                );
            }
        }
    }

    #[test]
    fn encode_then_decode_is_identity() {
        for label in all_labels() {
            let (n, caps) = label_arity(label);
            let words: [Word; 8] = [11, 22, 33, 44, 55, 66, 77, 88];
            let mut mrs = [0; 8];
            mrs[..n].copy_from_slice(&words[..n]);
            if label == Label::TcbWriteRegisters {
                mrs[2] = 0; // count: no register words follow
            }
            if label == Label::TcbReadRegisters {
                mrs[0] = 1;
            }
            let inv = Invocation::decode(label.word(), &mrs[..n], caps).unwrap();
            assert_eq!(inv.label(), label);
            let mut out = [0; 8];
            let (l, m, c) = inv.encode(&mut out);
            assert_eq!((l, m, c), (label, n, caps));
            assert_eq!(Invocation::decode(l.word(), &out[..m], c), Ok(inv));
        }
    }

    #[test]
    fn write_registers_needs_its_registers() {
        let l = Label::TcbWriteRegisters.word();
        assert_eq!(
            Invocation::decode(l, &[1, 0, 2, 0x1000], 0),
            Err(ErrorReply::TruncatedMessage)
        );
        assert!(Invocation::decode(l, &[1, 0, 2, 0x1000, 0x2000], 0).is_ok());
    }
}
