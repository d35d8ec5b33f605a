//! The page map: which slab or large allocation owns each page of the registered arenas.
//!
//! `kfree(addr)` must find the owner of an address in O(1) without reading
//! the memory at that address. The allocator requires every page its page
//! source hands out to lie in an *arena* registered up front (a range of
//! addresses: the buddy allocator's RAM zones in the MM server, the heap
//! window of a client), and keeps, per arena, a flat array with one
//! [`PageInfo`] per page indexed by `(addr - base) >> PAGE_SHIFT`. The array
//! grows on demand to the highest page used so far, so a large, mostly unused
//! arena costs nothing until its pages are used. Several arenas may be
//! registered: lookup tries the first one inline, then the others in order
//! (the usual count is one or two).

use alloc::vec::Vec;

use super::SlabError;
use crate::addr::{PAGE_SHIFT, PAGE_SIZE};
use crate::pages::PageSource;

/// What a page of an arena is used for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum PageKind {
    /// Not held by this allocator.
    #[default]
    Unused,
    /// Part of a slab.
    Slab,
    /// Part of a slab of a checking cache (kept off the fast path).
    SlabChecked,
    /// The first page of a large (page-backed) kmalloc allocation.
    LargeHead,
    /// A later page of a large kmalloc allocation.
    LargeTail,
}

impl PageKind {
    /// Whether the page is part of a slab.
    pub fn is_slab(self) -> bool {
        matches!(self, PageKind::Slab | PageKind::SlabChecked)
    }
}

/// The out-of-band descriptor of one page (16 bytes).
///
/// Slab pages of the caches that the free fast path serves (see
/// [`PageInfo::fast_object`]) also carry what turns an address into an
/// object id with one rotation, so that `kfree` finds the object without
/// reading its cache's geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(16))]
pub(super) struct PageInfo {
    /// Fast slab pages: log2 of the stride (at most [`PAGE_SHIFT`]).
    /// Every other page: 0.
    pub fast_shift: u8,
    /// What the page is used for.
    pub kind: PageKind,
    /// Slab pages: the owning cache's index.
    pub cache: u16,
    /// Fast slab pages: the id of the first object on this page. Every
    /// other page: [`NO_GID`].
    pub page_gid: u32,
    /// Slab pages: the id of the slab's first object (`slab << shift`).
    pub gid_base: u32,
    /// Slab pages: the page's index within its slab. Large head: the order.
    pub sub: u8,
}

/// [`PageInfo::page_gid`] of a page the free fast path does not serve.
///
/// No cache has this many objects (`Cache::grow` keeps every object id
/// below `u32::MAX`), so every id derived from it is out of bounds of every
/// cache's state array.
pub(super) const NO_GID: u32 = u32::MAX;

impl PageInfo {
    /// The descriptor of a page this allocator does not hold.
    pub const UNUSED: PageInfo = PageInfo {
        fast_shift: 0,
        kind: PageKind::Unused,
        cache: 0,
        page_gid: NO_GID,
        gid_base: 0,
        sub: 0,
    };

    /// The id of the object starting at `addr`, if this is a fast slab
    /// page and `addr` is an object start; otherwise an id of at least
    /// [`NO_GID`], which no cache has (so that the caller's bounds check of
    /// the id is the only test on the fast path).
    ///
    /// Fast pages belong to caches whose objects, a power of two of at
    /// most a page apart, tile their slabs exactly from the slab's base
    /// (no red zone, no tail), so that every stride-aligned address of a
    /// page starts an object: `page_gid + (offset >> fast_shift)`. The
    /// offset is rotated rather than shifted: an offset that is not a
    /// multiple of the stride has a low bit set, which the rotation moves
    /// to the top, giving an id of at least 2^52.
    #[inline(always)]
    pub fn fast_object(&self, addr: u64) -> u64 {
        let off = addr & (PAGE_SIZE - 1);
        u64::from(self.page_gid) + off.rotate_right(u32::from(self.fast_shift))
    }
}

impl Default for PageInfo {
    fn default() -> Self {
        PageInfo::UNUSED
    }
}

/// One registered address range and its per-page descriptors.
#[derive(Default)]
struct Arena {
    base: u64,
    len: u64,
    pages: Vec<PageInfo>,
}

/// The page source, the arenas and the page accounting, kept apart from the
/// caches so that a cache can be borrowed mutably next to it.
pub(super) struct PageMap<P> {
    /// Where pages come from.
    pub source: P,
    /// The first arena registered (the one lookups try first), kept inline
    /// (empty until one is registered).
    primary: Arena,
    /// The others.
    others: Vec<Arena>,
    /// Pages obtained from the source since creation.
    pub obtained: u64,
    /// Pages given back to the source since creation.
    pub returned: u64,
}

impl<P: PageSource> PageMap<P> {
    pub fn new(source: P) -> Self {
        PageMap {
            source,
            primary: Arena::default(),
            others: Vec::new(),
            obtained: 0,
            returned: 0,
        }
    }

