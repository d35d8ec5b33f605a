//! Copying and filling the process's own memory fast: 64 bytes a loop, `dc zva` for zeroes.
//!
//! The runtime's memory primitives are how the MM server zeroes frames and
//! copies client data through its window, and how a client's heap zeroes
//! and copies, so they are on the paths the fault and populate benchmarks
//! measure. Each is an `asm!` loop over raw addresses — the memory is not a
//! Rust object (it may be shared with other processes, or unmapped until
//! the pager maps it), so the compiler must neither see it nor reason about
//! it:
//!
//! - **Copy** ([`copy`]): when source and destination have the same
//!   alignment modulo 8, bytes up to an 8-byte boundary, then 64 bytes a
//!   loop with `ldp`/`stp`, then words, then bytes; otherwise bytes. Every
//!   access is aligned to its size, so this is valid on Device memory too.
//! - **Zero** ([`zero`]): `dc zva` ("Data Cache Zero by VA": zeroes one
//!   naturally aligned block, 64 bytes on QEMU's CPUs, in one instruction)
//!   for the whole blocks, when the kernel allows it at EL0
//!   (`DCZID_EL0.DZP` clear, i.e. `SCTLR_EL1.DZE` set); stores elsewhere.
//!   `dc zva` needs Normal memory: on Device memory it takes an alignment
//!   fault, so device registers must be written with [`copy`] (`write_bytes`),
//!   never zeroed with `fill_bytes`.
//! - **Fill** ([`fill`]): the byte replicated into a word, then as the copy.
//!
//! Semantics are those of the byte loops they replace: exactly the bytes
//! named are read or written, in address order within each access size, and
//! an access to an unmapped page faults to the thread's fault handler and
//! the instruction is retried after its reply (all registers preserved).

/// Copies `len` bytes from `src` to `dst` (the ranges do not overlap).
///
/// # Safety
///
/// Both ranges must be user addresses of this process (checked by the
/// caller to lie below `USER_VADDR_END` without wrapping) that no live Rust
/// reference covers; unmapped pages are fine (they fault to the pager).
pub(super) unsafe fn copy(dst: u64, src: u64, len: u64) {
    let (mut d, mut s, mut n) = (dst, src, len);
    if (d ^ s) & 7 == 0 {
        // SAFETY: the caller's contract: every address touched lies in the
        // two ranges; each access is aligned to its size.
        unsafe {
            core::arch::asm!(
                // Bytes to an 8-byte boundary.
                "2:",
                "cbz {n}, 9f",
                "tst {d}, #7",
                "b.eq 3f",
                "ldrb {t0:w}, [{s}], #1",
                "strb {t0:w}, [{d}], #1",
                "sub {n}, {n}, #1",
                "b 2b",
                // 64 bytes a loop.
                "3:",
                "cmp {n}, #64",
                "b.lo 5f",
                "4:",
                "ldp {t0}, {t1}, [{s}]",
                "ldp {t2}, {t3}, [{s}, #16]",
                "stp {t0}, {t1}, [{d}]",
                "stp {t2}, {t3}, [{d}, #16]",
                "ldp {t0}, {t1}, [{s}, #32]",
                "ldp {t2}, {t3}, [{s}, #48]",
                "stp {t0}, {t1}, [{d}, #32]",
                "stp {t2}, {t3}, [{d}, #48]",
                "add {s}, {s}, #64",
                "add {d}, {d}, #64",
                "sub {n}, {n}, #64",
                "cmp {n}, #64",
                "b.hs 4b",
                // Words.
                "5:",
                "cmp {n}, #8",
                "b.lo 6f",
                "ldr {t0}, [{s}], #8",
                "str {t0}, [{d}], #8",
                "sub {n}, {n}, #8",
                "b 5b",
                // The last bytes.
                "6:",
                "cbz {n}, 9f",
                "ldrb {t0:w}, [{s}], #1",
                "strb {t0:w}, [{d}], #1",
                "sub {n}, {n}, #1",
                "b 6b",
                "9:",
                d = inout(reg) d,
                s = inout(reg) s,
                n = inout(reg) n,
                t0 = out(reg) _,
                t1 = out(reg) _,
                t2 = out(reg) _,
                t3 = out(reg) _,
                options(nostack),
            );
        }
    } else {
        // SAFETY: as above, byte accesses only.
        unsafe {
            core::arch::asm!(
                "2:",
                "cbz {n}, 9f",
                "ldrb {t0:w}, [{s}], #1",
                "strb {t0:w}, [{d}], #1",
                "sub {n}, {n}, #1",
                "b 2b",
                "9:",
                d = inout(reg) d,
                s = inout(reg) s,
                n = inout(reg) n,
                t0 = out(reg) _,
                options(nostack),
            );
        }
    }
    let _ = (d, s, n);
}

