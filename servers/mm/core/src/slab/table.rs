//! The table of caches: the kmalloc classes in a fixed-size array, the `kmem_cache_create` caches after them.
//!
//! Cache indices are global: the kmalloc classes have the first
//! [`KMALLOC_CLASSES`] indices, the caches of `kmem_cache_create` the
//! following ones (page descriptors and [`super::CacheId`]s carry them).
//!
//! Each kmalloc class is boxed on its own, its pointer in an array of fixed
//! length indexed by [`Class`]: `kmalloc` of a constant size reaches its
//! cache with one load and no bounds check, and the fast paths reach every
//! field at a short offset from that pointer, which lets the compiler load
//! neighbouring fields in pairs (an array of the caches themselves puts the
//! fields of the fourth class 12 KiB away, beyond a paired load's reach:
//! three instructions more per allocation and free on aarch64). The other
//! caches are in a vector. A cache is about 2.3 KiB, so building or moving a
//! `SlabAllocator` never puts one on the stack.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ops::{Index, IndexMut};

use super::cache::Cache;
use super::{KMALLOC_CLASSES, SlabError};

/// A kmalloc class index, `0..KMALLOC_CLASSES` by its type, so that an
/// array of the classes is indexed without a bounds check (`C0` is
/// `kmalloc-8`, `C12` is `kmalloc-8k`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Class {
    #[default]
    C0,
    C1,
    C2,
    C3,
    C4,
    C5,
    C6,
    C7,
    C8,
    C9,
    C10,
    C11,
    C12,
}

impl Class {
    /// The class with index `i`, if there is one.
    pub fn new(i: usize) -> Option<Class> {
        const ALL: [Class; KMALLOC_CLASSES] = [
            Class::C0,
            Class::C1,
            Class::C2,
            Class::C3,
            Class::C4,
            Class::C5,
            Class::C6,
            Class::C7,
            Class::C8,
            Class::C9,
            Class::C10,
            Class::C11,
            Class::C12,
        ];
        ALL.get(i).copied()
    }
}

/// Every cache of an allocator, by index.
pub(super) struct CacheTable {
    /// The kmalloc classes, smallest first.
    kmalloc: [Box<Cache>; KMALLOC_CLASSES],
    /// The `kmem_cache_create` caches: index `KMALLOC_CLASSES + i` is `others[i]`.
    others: Vec<Cache>,
}

impl CacheTable {
    /// A table holding the kmalloc classes only.
    pub fn new(kmalloc: [Box<Cache>; KMALLOC_CLASSES]) -> Self {
        CacheTable {
            kmalloc,
            others: Vec::new(),
        }
    }

    /// The cache of kmalloc class `class` (no bounds check when `class` is
    /// a constant).
    #[inline(always)]
    pub fn class_mut(&mut self, class: usize) -> Option<&mut Cache> {
        self.kmalloc.get_mut(class).map(|c| &mut **c)
    }

    /// The cache of kmalloc class `class`.
    #[inline(always)]
    pub fn class(&mut self, class: Class) -> &mut Cache {
        &mut self.kmalloc[class as usize]
    }

    /// The kmalloc classes, smallest first.
    pub fn classes(&self) -> impl Iterator<Item = &Cache> {
        self.kmalloc.iter().map(|c| &**c)
    }

    /// Cache `i`, if there is one.
    #[inline(always)]
    pub fn get(&self, i: usize) -> Option<&Cache> {
        match i.checked_sub(KMALLOC_CLASSES) {
            None => self.kmalloc.get(i).map(|c| &**c),
            Some(j) => self.others.get(j),
        }
    }

    /// Cache `i`, mutably, if there is one.
    #[inline(always)]
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Cache> {
        match i.checked_sub(KMALLOC_CLASSES) {
            None => self.kmalloc.get_mut(i).map(|c| &mut **c),
            Some(j) => self.others.get_mut(j),
        }
    }

    /// Number of caches (index slots), dead ones included.
    pub fn len(&self) -> usize {
        KMALLOC_CLASSES + self.others.len()
    }

    /// Appends `cache`, returning its index.
    pub fn push(&mut self, cache: Cache) -> Result<usize, SlabError> {
        self.others
            .try_reserve(1)
            .map_err(|_| SlabError::OutOfMemory)?;
        self.others.push(cache);
        Ok(self.len() - 1)
    }

    /// Every cache, dead ones included, in index order.
    pub fn iter(&self) -> impl Iterator<Item = &Cache> {
        self.kmalloc.iter().map(|c| &**c).chain(self.others.iter())
    }

    /// Every cache, mutably, in index order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Cache> {
        self.kmalloc
            .iter_mut()
            .map(|c| &mut **c)
            .chain(self.others.iter_mut())
    }
}

impl Index<usize> for CacheTable {
    type Output = Cache;

    /// Cache `i`, which must exist (indices come from the allocator's own
    /// metadata, never unchecked from a caller).
    fn index(&self, i: usize) -> &Cache {
        match i.checked_sub(KMALLOC_CLASSES) {
            None => &self.kmalloc[i],
            Some(j) => &self.others[j],
        }
    }
}

impl IndexMut<usize> for CacheTable {
    fn index_mut(&mut self, i: usize) -> &mut Cache {
        match i.checked_sub(KMALLOC_CLASSES) {
            None => &mut self.kmalloc[i],
            Some(j) => &mut self.others[j],
        }
    }
}
