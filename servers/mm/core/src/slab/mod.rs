//! Slab caches and the kmalloc family: objects carved out of pages, every byte of metadata out of band.
//!
//! [`SlabAllocator`] is Linux's slab layer as a value: named object caches
//! (`kmem_cache_create`/`alloc`/`free`/`shrink`/`destroy`), the kmalloc size
//! classes from 8 bytes to 8 KiB with larger sizes taken straight from pages
//! (`kmalloc`, `kmalloc_array`, `kcalloc`, `kzalloc`, `krealloc`, `kfree`,
//! `ksize`, `kstrdup`, `kstrndup`, `kmemdup`), and a checking mode in the
//! manner of SLUB debug (red zones, poisoning, double-free detection, a
//! `validate` walk). The same code serves the MM server's own objects (its
//! page source is the buddy allocator; addresses are physical) and every
//! client (pages mapped in batches by the server; addresses are virtual).
//!
//! # Addresses, not pointers
//!
//! The allocator deals in addresses and never dereferences them. Its
//! metadata lives in Rust-owned arrays: a page map (one 16-byte descriptor
//! per page of each registered arena) finds the slab of any address in
//! O(1); per cache, flat arrays hold each slab's descriptor (with the bitmap
//! of its free objects) and one state byte per object (free, live or
//! quarantined). A client that overruns its buffer can damage only other
//! objects, never the allocator, and a free of any address — garbage,
//! interior, already free — is answered with an error and changes nothing.
//! Metadata grows a slab at a time (geometrically growing arrays), never per
//! object, so allocation and free do no Rust-heap work on the fast path.
//!
//! Memory is touched only where the operation calls for it — zeroing
//! (`kzalloc`, `kcalloc`), copying (`krealloc`, `kmemdup`, `kstrdup`),
//! constructors, and red zones and poison in checking mode — through the
//! `&mut dyn MemoryAccess` every allocating or freeing call takes. Outside
//! checking mode the fast paths never call it.
//!
//! # The fast path
//!
//! Each cache has a per-CPU part (one CPU here): two magazines of up to 64
//! free objects, Bonwick-style, one that allocation pops from and one that
//! free pushes onto. `kmalloc` and `kfree` are inlined into their callers,
//! so that a constant size folds to its class (a table lookup otherwise),
//! and their slow paths are out of line and return addresses in registers,
//! so that the fast paths build no `Result` in memory. No `dyn
//! MemoryAccess` call is made on them.
//!
//! - **Allocation** pops an address from the class's alloc magazine and
//!   marks the object live (one byte store), about 14 instructions on
//!   aarch64.
//! - **Free** reads the page's descriptor, which for the caches whose
//!   objects tile their slabs a power of two apart (every kmalloc class but
//!   96 and 192, outside checking mode) turns the address into an object id
//!   with one rotation: an address that is not an object start, or on any
//!   other page, gets an id beyond every state array, so the bounds check
//!   of the state byte is the only test. It checks that the object is live
//!   (one load and compare of its state byte) and pushes it onto the free
//!   magazine, about 35 instructions. The cache is addressed through a hint,
//!   the kmalloc class of the previous free, so that its loads do not wait
//!   for the descriptor; a wrong hint costs one call.
//!
//! When the alloc magazine is empty it takes the free one's objects, if
//! any, in O(1) (the magazines exchange the halves of one array);
//! otherwise refill (64 objects) and flush (32) move objects between the
//! magazines and the slabs' free bitmaps, preferring partly used slabs.
//! Slabs that empty beyond two per cache go straight back to the page
//! source. Everything else — other strides, a full magazine, other arenas,
//! large allocations, and every error — takes the slow paths, which decide
//! from scratch, so the fast paths never need to report why they declined.
//!
//! Checking caches stay off these paths without a test of the mode: their
//! pages carry no fast descriptor, and their alloc magazine stays empty, so
//! both fast paths hand them to the slow paths, which check.
//!
//! # Arenas
//!
//! Every page the page source hands out must lie inside an arena registered
//! with [`SlabAllocator::add_arena`]; pages outside are given back and the
//! allocation fails with [`SlabError::PagesOutsideArena`]. Arenas must not
//! include the first page, so that neither the null address nor
//! [`ZERO_SIZE_PTR`] can ever name an object.

mod cache;
mod check;
mod kmalloc;
mod pagemap;
mod table;
#[cfg(test)]
mod tests;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::BitOr;

