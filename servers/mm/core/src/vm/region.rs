//! Regions: a range of one address space with a protection, flags and a backing.
//!
//! A [`Region`] is what Linux calls a VMA: a page-aligned range with one
//! protection, one set of flags and one kind of backing ([`RegionKind`]). The
//! kinds that have an offset into their backing (file, device, DMA, shared)
//! record the offset of the region's *first* page; a page's own offset is that
//! plus its index in the region, which [`Region::backing_at`] computes. So
//! splitting a region advances the offset of the upper piece, and two
//! neighbours merge only when the offsets continue one another.

use core::fmt;
use core::ops::BitOr;

use super::{ObjectId, SharedId, VmError};
use crate::addr::{PAGE_SHIFT, PAGE_SIZE, PhysAddr, VirtAddr};

/// Access permissions of a region: any combination of read, write, execute.
///
/// The bits match Linux's `PROT_READ`, `PROT_WRITE`, `PROT_EXEC`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Prot(u8);

impl Prot {
    /// No access (`PROT_NONE`).
    pub const NONE: Prot = Prot(0);
    /// Readable.
    pub const READ: Prot = Prot(1);
    /// Writable.
    pub const WRITE: Prot = Prot(2);
    /// Executable.
    pub const EXEC: Prot = Prot(4);
    /// Readable and writable.
    pub const RW: Prot = Prot(3);
    /// Readable and executable.
    pub const RX: Prot = Prot(5);
    /// Every permission.
    pub const RWX: Prot = Prot(7);

    /// The protection with these bits, or `None` if a bit other than read,
    /// write and execute is set (for validating a client's request).
    pub const fn from_bits(bits: u8) -> Option<Prot> {
        if bits & !Prot::RWX.0 == 0 {
            Some(Prot(bits))
        } else {
            None
        }
    }

    /// The bits: 1 read, 2 write, 4 execute.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every permission of `other` is in `self`.
    pub const fn contains(self, other: Prot) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no permission is granted.
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Prot {
    type Output = Prot;
    fn bitor(self, rhs: Prot) -> Prot {
        Prot(self.0 | rhs.0)
    }
}

impl fmt::Debug for Prot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |p: Prot, ch: char| if self.contains(p) { ch } else { '-' };
        write!(
            f,
            "Prot({}{}{})",
            c(Prot::READ, 'r'),
            c(Prot::WRITE, 'w'),
            c(Prot::EXEC, 'x')
        )
    }
}

/// Flags of a region beyond its protection.
///
/// This module gives meaning to one bit, [`RegionFlags::NO_MERGE`]; every
/// other bit is the server's (e.g. locked, no-cache, don't-copy). Regions
/// merge only when their flags are equal, so any flag the server sets keeps
/// regions apart from neighbours without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RegionFlags(pub u32);

impl RegionFlags {
    /// No flags.
    pub const NONE: RegionFlags = RegionFlags(0);
    /// Never merge this region with a neighbour, and never heal its splits:
    /// each `map` of such a region stays its own region (pieces of it may
    /// still be split off by unmap and protect). Linux keeps `VM_SPECIAL`
    /// mappings apart the same way; the server uses it for areas it must find
    /// whole again by address, such as a `vmalloc` area at `vfree`.
    pub const NO_MERGE: RegionFlags = RegionFlags(1 << 31);

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: RegionFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for RegionFlags {
    type Output = RegionFlags;
    fn bitor(self, rhs: RegionFlags) -> RegionFlags {
        RegionFlags(self.0 | rhs.0)
    }
}

/// What backs a region's pages. Offsets are those of the region's first page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionKind {
    /// Private memory, zero-filled on first touch (or populated eagerly, as
    /// for `vmalloc`); the server tracks its pages by address.
    Anonymous,
    /// Pages of a backing object through the page cache (`mmap` of a file).
    FileBacked {
        /// The object.
        object: ObjectId,
        /// The object page (offset in pages) that the region's first page maps.
        offset: u64,
    },
    /// Physical memory outside the frame allocator (MMIO): `remap_pfn_range`,
    /// `vm_iomap_memory`. Page `i` maps `phys + i * PAGE_SIZE`.
    Device {
        /// The physical address of the region's first page (page-aligned).
        phys: PhysAddr,
    },
    /// Physically contiguous, non-cacheable memory of a DMA allocation.
    /// Page `i` maps `bus + i * PAGE_SIZE`.
    DmaCoherent {
        /// The bus (on QEMU `virt`: physical) address of the first page.
        bus: PhysAddr,
    },
    /// Pages of a shared-memory object mapped by several clients.
    Shared {
        /// The shared object.
        id: SharedId,
        /// The object page that the region's first page maps.
        offset: u64,
    },
    /// A reserved, inaccessible range: a fault in it is an error, nothing is
    /// placed there, and its protection is always [`Prot::NONE`].
    Guard,
}

