//! Mempools in a client: mm-core's reserve pools over the client slab, the heap's pages, or the server's pages.
//!
//! A [`Mempool`] keeps `min_nr` elements in reserve so that, however
//! exhausted memory is, `min_nr` elements can always be had as long as
//! elements are being freed (Linux's `mempool_t`; the pool logic is
//! mm-core's, unchanged). This module supplies the element allocators a
//! client uses, each taking its context at every call:
//!
//! | elements                | context      | Linux constructor |
//! |-------------------------|--------------|-------------------|
//! | [`CacheElements`]: objects of a kmem_cache | [`Heap`] | `mempool_create_slab_pool` |
//! | [`KmallocElements`]: kmalloc allocations   | [`Heap`] | `mempool_create_kmalloc_pool` |
//! | [`HeapPageElements`]: heap-arena pages     | [`Heap`] | `mempool_create_page_pool` (virtually contiguous pages) |
//! | [`PageElements`]: pages from the server    | [`Mm`]   | `mempool_create_page_pool` (physically contiguous, one IPC each) |
//!
//! The heap-backed allocators grow the heap (map another chunk) before
//! failing, so the reserve is used only when the server has no more memory
//! for this client. Use the pool with the context it was created with:
//! `pool.alloc(&mut heap)`, `pool.free(&mut heap, addr)`.

use mm_core::memory::MemoryAccess;
pub use mm_core::mempool::{ElementAllocator, ElementRejected, Mempool, MempoolError};
use mm_core::slab::CacheId;

use crate::heap::Heap;
use crate::mm::Mm;
use crate::protocol::Gfp;
use crate::transport::Transport;

/// Elements are objects of one kmem_cache of the heap (Linux's `mempool_alloc_slab`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheElements {
    /// The cache.
    pub cache: CacheId,
}

impl<T: Transport + Clone, M: MemoryAccess> ElementAllocator<Heap<T, M>> for CacheElements {
    fn alloc(&mut self, heap: &mut Heap<T, M>) -> Option<u64> {
        heap.kmem_cache_alloc(self.cache).ok()
    }
    fn free(&mut self, heap: &mut Heap<T, M>, addr: u64) -> Result<(), ElementRejected> {
        heap.kmem_cache_free(self.cache, addr)
            .map_err(|_| ElementRejected)
    }
}

/// Elements are kmalloc allocations of one size (Linux's `mempool_kmalloc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KmallocElements {
    /// The element size.
    pub size: usize,
}

impl<T: Transport + Clone, M: MemoryAccess> ElementAllocator<Heap<T, M>> for KmallocElements {
    fn alloc(&mut self, heap: &mut Heap<T, M>) -> Option<u64> {
        heap.kmalloc(self.size).ok()
    }
    fn free(&mut self, heap: &mut Heap<T, M>, addr: u64) -> Result<(), ElementRejected> {
        heap.kfree(addr).map_err(|_| ElementRejected)
    }
}

/// Elements are runs of `2^order` pages of the heap arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapPageElements {
    /// The order of each element (0..=10).
    pub order: u32,
}

impl<T: Transport + Clone, M: MemoryAccess> ElementAllocator<Heap<T, M>> for HeapPageElements {
    fn alloc(&mut self, heap: &mut Heap<T, M>) -> Option<u64> {
        heap.alloc_heap_pages(self.order).ok()
    }
    fn free(&mut self, heap: &mut Heap<T, M>, addr: u64) -> Result<(), ElementRejected> {
        heap.free_heap_pages(addr, self.order)
            .map_err(|_| ElementRejected)
    }
}

/// Elements are `alloc_pages` blocks from the server (Linux's `mempool_alloc_pages`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageElements {
    /// The order of each element.
    pub order: u8,
    /// The allocation flags.
    pub gfp: Gfp,
}

impl<T: Transport + Clone> ElementAllocator<Mm<T>> for PageElements {
    fn alloc(&mut self, mm: &mut Mm<T>) -> Option<u64> {
        mm.alloc_pages(self.order, self.gfp)
            .ok()
            .map(|pages| pages.leak())
    }
    fn free(&mut self, mm: &mut Mm<T>, addr: u64) -> Result<(), ElementRejected> {
        mm.free_pages(addr, self.order).map_err(|_| ElementRejected)
    }
}

/// A pool of objects of cache `cache` of `heap`.
///
/// Linux: `mempool_create_slab_pool`.
pub fn mempool_create_slab_pool<T: Transport + Clone, M: MemoryAccess>(
    min_nr: usize,
    cache: CacheId,
    heap: &mut Heap<T, M>,
) -> Result<Mempool<CacheElements>, MempoolError> {
    Mempool::create(min_nr, CacheElements { cache }, heap)
}

/// A pool of `size`-byte kmalloc allocations of `heap`.
///
/// Linux: `mempool_create_kmalloc_pool`.
pub fn mempool_create_kmalloc_pool<T: Transport + Clone, M: MemoryAccess>(
    min_nr: usize,
    size: usize,
    heap: &mut Heap<T, M>,
) -> Result<Mempool<KmallocElements>, MempoolError> {
    Mempool::create(min_nr, KmallocElements { size }, heap)
}

/// A pool of `2^order`-page runs of `heap`'s arena.
///
/// Linux: `mempool_create_page_pool`, with virtually contiguous pages.
pub fn mempool_create_heap_page_pool<T: Transport + Clone, M: MemoryAccess>(
    min_nr: usize,
    order: u32,
    heap: &mut Heap<T, M>,
) -> Result<Mempool<HeapPageElements>, MempoolError> {
    Mempool::create(min_nr, HeapPageElements { order }, heap)
}

/// A pool of `alloc_pages` blocks of `order` from the server.
///
/// Linux: `mempool_create_page_pool`.
pub fn mempool_create_page_pool<T: Transport + Clone>(
    min_nr: usize,
    order: u8,
    gfp: Gfp,
    mm: &mut Mm<T>,
) -> Result<Mempool<PageElements>, MempoolError> {
    Mempool::create(min_nr, PageElements { order, gfp }, mm)
}
