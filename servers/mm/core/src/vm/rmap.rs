//! The reverse map: every place a frame is mapped, and every mapping of an object page.
//!
//! Linux finds the mappings of a page through `page->mapping` (`anon_vma`
//! chains, or the file's `i_mmap` interval tree of VMAs) and walks page
//! tables to find the PTEs. The MM server owns every page table and records
//! each mapping it makes, so [`ReverseMap`] indexes the mappings themselves,
//! one entry per mapped 4 KiB page, three ways:
//!
//! - by place, `(client, va) → (frame, object page)`: what a client has at an
//!   address (Linux's `follow_pfn`), the pages of a range being unmapped
//!   (`zap_page_range`), and everything a dying client held;
//! - by frame, `pfn → {(client, va)}`: every mapping of a frame, and its map
//!   count (`page_mapcount`), for reclaim, migration and freeing;
//! - by object page, `(object, page) → {(client, va)}` for file-backed
//!   mappings: what `unmap_mapping_range` must unmap on truncate and
//!   invalidate.
//!
//! The common frame is mapped once: its by-frame entry then holds that one
//! place inline, and only a frame mapped twice or more gets a set of its own
//! (a B-tree, so that a frame mapped very many times — a shared zero page —
//! still costs `O(log n)` per change). The other indexes are B-trees whose
//! nodes hold many entries, so no mapping costs a heap allocation of its own.
//!
//! A 2 MiB block mapping is recorded as its 512 pages.

use alloc::collections::{BTreeMap, BTreeSet, btree_map, btree_set};
use alloc::vec::Vec;
use core::ops::Bound;

use super::{ClientId, InvariantViolation, ObjectId, VmError, ensure};
use crate::addr::{PAGE_SIZE, Pfn, VirtAddr};

/// Where a frame is mapped: a client and a page-aligned virtual address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    /// The client.
    pub client: ClientId,
    /// The page-aligned virtual address in that client.
    pub va: VirtAddr,
}

/// A page of a backing object: the object and the page's index (offset in
/// pages), the page cache's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FilePage {
    /// The object.
    pub object: ObjectId,
    /// The page index within the object.
    pub index: u64,
}

/// What is mapped at a place: the frame, and for a file-backed mapping the
/// object page the frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RmapEntry {
    /// The frame.
    pub pfn: Pfn,
    /// The object page, if the mapping is of a file page.
    pub file: Option<FilePage>,
}

/// A key of the object index: an object page and a place mapping it.
type FileKey = (FilePage, Place);

/// The places one frame is mapped at: inline when one, a set when more.
#[derive(Clone, Debug)]
enum Places {
    One(Place),
    /// Always at least two places.
    Many(BTreeSet<Place>),
}

/// The reverse map of every mapping the server has made, for all clients.
#[derive(Clone, Debug, Default)]
pub struct ReverseMap {
    by_place: BTreeMap<Place, RmapEntry>,
    by_frame: BTreeMap<Pfn, Places>,
    by_file: BTreeSet<FileKey>,
}

/// The places a frame is mapped at, from [`ReverseMap::mappings`], in
/// (client, address) order.
#[derive(Clone, Debug)]
pub struct Mappings<'a> {
    inner: MappingsInner<'a>,
}

#[derive(Clone, Debug)]
enum MappingsInner<'a> {
    One(Option<Place>),
    Many(btree_set::Iter<'a, Place>),
}

