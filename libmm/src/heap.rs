//! The client-side slab: the kmalloc family and kmem_cache on pages of a heap arena, without IPC on the fast path.
//!
//! A [`Heap`] is mm-core's [`SlabAllocator`] — the same code that serves
//! the MM server's own objects — over an [`ArenaPages`] page source, plus
//! the little it takes to get pages from the server:
//!
//! - **The arena.** The heap reserves address space in *chunks*: anonymous,
//!   demand-zero, read/write regions mapped from the server (the first of
//!   [`HeapConfig::first_chunk`] bytes, each next one twice as large up to
//!   [`HeapConfig::max_chunk`]), aligned to 4 MiB so that page runs can be
//!   naturally aligned (one `Map` with that alignment). Every chunk is
//!   registered with the slab as an arena and with the page source.
//!   Mapping a chunk costs one IPC; its pages are backed by the server's
//!   fault handler when first touched, so handing a page to the slab costs
//!   no IPC at all.
//! - **The fast path.** `kmalloc`/`kfree` are the slab's magazine fast
//!   paths, called directly: no lock, no transport. Only when the slab's
//!   page source is exhausted does the slow path map another chunk (one
//!   IPC) and retry.
//! - **Trimming.** Pages the slab gives back (empty slabs beyond the two it
//!   keeps per cache, freed large allocations) return to the page source,
//!   still resident. When more than [`HeapConfig::retain`] bytes of them are
//!   free, the heap gives the largest free blocks back to the server until
//!   half that is left: one `Discard` per block (Linux's
//!   `madvise(MADV_DONTNEED)`: the pages are freed, the chunk's region is
//!   kept whole), after which the block is clean again — untouched, zero,
//!   not resident. The address space stays reserved; chunks are unmapped
//!   only when the heap is dropped.
//! - **Memory access.** The slab never touches memory; zeroing (kzalloc,
//!   kcalloc) and copying (krealloc, kmemdup, kstrdup) go through the
//!   heap's [`MemoryAccess`] — [`RtMemory`](crate::memory::RtMemory) in a
//!   process, an arena or the mock in tests. A large allocation carved from
//!   a clean block is not zeroed again.
//!
//! Addresses are virtual addresses in the caller: contiguous in its address
//! space, not physically contiguous beyond a page (for that, see
//! [`Mm::alloc_pages`]).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use mm_core::addr::PAGE_SIZE;
use mm_core::memory::MemoryAccess;
use mm_core::pages::PageSource;
use mm_core::slab::{
    CacheFlags, CacheId, CacheStats, Constructor, KMALLOC_MAX_CACHE_SIZE, SlabAllocator, SlabError,
    SlabStats,
};

use crate::arena::{ArenaPages, ArenaStats, BLOCK_BYTES, MAX_ORDER};
use crate::handles::Mapping;
use crate::mm::Mm;
use crate::protocol::{Align, MapFlags, MmError, Prot};
use crate::transport::{CallError, Error, Transport};

/// How a [`Heap`] reserves and returns memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapConfig {
    /// Bytes of the first chunk (rounded up to 4 MiB).
    pub first_chunk: u64,
    /// The largest chunk: each chunk is twice the previous, up to this.
    pub max_chunk: u64,
    /// Bytes of free, possibly resident pages kept before trimming.
    pub retain: u64,
    /// Create the slab in checking mode (red zones, poisoning; Linux's
    /// `slub_debug=ZP`): slower, for debugging.
    pub checking: bool,
}

impl HeapConfig {
    /// The defaults: 256 MiB first chunk, 1 GiB chunks at most, 1 MiB retained.
    pub const DEFAULT: HeapConfig = HeapConfig {
        first_chunk: 256 << 20,
        max_chunk: 1 << 30,
        retain: 1 << 20,
        checking: false,
    };
}

impl Default for HeapConfig {
    fn default() -> Self {
        HeapConfig::DEFAULT
    }
}

