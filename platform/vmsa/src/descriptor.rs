//! Descriptor encoding: tables, pages, blocks and their attributes.

use crate::{MAIR_DEVICE_NGNRE, MAIR_NORMAL_NC, MAIR_NORMAL_WB};

const VALID: u64 = 1 << 0;
const TABLE_OR_PAGE: u64 = 1 << 1;
const ATTR_INDX_SHIFT: u32 = 2;
const AP_EL0: u64 = 1 << 6; // AP[1]: EL0 access
const AP_RO: u64 = 1 << 7; // AP[2]: read-only
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const NG: u64 = 1 << 11;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
/// Output-address bits 47:12.
const OA_MASK: u64 = 0x0000_ffff_ffff_f000;

/// A memory type, selected through MAIR_EL1 by the AttrIndx field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryType {
    /// Normal, write-back cacheable.
    NormalWriteBack,
    /// Normal, non-cacheable.
    NormalUncached,
    /// Device-nGnRE.
    Device,
}

/// The permissions and memory type of a page or block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageAttrs {
    /// Accessible from EL0 (user).
    pub user: bool,
    /// Writable (otherwise read-only).
    pub writable: bool,
    /// Executable at EL0 (otherwise UXN). EL1 never executes user pages (PXN).
    pub user_exec: bool,
    /// Executable at EL1 (otherwise PXN).
    pub kernel_exec: bool,
    /// Memory type.
    pub memory: MemoryType,
    /// Global (nG clear): kernel mappings; user mappings are per ASID.
    pub global: bool,
}

impl PageAttrs {
    /// A user read/write, non-executable, normal cacheable mapping.
    pub const USER_RW: PageAttrs = PageAttrs {
        user: true,
        writable: true,
        user_exec: false,
        kernel_exec: false,
        memory: MemoryType::NormalWriteBack,
        global: false,
    };

    /// The descriptor bits other than the type and output address.
    const fn bits(&self) -> u64 {
        let attr = match self.memory {
            MemoryType::NormalWriteBack => MAIR_NORMAL_WB,
            MemoryType::NormalUncached => MAIR_NORMAL_NC,
            MemoryType::Device => MAIR_DEVICE_NGNRE,
        };
        let mut bits = attr << ATTR_INDX_SHIFT | AF;
        if !matches!(self.memory, MemoryType::Device) {
            bits |= SH_INNER;
        }
        if self.user {
            bits |= AP_EL0;
        }
        if !self.writable {
            bits |= AP_RO;
        }
        if !self.user_exec {
            bits |= UXN;
        }
        if !self.kernel_exec {
            bits |= PXN;
        }
        if !self.global {
            bits |= NG;
        }
        bits
    }

    const fn from_bits(d: u64) -> PageAttrs {
        let memory = match (d >> ATTR_INDX_SHIFT) & 0b111 {
            MAIR_NORMAL_WB => MemoryType::NormalWriteBack,
            MAIR_NORMAL_NC => MemoryType::NormalUncached,
            _ => MemoryType::Device,
        };
        PageAttrs {
            user: d & AP_EL0 != 0,
            writable: d & AP_RO == 0,
            user_exec: d & UXN == 0,
            kernel_exec: d & PXN == 0,
            memory,
            global: d & NG == 0,
        }
    }
}

/// The kind of access being translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// A data load.
    Read,
    /// A data store.
    Write,
    /// An instruction fetch.
    Execute,
}

/// One translation-table entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Descriptor(pub u64);

impl Descriptor {
    /// The invalid descriptor.
    pub const INVALID: Descriptor = Descriptor(0);

    /// A table descriptor pointing at the next-level table at `paddr`.
    pub const fn table(paddr: u64) -> Descriptor {
        Descriptor(paddr & OA_MASK | TABLE_OR_PAGE | VALID)
    }

    /// A level-3 page descriptor.
    pub const fn page(paddr: u64, attrs: PageAttrs) -> Descriptor {
        Descriptor(paddr & OA_MASK | attrs.bits() | TABLE_OR_PAGE | VALID)
    }

    /// A level-1 or level-2 block descriptor.
    pub const fn block(paddr: u64, attrs: PageAttrs) -> Descriptor {
        Descriptor(paddr & OA_MASK | attrs.bits() | VALID)
    }

    /// Whether the entry is valid.
    pub const fn is_valid(self) -> bool {
        self.0 & VALID != 0
    }

    /// Whether, read at `level`, the entry points to a next-level table.
    pub const fn is_table(self, level: u8) -> bool {
        level < 3 && self.0 & 0b11 == 0b11
    }

    /// Whether, read at `level`, the entry maps memory (a page or a block).
    pub const fn is_leaf(self, level: u8) -> bool {
        match level {
            3 => self.0 & 0b11 == 0b11,
            1 | 2 => self.0 & 0b11 == 0b01,
            _ => false,
        }
    }

    /// The output address (next table, page or block base).
    pub const fn address(self) -> u64 {
        self.0 & OA_MASK
    }

    /// The attributes of a page or block descriptor.
    pub const fn attrs(self) -> PageAttrs {
        PageAttrs::from_bits(self.0)
    }
}

impl core::fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Descriptor({:#018x})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_bits_are_the_arm_arms() {
        let d = Descriptor::page(0x4000_1000, PageAttrs::USER_RW);
        // valid page, AttrIndx 1, AP 01 (EL0 RW), SH inner, AF, nG, PXN, UXN.
        assert_eq!(
            d.0,
            0x4000_1000
                | 0b11
                | 1 << 2
                | 0b01 << 6
                | 0b11 << 8
                | 1 << 10
                | 1 << 11
                | 1 << 53
                | 1 << 54
        );
        assert!(d.is_leaf(3) && !d.is_table(3));
        assert_eq!(d.address(), 0x4000_1000);
        assert_eq!(d.attrs(), PageAttrs::USER_RW);
    }

    #[test]
    fn attributes_round_trip() {
        for memory in [
            MemoryType::NormalWriteBack,
            MemoryType::NormalUncached,
            MemoryType::Device,
        ] {
            for bits in 0..32u32 {
                let a = PageAttrs {
                    user: bits & 1 != 0,
                    writable: bits & 2 != 0,
                    user_exec: bits & 4 != 0,
                    kernel_exec: bits & 8 != 0,
                    global: bits & 16 != 0,
                    memory,
                };
                assert_eq!(Descriptor::block(0x20_0000, a).attrs(), a);
                assert_eq!(Descriptor::page(0x1000, a).attrs(), a);
            }
        }
    }

    #[test]
    fn block_and_table_are_told_apart_by_level() {
        let b = Descriptor::block(0x4020_0000, PageAttrs::USER_RW);
        assert!(b.is_leaf(2) && !b.is_table(2) && !b.is_leaf(3));
        let t = Descriptor::table(0x4000_0000);
        assert!(t.is_table(0) && t.is_table(2) && !t.is_leaf(2));
        assert!(t.is_leaf(3)); // the same bits at level 3 are a page
        assert!(!Descriptor::INVALID.is_valid());
    }
}
