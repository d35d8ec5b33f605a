//! Typed object invocations: each a Call on an object's capability, as libsel4 wraps them.
//!
//! Every function names the seL4 call it corresponds to and returns
//! `Result<_, ErrorReply>`: the kernel's error code with its details
//! (which argument, which range, which lookup failed). Arguments are
//! encoded by [`abi::invocation::Invocation::encode`], the inverse of the
//! decoder both kernels use.

use abi::invocation::{Invocation, USER_CONTEXT_WORDS};
use abi::ipc_buffer::CAPS_OFFSET;
use abi::object::ObjectType;
use abi::{Badge, CPtr, CapRights, ErrorReply, MessageInfo, Syscall, Word};

use crate::backend;

/// A thread's user context, in `TCB_ReadRegisters` order (pc, sp, spsr, x0..x30, tpidr_el0).
pub type UserContext = [Word; USER_CONTEXT_WORDS];

/// Invokes `cap` with `inv`, its extra caps and `more` argument words after
/// the fixed ones; the reply's words go to `out`. Returns how many words the
/// reply carried.
fn invoke(
    cap: CPtr,
    inv: Invocation,
    caps: &[CPtr],
    more: &[Word],
    out: &mut [Word],
) -> Result<usize, ErrorReply> {
    let mut words = [0; 8];
    let (label, n, ncaps) = inv.encode(&mut words);
    let len = (n + more.len()).min(abi::message::MAX_LENGTH);
    let mut mrs = [0; 4];
    backend::with_ipc_buffer(|b| {
        for i in 0..len {
            let w = if i < n { words[i] } else { more[i - n] };
            if i < 4 {
                mrs[i] = w;
            }
            b.msg[i] = w;
        }
        for (i, c) in caps.iter().take(ncaps).enumerate() {
            b.caps_or_badges[i] = c.0;
        }
    });
    let _ = CAPS_OFFSET;
    let info = MessageInfo::new(label.word(), 0, ncaps.min(caps.len()), len);
    let (_, x1) = backend::syscall(Syscall::Call, cap.0, info.word(), &mut mrs);
    let reply = MessageInfo::from_word(x1);
    let rlen = reply.length();
    let mut got = [0; 8];
    backend::with_ipc_buffer(|b| {
        for i in 0..rlen {
            let w = if i < 4 { mrs[i] } else { b.msg[i] };
            if i < out.len() {
                out[i] = w;
            }
            if i < got.len() {
                got[i] = w;
            }
        }
    });
    if reply.label() != 0 {
        return Err(ErrorReply::from_reply(reply.label(), &got[..rlen.min(8)])
            .unwrap_or(ErrorReply::IllegalOperation));
    }
    Ok(rlen)
}

fn invoke0(cap: CPtr, inv: Invocation, caps: &[CPtr]) -> Result<(), ErrorReply> {
    invoke(cap, inv, caps, &[], &mut []).map(|_| ())
}

// ----- Untyped -----

/// seL4_Untyped_Retype: creates `num_objects` objects of `object_type` (size
/// argument `size_bits` for Untyped and CNode objects) from `untyped`, their
/// caps in consecutive empty slots from `node_offset` of the CNode found at
/// (`node_index`, `node_depth`) from `root` (depth 0: `root` itself).
#[allow(clippy::too_many_arguments)]
pub fn untyped_retype(
    untyped: CPtr,
    object_type: ObjectType,
    size_bits: Word,
    root: CPtr,
    node_index: Word,
    node_depth: Word,
    node_offset: Word,
    num_objects: Word,
) -> Result<(), ErrorReply> {
    invoke0(
        untyped,
        Invocation::UntypedRetype {
            object_type: object_type.word(),
            size_bits,
            node_index,
            node_depth,
            node_offset,
            num_objects,
        },
        &[root],
    )
}

// ----- CNode -----

/// seL4_CNode_Copy: a copy of the cap at (`src_root`, `src_index`,
/// `src_depth`) with `rights` masked, into the empty (`dest_index`, `dest_depth`) of `cnode`.
#[allow(clippy::too_many_arguments)]
pub fn cnode_copy(
    cnode: CPtr,
    dest_index: Word,
    dest_depth: Word,
    src_root: CPtr,
    src_index: Word,
    src_depth: Word,
    rights: CapRights,
) -> Result<(), ErrorReply> {
    invoke0(
        cnode,
        Invocation::CNodeCopy {
            dest_index,
            dest_depth,
            src_index,
            src_depth,
            rights: rights.word(),
        },
        &[src_root],
    )
}