/// Why a heap operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapError {
    /// The slab refused (bad address, double free, too large, ...), or the
    /// heap's metadata could not grow.
    Slab(SlabError),
    /// The heap needed another chunk and the server would not map it.
    Grow(Error),
}

impl From<SlabError> for HeapError {
    fn from(e: SlabError) -> HeapError {
        HeapError::Slab(e)
    }
}

impl fmt::Display for HeapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapError::Slab(e) => write!(f, "{e}"),
            HeapError::Grow(e) => write!(f, "the heap could not grow: {e}"),
        }
    }
}

/// A heap's accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapStats {
    /// The page source's pages.
    pub arena: ArenaStats,
    /// The slab's pages.
    pub slab: SlabStats,
    /// Pages handed out by [`Heap::alloc_heap_pages`] and not yet freed.
    pub heap_pages: u64,
    /// Chunks mapped.
    pub chunks_mapped: u64,
    /// Pages given back to the server by trimming.
    pub pages_trimmed: u64,
    /// Trim requests the server refused (the threshold then doubles).
    pub trim_failures: u64,
    /// Chunks the server would not map.
    pub grow_failures: u64,
}

/// Free blocks handed back to the server per round of trimming.
const TRIM_BATCH: usize = 16;

/// The alignment of every chunk: the arena's block, 4 MiB.
const CHUNK_ALIGN: Align = Align(BLOCK_BYTES.trailing_zeros() as u8);

/// The client-side slab over a heap arena mapped from the MM server.
pub struct Heap<T: Transport + Clone, M: MemoryAccess> {
    slab: SlabAllocator<ArenaPages>,
    mem: M,
    mm: Mm<T>,
    chunks: Vec<Mapping<T>>,
    config: HeapConfig,
    heap_pages: u64,
    /// The blocks of [`Heap::alloc_heap_pages`] handed out, with their order.
    heap_pages_out: BTreeMap<u64, u32>,
    pages_trimmed: u64,
    trim_failures: u64,
    grow_failures: u64,
}

impl<T: Transport + Clone, M: MemoryAccess> Heap<T, M> {
    /// A heap that maps its chunks through `mm` and touches memory through
    /// `mem`. Nothing is mapped until the first allocation.
    pub fn new(mm: Mm<T>, mem: M, config: HeapConfig) -> Self {
        let pages = ArenaPages::new(config.retain / PAGE_SIZE);
        let slab = if config.checking {
            SlabAllocator::new_checking(pages)
        } else {
            SlabAllocator::new(pages)
        };
        Heap {
            slab,
            mem,
            mm,
            chunks: Vec::new(),
            config,
            heap_pages: 0,
            heap_pages_out: BTreeMap::new(),
            pages_trimmed: 0,
            trim_failures: 0,
            grow_failures: 0,
        }
    }

    /// The connection the heap maps its chunks through.
    pub fn mm(&self) -> &Mm<T> {
        &self.mm
    }

    /// The memory access.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// The memory access, mutably.
    pub fn mem_mut(&mut self) -> &mut M {
        &mut self.mem
    }

    /// The configuration.
    pub fn config(&self) -> &HeapConfig {
        &self.config
    }

    /// The chunks mapped so far, as `(addr, len)`.
    pub fn chunks(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.chunks.iter().map(|m| (m.addr(), m.len()))
    }

    /// Whether `addr` lies in one of the heap's chunks.
    pub fn owns(&self, addr: u64) -> bool {
        self.slab.page_source().owns(addr)
    }

    // ----- growth and trimming ---------------------------------------------

    /// Runs `op` on the slab; if the slab is out of pages, maps another
    /// chunk and runs it once more.
    #[inline(always)]
    fn grow_on_oom<R>(
        &mut self,
        mut op: impl FnMut(
            &mut SlabAllocator<ArenaPages>,
            &mut dyn MemoryAccess,
        ) -> Result<R, SlabError>,
    ) -> Result<R, HeapError> {
        match op(&mut self.slab, &mut self.mem) {
            Ok(r) => Ok(r),
            Err(e) => self.grow_and_retry(e, op),
        }
    }