impl RegionKind {
    /// This kind as seen `pages` pages further into the region.
    ///
    /// Callers only advance within a validated region, whose backing offsets
    /// were checked not to overflow; the arithmetic saturates regardless.
    pub(super) fn advanced(self, pages: u64) -> RegionKind {
        let bytes = pages.saturating_mul(PAGE_SIZE);
        match self {
            RegionKind::Anonymous | RegionKind::Guard => self,
            RegionKind::FileBacked { object, offset } => RegionKind::FileBacked {
                object,
                offset: offset.saturating_add(pages),
            },
            RegionKind::Device { phys } => RegionKind::Device {
                phys: PhysAddr(phys.0.saturating_add(bytes)),
            },
            RegionKind::DmaCoherent { bus } => RegionKind::DmaCoherent {
                bus: PhysAddr(bus.0.saturating_add(bytes)),
            },
            RegionKind::Shared { id, offset } => RegionKind::Shared {
                id,
                offset: offset.saturating_add(pages),
            },
        }
    }

    /// Whether a region of `len` bytes with this kind has a valid backing:
    /// physical bases page-aligned, and no offset overflowing at its end.
    pub(super) fn fits(self, len: u64) -> bool {
        let pages = len >> PAGE_SHIFT;
        match self {
            RegionKind::Anonymous | RegionKind::Guard => true,
            RegionKind::FileBacked { offset, .. } | RegionKind::Shared { offset, .. } => {
                offset.checked_add(pages).is_some()
            }
            RegionKind::Device { phys: base } | RegionKind::DmaCoherent { bus: base } => {
                base.is_aligned(PAGE_SIZE) && base.0.checked_add(len).is_some()
            }
        }
    }

    /// Whether `next`, placed right after a region of `len` bytes of this
    /// kind, continues it: same kind, same object, contiguous offsets.
    pub(super) fn continued_by(self, len: u64, next: RegionKind) -> bool {
        let pages = len >> PAGE_SHIFT;
        match (self, next) {
            (RegionKind::Anonymous, RegionKind::Anonymous)
            | (RegionKind::Guard, RegionKind::Guard) => true,
            (
                RegionKind::FileBacked {
                    object: a,
                    offset: x,
                },
                RegionKind::FileBacked {
                    object: b,
                    offset: y,
                },
            ) => a == b && x.checked_add(pages) == Some(y),
            (RegionKind::Shared { id: a, offset: x }, RegionKind::Shared { id: b, offset: y }) => {
                a == b && x.checked_add(pages) == Some(y)
            }
            (RegionKind::Device { phys: a }, RegionKind::Device { phys: b })
            | (RegionKind::DmaCoherent { bus: a }, RegionKind::DmaCoherent { bus: b }) => {
                a.0.checked_add(len) == Some(b.0)
            }
            _ => false,
        }
    }
}

/// What backs one page: the page's own offset into the region's backing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backing {
    /// Private anonymous memory.
    Anonymous,
    /// Page `page` of `object`.
    File {
        /// The object.
        object: ObjectId,
        /// The object page (offset in pages).
        page: u64,
    },
    /// The device page at `phys`.
    Device {
        /// Its physical address.
        phys: PhysAddr,
    },
    /// The DMA-coherent page at bus address `bus`.
    DmaCoherent {
        /// Its bus address.
        bus: PhysAddr,
    },
    /// Page `page` of shared object `id`.
    Shared {
        /// The shared object.
        id: SharedId,
        /// The object page.
        page: u64,
    },
    /// A guard page: any access is an error.
    Guard,
}