/// seL4_CNode_Mint: as [`cnode_copy`], setting a badge on an unbadged
/// endpoint or notification cap (or guard data on a CNode cap).
#[allow(clippy::too_many_arguments)]
pub fn cnode_mint(
    cnode: CPtr,
    dest_index: Word,
    dest_depth: Word,
    src_root: CPtr,
    src_index: Word,
    src_depth: Word,
    rights: CapRights,
    badge: Badge,
) -> Result<(), ErrorReply> {
    invoke0(
        cnode,
        Invocation::CNodeMint {
            dest_index,
            dest_depth,
            src_index,
            src_depth,
            rights: rights.word(),
            badge: badge.0,
        },
        &[src_root],
    )
}

/// seL4_CNode_Move: moves a cap to an empty slot.
pub fn cnode_move(
    cnode: CPtr,
    dest_index: Word,
    dest_depth: Word,
    src_root: CPtr,
    src_index: Word,
    src_depth: Word,
) -> Result<(), ErrorReply> {
    invoke0(
        cnode,
        Invocation::CNodeMove {
            dest_index,
            dest_depth,
            src_index,
            src_depth,
        },
        &[src_root],
    )
}

/// seL4_CNode_Mutate: moves a cap, changing its badge or guard data.
#[allow(clippy::too_many_arguments)]
pub fn cnode_mutate(
    cnode: CPtr,
    dest_index: Word,
    dest_depth: Word,
    src_root: CPtr,
    src_index: Word,
    src_depth: Word,
    badge: Badge,
) -> Result<(), ErrorReply> {
    invoke0(
        cnode,
        Invocation::CNodeMutate {
            dest_index,
            dest_depth,
            src_index,
            src_depth,
            badge: badge.0,
        },
        &[src_root],
    )
}

/// seL4_CNode_Delete: empties a slot (the last cap of an object destroys it).
pub fn cnode_delete(cnode: CPtr, index: Word, depth: Word) -> Result<(), ErrorReply> {
    invoke0(cnode, Invocation::CNodeDelete { index, depth }, &[])
}

/// seL4_CNode_Revoke: deletes every cap derived from the one in the slot.
pub fn cnode_revoke(cnode: CPtr, index: Word, depth: Word) -> Result<(), ErrorReply> {
    invoke0(cnode, Invocation::CNodeRevoke { index, depth }, &[])
}

/// seL4_CNode_SaveCaller: moves the thread's reply cap to an empty slot.
pub fn cnode_save_caller(cnode: CPtr, index: Word, depth: Word) -> Result<(), ErrorReply> {
    invoke0(cnode, Invocation::CNodeSaveCaller { index, depth }, &[])
}

/// seL4_CNode_CancelBadgedSends: aborts pending sends with the slot's badge.
pub fn cnode_cancel_badged_sends(cnode: CPtr, index: Word, depth: Word) -> Result<(), ErrorReply> {
    invoke0(
        cnode,
        Invocation::CNodeCancelBadgedSends { index, depth },
        &[],
    )
}

// ----- TCB -----

/// seL4_TCB_Configure: fault endpoint (a CPtr in the thread's CSpace),
/// CSpace root (with guard data), VSpace root, IPC buffer address and frame
/// (`CPtr::NULL`: none).
#[allow(clippy::too_many_arguments)]
pub fn tcb_configure(
    tcb: CPtr,
    fault_ep: CPtr,
    cspace_root: CPtr,
    cspace_root_data: Word,
    vspace_root: CPtr,
    vspace_root_data: Word,
    buffer: Word,
    buffer_frame: CPtr,
) -> Result<(), ErrorReply> {
    invoke0(
        tcb,
        Invocation::TcbConfigure {
            fault_ep: fault_ep.0,
            cspace_root_data,
            vspace_root_data,
            buffer,
        },
        &[cspace_root, vspace_root, buffer_frame],
    )
}

/// seL4_TCB_SetSpace: fault endpoint, CSpace and VSpace roots.
pub fn tcb_set_space(
    tcb: CPtr,
    fault_ep: CPtr,
    cspace_root: CPtr,
    cspace_root_data: Word,
    vspace_root: CPtr,
    vspace_root_data: Word,
) -> Result<(), ErrorReply> {
    invoke0(
        tcb,
        Invocation::TcbSetSpace {
            fault_ep: fault_ep.0,
            cspace_root_data,
            vspace_root_data,
        },
        &[cspace_root, vspace_root],
    )
}

