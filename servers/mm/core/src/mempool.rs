//! Memory pools: a reserve of pre-allocated elements that guarantees forward progress.
//!
//! A [`Mempool`] (Linux's `mempool_t`) keeps up to `min_nr` elements in
//! reserve. [`Mempool::alloc`] asks the underlying element allocator first
//! and falls back to the reserve; [`Mempool::free`] refills the reserve while
//! it holds fewer than `min_nr` elements and otherwise gives the element back
//! to the allocator. So however exhausted the allocator is, `min_nr`
//! elements can always be had as long as elements are being freed: the
//! property a writeback or I/O path needs to make progress under memory
//! pressure.
//!
//! The element allocator is the [`ElementAllocator`] trait. Its methods take
//! a context `C` — whatever the allocator works on, passed at each call so
//! that the pool does not hold a borrow of it: a [`SlabContext`] (the slab
//! allocator and the `MemoryAccess`) for the ready-made [`SlabElements`]
//! (`mempool_create_slab_pool`) and [`KmallocElements`]
//! (`mempool_create_kmalloc_pool`), a [`PageSource`] for [`PageElements`]
//! (`mempool_create_page_pool`), or `()` for an allocator that owns its
//! resources.
//!
//! Linux's `mempool_alloc` may sleep until an element is freed; this one
//! never waits and returns [`MempoolError::Exhausted`] instead (Linux's
//! behaviour without `__GFP_DIRECT_RECLAIM`). The reserve is allocated once,
//! at creation and resize, so allocating and freeing elements do no Rust-heap
//! work.

use alloc::vec::Vec;
use core::fmt;

use crate::memory::MemoryAccess;
use crate::pages::PageSource;
use crate::slab::{CacheId, SlabAllocator};

/// An element allocator refused to take an element back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElementRejected;

/// What a pool takes its elements from (Linux's `mempool_alloc_t` and
/// `mempool_free_t` with their `pool_data`).
pub trait ElementAllocator<C: ?Sized> {
    /// Allocates one element, or `None` when none is available.
    fn alloc(&mut self, cx: &mut C) -> Option<u64>;
    /// Frees an element obtained from [`ElementAllocator::alloc`].
    fn free(&mut self, cx: &mut C, addr: u64) -> Result<(), ElementRejected>;
}

/// The context of the slab-backed element allocators.
pub struct SlabContext<'a, P: PageSource> {
    /// The slab allocator elements come from.
    pub slab: &'a mut SlabAllocator<P>,
    /// Memory access for the allocator (checking mode, constructors).
    pub mem: &'a mut dyn MemoryAccess,
}

/// Elements are objects of one slab cache (Linux's `mempool_alloc_slab`).
#[derive(Clone, Copy, Debug)]
pub struct SlabElements {
    /// The cache.
    pub cache: CacheId,
}

impl<P: PageSource> ElementAllocator<SlabContext<'_, P>> for SlabElements {
    fn alloc(&mut self, cx: &mut SlabContext<'_, P>) -> Option<u64> {
        cx.slab.kmem_cache_alloc(cx.mem, self.cache).ok()
    }
    fn free(&mut self, cx: &mut SlabContext<'_, P>, addr: u64) -> Result<(), ElementRejected> {
        cx.slab
            .kmem_cache_free(cx.mem, self.cache, addr)
            .map_err(|_| ElementRejected)
    }
}

/// Elements are kmalloc allocations of a fixed size (Linux's `mempool_kmalloc`).
#[derive(Clone, Copy, Debug)]
pub struct KmallocElements {
    /// The element size.
    pub size: usize,
}

impl<P: PageSource> ElementAllocator<SlabContext<'_, P>> for KmallocElements {
    fn alloc(&mut self, cx: &mut SlabContext<'_, P>) -> Option<u64> {
        cx.slab.kmalloc(cx.mem, self.size).ok()
    }
    fn free(&mut self, cx: &mut SlabContext<'_, P>, addr: u64) -> Result<(), ElementRejected> {
        cx.slab.kfree(cx.mem, addr).map_err(|_| ElementRejected)
    }
}

