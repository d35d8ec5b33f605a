//! Kernel object types, their sizes, and the rules of Untyped retype.
//!
//! Every kernel object is carved out of an Untyped capability's memory by
//! `Untyped_Retype`, as in seL4: objects are aligned to their size, placed at
//! the Untyped's watermark (which only moves forward until the Untyped's
//! children are all deleted and it is revoked), and a device Untyped can only
//! become frames or smaller device Untypeds. Numbering and sizes are seL4's
//! on AArch64 (non-MCS, 64-bit, 4 KiB granule, 48-bit virtual addresses).

use crate::Word;

/// A kernel object type, as passed to `Untyped_Retype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum ObjectType {
    /// Untyped memory of `2^size_bits` bytes (`MIN_UNTYPED_BITS..=MAX_UNTYPED_BITS`).
    Untyped = 0,
    /// A thread control block.
    Tcb = 1,
    /// A synchronous IPC endpoint.
    Endpoint = 2,
    /// A notification: a word of signal bits.
    Notification = 3,
    /// A CNode of `2^size_bits` slots (seL4_CapTableObject).
    CNode = 4,
    /// A 1 GiB frame (seL4_ARM_HugePageObject). Defined for numbering;
    /// these kernels refuse to create it (InvalidArgument).
    HugePage = 5,
    /// The top-level translation table of an address space (seL4_ARM_VSpaceObject).
    VSpace = 6,
    /// A 4 KiB frame (seL4_ARM_SmallPageObject).
    SmallPage = 7,
    /// A 2 MiB frame (seL4_ARM_LargePageObject).
    LargePage = 8,
    /// A translation table below the top level (seL4_ARM_PageTableObject).
    PageTable = 9,
}

/// log2 of a TCB's size (seL4_TCBBits on AArch64).
pub const TCB_BITS: u32 = 11;
/// log2 of an endpoint's size.
pub const ENDPOINT_BITS: u32 = 4;
/// log2 of a notification's size.
pub const NOTIFICATION_BITS: u32 = 5;
/// log2 of a CNode slot's size (seL4_SlotBits).
pub const SLOT_BITS: u32 = 5;
/// log2 of a small page.
pub const PAGE_BITS: u32 = 12;
/// log2 of a large page (2 MiB block).
pub const LARGE_PAGE_BITS: u32 = 21;
/// log2 of a huge page (1 GiB block).
pub const HUGE_PAGE_BITS: u32 = 30;
/// log2 of a page table's size.
pub const PAGE_TABLE_BITS: u32 = 12;
/// log2 of a VSpace (top-level table) size.
pub const VSPACE_BITS: u32 = 12;
/// The smallest Untyped (seL4_MinUntypedBits).
pub const MIN_UNTYPED_BITS: u32 = 4;
/// The largest Untyped (seL4_MaxUntypedBits).
pub const MAX_UNTYPED_BITS: u32 = 47;
/// The most objects one retype creates (CONFIG_RETYPE_FAN_OUT_LIMIT).
pub const MAX_RETYPE_COUNT: Word = 256;
/// The largest CNode radix a retype accepts (so that the CNode fits an Untyped).
pub const MAX_CNODE_RADIX: u32 = MAX_UNTYPED_BITS - SLOT_BITS;

impl ObjectType {
    /// The type for a retype argument; `None` for an unknown number.
    pub const fn from_word(word: Word) -> Option<ObjectType> {
        Some(match word {
            0 => ObjectType::Untyped,
            1 => ObjectType::Tcb,
            2 => ObjectType::Endpoint,
            3 => ObjectType::Notification,
            4 => ObjectType::CNode,
            5 => ObjectType::HugePage,
            6 => ObjectType::VSpace,
            7 => ObjectType::SmallPage,
            8 => ObjectType::LargePage,
            9 => ObjectType::PageTable,
            _ => return None,
        })
    }

    /// The number passed to retype.
    pub const fn word(self) -> Word {
        self as Word
    }

