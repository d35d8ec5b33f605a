//! `memcpy` and `memset` for the kernel, with 16-byte loads and stores.
//!
//! The portable versions in `compiler_builtins` (which the build links,
//! as weak symbols) copy a word at a time and a byte at a time in their
//! tails; the compiler calls `memcpy` for every struct copy of more than a
//! few words, so they showed up at the top of the IPC path's profile. These
//! strong definitions replace them. They need unaligned accesses, which the
//! kernel allows (SCTLR_EL1.A = 0) on Normal memory, the only memory it
//! copies (the MMU is on before any Rust code runs).

core::arch::global_asm!(
    r#"
    .section .text.memcpy, "ax"
    .global memcpy
    .type memcpy, %function
memcpy:
    mov     x3, x0
    cmp     x2, #16
    b.lo    2f
1:  ldp     x4, x5, [x1], #16
    stp     x4, x5, [x3], #16
    sub     x2, x2, #16
    cmp     x2, #16
    b.hs    1b
2:  tbz     x2, #3, 3f
    ldr     x4, [x1], #8
    str     x4, [x3], #8
3:  tbz     x2, #2, 4f
    ldr     w4, [x1], #4
    str     w4, [x3], #4
4:  tbz     x2, #1, 5f
    ldrh    w4, [x1], #2
    strh    w4, [x3], #2
5:  tbz     x2, #0, 6f
    ldrb    w4, [x1]
    strb    w4, [x3]
6:  ret
    .size memcpy, . - memcpy

    .section .text.memset, "ax"
    .global memset
    .type memset, %function
memset:
    mov     x3, x0
    and     x1, x1, #0xff
    orr     x1, x1, x1, lsl #8
    orr     x1, x1, x1, lsl #16
    orr     x1, x1, x1, lsl #32
    cmp     x2, #16
    b.lo    2f
1:  stp     x1, x1, [x3], #16
    sub     x2, x2, #16
    cmp     x2, #16
    b.hs    1b
2:  tbz     x2, #3, 3f
    str     x1, [x3], #8
3:  tbz     x2, #2, 4f
    str     w1, [x3], #4
4:  tbz     x2, #1, 5f
    strh    w1, [x3], #2
5:  tbz     x2, #0, 6f
    strb    w1, [x3]
6:  ret
    .size memset, . - memset
"#
);