/// Elements are runs of `2^order` pages (Linux's `mempool_alloc_pages`).
#[derive(Clone, Copy, Debug)]
pub struct PageElements {
    /// The page order of each element.
    pub order: u32,
}

impl<P: PageSource> ElementAllocator<P> for PageElements {
    fn alloc(&mut self, cx: &mut P) -> Option<u64> {
        cx.alloc_pages(self.order)
    }
    fn free(&mut self, cx: &mut P, addr: u64) -> Result<(), ElementRejected> {
        cx.free_pages(addr, self.order);
        Ok(())
    }
}

/// Why a pool operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MempoolError {
    /// Creation or resize could not allocate the reserve: `reserved` of the
    /// `wanted` elements are in it (none after a failed creation, which
    /// frees what it got).
    NoMemory {
        /// Elements in the reserve now.
        reserved: usize,
        /// Elements the reserve should hold.
        wanted: usize,
    },
    /// The allocator failed and the reserve is empty.
    Exhausted,
    /// An element was freed while none is out, or is already in the reserve.
    DoubleFree {
        /// The element.
        addr: u64,
    },
    /// The element allocator refused the element (not one of its own).
    Rejected {
        /// The element.
        addr: u64,
    },
    /// `destroy` found elements still allocated; the reserve was freed anyway.
    Outstanding {
        /// Elements never freed to the pool.
        count: usize,
    },
}

impl fmt::Display for MempoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MempoolError::NoMemory { reserved, wanted } => {
                write!(f, "reserve holds {reserved} of {wanted} elements")
            }
            MempoolError::Exhausted => write!(f, "allocator and reserve exhausted"),
            MempoolError::DoubleFree { addr } => write!(f, "element {addr:#x} freed twice"),
            MempoolError::Rejected { addr } => write!(f, "element {addr:#x} refused"),
            MempoolError::Outstanding { count } => {
                write!(f, "{count} elements still allocated at destroy")
            }
        }
    }
}

/// A memory pool over the element allocator `A`.
#[derive(Debug)]
pub struct Mempool<A> {
    allocator: A,
    min_nr: usize,
    reserve: Vec<u64>,
    out: usize,
}

impl<A> Mempool<A> {
    /// Creates a pool with `min_nr` elements in reserve.
    ///
    /// Linux: `mempool_create`. If the reserve cannot be filled, the
    /// elements obtained are freed and [`MempoolError::NoMemory`] returned.
    pub fn create<C: ?Sized>(min_nr: usize, allocator: A, cx: &mut C) -> Result<Self, MempoolError>
    where
        A: ElementAllocator<C>,
    {
        let mut reserve = Vec::new();
        if reserve.try_reserve_exact(min_nr).is_err() {
            return Err(MempoolError::NoMemory {
                reserved: 0,
                wanted: min_nr,
            });
        }
        let mut pool = Mempool {
            allocator,
            min_nr,
            reserve,
            out: 0,
        };
        while pool.reserve.len() < min_nr {
            match pool.allocator.alloc(cx) {
                Some(addr) => pool.reserve.push(addr),
                None => {
                    while let Some(addr) = pool.reserve.pop() {
                        // Elements just allocated from it: it takes them back.
                        let _ = pool.allocator.free(cx, addr);
                    }
                    return Err(MempoolError::NoMemory {
                        reserved: 0,
                        wanted: min_nr,
                    });
                }
            }
        }
        Ok(pool)
    }

    /// Allocates an element: from the allocator if it can, else from the reserve.
    ///
    /// Linux: `mempool_alloc`, without waiting: when both fail the result is
    /// [`MempoolError::Exhausted`].
    pub fn alloc<C: ?Sized>(&mut self, cx: &mut C) -> Result<u64, MempoolError>
    where
        A: ElementAllocator<C>,
    {
        let addr = match self.allocator.alloc(cx) {
            Some(addr) => addr,
            None => self.reserve.pop().ok_or(MempoolError::Exhausted)?,
        };
        self.out += 1;
        Ok(addr)
    }

    /// Allocates an element from the reserve only.
    ///
    /// Linux: `mempool_alloc_preallocated`.
    pub fn alloc_preallocated(&mut self) -> Result<u64, MempoolError> {
        let addr = self.reserve.pop().ok_or(MempoolError::Exhausted)?;
        self.out += 1;
        Ok(addr)
    }

