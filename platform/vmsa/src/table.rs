//! Walking and changing translation tables reached through [`TableMemory`].

use crate::descriptor::{Access, Descriptor, PageAttrs};
use crate::{BLOCK_SIZE, PAGE_SIZE, index, is_user_canonical, level_shift};

/// Access to translation tables by physical address.
///
/// The kernel implements it over its linear map of RAM; the simulator over
/// simulated RAM. `table` is always the physical address of a 4 KiB table
/// this code was given (a VSpace root or a table installed below it), and
/// `index` is below 512.
pub trait TableMemory {
    /// Reads entry `index` of the table at `table`.
    fn read_entry(&self, table: u64, index: usize) -> u64;
    /// Writes entry `index` of the table at `table`.
    fn write_entry(&mut self, table: u64, index: usize, value: u64);
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address the virtual address translates to.
    pub paddr: u64,
    /// The level of the leaf descriptor (3 for a page, 2 or 1 for a block).
    pub level: u8,
    /// The leaf descriptor.
    pub descriptor: Descriptor,
}

impl Translation {
    /// Size of the page or block that mapped the address.
    pub const fn size(&self) -> u64 {
        1 << level_shift(self.level)
    }

    /// The mapping's attributes.
    pub const fn attrs(&self) -> PageAttrs {
        self.descriptor.attrs()
    }

    /// Whether the mapping allows `access` from EL0 (`user`) or EL1.
    pub const fn permits(&self, access: Access, user: bool) -> bool {
        let a = self.attrs();
        if user && !a.user {
            return false;
        }
        match access {
            Access::Read => true,
            Access::Write => a.writable,
            Access::Execute => {
                if user {
                    a.user_exec
                } else {
                    a.kernel_exec && !a.user
                }
            }
        }
    }
}

/// No valid descriptor translates the address: a translation fault at `level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TranslationFault {
    /// The level whose entry was invalid (0..=3).
    pub level: u8,
}

/// Translates `vaddr` through the tables rooted at `root` (a level-0 table).
pub fn walk(
    mem: &impl TableMemory,
    root: u64,
    vaddr: u64,
) -> Result<Translation, TranslationFault> {
    if !is_user_canonical(vaddr) {
        return Err(TranslationFault { level: 0 });
    }
    let mut table = root;
    for level in 0..=3u8 {
        let d = Descriptor(mem.read_entry(table, index(vaddr, level)));
        if !d.is_valid() {
            return Err(TranslationFault { level });
        }
        if d.is_leaf(level) {
            let offset = vaddr & ((1 << level_shift(level)) - 1);
            return Ok(Translation {
                paddr: d.address() + offset,
                level,
                descriptor: d,
            });
        }
        if !d.is_table(level) {
            // A block descriptor at level 0 is reserved: a fault.
            return Err(TranslationFault { level });
        }
        table = d.address();
    }
    Err(TranslationFault { level: 3 })
}

/// Why a table or frame could not be installed or removed. The caller turns
/// these into seL4 error codes (noted on each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The address or frame is not aligned to the frame size (AlignmentError).
    Misaligned,
    /// The address is not a user address (InvalidArgument).
    OutOfRange,
    /// The table at `level` that the operation needs is missing (FailedLookup).
    MissingTable {
        /// The level of the missing table (1..=3).
        level: u8,
    },
    /// Something already maps the address at `level` (DeleteFirst).
    AlreadyMapped {
        /// The level of the occupied entry.
        level: u8,
    },
    /// Every level already has a table for this address (DeleteFirst).
    AlreadyPresent,
}

/// Installs the zeroed table at `table` at the first level below `root` that
/// lacks one for `vaddr`; returns that table's level (1..=3).
pub fn install_table(
    mem: &mut impl TableMemory,
    root: u64,
    vaddr: u64,
    table: u64,
) -> Result<u8, MapError> {
    if !is_user_canonical(vaddr) {
        return Err(MapError::OutOfRange);
    }
    let mut current = root;
    for level in 0..3u8 {
        let i = index(vaddr, level);
        let d = Descriptor(mem.read_entry(current, i));
        if !d.is_valid() {
            mem.write_entry(current, i, Descriptor::table(table).0);
            return Ok(level + 1);
        }
        if !d.is_table(level) {
            return Err(MapError::AlreadyMapped { level });
        }
        current = d.address();
    }
    Err(MapError::AlreadyPresent)
}

