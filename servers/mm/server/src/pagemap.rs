//! A client's page map: what the server has mapped at each page of its address space.
//!
//! The server's own record of a client's page tables (which it cannot read
//! back from the kernel): per 2 MiB of address space a leaf of 512 entries,
//! or one entry for a 2 MiB block mapping. An entry ([`Pte`]) holds the
//! frame, how the frame is held (the client's own anonymous page, a page of
//! one of its areas, a page of a shared object, a frame it owns inserted a
//! second time, a device frame), whether it is currently in the page tables
//! and with which rights, and which cap maps it.

use core::cell::Cell;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use mm_core::addr::PAGE_SIZE;

/// Bytes covered by one leaf.
pub(crate) const LEAF_SPAN: u64 = 2 << 20;
const LEAF_PAGES: usize = 512;

/// How the frame behind an entry is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// A private anonymous page of this mapping: freed when unmapped.
    Own = 0,
    /// A page of one of the client's areas (page blocks, vmalloc, DMA):
    /// freed with the area.
    Area = 1,
    /// A page of a shared object (recorded in the reverse map).
    Shm = 2,
    /// A frame the client owns, mapped here a second time (vmap,
    /// vm_insert_page, remap_pfn_range; recorded in the reverse map).
    Borrow = 3,
    /// A device frame (frame number = physical address / 4096).
    Dev = 4,
}

/// One page's entry. `tag` names the cap mapping it (0: the frame's primary
/// copy; `i + 1`: extra slot `i`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pte {
    bits: u64,
    /// The cap tag.
    pub tag: u32,
}

const PRESENT: u64 = 1 << 63;
const MAPPED: u64 = 1 << 62;
const WRITE: u64 = 1 << 61;
const EXEC: u64 = 1 << 60;
const UNCACHED: u64 = 1 << 59;
const KIND_SHIFT: u32 = 56;
const PFN_MASK: u64 = (1 << 48) - 1;

impl Pte {
    /// A present entry for frame `pfn`, mapped (`mapped`) with `write`/`exec`.
    pub fn new(pfn: u64, hold: Hold, mapped: bool, write: bool, exec: bool, tag: u32) -> Pte {
        let mut bits = PRESENT | (pfn & PFN_MASK) | (hold as u64) << KIND_SHIFT;
        if mapped {
            bits |= MAPPED;
        }
        if write {
            bits |= WRITE;
        }
        if exec {
            bits |= EXEC;
        }
        Pte { bits, tag }
    }

    /// Whether the entry is in use.
    pub fn present(self) -> bool {
        self.bits & PRESENT != 0
    }
    /// The frame number.
    pub fn pfn(self) -> u64 {
        self.bits & PFN_MASK
    }
    /// How the frame is held.
    pub fn hold(self) -> Hold {
        match (self.bits >> KIND_SHIFT) & 7 {
            0 => Hold::Own,
            1 => Hold::Area,
            2 => Hold::Shm,
            3 => Hold::Borrow,
            _ => Hold::Dev,
        }
    }
    /// Whether it is in the page tables.
    pub fn mapped(self) -> bool {
        self.bits & MAPPED != 0
    }
    /// Whether it is mapped writable.
    pub fn writable(self) -> bool {
        self.bits & WRITE != 0
    }
    /// Whether it is mapped executable.
    pub fn exec(self) -> bool {
        self.bits & EXEC != 0
    }
    /// Whether it is mapped Normal non-cacheable (DMA-coherent memory).
    pub fn uncached(self) -> bool {
        self.bits & UNCACHED != 0
    }
    /// The same entry, mapped Normal non-cacheable.
    pub fn with_uncached(mut self) -> Pte {
        self.bits |= UNCACHED;
        self
    }
    /// The same entry with another mapping state.
    pub fn with_mapping(self, mapped: bool, write: bool, exec: bool) -> Pte {
        let mut p = Pte::new(self.pfn(), self.hold(), mapped, write, exec, self.tag);
        p.bits |= self.bits & UNCACHED;
        p
    }
    /// The memory attributes its mapping uses.
    pub fn attr(self) -> abi::Word {
        use abi::vm::{CACHEABLE, EXECUTE_NEVER, NORMAL_UNCACHED};
        if self.hold() == Hold::Dev {
            EXECUTE_NEVER
        } else if self.uncached() {
            NORMAL_UNCACHED | EXECUTE_NEVER
        } else if self.exec() {
            CACHEABLE
        } else {
            CACHEABLE | EXECUTE_NEVER
        }
    }
}

