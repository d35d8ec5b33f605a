//! One slab cache: its geometry, its per-CPU magazines and its slabs' out-of-band free bitmaps.
//!
//! Objects are numbered per cache: object `i` of slab number `s` has the
//! *global id* `gid = s << shift | i`, where `1 << shift` is the number of
//! objects per slab rounded up to a power of two. Flat arrays indexed by
//! slab or by gid hold all metadata, grown a whole slab at a time:
//!
//! - `slabs[s]`: base address, free count, list links of slab `s`, and the
//!   bitmap of its objects that are free in the slab (the first 64 objects'
//!   bits inline, any further words in `free_ext`), so that returning an
//!   object to its slab touches one descriptor;
//! - `state[gid]`: whether the object is free (in its slab or a magazine),
//!   live (handed out) or quarantined (found corrupted).
//!
//! The per-CPU part ([`CpuCache`]) is a pair of magazines — small arrays of
//! free objects (address and gid) — in the manner of Bonwick's magazine
//! layer: allocation takes from the *alloc* magazine and free pushes onto
//! the *free* magazine. When the first runs empty, it takes the second's
//! entries if there are any (in O(1): the two are the halves of one array,
//! and exchange them), and is otherwise refilled from the slabs' free
//! bitmaps; when the second runs full, it becomes the first if that is
//! empty, and is otherwise half flushed to the slabs. Keeping the two apart
//! (as mimalloc keeps a page's `free` and `local_free` lists apart) means a
//! free does not feed the very next allocation through the same
//! top-of-stack, which shortens the chain of dependent memory operations on
//! the fast path; freed objects are reused after at most one magazine's
//! worth of allocations, while still cache-warm.
//!
//! Slabs with free objects are on a *partial* or an *empty* list
//! (intrusive, doubly linked through `slabs`); full slabs are on no list.
//! Empty slabs beyond [`KEEP_EMPTY`] go back to the page source as soon as
//! they empty.

use alloc::string::String;
use alloc::vec::Vec;

use super::pagemap::{NO_GID, PageInfo, PageKind, PageMap};
use super::{CacheFlags, Constructor, SlabError};
use crate::addr::{PAGE_SHIFT, PAGE_SIZE};
use crate::memory::MemoryAccess;
use crate::pages::PageSource;

/// Entries in a magazine.
pub(super) const MAG_SIZE: usize = 64;
/// Objects moved per flush (half a magazine).
pub(super) const MAG_BATCH: usize = MAG_SIZE / 2;
/// Objects moved per refill (a whole magazine: the free magazine then takes
/// a whole magazine's worth of frees before the two meet).
pub(super) const MAG_REFILL: usize = MAG_SIZE;
/// Empty slabs a cache keeps before returning further ones to the page source.
pub(super) const KEEP_EMPTY: usize = 2;
/// The largest slab order.
pub(super) const MAX_SLAB_ORDER: u32 = 7;
/// The widest red zone word (bytes), as SLUB's `sizeof(void *)`.
pub(super) const REDZONE: u64 = 8;
/// The smallest object alignment (Linux's `ARCH_SLAB_MINALIGN` on arm64).
pub(super) const MIN_ALIGN: u64 = 8;
/// Fixed-point shift of the reciprocal used for object-index division.
const RECIP_SHIFT: u32 = 48;
/// "No slab" in the list links.
const NIL: u32 = u32::MAX;

/// Object state: free (in its slab or in a magazine).
pub(super) const FREE: u8 = 0;
/// Object state: handed out.
pub(super) const LIVE: u8 = 2;
/// Object state: found corrupted by a check; never handed out again.
pub(super) const QUARANTINED: u8 = 3;

/// A free object in the magazine.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Entry {
    pub addr: u64,
    pub gid: usize,
}

/// One of the two magazines of a [`CpuCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// The magazine allocation takes from.
    Alloc,
    /// The magazine free pushes onto.
    Free,
}

/// Mask of an index into [`CpuCache::entries`].
const ENTRY_MASK: usize = 2 * MAG_SIZE - 1;

