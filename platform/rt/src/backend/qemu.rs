//! The QEMU backend: `svc #0` into our aarch64 kernel, memory through pointers, the process entry.
//!
//! - **Entry.** The kernel starts a process's first thread at the ELF entry
//!   `_start` with `x0` = the address of its boot info (mapped read-only)
//!   and `sp` at the top of its stack. `_start` decodes the boot info once,
//!   points `TPIDR_EL0` at the thread's IPC buffer and calls the program's
//!   main function, declared with [`qemu_main!`](crate::qemu_main), then
//!   [`exit`]s.
//! - **Threads.** Each thread finds its IPC buffer through `TPIDR_EL0`
//!   (saved and restored by the kernel); a thread created by the program
//!   must have it set (TCB_WriteRegisters' `tpidr_el0`).
//! - **Memory.** The process's memory is its own address space: a read or
//!   write is a plain load or store (64 bytes a loop, zeroes with `dc zva`:
//!   module `fastmem`), and an access to an unmapped page faults to the
//!   thread's fault handler, which maps it and replies, and the instruction
//!   is retried — exactly what the simulator backend emulates.
//! - **Console and panics.** Text goes out with DebugPutString; a panic
//!   prints its message and stops the whole system with DebugHalt(101),
//!   which is how a QEMU test reports a broken invariant.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;

use abi::boot::{BOOT_INFO_WORDS, BootInfo};
use abi::ipc_buffer::IpcBuffer;
use abi::vm::USER_VADDR_END;
use abi::{Syscall, Word};

use crate::MemoryError;

mod fastmem;

pub(crate) use fastmem::zero_self_test;
pub(crate) use memfns::self_test as memfns_self_test;

/// Traps into the kernel with x0 = dest, x1 = info, x2..x5 = mrs, x7 = the
/// syscall number; returns (x0, x1) and leaves x2..x5 in `mrs`.
pub(crate) fn syscall(sys: Syscall, dest: Word, info: Word, mrs: &mut [Word; 4]) -> (Word, Word) {
    let (x0, x1);
    // SAFETY: `svc #0` enters our kernel, which preserves every register
    // except x0..x5 (the results, declared here) and touches no memory of
    // this thread except its IPC buffer, which no Rust reference covers
    // across the call (`with_ipc_buffer` borrows it only inside closures).
    unsafe {
        core::arch::asm!(
            "svc #0",
            inout("x0") dest => x0,
            inout("x1") info => x1,
            inout("x2") mrs[0],
            inout("x3") mrs[1],
            inout("x4") mrs[2],
            inout("x5") mrs[3],
            in("x7") sys.number(),
            options(nostack),
        );
    }
    (x0, x1)
}

/// The calling thread's IPC buffer address (TPIDR_EL0).
fn ipc_buffer_address() -> Word {
    let value: Word;
    // SAFETY: reading TPIDR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {0}, tpidr_el0", out(reg) value, options(nomem, nostack)) };
    value
}

/// Runs `f` on the calling thread's IPC buffer.
pub(crate) fn with_ipc_buffer<R>(f: impl FnOnce(&mut IpcBuffer) -> R) -> R {
    let addr = ipc_buffer_address();
    assert!(
        addr != 0 && addr.is_multiple_of(1024),
        "this thread has no IPC buffer (TPIDR_EL0 = {addr:#x})"
    );
    // SAFETY: TPIDR_EL0 holds the thread's own IPC buffer (set by `_start`
    // or by whoever created the thread), a mapped, writable, 1 KiB-aligned
    // region used by this thread only; the runtime's functions borrow it
    // only for the duration of these closures, which never nest.
    f(unsafe { &mut *(addr as *mut IpcBuffer) })
}

/// The boot info, decoded once by `_start` before anything else runs.
struct BootInfoCell(UnsafeCell<MaybeUninit<BootInfo>>);

// SAFETY: written once by `rt_start` on the first thread before main runs
// (before any other thread of the process can exist), read-only afterwards.
unsafe impl Sync for BootInfoCell {}

static BOOT_INFO: BootInfoCell = BootInfoCell(UnsafeCell::new(MaybeUninit::uninit()));

/// The process's boot info.
pub(crate) fn boot_info() -> &'static BootInfo {
    // SAFETY: initialised by `rt_start` before main (see `BootInfoCell`).
    unsafe { (*BOOT_INFO.0.get()).assume_init_ref() }
}

/// Checks that `[vaddr, vaddr + len)` is a user address range.
fn check_range(vaddr: Word, len: usize) -> Result<(), MemoryError> {
    match vaddr.checked_add(len as Word) {
        Some(end) if end <= USER_VADDR_END => Ok(()),
        _ => Err(MemoryError::InvalidRange),
    }
}

