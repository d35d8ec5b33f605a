//! `memcpy` and `memset` for the kernel, with 16-byte loads and stores.
//!
//! The portable versions in `compiler_builtins` (which the build links,
//! as weak symbols) copy a word at a time and a byte at a time in their
//! tails; the compiler calls `memcpy` for struct copies of a few words
//! and more (the kernel is built without SIMD registers), so they showed
//! up at the top of the IPC path's profile. These strong definitions
//! replace them; `memcpy` copies the small sizes that dominate (a `Cap` is
//! 40 bytes) without a loop. They need unaligned accesses, which the
//! kernel allows (SCTLR_EL1.A = 0) on Normal memory, the only memory it
//! copies (the MMU is on before any Rust code runs).

core::arch::global_asm!(
    r#"
    .section .text.memcpy, "ax"
    .global memcpy
    .type memcpy, %function
// x0 destination, x1 source, x2 length (the regions do not overlap).
// Up to 64 bytes: a copy of the first and of the last bytes, overlapping
// in the middle, with no loop; longer: 16 bytes at a time, then the last 16.
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
4:  cmp     x2, #64
    b.hi    5f
    ldp     x6, x7, [x1]
    ldp     x8, x9, [x1, #16]
    ldp     x10, x11, [x4, #-32]
    ldp     x12, x13, [x4, #-16]
    stp     x6, x7, [x0]
    stp     x8, x9, [x0, #16]
    stp     x10, x11, [x5, #-32]
    stp     x12, x13, [x5, #-16]
    ret
5:  mov     x3, x0
    sub     x2, x2, #16
9:  ldp     x6, x7, [x1], #16
    stp     x6, x7, [x3], #16
    subs    x2, x2, #16
    b.hi    9b
    ldp     x6, x7, [x4, #-16]
    stp     x6, x7, [x5, #-16]
    ret
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

/// Checks `memcpy` and `memset` against a byte-by-byte model for every
/// length up to 256 bytes at every alignment up to 8, and that they touch
/// nothing else (the `selftest-mem` boot flag runs it). Returns the first
/// failing case, as (length, source offset, destination offset).
pub fn self_test() -> Result<(), (usize, usize, usize)> {
    const GUARD: u8 = 0xa5;
    let mut src = [0u8; 272];
    for (i, b) in src.iter_mut().enumerate() {
        *b = (i * 7 + 1) as u8;
    }
    let mut dst = [GUARD; 272];
    for len in 0..=256 {
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
