//! Exception entry and exit: the vector table, saving user registers into the current TCB.
//!
//! On the way out to EL0 the kernel points `SP_EL1` at the context of the
//! thread it resumes ([`Context`], inside its TCB); an exception from EL0 then
//! stores the registers straight into that context, switches to the kernel
//! stack and calls Rust, which returns the context to resume. An `svc` with
//! the number of Call or ReplyRecv in x7 goes first to its fastpath, a
//! leaf function that returns the context of the thread it switched to (or
//! null, having changed nothing, for the general path). Exceptions
//! taken in the kernel itself (EL1) are bugs: they print the cause and stop
//! QEMU with a failure status. The kernel runs with interrupts masked; it
//! takes them only from EL0, and while idle by polling the GIC after `wfi`.

use aarch64_cpu::registers::{ESR_EL1, FAR_EL1, Readable};

use crate::arch::machine::HwMachine;
use crate::arch::{boot, semihosting};
use crate::kerncore::Kernel;
use crate::kerncore::cap::ObjId;
use crate::kerncore::object::Context;
use crate::kerncore::syscall::{Event, FastSwitch};
use abi::fault::{Fault, UserException, VmFault};

/// ESR_EL1.EC of an SVC from AArch64.
const EC_SVC64: u64 = 0x15;
/// ESR_EL1.EC of an instruction abort from a lower EL.
const EC_IABT_LOWER: u64 = 0x20;
/// ESR_EL1.EC of a data abort from a lower EL.
const EC_DABT_LOWER: u64 = 0x24;

unsafe extern "C" {
    /// Restores the context at `ctx` and returns to EL0 (see the module doc).
    pub fn return_to_user(ctx: *mut Context) -> !;
    /// The vector table.
    pub static exception_vectors: u8;
}