use cache::{Cache, FREE, Geometry, LIVE, MAG_BATCH, MAG_REFILL, MAG_SIZE, QUARANTINED, Role};
use pagemap::{PageKind, PageMap};
use table::{CacheTable, Class};

use crate::addr::PAGE_SIZE;
use crate::memory::{AccessError, MemoryAccess};
use crate::pages::PageSource;

pub use kmalloc::{KMALLOC_SIZES, kmalloc_size_class};

/// The address returned for zero-byte requests (Linux's `ZERO_SIZE_PTR`):
/// distinct from null, never an object, `ksize` 0, ignored by `kfree`.
pub const ZERO_SIZE_PTR: u64 = 16;
/// The largest size served from a kmalloc cache (Linux's `KMALLOC_MAX_CACHE_SIZE`).
pub const KMALLOC_MAX_CACHE_SIZE: usize = 8192;
/// The largest page order of a large kmalloc allocation (Linux's `MAX_PAGE_ORDER`).
pub const KMALLOC_MAX_ORDER: u32 = 10;
/// The largest kmalloc size, 4 MiB (Linux's `KMALLOC_MAX_SIZE`). Larger
/// requests, `usize::MAX` included, fail with [`SlabError::TooLarge`].
pub const KMALLOC_MAX_SIZE: usize = (PAGE_SIZE as usize) << KMALLOC_MAX_ORDER;
/// The largest object size of a [`SlabAllocator::kmem_cache_create`] cache.
pub const KMEM_CACHE_MAX_SIZE: usize = 256 * 1024;

/// Poison of a free object (Linux's `POISON_FREE`).
pub const POISON_FREE: u8 = 0x6b;
/// The last byte of a free object's poison (Linux's `POISON_END`).
pub const POISON_END: u8 = 0xa5;
/// Fill of a newly allocated, uninitialized object (Linux's `POISON_INUSE`).
pub const POISON_INUSE: u8 = 0x5a;
/// Red zone of a free object (Linux's `SLUB_RED_INACTIVE`).
pub const RED_INACTIVE: u8 = 0xbb;
/// Red zone of a live object (Linux's `SLUB_RED_ACTIVE`).
pub const RED_ACTIVE: u8 = 0xcc;

/// Number of kmalloc size classes; their caches have the first indices.
const KMALLOC_CLASSES: usize = KMALLOC_SIZES.len();

/// A constructor, run on every object of a new slab (Linux's `ctor`):
/// objects must be returned to the constructed state before they are freed.
pub type Constructor = fn(&mut dyn MemoryAccess, u64) -> Result<(), AccessError>;

/// Cache creation flags (Linux's `SLAB_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CacheFlags(u32);

impl CacheFlags {
    /// No flags.
    pub const NONE: CacheFlags = CacheFlags(0);
    /// Red zones around every object, checked on free and by `validate` (`SLAB_RED_ZONE`).
    pub const RED_ZONE: CacheFlags = CacheFlags(1 << 0);
    /// Poison free objects, checked when they are handed out again (`SLAB_POISON`).
    pub const POISON: CacheFlags = CacheFlags(1 << 1);
    /// Align objects to the cache line (64 bytes), halved for small objects
    /// (`SLAB_HWCACHE_ALIGN`).
    pub const HWCACHE_ALIGN: CacheFlags = CacheFlags(1 << 2);
    /// Full checking: red zones and poison.
    pub const DEBUG: CacheFlags = CacheFlags(Self::RED_ZONE.0 | Self::POISON.0);

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: CacheFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether any flag of `other` is set.
    pub const fn intersects(self, other: CacheFlags) -> bool {
        self.0 & other.0 != 0
    }
    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }
}

impl BitOr for CacheFlags {
    type Output = CacheFlags;
    fn bitor(self, rhs: CacheFlags) -> CacheFlags {
        CacheFlags(self.0 | rhs.0)
    }
}

/// Names a cache created by [`SlabAllocator::kmem_cache_create`]. Stale ids
/// (of a destroyed cache, even if its slot was reused) are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheId {
    index: u16,
    generation: u32,
}

/// What a check found wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorruptionKind {
    /// The red zone before the object was written (buffer underflow).
    LeftRedZone,
    /// The red zone after the object, or after the requested size of a
    /// kmalloc object, was written (buffer overflow).
    RightRedZone,
    /// The poison of a free object changed (a write after free).
    UseAfterFree,
    /// The allocator's own metadata is inconsistent (a bug in this module).
    Metadata,
}