/// seL4_TCB_SetIPCBuffer.
pub fn tcb_set_ipc_buffer(tcb: CPtr, buffer: Word, buffer_frame: CPtr) -> Result<(), ErrorReply> {
    invoke0(tcb, Invocation::TcbSetIpcBuffer { buffer }, &[buffer_frame])
}

/// seL4_TCB_SetPriority: not above `authority`'s maximum controlled priority.
pub fn tcb_set_priority(tcb: CPtr, authority: CPtr, priority: Word) -> Result<(), ErrorReply> {
    invoke0(tcb, Invocation::TcbSetPriority { priority }, &[authority])
}

/// seL4_TCB_Suspend.
pub fn tcb_suspend(tcb: CPtr) -> Result<(), ErrorReply> {
    invoke0(tcb, Invocation::TcbSuspend, &[])
}

/// seL4_TCB_Resume.
pub fn tcb_resume(tcb: CPtr) -> Result<(), ErrorReply> {
    invoke0(tcb, Invocation::TcbResume, &[])
}

/// seL4_TCB_ReadRegisters: the first `count` words of the user context.
pub fn tcb_read_registers(
    tcb: CPtr,
    suspend_source: bool,
    count: Word,
) -> Result<UserContext, ErrorReply> {
    let mut out = [0; USER_CONTEXT_WORDS];
    invoke(
        tcb,
        Invocation::TcbReadRegisters {
            suspend_source,
            arch_flags: 0,
            count,
        },
        &[],
        &[],
        &mut out,
    )?;
    Ok(out)
}

/// seL4_TCB_WriteRegisters: sets the first `regs.len()` context words,
/// then resumes the thread if asked.
pub fn tcb_write_registers(
    tcb: CPtr,
    resume_target: bool,
    regs: &[Word],
) -> Result<(), ErrorReply> {
    let regs = &regs[..regs.len().min(USER_CONTEXT_WORDS)];
    invoke(
        tcb,
        Invocation::TcbWriteRegisters {
            resume_target,
            arch_flags: 0,
            count: regs.len() as Word,
        },
        &[],
        regs,
        &mut [],
    )
    .map(|_| ())
}

/// seL4_TCB_BindNotification.
pub fn tcb_bind_notification(tcb: CPtr, ntfn: CPtr) -> Result<(), ErrorReply> {
    invoke0(tcb, Invocation::TcbBindNotification, &[ntfn])
}

/// seL4_TCB_UnbindNotification.
pub fn tcb_unbind_notification(tcb: CPtr) -> Result<(), ErrorReply> {
    invoke0(tcb, Invocation::TcbUnbindNotification, &[])
}

// ----- frames, page tables, VSpaces -----

/// seL4_ARM_Page_Map: maps the frame at `vaddr` in `vspace` with `rights`
/// (Read, Write) and `attr` ([`abi::vm`] attributes).
pub fn page_map(
    frame: CPtr,
    vspace: CPtr,
    vaddr: Word,
    rights: CapRights,
    attr: Word,
) -> Result<(), ErrorReply> {
    invoke0(
        frame,
        Invocation::PageMap {
            vaddr,
            rights: rights.word(),
            attr,
        },
        &[vspace],
    )
}

/// seL4_ARM_Page_Unmap.
pub fn page_unmap(frame: CPtr) -> Result<(), ErrorReply> {
    invoke0(frame, Invocation::PageUnmap, &[])
}

/// seL4_ARM_Page_GetAddress: the frame's physical address.
pub fn page_get_address(frame: CPtr) -> Result<Word, ErrorReply> {
    let mut out = [0; 1];
    invoke(frame, Invocation::PageGetAddress, &[], &[], &mut out)?;
    Ok(out[0])
}

/// seL4_ARM_PageTable_Map: installs the table for `vaddr` at the first level that lacks one.
pub fn page_table_map(pt: CPtr, vspace: CPtr, vaddr: Word, attr: Word) -> Result<(), ErrorReply> {
    invoke0(pt, Invocation::PageTableMap { vaddr, attr }, &[vspace])
}

/// seL4_ARM_PageTable_Unmap.
pub fn page_table_unmap(pt: CPtr) -> Result<(), ErrorReply> {
    invoke0(pt, Invocation::PageTableUnmap, &[])
}

/// seL4_ARM_ASIDPool_Assign: gives `vspace` an ASID from `pool`.
pub fn asid_pool_assign(pool: CPtr, vspace: CPtr) -> Result<(), ErrorReply> {
    invoke0(pool, Invocation::AsidPoolAssign, &[vspace])
}

