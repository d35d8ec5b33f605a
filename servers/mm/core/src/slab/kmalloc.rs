//! The kmalloc family: size classes from 8 bytes to 8 KiB, larger sizes straight from pages.
//!
//! Requests up to [`KMALLOC_MAX_CACHE_SIZE`] come from the cache of the
//! smallest class that fits ([`KMALLOC_SIZES`], Linux's classes); power of
//! two classes are naturally aligned up to the page size, 96 to 32 and 192 to
//! 64. Larger requests up to [`KMALLOC_MAX_SIZE`] take `2^order` pages
//! straight from the page source, labelled in the page map so that `kfree`
//! and `ksize` find them. A zero-byte request returns [`ZERO_SIZE_PTR`].

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use super::cache::{Cache, Geometry};
use super::pagemap::{PageInfo, PageKind};
use super::{
    CacheFlags, KMALLOC_CLASSES, KMALLOC_MAX_CACHE_SIZE, KMALLOC_MAX_SIZE, Resolved, SlabAllocator,
    SlabError, ZERO_SIZE_PTR, check,
};
use crate::addr::PAGE_SIZE;
use crate::memory::MemoryAccess;
use crate::pages::PageSource;

/// The kmalloc size classes (Linux's `kmalloc-8` … `kmalloc-8k`).
pub const KMALLOC_SIZES: [usize; 13] = [
    8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192,
];

/// Their cache names.
const KMALLOC_NAMES: [&str; 13] = [
    "kmalloc-8",
    "kmalloc-16",
    "kmalloc-32",
    "kmalloc-64",
    "kmalloc-96",
    "kmalloc-128",
    "kmalloc-192",
    "kmalloc-256",
    "kmalloc-512",
    "kmalloc-1k",
    "kmalloc-2k",
    "kmalloc-4k",
    "kmalloc-8k",
];

/// The class index of every size in `1..=KMALLOC_MAX_CACHE_SIZE`, by
/// `(size - 1) / 8` (the classes are multiples of 8): one load, no branch
/// (Linux's `kmalloc_size_index` covers sizes up to 192 and takes `fls`
/// above). A `const`, not a `static`, so that callers in other crates fold
/// a constant size to its class at compile time.
const CLASS_OF: [u8; KMALLOC_MAX_CACHE_SIZE / 8] = class_table();

/// Builds [`CLASS_OF`].
const fn class_table() -> [u8; KMALLOC_MAX_CACHE_SIZE / 8] {
    let mut table = [0u8; KMALLOC_MAX_CACHE_SIZE / 8];
    let mut i = 0;
    let mut class = 0;
    while i < table.len() {
        // Entry `i` serves sizes up to 8 * (i + 1).
        while KMALLOC_SIZES[class] < 8 * (i + 1) {
            class += 1;
        }
        table[i] = class as u8;
        i += 1;
    }
    table
}

/// The class index for `size`, or `None` for 0 and sizes above
/// [`KMALLOC_MAX_CACHE_SIZE`] (one comparison: 0 wraps around).
#[inline(always)]
fn class_index(size: usize) -> Option<usize> {
    CLASS_OF
        .get(size.wrapping_sub(1) / 8)
        .map(|&class| class as usize)
}

/// The kmalloc class serving `size` bytes, or `None` for 0 and sizes above
/// [`KMALLOC_MAX_CACHE_SIZE`] (served by [`ZERO_SIZE_PTR`] and by pages).
pub fn kmalloc_size_class(size: usize) -> Option<usize> {
    KMALLOC_SIZES.get(class_index(size)?).copied()
}

/// The alignment of a kmalloc class: the largest power of two dividing it,
/// at most a page.
fn class_align(size: usize) -> u64 {
    (1u64 << size.trailing_zeros()).min(PAGE_SIZE)
}

