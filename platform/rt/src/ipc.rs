//! Message registers and the syscalls, as libsel4 offers them.
//!
//! A message is a [`MessageInfo`] tag plus message registers: MR0–MR3 travel
//! in machine registers, the rest in the thread's IPC buffer. As in libsel4,
//! [`set_mr`]/[`get_mr`] read and write the buffer's `msg` array for every
//! index and the syscall wrappers move MR0–MR3 between the buffer and the
//! registers; the `*_with_mrs` variants take MR0–MR3 directly (seL4's
//! `seL4_CallWithMRs` and friends) and touch the buffer only for longer
//! messages.
//!
//! Capabilities to send go in the buffer's `caps_or_badges` ([`set_cap`]);
//! after a receive, the badges of caps that arrived unwrapped are read with
//! [`get_badge`]; a granted cap arrives in the slot named by
//! [`set_receive_path`].

use abi::message::{MAX_EXTRA_CAPS, MAX_LENGTH};
use abi::{Badge, CPtr, MessageInfo, Syscall, Word};

use crate::backend;

/// Sets message register `i` (seL4_SetMR). Indices of 120 and more are ignored.
pub fn set_mr(i: usize, value: Word) {
    if i < MAX_LENGTH {
        backend::with_ipc_buffer(|b| b.msg[i] = value);
    }
}

/// Message register `i` (seL4_GetMR); 0 for indices of 120 and more.
pub fn get_mr(i: usize) -> Word {
    if i < MAX_LENGTH {
        backend::with_ipc_buffer(|b| b.msg[i])
    } else {
        0
    }
}

/// Sets message registers `0..values.len()` (at most 120).
pub fn set_mrs(values: &[Word]) {
    let n = values.len().min(MAX_LENGTH);
    backend::with_ipc_buffer(|b| b.msg[..n].copy_from_slice(&values[..n]));
}

/// Reads message registers `0..out.len()` (at most 120).
pub fn get_mrs(out: &mut [Word]) {
    let n = out.len().min(MAX_LENGTH);
    backend::with_ipc_buffer(|b| out[..n].copy_from_slice(&b.msg[..n]));
}

/// Sets the `i`th extra capability to send (seL4_SetCap); `i` below 3.
pub fn set_cap(i: usize, cap: CPtr) {
    if i < MAX_EXTRA_CAPS {
        backend::with_ipc_buffer(|b| b.caps_or_badges[i] = cap.0);
    }
}

/// The badge of the `i`th received cap, if it arrived unwrapped
/// (seL4_GetBadge; check `info.caps_unwrapped()` bit `i`).
pub fn get_badge(i: usize) -> Badge {
    if i < MAX_EXTRA_CAPS {
        Badge(backend::with_ipc_buffer(|b| b.caps_or_badges[i]))
    } else {
        Badge(0)
    }
}

/// Where a granted capability is received (seL4_SetCapReceivePath): the
/// CNode cap `cnode`, and in it `index` resolved to `depth` bits. With the
/// boot CSpace: `set_receive_path(CPtr(SLOT_CNODE), slot, 64)`.
pub fn set_receive_path(cnode: CPtr, index: Word, depth: Word) {
    backend::with_ipc_buffer(|b| {
        b.receive_cnode = cnode.0;
        b.receive_index = index;
        b.receive_depth = depth;
    });
}

fn load_fast() -> [Word; 4] {
    backend::with_ipc_buffer(|b| [b.msg[0], b.msg[1], b.msg[2], b.msg[3]])
}

fn store_fast(mrs: &[Word; 4], info: MessageInfo) {
    let n = info.length().min(4);
    if n > 0 {
        backend::with_ipc_buffer(|b| b.msg[..n].copy_from_slice(&mrs[..n]));
    }
}

/// Call with MR0–MR3 in `mrs` (seL4_CallWithMRs): sends, waits for the
/// reply, and leaves the reply's MR0–MR3 in `mrs`.
pub fn call_with_mrs(dest: CPtr, info: MessageInfo, mrs: &mut [Word; 4]) -> MessageInfo {
    let (_, x1) = backend::syscall(Syscall::Call, dest.0, info.word(), mrs);
    MessageInfo::from_word(x1)
}

/// Send and wait for the reply through a one-shot reply capability (seL4_Call).
/// On a kernel object's cap: invoke it.
pub fn call(dest: CPtr, info: MessageInfo) -> MessageInfo {
    let mut mrs = load_fast();
    let r = call_with_mrs(dest, info, &mut mrs);
    store_fast(&mrs, r);
    r
}