/// A corruption report: what, in which object, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// What was found.
    pub kind: CorruptionKind,
    /// The object's address.
    pub object: u64,
    /// The first bad byte.
    pub addr: u64,
    /// The byte that should be there.
    pub expected: u8,
    /// The byte that is there.
    pub found: u8,
}

/// Why a slab operation failed. Every failure leaves the allocator unchanged,
/// except a [`SlabError::Corrupted`] report on an object, which quarantines it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlabError {
    /// The page source has no pages left, or metadata could not grow.
    OutOfMemory,
    /// The size is above the family's maximum ([`KMALLOC_MAX_SIZE`]), or a
    /// string has no terminator within it.
    TooLarge {
        /// The size asked for.
        size: usize,
    },
    /// `n * size` overflowed (`kmalloc_array`, `kcalloc`).
    Overflow,
    /// The address is not the start of an object or large allocation of
    /// this allocator.
    InvalidAddress {
        /// The address given.
        addr: u64,
    },
    /// `kfree`/`kmem_cache_free` of an object that is free: a double free,
    /// or an address never handed out.
    DoubleFree {
        /// The address given.
        addr: u64,
    },
    /// `ksize`/`krealloc` of an object that is free (a use after free).
    NotAllocated {
        /// The address given.
        addr: u64,
    },
    /// The object was quarantined after a corruption report.
    Quarantined {
        /// The address given.
        addr: u64,
    },
    /// `kmem_cache_free` of an object of another cache.
    WrongCache {
        /// The address given.
        addr: u64,
    },
    /// No such cache: destroyed, or never created.
    NoSuchCache,
    /// Object size 0 or above [`KMEM_CACHE_MAX_SIZE`], or an alignment that
    /// is not a power of two or is above the page size.
    InvalidCacheParams,
    /// `kmem_cache_destroy` of a cache with live objects (Linux's "Objects
    /// remaining on kmem_cache_close()"): nothing was destroyed; the objects
    /// are listed by [`SlabAllocator::live_objects`].
    CacheBusy {
        /// How many objects are live.
        live: u64,
    },
    /// An arena that is empty, not page aligned, overlaps another, wraps
    /// around, or includes the first page.
    InvalidArena {
        /// Its base.
        base: u64,
        /// Its length.
        len: u64,
    },
    /// The page source returned pages outside every registered arena (they
    /// were given back).
    PagesOutsideArena {
        /// The pages' address.
        addr: u64,
    },
    /// The page source returned pages this allocator already holds.
    PageSourceConflict {
        /// The pages' address.
        addr: u64,
    },
    /// Memory could not be read or written through the `MemoryAccess`.
    Access(AccessError),
    /// A check found corrupted memory or metadata.
    Corrupted(Corruption),
}

impl From<AccessError> for SlabError {
    fn from(e: AccessError) -> SlabError {
        SlabError::Access(e)
    }
}

impl fmt::Display for SlabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SlabError::OutOfMemory => write!(f, "out of memory"),
            SlabError::TooLarge { size } => write!(f, "size {size} too large"),
            SlabError::Overflow => write!(f, "size computation overflowed"),
            SlabError::InvalidAddress { addr } => write!(f, "{addr:#x} is not an allocation"),
            SlabError::DoubleFree { addr } => write!(f, "double free of {addr:#x}"),
            SlabError::NotAllocated { addr } => write!(f, "{addr:#x} is free"),
            SlabError::Quarantined { addr } => write!(f, "{addr:#x} is quarantined"),
            SlabError::WrongCache { addr } => write!(f, "{addr:#x} belongs to another cache"),
            SlabError::NoSuchCache => write!(f, "no such cache"),
            SlabError::InvalidCacheParams => write!(f, "invalid cache size or alignment"),
            SlabError::CacheBusy { live } => {
                write!(f, "objects remaining on kmem_cache_close(): {live}")
            }
            SlabError::InvalidArena { base, len } => {
                write!(f, "invalid arena {base:#x}+{len:#x}")
            }
            SlabError::PagesOutsideArena { addr } => {
                write!(f, "page source returned {addr:#x}, outside every arena")
            }
            SlabError::PageSourceConflict { addr } => {
                write!(f, "page source returned {addr:#x} twice")
            }
            SlabError::Access(e) => write!(f, "memory access failed at {:#x}", e.addr),
            SlabError::Corrupted(c) => write!(
                f,
                "{:?} in object {:#x} at {:#x}: expected {:#04x}, found {:#04x}",
                c.kind, c.object, c.addr, c.expected, c.found
            ),
        }
    }
}