/// The per-CPU part of a cache (one CPU here, but kept apart as SLUB's
/// `kmem_cache_cpu` and SLAB's `array_cache` are): two magazines of up to
/// [`MAG_SIZE`] free objects with fixed roles, one that allocation takes
/// from and one that free pushes onto, in the manner of Bonwick's magazine
/// layer.
///
/// The two magazines are the two halves of one array, each a stack: the
/// free magazine `entries[free_base..free_base + free_count]`, the alloc
/// magazine `entries[alloc_lo..alloc_hi]` in the other half (a window, so
/// that the fast path reads both bounds with one paired load). When the
/// alloc magazine is empty, [`CpuCache::reload`] makes the free magazine's
/// half the alloc magazine's in O(1) rather than copying its entries: a
/// copy costs two words per object freed — about four instructions per
/// object on the bare-metal target, whose `memcpy` is a word loop — and,
/// measured on the host, 10% more per allocation and free than the
/// exchange.
#[repr(C)]
pub(super) struct CpuCache {
    /// Next entry allocation takes.
    alloc_lo: usize,
    /// End of the alloc magazine's entries.
    alloc_hi: usize,
    /// Entries in the free magazine.
    free_count: usize,
    /// Start of the free magazine's half: 0 or [`MAG_SIZE`].
    free_base: usize,
    entries: [Entry; 2 * MAG_SIZE],
}

impl CpuCache {
    /// Two empty magazines.
    pub const EMPTY: CpuCache = CpuCache {
        alloc_lo: 0,
        alloc_hi: 0,
        free_count: 0,
        free_base: MAG_SIZE,
        entries: [Entry { addr: 0, gid: 0 }; 2 * MAG_SIZE],
    };

    /// The start of the alloc magazine's half (the half that is not the
    /// free magazine's).
    fn alloc_base(&self) -> usize {
        self.free_base ^ MAG_SIZE
    }

    /// The allocation fast path's pop, without marking the object live
    /// (the caller does): the alloc magazine's top entry.
    #[inline(always)]
    fn pop_alloc(&mut self) -> Option<Entry> {
        let hi = self.alloc_hi;
        if self.alloc_lo == hi {
            return None;
        }
        let top = hi - 1;
        // The mask spares a bounds check: the window lies within the array.
        let e = self.entries[top & ENTRY_MASK];
        self.alloc_hi = top;
        Some(e)
    }

    /// Objects held by magazine `role`.
    pub fn count(&self, role: Role) -> usize {
        match role {
            Role::Alloc => self.alloc_hi.saturating_sub(self.alloc_lo),
            Role::Free => self.free_count,
        }
    }

    /// The entries of magazine `role`.
    pub fn entries(&self, role: Role) -> &[Entry] {
        let range = match role {
            Role::Alloc => self.alloc_lo..self.alloc_hi,
            Role::Free => self.free_base..self.free_base + self.free_count,
        };
        self.entries.get(range).unwrap_or(&[])
    }

    /// The `n` oldest entries of magazine `role` (its bottom), which
    /// [`Self::remove_oldest`] removes.
    pub fn oldest(&self, role: Role, n: usize) -> &[Entry] {
        let held = self.entries(role);
        &held[..n.min(held.len())]
    }

    /// Pushes `e` onto magazine `role`; `false` if it is full.
    pub fn push(&mut self, role: Role, e: Entry) -> bool {
        match role {
            Role::Free => {
                let count = self.free_count;
                if count >= MAG_SIZE {
                    return false;
                }
                self.entries[(self.free_base + count) & ENTRY_MASK] = e;
                self.free_count = count + 1;
            }
            Role::Alloc => {
                let base = self.alloc_base();
                if self.count(Role::Alloc) >= MAG_SIZE {
                    return false;
                }
                if self.alloc_hi >= base + MAG_SIZE {
                    // Move the window to the start of its half.
                    let (lo, hi) = (self.alloc_lo, self.alloc_hi);
                    self.entries.copy_within(lo..hi, base);
                    (self.alloc_lo, self.alloc_hi) = (base, base + hi - lo);
                }
                self.entries[self.alloc_hi & ENTRY_MASK] = e;
                self.alloc_hi += 1;
            }
        }
        true
    }

    /// The free slots after the entries of magazine `role` (for
    /// [`Self::commit`]).
    pub fn spare(&mut self, role: Role) -> &mut [Entry] {
        let (from, to) = match role {
            Role::Alloc => (self.alloc_hi, self.alloc_base() + MAG_SIZE),
            Role::Free => (self.free_base + self.free_count, self.free_base + MAG_SIZE),
        };
        self.entries.get_mut(from..to).unwrap_or(&mut [])
    }

    /// Adds the first `n` slots of [`Self::spare`] to magazine `role`.
    pub fn commit(&mut self, role: Role, n: usize) {
        let n = n.min(MAG_SIZE - self.count(role));
        match role {
            Role::Alloc => self.alloc_hi += n,
            Role::Free => self.free_count += n,
        }
    }