    /// Whether objects of this type are frames (mappable memory).
    pub const fn is_frame(self) -> bool {
        matches!(
            self,
            ObjectType::SmallPage | ObjectType::LargePage | ObjectType::HugePage
        )
    }

    /// log2 of one object's size, given the retype's `size_bits` argument
    /// (used only by Untyped and CNode). `None` when `size_bits` is out of
    /// range for a variable-size type: Untyped needs
    /// `MIN_UNTYPED_BITS..=MAX_UNTYPED_BITS`, a CNode `1..=MAX_CNODE_RADIX`.
    pub const fn size_bits(self, size_bits: Word) -> Option<u32> {
        Some(match self {
            ObjectType::Untyped => {
                if size_bits < MIN_UNTYPED_BITS as Word || size_bits > MAX_UNTYPED_BITS as Word {
                    return None;
                }
                size_bits as u32
            }
            ObjectType::CNode => {
                if size_bits < 1 || size_bits > MAX_CNODE_RADIX as Word {
                    return None;
                }
                size_bits as u32 + SLOT_BITS
            }
            ObjectType::Tcb => TCB_BITS,
            ObjectType::Endpoint => ENDPOINT_BITS,
            ObjectType::Notification => NOTIFICATION_BITS,
            ObjectType::HugePage => HUGE_PAGE_BITS,
            ObjectType::VSpace => VSPACE_BITS,
            ObjectType::SmallPage => PAGE_BITS,
            ObjectType::LargePage => LARGE_PAGE_BITS,
            ObjectType::PageTable => PAGE_TABLE_BITS,
        })
    }
}

/// Where the next object of `2^object_bits` bytes goes in an Untyped whose
/// memory starts at `base` with `2^untyped_bits` bytes, `watermark` bytes of
/// which are used: the watermark rounded up to the object's alignment.
/// Returns the offset of the first object, or `None` when `count` objects do
/// not fit (the caller replies NotEnoughMemory with the bytes left).
pub const fn retype_offset(
    untyped_bits: u32,
    watermark: Word,
    object_bits: u32,
    count: Word,
) -> Option<Word> {
    if object_bits > untyped_bits || object_bits >= 64 {
        return None;
    }
    let align = 1u64 << object_bits;
    let start = match watermark.checked_add(align - 1) {
        Some(v) => v & !(align - 1),
        None => return None,
    };
    let bytes = match count.checked_mul(align) {
        Some(b) => b,
        None => return None,
    };
    let end = match start.checked_add(bytes) {
        Some(e) => e,
        None => return None,
    };
    let size = if untyped_bits >= 64 {
        Word::MAX
    } else {
        1u64 << untyped_bits
    };
    if end > size { None } else { Some(start) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ObjectType::Tcb.size_bits(0), Some(11));
        assert_eq!(ObjectType::CNode.size_bits(8), Some(13));
        assert_eq!(ObjectType::CNode.size_bits(0), None);
        assert_eq!(ObjectType::Untyped.size_bits(3), None);
        assert_eq!(ObjectType::Untyped.size_bits(48), None);
        assert_eq!(ObjectType::Untyped.size_bits(12), Some(12));
        assert_eq!(ObjectType::LargePage.size_bits(99), Some(21));
        for w in 0..10 {
            assert_eq!(ObjectType::from_word(w).unwrap().word(), w);
        }
        assert_eq!(ObjectType::from_word(10), None);
    }

    #[test]
    fn retype_aligns_past_the_watermark() {
        // 64 KiB untyped, 16 bytes used: a 4 KiB page goes at 4 KiB.
        assert_eq!(retype_offset(16, 16, 12, 1), Some(4096));
        // 15 pages fit after it, 16 do not.
        assert_eq!(retype_offset(16, 4096, 12, 15), Some(4096));
        assert_eq!(retype_offset(16, 4096, 12, 16), None);
        // An object larger than the untyped never fits.
        assert_eq!(retype_offset(12, 0, 21, 1), None);
        // Overflow is "does not fit".
        assert_eq!(retype_offset(47, 0, 12, Word::MAX), None);
    }
}