/// Statistics of one cache (Linux's `/proc/slabinfo` line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheStats {
    /// The cache's name.
    pub name: String,
    /// The usable object size.
    pub object_size: usize,
    /// The object alignment.
    pub align: usize,
    /// Bytes per object in the slab (object, red zones, padding).
    pub stride: usize,
    /// Objects per slab.
    pub objects_per_slab: usize,
    /// Slab order (pages per slab = 2^order).
    pub order: u32,
    /// Slabs held.
    pub slabs: u64,
    /// Slabs with no object in use.
    pub empty_slabs: u64,
    /// Pages held.
    pub pages: u64,
    /// Objects handed out (Linux's `active_objs`).
    pub active_objects: u64,
    /// Free objects held in the magazine.
    pub cached_objects: u64,
    /// Objects in all slabs (Linux's `num_objs`).
    pub total_objects: u64,
    /// Objects quarantined after a corruption report.
    pub quarantined_objects: u64,
    /// The cache's flags.
    pub flags: CacheFlags,
}

/// Whole-allocator page accounting.
///
/// Conservation: `pages_obtained - pages_returned == slab_pages + large_pages`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlabStats {
    /// Pages obtained from the page source since creation.
    pub pages_obtained: u64,
    /// Pages given back to the page source since creation.
    pub pages_returned: u64,
    /// Pages held in slabs of all caches.
    pub slab_pages: u64,
    /// Pages held by large kmalloc allocations.
    pub large_pages: u64,
    /// Large kmalloc allocations live.
    pub large_allocations: u64,
    /// Live caches, kmalloc caches included.
    pub caches: usize,
}

/// A live allocation found from its address.
#[derive(Clone, Copy, Debug)]
enum Resolved {
    /// Object `gid` of cache `cache`.
    Object { cache: usize, gid: usize },
    /// A large allocation of `2^order` pages.
    Large { order: u32 },
}

/// Slab caches and the kmalloc family over one page source.
pub struct SlabAllocator<P: PageSource> {
    caches: CacheTable,
    dead: Vec<u16>,
    pm: PageMap<P>,
    checking: bool,
    large_pages: u64,
    large_allocs: u64,
    /// The kmalloc class of the last free (see [`SlabAllocator::free_fast`]).
    free_hint: Class,
}

impl<P: PageSource> SlabAllocator<P> {
    /// An allocator over `source`, with its kmalloc caches (no pages yet).
    /// Register arenas with [`SlabAllocator::add_arena`] before allocating.
    pub fn new(source: P) -> Self {
        Self::build(source, false)
    }

    /// An allocator in checking mode (Linux's `slub_debug=ZP`): every cache,
    /// the kmalloc caches included, has red zones and poisoning.
    pub fn new_checking(source: P) -> Self {
        Self::build(source, true)
    }

    fn build(source: P, checking: bool) -> Self {
        SlabAllocator {
            caches: CacheTable::new(kmalloc::kmalloc_caches(checking)),
            dead: Vec::new(),
            pm: PageMap::new(source),
            checking,
            large_pages: 0,
            large_allocs: 0,
            free_hint: Class::default(),
        }
    }

    /// Whether the allocator was created in checking mode.
    pub fn is_checking(&self) -> bool {
        self.checking
    }

    /// Registers the address range `[base, base + len)` in which the page
    /// source's pages lie. Arenas must be page aligned, not overlap, and not
    /// include the first page.
    pub fn add_arena(&mut self, base: u64, len: u64) -> Result<(), SlabError> {
        self.pm.add_arena(base, len)
    }

    /// The page source.
    pub fn page_source(&self) -> &P {
        &self.pm.source
    }

    /// The page source, mutably (e.g. to inject failures in tests).
    pub fn page_source_mut(&mut self) -> &mut P {
        &mut self.pm.source
    }

    // ----- kmem_cache -----