    /// Pops the top entry of magazine `role`.
    pub fn pop(&mut self, role: Role) -> Option<Entry> {
        match role {
            Role::Alloc => self.pop_alloc(),
            Role::Free => {
                let top = self.free_count.checked_sub(1)?;
                self.free_count = top;
                Some(self.entries[(self.free_base + top) & ENTRY_MASK])
            }
        }
    }

    /// Removes the `n` oldest entries (the bottom) of magazine `role`.
    pub fn remove_oldest(&mut self, role: Role, n: usize) {
        let n = n.min(self.count(role));
        match role {
            Role::Alloc => self.alloc_lo += n,
            Role::Free => {
                let (base, count) = (self.free_base, self.free_count);
                self.entries.copy_within(base + n..base + count, base);
                self.free_count = count - n;
            }
        }
    }

    /// Reverses the entries of magazine `role` from position `from` to the top.
    pub fn reverse_from(&mut self, role: Role, from: usize) {
        let held = match role {
            Role::Alloc => self.alloc_lo..self.alloc_hi,
            Role::Free => self.free_base..self.free_base + self.free_count,
        };
        if let Some(part) = self.entries.get_mut(held.start + from..held.end) {
            part.reverse();
        }
    }

    /// Empties the alloc magazine, its window at the start of its half.
    pub fn reset_alloc(&mut self) {
        let base = self.alloc_base();
        (self.alloc_lo, self.alloc_hi) = (base, base);
    }

    /// Makes the free magazine the (empty) alloc magazine, by exchanging
    /// the halves.
    pub fn reload(&mut self) {
        if self.alloc_lo == self.alloc_hi {
            let base = self.free_base;
            (self.alloc_lo, self.alloc_hi) = (base, base + self.free_count);
            self.free_base = base ^ MAG_SIZE;
            self.free_count = 0;
        }
    }

    /// Whether the magazines are consistent: each within its half.
    pub fn consistent(&self) -> bool {
        let base = self.alloc_base();
        (self.free_base == 0 || self.free_base == MAG_SIZE)
            && self.free_count <= MAG_SIZE
            && base <= self.alloc_lo
            && self.alloc_lo <= self.alloc_hi
            && self.alloc_hi <= base + MAG_SIZE
    }

    /// Free objects held in both magazines.
    pub fn held(&self) -> usize {
        self.count(Role::Alloc) + self.count(Role::Free)
    }
}

/// Which list a slab is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SlabList {
    /// The slot holds no slab.
    Unused,
    /// No free objects: on no list.
    Full,
    /// Some objects free.
    Partial,
    /// All objects free.
    Empty,
}

/// Out-of-band descriptor of one slab.
#[derive(Clone, Copy, Debug)]
pub(super) struct SlabMeta {
    pub base: u64,
    /// Bits of objects 0..64 free in the slab (further words in `free_ext`).
    free0: u64,
    pub nfree: u32,
    prev: u32,
    next: u32,
    pub list: SlabList,
}

/// Object placement within slabs, fixed at cache creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Geometry {
    /// The object's usable size.
    pub object_size: u64,
    /// The object alignment.
    pub align: u64,
    /// Distance between consecutive objects (object plus red zones and padding).
    pub stride: u64,
    /// Offset of the object within its stride (the left red zone).
    pub left: u64,
    /// Slab order.
    pub order: u32,
    /// Bytes per slab.
    pub slab_bytes: u64,
    /// Objects per slab.
    pub nobj: u64,
    /// log2 of `nobj` rounded up to a power of two.
    pub shift: u32,
    /// log2 of `stride` if it is a power of two, else `u32::MAX`.
    pub stride_shift: u32,
    /// `ceil(2^48 / stride)`: `(rel * recip) >> 48 == rel / stride` for every
    /// `rel < slab_bytes` (checked at creation).
    pub recip: u64,
}

impl Geometry {
    /// Lays out objects of `size` bytes aligned to `align`, with red zones of
    /// at least [`REDZONE`] bytes on both sides when `red_zone`. `None` for a
    /// size or alignment out of range.
    pub fn new(size: u64, align: u64, red_zone: bool) -> Option<Geometry> {
        if size == 0 || !align.is_power_of_two() || align > PAGE_SIZE {
            return None;
        }
        let align = align.max(MIN_ALIGN);
        let (left, stride) = if red_zone {
            let left = align.max(REDZONE);
            (
                left,
                align_up(left.checked_add(size)?.checked_add(REDZONE)?, align)?,
            )
        } else {
            (0, align_up(size, align)?)
        };
        let (order, nobj) = choose_order(stride)?;
        let slab_bytes = PAGE_SIZE << order;
        let recip = (1u64 << RECIP_SHIFT).div_ceil(stride);
        // Exactness of the reciprocal division for every offset below
        // slab_bytes needs slab_bytes * (recip * stride - 2^48) < 2^48, which
        // slab_bytes * stride < 2^48 implies; the product must not overflow.
        if slab_bytes.checked_mul(stride)? >= 1 << RECIP_SHIFT {
            return None;
        }
        slab_bytes.checked_mul(recip)?;
        Some(Geometry {
            object_size: size,
            align,
            stride,
            left,
            order,
            slab_bytes,
            nobj,
            shift: nobj.next_power_of_two().trailing_zeros(),
            stride_shift: if stride.is_power_of_two() {
                stride.trailing_zeros()
            } else {
                u32::MAX
            },
            recip,
        })
    }
}

