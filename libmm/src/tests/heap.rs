//! The client-side slab, its page source and the mempools against the mock server.

use alloc::vec::Vec;

use mm_core::addr::PAGE_SIZE;
use mm_core::memory::MemoryAccess;
use mm_core::mempool::MempoolError;
use mm_core::slab::{CacheFlags, SlabError};

use crate::arena::BLOCK_BYTES;
use crate::heap::{Heap, HeapConfig, HeapError};
use crate::mempool;
use crate::mock::MockMm;
use crate::protocol::{
    Align, Gfp, LABEL_OK, MAX_WORDS, MapFlags, MmError, Prot, Reply, Request, encode,
};
use crate::transport::{CallError, Error};

const MIB: u64 = 1 << 20;

/// A small heap: 4 MiB chunks growing to 16 MiB, 256 KiB retained.
fn small() -> HeapConfig {
    HeapConfig {
        first_chunk: 4 * MIB,
        max_chunk: 16 * MIB,
        retain: 256 << 10,
        checking: false,
    }
}

fn heap(config: HeapConfig) -> (MockMm, Heap<MockMm, MockMm>) {
    let s = MockMm::new();
    let h = Heap::new(s.mm(), s.clone(), config);
    (s, h)
}

#[test]
fn the_first_allocation_maps_an_aligned_chunk_and_then_no_ipc() {
    let (s, mut h) = heap(HeapConfig::default());
    assert_eq!(
        s.requests(),
        0,
        "nothing mapped before the first allocation"
    );
    // Something mapped first, so that the server's next placement is not
    // 4 MiB aligned.
    let other = s
        .mm()
        .mmap(0, 64 << 10, Prot::READ, MapFlags::default())
        .unwrap();
    let a = h.kmalloc(64).unwrap();
    let chunks: Vec<(u64, u64)> = h.chunks().collect();
    assert_eq!(chunks.len(), 1);
    let (base, len) = chunks[0];
    assert_eq!(len, HeapConfig::DEFAULT.first_chunk);
    assert_eq!(base % BLOCK_BYTES, 0);
    assert!(a >= base && a < base + len);
    // The mock places at 64 KiB: one Map asked for the 4 MiB alignment.
    let log = s.server().log[1..].to_vec();
    assert_eq!(
        log,
        [Request::Map {
            addr: 0,
            len,
            prot: Prot::READ_WRITE,
            flags: MapFlags::default(),
            align: Align(22),
        }]
    );
    // The mapped region is exactly the chunk.
    let (start, region) = s.server().region_at(base).unwrap();
    assert_eq!((start, region.len), (base, len));

    // Steady state: no IPC at all.
    let before = s.requests();
    for i in 0..10_000 {
        let b = h.kmalloc(1 + i % 3000).unwrap();
        h.kfree(b).unwrap();
    }
    assert_eq!(s.requests(), before, "no IPC on the slab's paths");
    // A working set of 15 MB allocated and freed: the only requests are
    // the trims that give the freed pages back (a Discard of each free
    // block), one per block.
    let mut live = Vec::new();
    for i in 0..10_000 {
        live.push(h.kmalloc(1 + i % 3000).unwrap());
    }
    assert_eq!(
        s.requests(),
        before,
        "allocating touches fresh pages: no IPC"
    );
    for a in live.drain(..) {
        h.kfree(a).unwrap();
    }
    let trims = s.server().requests_since(before).to_vec();
    assert!(!trims.is_empty());
    assert!(trims.iter().all(|r| matches!(r, Request::Discard { .. })));
    // The chunk is still one region: discarding never splits it.
    let (start, region) = s.server().region_at(base).unwrap();
    assert_eq!((start, region.len), (base, len));
    assert!(h.stats().arena.dirty_free_pages * PAGE_SIZE <= HeapConfig::DEFAULT.retain);
    h.kfree(a).unwrap();
    h.validate().unwrap();
    drop(other);
}

#[test]
fn a_misaligned_chunk_from_the_server_is_given_back() {
    let (s, mut h) = heap(small());
    // A server that ignores the alignment: its reply is refused.
    let mut words = [0; MAX_WORDS];
    let n = encode(
        &Reply::Mapped {
            addr: 0x10_0001_0000,
            len: 4 * MIB,
        },
        &mut words,
    );
    s.server().reply_raw(LABEL_OK, &words[..n]);
    assert_eq!(
        h.kmalloc(64),
        Err(HeapError::Grow(Error::Call(CallError::BadReply)))
    );
    assert_eq!(
        s.last_request(),
        Some(Request::Unmap {
            addr: 0x10_0001_0000,
            len: 4 * MIB
        })
    );
    // The next chunk is aligned, in one request.
    let before = s.requests();
    let a = h.kmalloc(64).unwrap();
    assert_eq!(s.requests(), before + 1);
    let (base, len) = h.chunks().next().unwrap();
    assert_eq!((base % BLOCK_BYTES, len), (0, 4 * MIB));
    h.kfree(a).unwrap();
    drop(h);
    assert_eq!(s.server().mapped_bytes(), 0, "nothing left behind");
}