struct SmallLeaf {
    ptes: [Pte; LEAF_PAGES],
    count: u16,
}

impl SmallLeaf {
    fn new() -> Box<SmallLeaf> {
        Box::new(SmallLeaf {
            ptes: [Pte::default(); LEAF_PAGES],
            count: 0,
        })
    }
}

/// What the tree holds per 2 MiB.
enum Leaf {
    /// 4 KiB pages: the index of their leaf in [`PageMap::small`].
    Small(u32),
    /// A 2 MiB block.
    Huge(Pte),
}

/// One entry seen by a range walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A 4 KiB page at `.0`.
    Page(u64, Pte),
    /// A 2 MiB block at `.0` (its entry's frame is the first of 512).
    Block(u64, Pte),
}

/// The page map of one client.
#[derive(Default)]
pub(crate) struct PageMap {
    leaves: BTreeMap<u64, Leaf>,
    /// The leaves of 4 KiB pages, by the index the tree holds; `None`: a
    /// free index (listed in `free`).
    small: Vec<Option<Box<SmallLeaf>>>,
    free: Vec<u32>,
    /// The small leaf looked up last, as (key, index): faults and runs of
    /// them fall in one 2 MiB, so most lookups skip the tree. Cleared when
    /// that leaf goes.
    hot: Cell<Option<(u64, u32)>>,
    pages: u64,
}

impl PageMap {
    /// Pages with an entry (a block counts 512).
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// The index of the small leaf with `key`, if the 2 MiB holds one.
    fn small_index(&self, key: u64) -> Option<u32> {
        if let Some((k, i)) = self.hot.get()
            && k == key
        {
            return Some(i);
        }
        match self.leaves.get(&key)? {
            Leaf::Small(i) => {
                self.hot.set(Some((key, *i)));
                Some(*i)
            }
            Leaf::Huge(_) => None,
        }
    }

    /// The small leaf with index `i`.
    fn leaf(&self, i: u32) -> Option<&SmallLeaf> {
        self.small.get(i as usize)?.as_deref()
    }

    /// The small leaf with key `key`, made if the 2 MiB has no entry;
    /// `None` if it holds a block.
    fn leaf_for_set(&mut self, key: u64) -> Option<&mut SmallLeaf> {
        let i = match self.small_index(key) {
            Some(i) => i,
            None => {
                if self.leaves.contains_key(&key) {
                    return None;
                }
                let i = match self.free.pop() {
                    Some(i) => {
                        self.small[i as usize] = Some(SmallLeaf::new());
                        i
                    }
                    None => {
                        self.small.push(Some(SmallLeaf::new()));
                        (self.small.len() - 1) as u32
                    }
                };
                self.leaves.insert(key, Leaf::Small(i));
                self.hot.set(Some((key, i)));
                i
            }
        };
        self.small.get_mut(i as usize)?.as_deref_mut()
    }

    /// Lets the small leaf with index `i` go (its tree entry is gone).
    fn release(&mut self, i: u32) {
        if let Some(slot) = self.small.get_mut(i as usize) {
            *slot = None;
            self.free.push(i);
        }
        if self.hot.get().is_some_and(|(_, h)| h == i) {
            self.hot.set(None);
        }
    }

    /// The entry for the page at `va`; inside a block, the block's entry
    /// with the page's frame.
    pub fn get(&self, va: u64) -> Option<Pte> {
        let key = va / LEAF_SPAN;
        let i = ((va % LEAF_SPAN) / PAGE_SIZE) as usize;
        if let Some(l) = self.small_index(key) {
            let p = self.leaf(l)?.ptes[i];
            return p.present().then_some(p);
        }
        match self.leaves.get(&key)? {
            Leaf::Huge(p) => {
                let mut q = *p;
                q.bits = (q.bits & !PFN_MASK) | ((p.pfn() + i as u64) & PFN_MASK);
                Some(q)
            }
            Leaf::Small(_) => None,
        }
    }

    /// Whether the 2 MiB at `va` holds a block.
    pub fn block(&self, va: u64) -> Option<Pte> {
        match self.leaves.get(&(va / LEAF_SPAN))? {
            Leaf::Huge(p) => Some(*p),
            Leaf::Small(_) => None,
        }
    }

    /// Whether no page of the 2 MiB at `va` has an entry.
    pub fn leaf_empty(&self, va: u64) -> bool {
        !self.leaves.contains_key(&(va / LEAF_SPAN))
    }

