//! libmm against the real server: the client heap (kmalloc family, kmem_cache), mempools, RAII handles, heap growth and trimming, the GlobalAlloc logic.
//!
//! Each scenario is a client process using libmm's own types over the real
//! transport (`RtTransport`) and the real memory access (`RtMemory`, the
//! software MMU): the heap's chunks are regions of the real server, its
//! pages are backed by the server's fault handler on first touch, and its
//! trims are the server's `Discard`. The server checks all its invariants
//! after every message; each client counts its own requests
//! ([`Client::requests_made`]) to show the fast paths make none.

use std::alloc::Layout;

use libmm::global::{GlobalConfig, GlobalHeap};
use libmm::heap::{Heap, HeapConfig};
use libmm::memory::RtMemory;
use libmm::mempool;
use libmm::protocol::{Gfp, MapFlags, MmError, Prot};
use libmm::{Error, RtTransport};
use mm_core::memory::MemoryAccess;
use mm_core::mempool::MempoolError;
use mm_core::slab::{CacheFlags, SlabError};
use mm_server::Grants;
use sim_scenarios::*;

const MIB: u64 = 1 << 20;

/// 4 MiB chunks growing to 16 MiB, 256 KiB of free pages retained.
fn small() -> HeapConfig {
    HeapConfig {
        first_chunk: 4 * MIB,
        max_chunk: 16 * MIB,
        retain: 256 << 10,
        checking: false,
    }
}

fn heap(mm: &Client, config: HeapConfig) -> Heap<RtTransport, RtMemory> {
    Heap::new(mm.mm.clone(), RtMemory, config)
}

/// Fills `[addr, addr + len)` with a pattern derived from `seed`.
fn fill(addr: u64, len: usize, seed: u8) {
    let bytes: Vec<u8> = (0..len).map(|i| seed ^ (i as u8)).collect();
    rt::mem::write_bytes(addr, &bytes).unwrap();
}

/// Whether `[addr, addr + len)` holds the pattern of `seed`.
fn holds(addr: u64, len: usize, seed: u8) -> bool {
    let mut bytes = vec![0u8; len];
    rt::mem::read_bytes(addr, &mut bytes).unwrap();
    bytes
        .iter()
        .enumerate()
        .all(|(i, &b)| b == seed ^ (i as u8))
}

