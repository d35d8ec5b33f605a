//! The region map of one address space: Linux's VMA tree and the calls that change it.
//!
//! [`RegionMap`] keeps the regions of one address space in a `BTreeMap` keyed
//! by start address. Regions never overlap, are page-aligned, lie inside the
//! address space's window, and are *merge-complete*: no two neighbours could
//! be merged (same protection, flags and continuing backing, neither marked
//! [`NO_MERGE`](super::RegionFlags::NO_MERGE)). Every change keeps that true
//! by merging as it goes, as Linux's `vma_merge` does.
//!
//! Each mutating call works the same way: validate the arguments, collect the
//! regions it touches (those overlapping the range and its two immediate
//! neighbours), compute their replacement on the side, check the region
//! limit, and only then swap the old regions for the new. So a refused call
//! changes nothing, and a call that succeeds costs `O(k log n)` for `k`
//! regions touched out of `n`.

use core::cell::Cell;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::place::{Direction, Placement, Search};
use super::region::{Backing, Prot, Region, RegionKind, RegionSpec};
use super::{InvariantViolation, VmError, ensure};
use crate::addr::{PAGE_SHIFT, PAGE_SIZE, VirtAddr};

/// The fixed parameters of an address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VmConfig {
    /// The lowest address a region may use (page-aligned).
    pub lower: VirtAddr,
    /// The address just past the highest a region may use (page-aligned,
    /// above `lower`).
    pub upper: VirtAddr,
    /// Unmapped pages kept between a placed region and its neighbours,
    /// unless a [`Placement`] says otherwise. Fixed mappings ignore it.
    pub guard_pages: u64,
    /// Where placement searches start, unless a [`Placement`] says otherwise.
    pub direction: Direction,
    /// The most regions the map may hold (Linux's `vm.max_map_count`); a call
    /// that would leave more is refused with [`VmError::TooManyRegions`].
    /// Unlike Linux, which checks its count before merging, the limit applies
    /// to the count the call would leave, merges included.
    pub max_regions: usize,
}

impl VmConfig {
    /// The bottom of a client's user window: the first 256 MiB stay
    /// unmapped so that null-pointer-like accesses fault.
    pub const USER_LOWER: VirtAddr = VirtAddr(0x1000_0000);
    /// The top of a client's user window (2^47, half of the 48-bit TTBR0
    /// range).
    pub const USER_UPPER: VirtAddr = VirtAddr(0x0000_8000_0000_0000);
    /// Linux's default `vm.max_map_count`.
    pub const DEFAULT_MAX_REGIONS: usize = 65_530;

    /// A window `[lower, upper)` with one guard page, top-down placement and
    /// the default region limit.
    pub const fn new(lower: VirtAddr, upper: VirtAddr) -> VmConfig {
        VmConfig {
            lower,
            upper,
            guard_pages: 1,
            direction: Direction::TopDown,
            max_regions: VmConfig::DEFAULT_MAX_REGIONS,
        }
    }

    /// A client's user address space: [`VmConfig::USER_LOWER`] to
    /// [`VmConfig::USER_UPPER`], otherwise as [`VmConfig::new`].
    pub const fn user() -> VmConfig {
        VmConfig::new(VmConfig::USER_LOWER, VmConfig::USER_UPPER)
    }
}

/// The answer to a fault-path lookup: the region holding an address, and
/// which page of it (and of its backing) the address is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lookup<'a> {
    /// The region.
    pub region: &'a Region,
    /// The page-aligned address of the page.
    pub page: VirtAddr,
    /// The page's index within the region.
    pub index: u64,
    /// What backs that page (object page, physical address, ...).
    pub backing: Backing,
}

/// The regions of one address space (Linux's `mm_struct` VMA tree).
#[derive(Clone, Debug)]
pub struct RegionMap {
    config: VmConfig,
    /// Keyed by start address.
    regions: BTreeMap<u64, Region>,
    /// Total mapped pages (Linux's `total_vm`).
    mapped_pages: u64,
    /// The start of the region [`RegionMap::region_at`] found last (faults
    /// come in runs within one region): a key to try before searching the
    /// tree. It may be stale; what it finds is checked.
    hot: Cell<Option<u64>>,
}

/// The regions one call replaces and what replaces them.
struct Change {
    /// Start addresses of the regions to remove.
    old: Vec<u64>,
    /// The regions to insert, ordered and merge-complete.
    new: Vec<Region>,
}

impl RegionMap {
    /// An empty address space with these parameters; [`VmError::BadWindow`]
    /// if the window is unaligned or empty.
    pub fn new(config: VmConfig) -> Result<RegionMap, VmError> {
        if !config.lower.is_aligned(PAGE_SIZE)
            || !config.upper.is_aligned(PAGE_SIZE)
            || config.lower >= config.upper
        {
            return Err(VmError::BadWindow);
        }
        Ok(RegionMap {
            config,
            regions: BTreeMap::new(),
            mapped_pages: 0,
            hot: Cell::new(None),
        })
    }

    /// The parameters the map was made with.
    pub const fn config(&self) -> &VmConfig {
        &self.config
    }