/// Reads the process's memory.
pub(crate) fn read_bytes(vaddr: Word, buf: &mut [u8]) -> Result<(), MemoryError> {
    check_range(vaddr, buf.len())?;
    // SAFETY: `[vaddr, vaddr + len)` is a user range of this process
    // (checked), not a Rust object of this program: mapped memory is read
    // (any bit pattern is a valid u8), unmapped memory faults to the fault
    // handler and the load is retried after it maps the page. `buf` is a
    // distinct object we hold exclusively.
    unsafe { fastmem::copy(buf.as_mut_ptr() as Word, vaddr, buf.len() as Word) };
    Ok(())
}

/// Writes the process's memory.
pub(crate) fn write_bytes(vaddr: Word, data: &[u8]) -> Result<(), MemoryError> {
    check_range(vaddr, data.len())?;
    // SAFETY: as in `read_bytes`; the caller names memory it manages as
    // raw bytes (not a live Rust object of this program).
    unsafe { fastmem::copy(vaddr, data.as_ptr() as Word, data.len() as Word) };
    Ok(())
}

/// Fills the process's memory (zeroes with `dc zva` where it can: the
/// range must be Normal memory, see `fastmem`).
pub(crate) fn fill_bytes(vaddr: Word, len: Word, byte: u8) -> Result<(), MemoryError> {
    check_range(
        vaddr,
        usize::try_from(len).map_err(|_| MemoryError::InvalidRange)?,
    )?;
    if byte == 0 {
        // SAFETY: as in `write_bytes`.
        unsafe { fastmem::zero(vaddr, len) };
    } else {
        // SAFETY: as in `write_bytes`.
        unsafe { fastmem::fill(vaddr, len, byte) };
    }
    Ok(())
}

/// Writes text on the console (DebugPutString).
pub(crate) fn console_write(text: &str) {
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        let mut mrs = [0; 4];
        let (printed, _) = syscall(
            Syscall::DebugPutString,
            rest.as_ptr() as Word,
            rest.len() as Word,
            &mut mrs,
        );
        if printed == 0 {
            return;
        }
        rest = &rest[(printed as usize).min(rest.len())..];
    }
}

/// Ends the calling thread's process: the thread suspends itself
/// (TCB_Suspend on its own TCB). The status is not kept anywhere in QEMU;
/// a test reports its verdict with DebugHalt instead.
pub(crate) fn exit(_status: i32) -> ! {
    use abi::invocation::Invocation;
    let mut words = [0; 6];
    let (label, _, _) = Invocation::TcbSuspend.encode(&mut words);
    let mut mrs = [0; 4];
    loop {
        syscall(
            Syscall::Call,
            abi::boot::SLOT_TCB,
            abi::MessageInfo::new(label.word(), 0, 0, 0).word(),
            &mut mrs,
        );
    }
}

/// Declares a process's main function, `fn(&'static BootInfo)`, for the
/// QEMU entry (the simulator's harness takes the function directly).
#[macro_export]
macro_rules! qemu_main {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "Rust" fn __rt_qemu_main(info: &'static $crate::BootInfo) {
            let main: fn(&'static $crate::BootInfo) = $main;
            main(info)
        }
    };
}

unsafe extern "Rust" {
    /// The program's main function (see [`qemu_main!`](crate::qemu_main)).
    fn __rt_qemu_main(info: &'static BootInfo);
}

core::arch::global_asm!(
    r#"
    .section .text._start, "ax"
    .global _start
_start:
    mov     x29, #0
    mov     x30, #0
    bl      {rt_start}
1:  b       1b
"#,
    rt_start = sym rt_start,
);

/// The Rust side of `_start`.
extern "C" fn rt_start(boot_info_addr: Word) -> ! {
    // SAFETY: the kernel maps the boot info (BOOT_INFO_WORDS words,
    // read-only, 8-byte aligned) at the address it passes in x0.
    let words = unsafe { &*(boot_info_addr as *const [Word; BOOT_INFO_WORDS]) };
    let info = match BootInfo::decode(words) {
        Ok(info) => info,
        Err(_) => {
            console_write("rt: the boot info is unreadable\n");
            crate::ipc::debug_halt(102);
        }
    };
    let ipc_buffer = info.ipc_buffer;
    // SAFETY: first thing on the process's only thread: nothing reads the
    // cell yet (see `BootInfoCell`).
    unsafe { (*BOOT_INFO.0.get()).write(info) };
    // SAFETY: TPIDR_EL0 is this thread's software thread-ID register; the
    // runtime uses it for the IPC buffer address only.
    unsafe { core::arch::asm!("msr tpidr_el0, {0}", in(reg) ipc_buffer, options(nomem, nostack)) };
    // SAFETY: the program declares the function with `qemu_main!`, which
    // gives it this exact signature.
    unsafe { __rt_qemu_main(boot_info()) };
    exit(0)
}

/// Formats into a fixed buffer, for the panic message.
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                console_write(core::str::from_utf8(&self.buf).unwrap_or(""));
                self.len = 0;
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut line = Line {
        buf: [0; 256],
        len: 0,
    };
    let _ = core::fmt::Write::write_fmt(&mut line, format_args!("panic: {info}\n"));
    console_write(core::str::from_utf8(&line.buf[..line.len]).unwrap_or("panic\n"));
    crate::ipc::debug_halt(101)
}