impl Iterator for Mappings<'_> {
    type Item = Place;

    fn next(&mut self) -> Option<Place> {
        match &mut self.inner {
            MappingsInner::One(p) => p.take(),
            MappingsInner::Many(it) => it.next().copied(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.inner {
            MappingsInner::One(p) => (usize::from(p.is_some()), Some(usize::from(p.is_some()))),
            MappingsInner::Many(it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for Mappings<'_> {}

/// The key range of one client's places in `[start, end)`.
fn client_range(client: ClientId, start: u64, end: u64) -> (Bound<Place>, Bound<Place>) {
    let place = |va| Place {
        client,
        va: VirtAddr(va),
    };
    (
        Bound::Included(place(start)),
        Bound::Excluded(place(end.max(start))),
    )
}

/// The key range of `object`'s pages in `[first, first + count)`, all places.
fn file_range(object: ObjectId, first: u64, count: u64) -> (Bound<FileKey>, Bound<FileKey>) {
    let lowest = Place {
        client: ClientId(0),
        va: VirtAddr(0),
    };
    let key = |index| (FilePage { object, index }, lowest);
    let start = Bound::Included(key(first));
    let end = match first.checked_add(count) {
        Some(end) => Bound::Excluded(key(end)),
        // Up to the last page of this object: every place of page u64::MAX.
        None => Bound::Included((
            FilePage {
                object,
                index: u64::MAX,
            },
            Place {
                client: ClientId(u64::MAX),
                va: VirtAddr(u64::MAX),
            },
        )),
    };
    (start, end)
}

impl ReverseMap {
    /// An empty reverse map.
    pub fn new() -> ReverseMap {
        ReverseMap::default()
    }

    /// The number of mappings recorded.
    pub fn len(&self) -> usize {
        self.by_place.len()
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.by_place.is_empty()
    }

    /// The number of distinct frames mapped somewhere.
    pub fn frames(&self) -> usize {
        self.by_frame.len()
    }

    /// Records that `pfn` is mapped at `place`, holding object page `file`
    /// if given (the bookkeeping half of `vm_insert_page` / a fault's
    /// `set_pte`, with `page_add_*_rmap`).
    ///
    /// Errors: [`VmError::Unaligned`] if the address is not page-aligned,
    /// [`VmError::AlreadyMapped`] if the place already has a mapping (remove
    /// it first).
    pub fn insert(
        &mut self,
        place: Place,
        pfn: Pfn,
        file: Option<FilePage>,
    ) -> Result<(), VmError> {
        if !place.va.is_aligned(PAGE_SIZE) {
            return Err(VmError::Unaligned);
        }
        match self.by_place.entry(place) {
            btree_map::Entry::Occupied(_) => return Err(VmError::AlreadyMapped),
            btree_map::Entry::Vacant(slot) => {
                slot.insert(RmapEntry { pfn, file });
            }
        }
        match self.by_frame.entry(pfn) {
            btree_map::Entry::Vacant(slot) => {
                slot.insert(Places::One(place));
            }
            btree_map::Entry::Occupied(mut slot) => {
                let places = slot.get_mut();
                match places {
                    Places::One(first) => {
                        *places = Places::Many(BTreeSet::from([*first, place]));
                    }
                    Places::Many(set) => {
                        set.insert(place);
                    }
                }
            }
        }
        if let Some(fp) = file {
            self.by_file.insert((fp, place));
        }
        Ok(())
    }

    /// Removes the mapping at `place` and returns what it mapped, or `None`
    /// if there was none (`page_remove_rmap` for one PTE).
    pub fn remove(&mut self, place: Place) -> Option<RmapEntry> {
        let entry = self.by_place.remove(&place)?;
        if let btree_map::Entry::Occupied(mut slot) = self.by_frame.entry(entry.pfn) {
            let places = slot.get_mut();
            match places {
                Places::One(_) => {
                    slot.remove();
                }
                Places::Many(set) => {
                    set.remove(&place);
                    if set.len() == 1
                        && let Some(&last) = set.first()
                    {
                        *places = Places::One(last);
                    }
                }
            }
        }
        if let Some(fp) = entry.file {
            self.by_file.remove(&(fp, place));
        }
        Some(entry)
    }

    /// What is mapped at `place` (Linux's `follow_pfn`).
    pub fn translate(&self, place: Place) -> Option<RmapEntry> {
        self.by_place.get(&place).copied()
    }

    /// Every place `pfn` is mapped at, in (client, address) order.
    pub fn mappings(&self, pfn: Pfn) -> Mappings<'_> {
        let inner = match self.by_frame.get(&pfn) {
            None => MappingsInner::One(None),
            Some(Places::One(p)) => MappingsInner::One(Some(*p)),
            Some(Places::Many(set)) => MappingsInner::Many(set.iter()),
        };
        Mappings { inner }
    }

    /// How many places `pfn` is mapped at (Linux's `page_mapcount`).
    pub fn map_count(&self, pfn: Pfn) -> usize {
        match self.by_frame.get(&pfn) {
            None => 0,
            Some(Places::One(_)) => 1,
            Some(Places::Many(set)) => set.len(),
        }
    }

    /// The mappings of `client` in `[start, start + len)` (end saturating),
    /// in address order.
    pub fn client_mappings(
        &self,
        client: ClientId,
        start: VirtAddr,
        len: u64,
    ) -> impl Iterator<Item = (VirtAddr, RmapEntry)> + '_ {
        self.by_place
            .range(client_range(client, start.0, start.0.saturating_add(len)))
            .map(|(p, e)| (p.va, *e))
    }

    /// Removes the mappings of `client` in `[start, start + len)` (end
    /// saturating) and returns them in address order: the pages to unmap
    /// and release when a range is unmapped (Linux's `zap_page_range`).
    pub fn remove_range(
        &mut self,
        client: ClientId,
        start: VirtAddr,
        len: u64,
    ) -> Vec<(VirtAddr, RmapEntry)> {
        let places: Vec<Place> = self
            .by_place
            .range(client_range(client, start.0, start.0.saturating_add(len)))
            .map(|(p, _)| *p)
            .collect();
        places
            .into_iter()
            .filter_map(|p| Some((p.va, self.remove(p)?)))
            .collect()
    }

    /// Removes every mapping of `client` and returns them in address order
    /// (client death: what Linux's `exit_mmap` unmaps).
    pub fn remove_client(&mut self, client: ClientId) -> Vec<(VirtAddr, RmapEntry)> {
        // Places are page-aligned, so `[0, u64::MAX)` holds every one.
        self.remove_range(client, VirtAddr(0), u64::MAX)
    }

    /// Every mapping of `object`'s pages `[first, first + count)` (count
    /// saturating at the object's last page), ordered by page, then place.
    pub fn file_mappings(
        &self,
        object: ObjectId,
        first: u64,
        count: u64,
    ) -> impl Iterator<Item = (FilePage, Place)> + '_ {
        self.by_file
            .range(file_range(object, first, count))
            .copied()
    }

    /// Removes every mapping of `object`'s pages `[first, first + count)` in
    /// every client and returns them, with the frames they mapped: the
    /// bookkeeping half of Linux's `unmap_mapping_range` (the server then
    /// unmaps each from the client's page tables).
    ///
    /// A `count` of zero means "to the end of the object", as Linux's
    /// `holelen == 0`.
    pub fn unmap_mapping_range(
        &mut self,
        object: ObjectId,
        first: u64,
        count: u64,
    ) -> Vec<(FilePage, Place, Pfn)> {
        let count = if count == 0 { u64::MAX } else { count };
        let found: Vec<(FilePage, Place)> = self.file_mappings(object, first, count).collect();
        found
            .into_iter()
            .filter_map(|(fp, place)| Some((fp, place, self.remove(place)?.pfn)))
            .collect()
    }

    /// Checks that the three indexes agree: every mapping is indexed by its
    /// frame (and object page, if any) and nothing else is; frames with one
    /// mapping hold it inline; addresses are page-aligned.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let mut file_entries = 0usize;
        for (place, entry) in &self.by_place {
            ensure(
                place.va.is_aligned(PAGE_SIZE),
                "unaligned mapping",
                place.va.0,
            )?;
            let indexed = match self.by_frame.get(&entry.pfn) {
                Some(Places::One(p)) => p == place,
                Some(Places::Many(set)) => set.contains(place),
                None => false,
            };
            ensure(
                indexed,
                "mapping missing from its frame's places",
                place.va.0,
            )?;
            if let Some(fp) = entry.file {
                file_entries += 1;
                ensure(
                    self.by_file.contains(&(fp, *place)),
                    "file mapping missing from the object index",
                    place.va.0,
                )?;
            }
        }
        let mut frame_entries = 0usize;
        for (pfn, places) in &self.by_frame {
            let back = |p: &Place| self.by_place.get(p).is_some_and(|e| e.pfn == *pfn);
            match places {
                Places::One(p) => {
                    frame_entries += 1;
                    ensure(back(p), "frame place without that mapping", pfn.0)?;
                }
                Places::Many(set) => {
                    ensure(
                        set.len() >= 2,
                        "place set with fewer than two places",
                        pfn.0,
                    )?;
                    frame_entries += set.len();
                    for p in set {
                        ensure(back(p), "frame place without that mapping", pfn.0)?;
                    }
                }
            }
        }
        ensure(
            frame_entries == self.by_place.len(),
            "frame index size differs from mapping count",
            frame_entries as u64,
        )?;
        ensure(
            file_entries == self.by_file.len(),
            "object index size differs from file mapping count",
            self.by_file.len() as u64,
        )?;
        for (fp, place) in &self.by_file {
            ensure(
                self.by_place
                    .get(place)
                    .is_some_and(|e| e.file == Some(*fp)),
                "object index entry without that mapping",
                place.va.0,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn at(client: u64, va: u64) -> Place {
        Place {
            client: ClientId(client),
            va: VirtAddr(va),
        }
    }

    fn fp(object: u64, index: u64) -> FilePage {
        FilePage {
            object: ObjectId(object),
            index,
        }
    }

    #[test]
    fn one_then_many_then_one() {
        let mut rm = ReverseMap::new();
        rm.insert(at(1, 0x1000), Pfn(5), None).unwrap();
        assert!(matches!(rm.by_frame.get(&Pfn(5)), Some(Places::One(_))));
        rm.insert(at(2, 0x8000), Pfn(5), None).unwrap();
        rm.insert(at(1, 0x2000), Pfn(5), None).unwrap();
        assert_eq!(rm.map_count(Pfn(5)), 3);
        let places: Vec<Place> = rm.mappings(Pfn(5)).collect();
        assert_eq!(places, vec![at(1, 0x1000), at(1, 0x2000), at(2, 0x8000)]);
        assert_eq!(rm.mappings(Pfn(5)).len(), 3);
        rm.check_invariants().unwrap();
        assert_eq!(rm.remove(at(1, 0x1000)).map(|e| e.pfn), Some(Pfn(5)));
        assert_eq!(rm.remove(at(2, 0x8000)).map(|e| e.pfn), Some(Pfn(5)));
        assert!(matches!(rm.by_frame.get(&Pfn(5)), Some(Places::One(p)) if *p == at(1, 0x2000)));
        rm.check_invariants().unwrap();
        assert!(rm.remove(at(1, 0x2000)).is_some());
        assert_eq!(rm.map_count(Pfn(5)), 0);
        assert_eq!(rm.mappings(Pfn(5)).count(), 0);
        assert!(rm.is_empty());
        assert_eq!(rm.frames(), 0);
        rm.check_invariants().unwrap();
    }

    #[test]
    fn errors_change_nothing() {
        let mut rm = ReverseMap::new();
        assert_eq!(
            rm.insert(at(1, 0x1001), Pfn(1), None),
            Err(VmError::Unaligned)
        );
        rm.insert(at(1, 0x1000), Pfn(1), Some(fp(3, 0))).unwrap();
        assert_eq!(
            rm.insert(at(1, 0x1000), Pfn(2), None),
            Err(VmError::AlreadyMapped)
        );
        assert_eq!(
            rm.translate(at(1, 0x1000)),
            Some(RmapEntry {
                pfn: Pfn(1),
                file: Some(fp(3, 0))
            })
        );
        assert_eq!(rm.map_count(Pfn(2)), 0);
        assert_eq!(rm.remove(at(1, 0x2000)), None);
        assert_eq!(rm.len(), 1);
        rm.check_invariants().unwrap();
    }

    #[test]
    fn client_death_takes_only_that_client() {
        let mut rm = ReverseMap::new();
        for i in 0..10u64 {
            rm.insert(at(1, i * PAGE_SIZE), Pfn(i), None).unwrap();
            rm.insert(at(2, i * PAGE_SIZE), Pfn(i), None).unwrap();
        }
        let top = !(PAGE_SIZE - 1);
        rm.insert(at(1, top), Pfn(99), None).unwrap();
        rm.insert(at(0, top), Pfn(98), None).unwrap();
        let gone = rm.remove_client(ClientId(1));
        assert_eq!(gone.len(), 11);
        assert_eq!(gone.last().map(|(va, _)| *va), Some(VirtAddr(top)));
        assert_eq!(rm.len(), 11);
        for i in 0..10u64 {
            assert_eq!(rm.map_count(Pfn(i)), 1);
        }
        assert_eq!(rm.map_count(Pfn(98)), 1);
        rm.check_invariants().unwrap();
    }

    #[test]
    fn ranges_of_a_client() {
        let mut rm = ReverseMap::new();
        for i in 0..8u64 {
            rm.insert(at(4, 0x10_0000 + i * PAGE_SIZE), Pfn(100 + i), None)
                .unwrap();
        }
        let seen: Vec<u64> = rm
            .client_mappings(ClientId(4), VirtAddr(0x10_2000), 3 * PAGE_SIZE)
            .map(|(va, _)| va.0)
            .collect();
        assert_eq!(seen, vec![0x10_2000, 0x10_3000, 0x10_4000]);
        let gone = rm.remove_range(ClientId(4), VirtAddr(0x10_2000), 3 * PAGE_SIZE);
        assert_eq!(
            gone.iter().map(|(_, e)| e.pfn.0).collect::<Vec<_>>(),
            vec![102, 103, 104]
        );
        assert_eq!(rm.len(), 5);
        // Saturating ends and empty ranges are fine.
        assert_eq!(
            rm.client_mappings(ClientId(4), VirtAddr(u64::MAX), u64::MAX)
                .count(),
            0
        );
        assert_eq!(
            rm.remove_range(ClientId(4), VirtAddr(0x10_0000), 0).len(),
            0
        );
        rm.check_invariants().unwrap();
    }

    #[test]
    fn unmap_mapping_range_finds_every_client() {
        let mut rm = ReverseMap::new();
        // Object 7, pages 0..6, cached in frames 200.., mapped by clients 1 and 2.
        for page in 0..6u64 {
            rm.insert(
                at(1, 0x40_0000 + page * PAGE_SIZE),
                Pfn(200 + page),
                Some(fp(7, page)),
            )
            .unwrap();
            rm.insert(
                at(2, 0x90_0000 + page * PAGE_SIZE),
                Pfn(200 + page),
                Some(fp(7, page)),
            )
            .unwrap();
        }
        // Another object's pages and an anonymous page are not touched.
        rm.insert(at(1, 0x80_0000), Pfn(300), Some(fp(8, 2)))
            .unwrap();
        rm.insert(at(1, 0x80_1000), Pfn(301), None).unwrap();
        assert_eq!(rm.file_mappings(ObjectId(7), 2, 2).count(), 4);
        let gone = rm.unmap_mapping_range(ObjectId(7), 4, 0);
        assert_eq!(gone.len(), 4);
        assert!(
            gone.iter()
                .all(|(fp, _, pfn)| fp.index >= 4 && pfn.0 == 200 + fp.index)
        );
        assert_eq!(rm.file_mappings(ObjectId(7), 0, u64::MAX).count(), 8);
        let gone = rm.unmap_mapping_range(ObjectId(7), 1, 1);
        assert_eq!(gone.len(), 2);
        assert_eq!(rm.map_count(Pfn(201)), 0);
        assert_eq!(rm.map_count(Pfn(300)), 1);
        assert_eq!(rm.len(), 8);
        assert_eq!(rm.file_mappings(ObjectId(7), u64::MAX, u64::MAX).count(), 0);
        rm.check_invariants().unwrap();
    }
}
