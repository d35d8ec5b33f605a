//! VMSAv8-64 translation tables: one implementation for the kernel and the simulator.
//!
//! The aarch64 kernel builds its processes' page tables with this code, and
//! the simulator stores its processes' page tables in simulated RAM in the
//! same format and walks them with the same [`walk`] for every load and store
//! — so the simulator tests the real thing.
//!
//! Scope: stage 1, EL0/EL1 regime, 4 KiB granule, 48-bit virtual addresses
//! (four levels, 0..=3, of 512 entries), 4 KiB pages at level 3 and 2 MiB
//! blocks at level 2. Descriptor bits follow the Arm ARM (D8.3, "Translation
//! table descriptor formats"):
//!
//! ```text
//! bits  1:0   0b11 table (levels 0-2) or page (level 3); 0b01 block (level 1-2); x0 invalid
//! bits  4:2   AttrIndx: index into MAIR_EL1 (see `MAIR_*` constants)
//! bits  7:6   AP[2:1]: 00 EL1 RW, 01 EL0+EL1 RW, 10 EL1 RO, 11 EL0+EL1 RO
//! bits  9:8   SH: 11 inner shareable
//! bit   10    AF: access flag (set, so first access does not fault)
//! bit   11    nG: not global (set for user mappings: tagged by ASID)
//! bits 47:12  output address
//! bit   53    PXN: privileged execute-never
//! bit   54    UXN: unprivileged execute-never
//! ```
//!
//! Tables are named by physical address and reached through [`TableMemory`],
//! which the kernel implements over its linear map of RAM and the simulator
//! over simulated RAM. The code is 100% safe Rust and does no allocation:
//! new tables are provided by the caller (in seL4 fashion, PageTable objects
//! retyped from Untyped memory and installed with [`install_table`]).
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

mod descriptor;
mod table;

pub use descriptor::{Access, Descriptor, MemoryType, PageAttrs};
pub use table::{
    MapError, TableMemory, Translation, TranslationFault, install_table, map_frame,
    uninstall_table, unmap_frame, walk,
};

/// Entries in one table.
pub const ENTRIES: usize = 512;
/// Size of one table in bytes.
pub const TABLE_SIZE: u64 = 4096;
/// Size of a level-3 page.
pub const PAGE_SIZE: u64 = 4096;
/// Size of a level-2 block.
pub const BLOCK_SIZE: u64 = 2 << 20;
/// The top level.
pub const TOP_LEVEL: u8 = 0;
/// The level of page descriptors.
pub const PAGE_LEVEL: u8 = 3;
/// Bits of virtual address translated.
pub const VA_BITS: u32 = 48;

/// MAIR_EL1 attribute index for Device-nGnRE (MAIR byte 0x04).
pub const MAIR_DEVICE_NGNRE: u64 = 0;
/// MAIR_EL1 attribute index for Normal write-back read/write-allocate (0xff).
pub const MAIR_NORMAL_WB: u64 = 1;
/// MAIR_EL1 attribute index for Normal non-cacheable (0x44).
pub const MAIR_NORMAL_NC: u64 = 2;
/// The MAIR_EL1 value that gives the indices above their meaning.
pub const MAIR_VALUE: u64 =
    0x04 << (8 * MAIR_DEVICE_NGNRE) | 0xff << (8 * MAIR_NORMAL_WB) | 0x44 << (8 * MAIR_NORMAL_NC);

/// The index of `vaddr`'s entry in a table at `level` (0..=3).
pub const fn index(vaddr: u64, level: u8) -> usize {
    ((vaddr >> level_shift(level)) & (ENTRIES as u64 - 1)) as usize
}

/// log2 of the size of the region one entry at `level` covers.
pub const fn level_shift(level: u8) -> u32 {
    12 + 9 * (3 - level as u32)
}

/// Whether `vaddr` is a canonical low-half (TTBR0) address.
pub const fn is_user_canonical(vaddr: u64) -> bool {
    vaddr >> VA_BITS == 0
}
