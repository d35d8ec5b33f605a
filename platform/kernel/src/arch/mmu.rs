//! The kernel's translation tables: a high-half linear map of the physical address space.
//!
//! The kernel runs in the TTBR1 half, at [`KERNEL_VIRT_OFFSET`] + physical
//! address, for its image and for all RAM (its window onto every object and
//! frame); user address spaces use TTBR0 with 48-bit addresses and 8-bit
//! ASIDs. The boot code (`entry`) turns the MMU on with one table of 1 GiB
//! blocks; [`install_kernel_tables`] then replaces it with the real map:
//! MMIO (the first GiB on `virt`) as Device memory, RAM as Normal
//! write-back execute-never, and the image itself page by page — text
//! read-only and executable, read-only data read-only, the rest writable.
//! Nothing in the TTBR1 half is accessible from EL0.

use core::cell::UnsafeCell;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{ReadWriteable, Readable, TCR_EL1, TTBR0_EL1, TTBR1_EL1, Writeable};

use crate::devicetree::PhysRange;

/// Virtual address of physical address 0 in the kernel's linear map.
pub const KERNEL_VIRT_OFFSET: u64 = 0xffff_ff80_0000_0000;

/// MAIR_EL1: the attribute indices of `vmsa` (0 Device-nGnRE, 1 Normal
/// write-back, 2 Normal non-cacheable).
pub const MAIR_VALUE: u64 = vmsa::MAIR_VALUE;

const VALID_BLOCK: u64 = 0b01;
const VALID_TABLE: u64 = 0b11;
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 0b11 << 8;
const AP_RO: u64 = 1 << 7;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
const ATTR_DEVICE: u64 = vmsa::MAIR_DEVICE_NGNRE << 2;
const ATTR_NORMAL: u64 = vmsa::MAIR_NORMAL_WB << 2;

/// The boot table's Device block (the first GiB).
pub const BOOT_DEVICE_BLOCK: u64 = ATTR_DEVICE | AF | PXN | UXN | VALID_BLOCK;
/// The boot table's Normal blocks (RAM; executable, the image runs there).
pub const BOOT_NORMAL_BLOCK: u64 = ATTR_NORMAL | AF | SH_INNER | VALID_BLOCK;

/// TCR_EL1 for both halves: 4 KiB granules, inner-shareable write-back
/// walks, `T0SZ` = `T1SZ` = 25 (39-bit halves; the walk starts at level 1).
/// IPS is filled in from `ID_AA64MMFR0_EL1` at boot.
pub const BOOT_TCR: u64 =
    25 | 1 << 8 | 1 << 10 | 3 << 12 | 25 << 16 | 1 << 24 | 1 << 26 | 3 << 28 | 2 << 30;

/// A 4 KiB-aligned translation table.
#[repr(C, align(4096))]
pub struct Table(UnsafeCell<[u64; 512]>);

// SAFETY: the tables are written only on the boot core during boot
// (`entry` and `install_kernel_tables`), before anything else runs; after
// that only the MMU reads them.
unsafe impl Sync for Table {}

impl Table {
    const fn new() -> Self {
        Table(UnsafeCell::new([0; 512]))
    }
}

/// The boot table (written by `entry` through its physical address).
pub static BOOT_L1: Table = Table::new();
static KERNEL_L1: Table = Table::new();
static KERNEL_L2: Table = Table::new();
const IMAGE_TABLES: usize = 16;
static KERNEL_L3: [Table; IMAGE_TABLES] = [const { Table::new() }; IMAGE_TABLES];
/// The user table of an idle core: every entry invalid.
static EMPTY_L0: Table = Table::new();

unsafe extern "C" {
    static __kernel_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __kernel_end: u8;
}

/// The virtual address of a linker symbol.
fn symbol(s: &u8) -> u64 {
    s as *const u8 as u64
}

/// The kernel image's physical range, from the linker's symbols.
pub fn image_range() -> PhysRange {
    // SAFETY: only the addresses of these linker-defined symbols are taken.
    let (start, end) = unsafe { (symbol(&__kernel_start), symbol(&__kernel_end)) };
    PhysRange {
        base: start - KERNEL_VIRT_OFFSET,
        size: end - start,
    }
}

/// The kernel-space address of a physical address.
pub const fn phys_to_virt(paddr: u64) -> u64 {
    paddr + KERNEL_VIRT_OFFSET
}

/// The physical address of a kernel-image address.
pub const fn virt_to_phys(vaddr: u64) -> u64 {
    vaddr - KERNEL_VIRT_OFFSET
}

fn table_phys(t: &Table) -> u64 {
    virt_to_phys(t.0.get() as u64)
}