/// A failed batched invocation (map, unmap, copy run): the element at fault
/// (its index in the run; `None` when no single element is) and the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchError {
    /// Index of the frame at fault.
    pub frame: Option<Word>,
    /// The error, as a single map or unmap of that frame would report it.
    pub error: ErrorReply,
}

fn batch(target: CPtr, inv: Invocation, caps: &[CPtr]) -> Result<(), BatchError> {
    let mut words = [0; 8];
    let (label, n, ncaps) = inv.encode(&mut words);
    let ncaps = ncaps.min(caps.len());
    let mut mrs = [words[0], words[1], words[2], words[3]];
    backend::with_ipc_buffer(|b| {
        b.msg[..n].copy_from_slice(&words[..n]);
        for (i, c) in caps.iter().take(ncaps).enumerate() {
            b.caps_or_badges[i] = c.0;
        }
    });
    let info = MessageInfo::new(label.word(), 0, ncaps, n);
    let (_, x1) = backend::syscall(Syscall::Call, target.0, info.word(), &mut mrs);
    let reply = MessageInfo::from_word(x1);
    if reply.label() == 0 {
        return Ok(());
    }
    batch_error(reply, &mrs)
}

/// The error of a batched invocation's reply `reply` (label not 0), whose
/// first words came back in `mrs`.
#[cold]
#[inline(never)]
fn batch_error(reply: MessageInfo, mrs: &[Word; 4]) -> Result<(), BatchError> {
    let len = reply.length().min(8);
    let mut got = [0; 8];
    backend::with_ipc_buffer(|b| {
        for (i, g) in got.iter_mut().enumerate().take(len) {
            *g = if i < 4 { mrs[i] } else { b.msg[i] };
        }
    });
    // The batched invocation's own errors carry the index of the element at
    // fault first, then the error's usual MRs. An error raised before the
    // invocation runs (the invoked cap is null or of the wrong kind, a
    // truncated message) carries only the usual MRs — one fewer — and
    // concerns no single element.
    match ErrorReply::from_reply(reply.label(), &got[1.min(len)..len]) {
        Some(error) if len > 0 => Err(BatchError {
            frame: (got[0] != Word::MAX).then_some(got[0]),
            error,
        }),
        _ => Err(BatchError {
            frame: None,
            error: ErrorReply::from_reply(reply.label(), &got[..len])
                .unwrap_or(ErrorReply::IllegalOperation),
        }),
    }
}

/// **Extension** VSpace_MapFrames: maps the frames whose caps are in `count`
/// consecutive slots from `first_frame` at consecutive addresses from
/// `vaddr`; all of them, or on any error none.
pub fn vspace_map_frames(
    vspace: CPtr,
    first_frame: CPtr,
    count: Word,
    vaddr: Word,
    rights: CapRights,
    attr: Word,
) -> Result<(), BatchError> {
    // `batch`'s message, built without `Invocation::encode`'s general
    // match (a demand fault maps one frame: this is its hot path).
    let (info, words) = map_frames_message(first_frame.0, count, vaddr, rights.word(), attr);
    backend::with_ipc_buffer(|b| b.msg[4] = words[4]);
    map_call(vspace, info, [words[0], words[1], words[2], words[3]])
}

/// Calls `vspace` with a map message (its first four words in `mrs`, the
/// rest already in the IPC buffer); decodes a batch error reply.
#[inline(always)]
fn map_call(vspace: CPtr, info: MessageInfo, mut mrs: [Word; 4]) -> Result<(), BatchError> {
    let (_, x1) = backend::syscall(Syscall::Call, vspace.0, info.word(), &mut mrs);
    let reply = MessageInfo::from_word(x1);
    if reply.label() == 0 {
        return Ok(());
    }
    batch_error(reply, &mrs)
}

/// **Extension** VSpace_MapFrame: maps the one frame `frame` at `vaddr`;
/// its arguments travel in registers (a demand fault's mapping). Errors as
/// [`vspace_map_frames`] reports them.
pub fn vspace_map_frame(
    vspace: CPtr,
    frame: CPtr,
    vaddr: Word,
    rights: CapRights,
    attr: Word,
) -> Result<(), BatchError> {
    let (info, words) = map_frame_message(frame.0, vaddr, rights.word(), attr);
    map_call(vspace, info, words)
}