core::arch::global_asm!(
    r#"
// Saves the user registers into the context SP_EL1 points at; `restart`
// is how far before ELR_EL1 the exception's operation restarts (4 for an
// `svc`, 0 otherwise: the handlers of aborts set their own).
.macro SAVE_USER restart
    stp x0, x1, [sp, #0]
    stp x2, x3, [sp, #16]
    stp x4, x5, [sp, #32]
    stp x6, x7, [sp, #48]
    stp x8, x9, [sp, #64]
    stp x10, x11, [sp, #80]
    stp x12, x13, [sp, #96]
    stp x14, x15, [sp, #112]
    stp x16, x17, [sp, #128]
    stp x18, x19, [sp, #144]
    stp x20, x21, [sp, #160]
    stp x22, x23, [sp, #176]
    stp x24, x25, [sp, #192]
    stp x26, x27, [sp, #208]
    stp x28, x29, [sp, #224]
    mrs x9, sp_el0
    stp x30, x9, [sp, #240]
    mrs x10, elr_el1
    mrs x11, spsr_el1
    stp x10, x11, [sp, #256]
    mrs x12, tpidr_el0
    sub x13, x10, #\restart
    stp x12, x13, [sp, #272]
    ldr x9, =__stack_top
    mov sp, x9
.endm

.macro KERNEL_FAULT kind
    mov x0, #\kind
    mrs x1, esr_el1
    mrs x2, elr_el1
    mrs x3, far_el1
    bl {kernel_exception}
.endm

    .section .text.vectors, "ax"
    .balign 2048
    .global exception_vectors
exception_vectors:
    .balign 128
    KERNEL_FAULT 0
    .balign 128
    KERNEL_FAULT 1
    .balign 128
    KERNEL_FAULT 2
    .balign 128
    KERNEL_FAULT 3
    .balign 128
    KERNEL_FAULT 4
    .balign 128
    KERNEL_FAULT 5
    .balign 128
    KERNEL_FAULT 6
    .balign 128
    KERNEL_FAULT 7
    .balign 128
    b el0_sync
    .balign 128
    b el0_irq
    .balign 128
    KERNEL_FAULT 10
    .balign 128
    KERNEL_FAULT 11
    .balign 128
    KERNEL_FAULT 12
    .balign 128
    KERNEL_FAULT 13
    .balign 128
    KERNEL_FAULT 14
    .balign 128
    KERNEL_FAULT 15

el0_sync:
    SAVE_USER 4
    // An `svc` with x7 = -1 (Call) or -2 (ReplyRecv) tries its fastpath,
    // which returns the context to resume, or null for the general path.
    mrs x9, esr_el1
    lsr x9, x9, #26
    cmp x9, #{ec_svc}
    b.ne 2f
    cmn x7, #1
    b.eq 1f
    cmn x7, #2
    b.ne 2f
    bl {fastpath_reply_recv}
    cbnz x0, return_to_user
    b 2f
1:  lsr x9, x1, #12
    cmp x9, #{map_frame_label}
    b.eq 3f
    bl {fastpath_call}
    cbnz x0, return_to_user
    b 2f
3:  bl {fastpath_map}
    cbnz x0, return_to_user
2:  bl {handle_el0_sync}
    b return_to_user

el0_irq:
    SAVE_USER 0
    bl {handle_el0_irq}
    b return_to_user

    .global return_to_user
return_to_user:
    mov sp, x0
    ldp x10, x11, [sp, #256]
    msr elr_el1, x10
    msr spsr_el1, x11
    ldr x12, [sp, #272]
    msr tpidr_el0, x12
    ldp x30, x9, [sp, #240]
    msr sp_el0, x9
    ldp x0, x1, [sp, #0]
    ldp x2, x3, [sp, #16]
    ldp x4, x5, [sp, #32]
    ldp x6, x7, [sp, #48]
    ldp x8, x9, [sp, #64]
    ldp x10, x11, [sp, #80]
    ldp x12, x13, [sp, #96]
    ldp x14, x15, [sp, #112]
    ldp x16, x17, [sp, #128]
    ldp x18, x19, [sp, #144]
    ldp x20, x21, [sp, #160]
    ldp x22, x23, [sp, #176]
    ldp x24, x25, [sp, #192]
    ldp x26, x27, [sp, #208]
    ldp x28, x29, [sp, #224]
    eret
    .ltorg
"#,
    kernel_exception = sym kernel_exception,
    handle_el0_sync = sym handle_el0_sync,
    fastpath_call = sym fastpath_call,
    fastpath_reply_recv = sym fastpath_reply_recv,
    ec_svc = const EC_SVC64,
    fastpath_map = sym fastpath_map,
    map_frame_label = const abi::invocation::Label::VSpaceMapFrame as u64,
    handle_el0_irq = sym handle_el0_irq,
);

/// An exception taken in the kernel: a bug. Prints the cause and stops.
extern "C" fn kernel_exception(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    panic!(
        "unexpected exception (vector {kind}) in the kernel: ESR_EL1 {esr:#x} (class {:#x}), ELR_EL1 {elr:#x}, FAR_EL1 {far:#x}",
        esr >> 26
    );
}

/// The first stop of an `svc` with the number of Call in x7: the fastpath
/// (see [`fastpath`]).
extern "C" fn fastpath_call() -> *mut Context {
    fastpath(|k, cur| k.fastpath_call(cur))
}

/// The first stop of an `svc` with the number of ReplyRecv in x7.
extern "C" fn fastpath_reply_recv() -> *mut Context {
    fastpath(|k, cur| k.fastpath_reply_recv(cur))
}

/// The first stop of an `svc` Call whose label is `VSpace_MapFrame` (a
/// demand fault's mapping, see [`Kernel::fast_invoke_map_frames`]): the
/// caller's context to resume, or null for the general path with nothing
/// changed. The label routes the call here before the IPC fastpath: an
/// endpoint called with this label is an IPC, which the general path makes.
extern "C" fn fastpath_map() -> *mut Context {
    // SAFETY: as in `fastpath`.
    let k = unsafe { boot::kernel_after_boot() };
    let Some(cur) = k.sched.current else {
        return core::ptr::null_mut();
    };
    if !k.fast_invoke_map_frames(cur) {
        return core::ptr::null_mut();
    }
    match k.tcbs.get_mut(cur) {
        Some(t) => &mut t.context as *mut Context,
        None => boot::next_context(k),
    }
}

/// A register-only Call or ReplyRecv through its fastpath: returns the
/// context to resume (its address space installed), or null for the
/// general path ([`handle_el0_sync`]), with nothing changed. The registers
/// are saved, with `restart_pc` at the `svc` (see `SAVE_USER`).
#[inline(always)]
fn fastpath(
    path: impl FnOnce(&mut Kernel<HwMachine>, ObjId) -> Option<FastSwitch>,
) -> *mut Context {
    // SAFETY: one kernel entry at a time (one core, interrupts masked in
    // the kernel), so no other reference to the kernel is live; a thread
    // runs at EL0 only after boot made the kernel.
    let k = unsafe { boot::kernel_after_boot() };
    let Some(cur) = k.sched.current else {
        return core::ptr::null_mut();
    };
    match path(k, cur) {
        Some(switch) => {
            boot::switch_space_fast(switch.space);
            switch.context
        }
        None => core::ptr::null_mut(),
    }
}

/// A synchronous exception from EL0 that the fastpath did not take: a
/// system call through the general path, or a fault.
extern "C" fn handle_el0_sync() -> *mut Context {
    // SAFETY: one kernel entry at a time (one core, interrupts masked in
    // the kernel); no other reference to the kernel is live.
    let k = unsafe { boot::kernel() };
    let esr = ESR_EL1.get();
    let ec = (esr >> 26) & 0x3f;
    let iss = esr & 0x1ff_ffff;
    let Some(cur) = k.sched.current else {
        k.handle_event(Event::Timer);
        return boot::next_context(k);
    };
    if ec == EC_SVC64 {
        // The MM server's batched map goes without the general path's
        // generic parts; the caller keeps running in its address space.
        if k.map_call_kind(cur).is_some() && k.fast_invoke_map_frames(cur) {
            return match k.tcbs.get_mut(cur) {
                Some(t) => &mut t.context as *mut Context,
                None => boot::next_context(k),
            };
        }
        k.enter_syscall();
        return boot::next_context(k);
    }
    let event = match k.tcbs.get_mut(cur) {
        None => Event::Timer,
        Some(t) => {
            let c = &mut t.context;
            c.restart_pc = c.pc;
            match ec {
                EC_IABT_LOWER | EC_DABT_LOWER => Event::Fault(Fault::VmFault(VmFault {
                    ip: c.pc,
                    addr: FAR_EL1.get(),
                    instruction: ec == EC_IABT_LOWER,
                    fsr: iss,
                })),
                _ => Event::Fault(Fault::UserException(UserException {
                    pc: c.pc,
                    sp: c.sp,
                    spsr: c.spsr,
                    number: ec,
                    code: iss,
                })),
            }
        }
    };
    // A VM fault goes first to its fastpath (a handler waiting for it
    // runs at once), else through the general path.
    if let Event::Fault(Fault::VmFault(v)) = event
        && let Some(switch) = k.fastpath_vm_fault(cur, v)
    {
        boot::switch_space_fast(switch.space);
        return switch.context;
    }
    k.handle_event(event);
    boot::next_context(k)
}

/// An interrupt taken from EL0 (`restart_pc` is the interrupted instruction).
extern "C" fn handle_el0_irq() -> *mut Context {
    // SAFETY: as in `handle_el0_sync`.
    let k = unsafe { boot::kernel() };
    boot::dispatch_interrupts(k);
    boot::next_context(k)
}

/// Stops QEMU after a fatal kernel error.
pub fn fatal() -> ! {
    semihosting::exit(101)
}