#[test]
fn the_heap_grows_by_chunks_and_halves_when_refused() {
    let (s, mut h) = heap(small());
    let big: Vec<u64> = (0..6)
        .map(|_| h.kmalloc(4 * MIB as usize).unwrap())
        .collect();
    // 4 MiB, then 8 MiB: six 4 MiB blocks need three chunks (4 + 8 + 16).
    let lens: Vec<u64> = h.chunks().map(|c| c.1).collect();
    assert_eq!(lens, [4 * MIB, 8 * MIB, 16 * MIB]);
    for w in big.windows(2) {
        assert!(w[0].abs_diff(w[1]) >= 4 * MIB);
    }
    h.validate().unwrap();
    // The server refuses 16 MiB: the heap asks for 8, then 4.
    let mapped = s.server().mapped_bytes();
    s.server().map_limit = Some(mapped + 4 * MIB);
    let mut more = Vec::new();
    for _ in 0..2 {
        more.push(h.kmalloc(4 * MIB as usize).unwrap());
    }
    assert_eq!(h.chunks().last().map(|c| c.1), Some(4 * MIB));
    // Now nothing more: the error says why.
    assert_eq!(
        h.kmalloc(4 * MIB as usize),
        Err(HeapError::Grow(Error::Mm(MmError::NoMemory)))
    );
    assert_eq!(h.stats().grow_failures, 1);
    // A failed grow does not break anything already allocated.
    for a in big.into_iter().chain(more) {
        h.kfree(a).unwrap();
    }
    h.validate().unwrap();
}

#[test]
fn slab_errors_pass_through_unchanged() {
    let (_s, mut h) = heap(small());
    let a = h.kmalloc(100).unwrap();
    h.kfree(a).unwrap();
    assert_eq!(
        h.kfree(a),
        Err(HeapError::Slab(SlabError::DoubleFree { addr: a }))
    );
    assert_eq!(
        h.kfree(0x1234),
        Err(HeapError::Slab(SlabError::InvalidAddress { addr: 0x1234 }))
    );
    assert_eq!(
        h.kmalloc(usize::MAX),
        Err(HeapError::Slab(SlabError::TooLarge { size: usize::MAX }))
    );
    assert_eq!(
        h.kmalloc_array(usize::MAX, 2),
        Err(HeapError::Slab(SlabError::Overflow))
    );
    assert_eq!(
        h.kcalloc(usize::MAX, 2),
        Err(HeapError::Slab(SlabError::Overflow))
    );
    h.kfree(0).unwrap();
    h.validate().unwrap();
}

#[test]
fn zeroing_and_copying_go_through_memory_access() {
    let (s, mut h) = heap(small());
    let mut mem = s.clone();
    // Dirty an object, free it, and get it back zeroed.
    let a = h.kmalloc(200).unwrap();
    mem.fill(a, 200, 0xaa).unwrap();
    h.kfree(a).unwrap();
    let mut seen = Vec::new();
    loop {
        let z = h.kzalloc(200).unwrap();
        seen.push(z);
        if z == a {
            break;
        }
    }
    let mut buf = [0xffu8; 256];
    mem.read(a, &mut buf).unwrap();
    assert!(
        buf.iter().all(|&b| b == 0),
        "kzalloc zeroes the whole ksize"
    );
    for z in seen {
        h.kfree(z).unwrap();
    }
    // krealloc keeps the contents.
    let b = h.kmalloc(10).unwrap();
    mem.write(b, b"abcdefghij").unwrap();
    let c = h.krealloc(b, 5000).unwrap();
    assert_ne!(b, c);
    let mut out = [0u8; 10];
    mem.read(c, &mut out).unwrap();
    assert_eq!(&out, b"abcdefghij");
    // kmemdup, kstrdup, kstrndup.
    let d = h.kmemdup(c, 10).unwrap();
    mem.write(c + 10, b"\0").unwrap();
    let e = h.kstrdup(c).unwrap();
    assert_eq!(h.ksize(e).unwrap(), 16);
    let f = h.kstrndup(c, 3).unwrap();
    let mut out = [0u8; 4];
    mem.read(f, &mut out).unwrap();
    assert_eq!(&out, b"abc\0");
    for x in [c, d, e, f] {
        h.kfree(x).unwrap();
    }
    // A large kzalloc from untouched pages is not zeroed again: no page of
    // it becomes resident.
    let big = h.kzalloc(2 * MIB as usize).unwrap();
    assert!(!s.server().is_resident(big));
    assert!(!s.server().is_resident(big + MIB));
    mem.fill(big, 2 * MIB, 0x55).unwrap();
    h.kfree(big).unwrap();
    // ... but dirty pages are.
    let again = h.kzalloc(2 * MIB as usize).unwrap();
    let mut probe = [1u8; 8];
    mem.read(again + MIB, &mut probe).unwrap();
    assert_eq!(probe, [0; 8]);
    h.validate().unwrap();
}

