//! Tests of the slab allocator: unit tests, checking mode, and property tests against a model.

use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::cache::{Geometry, Role};
use super::*;
use crate::memory::ArenaMemory;

/// Where test arenas start.
const BASE: u64 = 0x4000_0000;
/// Test arena size.
const LEN: u64 = 16 << 20;

/// A page source over `[base, base + len)`: a bump pointer and free lists
/// per order, checking every call and counting pages out; it can be told to
/// fail.
pub(super) struct TestPages {
    base: u64,
    len: u64,
    next: u64,
    free: Vec<Vec<u64>>,
    out: BTreeMap<u64, u32>,
    /// Pages handed out and not yet returned.
    pub pages_out: u64,
    /// Allocations left before every further one fails (`None`: no limit).
    pub budget: Option<u64>,
}

impl TestPages {
    pub(super) fn new(base: u64, len: u64) -> Self {
        TestPages {
            base,
            len,
            next: base,
            free: vec![Vec::new(); 16],
            out: BTreeMap::new(),
            pages_out: 0,
            budget: None,
        }
    }
}

impl PageSource for TestPages {
    fn alloc_pages(&mut self, order: u32) -> Option<u64> {
        if let Some(b) = self.budget.as_mut() {
            if *b == 0 {
                return None;
            }
            *b -= 1;
        }
        let addr = match self.free.get_mut(order as usize)?.pop() {
            Some(addr) => addr,
            None => {
                let bytes = PAGE_SIZE << order;
                if self.next + bytes > self.base + self.len {
                    return None;
                }
                self.next += bytes;
                self.next - bytes
            }
        };
        assert!(
            self.out.insert(addr, order).is_none(),
            "page source: {addr:#x} handed out twice"
        );
        self.pages_out += 1 << order;
        Some(addr)
    }
    fn free_pages(&mut self, addr: u64, order: u32) {
        assert_eq!(
            self.out.remove(&addr),
            Some(order),
            "page source: bad free of {addr:#x}"
        );
        self.pages_out -= 1 << order;
        self.free[order as usize].push(addr);
    }
}

fn setup(checking: bool) -> (SlabAllocator<TestPages>, ArenaMemory) {
    let source = TestPages::new(BASE, LEN);
    let mut slab = if checking {
        SlabAllocator::new_checking(source)
    } else {
        SlabAllocator::new(source)
    };
    slab.add_arena(BASE, LEN).unwrap();
    (slab, ArenaMemory::new(BASE, LEN as usize))
}

/// Page conservation and a clean validate walk.
fn check_invariants(slab: &SlabAllocator<TestPages>, mem: &ArenaMemory) {
    slab.validate(mem).unwrap();
    let st = slab.stats();
    assert_eq!(
        st.pages_obtained - st.pages_returned,
        st.slab_pages + st.large_pages
    );
    assert_eq!(slab.page_source().pages_out, st.slab_pages + st.large_pages);
}

fn read(mem: &ArenaMemory, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    mem.read(addr, &mut buf).unwrap();
    buf
}

#[test]
fn metadata_layout() {
    // One 16-byte descriptor per page; a cache small enough to box.
    assert!(core::mem::size_of::<super::cache::Cache>() <= 4096);
    assert_eq!(core::mem::size_of::<super::pagemap::PageInfo>(), 16);
}

#[test]
fn size_classes() {
    let cases = [
        (1, 8),
        (8, 8),
        (9, 16),
        (17, 32),
        (33, 64),
        (64, 64),
        (65, 96),
        (96, 96),
        (97, 128),
        (129, 192),
        (192, 192),
        (193, 256),
        (257, 512),
        (1025, 2048),
        (4097, 8192),
        (8192, 8192),
    ];
    for (size, class) in cases {
        assert_eq!(kmalloc_size_class(size), Some(class), "size {size}");
    }
    assert_eq!(kmalloc_size_class(0), None);
    assert_eq!(kmalloc_size_class(8193), None);
    for size in 1..=KMALLOC_MAX_CACHE_SIZE {
        let class = kmalloc_size_class(size).unwrap();
        assert!(class >= size && KMALLOC_SIZES.contains(&class));
        let i = KMALLOC_SIZES.iter().position(|&c| c == class).unwrap();
        assert!(
            i == 0 || KMALLOC_SIZES[i - 1] < size,
            "size {size} not in the smallest class"
        );
    }
}

#[test]
fn kmalloc_caches_have_valid_geometry() {
    for checking in [false, true] {
        let (slab, _) = setup(checking);
        let stats = slab.kmalloc_stats();
        assert_eq!(stats.len(), KMALLOC_SIZES.len());
        for (st, &size) in stats.iter().zip(&KMALLOC_SIZES) {
            assert_eq!(st.object_size, size);
            assert!(st.objects_per_slab >= 1);
            let slab_bytes = (PAGE_SIZE as usize) << st.order;
            assert!(st.objects_per_slab * st.stride <= slab_bytes);
            // Waste at most 1/8 of a slab outside checking mode.
            if !checking {
                assert!((slab_bytes - st.objects_per_slab * st.stride) * 8 <= slab_bytes);
            }
        }
    }
}

#[test]
fn reciprocal_division_is_exact() {
    for red_zone in [false, true] {
        let strides = (8..=2048u64).step_by(8).chain((2048..=8192).step_by(104));
        for stride in strides.chain([12_000, 40_000, 100_000, 250_000]) {
            let g = Geometry::new(stride, 8, red_zone).unwrap();
            let step = if g.slab_bytes > 1 << 16 { 7 } else { 1 };
            for rel in (0..g.slab_bytes).step_by(step) {
                assert_eq!(
                    (rel * g.recip) >> 48,
                    rel / g.stride,
                    "stride {} rel {rel}",
                    g.stride
                );
            }
        }
    }
}

