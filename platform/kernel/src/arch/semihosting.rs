//! Arm semihosting: how the kernel tells QEMU to stop, with a status.
//!
//! QEMU runs with `-semihosting-config enable=on,target=native`; `SYS_EXIT`
//! with `ADP_Stopped_ApplicationExit` makes QEMU exit with the given status,
//! which is how a QEMU test reports pass or fail to its host-side runner.

/// Semihosting operation number of `SYS_EXIT`.
const SYS_EXIT: u64 = 0x18;
/// `ADP_Stopped_ApplicationExit`: a normal exit that carries a status.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

/// Stops QEMU; it exits with `status`.
pub fn exit(status: u32) -> ! {
    // On AArch64 SYS_EXIT takes a two-word parameter block: reason, subcode.
    let block = [ADP_STOPPED_APPLICATION_EXIT, u64::from(status)];
    // SAFETY: `hlt #0xf000` is the AArch64 semihosting trap. With semihosting
    // enabled QEMU reads the block (valid for the duration of the call) and
    // terminates; it does not return. Without it the instruction would raise
    // a debug exception, which does not corrupt memory either.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            in("x0") SYS_EXIT,
            in("x1") block.as_ptr(),
            options(nostack),
        );
    }
    loop {
        aarch64_cpu::asm::wfe();
    }
}