#[test]
fn free_pages_go_back_to_the_server_beyond_the_retained_amount() {
    let (s, mut h) = heap(small());
    let mut mem = s.clone();
    let blocks: Vec<u64> = (0..3).map(|_| h.kmalloc(MIB as usize).unwrap()).collect();
    for &b in &blocks {
        mem.fill(b, MIB, 0x77).unwrap();
    }
    let resident = s.server().resident_pages();
    assert!(resident >= 3 * 256);
    let before = s.requests();
    h.kfree(blocks[0]).unwrap();
    // 1 MiB dirty and free > 256 KiB retained: trimmed down to 128 KiB or
    // less by discarding free blocks.
    let trims: Vec<Request> = s.server().requests_since(before).to_vec();
    assert!(!trims.is_empty());
    for r in &trims {
        assert!(matches!(r, Request::Discard { .. }), "{r:?}");
    }
    assert!(h.stats().arena.dirty_free_pages <= (128 << 10) / PAGE_SIZE);
    assert!(s.server().resident_pages() <= resident - 256 + 32);
    assert!(!s.server().is_resident(blocks[0]));
    // The trimmed block reads as zero and is reused as a clean block.
    let mut probe = [1u8; 4];
    mem.read(blocks[0] + 12345, &mut probe).unwrap();
    assert_eq!(probe, [0; 4]);
    h.kfree(blocks[1]).unwrap();
    h.kfree(blocks[2]).unwrap();
    assert_eq!(h.shrink_all().map(|_| ()), Ok(()));
    assert_eq!(h.stats().arena.dirty_free_pages, 0);
    assert!(h.stats().pages_trimmed >= 3 * 256);
    // The chunk itself stays mapped, as reserved address space.
    assert_eq!(h.chunks().count(), 1);
    h.validate().unwrap();
}

#[test]
fn a_refused_trim_backs_off() {
    let (s, mut h) = heap(small());
    let mut mem = s.clone();
    let a = h.kmalloc(MIB as usize).unwrap();
    mem.fill(a, MIB, 1).unwrap();
    s.server()
        .fail_next(|r| matches!(r, Request::Discard { .. }), MmError::Busy, 1);
    h.kfree(a).unwrap();
    let stats = h.stats();
    assert_eq!(stats.trim_failures, 1);
    // The threshold doubled: the next small free does not retry.
    let before = s.requests();
    let b = h.kmalloc(64).unwrap();
    h.kfree(b).unwrap();
    assert_eq!(s.requests(), before);
    h.validate().unwrap();
}