#[test]
fn zero_size_and_null() {
    let (mut slab, mut mem) = setup(false);
    assert_eq!(slab.kmalloc(&mut mem, 0), Ok(ZERO_SIZE_PTR));
    assert_eq!(slab.kzalloc(&mut mem, 0), Ok(ZERO_SIZE_PTR));
    assert_eq!(slab.kcalloc(&mut mem, 0, 100), Ok(ZERO_SIZE_PTR));
    assert_eq!(slab.ksize(ZERO_SIZE_PTR), Ok(0));
    assert_eq!(slab.ksize(0), Ok(0));
    assert_eq!(slab.kfree(&mut mem, ZERO_SIZE_PTR), Ok(()));
    assert_eq!(slab.kfree(&mut mem, 0), Ok(()));
    assert_eq!(
        slab.kfree(&mut mem, 8),
        Err(SlabError::InvalidAddress { addr: 8 })
    );
    let p = slab.krealloc(&mut mem, ZERO_SIZE_PTR, 10).unwrap();
    assert!(p > ZERO_SIZE_PTR);
    assert_eq!(slab.krealloc(&mut mem, p, 0), Ok(ZERO_SIZE_PTR));
    assert_eq!(
        slab.kfree(&mut mem, p),
        Err(SlabError::DoubleFree { addr: p })
    );
    assert_eq!(slab.kmemdup(&mut mem, BASE, 0), Ok(ZERO_SIZE_PTR));
    assert_eq!(slab.kstrdup(&mut mem, 0), Ok(0));
    assert_eq!(slab.kstrndup(&mut mem, 0, 5), Ok(0));
    assert_eq!(slab.stats().pages_obtained - slab.stats().pages_returned, 1);
    check_invariants(&slab, &mem);
}

#[test]
fn saturated_sizes_fail_cleanly() {
    let (mut slab, mut mem) = setup(false);
    let too_large = |size| Err(SlabError::TooLarge { size });
    assert_eq!(slab.kmalloc(&mut mem, usize::MAX), too_large(usize::MAX));
    assert_eq!(
        slab.kmalloc(&mut mem, KMALLOC_MAX_SIZE + 1),
        too_large(KMALLOC_MAX_SIZE + 1)
    );
    assert_eq!(slab.kzalloc(&mut mem, usize::MAX), too_large(usize::MAX));
    assert_eq!(
        slab.kmalloc_array(&mut mem, usize::MAX, 2),
        Err(SlabError::Overflow)
    );
    assert_eq!(
        slab.kcalloc(&mut mem, 1 << 40, 1 << 40),
        Err(SlabError::Overflow)
    );
    assert_eq!(slab.kmalloc_array(&mut mem, 1 << 20, 8), too_large(8 << 20));
    assert_eq!(
        slab.kmemdup(&mut mem, BASE, usize::MAX),
        too_large(usize::MAX)
    );
    let p = slab.kmalloc(&mut mem, 100).unwrap();
    assert_eq!(
        slab.krealloc(&mut mem, p, usize::MAX),
        too_large(usize::MAX)
    );
    assert_eq!(slab.ksize(p), Ok(128));
    assert_eq!(
        slab.kmem_cache_create("big", usize::MAX, 8, CacheFlags::NONE, None),
        Err(SlabError::InvalidCacheParams)
    );
    // The largest size works.
    let big = slab.kmalloc(&mut mem, KMALLOC_MAX_SIZE).unwrap();
    assert_eq!(slab.ksize(big), Ok(KMALLOC_MAX_SIZE));
    slab.kfree(&mut mem, big).unwrap();
    slab.kfree(&mut mem, p).unwrap();
    check_invariants(&slab, &mem);
}

#[test]
fn bad_frees_are_refused_without_change() {
    let (mut slab, mut mem) = setup(false);
    let p = slab.kmalloc(&mut mem, 64).unwrap();
    let q = slab.kmalloc(&mut mem, 64).unwrap();
    let big = slab.kmalloc(&mut mem, 3 * PAGE_SIZE as usize).unwrap();
    let before = (slab.stats(), slab.kmalloc_stats());
    let bad = [
        (p + 1, SlabError::InvalidAddress { addr: p + 1 }),
        (p + 32, SlabError::InvalidAddress { addr: p + 32 }),
        (big + 8, SlabError::InvalidAddress { addr: big + 8 }),
        (
            big + PAGE_SIZE,
            SlabError::InvalidAddress {
                addr: big + PAGE_SIZE,
            },
        ),
        (BASE - 64, SlabError::InvalidAddress { addr: BASE - 64 }),
        (
            BASE + LEN - 64,
            SlabError::InvalidAddress {
                addr: BASE + LEN - 64,
            },
        ),
        (u64::MAX, SlabError::InvalidAddress { addr: u64::MAX }),
        (q + 64 * 5, SlabError::DoubleFree { addr: q + 64 * 5 }),
    ];
    for (addr, err) in bad {
        assert_eq!(slab.kfree(&mut mem, addr), Err(err), "kfree {addr:#x}");
        assert!(slab.ksize(addr).is_err());
        assert_eq!((slab.stats(), slab.kmalloc_stats()), before);
    }
    slab.kfree(&mut mem, p).unwrap();
    assert_eq!(
        slab.kfree(&mut mem, p),
        Err(SlabError::DoubleFree { addr: p })
    );
    assert_eq!(slab.ksize(p), Err(SlabError::NotAllocated { addr: p }));
    assert_eq!(
        slab.krealloc(&mut mem, p, 10),
        Err(SlabError::NotAllocated { addr: p })
    );
    slab.kfree(&mut mem, big).unwrap();
    assert_eq!(
        slab.kfree(&mut mem, big),
        Err(SlabError::InvalidAddress { addr: big })
    );
    slab.kfree(&mut mem, q).unwrap();
    check_invariants(&slab, &mem);
}

#[test]
fn double_free_through_the_magazines_is_caught() {
    // Objects sitting in either magazine, or back in their slab, are free.
    let (mut slab, mut mem) = setup(false);
    let addrs: Vec<u64> = (0..300)
        .map(|_| slab.kmalloc(&mut mem, 32).unwrap())
        .collect();
    for &a in &addrs {
        slab.kfree(&mut mem, a).unwrap();
    }
    for &a in &addrs {
        assert_eq!(
            slab.kfree(&mut mem, a),
            Err(SlabError::DoubleFree { addr: a })
        );
    }
    check_invariants(&slab, &mem);
}

#[test]
fn frees_alternating_between_caches() {
    // Every free misses the hint of the previous one.
    let (mut slab, mut mem) = setup(false);
    let c = slab
        .kmem_cache_create("c", 40, 8, CacheFlags::NONE, None)
        .unwrap();
    let mut objs = Vec::new();
    for i in 0..600 {
        let size = [64, 128, 8][i % 3];
        objs.push((slab.kmalloc(&mut mem, size).unwrap(), None));
        objs.push((slab.kmem_cache_alloc(&mut mem, c).unwrap(), Some(c)));
    }
    for &(a, cache) in &objs {
        match cache {
            Some(c) => slab.kmem_cache_free(&mut mem, c, a).unwrap(),
            None => slab.kfree(&mut mem, a).unwrap(),
        }
    }
    // Freed again: still-held slabs know the object is free; slabs already
    // given back no longer know the address at all.
    let before = slab.stats();
    for &(a, _) in objs.iter().rev() {
        let err = slab.kfree(&mut mem, a).unwrap_err();
        let known = [
            SlabError::DoubleFree { addr: a },
            SlabError::InvalidAddress { addr: a },
        ];
        assert!(known.contains(&err), "{err:?}");
    }
    assert_eq!(slab.stats(), before);
    check_invariants(&slab, &mem);
    slab.kmem_cache_destroy(c).unwrap();
    slab.shrink_all();
    assert_eq!(slab.page_source().pages_out, 0);
}

