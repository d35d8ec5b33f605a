//! The boot-time translation tables: an identity map in 1 GiB blocks.
//!
//! With the MMU off every data access is Device memory, where an unaligned
//! access faults and nothing is cached. The first thing the kernel does is
//! therefore to map the low 5 GiB of the physical address space one-to-one —
//! the first GiB (MMIO on `virt`) as Device-nGnRE, the next four (RAM on
//! `virt` starts at 1 GiB and is at most 4 GiB here) as Normal write-back —
//! and turn on the MMU and both caches.

use core::cell::UnsafeCell;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    ID_AA64MMFR0_EL1, MAIR_EL1, ReadWriteable, Readable, SCTLR_EL1, TCR_EL1, TTBR0_EL1, Writeable,
};

/// `MAIR_EL1` attribute index of Device-nGnRE memory.
const ATTR_DEVICE: u64 = 0;
/// `MAIR_EL1` attribute index of Normal write-back (read/write-allocate) memory.
const ATTR_NORMAL: u64 = 1;
/// `MAIR_EL1` attribute index of Normal non-cacheable memory.
const ATTR_NORMAL_NC: u64 = 2;

/// Memory Attribute Indirection Register value: index 0 Device-nGnRE (0x04),
/// 1 Normal inner/outer write-back non-transient read/write-allocate (0xff),
/// 2 Normal inner/outer non-cacheable (0x44).
const MAIR_VALUE: u64 =
    0x04 << (8 * ATTR_DEVICE) | 0xff << (8 * ATTR_NORMAL) | 0x44 << (8 * ATTR_NORMAL_NC);

/// Block descriptor: bits[1:0] = 0b01 at level 1 (a 1 GiB block).
const DESC_BLOCK: u64 = 0b01;
/// Access flag: set, so the first access does not fault.
const DESC_AF: u64 = 1 << 10;
/// Shareability: inner shareable.
const DESC_SH_INNER: u64 = 0b11 << 8;
/// Privileged execute-never.
const DESC_PXN: u64 = 1 << 53;
/// Unprivileged execute-never.
const DESC_UXN: u64 = 1 << 54;

/// A 4 KiB-aligned translation table of 512 descriptors.
#[repr(C, align(4096))]
struct Table(UnsafeCell<[u64; 512]>);

// SAFETY: the table is written only by `enable`, on the boot core, before any
// other core or EL0 code runs; afterwards only the MMU reads it.
unsafe impl Sync for Table {}

static BOOT_L1: Table = Table(UnsafeCell::new([0; 512]));

/// The size of one level-1 block.
const GIB: u64 = 1 << 30;

/// Builds the identity map and turns on the MMU, data and instruction caches.
///
/// # Safety
///
/// Call once, on the boot core, with the MMU off and nothing yet relying on
/// other translations. The kernel image and stack must lie in the first 5 GiB
/// of the physical address space (they do on `virt`).
pub unsafe fn enable() {
    let l1 = BOOT_L1.0.get();
    for index in 0..5u64 {
        let attrs = if index == 0 {
            ATTR_DEVICE << 2 | DESC_PXN | DESC_UXN
        } else {
            ATTR_NORMAL << 2 | DESC_SH_INNER
        };
        // SAFETY: no other code references BOOT_L1 yet (see the function's
        // contract); the index is within the 512-entry table.
        unsafe { (*l1)[index as usize] = index * GIB | attrs | DESC_AF | DESC_BLOCK };
    }

    MAIR_EL1.set(MAIR_VALUE);
    let parange = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange);
    // T0SZ = 25: a 39-bit address space, so the walk starts at level 1.
    TCR_EL1.write(
        TCR_EL1::T0SZ.val(25)
            + TCR_EL1::TG0::KiB_4
            + TCR_EL1::SH0::Inner
            + TCR_EL1::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL1::EPD1::DisableTTBR1Walks
            + TCR_EL1::IPS.val(parange.min(0b101)),
    );
    TTBR0_EL1.set_baddr(l1 as u64);

    // SAFETY: TLB maintenance with no live translations to lose; the barriers
    // make the table writes and register writes visible before the MMU is on.
    unsafe {
        core::arch::asm!(
            "dsb ishst",
            "tlbi vmalle1",
            "dsb ish",
            "isb",
            options(nostack)
        );
    }
    SCTLR_EL1.modify(
        SCTLR_EL1::M::Enable
            + SCTLR_EL1::C::Cacheable
            + SCTLR_EL1::I::Cacheable
            + SCTLR_EL1::A::Disable,
    );
    barrier::isb(barrier::SY);
}
