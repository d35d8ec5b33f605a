//! The first instructions: from QEMU's jump to `_start` to Rust.
//!
//! QEMU starts an ELF `-kernel` at EL1 at its entry point with the MMU and
//! caches off, `x0` holding the device tree's address (0 for ELF images, which
//! then find the tree at the start of RAM). The entry code keeps `x0`, parks
//! every core but the first, sets the stack, clears `.bss` and calls
//! [`crate::boot::kernel_main`].

core::arch::global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    mrs     x9, mpidr_el1
    and     x9, x9, #0xff
    cbnz    x9, 2f
    mrs     x19, cntvct_el0
    ldr     x9, =__stack_top
    mov     sp, x9
    ldr     x9, =__bss_start
    ldr     x10, =__bss_end
1:  cmp     x9, x10
    b.hs    3f
    str     xzr, [x9], #8
    b       1b
3:  mov     x1, x19
    bl      {main}
2:  wfe
    b       2b
    "#,
    main = sym crate::boot::kernel_main,
);
