//! Checking mode: red zones, poisoning and the `validate` walk (SLUB debug's `slub_debug=ZP`).
//!
//! With [`CacheFlags::RED_ZONE`](super::CacheFlags::RED_ZONE) each object is
//! surrounded by red zones (at least [`REDZONE`](super::cache::REDZONE)
//! bytes each side) holding [`RED_INACTIVE`] while the object is free and
//! [`RED_ACTIVE`] while it is live; for kmalloc caches the bytes between the
//! requested size and the class size are red zone too (SLUB's kmalloc red
//! zone), so an overflow by one byte is caught. With
//! [`CacheFlags::POISON`](super::CacheFlags::POISON) a free object holds
//! [`POISON_FREE`] with [`POISON_END`] in its last byte, and a newly
//! allocated one [`POISON_INUSE`]; caches with a constructor are not
//! poisoned (their objects keep constructed state while free, as in SLUB).
//!
//! Checks run on free (red zones), on allocation (red zones and poison of the
//! object being handed out) and over everything in `validate`. An object
//! found corrupted is quarantined: it is never handed out again, and its
//! slab's pages go back only when the rest of the slab is free. Double frees
//! are caught in every mode (by the object state bytes), not only here.
//! Large kmalloc allocations (whole pages) have neither red zones nor poison.

use alloc::vec::Vec;

use super::cache::{Cache, Entry, FREE, LIVE, QUARANTINED, Role, SlabList};
use super::pagemap::PageMap;
use super::{
    Corruption, CorruptionKind, POISON_END, POISON_FREE, POISON_INUSE, RED_ACTIVE, RED_INACTIVE,
    SlabError,
};
use crate::addr::PAGE_SIZE;
use crate::memory::MemoryAccess;
use crate::pages::PageSource;

/// The first byte of `[start, start + len)` that differs from `expected`.
fn mismatch(
    mem: &dyn MemoryAccess,
    start: u64,
    len: u64,
    expected: u8,
) -> Result<Option<(u64, u8)>, SlabError> {
    let mut buf = [0u8; 256];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        mem.read(start + done, &mut buf[..n])?;
        if let Some(i) = buf[..n].iter().position(|&b| b != expected) {
            return Ok(Some((start + done + i as u64, buf[i])));
        }
        done += n as u64;
    }
    Ok(None)
}

/// Checks that `[start, start + len)` holds `expected`, reporting `kind` otherwise.
fn expect(
    mem: &dyn MemoryAccess,
    object: u64,
    kind: CorruptionKind,
    start: u64,
    len: u64,
    expected: u8,
) -> Result<(), SlabError> {
    match mismatch(mem, start, len, expected)? {
        None => Ok(()),
        Some((addr, found)) => Err(SlabError::Corrupted(Corruption {
            kind,
            object,
            addr,
            expected,
            found,
        })),
    }
}

/// The red zones of the object at `obj`: (left start, left len, right start, right len).
fn zones(cache: &Cache, obj: u64) -> (u64, u64, u64, u64) {
    let g = &cache.geo;
    let right = obj + g.object_size;
    (
        obj - g.left,
        g.left,
        right,
        g.stride - g.left - g.object_size,
    )
}

/// Writes the free state of an object: inactive red zones and free poison.
pub(super) fn mark_free(
    cache: &Cache,
    mem: &mut dyn MemoryAccess,
    obj: u64,
) -> Result<(), SlabError> {
    if cache.red_zone() {
        let (l, ll, r, rl) = zones(cache, obj);
        mem.fill(l, ll, RED_INACTIVE)?;
        mem.fill(r, rl, RED_INACTIVE)?;
    }
    if cache.poison {
        let size = cache.geo.object_size;
        mem.fill(obj, size - 1, POISON_FREE)?;
        mem.fill(obj + size - 1, 1, POISON_END)?;
    }
    Ok(())
}