/// The kmalloc caches, checking or not, smallest class first.
pub(super) fn kmalloc_caches(checking: bool) -> [Box<Cache>; KMALLOC_CLASSES] {
    let flags = if checking {
        CacheFlags::DEBUG
    } else {
        CacheFlags::NONE
    };
    let caches: Vec<Box<Cache>> = KMALLOC_SIZES
        .iter()
        .zip(KMALLOC_NAMES)
        .filter_map(|(&size, name)| {
            let geo = Geometry::new(size as u64, class_align(size), checking)?;
            Some(Box::new(Cache::new(
                String::from(name),
                geo,
                flags,
                None,
                true,
            )))
        })
        .collect();
    match caches.try_into() {
        Ok(caches) => caches,
        // The class geometries are constants, all valid (the unit test
        // `kmalloc_caches_have_valid_geometry` builds every one): no input
        // reaches this.
        Err(_) => unreachable!("a kmalloc class has no valid geometry"),
    }
}

/// The page order holding `size` bytes.
fn order_for(size: usize) -> u32 {
    size.div_ceil(PAGE_SIZE as usize)
        .next_power_of_two()
        .trailing_zeros()
}

impl<P: PageSource> SlabAllocator<P> {
    /// Allocates `size` bytes.
    ///
    /// Linux: `kmalloc`. 0 bytes give [`ZERO_SIZE_PTR`]; sizes above
    /// [`KMALLOC_MAX_SIZE`] fail with [`SlabError::TooLarge`]. The contents
    /// are unspecified ([`super::POISON_INUSE`] in checking mode).
    ///
    /// Inlined, so that for a constant size the class folds away and the
    /// fast path is a magazine pop. The slow path returns the address in a
    /// register and its error, if any, through memory, so the `Result` is
    /// built from memory only on failure.
    #[inline(always)]
    pub fn kmalloc(&mut self, mem: &mut dyn MemoryAccess, size: usize) -> Result<u64, SlabError> {
        if let Some(class) = class_index(size)
            && let Some(addr) = self.caches.class_mut(class).and_then(Cache::pop_alloc)
        {
            return Ok(addr);
        }
        let mut err = SlabError::OutOfMemory;
        match self.kmalloc_slow(mem, size, &mut err) {
            0 => Err(err),
            addr => Ok(addr),
        }
    }

    /// Everything [`Self::kmalloc`]'s fast path leaves: an empty magazine,
    /// checking mode, zero and large sizes. Returns the address, or 0 with
    /// the error in `err` (0 is never an allocation: arenas exclude the
    /// first page).
    #[cold]
    #[inline(never)]
    fn kmalloc_slow(
        &mut self,
        mem: &mut dyn MemoryAccess,
        size: usize,
        err: &mut SlabError,
    ) -> u64 {
        let result = if let Some(class) = class_index(size) {
            self.alloc_slow(class, mem, size)
        } else if size == 0 {
            Ok(ZERO_SIZE_PTR)
        } else {
            self.kmalloc_large(size)
        };
        result.unwrap_or_else(|e| {
            *err = e;
            0
        })
    }

    /// Allocates `2^order` pages for a large request.
    fn kmalloc_large(&mut self, size: usize) -> Result<u64, SlabError> {
        if size > KMALLOC_MAX_SIZE {
            return Err(SlabError::TooLarge { size });
        }
        let order = order_for(size);
        let addr = self.pm.obtain(order, |i| PageInfo {
            kind: if i == 0 {
                PageKind::LargeHead
            } else {
                PageKind::LargeTail
            },
            sub: order as u8,
            ..PageInfo::default()
        })?;
        self.large_pages += 1 << order;
        self.large_allocs += 1;
        Ok(addr)
    }

    /// Allocates an array of `n` elements of `size` bytes.
    ///
    /// Linux: `kmalloc_array`; fails with [`SlabError::Overflow`] if `n * size` overflows.
    pub fn kmalloc_array(
        &mut self,
        mem: &mut dyn MemoryAccess,
        n: usize,
        size: usize,
    ) -> Result<u64, SlabError> {
        let bytes = n.checked_mul(size).ok_or(SlabError::Overflow)?;
        self.kmalloc(mem, bytes)
    }