/// Rounds `v` up to a multiple of the power of two `a`.
fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? & !(a - 1))
}

/// Picks the slab order for objects `stride` bytes apart, as SLUB's
/// `calculate_order`: the smallest order up to 3 holding at least
/// `min_objects` with at most 1/16 (then 1/8) wasted, lowering
/// `min_objects` from 8 to 1; failing that, the smallest order up to
/// [`MAX_SLAB_ORDER`] that wastes at most a quarter; failing that, the order
/// that wastes least.
fn choose_order(stride: u64) -> Option<(u32, u64)> {
    let fits = |order: u32, min_objects: u64, frac: u64| {
        let bytes = PAGE_SIZE << order;
        let nobj = (bytes / stride).min(u16::MAX as u64);
        (nobj >= min_objects.max(1) && (bytes - nobj * stride) * frac <= bytes)
            .then_some((order, nobj))
    };
    for min_objects in [8, 4, 2, 1] {
        for frac in [16, 8] {
            if let Some(found) = (0..=3).find_map(|o| fits(o, min_objects, frac)) {
                return Some(found);
            }
        }
    }
    if let Some(found) = (0..=MAX_SLAB_ORDER).find_map(|o| fits(o, 1, 4)) {
        return Some(found);
    }
    (0..=MAX_SLAB_ORDER)
        .filter_map(|o| fits(o, 1, 1))
        .min_by_key(|&(o, nobj)| ((PAGE_SIZE << o) - nobj * stride) * 1024 / (PAGE_SIZE << o))
}

/// A slab cache (Linux's `struct kmem_cache`), about 2.3 KiB, mostly its
/// magazines. Each lives in its own box (see [`super::table::CacheTable`]),
/// so that the fast paths reach every field at a short offset from one
/// pointer.
pub(super) struct Cache {
    pub name: String,
    pub generation: u32,
    pub alive: bool,
    /// A kmalloc size class (never destroyed; tracks requested sizes when checking).
    pub kmalloc: bool,
    pub flags: CacheFlags,
    /// Whether alloc and free take the checking (slow) path.
    pub debug: bool,
    /// Whether free objects are poisoned (POISON and no constructor).
    pub poison: bool,
    pub ctor: Option<Constructor>,
    pub geo: Geometry,
    pub cpu: CpuCache,
    pub slabs: Vec<SlabMeta>,
    spare: Vec<u32>,
    pub state: Vec<u8>,
    /// Free-in-slab bitmap words beyond the first, `words - 1` per slab.
    free_ext: Vec<u64>,
    /// Bitmap words per slab (`ceil(nobj / 64)`).
    words: usize,
    /// Checking kmalloc caches: the requested size of each live object.
    pub orig: Vec<u32>,
    partial: u32,
    empty: u32,
    /// Slabs in use.
    pub nr_slabs: u64,
    /// Slabs on the empty list.
    pub nr_empty: usize,
    /// Free objects in slabs (the sum of their `nfree`).
    pub slab_free: u64,
    /// Quarantined objects.
    pub quarantined: u64,
}

impl Cache {
    pub fn new(
        name: String,
        geo: Geometry,
        flags: CacheFlags,
        ctor: Option<Constructor>,
        kmalloc: bool,
    ) -> Cache {
        let debug = flags.intersects(CacheFlags::RED_ZONE | CacheFlags::POISON);
        Cache {
            name,
            generation: 0,
            alive: true,
            kmalloc,
            flags,
            debug,
            poison: flags.contains(CacheFlags::POISON) && ctor.is_none(),
            ctor,
            geo,
            cpu: CpuCache::EMPTY,
            slabs: Vec::new(),
            spare: Vec::new(),
            state: Vec::new(),
            free_ext: Vec::new(),
            words: geo.nobj.div_ceil(64) as usize,
            orig: Vec::new(),
            partial: NIL,
            empty: NIL,
            nr_slabs: 0,
            nr_empty: 0,
            slab_free: 0,
            quarantined: 0,
        }
    }