/// One region of an address space: `[start, start + len)`.
///
/// The regions a [`RegionMap`](super::RegionMap) returns are valid: start and
/// length page-aligned, length non-zero, the range inside the window and the
/// backing fitting the length. The fields are public so that the server can
/// read and destructure them; the map never trusts a region it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    /// The first address.
    pub start: VirtAddr,
    /// The length in bytes, a non-zero multiple of the page size.
    pub len: u64,
    /// Access permissions.
    pub prot: Prot,
    /// Flags (see [`RegionFlags`]).
    pub flags: RegionFlags,
    /// What backs the pages, with the offsets of the first page.
    pub kind: RegionKind,
}

impl Region {
    /// The address just past the region (saturating, for hand-made regions).
    pub const fn end(&self) -> VirtAddr {
        VirtAddr(self.start.0.saturating_add(self.len))
    }

    /// The number of pages.
    pub const fn pages(&self) -> u64 {
        self.len >> PAGE_SHIFT
    }

    /// Whether `va` lies inside the region.
    pub const fn contains(&self, va: VirtAddr) -> bool {
        va.0 >= self.start.0 && va.0 < self.end().0
    }

    /// The index of the page holding `va` within the region, if `va` is in it.
    pub const fn page_index(&self, va: VirtAddr) -> Option<u64> {
        if self.contains(va) {
            Some((va.0 - self.start.0) >> PAGE_SHIFT)
        } else {
            None
        }
    }

    /// What backs the page holding `va`, if `va` is in the region: for a
    /// file-backed region the object page, for a device the physical
    /// address of that page, and so on.
    pub fn backing_at(&self, va: VirtAddr) -> Option<Backing> {
        let index = self.page_index(va)?;
        Some(match self.kind.advanced(index) {
            RegionKind::Anonymous => Backing::Anonymous,
            RegionKind::FileBacked { object, offset } => Backing::File {
                object,
                page: offset,
            },
            RegionKind::Device { phys } => Backing::Device { phys },
            RegionKind::DmaCoherent { bus } => Backing::DmaCoherent { bus },
            RegionKind::Shared { id, offset } => Backing::Shared { id, page: offset },
            RegionKind::Guard => Backing::Guard,
        })
    }

    /// The sub-range `[from, to)` of this region as a region of its own, its
    /// backing offset advanced to `from`. `from < to` must lie in the region.
    pub(super) fn slice(&self, from: u64, to: u64) -> Region {
        debug_assert!(self.start.0 <= from && from < to && to <= self.end().0);
        Region {
            start: VirtAddr(from),
            len: to - from,
            prot: self.prot,
            flags: self.flags,
            kind: self.kind.advanced((from - self.start.0) >> PAGE_SHIFT),
        }
    }

    /// Whether `next` can be merged onto the end of `self`: adjacent, same
    /// protection and flags, neither marked [`RegionFlags::NO_MERGE`], and a
    /// backing that continues (the `vma_merge` / `is_mergeable_vma` test).
    pub(super) fn merges_with(&self, next: &Region) -> bool {
        self.end() == next.start
            && self.prot == next.prot
            && self.flags == next.flags
            && !self.flags.contains(RegionFlags::NO_MERGE)
            && self.kind.continued_by(self.len, next.kind)
    }

    /// What to map again to recreate this region elsewhere (or here).
    pub const fn spec(&self) -> RegionSpec {
        RegionSpec {
            len: self.len,
            prot: self.prot,
            flags: self.flags,
            kind: self.kind,
        }
    }
}

/// A region to be mapped, before it has an address: its length, protection,
/// flags and backing. The constructors name the usual cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegionSpec {
    /// The length in bytes (a non-zero multiple of the page size).
    pub len: u64,
    /// Access permissions.
    pub prot: Prot,
    /// Flags.
    pub flags: RegionFlags,
    /// Backing, with the offsets of the first page.
    pub kind: RegionKind,
}

impl RegionSpec {
    /// Anonymous memory of `len` bytes.
    pub const fn anonymous(len: u64, prot: Prot) -> RegionSpec {
        RegionSpec {
            len,
            prot,
            flags: RegionFlags::NONE,
            kind: RegionKind::Anonymous,
        }
    }

