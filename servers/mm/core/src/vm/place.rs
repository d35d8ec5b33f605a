//! Placement: finding a free range for a new region (`get_unmapped_area`).
//!
//! A search walks the gaps between regions, in address order, either from the
//! top of the search window down (the default, as Linux's
//! `arch_get_unmapped_area_topdown`) or from the bottom up (Linux's legacy
//! layout), and takes the first gap that fits. It fits when an address
//! aligned as asked leaves `len` bytes below the gap's end, with at least the
//! guard gap of unmapped pages between the new region and each neighbouring
//! region (window edges need no guard). The walk costs one step per region
//! passed over; the fault path (lookup) does not depend on it.

use alloc::collections::BTreeMap;

use super::Region;
use crate::addr::{PAGE_SIZE, VirtAddr, align_down, align_up};

/// Which end of the window a placement search starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// Highest free address first (Linux's default mmap layout).
    #[default]
    TopDown,
    /// Lowest free address first.
    BottomUp,
}

/// How to place a new region: alignment, direction, guard gap, a preferred
/// address and a sub-window. `Placement::new()` takes the address space's
/// defaults with page alignment.
///
/// The search (see [`RegionMap::find_free`](super::RegionMap::find_free))
/// returns the hint when the hint is aligned and fits; otherwise the first
/// fitting address in the search direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Placement {
    /// The alignment of the start address: a power of two, at least
    /// [`PAGE_SIZE`] (e.g. [`LARGE_PAGE_SIZE`](crate::addr::LARGE_PAGE_SIZE)
    /// for block mappings).
    pub align: u64,
    /// The search direction; `None` for the address space's default.
    pub direction: Option<Direction>,
    /// Unmapped pages to keep between the new region and its neighbours;
    /// `None` for the address space's default.
    pub guard_pages: Option<u64>,
    /// An address to use if it is aligned and free (Linux's `addr` argument
    /// to `mmap` without `MAP_FIXED`).
    pub hint: Option<VirtAddr>,
    /// Search only in `[lo, hi)` intersected with the window (page-aligned
    /// bounds), e.g. a `vmalloc` area inside a larger space.
    pub within: Option<(VirtAddr, VirtAddr)>,
}

impl Placement {
    /// Page alignment, the address space's direction and guard gap, no hint,
    /// the whole window.
    pub const fn new() -> Placement {
        Placement {
            align: PAGE_SIZE,
            direction: None,
            guard_pages: None,
            hint: None,
            within: None,
        }
    }

    /// With this alignment.
    pub const fn with_align(self, align: u64) -> Placement {
        Placement { align, ..self }
    }

    /// Searching in this direction.
    pub const fn with_direction(self, direction: Direction) -> Placement {
        Placement {
            direction: Some(direction),
            ..self
        }
    }

    /// Keeping this many unmapped pages from neighbouring regions.
    pub const fn with_guard_pages(self, pages: u64) -> Placement {
        Placement {
            guard_pages: Some(pages),
            ..self
        }
    }

    /// Preferring this address.
    pub const fn with_hint(self, hint: VirtAddr) -> Placement {
        Placement {
            hint: Some(hint),
            ..self
        }
    }

    /// Searching only in `[lo, hi)`.
    pub const fn within(self, lo: VirtAddr, hi: VirtAddr) -> Placement {
        Placement {
            within: Some((lo, hi)),
            ..self
        }
    }
}

impl Default for Placement {
    fn default() -> Placement {
        Placement::new()
    }
}

/// A validated search: every field checked by the caller.
#[derive(Clone, Copy, Debug)]
pub(super) struct Search {
    /// The search window `[lo, hi)`, page-aligned, inside the address space.
    pub lo: u64,
    /// See `lo`.
    pub hi: u64,
    /// Bytes to place, a non-zero multiple of the page size.
    pub len: u64,
    /// A power of two, at least the page size.
    pub align: u64,
    /// The guard gap in bytes (saturated).
    pub guard: u64,
    /// Which end to start from.
    pub direction: Direction,
}

impl Search {
    /// The usable part of the gap between a region ending at `prev_end` and
    /// one starting at `next_start` (`None`: no region on that side).
    fn usable(&self, prev_end: Option<u64>, next_start: Option<u64>) -> (u64, u64) {
        let lo = prev_end.map_or(self.lo, |e| e.saturating_add(self.guard).max(self.lo));
        let hi = next_start.map_or(self.hi, |s| s.saturating_sub(self.guard).min(self.hi));
        (lo, hi)
    }

    /// The lowest aligned address in `[lo, hi)` with room for `len`.
    fn fit_low(&self, (lo, hi): (u64, u64)) -> Option<u64> {
        let at = align_up(lo, self.align)?;
        (at.checked_add(self.len)? <= hi).then_some(at)
    }

    /// The highest aligned address in `[lo, hi)` with room for `len`.
    fn fit_high(&self, (lo, hi): (u64, u64)) -> Option<u64> {
        let at = align_down(hi.checked_sub(self.len)?, self.align);
        (at >= lo).then_some(at)
    }

    /// Whether `at` is a valid placement: aligned, inside the search window,
    /// with the guard gap free on both sides.
    pub fn fits_at(&self, regions: &BTreeMap<u64, Region>, at: u64) -> bool {
        if !at.is_multiple_of(self.align) || at < self.lo {
            return false;
        }
        let Some(end) = at.checked_add(self.len) else {
            return false;
        };
        if end > self.hi {
            return false;
        }
        let below = at.saturating_sub(self.guard);
        let above = end.saturating_add(self.guard);
        // The last region starting below `above` is the only candidate for
        // overlapping [below, above).
        match regions.range(..above).next_back() {
            Some((_, r)) => r.end().0 <= below,
            None => true,
        }
    }

    /// The first fitting address in the search direction.
    pub fn find(&self, regions: &BTreeMap<u64, Region>) -> Option<u64> {
        match self.direction {
            Direction::BottomUp => {
                let mut prev_end = regions.range(..self.lo).next_back().map(|(_, r)| r.end().0);
                for r in regions.range(self.lo..).map(|(_, r)| r) {
                    if let Some(at) = self.fit_low(self.usable(prev_end, Some(r.start.0))) {
                        return Some(at);
                    }
                    if r.end().0 >= self.hi {
                        return None;
                    }
                    prev_end = Some(r.end().0);
                }
                self.fit_low(self.usable(prev_end, None))
            }
            Direction::TopDown => {
                let mut next_start = regions.range(self.hi..).next().map(|(_, r)| r.start.0);
                for r in regions.range(..self.hi).rev().map(|(_, r)| r) {
                    if let Some(at) = self.fit_high(self.usable(Some(r.end().0), next_start)) {
                        return Some(at);
                    }
                    if r.start.0 <= self.lo {
                        return None;
                    }
                    next_start = Some(r.start.0);
                }
                self.fit_high(self.usable(None, next_start))
            }
        }
    }
}