#[test]
fn fast_object_ids() {
    use super::pagemap::{NO_GID, PageInfo, PageKind};
    // Pages the fast path does not serve give ids beyond every cache.
    for off in 0..PAGE_SIZE {
        for page in [BASE, BASE + 7 * PAGE_SIZE] {
            assert!(PageInfo::UNUSED.fast_object(page + off) >= u64::from(NO_GID));
        }
    }
    // Fast pages: object starts give their id, anything else at least 2^52.
    for shift in 3..=12u8 {
        let stride = 1u64 << shift;
        for page_gid in [0, 12_345, u32::MAX - 4096] {
            let info = PageInfo {
                fast_shift: shift,
                kind: PageKind::Slab,
                cache: 3,
                page_gid,
                gid_base: 0,
                sub: 0,
            };
            for off in 0..PAGE_SIZE {
                let id = info.fast_object(BASE + 5 * PAGE_SIZE + off);
                if off % stride == 0 {
                    assert_eq!(id, u64::from(page_gid) + off / stride);
                } else {
                    assert!(id >= 1 << 52, "shift {shift} offset {off}: id {id:#x}");
                }
            }
        }
    }
}

#[test]
fn every_address_but_live_objects_is_refused() {
    // Every 8-byte aligned address of every page the allocator holds —
    // slabs of every class (fast pages and not), caches of both kinds, a
    // large allocation — that is not a live allocation is refused by kfree
    // and kmem_cache_free, and changes nothing.
    for checking in [false, true] {
        let (mut slab, mut mem) = setup(checking);
        let pow2 = slab
            .kmem_cache_create("pow2", 256, 0, CacheFlags::NONE, None)
            .unwrap();
        let odd = slab
            .kmem_cache_create("odd", 40, 0, CacheFlags::NONE, None)
            .unwrap();
        // Over two slabs of each, every third object freed again: objects
        // live, in both magazines and back in their slabs.
        let mut live = BTreeMap::new();
        for (i, &size) in KMALLOC_SIZES.iter().enumerate() {
            let per = slab.kmalloc_stats()[i].objects_per_slab;
            for k in 0..2 * per + 5 {
                let a = slab.kmalloc(&mut mem, size).unwrap();
                if k % 3 == 0 {
                    slab.kfree(&mut mem, a).unwrap();
                } else {
                    live.insert(a, None);
                }
            }
        }
        for id in [pow2, odd] {
            let per = slab.cache_stats(id).unwrap().objects_per_slab;
            for k in 0..2 * per + 5 {
                let a = slab.kmem_cache_alloc(&mut mem, id).unwrap();
                if k % 3 == 0 {
                    slab.kmem_cache_free(&mut mem, id, a).unwrap();
                } else {
                    live.insert(a, Some(id));
                }
            }
        }
        live.insert(
            slab.kmalloc(&mut mem, 3 * PAGE_SIZE as usize).unwrap(),
            None,
        );
        let snapshot = |s: &SlabAllocator<TestPages>| {
            (
                s.stats(),
                s.kmalloc_stats(),
                s.cache_stats(pow2).unwrap(),
                s.cache_stats(odd).unwrap(),
            )
        };
        let before = snapshot(&slab);
        let end = slab.page_source().next;
        for a in (BASE..end).step_by(8) {
            if live.contains_key(&a) {
                continue;
            }
            assert!(slab.kfree(&mut mem, a).is_err(), "kfree {a:#x}");
            assert!(slab.kmem_cache_free(&mut mem, pow2, a).is_err());
        }
        assert_eq!(snapshot(&slab), before);
        check_invariants(&slab, &mem);
        for (a, cache) in live {
            match cache {
                Some(id) => slab.kmem_cache_free(&mut mem, id, a).unwrap(),
                None => slab.kfree(&mut mem, a).unwrap(),
            }
        }
        check_invariants(&slab, &mem);
    }
}

#[test]
fn frees_in_other_arenas() {
    // The fast path looks up the first arena inline and the others out of
    // line, with the same checks.
    let mut slab = SlabAllocator::new(TestPages::new(BASE, LEN));
    slab.add_arena(BASE + LEN / 2, LEN / 2).unwrap();
    slab.add_arena(BASE, LEN / 2).unwrap();
    let mut mem = ArenaMemory::new(BASE, LEN as usize);
    let objs: Vec<u64> = (0..300)
        .map(|_| slab.kmalloc(&mut mem, 64).unwrap())
        .collect();
    assert!(objs.iter().all(|&a| a < BASE + LEN / 2));
    for &a in &objs {
        let interior = a + 8;
        let err = Err(SlabError::InvalidAddress { addr: interior });
        assert_eq!(slab.kfree(&mut mem, interior), err);
    }
    let (freed, kept): (Vec<u64>, Vec<u64>) = objs.iter().partition(|&&a| a % 128 == 0);
    for &a in &freed {
        slab.kfree(&mut mem, a).unwrap();
    }
    let before = slab.stats();
    for &a in &freed {
        assert_eq!(
            slab.kfree(&mut mem, a),
            Err(SlabError::DoubleFree { addr: a })
        );
    }
    assert_eq!(slab.stats(), before);
    for &a in &kept {
        slab.kfree(&mut mem, a).unwrap();
    }
    check_invariants(&slab, &mem);
}

#[test]
fn validate_catches_inconsistent_metadata() {
    let (mut slab, mut mem) = setup(false);
    let p = slab.kmalloc(&mut mem, 64).unwrap();
    slab.validate(&mem).unwrap();
    slab.caches[3].state[0] = super::cache::FREE;
    assert!(matches!(
        slab.validate(&mem),
        Err(SlabError::Corrupted(Corruption {
            kind: CorruptionKind::Metadata,
            ..
        }))
    ));
    slab.caches[3].state[0] = super::cache::LIVE;
    slab.validate(&mem).unwrap();
    slab.caches[3].slab_free += 1;
    assert!(slab.validate(&mem).is_err());
    slab.caches[3].slab_free -= 1;
    slab.kfree(&mut mem, p).unwrap();
    slab.validate(&mem).unwrap();
}