    /// Creates a cache of `size`-byte objects aligned to `align` (0 means the
    /// minimum, 8). In checking mode the cache also gets
    /// [`CacheFlags::DEBUG`].
    ///
    /// Linux: `kmem_cache_create`. The slab order is chosen as SLUB's
    /// `calculate_order` does; caches with a constructor are not poisoned.
    /// Unlike Linux, names need not be unique.
    pub fn kmem_cache_create(
        &mut self,
        name: &str,
        size: usize,
        align: usize,
        flags: CacheFlags,
        ctor: Option<Constructor>,
    ) -> Result<CacheId, SlabError> {
        if size == 0 || size > KMEM_CACHE_MAX_SIZE {
            return Err(SlabError::InvalidCacheParams);
        }
        let mut align = align.max(1);
        let mut flags = flags;
        if self.checking {
            flags = flags | CacheFlags::DEBUG;
        }
        if flags.contains(CacheFlags::HWCACHE_ALIGN) {
            let mut line = 64;
            while size <= line / 2 && line > 8 {
                line /= 2;
            }
            align = align.max(line);
        }
        let geo = Geometry::new(
            size as u64,
            align as u64,
            flags.contains(CacheFlags::RED_ZONE),
        )
        .ok_or(SlabError::InvalidCacheParams)?;
        let mut cache = Cache::new(String::from(name), geo, flags, ctor, false);
        let index = match self.dead.pop() {
            Some(index) => {
                cache.generation = self.caches[index as usize].generation.wrapping_add(1);
                self.caches[index as usize] = cache;
                index
            }
            None => {
                u16::try_from(self.caches.len()).map_err(|_| SlabError::OutOfMemory)?;
                self.caches.push(cache)? as u16
            }
        };
        Ok(CacheId {
            index,
            generation: self.caches[index as usize].generation,
        })
    }

    /// The index of a live cache named by `id`.
    fn index_of(&self, id: CacheId) -> Result<usize, SlabError> {
        let i = id.index as usize;
        match self.caches.get(i) {
            Some(c) if i >= KMALLOC_CLASSES && c.alive && c.generation == id.generation => Ok(i),
            _ => Err(SlabError::NoSuchCache),
        }
    }

    /// Allocates an object from cache `id`.
    ///
    /// Linux: `kmem_cache_alloc`. Fails with [`SlabError::OutOfMemory`] when
    /// the page source is exhausted; in checking mode, with
    /// [`SlabError::Corrupted`] when the object about to be handed out was
    /// written while free (it is quarantined; the next call gets another).
    #[inline]
    pub fn kmem_cache_alloc(
        &mut self,
        mem: &mut dyn MemoryAccess,
        id: CacheId,
    ) -> Result<u64, SlabError> {
        let ci = self.index_of(id)?;
        if let Some(addr) = self.caches.get_mut(ci).and_then(Cache::pop_alloc) {
            return Ok(addr);
        }
        let mut err = SlabError::OutOfMemory;
        match self.cache_alloc_slow(ci, mem, &mut err) {
            0 => Err(err),
            addr => Ok(addr),
        }
    }

    /// Everything [`Self::kmem_cache_alloc`]'s fast path leaves. Returns the
    /// address, or 0 with the error in `err` (as `kmalloc_slow`).
    #[cold]
    #[inline(never)]
    fn cache_alloc_slow(
        &mut self,
        ci: usize,
        mem: &mut dyn MemoryAccess,
        err: &mut SlabError,
    ) -> u64 {
        let size = self.caches[ci].geo.object_size as usize;
        self.alloc_slow(ci, mem, size).unwrap_or_else(|e| {
            *err = e;
            0
        })
    }

    /// Allocates a zeroed object from cache `id` (Linux: `kmem_cache_zalloc`).
    pub fn kmem_cache_zalloc(
        &mut self,
        mem: &mut dyn MemoryAccess,
        id: CacheId,
    ) -> Result<u64, SlabError> {
        let addr = self.kmem_cache_alloc(mem, id)?;
        let size = self.caches[id.index as usize].geo.object_size;
        if let Err(e) = mem.zero(addr, size) {
            self.kmem_cache_free(mem, id, addr)?;
            return Err(e.into());
        }
        Ok(addr)
    }

    /// Frees an object of cache `id`.
    ///
    /// Linux: `kmem_cache_free`. An object of another cache is refused with
    /// [`SlabError::WrongCache`] (Linux warns and frees it to its own cache).
    #[inline]
    pub fn kmem_cache_free(
        &mut self,
        mem: &mut dyn MemoryAccess,
        id: CacheId,
        addr: u64,
    ) -> Result<(), SlabError> {
        let ci = self.index_of(id)?;
        self.free_object(addr, Some(ci), mem)
    }