    /// The descriptor of page `page` of slab `slab` of this cache, whose index is `cache`.
    pub fn page_label(&self, cache: u16, slab: usize, page: usize) -> PageInfo {
        let g = &self.geo;
        let gid_base = (slab << g.shift) as u32;
        let (fast_shift, page_gid) = match self.fast_shift() {
            Some(s) => (s, gid_base + ((page as u32) << (PAGE_SHIFT - s as u32))),
            None => (0, NO_GID),
        };
        PageInfo {
            fast_shift,
            kind: if self.debug {
                PageKind::SlabChecked
            } else {
                PageKind::Slab
            },
            cache,
            page_gid,
            gid_base,
            sub: page as u8,
        }
    }

    /// log2 of the stride if the free fast path serves this cache: not
    /// checking, and objects a power of two of at most a page apart that
    /// tile each slab exactly from its base (see [`PageInfo::fast_object`]).
    pub fn fast_shift(&self) -> Option<u8> {
        let g = &self.geo;
        let fits = !self.debug
            && g.left == 0
            && g.stride.is_power_of_two()
            && g.stride <= PAGE_SIZE
            && g.nobj * g.stride == g.slab_bytes;
        fits.then(|| g.stride.trailing_zeros() as u8)
    }

    /// The allocation fast path: pops the alloc magazine's top object and
    /// marks it live. `None` when the magazine is empty (always, for a
    /// checking cache).
    #[inline(always)]
    pub fn pop_alloc(&mut self) -> Option<u64> {
        let e = self.cpu.pop_alloc()?;
        match self.state.get_mut(e.gid) {
            Some(state) => {
                *state = LIVE;
                Some(e.addr)
            }
            None => {
                // Never: magazine entries are objects of this cache. Put
                // it back rather than lose it.
                self.cpu.alloc_hi += 1;
                None
            }
        }
    }

    /// The free fast path: if `gid` is an object of this cache (at `addr`),
    /// live, and the free magazine has room, marks it free and pushes it.
    /// `false` changes nothing: the slow path then decides (an error, or a
    /// full magazine).
    #[inline(always)]
    pub fn push_free(&mut self, addr: u64, gid: u64) -> bool {
        let Ok(gid) = usize::try_from(gid) else {
            return false;
        };
        let Some(state) = self.state.get_mut(gid) else {
            return false;
        };
        let (count, base) = (self.cpu.free_count, self.cpu.free_base);
        if count >= MAG_SIZE || *state != LIVE {
            return false;
        }
        *state = FREE;
        self.cpu.entries[(base + count) & ENTRY_MASK] = Entry { addr, gid };
        self.cpu.free_count = count + 1;
        true
    }

    /// The magazine that refills go to: the alloc magazine, except for
    /// checking caches, which keep their alloc magazine empty so that the
    /// fast path always hands them to the slow path.
    pub fn refill_target(&self) -> Role {
        if self.debug { Role::Free } else { Role::Alloc }
    }

    /// Whether red zones surround the objects.
    pub fn red_zone(&self) -> bool {
        self.flags.contains(CacheFlags::RED_ZONE)
    }

    /// The gid of the object starting at `addr` on a page labelled `info`
    /// (which must be a slab page of this cache), or `None` if `addr` is not
    /// the start of an object.
    pub fn object_index(&self, info: &PageInfo, addr: u64) -> Option<usize> {
        let slab_base = (addr & !(PAGE_SIZE - 1)).wrapping_sub((info.sub as u64) << PAGE_SHIFT);
        let rel = addr.wrapping_sub(slab_base).wrapping_sub(self.geo.left);
        let idx = if self.geo.stride_shift != u32::MAX {
            // A wrapped `rel` (below the first object) gives a huge index.
            if rel & (self.geo.stride - 1) != 0 {
                return None;
            }
            rel >> self.geo.stride_shift
        } else {
            if rel >= self.geo.slab_bytes {
                return None;
            }
            let idx = (rel * self.geo.recip) >> RECIP_SHIFT;
            if idx * self.geo.stride != rel {
                return None;
            }
            idx
        };
        if idx >= self.geo.nobj {
            return None;
        }
        Some(info.gid_base as usize + idx as usize)
    }

    /// The address of object `gid`.
    pub fn addr_of(&self, gid: usize) -> u64 {
        let slab = gid >> self.geo.shift;
        let idx = (gid & ((1 << self.geo.shift) - 1)) as u64;
        self.slabs[slab].base + self.geo.left + idx * self.geo.stride
    }