#[test]
fn ksize_alignment_and_large_allocations() {
    let (mut slab, mut mem) = setup(false);
    for size in (1..=9000)
        .step_by(7)
        .chain([PAGE_SIZE as usize * 5, 1 << 20])
    {
        let p = slab.kmalloc(&mut mem, size).unwrap();
        let usable = slab.ksize(p).unwrap();
        assert!(usable >= size);
        let align = match kmalloc_size_class(size) {
            Some(class) => 1 << class.trailing_zeros().min(12),
            None => PAGE_SIZE,
        };
        assert_eq!(p % align, 0, "size {size} at {p:#x}");
        if size > KMALLOC_MAX_CACHE_SIZE {
            assert!(usable.is_power_of_two() && usable % PAGE_SIZE as usize == 0);
            assert_eq!(slab.stats().large_allocations, 1);
        }
        slab.kfree(&mut mem, p).unwrap();
    }
    assert_eq!(slab.stats().large_pages, 0);
    check_invariants(&slab, &mem);
}

#[test]
fn krealloc_semantics() {
    let (mut slab, mut mem) = setup(false);
    let p = slab.krealloc(&mut mem, 0, 40).unwrap();
    assert_eq!(slab.ksize(p), Ok(64));
    mem.write(p, &[7; 40]).unwrap();
    // Within the usable size: in place, both ways.
    assert_eq!(slab.krealloc(&mut mem, p, 64), Ok(p));
    assert_eq!(slab.krealloc(&mut mem, p, 1), Ok(p));
    // Beyond it: moved, contents kept, old freed.
    let q = slab.krealloc(&mut mem, p, 1000).unwrap();
    assert_ne!(q, p);
    assert_eq!(read(&mem, q, 40), vec![7; 40]);
    assert_eq!(
        slab.kfree(&mut mem, p),
        Err(SlabError::DoubleFree { addr: p })
    );
    // Into a large allocation and back down (in place, as Linux).
    let r = slab.krealloc(&mut mem, q, 50_000).unwrap();
    assert_eq!(read(&mem, r, 40), vec![7; 40]);
    assert_eq!(slab.krealloc(&mut mem, r, 10), Ok(r));
    // Failure leaves the old allocation alone.
    slab.page_source_mut().budget = Some(0);
    assert_eq!(
        slab.krealloc(&mut mem, r, 3 << 20),
        Err(SlabError::OutOfMemory)
    );
    assert_eq!(read(&mem, r, 40), vec![7; 40]);
    slab.page_source_mut().budget = None;
    assert_eq!(slab.krealloc(&mut mem, r, 0), Ok(ZERO_SIZE_PTR));
    assert_eq!(slab.stats().large_pages, 0);
    check_invariants(&slab, &mem);
}

#[test]
fn zeroing_and_copying() {
    let (mut slab, mut mem) = setup(false);
    mem.fill(BASE, LEN, 0xee).unwrap();
    let z = slab.kzalloc(&mut mem, 100).unwrap();
    assert_eq!(read(&mem, z, 128), vec![0; 128]);
    let c = slab.kcalloc(&mut mem, 10, 30).unwrap();
    assert_eq!(read(&mem, c, 300), vec![0; 300]);
    let big = slab.kzalloc(&mut mem, 10_000).unwrap();
    assert_eq!(read(&mem, big, 10_000), vec![0; 10_000]);
    mem.write(z, b"hello, world\0trailing").unwrap();
    let d = slab.kmemdup(&mut mem, z, 5).unwrap();
    assert_eq!(read(&mem, d, 5), b"hello");
    let s = slab.kstrdup(&mut mem, z).unwrap();
    assert_eq!(slab.ksize(s), Ok(16));
    assert_eq!(read(&mem, s, 13), b"hello, world\0");
    let n = slab.kstrndup(&mut mem, z, 5).unwrap();
    assert_eq!(read(&mem, n, 6), b"hello\0");
    let whole = slab.kstrndup(&mut mem, z, 100).unwrap();
    assert_eq!(read(&mem, whole, 13), b"hello, world\0");
    // A string ending right at the end of accessible memory.
    let end = BASE + LEN - 3;
    mem.write(end, b"ab\0").unwrap();
    let e = slab.kstrdup(&mut mem, end).unwrap();
    assert_eq!(read(&mem, e, 3), b"ab\0");
    // Unreadable source: an error, nothing leaked.
    let before = slab.kmalloc_stats();
    assert!(matches!(
        slab.kmemdup(&mut mem, BASE + LEN - 8, 64),
        Err(SlabError::Access(_))
    ));
    assert!(matches!(
        slab.kstrdup(&mut mem, BASE + LEN),
        Err(SlabError::Access(_))
    ));
    let after = slab.kmalloc_stats();
    let live = |s: &[CacheStats]| s.iter().map(|c| c.active_objects).sum::<u64>();
    assert_eq!(live(&before), live(&after));
    for a in [z, c, big, d, s, n, whole, e] {
        slab.kfree(&mut mem, a).unwrap();
    }
    check_invariants(&slab, &mem);
}

fn fill_ctor(mem: &mut dyn MemoryAccess, addr: u64) -> Result<(), AccessError> {
    mem.fill(addr, 24, 0xc7)
}

