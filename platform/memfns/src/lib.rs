//! `memcpy` and `memset` for aarch64 bare metal: 16-byte loads and stores, 64 bytes a loop.
//!
//! The portable versions in `compiler_builtins` (linked as weak symbols)
//! copy a word at a time and a byte at a time in their tails; the compiler
//! calls them for every struct copy and array initialisation of some size
//! (the kernel and the processes are built without SIMD registers), so they
//! showed up at the top of the IPC path's and the MM server's fault path's
//! profiles. These strong definitions replace them in the kernel and in
//! every program that links the runtime: up to 64 bytes without a loop
//! (overlapping first and last pieces; a kernel `Cap` is 48 bytes), longer
//! ones 64 bytes a loop, then the last 64 bytes again, overlapping. They use
//! unaligned accesses, which the kernel allows at EL1 and EL0 on Normal
//! memory (SCTLR_EL1.A = 0); the compiler only calls them on Rust objects,
//! which are Normal memory. On other targets (host builds) this crate only
//! has the self-test, run against the platform's own functions.
#![cfg_attr(not(test), no_std)]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
core::arch::global_asm!(
    r#"
    .section .text.memcpy, "ax"
    .global memcpy
    .type memcpy, %function
// x0 destination, x1 source, x2 length (the regions do not overlap).
memcpy:
    add     x4, x1, x2
    add     x5, x0, x2
    cmp     x2, #16
    b.hi    3f
    tbz     x2, #4, 1f
    ldp     x6, x7, [x1]
    stp     x6, x7, [x0]
    ret
1:  tbz     x2, #3, 2f
    ldr     x6, [x1]
    ldr     x7, [x4, #-8]
    str     x6, [x0]
    str     x7, [x5, #-8]
    ret
2:  tbz     x2, #2, 6f
    ldr     w6, [x1]
    ldr     w7, [x4, #-4]
    str     w6, [x0]
    str     w7, [x5, #-4]
    ret
6:  cbz     x2, 8f
    ldrb    w6, [x1]
    ldrb    w7, [x4, #-1]
    tbz     x2, #1, 7f
    ldrh    w6, [x1]
    strh    w6, [x0]
    strb    w7, [x5, #-1]
    ret
7:  strb    w6, [x0]
8:  ret
3:  cmp     x2, #32
    b.hi    4f
    ldp     x6, x7, [x1]
    ldp     x8, x9, [x4, #-16]
    stp     x6, x7, [x0]
    stp     x8, x9, [x5, #-16]
    ret
4:  ldp     x6, x7, [x1]
    ldp     x8, x9, [x1, #16]
    ldp     x10, x11, [x4, #-32]
    ldp     x12, x13, [x4, #-16]
    cmp     x2, #64
    b.hi    5f
    stp     x6, x7, [x0]
    stp     x8, x9, [x0, #16]
    stp     x10, x11, [x5, #-32]
    stp     x12, x13, [x5, #-16]
    ret
// Longer: 64 bytes a loop while more than 64 remain, then the last 64.
5:  mov     x3, x0
    sub     x2, x2, #64
9:  ldp     x6, x7, [x1]
    ldp     x8, x9, [x1, #16]
    ldp     x10, x11, [x1, #32]
    ldp     x12, x13, [x1, #48]
    add     x1, x1, #64
    stp     x6, x7, [x3]
    stp     x8, x9, [x3, #16]
    stp     x10, x11, [x3, #32]
    stp     x12, x13, [x3, #48]
    add     x3, x3, #64
    subs    x2, x2, #64
    b.hi    9b
    ldp     x6, x7, [x4, #-64]
    ldp     x8, x9, [x4, #-48]
    ldp     x10, x11, [x4, #-32]
    ldp     x12, x13, [x4, #-16]
    stp     x6, x7, [x5, #-64]
    stp     x8, x9, [x5, #-48]
    stp     x10, x11, [x5, #-32]
    stp     x12, x13, [x5, #-16]
    ret
    .size memcpy, . - memcpy

    .section .text.memset, "ax"
    .global memset
    .type memset, %function
// x0 destination, w1 the byte, x2 length.
memset:
    and     x1, x1, #0xff
    orr     x1, x1, x1, lsl #8
    orr     x1, x1, x1, lsl #16
    orr     x1, x1, x1, lsl #32
    add     x5, x0, x2
    cmp     x2, #16
    b.hi    3f
    tbz     x2, #4, 1f
    stp     x1, x1, [x0]
    ret
1:  tbz     x2, #3, 2f
    str     x1, [x0]
    str     x1, [x5, #-8]
    ret
2:  tbz     x2, #2, 6f
    str     w1, [x0]
    str     w1, [x5, #-4]
    ret
6:  cbz     x2, 8f
    strb    w1, [x0]
    tbz     x2, #1, 8f
    strh    w1, [x5, #-2]
8:  ret
3:  cmp     x2, #32
    b.hi    4f
    stp     x1, x1, [x0]
    stp     x1, x1, [x5, #-16]
    ret
4:  cmp     x2, #64
    b.hi    5f
    stp     x1, x1, [x0]
    stp     x1, x1, [x0, #16]
    stp     x1, x1, [x5, #-32]
    stp     x1, x1, [x5, #-16]
    ret
// Longer: 64 bytes a loop while more than 64 remain, then the last 64.
5:  mov     x3, x0
    sub     x2, x2, #64
9:  stp     x1, x1, [x3]
    stp     x1, x1, [x3, #16]
    stp     x1, x1, [x3, #32]
    stp     x1, x1, [x3, #48]
    add     x3, x3, #64
    subs    x2, x2, #64
    b.hi    9b
    stp     x1, x1, [x5, #-64]
    stp     x1, x1, [x5, #-48]
    stp     x1, x1, [x5, #-32]
    stp     x1, x1, [x5, #-16]
    ret
    .size memset, . - memset
"#
);

/// Checks `memcpy` and `memset` against a byte-by-byte model for every
/// length up to 300 bytes at every alignment up to 8, and that they touch
/// nothing else. Returns the first failing case, as (length, source
/// offset, destination offset). A program's self-test can call it.
pub fn self_test() -> Result<(), (usize, usize, usize)> {
    const GUARD: u8 = 0xa5;
    let mut src = [0u8; 320];
    for (i, b) in src.iter_mut().enumerate() {
        *b = (i * 7 + 1) as u8;
    }
    let mut dst = [GUARD; 320];
    for len in 0..=300 {
        for so in 0..8 {
            for d in 0..8 {
                dst.fill(GUARD);
                let n = core::hint::black_box(len);
                dst[d..d + n].copy_from_slice(&src[so..so + n]);
                let copied = dst[d..d + n] == src[so..so + n];
                let untouched = dst[..d].iter().chain(&dst[d + n..]).all(|&b| b == GUARD);
                if !copied || !untouched {
                    return Err((len, so, d));
                }
                dst[d..d + n].fill(core::hint::black_box(0x3c));
                let set = dst[d..d + n].iter().all(|&b| b == 0x3c);
                let untouched = dst[..d].iter().chain(&dst[d + n..]).all(|&b| b == GUARD);
                if !set || !untouched {
                    return Err((len, so, d));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_model_agrees_with_the_hosts_functions() {
        assert_eq!(super::self_test(), Ok(()));
    }
}
