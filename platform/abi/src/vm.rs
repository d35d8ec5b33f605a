//! Mapping rights and memory attributes for frames and page tables.
//!
//! `Page_Map` takes rights (a [`CapRights`](crate::CapRights) word: Read and
//! Write matter; the mapping gets the rights of the request masked by those of
//! the frame cap, and a mapping without Read is refused) and attributes:
//!
//! | attribute bit        | seL4 name                 | effect                          |
//! |----------------------|---------------------------|---------------------------------|
//! | [`CACHEABLE`]        | seL4_ARM_PageCacheable    | Normal write-back memory        |
//! | [`PARITY`]           | seL4_ARM_ParityEnabled    | accepted, no effect             |
//! | [`EXECUTE_NEVER`]    | seL4_ARM_ExecuteNever     | UXN: EL0 cannot execute         |
//! | [`NORMAL_UNCACHED`]  | **extension**             | Normal non-cacheable (DMA-coherent buffers) |
//!
//! Without `CACHEABLE` or `NORMAL_UNCACHED`, memory is Device-nGnRE, as
//! seL4 maps uncached pages on AArch64. The kernel never lets EL0 map memory
//! it could use to reach kernel memory: frames come only from Untyped caps.

use crate::Word;

/// Normal write-back cacheable memory.
pub const CACHEABLE: Word = 1 << 0;
/// Parity (no effect, accepted for compatibility).
pub const PARITY: Word = 1 << 1;
/// Execute-never at EL0.
pub const EXECUTE_NEVER: Word = 1 << 2;
/// **Extension**: Normal non-cacheable memory.
pub const NORMAL_UNCACHED: Word = 1 << 3;
/// The default attributes (seL4_ARM_Default_VMAttributes).
pub const DEFAULT_ATTRIBUTES: Word = CACHEABLE;

/// The memory type a set of attributes selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryType {
    /// Normal, inner and outer write-back, read/write-allocate.
    NormalWriteBack,
    /// Normal, non-cacheable.
    NormalUncached,
    /// Device-nGnRE.
    Device,
}

impl MemoryType {
    /// The memory type for `attributes` (cacheable wins over uncached).
    pub const fn from_attributes(attributes: Word) -> MemoryType {
        if attributes & CACHEABLE != 0 {
            MemoryType::NormalWriteBack
        } else if attributes & NORMAL_UNCACHED != 0 {
            MemoryType::NormalUncached
        } else {
            MemoryType::Device
        }
    }
}

/// The lowest user virtual address a mapping may start at (page 0 stays
/// unmapped so that null dereferences fault).
pub const USER_VADDR_MIN: Word = 0x1000;
/// One past the highest user virtual address: 48-bit addresses, low half.
pub const USER_VADDR_END: Word = 1 << 47;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_types() {
        assert_eq!(
            MemoryType::from_attributes(DEFAULT_ATTRIBUTES),
            MemoryType::NormalWriteBack
        );
        assert_eq!(
            MemoryType::from_attributes(NORMAL_UNCACHED | EXECUTE_NEVER),
            MemoryType::NormalUncached
        );
        assert_eq!(MemoryType::from_attributes(0), MemoryType::Device);
    }
}
