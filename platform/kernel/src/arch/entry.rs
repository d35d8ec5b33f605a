//! The first instructions: from QEMU's jump to `_start` to Rust in the high half.
//!
//! QEMU starts an ELF `-kernel` at EL1 at its (physical) entry point with the
//! MMU and caches off and `x0` holding the device tree's address (0 for ELF
//! images, which then find the tree at the start of RAM). The entry code
//! parks every core but the first, clears `.bss` (through PC-relative, hence
//! physical, addresses), builds the boot translation table — 1 GiB blocks
//! mapping the first 5 GiB of the physical address space, used both as the
//! identity map (TTBR0) and as the high-half linear map (TTBR1) — turns on
//! the MMU and caches, and jumps to [`crate::arch::boot::kernel_main`] at
//! its high-half address on the kernel stack.

use crate::arch::mmu::{BOOT_TCR, MAIR_VALUE};

unsafe extern "C" {
    fn _start() -> !;
}

/// The entry point, for the image to reference so the linker keeps it.
pub const fn entry_point() -> unsafe extern "C" fn() -> ! {
    _start
}

core::arch::global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    mrs     x9, mpidr_el1
    and     x9, x9, #0xff
    cbnz    x9, 9f
    mrs     x19, cntvct_el0
    mov     x20, x0

    // Clear .bss (physical addresses: the MMU is off).
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
1:  cmp     x9, x10
    b.hs    2f
    str     xzr, [x9], #8
    b       1b
2:
    // The boot table: entry 0 Device (PXN, UXN), entries 1..4 Normal WB.
    adrp    x9, {boot_l1}
    add     x9, x9, :lo12:{boot_l1}
    ldr     x11, ={device_block}
    str     x11, [x9]
    ldr     x11, ={normal_block}
    mov     x12, #1
3:  lsl     x13, x12, #30
    orr     x13, x13, x11
    str     x13, [x9, x12, lsl #3]
    add     x12, x12, #1
    cmp     x12, #5
    b.ne    3b

    ldr     x10, ={mair}
    msr     mair_el1, x10
    ldr     x10, ={tcr}
    mrs     x11, id_aa64mmfr0_el1
    and     x11, x11, #7
    cmp     x11, #5
    mov     x12, #5
    csel    x11, x11, x12, ls
    bfi     x10, x11, #32, #3
    msr     tcr_el1, x10
    msr     ttbr0_el1, x9
    msr     ttbr1_el1, x9
    dsb     ish
    tlbi    vmalle1
    dsb     ish
    isb
    mrs     x10, sctlr_el1
    orr     x10, x10, #(1 << 0)
    orr     x10, x10, #(1 << 2)
    orr     x10, x10, #(1 << 12)
    // EOS: exception return synchronises the context (RES1 before
    // ARMv8.5); the fastpath's TTBR0 switch relies on it.
    orr     x10, x10, #(1 << 11)
    // DZE: EL0 may zero memory with `dc zva` (the runtime's fast zeroing).
    orr     x10, x10, #(1 << 14)
    bic     x10, x10, #(1 << 1)
    bic     x10, x10, #(1 << 19)
    msr     sctlr_el1, x10
    isb

    // Into the high half.
    ldr     x9, =__stack_top
    mov     sp, x9
    mov     x0, x20
    mov     x1, x19
    ldr     x9, ={main}
    blr     x9
9:  wfe
    b       9b
    "#,
    boot_l1 = sym crate::arch::mmu::BOOT_L1,
    device_block = const crate::arch::mmu::BOOT_DEVICE_BLOCK,
    normal_block = const crate::arch::mmu::BOOT_NORMAL_BLOCK,
    mair = const MAIR_VALUE,
    tcr = const BOOT_TCR,
    main = sym crate::arch::boot::kernel_main,
);