    /// Frees an element: into the reserve while it holds fewer than `min_nr`,
    /// otherwise to the allocator.
    ///
    /// Linux: `mempool_free`. An element freed while none is out, or one
    /// already in the reserve, is refused with [`MempoolError::DoubleFree`].
    pub fn free<C: ?Sized>(&mut self, cx: &mut C, addr: u64) -> Result<(), MempoolError>
    where
        A: ElementAllocator<C>,
    {
        if self.out == 0 || self.reserve.contains(&addr) {
            return Err(MempoolError::DoubleFree { addr });
        }
        if self.reserve.len() < self.min_nr {
            // Capacity is at least min_nr: this push never allocates.
            self.reserve.push(addr);
        } else {
            self.allocator
                .free(cx, addr)
                .map_err(|ElementRejected| MempoolError::Rejected { addr })?;
        }
        self.out -= 1;
        Ok(())
    }

    /// Changes the reserve's size to `new_min`: shrinking frees reserved
    /// elements to the allocator; growing allocates new ones.
    ///
    /// Linux: `mempool_resize`. As there, when growing fails the new
    /// `min_nr` stays in force and the reserve fills up from later frees;
    /// [`MempoolError::NoMemory`] says how far it got.
    pub fn resize<C: ?Sized>(&mut self, cx: &mut C, new_min: usize) -> Result<(), MempoolError>
    where
        A: ElementAllocator<C>,
    {
        let short = MempoolError::NoMemory {
            reserved: self.reserve.len(),
            wanted: new_min,
        };
        if new_min <= self.reserve.len() {
            while self.reserve.len() > new_min {
                if let Some(addr) = self.reserve.pop()
                    && self.allocator.free(cx, addr).is_err()
                {
                    self.reserve.push(addr);
                    return Err(MempoolError::Rejected { addr });
                }
            }
            self.min_nr = new_min;
            return Ok(());
        }
        if self
            .reserve
            .try_reserve_exact(new_min - self.reserve.len())
            .is_err()
        {
            return Err(short);
        }
        self.min_nr = new_min;
        while self.reserve.len() < new_min {
            match self.allocator.alloc(cx) {
                Some(addr) => self.reserve.push(addr),
                None => {
                    return Err(MempoolError::NoMemory {
                        reserved: self.reserve.len(),
                        wanted: new_min,
                    });
                }
            }
        }
        Ok(())
    }

    /// Frees the reserve to the allocator and drops the pool, reporting
    /// elements still allocated ([`MempoolError::Outstanding`]); those must
    /// be freed to the allocator directly.
    ///
    /// Linux: `mempool_destroy`.
    pub fn destroy<C: ?Sized>(mut self, cx: &mut C) -> Result<(), MempoolError>
    where
        A: ElementAllocator<C>,
    {
        let mut refused = None;
        while let Some(addr) = self.reserve.pop() {
            if self.allocator.free(cx, addr).is_err() {
                refused = Some(addr);
            }
        }
        if self.out > 0 {
            return Err(MempoolError::Outstanding { count: self.out });
        }
        match refused {
            Some(addr) => Err(MempoolError::Rejected { addr }),
            None => Ok(()),
        }
    }

    /// The reserve's target size (Linux's `min_nr`).
    pub fn min_nr(&self) -> usize {
        self.min_nr
    }

    /// Elements in the reserve now (Linux's `curr_nr`).
    pub fn reserved(&self) -> usize {
        self.reserve.len()
    }

    /// Elements allocated from the pool and not yet freed to it.
    pub fn outstanding(&self) -> usize {
        self.out
    }

    /// The element allocator.
    pub fn allocator(&self) -> &A {
        &self.allocator
    }

    /// The element allocator, mutably (e.g. to inject failures in tests).
    pub fn allocator_mut(&mut self) -> &mut A {
        &mut self.allocator
    }
}