    /// Sets the entry of the page at `va` (which must not be in a block);
    /// returns the entry it replaced.
    pub fn set(&mut self, va: u64, pte: Pte) -> Option<Pte> {
        let l = self.leaf_for_set(va / LEAF_SPAN)?;
        let slot = &mut l.ptes[((va % LEAF_SPAN) / PAGE_SIZE) as usize];
        let old = *slot;
        *slot = pte;
        if !old.present() {
            l.count += 1;
            self.pages += 1;
        }
        old.present().then_some(old)
    }

    /// Sets the entries of the `n` pages from `va` (none in a block) to
    /// `pte(i)` for page `i`: [`PageMap::set`] of each, with one lookup per
    /// 2 MiB leaf instead of one per page.
    pub fn set_run(&mut self, va: u64, n: u64, pte: impl Fn(u64) -> Pte) {
        let mut i = 0;
        while i < n {
            let at = va + i * PAGE_SIZE;
            let in_leaf = ((LEAF_SPAN - at % LEAF_SPAN) / PAGE_SIZE).min(n - i);
            let mut added = 0;
            if let Some(l) = self.leaf_for_set(at / LEAF_SPAN) {
                let first = ((at % LEAF_SPAN) / PAGE_SIZE) as usize;
                for (j, slot) in l.ptes[first..first + in_leaf as usize]
                    .iter_mut()
                    .enumerate()
                {
                    if !slot.present() {
                        l.count += 1;
                        added += 1;
                    }
                    *slot = pte(i + j as u64);
                }
            }
            self.pages += added;
            i += in_leaf;
        }
    }

    /// Removes the entry of the page at `va` (not in a block).
    pub fn remove(&mut self, va: u64) -> Option<Pte> {
        let key = va / LEAF_SPAN;
        let i = self.small_index(key)?;
        let l = self.small.get_mut(i as usize)?.as_deref_mut()?;
        let slot = &mut l.ptes[((va % LEAF_SPAN) / PAGE_SIZE) as usize];
        if !slot.present() {
            return None;
        }
        let old = core::mem::take(slot);
        l.count -= 1;
        let empty = l.count == 0;
        self.pages -= 1;
        if empty {
            self.leaves.remove(&key);
            self.release(i);
        }
        Some(old)
    }

    /// Records a block at the 2 MiB-aligned `va` (the leaf must be empty).
    pub fn set_block(&mut self, va: u64, pte: Pte) {
        match self.leaves.insert(va / LEAF_SPAN, Leaf::Huge(pte)) {
            None => self.pages += LEAF_PAGES as u64,
            Some(Leaf::Small(i)) => self.release(i),
            Some(Leaf::Huge(_)) => {}
        }
    }

    /// Updates the entry of the block at `va`.
    pub fn update_block(&mut self, va: u64, pte: Pte) {
        if let Some(Leaf::Huge(p)) = self.leaves.get_mut(&(va / LEAF_SPAN)) {
            *p = pte;
        }
    }

    /// Removes the block at `va`.
    pub fn remove_block(&mut self, va: u64) -> Option<Pte> {
        let key = va / LEAF_SPAN;
        match self.leaves.get(&key) {
            Some(Leaf::Huge(_)) => {}
            _ => return None,
        }
        self.pages -= LEAF_PAGES as u64;
        match self.leaves.remove(&key) {
            Some(Leaf::Huge(p)) => Some(p),
            _ => None,
        }
    }

    /// Every entry in `[lo, hi)` (blocks overlapping it included whole),
    /// in address order.
    pub fn entries(&self, lo: u64, hi: u64) -> Vec<Entry> {
        let mut out = Vec::new();
        if hi <= lo {
            return out;
        }
        for (&key, leaf) in self.leaves.range(lo / LEAF_SPAN..=(hi - 1) / LEAF_SPAN) {
            let base = key * LEAF_SPAN;
            match leaf {
                Leaf::Huge(p) => out.push(Entry::Block(base, *p)),
                Leaf::Small(i) => {
                    let Some(l) = self.leaf(*i) else {
                        continue;
                    };
                    let first = if lo > base {
                        ((lo - base) / PAGE_SIZE) as usize
                    } else {
                        0
                    };
                    let last = if hi - base < LEAF_SPAN {
                        (hi - base).div_ceil(PAGE_SIZE) as usize
                    } else {
                        LEAF_PAGES
                    };
                    for i in first..last {
                        let p = l.ptes[i];
                        if p.present() {
                            out.push(Entry::Page(base + i as u64 * PAGE_SIZE, p));
                        }
                    }
                }
            }
        }
        out
    }