/// Checks a free object: inactive red zones and intact poison.
pub(super) fn verify_free(
    cache: &Cache,
    mem: &dyn MemoryAccess,
    obj: u64,
) -> Result<(), SlabError> {
    if cache.red_zone() {
        let (l, ll, r, rl) = zones(cache, obj);
        expect(mem, obj, CorruptionKind::LeftRedZone, l, ll, RED_INACTIVE)?;
        expect(mem, obj, CorruptionKind::RightRedZone, r, rl, RED_INACTIVE)?;
    }
    if cache.poison {
        let size = cache.geo.object_size;
        let kind = CorruptionKind::UseAfterFree;
        expect(mem, obj, kind, obj, size - 1, POISON_FREE)?;
        expect(mem, obj, kind, obj + size - 1, 1, POISON_END)?;
    }
    Ok(())
}

/// Checks a live object's red zones; `orig` is its requested size (kmalloc
/// red zone) or the object size.
pub(super) fn verify_live(
    cache: &Cache,
    mem: &dyn MemoryAccess,
    obj: u64,
    orig: u64,
) -> Result<(), SlabError> {
    if cache.red_zone() {
        let (l, ll, r, rl) = zones(cache, obj);
        expect(mem, obj, CorruptionKind::LeftRedZone, l, ll, RED_ACTIVE)?;
        let size = cache.geo.object_size;
        let tail = orig.min(size);
        expect(
            mem,
            obj,
            CorruptionKind::RightRedZone,
            obj + tail,
            size - tail,
            RED_ACTIVE,
        )?;
        expect(mem, obj, CorruptionKind::RightRedZone, r, rl, RED_ACTIVE)?;
    }
    Ok(())
}

/// Checks an object leaving the magazine and marks it live for a request of
/// `req` bytes.
pub(super) fn on_alloc(
    cache: &Cache,
    mem: &mut dyn MemoryAccess,
    e: Entry,
    req: u64,
) -> Result<(), SlabError> {
    verify_free(cache, mem, e.addr)?;
    let obj = e.addr;
    let size = cache.geo.object_size;
    let req = if cache.needs_orig() {
        req.min(size)
    } else {
        size
    };
    if cache.red_zone() {
        let (l, ll, r, rl) = zones(cache, obj);
        mem.fill(l, ll, RED_ACTIVE)?;
        mem.fill(r, rl, RED_ACTIVE)?;
        mem.fill(obj + req, size - req, RED_ACTIVE)?;
    }
    if cache.poison {
        mem.fill(obj, req, POISON_INUSE)?;
    }
    Ok(())
}

/// Checks a live object being freed (its red zones) and marks it free.
pub(super) fn on_free(
    cache: &Cache,
    mem: &mut dyn MemoryAccess,
    gid: usize,
    obj: u64,
) -> Result<(), SlabError> {
    verify_live(cache, mem, obj, orig_size(cache, gid))?;
    mark_free(cache, mem, obj)
}

/// The requested size recorded for live object `gid` (the object size when
/// the cache does not track it).
pub(super) fn orig_size(cache: &Cache, gid: usize) -> u64 {
    if cache.needs_orig() {
        cache
            .orig
            .get(gid)
            .map_or(cache.geo.object_size, |&o| o as u64)
    } else {
        cache.geo.object_size
    }
}

/// Moves the kmalloc red zone of a live object resized in place from `old`
/// to `new` bytes (after checking it).
pub(super) fn resize_in_place(
    cache: &Cache,
    mem: &mut dyn MemoryAccess,
    obj: u64,
    old: u64,
    new: u64,
) -> Result<(), SlabError> {
    verify_live(cache, mem, obj, old)?;
    if new < old {
        mem.fill(obj + new, old - new, RED_ACTIVE)?;
    } else if new > old {
        let fill = if cache.poison { POISON_INUSE } else { 0 };
        mem.fill(obj + old, new - old, fill)?;
    }
    Ok(())
}