/// Send, blocking until a receiver takes the message (seL4_Send).
/// Dropped silently if the cap lacks Write.
pub fn send(dest: CPtr, info: MessageInfo) {
    let mut mrs = load_fast();
    backend::syscall(Syscall::Send, dest.0, info.word(), &mut mrs);
}

/// Send if a receiver waits, else drop the message (seL4_NBSend).
pub fn nb_send(dest: CPtr, info: MessageInfo) {
    let mut mrs = load_fast();
    backend::syscall(Syscall::NBSend, dest.0, info.word(), &mut mrs);
}

/// Receive with MR0–MR3 returned in `mrs` (seL4_RecvWithMRs).
pub fn recv_with_mrs(src: CPtr, mrs: &mut [Word; 4]) -> (MessageInfo, Badge) {
    let (x0, x1) = backend::syscall(Syscall::Recv, src.0, 0, mrs);
    (MessageInfo::from_word(x1), Badge(x0))
}

/// Wait for a message (seL4_Recv): its tag and the sender's badge. On a
/// notification: wait for a signal (the badge is the signalled word).
pub fn recv(src: CPtr) -> (MessageInfo, Badge) {
    let mut mrs = [0; 4];
    let r = recv_with_mrs(src, &mut mrs);
    store_fast(&mrs, r.0);
    r
}

/// Receive if a message waits, else return a zero badge and tag (seL4_NBRecv).
pub fn nb_recv(src: CPtr) -> (MessageInfo, Badge) {
    let mut mrs = [0; 4];
    let (x0, x1) = backend::syscall(Syscall::NBRecv, src.0, 0, &mut mrs);
    let info = MessageInfo::from_word(x1);
    store_fast(&mrs, info);
    (info, Badge(x0))
}

/// Reply to the caller through the thread's reply capability (seL4_Reply);
/// nothing happens if there is none (a second reply is ignored).
pub fn reply(info: MessageInfo) {
    let mut mrs = load_fast();
    backend::syscall(Syscall::Reply, 0, info.word(), &mut mrs);
}

/// Reply with MR0–MR3 in `mrs`, then wait (seL4_ReplyRecvWithMRs); the
/// message received leaves its MR0–MR3 in `mrs`.
pub fn reply_recv_with_mrs(
    src: CPtr,
    info: MessageInfo,
    mrs: &mut [Word; 4],
) -> (MessageInfo, Badge) {
    let (x0, x1) = backend::syscall(Syscall::ReplyRecv, src.0, info.word(), mrs);
    (MessageInfo::from_word(x1), Badge(x0))
}

/// Reply, then wait for the next message (seL4_ReplyRecv).
pub fn reply_recv(src: CPtr, info: MessageInfo) -> (MessageInfo, Badge) {
    let mut mrs = load_fast();
    let r = reply_recv_with_mrs(src, info, &mut mrs);
    store_fast(&mrs, r.0);
    r
}

/// Give up the rest of the time slice (seL4_Yield).
pub fn yield_now() {
    let mut mrs = [0; 4];
    backend::syscall(Syscall::Yield, 0, 0, &mut mrs);
}

/// Signal a notification: OR the cap's badge into its word (seL4_Signal).
pub fn signal(ntfn: CPtr) {
    let mut mrs = [0; 4];
    backend::syscall(Syscall::Send, ntfn.0, 0, &mut mrs);
}

/// Wait for a notification; returns the signalled word (seL4_Wait).
pub fn wait(ntfn: CPtr) -> Badge {
    let mut mrs = [0; 4];
    let (x0, _) = backend::syscall(Syscall::Recv, ntfn.0, 0, &mut mrs);
    Badge(x0)
}

/// Take a notification's word without blocking; 0 if none (seL4_Poll).
pub fn poll(ntfn: CPtr) -> Badge {
    let mut mrs = [0; 4];
    let (x0, _) = backend::syscall(Syscall::NBRecv, ntfn.0, 0, &mut mrs);
    Badge(x0)
}

/// Print a character on the kernel console (seL4_DebugPutChar).
pub fn debug_put_char(c: u8) {
    let mut mrs = [0; 4];
    backend::syscall(Syscall::DebugPutChar, c as Word, 0, &mut mrs);
}

/// Stop the whole system with an exit status (**extension** of seL4_DebugHalt).
pub fn debug_halt(status: i32) -> ! {
    let mut mrs = [0; 4];
    backend::syscall(Syscall::DebugHalt, status as u32 as Word, 0, &mut mrs);
    crate::exit(status)
}