    #[cold]
    #[inline(never)]
    fn grow_and_retry<R>(
        &mut self,
        e: SlabError,
        mut op: impl FnMut(
            &mut SlabAllocator<ArenaPages>,
            &mut dyn MemoryAccess,
        ) -> Result<R, SlabError>,
    ) -> Result<R, HeapError> {
        if e != SlabError::OutOfMemory {
            return Err(HeapError::Slab(e));
        }
        self.grow()?;
        op(&mut self.slab, &mut self.mem).map_err(HeapError::Slab)
    }

    /// Maps another chunk and registers it with the slab and the page
    /// source. Halves the chunk down to 4 MiB while the server says it has
    /// not the memory or quota for it.
    pub fn grow(&mut self) -> Result<(), HeapError> {
        let shift = (self.chunks.len() as u32).min(32);
        let mut len = self
            .config
            .first_chunk
            .saturating_mul(1 << shift)
            .min(self.config.max_chunk.max(self.config.first_chunk));
        len = len.div_ceil(BLOCK_BYTES).max(1) * BLOCK_BYTES;
        let chunk = loop {
            match self.map_chunk(len) {
                Ok(m) => break m,
                Err(Error::Mm(MmError::NoMemory | MmError::QuotaExceeded)) if len > BLOCK_BYTES => {
                    len = (len / 2).div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
                }
                Err(e) => {
                    self.grow_failures += 1;
                    return Err(HeapError::Grow(e));
                }
            }
        };
        if self.chunks.try_reserve(1).is_err() {
            return Err(HeapError::Slab(SlabError::OutOfMemory));
        }
        let (base, len) = (chunk.addr(), chunk.len());
        // The page source first: it can be undone, the slab's arena cannot.
        if !self.slab.page_source_mut().add_chunk(base, len) {
            return Err(HeapError::Slab(SlabError::OutOfMemory));
        }
        if let Err(e) = self.slab.add_arena(base, len) {
            self.slab.page_source_mut().remove_chunk(base);
            return Err(HeapError::Slab(e));
        }
        self.chunks.push(chunk);
        Ok(())
    }

    /// Maps a chunk of `len` bytes aligned to 4 MiB: one `Map` with that
    /// alignment. A reply that is not aligned, or not `len` long, is a
    /// server bug: the mapping is given back and [`CallError::BadReply`]
    /// returned.
    fn map_chunk(&self, len: u64) -> Result<Mapping<T>, Error> {
        let chunk =
            self.mm
                .mmap_aligned(0, len, Prot::READ_WRITE, MapFlags::default(), CHUNK_ALIGN)?;
        if !chunk.addr().is_multiple_of(BLOCK_BYTES) || chunk.len() != len {
            let _ = chunk.munmap();
            return Err(Error::Call(CallError::BadReply));
        }
        Ok(chunk)
    }

    /// Gives dirty free pages back to the server until at most `keep` bytes
    /// of them are left; returns the pages given back.
    pub fn trim(&mut self, keep: u64) -> Result<u64, Error> {
        let target = keep / PAGE_SIZE;
        let mut trimmed = 0;
        let mut batch = [(0u64, 0u32); TRIM_BATCH];
        while self.slab.page_source().stats().dirty_free_pages > target {
            let n = self.slab.page_source().dirty_blocks(&mut batch);
            if n == 0 {
                break;
            }
            for &(addr, order) in &batch[..n] {
                self.mm.madvise_dontneed(addr, PAGE_SIZE << order)?;
                self.slab.page_source_mut().mark_clean(addr, order);
                self.pages_trimmed += 1 << order;
                trimmed += 1 << order;
                if self.slab.page_source().stats().dirty_free_pages <= target {
                    break;
                }
            }
        }
        Ok(trimmed)
    }

    /// Called after a free: trims when the page source holds too many dirty
    /// pages.
    #[inline(always)]
    fn after_free(&mut self) {
        if self.slab.page_source().trim_wanted() {
            self.trim_automatically();
        }
    }