    /// Destroys cache `id`, returning all its pages.
    ///
    /// Linux: `kmem_cache_destroy`. With live objects nothing is destroyed
    /// and [`SlabError::CacheBusy`] counts them (Linux likewise keeps the
    /// cache and reports "Objects remaining"); free them and destroy again.
    pub fn kmem_cache_destroy(&mut self, id: CacheId) -> Result<(), SlabError> {
        let ci = self.index_of(id)?;
        let cache = &mut self.caches[ci];
        let live = cache.live();
        if live > 0 {
            return Err(SlabError::CacheBusy { live });
        }
        self.dead
            .try_reserve(1)
            .map_err(|_| SlabError::OutOfMemory)?;
        cache.release_all(&mut self.pm);
        cache.alive = false;
        self.dead.push(ci as u16);
        Ok(())
    }

    /// Returns the magazine's objects to their slabs and every empty slab
    /// of cache `id` to the page source. Returns the pages freed.
    ///
    /// Linux: `kmem_cache_shrink`.
    pub fn kmem_cache_shrink(&mut self, id: CacheId) -> Result<u64, SlabError> {
        let ci = self.index_of(id)?;
        Ok(self.caches[ci].shrink(&mut self.pm))
    }

    /// Shrinks every cache, the kmalloc caches included. Returns the pages freed.
    pub fn shrink_all(&mut self) -> u64 {
        let pm = &mut self.pm;
        self.caches
            .iter_mut()
            .filter(|c| c.alive)
            .map(|c| c.shrink(pm))
            .sum()
    }

    /// The addresses of the live objects of cache `id`, in address order
    /// within each slab (what Linux lists on `kmem_cache_destroy`).
    pub fn live_objects(&self, id: CacheId) -> Result<Vec<u64>, SlabError> {
        let cache = &self.caches[self.index_of(id)?];
        let nobj = cache.geo.nobj as usize;
        let mut out = Vec::new();
        for (s, meta) in cache.slabs_in_use() {
            let first = s << cache.geo.shift;
            for i in 0..nobj {
                if cache.state[first + i] == LIVE {
                    out.push(meta.base + cache.geo.left + i as u64 * cache.geo.stride);
                }
            }
        }
        Ok(out)
    }

    /// Statistics of cache `id`.
    pub fn cache_stats(&self, id: CacheId) -> Result<CacheStats, SlabError> {
        Ok(stats_of(&self.caches[self.index_of(id)?]))
    }

    /// Statistics of the kmalloc caches, smallest class first.
    pub fn kmalloc_stats(&self) -> Vec<CacheStats> {
        self.caches.classes().map(stats_of).collect()
    }

    /// Whole-allocator page accounting.
    pub fn stats(&self) -> SlabStats {
        let live = || self.caches.iter().filter(|c| c.alive);
        SlabStats {
            pages_obtained: self.pm.obtained,
            pages_returned: self.pm.returned,
            slab_pages: live().map(Cache::pages).sum(),
            large_pages: self.large_pages,
            large_allocations: self.large_allocs,
            caches: live().count(),
        }
    }

    /// Checks all metadata — free bitmaps, object states, counters, slab
    /// lists, page labels, page conservation — and, in checking mode, the red
    /// zones of every object and the poison of every free one. Returns the
    /// first problem found.
    ///
    /// Linux: `validate_slab_cache` (`/sys/kernel/slab/*/validate`).
    pub fn validate(&self, mem: &dyn MemoryAccess) -> Result<(), SlabError> {
        for (i, cache) in self.caches.iter().enumerate() {
            if cache.alive {
                check::validate_cache(cache, i as u16, &self.pm, mem)?;
            }
        }
        let stats = self.stats();
        let held = stats.slab_pages + stats.large_pages;
        if self.pm.obtained - self.pm.returned != held || self.pm.labelled_pages() != held {
            return Err(SlabError::Corrupted(Corruption {
                kind: CorruptionKind::Metadata,
                object: 0,
                addr: 0,
                expected: 0,
                found: 0,
            }));
        }
        Ok(())
    }

    // ----- the object fast paths -----