#[test]
fn kmem_cache_lifecycle() {
    let (mut slab, mut mem) = setup(false);
    let c = slab
        .kmem_cache_create("thing", 24, 0, CacheFlags::NONE, Some(fill_ctor))
        .unwrap();
    let objs: Vec<u64> = (0..500)
        .map(|_| slab.kmem_cache_alloc(&mut mem, c).unwrap())
        .collect();
    for &o in &objs {
        assert_eq!(o % 8, 0);
        assert_eq!(read(&mem, o, 24), vec![0xc7; 24], "constructed");
    }
    let st = slab.cache_stats(c).unwrap();
    assert_eq!(
        (st.name.as_str(), st.object_size, st.active_objects),
        ("thing", 24, 500)
    );
    assert!(st.pages > 0 && st.slabs > 0 && st.total_objects >= 500);
    // Another cache's object, and a kmalloc object, are refused.
    let other = slab
        .kmem_cache_create("other", 24, 0, CacheFlags::NONE, None)
        .unwrap();
    let x = slab.kmem_cache_alloc(&mut mem, other).unwrap();
    assert_eq!(
        slab.kmem_cache_free(&mut mem, c, x),
        Err(SlabError::WrongCache { addr: x })
    );
    let k = slab.kmalloc(&mut mem, 24).unwrap();
    assert_eq!(
        slab.kmem_cache_free(&mut mem, c, k),
        Err(SlabError::WrongCache { addr: k })
    );
    // kfree frees cache objects too, as in Linux.
    slab.kfree(&mut mem, x).unwrap();
    slab.kfree(&mut mem, k).unwrap();
    // Destroying with live objects is reported; nothing changes.
    assert_eq!(
        slab.kmem_cache_destroy(c),
        Err(SlabError::CacheBusy { live: 500 })
    );
    let mut listed = slab.live_objects(c).unwrap();
    listed.sort_unstable();
    let mut expected = objs.clone();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    for &o in &objs[..499] {
        slab.kmem_cache_free(&mut mem, c, o).unwrap();
    }
    assert_eq!(
        slab.kmem_cache_destroy(c),
        Err(SlabError::CacheBusy { live: 1 })
    );
    slab.kmem_cache_free(&mut mem, c, objs[499]).unwrap();
    check_invariants(&slab, &mem);
    slab.kmem_cache_destroy(c).unwrap();
    assert_eq!(
        slab.kmem_cache_alloc(&mut mem, c),
        Err(SlabError::NoSuchCache)
    );
    assert_eq!(slab.cache_stats(c), Err(SlabError::NoSuchCache));
    // The slot is reused; the stale id stays dead.
    let again = slab
        .kmem_cache_create("again", 100, 64, CacheFlags::NONE, None)
        .unwrap();
    assert_ne!(again, c);
    assert_eq!(slab.kmem_cache_destroy(c), Err(SlabError::NoSuchCache));
    let a = slab.kmem_cache_alloc(&mut mem, again).unwrap();
    assert_eq!(a % 64, 0);
    slab.kmem_cache_free(&mut mem, again, a).unwrap();
    slab.kmem_cache_destroy(again).unwrap();
    slab.kmem_cache_destroy(other).unwrap();
    slab.shrink_all();
    check_invariants(&slab, &mem);
    assert_eq!(slab.page_source().pages_out, 0);
}

#[test]
fn cache_parameters_are_checked() {
    let (mut slab, _) = setup(false);
    let bad = Err(SlabError::InvalidCacheParams);
    assert_eq!(
        slab.kmem_cache_create("z", 0, 8, CacheFlags::NONE, None),
        bad
    );
    assert_eq!(
        slab.kmem_cache_create("a", 8, 3, CacheFlags::NONE, None),
        bad
    );
    assert_eq!(
        slab.kmem_cache_create("a", 8, 8192, CacheFlags::NONE, None),
        bad
    );
    assert_eq!(
        slab.kmem_cache_create("s", KMEM_CACHE_MAX_SIZE + 1, 8, CacheFlags::NONE, None),
        bad
    );
    let hw = slab
        .kmem_cache_create("hw", 40, 0, CacheFlags::HWCACHE_ALIGN, None)
        .unwrap();
    assert_eq!(slab.cache_stats(hw).unwrap().align, 64);
    let small = slab
        .kmem_cache_create("hw16", 12, 0, CacheFlags::HWCACHE_ALIGN, None)
        .unwrap();
    assert_eq!(slab.cache_stats(small).unwrap().align, 16);
    let huge = slab.kmem_cache_create("huge", KMEM_CACHE_MAX_SIZE, 4096, CacheFlags::NONE, None);
    assert!(huge.is_ok());
}

#[test]
fn shrink_returns_empty_slabs() {
    let (mut slab, mut mem) = setup(false);
    let c = slab
        .kmem_cache_create("s", 200, 8, CacheFlags::NONE, None)
        .unwrap();
    let objs: Vec<u64> = (0..2000)
        .map(|_| slab.kmem_cache_alloc(&mut mem, c).unwrap())
        .collect();
    let pages = slab.cache_stats(c).unwrap().pages;
    for &o in &objs {
        slab.kmem_cache_free(&mut mem, c, o).unwrap();
    }
    // Surplus empty slabs already went back as they emptied.
    let st = slab.cache_stats(c).unwrap();
    assert!(st.pages < pages);
    assert!(st.empty_slabs <= 2 + 1);
    let freed = slab.kmem_cache_shrink(c).unwrap();
    assert_eq!(freed, st.pages);
    let st = slab.cache_stats(c).unwrap();
    assert_eq!(
        (st.pages, st.slabs, st.cached_objects, st.active_objects),
        (0, 0, 0, 0)
    );
    check_invariants(&slab, &mem);
}

#[test]
fn exhaustion_and_recovery() {
    let (mut slab, mut mem) = setup(false);
    slab.page_source_mut().budget = Some(3);
    let mut got = Vec::new();
    loop {
        match slab.kmalloc(&mut mem, 1024) {
            Ok(a) => got.push(a),
            Err(e) => {
                assert_eq!(e, SlabError::OutOfMemory);
                break;
            }
        }
    }
    // Three slabs of kmalloc-1k.
    let per_slab = slab.kmalloc_stats()[9].objects_per_slab;
    assert_eq!(got.len(), 3 * per_slab);
    assert_eq!(slab.kmalloc(&mut mem, 20_000), Err(SlabError::OutOfMemory));
    check_invariants(&slab, &mem);
    slab.kfree(&mut mem, got.pop().unwrap()).unwrap();
    assert!(slab.kmalloc(&mut mem, 1024).is_ok());
    slab.page_source_mut().budget = None;
    assert!(slab.kmalloc(&mut mem, 1024).is_ok());
    check_invariants(&slab, &mem);
}

#[test]
fn arenas() {
    let mut slab = SlabAllocator::new(TestPages::new(BASE, LEN));
    let bad = |base, len| Err(SlabError::InvalidArena { base, len });
    assert_eq!(slab.add_arena(0, LEN), bad(0, LEN));
    assert_eq!(slab.add_arena(BASE + 1, LEN), bad(BASE + 1, LEN));
    assert_eq!(slab.add_arena(BASE, 0), bad(BASE, 0));
    assert_eq!(
        slab.add_arena(u64::MAX - 4095, 8192),
        bad(u64::MAX - 4095, 8192)
    );
    // No arena: the source's pages are given back.
    let mut mem = ArenaMemory::new(BASE, LEN as usize);
    let err = Err(SlabError::PagesOutsideArena { addr: BASE });
    assert_eq!(slab.kmalloc(&mut mem, 300_000), err);
    assert_eq!(slab.page_source().pages_out, 0);
    // Two arenas, the source's range split across them.
    slab.add_arena(BASE + LEN / 2, LEN / 2).unwrap();
    assert_eq!(
        slab.add_arena(BASE + LEN / 2 + 4096, 4096),
        bad(BASE + LEN / 2 + 4096, 4096)
    );
    slab.add_arena(BASE, LEN / 2).unwrap();
    let objs: Vec<u64> = (0..20)
        .map(|_| slab.kmalloc(&mut mem, 300_000).unwrap())
        .collect();
    assert!(objs.iter().any(|&a| a < BASE + LEN / 2) && objs.iter().any(|&a| a >= BASE + LEN / 2));
    let small: Vec<u64> = (0..1000)
        .map(|_| slab.kmalloc(&mut mem, 100).unwrap())
        .collect();
    for a in objs.into_iter().chain(small) {
        slab.kfree(&mut mem, a).unwrap();
    }
    check_invariants(&slab, &mem);
}