    /// The number of regions (Linux's `map_count`).
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Whether no region is mapped.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// The number of pages covered by regions, guard regions included
    /// (Linux's `total_vm`).
    pub const fn mapped_pages(&self) -> u64 {
        self.mapped_pages
    }

    /// Every region, in address order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Region> + '_ {
        self.regions.values()
    }

    /// The region containing `va`, if any (Linux's `vma_lookup`).
    pub fn find(&self, va: VirtAddr) -> Option<&Region> {
        let (_, r) = self.regions.range(..=va.0).next_back()?;
        r.contains(va).then_some(r)
    }

    /// The region containing `va`, if any: [`RegionMap::find`] trying the
    /// region it found last first (a page fault's lookup).
    pub fn region_at(&self, va: VirtAddr) -> Option<&Region> {
        if let Some(key) = self.hot.get()
            && let Some(r) = self.regions.get(&key)
            && r.contains(va)
        {
            return Some(r);
        }
        let r = self.find(va)?;
        self.hot.set(Some(r.start.0));
        Some(r)
    }

    /// The first region that ends above `va`: the one containing it, or else
    /// the next one up (Linux's `find_vma`).
    pub fn find_vma(&self, va: VirtAddr) -> Option<&Region> {
        self.find(va)
            .or_else(|| self.regions.range(va.0..).next().map(|(_, r)| r))
    }

    /// The region holding `va`, the page index of `va` in it and what backs
    /// that page: everything the fault handler needs.
    pub fn lookup(&self, va: VirtAddr) -> Option<Lookup<'_>> {
        let region = self.find(va)?;
        let index = region.page_index(va)?;
        let backing = region.backing_at(va)?;
        Some(Lookup {
            region,
            page: VirtAddr(va.0 & !(PAGE_SIZE - 1)),
            index,
            backing,
        })
    }

    /// The regions overlapping `[start, start + len)`, in address order (the
    /// end saturates at 2^64; a zero length yields nothing).
    pub fn overlapping(&self, start: VirtAddr, len: u64) -> impl Iterator<Item = &Region> + '_ {
        self.overlapping_range(start.0, start.0.saturating_add(len))
    }

    fn overlapping_range(&self, start: u64, end: u64) -> impl Iterator<Item = &Region> + '_ {
        let first = match self.regions.range(..=start).next_back() {
            Some((&key, r)) if r.end().0 > start => key,
            _ => start,
        };
        // `first <= start`; an empty or inverted range yields nothing.
        let end = if end > start { end } else { first };
        self.regions.range(first..end).map(|(_, r)| r)
    }

    /// Checks a range given by a caller: non-empty, page-aligned, not
    /// wrapping, inside the window. Returns its end.
    fn check_range(&self, start: VirtAddr, len: u64) -> Result<u64, VmError> {
        if len == 0 {
            return Err(VmError::ZeroLength);
        }
        if !start.is_aligned(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(VmError::Unaligned);
        }
        let end = start.0.checked_add(len).ok_or(VmError::Overflow)?;
        if start < self.config.lower || end > self.config.upper.0 {
            return Err(VmError::OutsideWindow);
        }
        Ok(end)
    }

    /// Applies `change` if it keeps the region count within the limit.
    fn commit(&mut self, change: Change) -> Result<(), VmError> {
        let count = self.regions.len() - change.old.len() + change.new.len();
        if count > self.config.max_regions {
            return Err(VmError::TooManyRegions);
        }
        for key in change.old {
            if let Some(r) = self.regions.remove(&key) {
                self.mapped_pages -= r.pages();
            }
        }
        for r in change.new {
            self.mapped_pages += r.pages();
            self.regions.insert(r.start.0, r);
        }
        Ok(())
    }

    /// The region ending exactly at `at`, if any.
    fn ending_at(&self, at: u64) -> Option<&Region> {
        let (_, r) = self.regions.range(..at).next_back()?;
        (r.end().0 == at).then_some(r)
    }

    /// The change that puts `new` in place of whatever overlaps it, merged
    /// with its surroundings; also returns the pieces taken out.
    fn install(&self, new: Region) -> (Change, Vec<Region>) {
        let (start, end) = (new.start.0, new.end().0);
        let mut old = Vec::new();
        let mut list = Vec::new();
        let mut removed = Vec::new();
        if let Some(left) = self.ending_at(start) {
            old.push(left.start.0);
            list.push(*left);
        }
        let mut right_rest = None;
        for r in self.overlapping_range(start, end) {
            old.push(r.start.0);
            let (rs, re) = (r.start.0, r.end().0);
            if rs < start {
                list.push(r.slice(rs, start));
            }
            removed.push(r.slice(rs.max(start), re.min(end)));
            if re > end {
                right_rest = Some(r.slice(end, re));
            }
        }
        list.push(new);
        match right_rest {
            Some(rest) => list.push(rest),
            None => {
                if let Some(right) = self.regions.get(&end) {
                    old.push(end);
                    list.push(*right);
                }
            }
        }
        (
            Change {
                old,
                new: coalesce(list),
            },
            removed,
        )
    }

    /// Finds where a region of `len` bytes would be placed, without placing
    /// it (Linux's `get_unmapped_area`).
    ///
    /// The placement's hint is returned if it is aligned and fits with the
    /// guard gap; otherwise the first fitting address from the top of the
    /// search window down, or from its bottom up. Errors: [`VmError::ZeroLength`],
    /// [`VmError::Unaligned`] (length, or the `within` bounds),
    /// [`VmError::BadAlignment`], [`VmError::NoSpace`].
    ///
    /// Unlike Linux, the guard gap applies to every placed region, not only
    /// to stacks (Linux's `stack_guard_gap`).
    pub fn find_free(&self, len: u64, placement: &Placement) -> Result<VirtAddr, VmError> {
        let search = self.search(len, placement)?;
        if let Some(hint) = placement.hint
            && search.fits_at(&self.regions, hint.0)
        {
            return Ok(hint);
        }
        search
            .find(&self.regions)
            .map(VirtAddr)
            .ok_or(VmError::NoSpace)
    }

    fn search(&self, len: u64, placement: &Placement) -> Result<Search, VmError> {
        if len == 0 {
            return Err(VmError::ZeroLength);
        }
        if !len.is_multiple_of(PAGE_SIZE) {
            return Err(VmError::Unaligned);
        }
        if !placement.align.is_power_of_two() || placement.align < PAGE_SIZE {
            return Err(VmError::BadAlignment);
        }
        let (mut lo, mut hi) = (self.config.lower.0, self.config.upper.0);
        if let Some((a, b)) = placement.within {
            if !a.is_aligned(PAGE_SIZE) || !b.is_aligned(PAGE_SIZE) {
                return Err(VmError::Unaligned);
            }
            lo = lo.max(a.0);
            hi = hi.min(b.0);
        }
        if lo >= hi {
            return Err(VmError::NoSpace);
        }
        let guard_pages = placement.guard_pages.unwrap_or(self.config.guard_pages);
        Ok(Search {
            lo,
            hi,
            len,
            align: placement.align,
            guard: guard_pages.saturating_mul(PAGE_SIZE),
            direction: placement.direction.unwrap_or(self.config.direction),
        })
    }

    /// Places and maps a new region (Linux's `mmap` without `MAP_FIXED`:
    /// `get_unmapped_area` then `mmap_region`); returns its start.
    ///
    /// The region is merged with neighbours it continues (only possible
    /// with a guard gap of zero). Errors: those of [`RegionMap::find_free`],
    /// those of the spec ([`VmError::GuardProtection`], [`VmError::BadBacking`]),
    /// and [`VmError::TooManyRegions`].
    pub fn map(&mut self, spec: RegionSpec, placement: &Placement) -> Result<VirtAddr, VmError> {
        spec.validate()?;
        let start = self.find_free(spec.len, placement)?;
        let (change, _) = self.install(spec.at(start.0));
        self.commit(change)?;
        Ok(start)
    }

    /// Maps a region at `start`, refusing with [`VmError::Overlap`] if any
    /// page of the range is mapped (Linux's `MAP_FIXED_NOREPLACE`).
    ///
    /// Merges with compatible neighbours. Other errors: those of the range
    /// ([`VmError::ZeroLength`], [`VmError::Unaligned`], [`VmError::Overflow`],
    /// [`VmError::OutsideWindow`]), of the spec, and
    /// [`VmError::TooManyRegions`].
    pub fn map_fixed(&mut self, start: VirtAddr, spec: RegionSpec) -> Result<(), VmError> {
        let end = self.check_range(start, spec.len)?;
        spec.validate()?;
        if self.overlapping_range(start.0, end).next().is_some() {
            return Err(VmError::Overlap);
        }
        let (change, _) = self.install(spec.at(start.0));
        self.commit(change)
    }

    /// Maps a region at `start`, first unmapping whatever overlaps it
    /// (Linux's `MAP_FIXED`); returns the pieces unmapped, as
    /// [`RegionMap::unmap`] does, so the server can unmap and free their
    /// pages.
    ///
    /// Errors as [`RegionMap::map_fixed`], except that overlap is allowed.
    pub fn map_fixed_replace(
        &mut self,
        start: VirtAddr,
        spec: RegionSpec,
    ) -> Result<Vec<Region>, VmError> {
        self.check_range(start, spec.len)?;
        spec.validate()?;
        let (change, removed) = self.install(spec.at(start.0));
        self.commit(change)?;
        Ok(removed)
    }

    /// Unmaps `[start, start + len)` (Linux's `munmap` / `do_vmi_munmap`):
    /// regions straddling either end are split, those inside are removed.
    /// Returns the pieces removed, in address order, each a region of its own
    /// with its backing offset adjusted, so the server knows which pages to
    /// unmap and free. Unmapping a range with nothing in it succeeds and
    /// returns nothing.
    ///
    /// Errors: those of the range, and [`VmError::TooManyRegions`] when the
    /// split in the middle of a region would exceed the limit. Guard regions
    /// are unmapped like any other. As Linux refuses ranges beyond
    /// `TASK_SIZE`, a range reaching outside the window is refused
    /// ([`VmError::OutsideWindow`]) even if nothing is mapped there.
    pub fn unmap(&mut self, start: VirtAddr, len: u64) -> Result<Vec<Region>, VmError> {
        let end = self.check_range(start, len)?;
        let start = start.0;
        let mut old = Vec::new();
        let mut keep = Vec::new();
        let mut removed = Vec::new();
        for r in self.overlapping_range(start, end) {
            let (rs, re) = (r.start.0, r.end().0);
            old.push(rs);
            if rs < start {
                keep.push(r.slice(rs, start));
            }
            removed.push(r.slice(rs.max(start), re.min(end)));
            if re > end {
                keep.push(r.slice(end, re));
            }
        }
        // Trimming a region never makes it mergeable with a neighbour it was
        // not mergeable with, so `keep` needs no coalescing.
        self.commit(Change { old, new: keep })?;
        Ok(removed)
    }

    /// Unmaps everything (Linux's `exit_mmap`, for client death); returns
    /// every region, in address order.
    pub fn unmap_all(&mut self) -> Vec<Region> {
        self.mapped_pages = 0;
        core::mem::take(&mut self.regions).into_values().collect()
    }

    /// Sets the protection of `[start, start + len)` (Linux's `mprotect`):
    /// splits the regions at the range's ends, changes their protection and
    /// merges what has become compatible. Regions already at `prot` are left
    /// as they are (not split).
    ///
    /// Unlike Linux, which changes the pages up to the first hole and then
    /// returns `ENOMEM`, a range with any unmapped page is refused whole with
    /// [`VmError::NotMapped`]. Other errors: those of the range,
    /// [`VmError::GuardRegion`] if it touches a guard region, and
    /// [`VmError::TooManyRegions`].
    pub fn protect(&mut self, start: VirtAddr, len: u64, prot: Prot) -> Result<(), VmError> {
        let end = self.check_range(start, len)?;
        let start = start.0;
        let mut covered = start;
        let mut guard = false;
        let mut unchanged = true;
        for r in self.overlapping_range(start, end) {
            if r.start.0 > covered {
                return Err(VmError::NotMapped);
            }
            covered = r.end().0;
            guard |= r.kind == RegionKind::Guard;
            unchanged &= r.prot == prot;
        }
        if covered < end {
            return Err(VmError::NotMapped);
        }
        if guard {
            return Err(VmError::GuardRegion);
        }
        if unchanged {
            return Ok(());
        }
        let mut old = Vec::new();
        let mut list = Vec::new();
        let first = self.find(VirtAddr(start)).map_or(start, |r| r.start.0);
        if let Some(left) = self.ending_at(first) {
            old.push(left.start.0);
            list.push(*left);
        }
        for r in self.overlapping_range(start, end) {
            let (rs, re) = (r.start.0, r.end().0);
            old.push(rs);
            if r.prot == prot {
                list.push(*r);
                continue;
            }
            if rs < start {
                list.push(r.slice(rs, start));
            }
            let mut middle = r.slice(rs.max(start), re.min(end));
            middle.prot = prot;
            list.push(middle);
            if re > end {
                list.push(r.slice(end, re));
            }
        }
        if let Some(right) = self.regions.get(&covered) {
            old.push(covered);
            list.push(*right);
        }
        self.commit(Change {
            old,
            new: coalesce(list),
        })
    }

    /// Checks the map's invariants: keys match starts; regions page-aligned,
    /// non-empty, inside the window, ordered and non-overlapping; backings
    /// fitting; guard regions inaccessible; no two neighbours mergeable; the
    /// count within the limit; the mapped-page total right.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let mut prev: Option<&Region> = None;
        let mut pages = 0u64;
        for (&key, r) in &self.regions {
            let at = r.start.0;
            ensure(key == at, "key differs from region start", at)?;
            ensure(r.len != 0, "zero-length region", at)?;
            ensure(
                r.start.is_aligned(PAGE_SIZE) && r.len.is_multiple_of(PAGE_SIZE),
                "unaligned region",
                at,
            )?;
            let end = at.checked_add(r.len);
            ensure(end.is_some(), "region wraps", at)?;
            ensure(
                r.start >= self.config.lower && end.is_some_and(|e| e <= self.config.upper.0),
                "region outside the window",
                at,
            )?;
            ensure(r.kind.fits(r.len), "backing does not fit the region", at)?;
            ensure(
                r.kind != RegionKind::Guard || r.prot.is_none(),
                "accessible guard region",
                at,
            )?;
            if let Some(p) = prev {
                ensure(p.end() <= r.start, "regions overlap", at)?;
                ensure(!p.merges_with(r), "mergeable neighbours", at)?;
            }
            pages += r.len >> PAGE_SHIFT;
            prev = Some(r);
        }
        ensure(pages == self.mapped_pages, "mapped-page count wrong", pages)?;
        ensure(
            self.regions.len() <= self.config.max_regions,
            "more regions than the limit",
            self.regions.len() as u64,
        )?;
        Ok(())
    }
}