/// Removes the table at `table` (installed at `level`) from the tables that
/// translate `vaddr`; returns whether it was found there.
pub fn uninstall_table(
    mem: &mut impl TableMemory,
    root: u64,
    vaddr: u64,
    level: u8,
    table: u64,
) -> bool {
    if !(1..=3).contains(&level) || !is_user_canonical(vaddr) {
        return false;
    }
    let mut current = root;
    for l in 0..level - 1 {
        let d = Descriptor(mem.read_entry(current, index(vaddr, l)));
        if !d.is_table(l) {
            return false;
        }
        current = d.address();
    }
    let i = index(vaddr, level - 1);
    let d = Descriptor(mem.read_entry(current, i));
    if d.is_table(level - 1) && d.address() == table {
        mem.write_entry(current, i, 0);
        true
    } else {
        false
    }
}

/// The leaf level for a frame size: 3 for 4 KiB, 2 for 2 MiB.
fn leaf_level(size: u64) -> Option<u8> {
    match size {
        PAGE_SIZE => Some(3),
        BLOCK_SIZE => Some(2),
        _ => None,
    }
}

/// Finds the table holding the leaf entry for `vaddr` at `leaf`.
fn leaf_table(mem: &impl TableMemory, root: u64, vaddr: u64, leaf: u8) -> Result<u64, MapError> {
    let mut current = root;
    for level in 0..leaf {
        let d = Descriptor(mem.read_entry(current, index(vaddr, level)));
        if !d.is_valid() {
            return Err(MapError::MissingTable { level: level + 1 });
        }
        if !d.is_table(level) {
            return Err(MapError::AlreadyMapped { level });
        }
        current = d.address();
    }
    Ok(current)
}

/// Maps the frame of `size` (4 KiB or 2 MiB) at `paddr` at `vaddr`. Mapping
/// the same frame again at the same address only changes its attributes
/// (returns `Ok(true)`); a fresh mapping returns `Ok(false)`.
pub fn map_frame(
    mem: &mut impl TableMemory,
    root: u64,
    vaddr: u64,
    paddr: u64,
    size: u64,
    attrs: PageAttrs,
) -> Result<bool, MapError> {
    let leaf = leaf_level(size).ok_or(MapError::Misaligned)?;
    if vaddr & (size - 1) != 0 || paddr & (size - 1) != 0 {
        return Err(MapError::Misaligned);
    }
    let end = vaddr.checked_add(size).ok_or(MapError::OutOfRange)?;
    if !is_user_canonical(vaddr) || !is_user_canonical(end - 1) {
        return Err(MapError::OutOfRange);
    }
    let table = leaf_table(mem, root, vaddr, leaf)?;
    let i = index(vaddr, leaf);
    let existing = Descriptor(mem.read_entry(table, i));
    let remap = if existing.is_valid() {
        if existing.is_leaf(leaf) && existing.address() == paddr {
            true
        } else {
            return Err(MapError::AlreadyMapped { level: leaf });
        }
    } else {
        false
    };
    let d = if leaf == 3 {
        Descriptor::page(paddr, attrs)
    } else {
        Descriptor::block(paddr, attrs)
    };
    mem.write_entry(table, i, d.0);
    Ok(remap)
}