/// Creates a pool of objects of slab cache `cache` (Linux: `mempool_create_slab_pool`).
pub fn mempool_create_slab_pool<P: PageSource>(
    min_nr: usize,
    cache: CacheId,
    cx: &mut SlabContext<'_, P>,
) -> Result<Mempool<SlabElements>, MempoolError> {
    Mempool::create(min_nr, SlabElements { cache }, cx)
}

/// Creates a pool of `size`-byte kmalloc allocations (Linux: `mempool_create_kmalloc_pool`).
pub fn mempool_create_kmalloc_pool<P: PageSource>(
    min_nr: usize,
    size: usize,
    cx: &mut SlabContext<'_, P>,
) -> Result<Mempool<KmallocElements>, MempoolError> {
    Mempool::create(min_nr, KmallocElements { size }, cx)
}

/// Creates a pool of `2^order`-page runs (Linux: `mempool_create_page_pool`).
pub fn mempool_create_page_pool<P: PageSource>(
    min_nr: usize,
    order: u32,
    source: &mut P,
) -> Result<Mempool<PageElements>, MempoolError> {
    Mempool::create(min_nr, PageElements { order }, source)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;
    use crate::memory::ArenaMemory;

    /// An element allocator that hands out distinct addresses and fails
    /// while `failing` is set, checking every free.
    #[derive(Debug, Default)]
    struct Flaky {
        next: u64,
        out: BTreeSet<u64>,
        failing: bool,
        allocs: usize,
        frees: usize,
    }

    impl ElementAllocator<()> for Flaky {
        fn alloc(&mut self, _: &mut ()) -> Option<u64> {
            if self.failing {
                return None;
            }
            self.next += 64;
            self.out.insert(self.next);
            self.allocs += 1;
            Some(self.next)
        }
        fn free(&mut self, _: &mut (), addr: u64) -> Result<(), ElementRejected> {
            self.frees += 1;
            if self.out.remove(&addr) {
                Ok(())
            } else {
                Err(ElementRejected)
            }
        }
    }

    #[test]
    fn create_alloc_free_destroy() {
        let mut pool = Mempool::create(4, Flaky::default(), &mut ()).unwrap();
        assert_eq!(
            (pool.min_nr(), pool.reserved(), pool.allocator().allocs),
            (4, 4, 4)
        );
        // The allocator first; the reserve untouched.
        let a = pool.alloc(&mut ()).unwrap();
        assert_eq!((pool.reserved(), pool.outstanding()), (4, 1));
        // The allocator fails: the reserve serves.
        pool.allocator_mut().failing = true;
        let b = pool.alloc(&mut ()).unwrap();
        assert_eq!(pool.reserved(), 3);
        // Frees refill the reserve up to min_nr, then go to the allocator.
        pool.free(&mut (), b).unwrap();
        assert_eq!(pool.reserved(), 4);
        assert_eq!(
            pool.free(&mut (), b),
            Err(MempoolError::DoubleFree { addr: b })
        );
        pool.free(&mut (), a).unwrap();
        assert_eq!((pool.reserved(), pool.allocator().frees), (4, 1));
        assert_eq!(
            pool.free(&mut (), a),
            Err(MempoolError::DoubleFree { addr: a })
        );
        assert_eq!(pool.outstanding(), 0);
        // alloc_preallocated takes from the reserve even when the allocator works.
        pool.allocator_mut().failing = false;
        let c = pool.alloc_preallocated().unwrap();
        assert_eq!(pool.reserved(), 3);
        pool.free(&mut (), c).unwrap();
        assert_eq!(pool.reserved(), 4);
        pool.destroy(&mut ()).unwrap();
    }

    #[test]
    fn destroy_reports_outstanding() {
        let mut pool = Mempool::create(3, Flaky::default(), &mut ()).unwrap();
        let _a = pool.alloc(&mut ()).unwrap();
        let _b = pool.alloc(&mut ()).unwrap();
        assert_eq!(
            pool.destroy(&mut ()),
            Err(MempoolError::Outstanding { count: 2 })
        );
    }

    #[test]
    fn create_fails_cleanly() {
        let flaky = Flaky {
            failing: true,
            ..Flaky::default()
        };
        let err = Mempool::create(3, flaky, &mut ()).unwrap_err();
        assert_eq!(
            err,
            MempoolError::NoMemory {
                reserved: 0,
                wanted: 3
            }
        );
        // Zero reserve is allowed.
        let mut pool = Mempool::create(
            0,
            Flaky {
                failing: true,
                ..Flaky::default()
            },
            &mut (),
        )
        .unwrap();
        assert_eq!(pool.alloc(&mut ()), Err(MempoolError::Exhausted));
    }

    #[test]
    fn resize_grows_and_shrinks() {
        let mut pool = Mempool::create(2, Flaky::default(), &mut ()).unwrap();
        pool.resize(&mut (), 5).unwrap();
        assert_eq!((pool.min_nr(), pool.reserved()), (5, 5));
        pool.resize(&mut (), 1).unwrap();
        assert_eq!((pool.min_nr(), pool.reserved()), (1, 1));
        assert_eq!(pool.allocator().out.len(), 1);
        pool.allocator_mut().failing = true;
        assert_eq!(
            pool.resize(&mut (), 4),
            Err(MempoolError::NoMemory {
                reserved: 1,
                wanted: 4
            })
        );
        // As in Linux, the new min_nr stands and frees top the reserve up.
        assert_eq!(pool.min_nr(), 4);
        let a = pool.alloc(&mut ()).unwrap();
        pool.allocator_mut().failing = false;
        let b = pool.alloc(&mut ()).unwrap();
        let c = pool.alloc(&mut ()).unwrap();
        for e in [a, b, c] {
            pool.free(&mut (), e).unwrap();
        }
        assert_eq!(pool.reserved(), 3);
        pool.destroy(&mut ()).unwrap();
    }

    /// A page source for the adapters: a bump pointer and free lists per order.
    struct Pages {
        next: u64,
        end: u64,
        free: std::collections::BTreeMap<u32, Vec<u64>>,
        out: std::collections::BTreeMap<u64, u32>,
    }

    impl PageSource for Pages {
        fn alloc_pages(&mut self, order: u32) -> Option<u64> {
            let bytes = 4096 << order;
            let addr = match self.free.entry(order).or_default().pop() {
                Some(a) => a,
                None if self.next + bytes <= self.end => {
                    self.next += bytes;
                    self.next - bytes
                }
                None => return None,
            };
            self.out.insert(addr, order);
            Some(addr)
        }
        fn free_pages(&mut self, addr: u64, order: u32) {
            assert_eq!(self.out.remove(&addr), Some(order));
            self.free.entry(order).or_default().push(addr);
        }
    }

    const BASE: u64 = 0x10_0000;

    fn pages(n: u64) -> Pages {
        Pages {
            next: BASE,
            end: BASE + n * 4096,
            free: Default::default(),
            out: Default::default(),
        }
    }

    #[test]
    fn page_pool_survives_exhaustion() {
        let mut source = pages(6);
        let mut pool = mempool_create_page_pool(4, 0, &mut source).unwrap();
        // Exhaust the source from outside the pool.
        let hog: Vec<u64> = (0..2).map(|_| source.alloc_pages(0).unwrap()).collect();
        assert_eq!(source.alloc_pages(0), None);
        let got: Vec<u64> = (0..4).map(|_| pool.alloc(&mut source).unwrap()).collect();
        assert_eq!(pool.alloc(&mut source), Err(MempoolError::Exhausted));
        for g in got {
            pool.free(&mut source, g).unwrap();
        }
        for h in hog {
            source.free_pages(h, 0);
        }
        pool.destroy(&mut source).unwrap();
        assert!(source.out.is_empty());
    }

    #[test]
    fn slab_and_kmalloc_pools() {
        let arena = 64 * 4096;
        let mut slab = SlabAllocator::new(pages(64));
        slab.add_arena(BASE, arena).unwrap();
        let mut mem = ArenaMemory::new(BASE, arena as usize);
        let cache = slab
            .kmem_cache_create("io", 200, 8, crate::slab::CacheFlags::NONE, None)
            .unwrap();
        let mut cx = SlabContext {
            slab: &mut slab,
            mem: &mut mem,
        };
        let mut objs = mempool_create_slab_pool(8, cache, &mut cx).unwrap();
        let mut bufs = mempool_create_kmalloc_pool(8, 1000, &mut cx).unwrap();
        assert_eq!(cx.slab.cache_stats(cache).unwrap().active_objects, 8);
        // Exhaust the slab allocator's page source.
        let mut hog = Vec::new();
        while let Ok(a) = cx.slab.kmalloc(cx.mem, 4096) {
            hog.push(a);
        }
        // Objects already in slabs may still serve; then the reserves do.
        let mut got = Vec::new();
        for _ in 0..200 {
            match objs.alloc(&mut cx) {
                Ok(a) => got.push(a),
                Err(e) => {
                    assert_eq!(e, MempoolError::Exhausted);
                    break;
                }
            }
        }
        assert!(got.len() >= 8 && objs.reserved() == 0);
        let b: Vec<u64> = (0..8).map(|_| bufs.alloc(&mut cx).unwrap()).collect();
        for a in got {
            objs.free(&mut cx, a).unwrap();
        }
        for a in b {
            bufs.free(&mut cx, a).unwrap();
        }
        assert_eq!((objs.reserved(), bufs.reserved()), (8, 8));
        for h in hog {
            cx.slab.kfree(cx.mem, h).unwrap();
        }
        objs.destroy(&mut cx).unwrap();
        bufs.destroy(&mut cx).unwrap();
        assert_eq!(cx.slab.cache_stats(cache).unwrap().active_objects, 0);
        cx.slab.kmem_cache_destroy(cache).unwrap();
        cx.slab.validate(cx.mem).unwrap();
    }

    #[derive(Clone, Debug)]
    enum Op {
        Alloc,
        Free(usize),
        Fail(bool),
        Resize(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => Just(Op::Alloc),
            4 => any::<usize>().prop_map(Op::Free),
            2 => any::<bool>().prop_map(Op::Fail),
            1 => (0usize..10).prop_map(Op::Resize),
        ]
    }

    proptest! {
        /// Forward progress: whatever the allocator does, while fewer than
        /// `min_nr` elements are out an allocation succeeds; elements are
        /// never handed out twice; the reserve never exceeds `min_nr`; and
        /// every element is accounted for.
        #[test]
        fn prop_forward_progress(min in 0usize..8, ops in proptest::collection::vec(op(), 1..200)) {
            let mut pool = Mempool::create(min, Flaky::default(), &mut ()).unwrap();
            let mut out: Vec<u64> = Vec::new();
            for op in ops {
                match op {
                    Op::Alloc => {
                        let must = out.len() < pool.min_nr();
                        match pool.alloc(&mut ()) {
                            Ok(a) => {
                                prop_assert!(!out.contains(&a));
                                out.push(a);
                            }
                            Err(e) => {
                                prop_assert!(!must, "allocation {} of min_nr {} failed", out.len(), pool.min_nr());
                                prop_assert_eq!(e, MempoolError::Exhausted);
                            }
                        }
                    }
                    Op::Free(i) => {
                        if !out.is_empty() {
                            let a = out.swap_remove(i % out.len());
                            pool.free(&mut (), a).unwrap();
                        }
                    }
                    Op::Fail(f) => pool.allocator_mut().failing = f,
                    Op::Resize(n) => {
                        let failing = pool.allocator().failing;
                        let r = pool.resize(&mut (), n);
                        prop_assert_eq!(r.is_ok(), pool.reserved() == n);
                        // Growing under failure leaves the reserve short:
                        // forward progress holds again once it is refilled.
                        if r.is_err() {
                            pool.allocator_mut().failing = false;
                            pool.resize(&mut (), n).unwrap();
                            pool.allocator_mut().failing = failing;
                        }
                    }
                }
                prop_assert!(pool.reserved() <= pool.min_nr());
                prop_assert_eq!(pool.outstanding(), out.len());
                // Elements held by the allocator's users = in the reserve + out.
                prop_assert_eq!(pool.allocator().out.len(), pool.reserved() + out.len());
            }
            for a in out.drain(..) {
                pool.free(&mut (), a).unwrap();
            }
            pool.destroy(&mut ()).unwrap();
        }
    }
}