/// Builds the kernel's own tables and switches TTBR1 to them; TTBR0 gets
/// the empty table and 48-bit user addresses.
///
/// # Safety
///
/// Call once, on the boot core, after the boot code enabled the MMU with
/// the boot table, before any user thread runs. `ram` must be the machine's
/// RAM, which must include the kernel image.
pub unsafe fn install_kernel_tables(ram: &[PhysRange]) {
    // SAFETY: only symbol addresses are taken.
    let (text_end, rodata_end) = unsafe { (symbol(&__text_end), symbol(&__rodata_end)) };
    let image = image_range();
    let text_end = virt_to_phys(text_end);
    let rodata_end = virt_to_phys(rodata_end);
    let image_gib = image.base >> 30;
    let in_ram = |base: u64, size: u64| ram.iter().any(|r| base < r.end() && r.base < base + size);

    let l1 = KERNEL_L1.0.get();
    let l2 = KERNEL_L2.0.get();
    // SAFETY: the kernel tables are not in use yet (TTBR1 points at the
    // boot table) and only this function writes them (see `Table`).
    unsafe {
        (*l1)[0] = BOOT_DEVICE_BLOCK;
        for gib in 1..512u64 {
            let base = gib << 30;
            if gib == image_gib {
                (*l1)[gib as usize] = table_phys(&KERNEL_L2) | VALID_TABLE;
            } else if in_ram(base, 1 << 30) {
                (*l1)[gib as usize] = base | ATTR_NORMAL | AF | SH_INNER | PXN | UXN | VALID_BLOCK;
            }
        }
        let mut next_l3 = 0;
        for j in 0..512u64 {
            let base = image_gib << 30 | j << 21;
            let overlaps_image = base < image.end() && image.base < base + (2 << 20);
            if overlaps_image && next_l3 < IMAGE_TABLES {
                let l3 = KERNEL_L3[next_l3].0.get();
                (*l2)[j as usize] = table_phys(&KERNEL_L3[next_l3]) | VALID_TABLE;
                next_l3 += 1;
                for k in 0..512u64 {
                    let pa = base | k << 12;
                    let attrs = if pa >= image.base && pa < text_end {
                        AP_RO | UXN
                    } else if pa >= text_end && pa < rodata_end {
                        AP_RO | PXN | UXN
                    } else {
                        PXN | UXN
                    };
                    (*l3)[k as usize] = pa | ATTR_NORMAL | AF | SH_INNER | attrs | VALID_TABLE;
                }
            } else if in_ram(base, 2 << 20) {
                (*l2)[j as usize] = base | ATTR_NORMAL | AF | SH_INNER | PXN | UXN | VALID_BLOCK;
            }
        }
    }
    barrier::dsb(barrier::ISHST);
    TTBR1_EL1.set_baddr(table_phys(&KERNEL_L1));
    TTBR0_EL1.set_baddr(table_phys(&EMPTY_L0));
    barrier::isb(barrier::SY);
    TCR_EL1.modify(TCR_EL1::T0SZ.val(16) + TCR_EL1::A1::TTBR0 + TCR_EL1::AS::ASID8Bits);
    // SAFETY: TLB maintenance only; the new tables map the kernel's code,
    // data and stack at the same addresses as the boot table did.
    unsafe {
        core::arch::asm!(
            "dsb ish",
            "tlbi vmalle1",
            "dsb ish",
            "isb",
            options(nostack)
        );
    }
}

/// The TTBR0 value of the empty user address space.
pub fn empty_user_table() -> u64 {
    table_phys(&EMPTY_L0)
}

/// Switches the user address space.
///
/// # Safety
///
/// `root` must be the physical address of a valid level-0 table whose
/// tables are all in RAM and stay valid while it is installed (the kernel's
/// VSpaces), or [`empty_user_table`]; `asid` must be the ASID the kernel
/// gave that table (0 for the empty one).
pub unsafe fn set_user_space(root: u64, asid: u16) {
    TTBR0_EL1.set(root | u64::from(asid) << 48);
    barrier::isb(barrier::SY);
}

/// The TTBR0 value installed: the user address space's root | ASID << 48.
#[inline(always)]
pub fn user_space() -> u64 {
    TTBR0_EL1.get()
}

/// Switches the user address space, leaving the synchronisation to the
/// exception return that follows (a context synchronisation event:
/// `SCTLR_EL1.EOS` is set at boot).
///
/// # Safety
///
/// As for [`set_user_space`]; besides, nothing may access user memory
/// before the next context synchronisation event (the `eret` to the thread).
#[inline(always)]
pub unsafe fn set_user_space_unsynchronised(root: u64, asid: u16) {
    TTBR0_EL1.set(root | u64::from(asid) << 48);
}

/// Makes instructions written through the linear map visible to instruction fetch.
pub fn sync_instruction_cache() {
    // SAFETY: cache maintenance has no effect on memory contents.
    unsafe {
        core::arch::asm!("dsb ish", "ic iallu", "dsb ish", "isb", options(nostack));
    }
}