    #[cold]
    #[inline(never)]
    fn trim_automatically(&mut self) {
        if self.trim(self.config.retain / 2).is_ok() {
            self.slab
                .page_source_mut()
                .set_trim_threshold(self.config.retain / PAGE_SIZE);
        } else {
            // Do not retry on every free: wait until twice as many dirty
            // pages are free as now.
            self.trim_failures += 1;
            let source = self.slab.page_source_mut();
            let dirty = source.stats().dirty_free_pages;
            source.set_trim_threshold(dirty.saturating_mul(2).max(1));
        }
    }

    // ----- the kmalloc family ----------------------------------------------

    /// Allocates `size` bytes; contents unspecified.
    ///
    /// Linux: `kmalloc` (without GFP flags). 0 bytes give
    /// [`ZERO_SIZE_PTR`](mm_core::slab::ZERO_SIZE_PTR); sizes above 4 MiB
    /// fail with [`SlabError::TooLarge`] (use [`Mm::vmalloc`]).
    #[inline(always)]
    pub fn kmalloc(&mut self, size: usize) -> Result<u64, HeapError> {
        self.grow_on_oom(|s, m| s.kmalloc(m, size))
    }

    /// Allocates `n * size` bytes ([`SlabError::Overflow`] if that overflows).
    ///
    /// Linux: `kmalloc_array`.
    pub fn kmalloc_array(&mut self, n: usize, size: usize) -> Result<u64, HeapError> {
        self.grow_on_oom(|s, m| s.kmalloc_array(m, n, size))
    }

    /// Allocates `n * size` zeroed bytes.
    ///
    /// Linux: `kcalloc`.
    pub fn kcalloc(&mut self, n: usize, size: usize) -> Result<u64, HeapError> {
        let bytes = n.checked_mul(size).ok_or(SlabError::Overflow)?;
        self.kzalloc(bytes)
    }

    /// Allocates `size` zeroed bytes (the whole usable size is zeroed, as
    /// mm-core's kzalloc does; a large allocation from untouched pages is
    /// not zeroed again).
    ///
    /// Linux: `kzalloc`.
    pub fn kzalloc(&mut self, size: usize) -> Result<u64, HeapError> {
        if size <= KMALLOC_MAX_CACHE_SIZE {
            return self.grow_on_oom(|s, m| s.kzalloc(m, size));
        }
        let addr = self.kmalloc(size)?;
        let usable = self.slab.ksize(addr)?;
        self.zero_new(addr, usable, true)?;
        Ok(addr)
    }

    /// Zeroes the first `len` bytes of the allocation just made at `addr`,
    /// unless it is `large` (page-backed, which the slab never writes) and
    /// came from clean pages; frees it if zeroing fails.
    pub(crate) fn zero_new(&mut self, addr: u64, len: usize, large: bool) -> Result<(), HeapError> {
        if self.slab.page_source_mut().take_clean(addr) && large {
            return Ok(());
        }
        if let Err(e) = self.mem.zero(addr, len as u64) {
            self.slab.kfree(&mut self.mem, addr)?;
            return Err(HeapError::Slab(SlabError::Access(e)));
        }
        Ok(())
    }

    /// Frees a kmalloc allocation (or an object of a kmem_cache); null and
    /// `ZERO_SIZE_PTR` are ignored.
    ///
    /// Linux: `kfree`. Unlike Linux, an address that is not a live
    /// allocation is refused with an error and changes nothing.
    #[inline(always)]
    pub fn kfree(&mut self, addr: u64) -> Result<(), HeapError> {
        self.slab.kfree(&mut self.mem, addr)?;
        self.after_free();
        Ok(())
    }

    /// The usable size of the allocation at `addr`.
    ///
    /// Linux: `ksize`.
    pub fn ksize(&self, addr: u64) -> Result<usize, HeapError> {
        Ok(self.slab.ksize(addr)?)
    }