    /// The allocation slow path: take the free magazine's objects or refill
    /// from the slabs (growing the cache if needed); checking caches
    /// allocate from their free magazine, with checks.
    #[cold]
    #[inline(never)]
    fn alloc_slow(
        &mut self,
        ci: usize,
        mem: &mut dyn MemoryAccess,
        req: usize,
    ) -> Result<u64, SlabError> {
        let cache = self.caches.get_mut(ci).ok_or(SlabError::NoSuchCache)?;
        let debug = cache.debug;
        let role = cache.refill_target();
        if cache.cpu.count(role) == 0 {
            if !debug && cache.cpu.count(Role::Free) > 0 {
                cache.cpu.reload();
            } else if cache.refill_from_slabs(MAG_REFILL) == 0 {
                cache.grow(&mut self.pm, ci as u16, mem)?;
                cache.refill_from_slabs(MAG_REFILL);
            }
        }
        let e = cache.cpu.pop(role).ok_or(SlabError::OutOfMemory)?;
        if debug {
            match check::on_alloc(cache, mem, e, req as u64) {
                Ok(()) => {}
                Err(err @ SlabError::Corrupted(_)) => {
                    cache.state[e.gid] = QUARANTINED;
                    cache.quarantined += 1;
                    return Err(err);
                }
                Err(err) => {
                    // Not handed out: back on top, as it was.
                    cache.cpu.push(role, e);
                    return Err(err);
                }
            }
            if cache.needs_orig() {
                cache.orig[e.gid] = req as u32;
            }
        }
        cache.state[e.gid] = LIVE;
        Ok(e.addr)
    }

    /// The free fast path: finds the object at `addr` through its page's
    /// descriptor and pushes it onto its cache's free magazine; `only`
    /// restricts it to one cache (`kmem_cache_free`). `false` changes
    /// nothing and leaves the free to [`Self::free_other`]: objects of
    /// checking caches (their pages are not fast), strides that are not a
    /// power of two, a full magazine, and every error.
    #[inline(always)]
    fn free_fast(&mut self, addr: u64, only: Option<usize>) -> bool {
        match only {
            None => self.kfree_fast(addr),
            Some(ci) => self.cache_free_fast(addr, ci),
        }
    }

    /// [`Self::free_fast`] for `kfree`.
    #[inline(always)]
    fn kfree_fast(&mut self, addr: u64) -> bool {
        // The cache is addressed through the hint (the kmalloc class of the
        // previous free) before the page descriptor is read, so that the
        // loads of its state array and magazine do not wait for that
        // descriptor; a wrong hint costs one more call.
        let hint = self.free_hint;
        let cache = self.caches.class(hint);
        let Some(info) = self.pm.lookup_primary(addr) else {
            return self.free_fast_arenas(addr);
        };
        // Not a fast page, or not an object start: an id no cache has.
        let gid = info.fast_object(addr);
        let ci = info.cache as usize;
        if ci == hint as usize {
            return cache.push_free(addr, gid);
        }
        self.free_fast_miss(ci, addr, gid)
    }

    /// [`Self::free_fast`] for `kmem_cache_free` of cache index `ci`: the
    /// cache is known before the page descriptor is read.
    #[inline(always)]
    fn cache_free_fast(&mut self, addr: u64, ci: usize) -> bool {
        let Some(cache) = self.caches.get_mut(ci) else {
            return false;
        };
        match self.pm.lookup(addr) {
            Some(info) if info.cache as usize == ci => {
                cache.push_free(addr, info.fast_object(addr))
            }
            _ => false,
        }
    }

    /// [`Self::kfree_fast`] for an address outside the first arena.
    #[inline(never)]
    fn free_fast_arenas(&mut self, addr: u64) -> bool {
        let Some(info) = self.pm.lookup(addr) else {
            return false;
        };
        let gid = info.fast_object(addr);
        self.free_fast_miss(info.cache as usize, addr, gid)
    }

    /// [`Self::kfree_fast`] for a cache other than the hinted class.
    #[inline(never)]
    fn free_fast_miss(&mut self, ci: usize, addr: u64, gid: u64) -> bool {
        if let Some(class) = Class::new(ci) {
            self.free_hint = class;
        }
        match self.caches.get_mut(ci) {
            Some(cache) => cache.push_free(addr, gid),
            None => false,
        }
    }

    /// Frees the object at `addr` (kfree if `only` is `None`, else
    /// kmem_cache_free of cache index `only`).
    #[inline(always)]
    fn free_object(
        &mut self,
        addr: u64,
        only: Option<usize>,
        mem: &mut dyn MemoryAccess,
    ) -> Result<(), SlabError> {
        if self.free_fast(addr, only) {
            return Ok(());
        }
        self.free_other(addr, only, mem)
    }