/// Removes the mapping of the frame at `paddr` of `size` from `vaddr`;
/// returns whether that frame was mapped there (if something else is, it is
/// left alone).
pub fn unmap_frame(
    mem: &mut impl TableMemory,
    root: u64,
    vaddr: u64,
    paddr: u64,
    size: u64,
) -> bool {
    let Some(leaf) = leaf_level(size) else {
        return false;
    };
    if vaddr & (size - 1) != 0 || !is_user_canonical(vaddr) {
        return false;
    }
    let Ok(table) = leaf_table(mem, root, vaddr, leaf) else {
        return false;
    };
    let i = index(vaddr, leaf);
    let d = Descriptor(mem.read_entry(table, i));
    if d.is_leaf(leaf) && d.address() == paddr {
        mem.write_entry(table, i, 0);
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryType;
    use std::collections::HashMap;

    /// Tables as a map from (table, index) to entry; absent entries are 0.
    #[derive(Default)]
    struct Tables(HashMap<(u64, usize), u64>);

    impl TableMemory for Tables {
        fn read_entry(&self, table: u64, index: usize) -> u64 {
            assert!(index < 512 && table.is_multiple_of(4096));
            self.0.get(&(table, index)).copied().unwrap_or(0)
        }
        fn write_entry(&mut self, table: u64, index: usize, value: u64) {
            assert!(index < 512 && table.is_multiple_of(4096));
            self.0.insert((table, index), value);
        }
    }

    const ROOT: u64 = 0x1000_0000;

    fn with_tables(vaddr: u64, levels: u8) -> Tables {
        let mut t = Tables::default();
        for n in 1..=levels {
            let level = install_table(&mut t, ROOT, vaddr, ROOT + n as u64 * 0x1000).unwrap();
            assert_eq!(level, n);
        }
        t
    }

    #[test]
    fn map_walk_unmap_a_page() {
        let va = 0x40_1000;
        let mut t = with_tables(va, 3);
        assert_eq!(
            install_table(&mut t, ROOT, va, 0x9000_0000),
            Err(MapError::AlreadyPresent)
        );
        assert_eq!(
            map_frame(&mut t, ROOT, va, 0x4000_0000, PAGE_SIZE, PageAttrs::USER_RW),
            Ok(false)
        );
        let tr = walk(&t, ROOT, va + 0x123).unwrap();
        assert_eq!(tr.paddr, 0x4000_0123);
        assert_eq!(tr.level, 3);
        assert_eq!(tr.size(), PAGE_SIZE);
        assert!(tr.permits(Access::Write, true));
        assert!(!tr.permits(Access::Execute, true));
        // The neighbouring page is not mapped: translation fault at level 3.
        assert_eq!(
            walk(&t, ROOT, va + 0x1000),
            Err(TranslationFault { level: 3 })
        );
        // A second frame at the same address is refused.
        assert_eq!(
            map_frame(&mut t, ROOT, va, 0x4000_1000, PAGE_SIZE, PageAttrs::USER_RW),
            Err(MapError::AlreadyMapped { level: 3 })
        );
        // The same frame again changes rights.
        let ro = PageAttrs {
            writable: false,
            ..PageAttrs::USER_RW
        };
        assert_eq!(
            map_frame(&mut t, ROOT, va, 0x4000_0000, PAGE_SIZE, ro),
            Ok(true)
        );
        assert!(!walk(&t, ROOT, va).unwrap().permits(Access::Write, true));
        // Unmapping another frame's address does nothing; the right one works.
        assert!(!unmap_frame(&mut t, ROOT, va, 0x4000_1000, PAGE_SIZE));
        assert!(unmap_frame(&mut t, ROOT, va, 0x4000_0000, PAGE_SIZE));
        assert_eq!(walk(&t, ROOT, va), Err(TranslationFault { level: 3 }));
    }

    #[test]
    fn blocks_need_two_levels_of_tables() {
        let va = 0x20_0000 * 5;
        let mut t = with_tables(va, 1);
        assert_eq!(
            map_frame(
                &mut t,
                ROOT,
                va,
                0x4020_0000,
                BLOCK_SIZE,
                PageAttrs::USER_RW
            ),
            Err(MapError::MissingTable { level: 2 })
        );
        install_table(&mut t, ROOT, va, ROOT + 0x2000).unwrap();
        map_frame(
            &mut t,
            ROOT,
            va,
            0x4020_0000,
            BLOCK_SIZE,
            PageAttrs::USER_RW,
        )
        .unwrap();
        let tr = walk(&t, ROOT, va + 0x1_2345).unwrap();
        assert_eq!((tr.level, tr.paddr), (2, 0x4021_2345));
        // A page table cannot go under a block.
        assert_eq!(
            install_table(&mut t, ROOT, va, ROOT + 0x3000),
            Err(MapError::AlreadyMapped { level: 2 })
        );
        assert!(unmap_frame(&mut t, ROOT, va, 0x4020_0000, BLOCK_SIZE));
    }

    #[test]
    fn bad_requests_change_nothing() {
        let mut t = with_tables(0x1000, 3);
        let before = t.0.clone();
        let rw = PageAttrs::USER_RW;
        assert_eq!(
            map_frame(&mut t, ROOT, 0x1001, 0x4000_0000, PAGE_SIZE, rw),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            map_frame(&mut t, ROOT, 0x1000, 0x4000_0800, PAGE_SIZE, rw),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            map_frame(&mut t, ROOT, 0x1000, 0x4000_0000, 8192, rw),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            map_frame(&mut t, ROOT, 1 << 48, 0x4000_0000, PAGE_SIZE, rw),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            map_frame(&mut t, ROOT, !0xfff, 0x4000_0000, PAGE_SIZE, rw),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            map_frame(&mut t, ROOT, 0x8000_0000, 0x4000_0000, PAGE_SIZE, rw),
            Err(MapError::MissingTable { level: 2 })
        );
        assert_eq!(t.0, before);
    }

    #[test]
    fn tables_can_be_removed() {
        let va = 0x1234_5000;
        let mut t = with_tables(va, 3);
        assert!(!uninstall_table(&mut t, ROOT, va, 3, 0xdead_0000));
        assert!(uninstall_table(&mut t, ROOT, va, 3, ROOT + 0x3000));
        assert_eq!(
            map_frame(&mut t, ROOT, va, 0x4000_0000, PAGE_SIZE, PageAttrs::USER_RW),
            Err(MapError::MissingTable { level: 3 })
        );
    }

    #[test]
    fn permissions() {
        let va = 0x5000;
        let mut t = with_tables(va, 3);
        let kernel_only = PageAttrs {
            user: false,
            kernel_exec: true,
            global: true,
            ..PageAttrs::USER_RW
        };
        map_frame(&mut t, ROOT, va, 0x4000_0000, PAGE_SIZE, kernel_only).unwrap();
        let tr = walk(&t, ROOT, va).unwrap();
        assert!(!tr.permits(Access::Read, true));
        assert!(tr.permits(Access::Read, false));
        assert!(tr.permits(Access::Execute, false));
        let dev = PageAttrs {
            memory: MemoryType::Device,
            ..PageAttrs::USER_RW
        };
        unmap_frame(&mut t, ROOT, va, 0x4000_0000, PAGE_SIZE);
        map_frame(&mut t, ROOT, va, 0x0900_0000, PAGE_SIZE, dev).unwrap();
        assert_eq!(
            walk(&t, ROOT, va).unwrap().attrs().memory,
            MemoryType::Device
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Random maps and unmaps of pages in a small window agree with a
            /// model map from page to frame; walk sees exactly the model.
            #[test]
            fn walk_agrees_with_a_model(ops in prop::collection::vec((0u64..64, 0u64..8, any::<bool>()), 1..200)) {
                let base = 0x7f00_0000u64;
                let mut t = with_tables(base, 3);
                let mut model: HashMap<u64, u64> = HashMap::new();
                for (page, frame, map) in ops {
                    let va = base + page * PAGE_SIZE;
                    let pa = 0x4000_0000 + frame * PAGE_SIZE;
                    if map {
                        let r = map_frame(&mut t, ROOT, va, pa, PAGE_SIZE, PageAttrs::USER_RW);
                        match model.get(&va) {
                            None => { prop_assert_eq!(r, Ok(false)); model.insert(va, pa); }
                            Some(&old) if old == pa => prop_assert_eq!(r, Ok(true)),
                            Some(_) => prop_assert_eq!(r, Err(MapError::AlreadyMapped { level: 3 })),
                        }
                    } else {
                        let r = unmap_frame(&mut t, ROOT, va, pa, PAGE_SIZE);
                        prop_assert_eq!(r, model.get(&va) == Some(&pa));
                        if r { model.remove(&va); }
                    }
                    for p in 0..64 {
                        let v = base + p * PAGE_SIZE;
                        let seen = walk(&t, ROOT, v + 8).ok().map(|tr| tr.paddr - 8);
                        prop_assert_eq!(seen, model.get(&v).copied());
                    }
                }
            }
        }
    }
}