/// The tag and words of a `VSpace_MapFrame` call, exactly as
/// [`Invocation::encode`] makes them (checked by a test).
#[inline(always)]
fn map_frame_message(
    frame: Word,
    vaddr: Word,
    rights: Word,
    attr: Word,
) -> (MessageInfo, [Word; 4]) {
    let label = abi::invocation::Label::VSpaceMapFrame.word();
    (
        MessageInfo::new(label, 0, 0, 4),
        [frame, vaddr, rights, attr],
    )
}

/// The tag and words of a `VSpace_MapFrames` call, exactly as
/// [`Invocation::encode`] makes them (checked by a test).
#[inline(always)]
fn map_frames_message(
    first_frame: Word,
    count: Word,
    vaddr: Word,
    rights: Word,
    attr: Word,
) -> (MessageInfo, [Word; 5]) {
    let label = abi::invocation::Label::VSpaceMapFrames.word();
    (
        MessageInfo::new(label, 0, 0, 5),
        [first_frame, count, vaddr, rights, attr],
    )
}

/// **Extension** VSpace_UnmapFrames: unmaps those of the `count` frames
/// from `first_frame` that are mapped in `vspace`.
pub fn vspace_unmap_frames(vspace: CPtr, first_frame: CPtr, count: Word) -> Result<(), BatchError> {
    batch(
        vspace,
        Invocation::VSpaceUnmapFrames {
            first_frame: first_frame.0,
            count,
        },
        &[],
    )
}

/// **Extension** CNode_CopyRun: copies the caps at the `count` consecutive
/// CPtrs from `src_index` (found from `src_root` at `src_depth`) into
/// `count` consecutive empty slots of one CNode, the first at
/// (`dest_index`, `dest_depth`) from `cnode`, each with `rights` masked;
/// all of them, or on any error none. The error's `frame` is the index of
/// the pair at fault (`None`: the run as a whole).
#[allow(clippy::too_many_arguments)]
pub fn cnode_copy_run(
    cnode: CPtr,
    dest_index: Word,
    dest_depth: Word,
    src_root: CPtr,
    src_index: Word,
    src_depth: Word,
    count: Word,
    rights: CapRights,
) -> Result<(), BatchError> {
    batch(
        cnode,
        Invocation::CNodeCopyRun {
            dest_index,
            dest_depth,
            src_index,
            src_depth,
            count,
            rights: rights.word(),
        },
        &[src_root],
    )
}

// ----- IRQs -----

/// seL4_IRQControl_Get: an IRQ handler cap for `irq` in an empty slot.
pub fn irq_control_get(
    irq_control: CPtr,
    irq: Word,
    root: CPtr,
    index: Word,
    depth: Word,
) -> Result<(), ErrorReply> {
    invoke0(
        irq_control,
        Invocation::IrqIssueIrqHandler { irq, index, depth },
        &[root],
    )
}

/// seL4_IRQHandler_Ack: unmask the line after handling it.
pub fn irq_handler_ack(handler: CPtr) -> Result<(), ErrorReply> {
    invoke0(handler, Invocation::IrqAckIrq, &[])
}

/// seL4_IRQHandler_SetNotification: the line signals `ntfn` (with its badge).
pub fn irq_handler_set_notification(handler: CPtr, ntfn: CPtr) -> Result<(), ErrorReply> {
    invoke0(handler, Invocation::IrqSetIrqHandler, &[ntfn])
}

/// seL4_IRQHandler_Clear.
pub fn irq_handler_clear(handler: CPtr) -> Result<(), ErrorReply> {
    invoke0(handler, Invocation::IrqClearIrqHandler, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_frames_message_is_the_encoders() {
        let inv = Invocation::VSpaceMapFrames {
            first_frame: 11,
            count: 22,
            vaddr: 0x4000_1000,
            rights: 3,
            attr: 5,
        };
        let mut words = [0; 8];
        let (label, n, ncaps) = inv.encode(&mut words);
        let (info, w) = map_frames_message(11, 22, 0x4000_1000, 3, 5);
        assert_eq!(info, MessageInfo::new(label.word(), 0, ncaps, n));
        assert_eq!(&w[..], &words[..n]);
    }

    #[test]
    fn map_frame_message_is_the_encoders() {
        let inv = Invocation::VSpaceMapFrame {
            frame: 11,
            vaddr: 0x4000_1000,
            rights: 3,
            attr: 5,
        };
        let mut words = [0; 8];
        let (label, n, ncaps) = inv.encode(&mut words);
        let (info, w) = map_frame_message(11, 0x4000_1000, 3, 5);
        assert_eq!(info, MessageInfo::new(label.word(), 0, ncaps, n));
        assert_eq!(&w[..], &words[..n]);
    }
}