    /// The slab number of object `gid`.
    pub fn slab_of(&self, gid: usize) -> usize {
        gid >> self.geo.shift
    }

    /// Live objects: those in slabs, less the free, cached and quarantined
    /// ones (derived, so that the fast paths keep no counter).
    pub fn live(&self) -> u64 {
        self.total_objects() - self.slab_free - self.cpu.held() as u64 - self.quarantined
    }

    /// Number of objects in slabs (used, cached or free).
    pub fn total_objects(&self) -> u64 {
        self.nr_slabs * self.geo.nobj
    }

    /// Pages held in slabs.
    pub fn pages(&self) -> u64 {
        self.nr_slabs << self.geo.order
    }

    /// Word `w` of slab `s`'s free bitmap.
    #[inline]
    fn free_word(&mut self, s: usize, w: usize) -> &mut u64 {
        if w == 0 {
            &mut self.slabs[s].free0
        } else {
            &mut self.free_ext[s * (self.words - 1) + w - 1]
        }
    }

    /// Whether object `idx` of slab `s` is free in the slab.
    pub fn free_in_slab(&self, s: usize, idx: usize) -> bool {
        let (w, bit) = (idx / 64, idx % 64);
        let word = if w == 0 {
            self.slabs[s].free0
        } else {
            self.free_ext[s * (self.words - 1) + w - 1]
        };
        word & (1 << bit) != 0
    }

    /// Whether slab `s`'s bitmap has bits set beyond its last object.
    pub fn bitmap_tail_set(&self, s: usize) -> bool {
        let nobj = self.geo.nobj as usize;
        (nobj..self.words * 64).any(|idx| self.free_in_slab(s, idx))
    }

    /// Moves up to `want` objects from partial, then empty, slabs into the
    /// alloc magazine (the free magazine of a checking cache), lowest
    /// address on top. Returns how many moved.
    pub fn refill_from_slabs(&mut self, want: usize) -> usize {
        let role = self.refill_target();
        if role == Role::Alloc && self.cpu.count(role) == 0 {
            self.cpu.reset_alloc();
        }
        let start = self.cpu.count(role);
        let mut moved = 0;
        loop {
            let s = if self.partial != NIL {
                self.partial
            } else if self.empty != NIL {
                self.empty
            } else {
                break;
            } as usize;
            // Entries go straight into the magazine's free slots, in
            // address order; the slab's bitmap words are read and written
            // once each.
            let spare = self.cpu.spare(role);
            let want = want.min(spare.len());
            if moved >= want {
                break;
            }
            let first = s << self.geo.shift;
            let base = self.slabs[s].base + self.geo.left;
            let stride = self.geo.stride;
            let before = moved;
            for w in 0..self.words {
                let word = if w == 0 {
                    &mut self.slabs[s].free0
                } else {
                    &mut self.free_ext[s * (self.words - 1) + w - 1]
                };
                let mut bits = *word;
                while bits != 0 && moved < want {
                    let idx = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    spare[moved] = Entry {
                        addr: base + idx as u64 * stride,
                        gid: first + idx,
                    };
                    moved += 1;
                }
                *word = bits;
                if moved == want {
                    break;
                }
            }
            let taken = (moved - before) as u32;
            self.slabs[s].nfree -= taken;
            self.slab_free -= taken as u64;
            self.relist(s);
        }
        self.cpu.commit(role, moved);
        // The lowest address on top, to leave first.
        self.cpu.reverse_from(role, start);
        moved
    }

    /// Returns free object `gid` to its slab's bitmap. Returns the slab
    /// number if the slab became empty and should be released (more than
    /// [`KEEP_EMPTY`] empty slabs).
    #[inline]
    pub fn return_to_slab(&mut self, gid: usize) -> Option<usize> {
        let s = gid >> self.geo.shift;
        let idx = gid & ((1 << self.geo.shift) - 1);
        *self.free_word(s, idx / 64) |= 1 << (idx % 64);
        let meta = &mut self.slabs[s];
        meta.nfree += 1;
        let nfree = meta.nfree as u64;
        self.slab_free += 1;
        // Only the first free object and the last one change the list.
        if nfree == 1 || nfree == self.geo.nobj {
            self.relist(s);
        }
        (nfree == self.geo.nobj && self.nr_empty > KEEP_EMPTY).then_some(s)
    }