// ----- checking mode -----

#[test]
fn checking_detects_double_free() {
    let (mut slab, mut mem) = setup(true);
    let p = slab.kmalloc(&mut mem, 64).unwrap();
    slab.kfree(&mut mem, p).unwrap();
    assert_eq!(
        slab.kfree(&mut mem, p),
        Err(SlabError::DoubleFree { addr: p })
    );
    check_invariants(&slab, &mem);
}

#[test]
fn checking_poisons_and_reports_overflow_by_one() {
    let (mut slab, mut mem) = setup(true);
    let p = slab.kmalloc(&mut mem, 64).unwrap();
    assert_eq!(read(&mem, p, 64), vec![POISON_INUSE; 64]);
    assert_eq!(read(&mem, p - 1, 1), vec![RED_ACTIVE]);
    assert_eq!(read(&mem, p + 64, 1), vec![RED_ACTIVE]);
    mem.write(p + 64, &[0]).unwrap();
    let report = Corruption {
        kind: CorruptionKind::RightRedZone,
        object: p,
        addr: p + 64,
        expected: RED_ACTIVE,
        found: 0,
    };
    assert_eq!(slab.validate(&mem), Err(SlabError::Corrupted(report)));
    assert_eq!(slab.kfree(&mut mem, p), Err(SlabError::Corrupted(report)));
    // Quarantined: never handed out again, and refused.
    assert_eq!(
        slab.kfree(&mut mem, p),
        Err(SlabError::Quarantined { addr: p })
    );
    assert_eq!(slab.kmalloc_stats()[3].quarantined_objects, 1);
    for _ in 0..200 {
        assert_ne!(slab.kmalloc(&mut mem, 64).unwrap(), p);
    }
    slab.validate(&mem).unwrap();
}

#[test]
fn checking_catches_overflow_past_the_requested_size() {
    let (mut slab, mut mem) = setup(true);
    let p = slab.kmalloc(&mut mem, 60).unwrap();
    assert_eq!(slab.ksize(p), Ok(60));
    mem.write(p, &[1; 60]).unwrap();
    slab.validate(&mem).unwrap();
    mem.write(p + 60, &[1]).unwrap();
    let err = slab.kfree(&mut mem, p).unwrap_err();
    assert!(matches!(
        err,
        SlabError::Corrupted(Corruption { kind: CorruptionKind::RightRedZone, addr, .. }) if addr == p + 60
    ));
    // Underflow into the left red zone of a cache object.
    let c = slab
        .kmem_cache_create("c", 40, 8, CacheFlags::NONE, None)
        .unwrap();
    let o = slab.kmem_cache_alloc(&mut mem, c).unwrap();
    mem.write(o - 1, &[9]).unwrap();
    let err = slab.kmem_cache_free(&mut mem, c, o).unwrap_err();
    assert!(matches!(
        err,
        SlabError::Corrupted(Corruption { kind: CorruptionKind::LeftRedZone, addr, found: 9, .. }) if addr == o - 1
    ));
}

#[test]
fn checking_detects_use_after_free() {
    let (mut slab, mut mem) = setup(true);
    let p = slab.kmalloc(&mut mem, 128).unwrap();
    slab.kfree(&mut mem, p).unwrap();
    assert_eq!(read(&mem, p, 128)[..127], [POISON_FREE; 127]);
    assert_eq!(read(&mem, p + 127, 1), vec![POISON_END]);
    mem.write(p + 3, &[0x42]).unwrap();
    let report = Corruption {
        kind: CorruptionKind::UseAfterFree,
        object: p,
        addr: p + 3,
        expected: POISON_FREE,
        found: 0x42,
    };
    assert_eq!(slab.validate(&mem), Err(SlabError::Corrupted(report)));
    // The freed object is the next one handed out: the check fires then.
    assert_eq!(
        slab.kmalloc(&mut mem, 128),
        Err(SlabError::Corrupted(report))
    );
    let q = slab.kmalloc(&mut mem, 128).unwrap();
    assert_ne!(q, p);
    slab.validate(&mem).unwrap();
    slab.kfree(&mut mem, q).unwrap();
    check_invariants(&slab, &mem);
}

#[test]
fn checking_krealloc_moves_the_red_zone() {
    let (mut slab, mut mem) = setup(true);
    let p = slab.kmalloc(&mut mem, 40).unwrap();
    mem.write(p, &[5; 40]).unwrap();
    assert_eq!(slab.krealloc(&mut mem, p, 50), Ok(p));
    assert_eq!(slab.ksize(p), Ok(50));
    mem.write(p, &[6; 50]).unwrap();
    slab.validate(&mem).unwrap();
    assert_eq!(slab.krealloc(&mut mem, p, 20), Ok(p));
    mem.write(p + 20, &[0]).unwrap();
    assert!(matches!(slab.validate(&mem), Err(SlabError::Corrupted(_))));
    mem.write(p + 20, &[RED_ACTIVE]).unwrap();
    let q = slab.krealloc(&mut mem, p, 100).unwrap();
    assert_eq!(read(&mem, q, 20), vec![6; 20]);
    slab.kfree(&mut mem, q).unwrap();
    check_invariants(&slab, &mem);
}

// ----- property tests -----