    /// `len` bytes of `object` starting at object page `offset`.
    pub const fn file(object: ObjectId, offset: u64, len: u64, prot: Prot) -> RegionSpec {
        RegionSpec {
            len,
            prot,
            flags: RegionFlags::NONE,
            kind: RegionKind::FileBacked { object, offset },
        }
    }

    /// `len` bytes of device memory starting at physical address `phys`.
    pub const fn device(phys: PhysAddr, len: u64, prot: Prot) -> RegionSpec {
        RegionSpec {
            len,
            prot,
            flags: RegionFlags::NONE,
            kind: RegionKind::Device { phys },
        }
    }

    /// `len` bytes of DMA-coherent memory starting at bus address `bus`.
    pub const fn dma_coherent(bus: PhysAddr, len: u64, prot: Prot) -> RegionSpec {
        RegionSpec {
            len,
            prot,
            flags: RegionFlags::NONE,
            kind: RegionKind::DmaCoherent { bus },
        }
    }

    /// `len` bytes of shared object `id` starting at its page `offset`.
    pub const fn shared(id: SharedId, offset: u64, len: u64, prot: Prot) -> RegionSpec {
        RegionSpec {
            len,
            prot,
            flags: RegionFlags::NONE,
            kind: RegionKind::Shared { id, offset },
        }
    }

    /// A guard region of `len` bytes.
    pub const fn guard(len: u64) -> RegionSpec {
        RegionSpec {
            len,
            prot: Prot::NONE,
            flags: RegionFlags::NONE,
            kind: RegionKind::Guard,
        }
    }

    /// The same spec with `flags`.
    pub const fn with_flags(self, flags: RegionFlags) -> RegionSpec {
        RegionSpec { flags, ..self }
    }

    /// Checks everything about the spec that does not depend on its address:
    /// length non-zero and page-aligned, guard regions inaccessible, backing
    /// fitting the length.
    pub(super) fn validate(&self) -> Result<(), VmError> {
        if self.len == 0 {
            return Err(VmError::ZeroLength);
        }
        if !self.len.is_multiple_of(PAGE_SIZE) {
            return Err(VmError::Unaligned);
        }
        if self.kind == RegionKind::Guard && !self.prot.is_none() {
            return Err(VmError::GuardProtection);
        }
        if !self.kind.fits(self.len) {
            return Err(VmError::BadBacking);
        }
        Ok(())
    }

