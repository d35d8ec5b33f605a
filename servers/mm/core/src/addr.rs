//! Addresses, page sizes and page frame numbers.
//!
//! Physical and virtual addresses are plain `u64`s wrapped in newtypes so that
//! the two are never confused; a page frame number (PFN) is a physical
//! address divided by [`PAGE_SIZE`].

use core::fmt;

/// log2 of the base page size (4 KiB, the aarch64 4 KiB granule).
pub const PAGE_SHIFT: u32 = 12;
/// The base page size in bytes.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// log2 of the large page (2 MiB block) size.
pub const LARGE_PAGE_SHIFT: u32 = 21;
/// The large page (2 MiB block) size in bytes.
pub const LARGE_PAGE_SIZE: u64 = 1 << LARGE_PAGE_SHIFT;

/// A physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysAddr(pub u64);

/// A virtual address in some address space.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VirtAddr(pub u64);

/// A page frame number: a physical address divided by the page size.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pfn(pub u64);

impl PhysAddr {
    /// The frame this address lies in.
    pub const fn pfn(self) -> Pfn {
        Pfn(self.0 >> PAGE_SHIFT)
    }
    /// Whether the address is a multiple of `align` (a power of two).
    pub const fn is_aligned(self, align: u64) -> bool {
        self.0 & (align - 1) == 0
    }
}

impl VirtAddr {
    /// Whether the address is a multiple of `align` (a power of two).
    pub const fn is_aligned(self, align: u64) -> bool {
        self.0 & (align - 1) == 0
    }
}

impl Pfn {
    /// The physical address of the frame's first byte.
    pub const fn addr(self) -> PhysAddr {
        PhysAddr(self.0 << PAGE_SHIFT)
    }
}

impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysAddr({:#x})", self.0)
    }
}

impl fmt::Debug for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VirtAddr({:#x})", self.0)
    }
}

impl fmt::Debug for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pfn({:#x})", self.0)
    }
}

/// Rounds `value` up to a multiple of `align` (a power of two); `None` on overflow.
pub const fn align_up(value: u64, align: u64) -> Option<u64> {
    match value.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Rounds `value` down to a multiple of `align` (a power of two).
pub const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// The number of pages needed to hold `bytes`; `None` on overflow.
pub const fn pages_for(bytes: u64) -> Option<u64> {
    match align_up(bytes, PAGE_SIZE) {
        Some(v) => Some(v >> PAGE_SHIFT),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding() {
        assert_eq!(align_up(0, 4096), Some(0));
        assert_eq!(align_up(1, 4096), Some(4096));
        assert_eq!(align_up(4096, 4096), Some(4096));
        assert_eq!(align_up(u64::MAX, 4096), None);
        assert_eq!(align_down(4097, 4096), 4096);
        assert_eq!(pages_for(1), Some(1));
        assert_eq!(pages_for(8192), Some(2));
        assert_eq!(pages_for(u64::MAX), None);
    }

    #[test]
    fn pfn_round_trip() {
        let a = PhysAddr(0x4000_1000);
        assert_eq!(a.pfn(), Pfn(0x40001));
        assert_eq!(a.pfn().addr(), a);
        assert!(a.is_aligned(PAGE_SIZE));
        assert!(!PhysAddr(0x4000_1008).is_aligned(PAGE_SIZE));
    }
}