    /// Allocates a zeroed array of `n` elements of `size` bytes.
    ///
    /// Linux: `kcalloc`; fails with [`SlabError::Overflow`] if `n * size` overflows.
    pub fn kcalloc(
        &mut self,
        mem: &mut dyn MemoryAccess,
        n: usize,
        size: usize,
    ) -> Result<u64, SlabError> {
        let bytes = n.checked_mul(size).ok_or(SlabError::Overflow)?;
        self.kzalloc(mem, bytes)
    }

    /// Allocates `size` zeroed bytes (the whole usable size, [`Self::ksize`], is zeroed).
    ///
    /// Linux: `kzalloc`.
    pub fn kzalloc(&mut self, mem: &mut dyn MemoryAccess, size: usize) -> Result<u64, SlabError> {
        let addr = self.kmalloc(mem, size)?;
        if addr == ZERO_SIZE_PTR {
            return Ok(addr);
        }
        let usable = self.ksize(addr)?;
        if let Err(e) = mem.zero(addr, usable as u64) {
            self.kfree(mem, addr)?;
            return Err(e.into());
        }
        Ok(addr)
    }

    /// Frees a kmalloc allocation; null and [`ZERO_SIZE_PTR`] are ignored.
    ///
    /// Linux: `kfree`. Unlike Linux, any other address that is not a live
    /// allocation is refused with an error and changes nothing:
    /// [`SlabError::DoubleFree`] for a free object, otherwise
    /// [`SlabError::InvalidAddress`]. It also frees objects of
    /// `kmem_cache_create` caches, as Linux's does.
    #[inline(always)]
    pub fn kfree(&mut self, mem: &mut dyn MemoryAccess, addr: u64) -> Result<(), SlabError> {
        // Null and ZERO_SIZE_PTR lie below every arena: they reach free_other.
        self.free_object(addr, None, mem)
    }

    /// The usable size of the allocation at `addr`: at least what was asked
    /// for; 0 for null and [`ZERO_SIZE_PTR`].
    ///
    /// Linux: `ksize`. It is the class size (or the object size of a
    /// `kmem_cache_create` cache, or the pages of a large allocation); in
    /// checking mode, for kmalloc objects, the requested size, since the
    /// bytes beyond it are red zone.
    pub fn ksize(&self, addr: u64) -> Result<usize, SlabError> {
        if addr == 0 || addr == ZERO_SIZE_PTR {
            return Ok(0);
        }
        Ok(match self.resolve(addr)? {
            Resolved::Object { cache, gid } => check::orig_size(&self.caches[cache], gid) as usize,
            Resolved::Large { order } => (PAGE_SIZE as usize) << order,
        })
    }

    /// Resizes the allocation at `addr` to `new_size` bytes, keeping the
    /// contents up to the smaller of the two sizes.
    ///
    /// Linux: `krealloc`. Null behaves as `kmalloc`; `new_size` 0 frees and
    /// returns [`ZERO_SIZE_PTR`]; when the usable size allows, the same
    /// address is returned (shrinking too); otherwise a new allocation
    /// receives a copy and the old one is freed. On failure the old
    /// allocation is untouched, except that in checking mode an old object
    /// found corrupted is quarantined and reported.
    pub fn krealloc(
        &mut self,
        mem: &mut dyn MemoryAccess,
        addr: u64,
        new_size: usize,
    ) -> Result<u64, SlabError> {
        if addr == 0 {
            return self.kmalloc(mem, new_size);
        }
        if new_size == 0 {
            self.kfree(mem, addr)?;
            return Ok(ZERO_SIZE_PTR);
        }
        if new_size > KMALLOC_MAX_SIZE {
            return Err(SlabError::TooLarge { size: new_size });
        }
        let (capacity, old_size) = match addr {
            ZERO_SIZE_PTR => (0, 0),
            _ => match self.resolve(addr)? {
                Resolved::Object { cache, gid } => {
                    let c = &mut self.caches[cache];
                    let old = check::orig_size(c, gid);
                    let capacity = c.geo.object_size;
                    if new_size as u64 <= capacity && c.needs_orig() {
                        if let Err(e) = check::resize_in_place(c, mem, addr, old, new_size as u64) {
                            if matches!(e, SlabError::Corrupted(_)) {
                                c.state[gid] = super::cache::QUARANTINED;
                                c.quarantined += 1;
                            }
                            return Err(e);
                        }
                        c.orig[gid] = new_size as u32;
                    }
                    (capacity as usize, old as usize)
                }
                Resolved::Large { order } => {
                    let bytes = (PAGE_SIZE as usize) << order;
                    (bytes, bytes)
                }
            },
        };
        if new_size <= capacity {
            return Ok(addr);
        }
        let new = self.kmalloc(mem, new_size)?;
        if old_size > 0
            && let Err(e) = mem.copy(new, addr, old_size as u64)
        {
            self.kfree(mem, new)?;
            return Err(e.into());
        }
        if let Err(e) = self.kfree(mem, addr) {
            self.kfree(mem, new)?;
            return Err(e);
        }
        Ok(new)
    }