/// A metadata inconsistency found at `object`.
fn metadata(object: u64) -> SlabError {
    SlabError::Corrupted(Corruption {
        kind: CorruptionKind::Metadata,
        object,
        addr: object,
        expected: 0,
        found: 0,
    })
}

/// Checks one cache: metadata (free bitmaps, states, counters, lists, page
/// labels) and, in checking mode, every object's red zones and poison.
pub(super) fn validate_cache<P: PageSource>(
    cache: &Cache,
    index: u16,
    pm: &PageMap<P>,
    mem: &dyn MemoryAccess,
) -> Result<(), SlabError> {
    let g = cache.geo;
    let nobj = g.nobj as usize;
    let (mut live, mut cached, mut quarantined, mut slabs) = (0u64, 0usize, 0u64, 0u64);
    let mut slab_free = 0u64;
    let mut on_lists = 0;
    for (s, meta) in cache.slabs_in_use() {
        slabs += 1;
        let first = s << g.shift;
        for p in 0..1u64 << g.order {
            let want = cache.page_label(index, s, p as usize);
            if pm.lookup(meta.base + p * PAGE_SIZE) != Some(&want) {
                return Err(metadata(meta.base + p * PAGE_SIZE));
            }
        }
        let states = cache
            .state
            .get(first..first + nobj)
            .ok_or(metadata(meta.base))?;
        let nfree = meta.nfree as usize;
        slab_free += nfree as u64;
        // Bits set in the bitmap: exactly nfree, only for FREE objects.
        let mut bits = 0;
        for (i, &st) in states.iter().enumerate() {
            let obj = meta.base + g.left + i as u64 * g.stride;
            let in_slab = cache.free_in_slab(s, i);
            match st {
                LIVE if !in_slab => live += 1,
                QUARANTINED if !in_slab => quarantined += 1,
                FREE if in_slab => bits += 1,
                FREE => cached += 1,
                _ => return Err(metadata(obj)),
            }
            if cache.debug {
                match st {
                    FREE => verify_free(cache, mem, obj)?,
                    LIVE => verify_live(cache, mem, obj, orig_size(cache, first + i))?,
                    _ => {}
                }
            }
        }
        if bits != nfree || cache.bitmap_tail_set(s) {
            return Err(metadata(meta.base));
        }
        let want_list = match nfree {
            0 => SlabList::Full,
            n if n == nobj => SlabList::Empty,
            _ => SlabList::Partial,
        };
        if meta.list != want_list {
            return Err(metadata(meta.base));
        }
        if want_list != SlabList::Full {
            on_lists += 1;
        }
    }
    let cpu = &cache.cpu;
    if !cpu.consistent() || (cache.debug && cpu.count(Role::Alloc) > 0) {
        return Err(metadata(0));
    }
    let magazine: Vec<Entry> = cpu
        .entries(Role::Alloc)
        .iter()
        .chain(cpu.entries(Role::Free))
        .copied()
        .collect();
    for (i, e) in magazine.iter().enumerate() {
        let slab = cache.slab_of(e.gid);
        let in_use = cache
            .slabs
            .get(slab)
            .is_some_and(|m| m.list != SlabList::Unused);
        if !in_use
            || cache.state.get(e.gid) != Some(&FREE)
            || cache.free_in_slab(slab, e.gid & ((1 << g.shift) - 1))
            || cache.addr_of(e.gid) != e.addr
            || magazine[..i].iter().any(|o| o.gid == e.gid)
        {
            return Err(metadata(e.addr));
        }
    }
    let lists = cache.list_members().ok_or(metadata(0))?;
    let empties = lists.iter().filter(|(_, l)| *l == SlabList::Empty).count();
    if live != cache.live()
        || slab_free != cache.slab_free
        || cached != cache.cpu.held()
        || quarantined != cache.quarantined
        || slabs != cache.nr_slabs
        || lists.len() != on_lists
        || empties != cache.nr_empty
    {
        return Err(metadata(0));
    }
    Ok(())
}