    /// Registers `[base, base + len)`: page aligned, not overlapping another
    /// arena, and clear of the first page (so that neither the null address
    /// nor [`super::ZERO_SIZE_PTR`] can be an object).
    pub fn add_arena(&mut self, base: u64, len: u64) -> Result<(), SlabError> {
        let bad = SlabError::InvalidArena { base, len };
        let end = base.checked_add(len).ok_or(bad)?;
        if len == 0
            || base < PAGE_SIZE
            || !base.is_multiple_of(PAGE_SIZE)
            || !len.is_multiple_of(PAGE_SIZE)
        {
            return Err(bad);
        }
        if self.arenas().any(|a| base < a.base + a.len && a.base < end) {
            return Err(bad);
        }
        let arena = Arena {
            base,
            len,
            pages: Vec::new(),
        };
        if self.primary.len == 0 {
            self.primary = arena;
        } else {
            self.others
                .try_reserve(1)
                .map_err(|_| SlabError::OutOfMemory)?;
            self.others.push(arena);
        }
        Ok(())
    }

    /// The registered arenas.
    fn arenas(&self) -> impl Iterator<Item = &Arena> {
        core::iter::once(&self.primary)
            .filter(|a| a.len > 0)
            .chain(self.others.iter())
    }

    /// The arena at position `i` of [`Self::arenas`], mutably.
    fn arena_mut(&mut self, i: usize) -> &mut Arena {
        match i {
            0 => &mut self.primary,
            _ => &mut self.others[i - 1],
        }
    }

    /// The descriptor of the page holding `addr`, if `addr` is in an arena.
    #[inline(always)]
    pub fn lookup(&self, addr: u64) -> Option<&PageInfo> {
        // `pages` never extends past the arena's end, and an address below
        // the base wraps to a huge index: one bounds check does.
        let index = addr.wrapping_sub(self.primary.base) >> PAGE_SHIFT;
        match self.primary.pages.get(index as usize) {
            Some(info) => Some(info),
            None => self.lookup_others(addr),
        }
    }

    /// [`Self::lookup`] in the first arena only (the free fast path).
    #[inline(always)]
    pub fn lookup_primary(&self, addr: u64) -> Option<&PageInfo> {
        let index = addr.wrapping_sub(self.primary.base) >> PAGE_SHIFT;
        self.primary.pages.get(index as usize)
    }

    /// [`Self::lookup`] beyond the primary arena.
    #[inline(never)]
    fn lookup_others(&self, addr: u64) -> Option<&PageInfo> {
        for arena in &self.others {
            let off = addr.wrapping_sub(arena.base);
            if off < arena.len {
                return arena.pages.get((off >> PAGE_SHIFT) as usize);
            }
        }
        None
    }

    /// The arena and first page index of the run `[addr, addr + pages pages)`,
    /// if it lies wholly inside one arena.
    fn locate(&self, addr: u64, pages: u64) -> Option<(usize, usize)> {
        let bytes = pages.checked_mul(PAGE_SIZE)?;
        self.arenas().enumerate().find_map(|(i, a)| {
            let off = addr.checked_sub(a.base)?;
            (off < a.len && a.len - off >= bytes).then_some((i, (off >> PAGE_SHIFT) as usize))
        })
    }

    /// Allocates `2^order` pages and labels page `i` of the run `label(i)`.
    ///
    /// Pages outside every arena (or not page aligned) go straight back to the
    /// source. Pages that the map already records as in use mean the source
    /// handed out pages twice: they are left alone and reported.
    pub fn obtain(
        &mut self,
        order: u32,
        label: impl Fn(usize) -> PageInfo,
    ) -> Result<u64, SlabError> {
        let addr = self
            .source
            .alloc_pages(order)
            .ok_or(SlabError::OutOfMemory)?;
        let count = 1usize << order;
        let located = if addr.is_multiple_of(PAGE_SIZE) {
            self.locate(addr, count as u64)
        } else {
            None
        };
        let Some((arena, first)) = located else {
            self.source.free_pages(addr, order);
            return Err(SlabError::PagesOutsideArena { addr });
        };
        let pages = &mut self.arena_mut(arena).pages;
        let end = first + count;
        if pages.len() < end {
            if pages.try_reserve(end - pages.len()).is_err() {
                self.source.free_pages(addr, order);
                return Err(SlabError::OutOfMemory);
            }
            pages.resize(end, PageInfo::default());
        }
        if pages[first..end].iter().any(|p| p.kind != PageKind::Unused) {
            return Err(SlabError::PageSourceConflict { addr });
        }
        for (i, page) in pages[first..end].iter_mut().enumerate() {
            *page = label(i);
        }
        self.obtained += count as u64;
        Ok(addr)
    }

    /// Forgets the labels of `2^order` pages at `addr` and returns them to the source.
    pub fn release(&mut self, addr: u64, order: u32) {
        let count = 1usize << order;
        if let Some((arena, first)) = self.locate(addr, count as u64) {
            let pages = &mut self.arena_mut(arena).pages;
            let end = (first + count).min(pages.len());
            for page in pages.get_mut(first..end).into_iter().flatten() {
                *page = PageInfo::default();
            }
        }
        self.source.free_pages(addr, order);
        self.returned += count as u64;
    }

    /// Pages currently labelled in use, counted by walking every arena (for
    /// `validate` and tests).
    pub fn labelled_pages(&self) -> u64 {
        self.arenas()
            .flat_map(|a| a.pages.iter())
            .filter(|p| p.kind != PageKind::Unused)
            .count() as u64
    }
}