#[derive(Clone, Debug)]
enum Op {
    Kmalloc(usize),
    Kzalloc(usize),
    Kfree(usize),
    Krealloc(usize, usize),
    Create(usize, u32, bool),
    CacheAlloc(usize),
    CacheFree(usize),
    Destroy(usize),
    Shrink,
    FreeBogus(u64),
    /// `n` kmallocs of one size.
    Burst(usize, usize),
    /// Frees up to `n` live kmalloc allocations, every `step`-th in address order.
    FreeMany(usize, usize),
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..=300,
        3 => 0usize..=9000,
        1 => 9000usize..=120_000,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => size().prop_map(Op::Kmalloc),
        2 => size().prop_map(Op::Kzalloc),
        6 => any::<usize>().prop_map(Op::Kfree),
        3 => (any::<usize>(), size()).prop_map(|(i, s)| Op::Krealloc(i, s)),
        1 => (1usize..=5000, 0u32..=12, any::<bool>()).prop_map(|(s, a, h)| Op::Create(s, a, h)),
        5 => any::<usize>().prop_map(Op::CacheAlloc),
        4 => any::<usize>().prop_map(Op::CacheFree),
        1 => any::<usize>().prop_map(Op::Destroy),
        1 => Just(Op::Shrink),
        1 => any::<u64>().prop_map(|o| Op::FreeBogus(BASE + o % LEN)),
        1 => (1usize..400, 1usize..=600).prop_map(|(n, s)| Op::Burst(n, s)),
        1 => (1usize..400, 1usize..5).prop_map(|(n, k)| Op::FreeMany(n, k)),
    ]
}

/// One live allocation in the model.
#[derive(Clone, Copy, Debug)]
struct Live {
    size: usize,
    align: u64,
    cache: Option<CacheId>,
    /// Pages straight from the source (kmalloc above the largest class).
    large: bool,
    fill: u8,
}

struct Model {
    slab: SlabAllocator<TestPages>,
    mem: ArenaMemory,
    live: BTreeMap<u64, Live>,
    caches: Vec<(CacheId, usize, u64)>,
    next_fill: u8,
}

impl Model {
    fn fill(&mut self) -> u8 {
        self.next_fill = self.next_fill.wrapping_add(1).max(1);
        self.next_fill
    }

    /// Records and fills a new allocation.
    fn add(&mut self, addr: u64, size: usize, align: u64, cache: Option<CacheId>, large: bool) {
        if addr == ZERO_SIZE_PTR {
            assert_eq!(size, 0);
            return;
        }
        let fill = self.fill();
        self.mem.fill(addr, size as u64, fill).unwrap();
        let live = Live {
            size,
            align,
            cache,
            large,
            fill,
        };
        assert!(
            self.live.insert(addr, live).is_none(),
            "{addr:#x} handed out twice"
        );
    }

    fn pick(&self, i: usize, cache: bool) -> Option<(u64, Live)> {
        let candidates: Vec<_> = self
            .live
            .iter()
            .filter(|(_, l)| l.cache.is_some() == cache)
            .collect();
        (!candidates.is_empty()).then(|| {
            let (&a, &l) = candidates[i % candidates.len()];
            (a, l)
        })
    }

    fn kmalloc_align(size: usize) -> u64 {
        match kmalloc_size_class(size) {
            Some(class) => 1 << class.trailing_zeros().min(12),
            None => PAGE_SIZE,
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Kmalloc(size) | Op::Kzalloc(size) => {
                let zero = matches!(op, Op::Kzalloc(_));
                let addr = if zero {
                    self.slab.kzalloc(&mut self.mem, size).unwrap()
                } else {
                    self.slab.kmalloc(&mut self.mem, size).unwrap()
                };
                if zero && addr != ZERO_SIZE_PTR {
                    assert!(read(&self.mem, addr, size).iter().all(|&b| b == 0));
                }
                let large = size > KMALLOC_MAX_CACHE_SIZE;
                self.add(addr, size, Self::kmalloc_align(size), None, large);
            }
            Op::Kfree(i) => {
                if let Some((addr, _)) = self.pick(i, false) {
                    self.slab.kfree(&mut self.mem, addr).unwrap();
                    self.live.remove(&addr);
                }
            }
            Op::Krealloc(i, size) => {
                let Some((addr, old)) = self.pick(i, false) else {
                    return;
                };
                let new = self.slab.krealloc(&mut self.mem, addr, size).unwrap();
                let kept = old.size.min(size);
                if new != ZERO_SIZE_PTR {
                    assert!(
                        read(&self.mem, new, kept).iter().all(|&b| b == old.fill),
                        "krealloc lost data"
                    );
                }
                self.live.remove(&addr);
                // In place (Linux keeps the allocation, shrinking too), or new.
                let (align, large) = if new == addr {
                    (old.align, old.large)
                } else {
                    (Self::kmalloc_align(size), size > KMALLOC_MAX_CACHE_SIZE)
                };
                self.add(new, size, align, None, large);
            }
            Op::Create(size, align_log, hw) => {
                let flags = if hw {
                    CacheFlags::HWCACHE_ALIGN
                } else {
                    CacheFlags::NONE
                };
                let align = 1usize << align_log;
                let id = self
                    .slab
                    .kmem_cache_create("prop", size, align, flags, None)
                    .unwrap();
                let st = self.slab.cache_stats(id).unwrap();
                assert!(st.align >= align && st.align >= 8);
                self.caches.push((id, size, st.align as u64));
            }
            Op::CacheAlloc(i) => {
                if self.caches.is_empty() {
                    return;
                }
                let (id, size, align) = self.caches[i % self.caches.len()];
                let addr = self.slab.kmem_cache_alloc(&mut self.mem, id).unwrap();
                self.add(addr, size, align, Some(id), false);
            }
            Op::CacheFree(i) => {
                if let Some((addr, l)) = self.pick(i, true) {
                    self.slab
                        .kmem_cache_free(&mut self.mem, l.cache.unwrap(), addr)
                        .unwrap();
                    self.live.remove(&addr);
                }
            }
            Op::Destroy(i) => {
                if self.caches.is_empty() {
                    return;
                }
                let k = i % self.caches.len();
                let id = self.caches[k].0;
                let live = self.live.values().filter(|l| l.cache == Some(id)).count() as u64;
                match self.slab.kmem_cache_destroy(id) {
                    Ok(()) => {
                        assert_eq!(live, 0);
                        self.caches.swap_remove(k);
                    }
                    Err(e) => assert_eq!(e, SlabError::CacheBusy { live }),
                }
            }
            Op::Shrink => {
                self.slab.shrink_all();
            }
            Op::Burst(n, size) => {
                for _ in 0..n {
                    let addr = self.slab.kmalloc(&mut self.mem, size).unwrap();
                    self.add(addr, size, Self::kmalloc_align(size), None, false);
                }
            }
            Op::FreeMany(n, step) => {
                let victims: Vec<u64> = self
                    .live
                    .iter()
                    .filter(|(_, l)| l.cache.is_none())
                    .map(|(&a, _)| a)
                    .step_by(step)
                    .take(n)
                    .collect();
                for addr in victims {
                    self.slab.kfree(&mut self.mem, addr).unwrap();
                    self.live.remove(&addr);
                }
            }
            Op::FreeBogus(addr) => {
                if addr <= ZERO_SIZE_PTR || self.live.contains_key(&addr) {
                    return;
                }
                let before = self.slab.stats();
                assert!(self.slab.kfree(&mut self.mem, addr).is_err());
                assert_eq!(self.slab.stats(), before);
            }
        }
    }