    /// Resizes the allocation at `addr` to `new_size` bytes, keeping the
    /// contents up to the smaller size.
    ///
    /// Linux: `krealloc`. Null behaves as kmalloc, `new_size` 0 frees.
    pub fn krealloc(&mut self, addr: u64, new_size: usize) -> Result<u64, HeapError> {
        let r = self.grow_on_oom(|s, m| s.krealloc(m, addr, new_size))?;
        self.after_free();
        Ok(r)
    }

    /// Duplicates `len` bytes at `src` into a new allocation.
    ///
    /// Linux: `kmemdup`.
    pub fn kmemdup(&mut self, src: u64, len: usize) -> Result<u64, HeapError> {
        self.grow_on_oom(|s, m| s.kmemdup(m, src, len))
    }

    /// Duplicates the NUL-terminated string at `src`.
    ///
    /// Linux: `kstrdup`.
    pub fn kstrdup(&mut self, src: u64) -> Result<u64, HeapError> {
        self.grow_on_oom(|s, m| s.kstrdup(m, src))
    }

    /// Duplicates at most `max` bytes of the string at `src`, NUL-terminated.
    ///
    /// Linux: `kstrndup`.
    pub fn kstrndup(&mut self, src: u64, max: usize) -> Result<u64, HeapError> {
        self.grow_on_oom(|s, m| s.kstrndup(m, src, max))
    }

    // ----- kmem_cache ------------------------------------------------------

    /// Creates a cache of `size`-byte objects aligned to `align`.
    ///
    /// Linux: `kmem_cache_create`.
    pub fn kmem_cache_create(
        &mut self,
        name: &str,
        size: usize,
        align: usize,
        flags: CacheFlags,
        ctor: Option<Constructor>,
    ) -> Result<CacheId, HeapError> {
        Ok(self
            .slab
            .kmem_cache_create(name, size, align, flags, ctor)?)
    }

    /// Allocates an object of cache `id`.
    ///
    /// Linux: `kmem_cache_alloc`.
    #[inline(always)]
    pub fn kmem_cache_alloc(&mut self, id: CacheId) -> Result<u64, HeapError> {
        self.grow_on_oom(|s, m| s.kmem_cache_alloc(m, id))
    }

    /// Allocates a zeroed object of cache `id`.
    ///
    /// Linux: `kmem_cache_zalloc`.
    pub fn kmem_cache_zalloc(&mut self, id: CacheId) -> Result<u64, HeapError> {
        self.grow_on_oom(|s, m| s.kmem_cache_zalloc(m, id))
    }

    /// Frees an object of cache `id`.
    ///
    /// Linux: `kmem_cache_free`.
    #[inline(always)]
    pub fn kmem_cache_free(&mut self, id: CacheId, addr: u64) -> Result<(), HeapError> {
        self.slab.kmem_cache_free(&mut self.mem, id, addr)?;
        self.after_free();
        Ok(())
    }

    /// Returns the empty slabs of cache `id` to the page source; returns the
    /// pages freed.
    ///
    /// Linux: `kmem_cache_shrink`.
    pub fn kmem_cache_shrink(&mut self, id: CacheId) -> Result<u64, HeapError> {
        let n = self.slab.kmem_cache_shrink(id)?;
        self.after_free();
        Ok(n)
    }

    /// Destroys cache `id` (refused while it has live objects).
    ///
    /// Linux: `kmem_cache_destroy`.
    pub fn kmem_cache_destroy(&mut self, id: CacheId) -> Result<(), HeapError> {
        self.slab.kmem_cache_destroy(id)?;
        self.after_free();
        Ok(())
    }

    /// Shrinks every cache, then gives all dirty free pages back to the
    /// server. Returns the pages given back.
    pub fn shrink_all(&mut self) -> Result<u64, Error> {
        self.slab.shrink_all();
        self.trim(0)
    }