#[test]
fn the_kmalloc_family_on_the_real_server() {
    let w = Scenario::new()
        .client("c", Grants::default(), 8192, |mm| {
            let mut h = heap(&mm, small());
            let n0 = mm.requests_made();
            // Objects of every class, written and read back through the
            // software MMU: the server backs the pages on first touch.
            let sizes = [1usize, 8, 24, 64, 100, 192, 512, 1000, 2048, 4096, 8000];
            let mut live = Vec::new();
            for (k, &size) in sizes.iter().cycle().take(300).enumerate() {
                let a = h.kmalloc(size).unwrap();
                assert!(h.ksize(a).unwrap() >= size);
                fill(a, size, k as u8);
                live.push((a, size, k as u8));
            }
            // One request: the first chunk, aligned in one go.
            assert_eq!(mm.requests_made() - n0, 1);
            let (base, len) = h.chunks().next().unwrap();
            assert_eq!((base % (4 * MIB), len), (0, 4 * MIB));
            let faults = mm.client_stats().unwrap().faults;
            assert!(faults > 0, "pages are backed on first touch");
            for &(a, size, k) in &live {
                assert!(holds(a, size, k), "object {a:#x} of {size} bytes");
            }
            // The fast path: no request at all.
            let n1 = mm.requests_made();
            for i in 0..5000 {
                let a = h.kmalloc(1 + i % 3000).unwrap();
                h.kfree(a).unwrap();
            }
            assert_eq!(mm.requests_made(), n1, "no IPC on the fast path");
            // kzalloc of dirty memory is zeroed; krealloc keeps contents;
            // the duplicating calls copy.
            let (a, size, k) = live.pop().unwrap();
            h.kfree(a).unwrap();
            let z = h.kzalloc(size).unwrap();
            let mut buf = vec![0xffu8; size];
            rt::mem::read_bytes(z, &mut buf).unwrap();
            assert!(buf.iter().all(|&b| b == 0));
            let (b, bsize, bk) = live.pop().unwrap();
            let moved = h.krealloc(b, 20_000).unwrap();
            assert!(holds(moved, bsize, bk));
            rt::mem::write_bytes(moved, b"libmm\0").unwrap();
            let s = h.kstrdup(moved).unwrap();
            let mut out = [0u8; 6];
            rt::mem::read_bytes(s, &mut out).unwrap();
            assert_eq!(&out, b"libmm\0");
            let d = h.kmemdup(moved, 3).unwrap();
            let c = h.kcalloc(10, 30).unwrap();
            let mut cbuf = [1u8; 300];
            rt::mem::read_bytes(c, &mut cbuf).unwrap();
            assert!(cbuf.iter().all(|&b| b == 0));
            for x in [z, moved, s, d, c] {
                h.kfree(x).unwrap();
            }
            // Bad frees are refused and change nothing.
            assert_eq!(
                h.kfree(s),
                Err(libmm::HeapError::Slab(SlabError::DoubleFree { addr: s }))
            );
            for (a, size, k) in live.drain(..) {
                assert!(holds(a, size, k));
                h.kfree(a).unwrap();
            }
            h.validate().unwrap();
            let _ = k;
            // Dropping the heap unmaps its chunks: nothing left.
            drop(h);
            let st = mm.client_stats().unwrap();
            assert_eq!((st.regions, st.resident_pages), (0, 0));
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

/// A constructor: the first word of each new object holds its address.
fn stamp(mem: &mut dyn MemoryAccess, addr: u64) -> Result<(), mm_core::memory::AccessError> {
    mem.write(addr, &addr.to_le_bytes())
}

#[test]
fn kmem_caches_on_the_real_server() {
    let w = Scenario::new()
        .client("c", Grants::default(), 8192, |mm| {
            let mut h = heap(&mm, small());
            let id = h
                .kmem_cache_create("inode", 200, 64, CacheFlags::NONE, Some(stamp))
                .unwrap();
            let objs: Vec<u64> = (0..500).map(|_| h.kmem_cache_alloc(id).unwrap()).collect();
            for &o in &objs {
                assert_eq!(o % 64, 0);
                assert_eq!(peek(o), o, "constructed");
                poke(o + 8, !o);
            }
            for &o in &objs {
                assert_eq!(peek(o + 8), !o);
            }
            let z = h.kmem_cache_zalloc(id).unwrap();
            let mut buf = [1u8; 200];
            rt::mem::read_bytes(z, &mut buf).unwrap();
            assert!(buf.iter().all(|&b| b == 0));
            assert_eq!(h.cache_stats(id).unwrap().active_objects, 501);
            assert_eq!(
                h.kmem_cache_destroy(id),
                Err(libmm::HeapError::Slab(SlabError::CacheBusy { live: 501 }))
            );
            for o in objs {
                h.kmem_cache_free(id, o).unwrap();
            }
            h.kmem_cache_free(id, z).unwrap();
            h.kmem_cache_shrink(id).unwrap();
            h.kmem_cache_destroy(id).unwrap();
            h.validate().unwrap();
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn the_heap_grows_by_aligned_chunks_and_trims_with_discard() {
    let w = Scenario::new()
        .client("c", Grants::default(), 16384, |mm| {
            let mut h = heap(&mm, small());
            let n0 = mm.requests_made();
            // Six 4 MiB blocks: chunks of 4, 8 and 16 MiB, one request each.
            let big: Vec<u64> = (0..6)
                .map(|_| h.kmalloc(4 * MIB as usize).unwrap())
                .collect();
            let chunks: Vec<(u64, u64)> = h.chunks().collect();
            assert_eq!(
                chunks.iter().map(|c| c.1).collect::<Vec<_>>(),
                [4 * MIB, 8 * MIB, 16 * MIB]
            );
            assert!(chunks.iter().all(|c| c.0 % (4 * MIB) == 0));
            assert_eq!(mm.requests_made() - n0, 3);
            for b in big {
                h.kfree(b).unwrap();
            }
            // Dirty three 1 MiB blocks, free one: trimmed down to half the
            // retained amount with Discard, the chunks kept whole.
            let blocks: Vec<u64> = (0..3).map(|_| h.kmalloc(MIB as usize).unwrap()).collect();
            for (i, &b) in blocks.iter().enumerate() {
                fill(b, MIB as usize, i as u8);
            }
            let regions = mm.client_stats().unwrap().regions;
            let resident = mm.resident();
            assert!(resident >= 3 * 256);
            let trimmed = h.stats().pages_trimmed;
            h.kfree(blocks[0]).unwrap();
            assert!(h.stats().pages_trimmed > trimmed);
            assert!(h.stats().arena.dirty_free_pages * 4096 <= 128 << 10);
            assert!(mm.resident() <= resident - 256 + 32, "pages went back");
            assert_eq!(mm.client_stats().unwrap().regions, regions, "no split");
            assert_eq!(h.chunks().count(), 3);
            // The other blocks kept their data; a trimmed block reads as
            // zero and is reused as a clean one.
            assert!(holds(blocks[1], MIB as usize, 1));
            assert!(holds(blocks[2], MIB as usize, 2));
            let again = h.kzalloc(MIB as usize).unwrap();
            let mut probe = [1u8; 64];
            rt::mem::read_bytes(again + 12345, &mut probe).unwrap();
            assert_eq!(probe, [0; 64]);
            for b in [again, blocks[1], blocks[2]] {
                h.kfree(b).unwrap();
            }
            h.shrink_all().unwrap();
            assert_eq!(h.stats().arena.dirty_free_pages, 0);
            assert_eq!(h.stats().trim_failures, 0);
            h.validate().unwrap();
            drop(h);
            assert_eq!(mm.client_stats().unwrap().regions, 0);
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn mempools_on_the_real_server() {
    let w = Scenario::new()
        .client(
            "c",
            Grants {
                pages: true,
                ..Grants::default()
            },
            64,
            |mm| {
                // Pools over the heap: kmalloc, kmem_cache and heap pages.
                let mut h = heap(&mm, small());
                let mut kp = mempool::mempool_create_kmalloc_pool(4, 256, &mut h).unwrap();
                let id = h
                    .kmem_cache_create("req", 512, 0, CacheFlags::NONE, None)
                    .unwrap();
                let mut cp = mempool::mempool_create_slab_pool(2, id, &mut h).unwrap();
                let mut hp = mempool::mempool_create_heap_page_pool(2, 1, &mut h).unwrap();
                let k: Vec<u64> = (0..6).map(|_| kp.alloc(&mut h).unwrap()).collect();
                let c = cp.alloc(&mut h).unwrap();
                let p = hp.alloc(&mut h).unwrap();
                for (i, &a) in k.iter().chain([&c, &p]).enumerate() {
                    poke(a, i as u64);
                }
                for (i, &a) in k.iter().chain([&c, &p]).enumerate() {
                    assert_eq!(peek(a), i as u64);
                }
                for a in k {
                    kp.free(&mut h, a).unwrap();
                }
                cp.free(&mut h, c).unwrap();
                hp.free(&mut h, p).unwrap();
                kp.destroy(&mut h).unwrap();
                cp.destroy(&mut h).unwrap();
                hp.destroy(&mut h).unwrap();
                h.kmem_cache_destroy(id).unwrap();
                h.validate().unwrap();
                drop(h);
                // A pool of server pages: its reserve outlasts the quota.
                let mut server = mm.mm.clone();
                let mut pp =
                    mempool::mempool_create_page_pool(4, 2, Gfp::ZERO, &mut server).unwrap();
                assert_eq!(mm.resident(), 16, "the reserve: 4 blocks of 4");
                let mut hogs = Vec::new();
                loop {
                    match mm.alloc_pages(2, Gfp::default()) {
                        Ok(p) => hogs.push(p),
                        Err(e) => {
                            assert_eq!(e, Error::Mm(MmError::QuotaExceeded));
                            break;
                        }
                    }
                }
                let got: Vec<u64> = (0..4).map(|_| pp.alloc(&mut server).unwrap()).collect();
                assert_eq!(pp.alloc(&mut server), Err(MempoolError::Exhausted));
                poke(got[0], 5);
                pp.free(&mut server, got[0]).unwrap();
                assert_eq!(pp.alloc(&mut server), Ok(got[0]));
                for a in got {
                    pp.free(&mut server, a).unwrap();
                }
                drop(hogs);
                pp.destroy(&mut server).unwrap();
                assert_eq!(mm.resident(), 0);
            },
        )
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn handles_release_what_they_own_with_one_request_each() {
    let w = Scenario::new()
        .client("c", Grants::all(), 4096, |mm| {
            let m = mm.mmap(0, 8 * PAGE, RW, MapFlags::POPULATE).unwrap();
            let p = mm.alloc_pages(1, Gfp::ZERO).unwrap();
            let e = mm.alloc_pages_exact(3 * PAGE, Gfp::default()).unwrap();
            let v = mm.vmalloc(5 * PAGE).unwrap();
            let vm = mm.vmap(&[p.pfn(), p.pfn() + 1], Prot::READ).unwrap();
            let ram = mm.vm_map_ram(&[e.pfn()]).unwrap();
            let obj = mm.shm_create(2 * PAGE).unwrap();
            let sm = obj.map(0, RW).unwrap();
            let pins = mm.get_user_pages_fast(m.addr(), 2, true).unwrap();
            let dma = mm.dma_alloc_coherent(PAGE).unwrap();
            poke(sm.addr(), 1);
            let st = mm.client_stats().unwrap();
            assert_eq!(st.regions, 8);
            assert_eq!(st.resident_pages, 8 + 2 + 3 + 5 + 2 + 1);
            let n0 = mm.requests_made();
            // Pins first (the mapping is busy while pinned), mappings of
            // frames before the frames.
            drop(pins);
            drop((vm, ram, sm));
            drop((m, p, e, v, obj, dma));
            assert_eq!(mm.requests_made() - n0, 10, "one release each");
            let st = mm.client_stats().unwrap();
            assert_eq!((st.regions, st.resident_pages), (0, 0));
            // A refused release is reported by the explicit call.
            let m = mm.mmap(0, PAGE, RW, MapFlags::POPULATE).unwrap();
            let addr = m.addr();
            let pinned = mm.get_user_pages_fast(addr, 1, false).unwrap();
            assert_eq!(m.munmap(), refused(MmError::Busy));
            pinned.unpin().unwrap();
            // The handle is spent: the mapping stays until unmapped by hand.
            assert_eq!(mm.client_stats().unwrap().regions, 1);
            mm.munmap(addr, PAGE).unwrap();
            assert_eq!(mm.client_stats().unwrap().regions, 0);
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn the_global_alloc_logic_over_the_real_server() {
    let w = Scenario::new()
        .client("c", Grants::default(), 8192, |mm| {
            let config = GlobalConfig {
                heap: small(),
                meta_bytes: 4 * MIB,
            };
            let g = GlobalHeap::with_transport(*mm.transport(), RtMemory, config).unwrap();
            let mut live = Vec::new();
            // Small and aligned blocks from the slab, large ones as page
            // blocks, huge ones as direct maps (aligned by the server).
            let shapes = [
                (24usize, 8usize),
                (100, 64),
                (3000, 4096),
                (64 << 10, 8),
                (5 << 20, 8),
                (6 << 20, 2 << 20),
            ];
            for (k, &(size, align)) in shapes.iter().enumerate() {
                let l = Layout::from_size_align(size, align).unwrap();
                let a = g.allocate(l).unwrap();
                assert_eq!(a % align as u64, 0, "{size}/{align}");
                fill(a, size.min(8192), k as u8);
                live.push((a, l, k as u8));
            }
            let st = g.stats().unwrap();
            assert_eq!(st.direct_maps, 2);
            for &(a, l, k) in &live {
                assert!(holds(a, l.size().min(8192), k));
            }
            // Zeroed allocations read as zero; realloc keeps contents.
            let zl = Layout::from_size_align(5000, 8).unwrap();
            let z = g.allocate_zeroed(zl).unwrap();
            let mut buf = vec![1u8; 5000];
            rt::mem::read_bytes(z, &mut buf).unwrap();
            assert!(buf.iter().all(|&b| b == 0));
            g.deallocate(z, zl);
            let (a, l, k) = live.remove(0);
            let grown = g.reallocate(a, l, 10_000).unwrap();
            assert!(holds(grown, l.size(), k));
            live.push((grown, Layout::from_size_align(10_000, 8).unwrap(), k));
            g.validate().unwrap();
            for (a, l, _) in live {
                g.deallocate(a, l);
            }
            let st = g.stats().unwrap();
            assert_eq!((st.direct_maps, st.bad_frees), (0, 0));
            g.validate().unwrap();
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}