    /// Duplicates `len` bytes read at `src` into a new allocation.
    ///
    /// Linux: `kmemdup`.
    pub fn kmemdup(
        &mut self,
        mem: &mut dyn MemoryAccess,
        src: u64,
        len: usize,
    ) -> Result<u64, SlabError> {
        let addr = self.kmalloc(mem, len)?;
        if len > 0
            && let Err(e) = mem.copy(addr, src, len as u64)
        {
            self.kfree(mem, addr)?;
            return Err(e.into());
        }
        Ok(addr)
    }

    /// Duplicates the NUL-terminated string at `src` (terminator included).
    /// A null `src` gives null, as in Linux.
    ///
    /// Linux: `kstrdup`. A string with no terminator within
    /// [`KMALLOC_MAX_SIZE`] bytes fails with [`SlabError::TooLarge`].
    pub fn kstrdup(&mut self, mem: &mut dyn MemoryAccess, src: u64) -> Result<u64, SlabError> {
        if src == 0 {
            return Ok(0);
        }
        let limit = KMALLOC_MAX_SIZE - 1;
        let len = strnlen(mem, src, limit)?.ok_or(SlabError::TooLarge {
            size: KMALLOC_MAX_SIZE,
        })?;
        self.kmemdup(mem, src, len + 1)
    }

    /// Duplicates at most `max` bytes of the string at `src`, always
    /// NUL-terminating the copy. A null `src` gives null, as in Linux.
    ///
    /// Linux: `kstrndup`.
    pub fn kstrndup(
        &mut self,
        mem: &mut dyn MemoryAccess,
        src: u64,
        max: usize,
    ) -> Result<u64, SlabError> {
        if src == 0 {
            return Ok(0);
        }
        let limit = max.min(KMALLOC_MAX_SIZE - 1);
        let len = match strnlen(mem, src, limit)? {
            Some(len) => len,
            None if max <= limit => max,
            None => return Err(SlabError::TooLarge { size: max }),
        };
        let addr = self.kmalloc(mem, len + 1)?;
        let copied = mem
            .copy(addr, src, len as u64)
            .and_then(|()| mem.write(addr + len as u64, &[0]));
        if let Err(e) = copied {
            self.kfree(mem, addr)?;
            return Err(e.into());
        }
        Ok(addr)
    }
}

/// The length of the string at `src` if a NUL occurs within `max` bytes.
/// Reads never cross a page boundary in one go, so a string ending just
/// before an inaccessible page is read correctly.
fn strnlen(mem: &dyn MemoryAccess, src: u64, max: usize) -> Result<Option<usize>, SlabError> {
    let mut buf = [0u8; 64];
    let mut done = 0usize;
    while done < max {
        let at = src
            .checked_add(done as u64)
            .ok_or(SlabError::InvalidAddress { addr: src })?;
        let to_page_end = (PAGE_SIZE - at % PAGE_SIZE) as usize;
        let n = buf.len().min(max - done).min(to_page_end);
        mem.read(at, &mut buf[..n])?;
        if let Some(i) = buf[..n].iter().position(|&b| b == 0) {
            return Ok(Some(done + i));
        }
        done += n;
    }
    Ok(None)
}