#[test]
fn kmem_caches() {
    let (s, mut h) = heap(small());
    let id = h
        .kmem_cache_create("inode", 200, 64, CacheFlags::NONE, None)
        .unwrap();
    let objs: Vec<u64> = (0..100).map(|_| h.kmem_cache_alloc(id).unwrap()).collect();
    assert!(objs.iter().all(|o| o % 64 == 0));
    let z = h.kmem_cache_zalloc(id).unwrap();
    let mut buf = [1u8; 200];
    s.clone().read(z, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    assert_eq!(h.cache_stats(id).unwrap().active_objects, 101);
    assert_eq!(h.live_objects(id).unwrap().len(), 101);
    assert_eq!(
        h.kmem_cache_destroy(id),
        Err(HeapError::Slab(SlabError::CacheBusy { live: 101 }))
    );
    for o in objs {
        h.kmem_cache_free(id, o).unwrap();
    }
    h.kmem_cache_free(id, z).unwrap();
    h.kmem_cache_shrink(id).unwrap();
    h.kmem_cache_destroy(id).unwrap();
    assert_eq!(
        h.kmem_cache_alloc(id),
        Err(HeapError::Slab(SlabError::NoSuchCache))
    );
    assert_eq!(h.kmalloc_stats().len(), 13);
    h.validate().unwrap();
}

#[test]
fn checking_mode_catches_overflows() {
    let (s, mut h) = heap(HeapConfig {
        checking: true,
        ..small()
    });
    let a = h.kmalloc(24).unwrap();
    // Write one byte past the requested size: the red zone.
    s.clone().write(a + 24, &[0]).unwrap();
    assert!(matches!(
        h.kfree(a),
        Err(HeapError::Slab(SlabError::Corrupted(_)))
    ));
    let b = h.kzalloc(40).unwrap();
    h.kfree(b).unwrap();
    h.validate().unwrap();
}

#[test]
fn heap_pages() {
    let (s, mut h) = heap(small());
    let p = h.alloc_heap_pages(3).unwrap();
    assert_eq!(p % (8 * PAGE_SIZE), 0);
    assert!(h.owns(p));
    let obj = h.kmalloc(64).unwrap();
    // Neither a slab page nor a wrong order is accepted.
    assert!(h.free_heap_pages(obj & !(PAGE_SIZE - 1), 0).is_err());
    assert!(h.free_heap_pages(p, 2).is_err());
    assert!(h.alloc_heap_pages(11).is_err());
    h.validate().unwrap();
    h.free_heap_pages(p, 3).unwrap();
    assert!(h.free_heap_pages(p, 3).is_err());
    h.kfree(obj).unwrap();
    h.validate().unwrap();
    let _ = s;
}

#[test]
fn dropping_the_heap_unmaps_its_chunks() {
    let (s, mut h) = heap(small());
    h.kmalloc(64).unwrap();
    h.kmalloc(4 * MIB as usize).unwrap();
    assert_eq!(h.chunks().count(), 2);
    drop(h);
    assert_eq!(s.server().mapped_bytes(), 0);
}

/// Fills the heap until the server refuses to map more.
fn exhaust(h: &mut Heap<MockMm, MockMm>) -> Vec<u64> {
    let mut held = Vec::new();
    while let Ok(a) = h.kmalloc(MIB as usize) {
        held.push(a);
    }
    while let Ok(a) = h.kmalloc(256) {
        held.push(a);
    }
    held
}

#[test]
fn mempools_make_progress_when_memory_is_exhausted() {
    let (s, mut h) = heap(small());
    s.server().map_limit = Some(8 * MIB);
    let mut pool = mempool::mempool_create_kmalloc_pool(4, 256, &mut h).unwrap();
    let id = h
        .kmem_cache_create("req", 512, 0, CacheFlags::NONE, None)
        .unwrap();
    let mut cache_pool = mempool::mempool_create_slab_pool(2, id, &mut h).unwrap();
    let mut page_pool = mempool::mempool_create_heap_page_pool(2, 1, &mut h).unwrap();
    let held = exhaust(&mut h);
    assert!(h.kmalloc(256).is_err());
    // The reserve still gives min_nr elements each.
    let got: Vec<u64> = (0..4).map(|_| pool.alloc(&mut h).unwrap()).collect();
    assert_eq!(pool.alloc(&mut h), Err(MempoolError::Exhausted));
    let c: Vec<u64> = (0..2).map(|_| cache_pool.alloc(&mut h).unwrap()).collect();
    let p: Vec<u64> = (0..2).map(|_| page_pool.alloc(&mut h).unwrap()).collect();
    // Freeing one makes the next allocation succeed again.
    pool.free(&mut h, got[0]).unwrap();
    let again = pool.alloc(&mut h).unwrap();
    assert_eq!(again, got[0]);
    // Elements are distinct.
    let mut all: Vec<u64> = got[1..].iter().chain(&c).chain(&p).copied().collect();
    all.push(again);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 8);
    // Give everything back.
    for a in got[1..].iter().copied().chain([again]) {
        pool.free(&mut h, a).unwrap();
    }
    for a in c {
        cache_pool.free(&mut h, a).unwrap();
    }
    for a in p {
        page_pool.free(&mut h, a).unwrap();
    }
    for a in held {
        h.kfree(a).unwrap();
    }
    pool.destroy(&mut h).unwrap();
    cache_pool.destroy(&mut h).unwrap();
    page_pool.destroy(&mut h).unwrap();
    h.kmem_cache_destroy(id).unwrap();
    h.validate().unwrap();
    assert_eq!(h.stats().heap_pages, 0);
}

#[test]
fn server_page_pools() {
    let s = MockMm::new();
    let mut mm = s.mm();
    let mut pool = mempool::mempool_create_page_pool(2, 1, Gfp::default(), &mut mm).unwrap();
    s.server().grant_pages = false;
    let a = pool.alloc(&mut mm).unwrap();
    let b = pool.alloc(&mut mm).unwrap();
    assert_eq!(pool.alloc(&mut mm), Err(MempoolError::Exhausted));
    s.server().grant_pages = true;
    pool.free(&mut mm, a).unwrap();
    pool.free(&mut mm, b).unwrap();
    pool.destroy(&mut mm).unwrap();
    assert_eq!(s.server().resident_pages(), 0);
}