/// Stores `word` (a byte replicated eight times) into `[dst, dst + len)`:
/// bytes to an 8-byte boundary, 64 bytes a loop, then words and bytes.
///
/// # Safety
///
/// As [`copy`] for the destination range.
unsafe fn store(dst: u64, len: u64, word: u64) {
    let (mut d, mut n) = (dst, len);
    // SAFETY: the caller's contract; every access is aligned to its size.
    unsafe {
        core::arch::asm!(
            "2:",
            "cbz {n}, 9f",
            "tst {d}, #7",
            "b.eq 3f",
            "strb {w:w}, [{d}], #1",
            "sub {n}, {n}, #1",
            "b 2b",
            "3:",
            "cmp {n}, #64",
            "b.lo 5f",
            "4:",
            "stp {w}, {w}, [{d}]",
            "stp {w}, {w}, [{d}, #16]",
            "stp {w}, {w}, [{d}, #32]",
            "stp {w}, {w}, [{d}, #48]",
            "add {d}, {d}, #64",
            "sub {n}, {n}, #64",
            "cmp {n}, #64",
            "b.hs 4b",
            "5:",
            "cmp {n}, #8",
            "b.lo 6f",
            "str {w}, [{d}], #8",
            "sub {n}, {n}, #8",
            "b 5b",
            "6:",
            "cbz {n}, 9f",
            "strb {w:w}, [{d}], #1",
            "sub {n}, {n}, #1",
            "b 6b",
            "9:",
            d = inout(reg) d,
            n = inout(reg) n,
            w = in(reg) word,
            options(nostack),
        );
    }
    let _ = (d, n);
}

/// Fills `[dst, dst + len)` with `byte`.
///
/// # Safety
///
/// As [`copy`] for the destination range.
pub(super) unsafe fn fill(dst: u64, len: u64, byte: u8) {
    // SAFETY: forwarded contract.
    unsafe { store(dst, len, u64::from(byte) * 0x0101_0101_0101_0101) }
}

/// The `dc zva` block size in bytes, or `None` when EL0 may not use it.
fn zva_block() -> Option<u64> {
    let dczid: u64;
    // SAFETY: DCZID_EL0 ("Data Cache Zero ID") is readable at EL0 and has
    // no side effects.
    unsafe { core::arch::asm!("mrs {0}, dczid_el0", out(reg) dczid, options(nomem, nostack)) };
    // DZP (bit 4): zeroing prohibited; BS (bits 3:0): log2 of the block in words.
    (dczid & 0x10 == 0).then(|| 4u64 << (dczid & 0xf))
}

/// Zeroes `[dst, dst + len)`: `dc zva` over the whole blocks, stores around them.
///
/// # Safety
///
/// As [`copy`] for the destination range, which must be Normal memory
/// wherever it covers a whole `dc zva` block.
pub(super) unsafe fn zero(dst: u64, len: u64) {
    let Some(block) = zva_block().filter(|&b| b <= 2048 && len >= 2 * b) else {
        // SAFETY: forwarded contract.
        return unsafe { store(dst, len, 0) };
    };
    let first = dst.next_multiple_of(block);
    let end = dst + len;
    let last = end & !(block - 1);
    // SAFETY: forwarded contract: the head and the tail lie in the range.
    unsafe {
        store(dst, first - dst, 0);
        store(last, end - last, 0);
    }
    let (mut d, mut n) = (first, (last - first) / block);
    // SAFETY: `[first, last)` lies in the range, is Normal memory (the
    // caller's contract) and is made of whole aligned blocks; `dc zva`
    // writes zeroes to exactly the block containing its address. Sixteen
    // blocks a loop while sixteen remain (a 4 KiB page of 64-byte blocks
    // is 4 loops; the count kept 16 below what remains, so that one
    // `subs` both counts and tests), then one a loop.
    unsafe {
        core::arch::asm!(
            "subs {n}, {n}, #16",
            "b.lo 3f",
            "2:",
            ".rept 16",
            "dc zva, {d}",
            "add {d}, {d}, {b}",
            ".endr",
            "subs {n}, {n}, #16",
            "b.hs 2b",
            "3:",
            "adds {n}, {n}, #16",
            "b.eq 9f",
            "4:",
            "dc zva, {d}",
            "add {d}, {d}, {b}",
            "subs {n}, {n}, #1",
            "b.ne 4b",
            "9:",
            d = inout(reg) d,
            n = inout(reg) n,
            b = in(reg) block,
            options(nostack),
        );
    }
    let _ = (d, n);
}

/// Checks [`zero`] against a byte model: lengths around its thresholds
/// (below two `dc zva` blocks, around a block loop, around a page) at
/// offsets across a 64-byte block, and that it touches nothing else.
/// Returns the first failing case as (length, offset).
pub(crate) fn zero_self_test() -> Result<(), (usize, usize)> {
    const GUARD: u8 = 0xa5;
    const SIZE: usize = 6144;
    #[repr(align(64))]
    struct Buf([u8; SIZE]);
    let mut buf = Buf([GUARD; SIZE]);
    let lens = (0..=160)
        .chain(1020..=1030)
        .chain(4090..=4100)
        .chain([5127]);
    for len in lens {
        for off in [0, 1, 8, 63, 64] {
            buf.0.fill(GUARD);
            let at = buf.0.as_mut_ptr() as u64 + off as u64;
            // SAFETY: `[at, at + len)` lies in `buf` (off + len < SIZE), on
            // the stack (Normal memory), and no reference to `buf` is used
            // until the call returns.
            unsafe { zero(at, core::hint::black_box(len as u64)) };
            let zeroed = buf.0[off..off + len].iter().all(|&b| b == 0);
            let untouched = buf.0[..off]
                .iter()
                .chain(&buf.0[off + len..])
                .all(|&b| b == GUARD);
            if !zeroed || !untouched {
                return Err((len, off));
            }
        }
    }
    Ok(())
}