    /// Everything the free fast path leaves: objects of checking caches,
    /// strides that are not a power of two, a full free magazine, null and
    /// [`ZERO_SIZE_PTR`], large allocations, errors.
    #[cold]
    #[inline(never)]
    fn free_other(
        &mut self,
        addr: u64,
        only: Option<usize>,
        mem: &mut dyn MemoryAccess,
    ) -> Result<(), SlabError> {
        if only.is_none() && (addr == 0 || addr == ZERO_SIZE_PTR) {
            return Ok(());
        }
        let invalid = SlabError::InvalidAddress { addr };
        let info = *self.pm.lookup(addr).ok_or(invalid)?;
        if info.kind.is_slab() {
            let ci = info.cache as usize;
            if only.is_some_and(|c| c != ci) {
                return Err(SlabError::WrongCache { addr });
            }
            let cache = self.caches.get(ci).ok_or(invalid)?;
            let gid = cache.object_index(&info, addr).ok_or(invalid)?;
            return self.free_slow(ci, gid, addr, mem);
        }
        match info.kind {
            PageKind::LargeHead if only.is_none() && addr.is_multiple_of(PAGE_SIZE) => {
                let order = info.sub as u32;
                self.pm.release(addr, order);
                self.large_pages -= 1 << order;
                self.large_allocs -= 1;
                Ok(())
            }
            PageKind::LargeHead | PageKind::LargeTail if only.is_some() => {
                Err(SlabError::WrongCache { addr })
            }
            _ => Err(invalid),
        }
    }

    /// The free slow path: state errors, checking mode's checks, and a full
    /// free magazine (emptied into an empty alloc magazine, or flushed).
    #[cold]
    #[inline(never)]
    fn free_slow(
        &mut self,
        ci: usize,
        gid: usize,
        addr: u64,
        mem: &mut dyn MemoryAccess,
    ) -> Result<(), SlabError> {
        let cache = &mut self.caches[ci];
        match cache.state.get(gid) {
            Some(&LIVE) => {}
            Some(&FREE) => return Err(SlabError::DoubleFree { addr }),
            Some(&QUARANTINED) => return Err(SlabError::Quarantined { addr }),
            _ => return Err(SlabError::InvalidAddress { addr }),
        }
        if cache.debug {
            match check::on_free(cache, mem, gid, addr) {
                Ok(()) => {}
                Err(err @ SlabError::Corrupted(_)) => {
                    cache.state[gid] = QUARANTINED;
                    cache.quarantined += 1;
                    return Err(err);
                }
                Err(err) => return Err(err),
            }
        }
        if cache.cpu.count(Role::Free) == MAG_SIZE {
            if !cache.debug && cache.cpu.count(Role::Alloc) == 0 {
                cache.cpu.reload();
            } else {
                cache.flush(&mut self.pm, MAG_BATCH, Role::Free);
            }
        }
        cache.state[gid] = FREE;
        // Room was made above.
        cache.cpu.push(Role::Free, cache::Entry { addr, gid });
        Ok(())
    }

    /// Finds the live allocation starting at `addr` (not null or
    /// [`ZERO_SIZE_PTR`]).
    fn resolve(&self, addr: u64) -> Result<Resolved, SlabError> {
        let bad = SlabError::InvalidAddress { addr };
        let info = self.pm.lookup(addr).ok_or(bad)?;
        match info.kind {
            PageKind::Slab | PageKind::SlabChecked => {
                let ci = info.cache as usize;
                let cache = self.caches.get(ci).ok_or(bad)?;
                let gid = cache.object_index(info, addr).ok_or(bad)?;
                match cache.state.get(gid) {
                    Some(&LIVE) => Ok(Resolved::Object { cache: ci, gid }),
                    Some(&FREE) => Err(SlabError::NotAllocated { addr }),
                    Some(&QUARANTINED) => Err(SlabError::Quarantined { addr }),
                    _ => Err(bad),
                }
            }
            PageKind::LargeHead if addr.is_multiple_of(PAGE_SIZE) => Ok(Resolved::Large {
                order: info.sub as u32,
            }),
            _ => Err(bad),
        }
    }
}

/// The statistics of `cache`.
fn stats_of(cache: &Cache) -> CacheStats {
    let g = cache.geo;
    CacheStats {
        name: cache.name.clone(),
        object_size: g.object_size as usize,
        align: g.align as usize,
        stride: g.stride as usize,
        objects_per_slab: g.nobj as usize,
        order: g.order,
        slabs: cache.nr_slabs,
        empty_slabs: cache.nr_empty as u64,
        pages: cache.pages(),
        active_objects: cache.live(),
        cached_objects: cache.cpu.held() as u64,
        total_objects: cache.total_objects(),
        quarantined_objects: cache.quarantined,
        flags: cache.flags,
    }
}