    /// The region this spec makes at `start`.
    pub(super) const fn at(&self, start: u64) -> Region {
        Region {
            start: VirtAddr(start),
            len: self.len,
            prot: self.prot,
            flags: self.flags,
            kind: self.kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = PAGE_SIZE;

    fn region(start: u64, pages: u64, kind: RegionKind) -> Region {
        Region {
            start: VirtAddr(start),
            len: pages * P,
            prot: Prot::RW,
            flags: RegionFlags::NONE,
            kind,
        }
    }

    #[test]
    fn prot_bits_and_debug() {
        assert_eq!(Prot::from_bits(5), Some(Prot::RX));
        assert_eq!(Prot::from_bits(8), None);
        assert!(Prot::RWX.contains(Prot::WRITE));
        assert!(!Prot::RX.contains(Prot::WRITE));
        assert_eq!(Prot::READ | Prot::WRITE, Prot::RW);
        assert_eq!(std::format!("{:?}", Prot::RX), "Prot(r-x)");
        assert!(Prot::NONE.is_none());
    }

    #[test]
    fn backing_offsets_follow_the_page() {
        let file = region(
            0x10_0000,
            4,
            RegionKind::FileBacked {
                object: ObjectId(7),
                offset: 10,
            },
        );
        assert_eq!(
            file.backing_at(VirtAddr(0x10_2fff)),
            Some(Backing::File {
                object: ObjectId(7),
                page: 12
            })
        );
        assert_eq!(file.backing_at(VirtAddr(0x10_4000)), None);
        assert_eq!(file.page_index(VirtAddr(0x10_0000)), Some(0));
        let dev = region(
            0x10_0000,
            2,
            RegionKind::Device {
                phys: PhysAddr(0x900_0000),
            },
        );
        assert_eq!(
            dev.backing_at(VirtAddr(0x10_1008)),
            Some(Backing::Device {
                phys: PhysAddr(0x900_1000)
            })
        );
    }

    #[test]
    fn slices_advance_offsets() {
        let r = region(
            0x1000,
            8,
            RegionKind::Shared {
                id: SharedId(3),
                offset: 100,
            },
        );
        let upper = r.slice(0x4000, 0x9000);
        assert_eq!(upper.start, VirtAddr(0x4000));
        assert_eq!(upper.pages(), 5);
        assert_eq!(
            upper.kind,
            RegionKind::Shared {
                id: SharedId(3),
                offset: 103
            }
        );
        let lower = r.slice(0x1000, 0x4000);
        assert!(lower.merges_with(&upper));
    }

    #[test]
    fn merging_needs_continuity() {
        let a = region(0x1000, 2, RegionKind::Anonymous);
        let b = region(0x3000, 1, RegionKind::Anonymous);
        assert!(a.merges_with(&b));
        assert!(!b.merges_with(&a), "not adjacent in that order");
        let mut c = b;
        c.prot = Prot::READ;
        assert!(!a.merges_with(&c));
        let mut d = b;
        d.flags = RegionFlags(1);
        assert!(!a.merges_with(&d));
        let mut e = a;
        e.flags = RegionFlags::NO_MERGE;
        let mut f = b;
        f.flags = RegionFlags::NO_MERGE;
        assert!(!e.merges_with(&f));

        let f1 = region(
            0x1000,
            2,
            RegionKind::FileBacked {
                object: ObjectId(1),
                offset: 5,
            },
        );
        let f2 = region(
            0x3000,
            1,
            RegionKind::FileBacked {
                object: ObjectId(1),
                offset: 7,
            },
        );
        let f3 = region(
            0x3000,
            1,
            RegionKind::FileBacked {
                object: ObjectId(1),
                offset: 8,
            },
        );
        let f4 = region(
            0x3000,
            1,
            RegionKind::FileBacked {
                object: ObjectId(2),
                offset: 7,
            },
        );
        assert!(f1.merges_with(&f2));
        assert!(!f1.merges_with(&f3));
        assert!(!f1.merges_with(&f4));
        assert!(!a.merges_with(&f2));

        let d1 = region(0x1000, 2, RegionKind::Device { phys: PhysAddr(0) });
        let d2 = region(
            0x3000,
            1,
            RegionKind::Device {
                phys: PhysAddr(0x2000),
            },
        );
        let d3 = region(
            0x3000,
            1,
            RegionKind::DmaCoherent {
                bus: PhysAddr(0x2000),
            },
        );
        assert!(d1.merges_with(&d2));
        assert!(!d1.merges_with(&d3));
    }

    #[test]
    fn spec_validation() {
        assert_eq!(
            RegionSpec::anonymous(0, Prot::RW).validate(),
            Err(VmError::ZeroLength)
        );
        assert_eq!(
            RegionSpec::anonymous(100, Prot::RW).validate(),
            Err(VmError::Unaligned)
        );
        assert_eq!(RegionSpec::guard(P).validate(), Ok(()));
        let bad_guard = RegionSpec {
            prot: Prot::READ,
            ..RegionSpec::guard(P)
        };
        assert_eq!(bad_guard.validate(), Err(VmError::GuardProtection));
        assert_eq!(
            RegionSpec::device(PhysAddr(0x123), P, Prot::RW).validate(),
            Err(VmError::BadBacking)
        );
        assert_eq!(
            RegionSpec::device(PhysAddr(!(P - 1)), 2 * P, Prot::RW).validate(),
            Err(VmError::BadBacking)
        );
        assert_eq!(
            RegionSpec::file(ObjectId(1), u64::MAX, P, Prot::READ).validate(),
            Err(VmError::BadBacking)
        );
        assert_eq!(
            RegionSpec::file(ObjectId(1), u64::MAX - 1, P, Prot::READ).validate(),
            Ok(())
        );
    }
}