    fn check(&self) {
        check_invariants(&self.slab, &self.mem);
        let mut end = 0;
        let mut objects = 0;
        for (&addr, l) in &self.live {
            let usable = self.slab.ksize(addr).unwrap();
            assert!(usable >= l.size, "ksize {usable} < {}", l.size);
            assert!(addr >= end, "{addr:#x} overlaps the previous allocation");
            end = addr + usable as u64;
            assert_eq!(addr % l.align, 0, "{addr:#x} not aligned to {}", l.align);
            if l.size > 0 {
                let ends = [addr, addr + l.size as u64 - 1, addr + l.size as u64 / 2];
                for a in ends {
                    assert_eq!(
                        read(&self.mem, a, 1)[0],
                        l.fill,
                        "contents of {addr:#x} changed"
                    );
                }
            }
            if !l.large {
                objects += 1;
            }
        }
        let st = self.slab.stats();
        let mut counted: u64 = self
            .slab
            .kmalloc_stats()
            .iter()
            .map(|c| c.active_objects)
            .sum();
        for (id, _, _) in &self.caches {
            counted += self.slab.cache_stats(*id).unwrap().active_objects;
        }
        assert_eq!(counted, objects);
        assert_eq!(st.large_allocations, self.live.len() as u64 - objects);
        assert_eq!(st.caches, KMALLOC_SIZES.len() + self.caches.len());
    }
}

fn run(ops: Vec<Op>, checking: bool) {
    let (slab, mem) = setup(checking);
    let mut m = Model {
        slab,
        mem,
        live: BTreeMap::new(),
        caches: Vec::new(),
        next_fill: 0,
    };
    for op in ops {
        m.apply(op);
        m.check();
    }
    // Free everything: every page goes back.
    let live: Vec<_> = m.live.iter().map(|(&a, &l)| (a, l)).collect();
    for (addr, l) in live {
        match l.cache {
            Some(id) => m.slab.kmem_cache_free(&mut m.mem, id, addr).unwrap(),
            None => m.slab.kfree(&mut m.mem, addr).unwrap(),
        }
    }
    for (id, _, _) in m.caches.drain(..) {
        m.slab.kmem_cache_destroy(id).unwrap();
    }
    m.slab.shrink_all();
    check_invariants(&m.slab, &m.mem);
    assert_eq!(m.slab.page_source().pages_out, 0);
}

/// An operation on the magazines of a [`super::cache::CpuCache`].
#[derive(Clone, Debug)]
enum MagOp {
    Push(Role),
    Pop(Role),
    Reload,
    RemoveOldest(Role, usize),
    /// Entries added through `spare` and `commit`, as a refill does.
    Refill(Role, usize),
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Alloc), Just(Role::Free)]
}

fn mag_op() -> impl Strategy<Value = MagOp> {
    prop_oneof![
        6 => role().prop_map(MagOp::Push),
        6 => role().prop_map(MagOp::Pop),
        2 => Just(MagOp::Reload),
        1 => (role(), 0usize..80).prop_map(|(r, n)| MagOp::RemoveOldest(r, n)),
        1 => (role(), 0usize..80).prop_map(|(r, n)| MagOp::Refill(r, n)),
    ]
}

/// Runs `ops` on the magazines and on a model (two vectors, bottom first),
/// comparing every magazine's entries in order after every step.
fn run_magazines(ops: Vec<MagOp>) {
    use super::cache::{CpuCache, Entry, MAG_SIZE};
    let slot = |r: Role| match r {
        Role::Alloc => 0,
        Role::Free => 1,
    };
    let mut cpu = CpuCache::EMPTY;
    let mut model: [Vec<Entry>; 2] = [Vec::new(), Vec::new()];
    let mut next = 1usize;
    let mut fresh = || {
        next += 1;
        Entry {
            addr: next as u64 * 64,
            gid: next,
        }
    };
    let gids = |es: &[Entry]| es.iter().map(|e| e.gid).collect::<Vec<_>>();
    for op in ops {
        match op {
            MagOp::Push(r) => {
                let e = fresh();
                let room = model[slot(r)].len() < MAG_SIZE;
                assert_eq!(cpu.push(r, e), room);
                if room {
                    model[slot(r)].push(e);
                }
            }
            MagOp::Pop(r) => {
                let got = cpu.pop(r).map(|e| e.gid);
                assert_eq!(got, model[slot(r)].pop().map(|e| e.gid));
            }
            MagOp::Reload => {
                cpu.reload();
                if model[0].is_empty() {
                    model[0] = core::mem::take(&mut model[1]);
                }
            }
            MagOp::RemoveOldest(r, n) => {
                let k = n.min(model[slot(r)].len());
                assert_eq!(gids(cpu.oldest(r, n)), gids(&model[slot(r)][..k]));
                cpu.remove_oldest(r, n);
                model[slot(r)].drain(..k);
            }
            MagOp::Refill(r, n) => {
                if r == Role::Alloc && cpu.count(r) == 0 {
                    cpu.reset_alloc();
                }
                let start = cpu.count(r);
                let spare = cpu.spare(r);
                let k = n.min(spare.len());
                let added: Vec<Entry> = (0..k).map(|_| fresh()).collect();
                spare[..k].copy_from_slice(&added);
                cpu.commit(r, k);
                cpu.reverse_from(r, start);
                model[slot(r)].extend(added.iter().rev());
            }
        }
        assert!(cpu.consistent());
        for r in [Role::Alloc, Role::Free] {
            assert_eq!(cpu.count(r), model[slot(r)].len());
            assert_eq!(gids(cpu.entries(r)), gids(&model[slot(r)]));
        }
        assert_eq!(cpu.held(), model[0].len() + model[1].len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn prop_against_model(ops in proptest::collection::vec(op(), 1..160)) {
        run(ops, false);
    }

    #[test]
    fn prop_against_model_checking(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops, true);
    }

    #[test]
    fn prop_magazines_against_model(ops in proptest::collection::vec(mag_op(), 1..400)) {
        run_magazines(ops);
    }
}