    /// The live objects of cache `id`.
    pub fn live_objects(&self, id: CacheId) -> Result<Vec<u64>, HeapError> {
        Ok(self.slab.live_objects(id)?)
    }

    /// Statistics of cache `id` (Linux's `/proc/slabinfo` line).
    pub fn cache_stats(&self, id: CacheId) -> Result<CacheStats, HeapError> {
        Ok(self.slab.cache_stats(id)?)
    }

    /// Statistics of the kmalloc caches.
    pub fn kmalloc_stats(&self) -> Vec<CacheStats> {
        self.slab.kmalloc_stats()
    }

    // ----- pages -----------------------------------------------------------

    /// `2^order` pages of the heap arena (order up to 10), naturally
    /// aligned, without IPC unless the heap must grow. Virtually contiguous
    /// only; their contents are unspecified.
    ///
    /// No Linux counterpart: the nearest is `__get_free_pages`, whose pages
    /// are also physically contiguous (for that, [`Mm::alloc_pages`]).
    pub fn alloc_heap_pages(&mut self, order: u32) -> Result<u64, HeapError> {
        if order > MAX_ORDER {
            return Err(HeapError::Slab(SlabError::TooLarge {
                size: (PAGE_SIZE as usize) << order.min(40),
            }));
        }
        let addr = match self.slab.page_source_mut().alloc_pages(order) {
            Some(addr) => addr,
            None => {
                self.grow()?;
                self.slab
                    .page_source_mut()
                    .alloc_pages(order)
                    .ok_or(HeapError::Slab(SlabError::OutOfMemory))?
            }
        };
        // The page map of the slab does not know these pages: keep their
        // order here, to check frees.
        if self.heap_pages_out.insert(addr, order).is_some() {
            return Err(HeapError::Slab(SlabError::PageSourceConflict { addr }));
        }
        self.heap_pages += 1 << order;
        Ok(addr)
    }

    /// Frees pages from [`Heap::alloc_heap_pages`] of the same order;
    /// anything else is refused with [`SlabError::InvalidAddress`] and
    /// changes nothing.
    pub fn free_heap_pages(&mut self, addr: u64, order: u32) -> Result<(), HeapError> {
        if self.heap_pages_out.get(&addr) != Some(&order) {
            return Err(HeapError::Slab(SlabError::InvalidAddress { addr }));
        }
        self.heap_pages_out.remove(&addr);
        self.slab.page_source_mut().free_pages(addr, order);
        self.heap_pages -= 1 << order;
        self.after_free();
        Ok(())
    }

    // ----- accounting ------------------------------------------------------

    /// The heap's accounting.
    pub fn stats(&self) -> HeapStats {
        HeapStats {
            arena: self.slab.page_source().stats(),
            slab: self.slab.stats(),
            heap_pages: self.heap_pages,
            chunks_mapped: self.chunks.len() as u64,
            pages_trimmed: self.pages_trimmed,
            trim_failures: self.trim_failures,
            grow_failures: self.grow_failures,
        }
    }

    /// Checks the slab's metadata (and, in checking mode, red zones and
    /// poison), the page source's bookkeeping, and that the two agree: the
    /// pages the page source has handed out are exactly the slab's plus
    /// those of [`Heap::alloc_heap_pages`].
    pub fn validate(&self) -> Result<(), HeapError> {
        self.slab.validate(&self.mem)?;
        let corrupt = HeapError::Slab(SlabError::Corrupted(mm_core::slab::Corruption {
            kind: mm_core::slab::CorruptionKind::Metadata,
            object: 0,
            addr: 0,
            expected: 0,
            found: 0,
        }));
        self.slab.page_source().check().map_err(|_| corrupt)?;
        let s = self.stats();
        if s.arena.used_pages != s.slab.pages_obtained - s.slab.pages_returned + s.heap_pages {
            return Err(corrupt);
        }
        Ok(())
    }
}

impl<T: Transport + Clone + fmt::Debug, M: MemoryAccess> fmt::Debug for Heap<T, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap")
            .field("stats", &self.stats())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