/// Merges each region of an ordered list into its predecessor when it can.
fn coalesce(list: Vec<Region>) -> Vec<Region> {
    let mut out: Vec<Region> = Vec::with_capacity(list.len());
    for r in list {
        match out.last_mut() {
            Some(last) if last.merges_with(&r) => last.len += r.len,
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{LARGE_PAGE_SIZE, PhysAddr};
    use crate::vm::{Backing, ObjectId, RegionFlags, SharedId};
    use std::vec;

    const P: u64 = PAGE_SIZE;
    const LO: u64 = 0x4000_0000;
    const HI: u64 = LO + 0x100_0000; // 16 MiB window

    fn space() -> RegionMap {
        let config = VmConfig {
            guard_pages: 0,
            ..VmConfig::new(VirtAddr(LO), VirtAddr(HI))
        };
        RegionMap::new(config).unwrap()
    }

    fn va(pages: u64) -> VirtAddr {
        VirtAddr(LO + pages * P)
    }

    fn anon(pages: u64) -> RegionSpec {
        RegionSpec::anonymous(pages * P, Prot::RW)
    }

    /// The regions as (first page, pages, prot) relative to the window.
    fn layout(m: &RegionMap) -> Vec<(u64, u64, Prot)> {
        m.check_invariants().unwrap();
        m.iter()
            .map(|r| ((r.start.0 - LO) / P, r.pages(), r.prot))
            .collect()
    }

    #[test]
    fn windows_are_checked() {
        let bad = |lo, hi| RegionMap::new(VmConfig::new(VirtAddr(lo), VirtAddr(hi))).err();
        assert_eq!(bad(0x1000, 0x1000), Some(VmError::BadWindow));
        assert_eq!(bad(0x2000, 0x1000), Some(VmError::BadWindow));
        assert_eq!(bad(0x1001, 0x9000), Some(VmError::BadWindow));
        assert_eq!(bad(0x1000, 0x9001), Some(VmError::BadWindow));
        let user = RegionMap::new(VmConfig::user()).unwrap();
        assert!(user.is_empty());
        assert_eq!(user.config().upper, VmConfig::USER_UPPER);
    }

    #[test]
    fn bad_ranges_are_refused_and_change_nothing() {
        let mut m = space();
        m.map_fixed(va(4), anon(4)).unwrap();
        let before = layout(&m);
        let cases: [(VirtAddr, u64, VmError); 7] = [
            (va(0), 0, VmError::ZeroLength),
            (VirtAddr(LO + 1), P, VmError::Unaligned),
            (va(0), P + 1, VmError::Unaligned),
            (VirtAddr(!(P - 1)), 2 * P, VmError::Overflow),
            (VirtAddr(LO - P), 2 * P, VmError::OutsideWindow),
            (VirtAddr(HI - P), 2 * P, VmError::OutsideWindow),
            (VirtAddr(0), P, VmError::OutsideWindow),
        ];
        for (start, len, err) in cases {
            assert_eq!(m.unmap(start, len), Err(err), "unmap {start:?} {len:#x}");
            assert_eq!(
                m.protect(start, len, Prot::READ),
                Err(err),
                "protect {start:?}"
            );
            let spec = RegionSpec::anonymous(len, Prot::RW);
            assert_eq!(m.map_fixed(start, spec), Err(err), "map_fixed {start:?}");
            assert_eq!(
                m.map_fixed_replace(start, spec),
                Err(err),
                "replace {start:?}"
            );
            assert_eq!(layout(&m), before);
        }
        assert_eq!(m.map_fixed(va(6), anon(4)), Err(VmError::Overlap));
        assert_eq!(m.map_fixed(va(2), anon(3)), Err(VmError::Overlap));
        assert_eq!(m.map_fixed(va(0), anon(16)), Err(VmError::Overlap));
        assert_eq!(
            m.map_fixed(va(20), RegionSpec::device(PhysAddr(0x123), P, Prot::RW)),
            Err(VmError::BadBacking)
        );
        let open_guard = RegionSpec {
            prot: Prot::READ,
            ..RegionSpec::guard(P)
        };
        assert_eq!(
            m.map_fixed(va(20), open_guard),
            Err(VmError::GuardProtection)
        );
        assert_eq!(layout(&m), before);
    }

    #[test]
    fn lookup_gives_region_page_and_backing() {
        let mut m = space();
        m.map_fixed(
            va(10),
            RegionSpec::file(ObjectId(3), 100, 4 * P, Prot::READ),
        )
        .unwrap();
        let hit = m.lookup(VirtAddr(va(12).0 + 0x123)).unwrap();
        assert_eq!(hit.region.start, va(10));
        assert_eq!(hit.page, va(12));
        assert_eq!(hit.index, 2);
        assert_eq!(
            hit.backing,
            Backing::File {
                object: ObjectId(3),
                page: 102
            }
        );
        assert!(m.lookup(va(14)).is_none());
        assert!(m.lookup(VirtAddr(va(10).0 - 1)).is_none());
        assert_eq!(m.find_vma(va(2)).map(|r| r.start), Some(va(10)));
        assert_eq!(m.find_vma(va(13)).map(|r| r.start), Some(va(10)));
        assert!(m.find_vma(va(14)).is_none());
        assert_eq!(m.overlapping(va(0), 11 * P).count(), 1);
        assert_eq!(m.overlapping(va(0), 10 * P).count(), 0);
        assert_eq!(m.overlapping(va(13), u64::MAX).count(), 1);
        assert_eq!(m.overlapping(va(11), 0).count(), 0);
    }

    #[test]
    fn inserts_merge_with_compatible_neighbours() {
        let mut m = space();
        m.map_fixed(va(0), anon(2)).unwrap();
        m.map_fixed(va(4), anon(2)).unwrap();
        m.map_fixed(va(2), anon(2)).unwrap();
        assert_eq!(layout(&m), vec![(0, 6, Prot::RW)]);
        m.map_fixed(va(6), RegionSpec::anonymous(P, Prot::READ))
            .unwrap();
        m.map_fixed(va(7), anon(1).with_flags(RegionFlags(1)))
            .unwrap();
        assert_eq!(m.len(), 3);
        // File pages merge only when the offsets continue.
        m.map_fixed(va(20), RegionSpec::file(ObjectId(1), 0, 2 * P, Prot::READ))
            .unwrap();
        m.map_fixed(va(22), RegionSpec::file(ObjectId(1), 2, 2 * P, Prot::READ))
            .unwrap();
        m.map_fixed(va(24), RegionSpec::file(ObjectId(1), 5, P, Prot::READ))
            .unwrap();
        m.map_fixed(va(25), RegionSpec::file(ObjectId(2), 6, P, Prot::READ))
            .unwrap();
        assert_eq!(m.len(), 6);
        assert_eq!(m.find(va(23)).map(|r| r.pages()), Some(4));
        // Shared objects and devices likewise.
        m.map_fixed(va(30), RegionSpec::shared(SharedId(9), 4, P, Prot::RW))
            .unwrap();
        m.map_fixed(va(31), RegionSpec::shared(SharedId(9), 5, P, Prot::RW))
            .unwrap();
        m.map_fixed(
            va(40),
            RegionSpec::device(PhysAddr(0x900_0000), P, Prot::RW),
        )
        .unwrap();
        m.map_fixed(
            va(41),
            RegionSpec::device(PhysAddr(0x900_1000), P, Prot::RW),
        )
        .unwrap();
        m.map_fixed(
            va(42),
            RegionSpec::dma_coherent(PhysAddr(0x900_2000), P, Prot::RW),
        )
        .unwrap();
        assert_eq!(m.len(), 9);
        // NO_MERGE regions stay apart.
        let own = anon(1).with_flags(RegionFlags::NO_MERGE);
        m.map_fixed(va(50), own).unwrap();
        m.map_fixed(va(51), own).unwrap();
        assert_eq!(m.len(), 11);
        assert_eq!(m.mapped_pages(), 6 + 2 + 6 + 2 + 3 + 2);
        m.check_invariants().unwrap();
    }

    #[test]
    fn unmap_splits_and_reports_pieces() {
        let mut m = space();
        m.map_fixed(va(0), RegionSpec::file(ObjectId(5), 10, 8 * P, Prot::READ))
            .unwrap();
        m.map_fixed(va(8), anon(4)).unwrap();
        m.map_fixed(va(14), RegionSpec::guard(2 * P)).unwrap();
        let gone = m.unmap(va(6), 9 * P).unwrap();
        assert_eq!(gone.len(), 3);
        assert_eq!((gone[0].start, gone[0].pages()), (va(6), 2));
        assert_eq!(
            gone[0].kind,
            RegionKind::FileBacked {
                object: ObjectId(5),
                offset: 16
            }
        );
        assert_eq!((gone[1].start, gone[1].pages()), (va(8), 4));
        assert_eq!((gone[2].start, gone[2].kind), (va(14), RegionKind::Guard));
        assert_eq!(gone[2].pages(), 1);
        assert_eq!(layout(&m), vec![(0, 6, Prot::READ), (15, 1, Prot::NONE)]);
        // A hole in the middle: two pieces left, the middle returned.
        let gone = m.unmap(va(2), 2 * P).unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(
            gone[0].kind,
            RegionKind::FileBacked {
                object: ObjectId(5),
                offset: 12
            }
        );
        assert_eq!(
            m.find(va(4)).map(|r| r.kind),
            Some(RegionKind::FileBacked {
                object: ObjectId(5),
                offset: 14
            })
        );
        assert_eq!(m.len(), 3);
        // Nothing there: nothing returned, nothing changed.
        assert_eq!(m.unmap(va(100), 10 * P), Ok(vec![]));
        assert_eq!(m.mapped_pages(), 5);
        let all = m.unmap_all();
        assert_eq!(all.len(), 3);
        assert!(m.is_empty());
        assert_eq!(m.mapped_pages(), 0);
        m.check_invariants().unwrap();
    }

    #[test]
    fn protect_splits_then_merges_back() {
        let mut m = space();
        m.map_fixed(va(0), anon(10)).unwrap();
        m.protect(va(3), 4 * P, Prot::READ).unwrap();
        assert_eq!(
            layout(&m),
            vec![(0, 3, Prot::RW), (3, 4, Prot::READ), (7, 3, Prot::RW)]
        );
        m.protect(va(0), 3 * P, Prot::READ).unwrap();
        assert_eq!(layout(&m), vec![(0, 7, Prot::READ), (7, 3, Prot::RW)]);
        m.protect(va(0), 10 * P, Prot::RW).unwrap();
        assert_eq!(layout(&m), vec![(0, 10, Prot::RW)]);
        // Unchanged protection: no split.
        m.protect(va(2), P, Prot::RW).unwrap();
        assert_eq!(m.len(), 1);
        // Holes and guards refuse the whole call.
        m.map_fixed(va(12), anon(2)).unwrap();
        assert_eq!(m.protect(va(8), 6 * P, Prot::READ), Err(VmError::NotMapped));
        assert_eq!(m.protect(va(20), P, Prot::READ), Err(VmError::NotMapped));
        m.map_fixed(va(10), RegionSpec::guard(2 * P)).unwrap();
        assert_eq!(
            m.protect(va(8), 6 * P, Prot::READ),
            Err(VmError::GuardRegion)
        );
        assert_eq!(
            layout(&m),
            vec![(0, 10, Prot::RW), (10, 2, Prot::NONE), (12, 2, Prot::RW)]
        );
        // File offsets stay right through a split and a merge.
        m.map_fixed(va(30), RegionSpec::file(ObjectId(2), 0, 6 * P, Prot::READ))
            .unwrap();
        m.protect(va(32), 2 * P, Prot::RX).unwrap();
        assert_eq!(
            m.lookup(va(33)).map(|l| l.backing),
            Some(Backing::File {
                object: ObjectId(2),
                page: 3
            })
        );
        m.protect(va(32), 2 * P, Prot::READ).unwrap();
        assert_eq!(m.find(va(30)).map(|r| r.pages()), Some(6));
        // A NO_MERGE region's splits do not heal.
        m.map_fixed(va(40), anon(4).with_flags(RegionFlags::NO_MERGE))
            .unwrap();
        m.protect(va(41), P, Prot::READ).unwrap();
        m.protect(va(41), P, Prot::RW).unwrap();
        assert_eq!(m.overlapping(va(40), 4 * P).count(), 3);
        m.check_invariants().unwrap();
    }

    #[test]
    fn replace_returns_what_it_covered() {
        let mut m = space();
        m.map_fixed(va(0), anon(10)).unwrap();
        let gone = m
            .map_fixed_replace(va(4), RegionSpec::anonymous(2 * P, Prot::READ))
            .unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!((gone[0].start, gone[0].pages()), (va(4), 2));
        assert_eq!(
            layout(&m),
            vec![(0, 4, Prot::RW), (4, 2, Prot::READ), (6, 4, Prot::RW)]
        );
        // Same attributes: the replaced middle heals into one region again.
        let gone = m.map_fixed_replace(va(3), anon(4)).unwrap();
        assert_eq!(gone.iter().map(|r| r.pages()).sum::<u64>(), 4);
        assert_eq!(layout(&m), vec![(0, 10, Prot::RW)]);
        // Over nothing, it is a plain fixed map.
        assert_eq!(m.map_fixed_replace(va(20), anon(1)), Ok(vec![]));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn placement_directions_alignment_and_guards() {
        let mut m = space();
        // Top-down by default: the top of the window.
        assert_eq!(m.map(anon(2), &Placement::new()), Ok(VirtAddr(HI - 2 * P)));
        let up = Placement::new().with_direction(Direction::BottomUp);
        assert_eq!(m.map(anon(2), &up), Ok(va(0)));
        // Guard gaps of 1 page: the next placements keep one page free.
        let guarded = up.with_guard_pages(1);
        assert_eq!(m.map(anon(1), &guarded), Ok(va(3)));
        assert_eq!(
            m.map(anon(1), &Placement::new().with_guard_pages(1)),
            Ok(VirtAddr(HI - 4 * P))
        );
        // No gap: merges into its neighbour.
        assert_eq!(m.map(anon(1), &up), Ok(va(2)));
        assert_eq!(layout(&m)[0], (0, 4, Prot::RW));
        // 2 MiB alignment, bottom-up: the window start is 2 MiB aligned but taken.
        let big = up.with_align(LARGE_PAGE_SIZE);
        assert_eq!(
            m.map(RegionSpec::anonymous(LARGE_PAGE_SIZE, Prot::RW), &big),
            Ok(VirtAddr(LO + LARGE_PAGE_SIZE))
        );
        let big_down = Placement::new().with_align(LARGE_PAGE_SIZE);
        assert_eq!(
            m.find_free(LARGE_PAGE_SIZE, &big_down),
            Ok(VirtAddr(HI - 2 * LARGE_PAGE_SIZE))
        );
        // Hints are taken when free, ignored otherwise.
        let hinted = Placement::new().with_hint(va(100));
        assert_eq!(m.find_free(P, &hinted), Ok(va(100)));
        // (The first free page from the top is the one the guarded placement
        // above left free.)
        let taken = Placement::new().with_hint(va(0));
        assert_eq!(m.find_free(P, &taken), Ok(VirtAddr(HI - 3 * P)));
        let unaligned_hint = Placement::new().with_hint(VirtAddr(va(100).0 + 8));
        assert_eq!(m.find_free(P, &unaligned_hint), Ok(VirtAddr(HI - 3 * P)));
        // Sub-windows.
        let inner = up.within(va(2000), va(2010));
        assert_eq!(m.find_free(10 * P, &inner), Ok(va(2000)));
        assert_eq!(m.find_free(11 * P, &inner), Err(VmError::NoSpace));
        let outside = up.within(VirtAddr(HI), VirtAddr(HI + 0x10_0000));
        assert_eq!(m.find_free(P, &outside), Err(VmError::NoSpace));
        assert_eq!(
            m.find_free(P, &up.within(VirtAddr(LO + 1), VirtAddr(HI))),
            Err(VmError::Unaligned)
        );
        // Bad requests.
        assert_eq!(m.find_free(0, &up), Err(VmError::ZeroLength));
        assert_eq!(m.find_free(P + 1, &up), Err(VmError::Unaligned));
        assert_eq!(
            m.find_free(P, &up.with_align(3 * P)),
            Err(VmError::BadAlignment)
        );
        assert_eq!(
            m.find_free(P, &up.with_align(P / 2)),
            Err(VmError::BadAlignment)
        );
        assert_eq!(m.find_free(HI - LO + P, &up), Err(VmError::NoSpace));
        assert_eq!(
            m.find_free(P, &up.with_guard_pages(u64::MAX)),
            Err(VmError::NoSpace)
        );
        m.check_invariants().unwrap();
    }

    #[test]
    fn placement_fills_the_space_exactly() {
        let mut m = space();
        let pages = (HI - LO) / P;
        // Guard gap 1: regions of one page every other page, from both ends.
        let mut placed = 0;
        for i in 0.. {
            let dir = if i % 2 == 0 {
                Direction::TopDown
            } else {
                Direction::BottomUp
            };
            let p = Placement::new().with_direction(dir).with_guard_pages(1);
            match m.map(anon(1), &p) {
                Ok(_) => placed += 1,
                Err(e) => {
                    assert_eq!(e, VmError::NoSpace);
                    break;
                }
            }
        }
        assert_eq!(placed, pages.div_ceil(2) as usize);
        assert_eq!(m.len(), placed);
        m.check_invariants().unwrap();
    }

    #[test]
    fn placement_finds_the_last_page_at_either_end() {
        let pages = (HI - LO) / P;
        let up = Placement::new().with_direction(Direction::BottomUp);
        let down = Placement::new().with_direction(Direction::TopDown);
        // Everything mapped but the top page: bottom-up walks to it.
        let mut m = space();
        m.map_fixed(va(0), anon(pages - 1)).unwrap();
        assert_eq!(m.find_free(P, &up), Ok(va(pages - 1)));
        assert_eq!(m.find_free(P, &down), Ok(va(pages - 1)));
        assert_eq!(m.find_free(2 * P, &up), Err(VmError::NoSpace));
        assert_eq!(
            m.find_free(P, &up.with_guard_pages(1)),
            Err(VmError::NoSpace)
        );
        // Everything but the bottom page: top-down walks down to it.
        let mut m = space();
        m.map_fixed(va(1), anon(pages - 1)).unwrap();
        assert_eq!(m.find_free(P, &down), Ok(va(0)));
        assert_eq!(m.find_free(P, &up), Ok(va(0)));
        assert_eq!(
            m.find_free(P, &down.with_guard_pages(1)),
            Err(VmError::NoSpace)
        );
        // One free page in the middle of many regions, found from both ends.
        let mut m = space();
        for i in 0..pages {
            if i != 100 {
                let prot = if i % 2 == 0 { Prot::RW } else { Prot::READ };
                m.map_fixed(va(i), RegionSpec::anonymous(P, prot)).unwrap();
            }
        }
        assert_eq!(m.find_free(P, &up), Ok(va(100)));
        assert_eq!(m.find_free(P, &down), Ok(va(100)));
        assert_eq!(m.find_free(2 * P, &down), Err(VmError::NoSpace));
        m.check_invariants().unwrap();
    }

    #[test]
    fn region_limit_is_exact_and_changes_nothing() {
        let config = VmConfig {
            max_regions: 2,
            guard_pages: 0,
            ..VmConfig::new(VirtAddr(LO), VirtAddr(HI))
        };
        let mut m = RegionMap::new(config).unwrap();
        m.map_fixed(va(0), anon(10)).unwrap();
        m.map_fixed(va(20), anon(1)).unwrap();
        let before = layout(&m);
        assert_eq!(m.map_fixed(va(30), anon(1)), Err(VmError::TooManyRegions));
        assert_eq!(m.unmap(va(4), P), Err(VmError::TooManyRegions));
        assert_eq!(
            m.protect(va(4), P, Prot::READ),
            Err(VmError::TooManyRegions)
        );
        assert_eq!(
            m.map(anon(1), &Placement::new().with_guard_pages(1)),
            Err(VmError::TooManyRegions)
        );
        assert_eq!(layout(&m), before);
        // Calls that do not add a region still work at the limit.
        m.map_fixed(va(10), anon(2)).unwrap();
        m.protect(va(0), 4 * P, Prot::READ).unwrap_err();
        m.unmap(va(0), 2 * P).unwrap();
        m.protect(va(20), P, Prot::READ).unwrap();
        assert_eq!(layout(&m), vec![(2, 10, Prot::RW), (20, 1, Prot::READ)]);
    }
}