    /// Returns the `n` oldest entries of magazine `role` to their slabs,
    /// releasing surplus empty slabs to the page source.
    pub fn flush<P: PageSource>(&mut self, pm: &mut PageMap<P>, n: usize, role: Role) {
        let mut gids = [0usize; MAG_SIZE];
        let oldest = self.cpu.oldest(role, n);
        let n = oldest.len().min(MAG_SIZE);
        for (g, e) in gids.iter_mut().zip(oldest) {
            *g = e.gid;
        }
        self.cpu.remove_oldest(role, n);
        for &gid in &gids[..n] {
            if let Some(s) = self.return_to_slab(gid) {
                self.release_slab(pm, s);
            }
        }
    }

    /// Moves slab `s` to the list its free count calls for.
    #[inline(always)]
    fn relist(&mut self, s: usize) {
        let nfree = self.slabs[s].nfree as u64;
        let want = if nfree == 0 {
            SlabList::Full
        } else if nfree == self.geo.nobj {
            SlabList::Empty
        } else {
            SlabList::Partial
        };
        let have = self.slabs[s].list;
        if have != want {
            self.move_to(s, want);
        }
    }

    /// Moves slab `s` to `list`.
    #[inline(never)]
    fn move_to(&mut self, s: usize, list: SlabList) {
        self.unlink(s);
        self.push(s, list);
    }

    /// Takes slab `s` off its list (it becomes [`SlabList::Full`]).
    fn unlink(&mut self, s: usize) {
        let SlabMeta {
            prev, next, list, ..
        } = self.slabs[s];
        if matches!(list, SlabList::Partial | SlabList::Empty) {
            if prev != NIL {
                self.slabs[prev as usize].next = next;
            } else if list == SlabList::Partial {
                self.partial = next;
            } else {
                self.empty = next;
            }
            if next != NIL {
                self.slabs[next as usize].prev = prev;
            }
            if list == SlabList::Empty {
                self.nr_empty -= 1;
            }
        }
        let meta = &mut self.slabs[s];
        meta.prev = NIL;
        meta.next = NIL;
        meta.list = SlabList::Full;
    }

    /// Puts slab `s` (on no list) at the head of `list`.
    fn push(&mut self, s: usize, list: SlabList) {
        let head = match list {
            SlabList::Partial => &mut self.partial,
            SlabList::Empty => &mut self.empty,
            SlabList::Full | SlabList::Unused => {
                self.slabs[s].list = list;
                return;
            }
        };
        let old = *head;
        *head = s as u32;
        if old != NIL {
            self.slabs[old as usize].prev = s as u32;
        }
        let meta = &mut self.slabs[s];
        meta.prev = NIL;
        meta.next = old;
        meta.list = list;
        if list == SlabList::Empty {
            self.nr_empty += 1;
        }
    }

    /// Allocates a new slab of all-free objects from the page source,
    /// preparing its objects (red zones, poison, constructor) through `mem`.
    pub fn grow<P: PageSource>(
        &mut self,
        pm: &mut PageMap<P>,
        index: u16,
        mem: &mut dyn MemoryAccess,
    ) -> Result<(), SlabError> {
        let per_slab = 1usize << self.geo.shift;
        let s = match self.spare.pop() {
            Some(s) => s as usize,
            None => {
                let s = self.slabs.len();
                // Object ids must fit the page descriptors' u32.
                if s >= NIL as usize || (s + 1) * per_slab > u32::MAX as usize {
                    return Err(SlabError::OutOfMemory);
                }
                // try_reserve grows geometrically: amortized O(1) per slab.
                let ext = self.words - 1;
                let grown = self.slabs.try_reserve(1).is_ok()
                    && self.state.try_reserve(per_slab).is_ok()
                    && self.free_ext.try_reserve(ext).is_ok()
                    && (!self.needs_orig() || self.orig.try_reserve(per_slab).is_ok());
                if !grown {
                    return Err(SlabError::OutOfMemory);
                }
                self.slabs.push(SlabMeta {
                    base: 0,
                    free0: 0,
                    nfree: 0,
                    list: SlabList::Unused,
                    prev: NIL,
                    next: NIL,
                });
                // Unused slots keep every state FREE (release resets them).
                self.state.resize((s + 1) * per_slab, FREE);
                self.free_ext.resize((s + 1) * ext, 0);
                if self.needs_orig() {
                    self.orig.resize((s + 1) * per_slab, 0);
                }
                s
            }
        };
        let order = self.geo.order;
        let base = match pm.obtain(order, |i| self.page_label(index, s, i)) {
            Ok(base) => base,
            Err(e) => {
                self.spare.push(s as u32);
                return Err(e);
            }
        };
        let nobj = self.geo.nobj as usize;
        for w in 0..self.words {
            let bits = nobj - w * 64;
            *self.free_word(s, w) = if bits >= 64 { !0 } else { (1 << bits) - 1 };
        }
        let meta = &mut self.slabs[s];
        meta.base = base;
        meta.nfree = nobj as u32;
        meta.list = SlabList::Full;
        self.nr_slabs += 1;
        self.slab_free += nobj as u64;
        if let Err(e) = self.prepare_objects(mem, base) {
            self.slabs[s].list = SlabList::Unused;
            self.slabs[s].nfree = 0;
            self.slab_free -= nobj as u64;
            self.nr_slabs -= 1;
            self.spare.push(s as u32);
            pm.release(base, order);
            return Err(e);
        }
        self.push(s, SlabList::Empty);
        Ok(())
    }