    /// Every entry.
    pub fn all(&self) -> Vec<Entry> {
        self.entries(0, u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_remove_blocks() {
        let mut m = PageMap::default();
        let p = Pte::new(0x40123, Hold::Own, true, true, false, 0);
        assert_eq!(m.set(0x1000_1000, p), None);
        assert_eq!(m.get(0x1000_1000), Some(p));
        assert_eq!(m.get(0x1000_2000), None);
        assert!(!m.leaf_empty(0x1000_0000));
        m.set_block(
            0x1040_0000,
            Pte::new(0x40200, Hold::Own, true, true, false, 0),
        );
        assert_eq!(m.pages(), 513);
        assert_eq!(m.get(0x1040_3000).unwrap().pfn(), 0x40203);
        let e = m.entries(0x1000_0000, 0x1080_0000);
        assert_eq!(e.len(), 2);
        assert!(matches!(e[1], Entry::Block(0x1040_0000, _)));
        assert_eq!(m.remove(0x1000_1000), Some(p));
        assert!(m.leaf_empty(0x1000_0000));
        assert!(m.remove_block(0x1040_0000).is_some());
        assert_eq!(m.pages(), 0);
        let q = p.with_mapping(false, false, false);
        assert!(q.present() && !q.mapped() && q.hold() == Hold::Own && q.pfn() == 0x40123);
    }

    #[test]
    fn the_cached_leaf_goes_with_its_leaf() {
        // Leaf A emptied (its index freed), leaf B made (the index reused):
        // A's pages are gone, not B's seen through a stale cache.
        let mut m = PageMap::default();
        let p = Pte::new(0x40123, Hold::Own, true, true, false, 0);
        let (a, b) = (0x1000_1000, 0x2000_3000);
        m.set(a, p);
        assert_eq!(m.get(a), Some(p));
        assert_eq!(m.remove(a), Some(p));
        m.set(b - 0x2000, p);
        assert_eq!(m.get(a - 0x1000 + 0x2000), None);
        assert_eq!(m.get(b - 0x2000), Some(p));
        assert!(m.leaf_empty(a));
        // A block where a cached leaf was, and back.
        assert_eq!(m.remove(b - 0x2000), Some(p));
        m.set_block(0x2000_0000, p);
        assert_eq!(m.get(b).map(|q| q.pfn()), Some(0x40126));
        assert_eq!(m.set(b, p), None, "no page entry inside a block");
        assert!(m.remove_block(0x2000_0000).is_some());
        assert_eq!(m.get(b), None);
        assert_eq!(m.pages(), 0);
        assert_eq!(m.all(), []);
    }

    mod model {
        //! The page map against a map of pages (blocks as 512 pages with
        //! consecutive frames), over random operations in a few 2 MiB
        //! regions, so that leaves come, go and come back (and their slab
        //! indices and the cached leaf are reused).
        use super::*;
        use alloc::collections::BTreeMap;
        use proptest::prelude::*;

        const REGIONS: u64 = 4;
        const BASE: u64 = 0x4000_0000;

        #[derive(Clone, Debug)]
        enum Op {
            Set(u64, u64),
            Remove(u64),
            SetRun(u64, u64, u64),
            SetBlock(u64, u64),
            RemoveBlock(u64),
            Get(u64),
        }

        fn page() -> impl Strategy<Value = u64> {
            (0..REGIONS * 512).prop_map(|i| BASE + i * PAGE_SIZE)
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (page(), 1u64..1000).prop_map(|(v, f)| Op::Set(v, f)),
                4 => page().prop_map(Op::Remove),
                1 => (page(), 1u64..700, 1u64..1000).prop_map(|(v, n, f)| Op::SetRun(v, n, f)),
                1 => (0..REGIONS, 1u64..1000).prop_map(|(r, f)| Op::SetBlock(r, f)),
                1 => (0..REGIONS).prop_map(Op::RemoveBlock),
                3 => page().prop_map(Op::Get),
            ]
        }

        fn pte(f: u64) -> Pte {
            Pte::new(f * 512, Hold::Own, true, true, false, 0)
        }

        /// The model: page -> entry; blocks by region.
        #[derive(Default)]
        struct Model {
            pages: BTreeMap<u64, Pte>,
            blocks: BTreeMap<u64, Pte>,
        }

        impl Model {
            fn region_of(va: u64) -> u64 {
                (va - BASE) / LEAF_SPAN
            }
            fn in_block(&self, va: u64) -> bool {
                self.blocks.contains_key(&Self::region_of(va))
            }
            fn get(&self, va: u64) -> Option<Pte> {
                if let Some(b) = self.blocks.get(&Self::region_of(va)) {
                    let i = (va % LEAF_SPAN) / PAGE_SIZE;
                    return Some(Pte::new(b.pfn() + i, Hold::Own, true, true, false, 0));
                }
                self.pages.get(&va).copied()
            }
            fn leaf_empty(&self, va: u64) -> bool {
                let r = Self::region_of(va);
                !self.blocks.contains_key(&r)
                    && !self.pages.keys().any(|&p| Self::region_of(p) == r)
            }
            fn count(&self) -> u64 {
                self.pages.len() as u64 + 512 * self.blocks.len() as u64
            }
        }

        proptest! {
            #[test]
            fn page_map_matches_a_map_of_pages(ops in proptest::collection::vec(op(), 1..120)) {
                let mut m = PageMap::default();
                let mut want = Model::default();
                for op in ops {
                    match op {
                        Op::Set(va, f) => {
                            let got = m.set(va, pte(f));
                            if want.in_block(va) {
                                prop_assert_eq!(got, None);
                            } else {
                                prop_assert_eq!(got, want.pages.insert(va, pte(f)));
                            }
                        }
                        Op::Remove(va) => {
                            let got = m.remove(va);
                            if want.in_block(va) {
                                prop_assert_eq!(got, None);
                            } else {
                                prop_assert_eq!(got, want.pages.remove(&va));
                            }
                        }
                        Op::SetRun(va, n, f) => {
                            let end = (BASE + REGIONS * LEAF_SPAN - va) / PAGE_SIZE;
                            let n = n.min(end);
                            if (0..n).any(|i| want.in_block(va + i * PAGE_SIZE)) {
                                continue; // set_run's callers never run into a block
                            }
                            m.set_run(va, n, |i| pte(f + i));
                            for i in 0..n {
                                want.pages.insert(va + i * PAGE_SIZE, pte(f + i));
                            }
                        }
                        Op::SetBlock(r, f) => {
                            let va = BASE + r * LEAF_SPAN;
                            if !want.leaf_empty(va) {
                                continue; // set_block's callers empty the leaf first
                            }
                            m.set_block(va, pte(f));
                            want.blocks.insert(r, pte(f));
                        }
                        Op::RemoveBlock(r) => {
                            let va = BASE + r * LEAF_SPAN;
                            prop_assert_eq!(m.remove_block(va), want.blocks.remove(&r));
                        }
                        Op::Get(va) => {
                            prop_assert_eq!(m.get(va), want.get(va));
                            prop_assert_eq!(m.leaf_empty(va), want.leaf_empty(va));
                        }
                    }
                    prop_assert_eq!(m.pages(), want.count());
                }
                for r in 0..REGIONS {
                    let va = BASE + r * LEAF_SPAN;
                    for i in (0..512).step_by(37) {
                        prop_assert_eq!(m.get(va + i * PAGE_SIZE), want.get(va + i * PAGE_SIZE));
                    }
                }
                let pages: Vec<Entry> = m
                    .all()
                    .into_iter()
                    .filter(|e| matches!(e, Entry::Page(..)))
                    .collect();
                let want_pages: Vec<Entry> =
                    want.pages.iter().map(|(&va, &p)| Entry::Page(va, p)).collect();
                prop_assert_eq!(pages, want_pages);
            }
        }
    }

    #[test]
    fn set_run_is_set_of_each_page() {
        // Runs across leaves, over entries already there, of every length.
        for (va, n) in [
            (0x1000_0000, 1),
            (0x101f_e000, 5),
            (0x1010_0000, 1024),
            (0x1000_0000, 0),
        ] {
            let mut a = PageMap::default();
            let mut b = PageMap::default();
            let old = Pte::new(7, Hold::Area, true, false, false, 3);
            for m in [&mut a, &mut b] {
                m.set(0x1020_0000, old);
                m.set(va + PAGE_SIZE, old);
            }
            let pte = |i: u64| Pte::new(0x50000 + i, Hold::Own, true, true, false, 0);
            a.set_run(va, n, pte);
            for i in 0..n {
                b.set(va + i * PAGE_SIZE, pte(i));
            }
            assert_eq!(a.pages(), b.pages());
            assert_eq!(a.all(), b.all());
        }
    }
}