    /// Whether live objects' requested sizes are tracked.
    pub fn needs_orig(&self) -> bool {
        self.kmalloc && self.red_zone()
    }

    /// Writes the initial state of a new slab's objects: inactive red zones,
    /// free poison, then the constructor.
    fn prepare_objects(&self, mem: &mut dyn MemoryAccess, base: u64) -> Result<(), SlabError> {
        if !self.debug && self.ctor.is_none() {
            return Ok(());
        }
        for i in 0..self.geo.nobj {
            let obj = base + i * self.geo.stride + self.geo.left;
            if self.debug {
                super::check::mark_free(self, mem, obj)?;
            }
            if let Some(ctor) = self.ctor {
                ctor(mem, obj)?;
            }
        }
        Ok(())
    }

    /// Returns slab `s` (which must be on the empty list or hold only
    /// quarantined objects) to the page source.
    pub fn release_slab<P: PageSource>(&mut self, pm: &mut PageMap<P>, s: usize) {
        self.unlink(s);
        let first = s << self.geo.shift;
        let nobj = self.geo.nobj as usize;
        let quarantined = self.state[first..first + nobj]
            .iter()
            .filter(|&&st| st == QUARANTINED)
            .count();
        self.quarantined -= quarantined as u64;
        self.state[first..first + nobj].fill(FREE);
        let meta = &mut self.slabs[s];
        meta.list = SlabList::Unused;
        self.slab_free -= meta.nfree as u64;
        meta.nfree = 0;
        let base = meta.base;
        self.nr_slabs -= 1;
        self.spare.push(s as u32);
        pm.release(base, self.geo.order);
    }

    /// Returns every magazine entry to its slab.
    pub fn drain<P: PageSource>(&mut self, pm: &mut PageMap<P>) {
        self.flush(pm, MAG_SIZE, Role::Alloc);
        self.flush(pm, MAG_SIZE, Role::Free);
    }

    /// Drains the magazine and releases every empty slab. Returns the pages freed.
    pub fn shrink<P: PageSource>(&mut self, pm: &mut PageMap<P>) -> u64 {
        let before = self.pages();
        self.drain(pm);
        while self.empty != NIL {
            let s = self.empty as usize;
            self.release_slab(pm, s);
        }
        before - self.pages()
    }

    /// Releases every slab (the cache must hold no live objects) and drops
    /// the metadata arrays.
    pub fn release_all<P: PageSource>(&mut self, pm: &mut PageMap<P>) {
        self.drain(pm);
        for s in 0..self.slabs.len() {
            if self.slabs[s].list != SlabList::Unused {
                self.release_slab(pm, s);
            }
        }
        self.slabs = Vec::new();
        self.spare = Vec::new();
        self.state = Vec::new();
        self.free_ext = Vec::new();
        self.orig = Vec::new();
    }

    /// The slabs in use, as (slab number, descriptor).
    pub fn slabs_in_use(&self) -> impl Iterator<Item = (usize, &SlabMeta)> {
        self.slabs
            .iter()
            .enumerate()
            .filter(|(_, m)| m.list != SlabList::Unused)
    }

    /// Walks the partial and empty lists, checking their links; returns the
    /// slab numbers on them, or `None` if the links are inconsistent.
    pub fn list_members(&self) -> Option<Vec<(usize, SlabList)>> {
        let mut out = Vec::new();
        for (head, list) in [
            (self.partial, SlabList::Partial),
            (self.empty, SlabList::Empty),
        ] {
            let mut prev = NIL;
            let mut s = head;
            while s != NIL {
                let meta = self.slabs.get(s as usize)?;
                if meta.list != list || meta.prev != prev || out.len() > self.slabs.len() {
                    return None;
                }
                out.push((s as usize, list));
                prev = s;
                s = meta.next;
            }
        }
        Some(out)
    }
}
