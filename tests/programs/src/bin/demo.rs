//! The demo the run command boots: one client of the MM server using every family, reporting what happened.
//!
//! Three clients run beside the MM server (see `tests/qemu/demo/manifest.toml`):
//! this one (`demo`, granted pages, DMA and user access), `peer` (no
//! grants) and `victim`. They hold no capability to each other; the demo
//! talks to them through shared objects it creates and grants
//! (`qemu_test_programs::mailbox`): the first to the peer, the second to
//! the victim. In order:
//!
//! 1. the zones' free frames before anything;
//! 2. anonymous memory: demand faults, populate, protect, 2 MiB blocks;
//! 3. the page allocator: alloc_pages, alloc_pages_exact; vmalloc,
//!    vzalloc, vmalloc_32, vmap of frames it owns;
//! 4. shared memory with the peer; copy_to_user / copy_from_user into the
//!    peer's buffer, one copy running past its end (partial);
//!    get_user_pages_fast;
//! 5. the client heap (kmalloc family, kmem_cache), a mempool, and a `Vec`
//!    on the GlobalAlloc;
//! 6. DMA: a coherent buffer and a pool of descriptors, every bus
//!    address checked against the frame the kernel maps there;
//! 7. the victim takes memory, touches its guard page, is killed by the
//!    server, and its frames come back;
//! 8. everything freed: the zones' free frames after, equal to before but
//!    for what the demo's own heap still holds.
//!
//! Every line is deterministic (`-icount shift=0`): the QEMU test `demo`
//! checks it. A failed check prints `FAIL` and the run ends with status 1.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    extern crate alloc;

    use alloc::vec::Vec;

    use libmm::heap::{Heap, HeapConfig};
    use libmm::memory::RtMemory;
    use libmm::mempool::mempool_create_kmalloc_pool;
    use libmm::protocol::{Align, Gfp, MapFlags, Prot, ZoneInfo};
    use libmm::{DmaPools, Mm, RtTransport};
    use mm_core::slab::CacheFlags;
    use qemu_test_programs::mailbox::{self, COMMAND, STATE, VALUE};
    use rt::BootInfo;

    #[global_allocator]
    static HEAP: libmm::RtGlobalHeap = libmm::RtGlobalHeap::rt();

    const PEER: u64 = 0x102;
    const VICTIM: u64 = 0x103;
    const PAGE: u64 = 4096;

    struct Report {
        checks: u32,
        failed: u32,
    }

    impl Report {
        fn check(&mut self, what: &str, ok: bool) {
            self.checks += 1;
            if !ok {
                self.failed += 1;
                rt::println!("FAIL {what}");
            }
        }
    }

    fn zones(mm: &Mm<RtTransport>) -> Vec<ZoneInfo> {
        mm.zone_stats().map(|z| z.0.to_vec()).unwrap_or_default()
    }

    fn free(z: &[ZoneInfo]) -> u64 {
        z.iter().map(|z| z.free).sum()
    }

    /// Frames the server holds as page tables (installed or in its pool).
    fn page_tables(mm: &Mm<RtTransport>) -> u64 {
        mm.mem_info().map_or(0, |m| m.page_tables)
    }

    fn print_zones(when: &str, z: &[ZoneInfo]) {
        for z in z {
            let name = if z.zone == 0 { "DMA32" } else { "Normal" };
            rt::println!(
                "zones {when}: {name:<6} {:>7} free of {:>7} managed",
                z.free,
                z.managed
            );
        }
    }

    fn stats(mm: &Mm<RtTransport>) -> (u64, u64) {
        mm.client_stats()
            .map(|s| (s.resident_pages, s.faults))
            .unwrap_or((0, 0))
    }

    fn sum_pages(addr: u64, pages: u64) -> u64 {
        (0..pages)
            .map(|i| rt::mem::read_u64(addr + i * PAGE).unwrap_or(0))
            .sum()
    }

    fn main(info: &'static BootInfo) {
        let mut r = Report {
            checks: 0,
            failed: 0,
        };
        let Ok(mm) = Mm::from_boot_info(info) else {
            rt::println!("demo: no MM endpoint");
            rt::debug_halt(1);
        };
        rt::println!("demo: clients of the MM server, one family at a time");
        let before = zones(&mm);
        let tables_before = page_tables(&mm);
        print_zones("before", &before);

        // ----- anonymous memory -----
        let (res0, faults0) = stats(&mm);
        let anon = mm.mmap(0, 4 << 20, Prot::READ_WRITE, MapFlags::default());
        r.check("mmap 4 MiB", anon.is_ok());
        if let Ok(a) = &anon {
            for i in 0..1024 {
                let _ = rt::mem::write_u64(a.addr() + i * PAGE, i);
            }
            let (res, faults) = stats(&mm);
            rt::println!(
                "anon: 4 MiB demand-zero, 1024 pages touched: {} faults served, {} pages resident",
                faults - faults0,
                res - res0
            );
            r.check("anon sum", sum_pages(a.addr(), 1024) == 1023 * 1024 / 2);
        }
        let (_, f1) = stats(&mm);
        let pop = mm.mmap(0, 1 << 20, Prot::READ_WRITE, MapFlags::POPULATE);
        if let Ok(p) = &pop {
            let (res_a, _) = stats(&mm);
            let zero = sum_pages(p.addr(), 256);
            let (_, f2) = stats(&mm);
            rt::println!(
                "populate: 1 MiB mapped at once ({} pages resident now), reading it: {} faults, all zero: {}",
                res_a - res0 - 1024,
                f2 - f1,
                zero == 0
            );
            r.check(
                "populated memory reads zero without faults",
                zero == 0 && f2 == f1,
            );
            let ro = p.mprotect(Prot::READ);
            let read = rt::mem::read_u64(p.addr()).is_ok();
            let rw = p.mprotect(Prot::READ_WRITE);
            let wrote =
                rt::mem::write_u64(p.addr(), 7).is_ok() && rt::mem::read_u64(p.addr()) == Ok(7);
            let bad = mm.mprotect(p.addr() + (1 << 20), PAGE, Prot::READ);
            rt::println!(
                "protect: read-only then read/write again: {}; on unmapped memory: {:?}",
                ro.is_ok() && read && rw.is_ok() && wrote,
                bad.err()
            );
            r.check(
                "mprotect",
                ro.is_ok() && rw.is_ok() && wrote && bad.is_err(),
            );
        }
        let (res_h0, fh0) = stats(&mm);
        let huge = mm.mmap_aligned(0, 4 << 20, Prot::READ_WRITE, MapFlags::HUGE, Align::LARGE);
        r.check("mmap HUGE", huge.is_ok());
        if let Ok(h) = &huge {
            let _ = rt::mem::write_u64(h.addr() + 8, 1);
            let _ = rt::mem::write_u64(h.addr() + (2 << 20) + 8, 2);
            let (res, f) = stats(&mm);
            rt::println!(
                "2 MiB blocks: 4 MiB aligned region, 2 bytes touched: {} faults, {} pages resident",
                f - fh0,
                res - res_h0
            );
            r.check("two blocks", f - fh0 == 2 && res - res_h0 == 1024);
        }
        drop(huge);
        drop(pop);
        drop(anon);
        let (res_after_anon, faults_anon) = stats(&mm);
        rt::println!(
            "anon: unmapped; {} pages resident, {} faults served so far",
            res_after_anon,
            faults_anon
        );

        // ----- the page allocator, vmalloc, vmap -----
        let block = mm.alloc_pages(3, Gfp::ZERO);
        r.check("alloc_pages(3)", block.is_ok());
        if let Ok(b) = &block {
            let zero = sum_pages(b.addr(), 8) == 0;
            rt::println!(
                "alloc_pages: order 3, {} contiguous frames, zeroed: {zero}",
                b.count()
            );
            r.check("alloc_pages zeroed", zero && b.count() == 8);
            for i in 0..8 {
                let _ = rt::mem::write_u64(b.addr() + i * PAGE, 100 + i);
            }
            let pfns: Vec<u64> = (0..8).map(|i| b.pfn() + i).collect();
            let vm = mm.vmap(&pfns, Prot::READ);
            r.check("vmap", vm.is_ok());
            if let Ok(v) = &vm {
                let same = sum_pages(v.addr(), 8) == sum_pages(b.addr(), 8);
                rt::println!("vmap: the 8 frames again at a second address, same contents: {same}");
                r.check("vmap contents", same);
            }
            drop(vm);
        }
        if let Ok(b) = block {
            r.check("free_pages", b.free().is_ok());
        }
        let exact = mm.alloc_pages_exact(5 * PAGE, Gfp::ZERO);
        if let Ok(e) = &exact {
            rt::println!("alloc_pages_exact: 20 KiB, {} frames", e.count());
        }
        r.check(
            "alloc_pages_exact",
            exact.as_ref().is_ok_and(|e| e.count() == 5),
        );
        drop(exact);
        let v = mm.vmalloc(64 << 10);
        let z = mm.vzalloc(64 << 10);
        let v32 = mm.vmalloc_32(64 << 10);
        r.check("vmalloc family", v.is_ok() && z.is_ok() && v32.is_ok());
        if let (Ok(v), Ok(z), Ok(v32)) = (&v, &z, &v32) {
            let _ = rt::mem::write_u64(v.addr() + 15 * PAGE, 5);
            let zeroed = sum_pages(z.addr(), 16) == 0;
            let below_4g = (0..16).all(|i| {
                mm.follow_pfn(v32.addr() + i * PAGE)
                    .is_ok_and(|pfn| pfn < (1 << 32) / PAGE)
            });
            rt::println!(
                "vmalloc: 64 KiB x3 (vmalloc, vzalloc zeroed: {zeroed}, vmalloc_32 below 4 GiB: {below_4g})"
            );
            r.check("vzalloc zero, vmalloc_32 low", zeroed && below_4g);
        }
        drop((v, z, v32));

        // ----- shared memory and user memory access, with the peer -----
        let mailbox = mm.shm_create(PAGE);
        let victim_box = mm.shm_create(PAGE);
        r.check("shm_create", mailbox.is_ok() && victim_box.is_ok());
        let (Ok(mailbox), Ok(victim_box)) = (mailbox, victim_box) else {
            finish(&r);
        };
        let mb = mailbox.map(0, Prot::READ_WRITE);
        r.check("shm map", mb.is_ok());
        let Ok(mb) = mb else { finish(&r) };
        let base = mb.addr();
        r.check("shm grant", mailbox.grant(PEER, Prot::READ_WRITE).is_ok());
        let peer_ready = mailbox::wait(base, STATE, 1, 1_000_000);
        r.check("peer ready", peer_ready);
        let mut hello = [0u8; 19];
        let _ = rt::mem::read_bytes(base + 512, &mut hello);
        rt::println!(
            "shm: one page shared with the peer, which wrote {:?}",
            core::str::from_utf8(&hello).unwrap_or("?")
        );
        r.check("shm contents", &hello == b"hello from the peer");
        let peer_buf = mailbox::get(base, VALUE);
        let peer_len = mailbox::get(base, VALUE + 1);
        let src = mm.mmap(0, 8 << 10, Prot::READ_WRITE, MapFlags::POPULATE);
        if let Ok(src) = &src {
            for i in 0..(8 << 10) / 8 {
                let _ = rt::mem::write_u64(src.addr() + i * 8, 0xd0_0000 + i);
            }
            let full = mm.copy_to_user(PEER, peer_buf, src.addr(), 8 << 10);
            let back = mm.mmap(0, 8 << 10, Prot::READ_WRITE, MapFlags::default());
            let mut equal = false;
            let mut from = Err(libmm::Error::Call(libmm::CallError::BadReply));
            if let Ok(back) = &back {
                from = mm.copy_from_user(PEER, back.addr(), peer_buf, 8 << 10);
                equal = (0..(8 << 10) / 8)
                    .all(|i| rt::mem::read_u64(back.addr() + i * 8) == Ok(0xd0_0000 + i));
            }
            rt::println!(
                "uaccess: copy_to_user 8 KiB into the peer: {:?} bytes not copied; copy_from_user back: {:?}, equal: {equal}",
                full,
                from
            );
            r.check("copies", full == Ok(0) && from == Ok(0) && equal);
            let partial = mm.copy_to_user(PEER, peer_buf + peer_len - PAGE, src.addr(), 8 << 10);
            rt::println!(
                "uaccess: copy_to_user 8 KiB at 4 KiB before the end of the peer's 16 KiB buffer: {partial:?} bytes not copied"
            );
            r.check("partial copy", partial == Ok(4096));
            let pins = mm.get_user_pages_fast(src.addr(), 2, true);
            if let Ok(p) = &pins {
                let phys: Vec<u64> = p.pfns().to_vec();
                let follows = phys.len() == 2
                    && phys
                        .iter()
                        .enumerate()
                        .all(|(i, &pfn)| mm.follow_pfn(src.addr() + i as u64 * PAGE) == Ok(pfn));
                rt::println!(
                    "get_user_pages_fast: 2 pages pinned, frames match follow_pfn: {follows}"
                );
                r.check("gup", follows);
            }
            r.check("unpin", pins.is_ok_and(|p| p.unpin().is_ok()));
        }
        drop(src);

        // ----- the client heap, a mempool, the GlobalAlloc -----
        let (res_heap0, _) = stats(&mm);
        let mut heap = Heap::new(mm.clone(), RtMemory, HeapConfig::default());
        let mut objs = Vec::new();
        for i in 0..1000 {
            if let Ok(a) = heap.kmalloc(64) {
                let _ = rt::mem::write_u64(a, i);
                objs.push(a);
            }
        }
        let z = heap.kzalloc(200);
        let zero = z.is_ok_and(|a| (0..25).all(|i| rt::mem::read_u64(a + i * 8) == Ok(0)));
        let grown = objs.first().and_then(|&a| heap.krealloc(a, 300).ok());
        let kept = grown.is_some_and(|a| rt::mem::read_u64(a) == Ok(0));
        let size = grown.and_then(|a| heap.ksize(a).ok()).unwrap_or(0);
        let cache = heap.kmem_cache_create("demo-objects", 48, 16, CacheFlags::NONE, None);
        let cached: Vec<u64> = match cache {
            Ok(c) => (0..100)
                .filter_map(|_| heap.kmem_cache_alloc(c).ok())
                .collect(),
            Err(_) => Vec::new(),
        };
        let (res_heap1, _) = stats(&mm);
        rt::println!(
            "kmalloc: 1000 x kmalloc(64), kzalloc(200) zeroed: {zero}, krealloc to 300 keeps data: {kept} (ksize {size}), 100 objects of a kmem_cache; {} pages mapped for the heap",
            res_heap1 - res_heap0
        );
        r.check(
            "heap",
            objs.len() == 1000 && zero && kept && cached.len() == 100,
        );
        if let Some(g) = grown {
            r.check("kfree", heap.kfree(g).is_ok());
        }
        for &a in objs.iter().skip(1) {
            let _ = heap.kfree(a);
        }
        if let Ok(a) = z {
            let _ = heap.kfree(a);
        }
        if let Ok(c) = cache {
            for &a in &cached {
                let _ = heap.kmem_cache_free(c, a);
            }
            r.check("kmem_cache_destroy", heap.kmem_cache_destroy(c).is_ok());
        }
        let pool = mempool_create_kmalloc_pool(16, 128, &mut heap);
        if let Ok(mut pool) = pool {
            let got: Vec<u64> = (0..24).filter_map(|_| pool.alloc(&mut heap).ok()).collect();
            rt::println!(
                "mempool: 16 reserved kmalloc(128) elements, 24 allocated, {} in reserve while they are out",
                pool.reserved()
            );
            for a in &got {
                let _ = pool.free(&mut heap, *a);
            }
            let refilled = pool.reserved();
            r.check("mempool", got.len() == 24 && refilled == 16);
            r.check("mempool destroy", pool.destroy(&mut heap).is_ok());
        } else {
            r.check("mempool create", false);
        }
        let (res_v0, _) = stats(&mm);
        let big: Vec<u64> = (0..100_000u64).collect();
        let total: u64 = big.iter().sum();
        let (res_v1, _) = stats(&mm);
        rt::println!(
            "GlobalAlloc: a Vec of 100000 u64 (800 KB) sums to {total}; {} pages mapped for it",
            res_v1 - res_v0
        );
        r.check("vec", total == 99_999 * 100_000 / 2);
        drop(big);

        // ----- DMA -----
        dma(&mut r, &mm);

        // ----- a client that dies -----
        let vb = victim_box.map(0, Prot::READ_WRITE);
        r.check("victim mailbox", vb.is_ok());
        if let Ok(vb) = &vb {
            let vbase = vb.addr();
            r.check(
                "grant victim",
                victim_box.grant(VICTIM, Prot::READ_WRITE).is_ok(),
            );
            let ready = mailbox::wait(vbase, STATE, 1, 1_000_000);
            r.check("victim ready", ready);
            let held = mailbox::get(vbase, VALUE);
            let with_victim = free(&zones(&mm));
            let tables_with_victim = page_tables(&mm);
            rt::println!("death: the victim holds {held} pages; it touches its guard page now");
            mailbox::put(vbase, COMMAND, 1);
            let back = mailbox::poll(100_000, || {
                let now = free(&zones(&mm));
                if now >= with_victim + held {
                    Ok(now)
                } else {
                    Err(now)
                }
            })
            .unwrap_or_else(|now| now);
            // Its page tables go back to the server's pool, and whole
            // chunks of tables the pool no longer needs to the zones.
            let tables = tables_with_victim.saturating_sub(page_tables(&mm));
            rt::println!(
                "death: {} frames came back to the zones (the victim held {held}; {tables} page tables the pool no longer needed)",
                back - with_victim
            );
            r.check("reclaimed", back - with_victim == held + tables && held > 0);
            r.check("victim gone", mailbox::get(vbase, STATE) == 1);
        }
        drop(vb);

        // ----- the end: everything back -----
        mailbox::put(base, COMMAND, 9);
        r.check("peer left", mailbox::wait(base, STATE, 9, 1_000_000));
        drop(mb);
        drop(mailbox);
        drop(victim_box);
        let _ = heap.shrink_all();
        let (res_end, faults_end) = stats(&mm);
        let after = zones(&mm);
        let tables_after = page_tables(&mm);
        print_zones("after ", &after);
        rt::println!(
            "demo: {faults_end} faults served for the demo; it still holds {res_end} pages (its heaps); free before - after = {}, page tables before - after = {}",
            free(&before) as i64 - free(&after) as i64,
            tables_before as i64 - tables_after as i64
        );
        r.check(
            "conservation: what is neither free nor page tables is the demo's",
            free(&before) + tables_before == free(&after) + tables_after + res_end,
        );
        let m = mm.mem_info().unwrap_or_default();
        rt::println!("meminfo: {m}");
        r.check("frame conservation", m.conserved() && m.clients == res_end);
        finish(&r);
    }

    /// Whether the kernel maps the frame at bus address `bus` behind `va`:
    /// `follow_pfn` answers with `Page_GetAddress` on the mapping cap.
    fn at_bus(mm: &Mm<RtTransport>, va: u64, bus: u64) -> bool {
        mm.follow_pfn(va)
            .is_ok_and(|pfn| pfn * PAGE + va % PAGE == bus)
    }

    /// A coherent buffer and a DMA pool, their bus addresses checked
    /// against the frames the kernel maps.
    fn dma(r: &mut Report, mm: &Mm<RtTransport>) {
        let buf = mm.dma_alloc_coherent(64 << 10);
        r.check("dma_alloc_coherent", buf.is_ok());
        if let Ok(b) = &buf {
            let contiguous = (0..16).all(|i| at_bus(mm, b.addr() + i * PAGE, b.bus() + i * PAGE));
            rt::println!(
                "dma: a 64 KiB coherent buffer (uncached) at bus {:#x}: below 4 GiB {}, 16 contiguous frames at its bus address {}",
                b.bus(),
                b.bus() + (64 << 10) <= 1 << 32,
                contiguous
            );
            r.check("coherent buffer at its bus address", contiguous);
        }
        drop(buf);
        let mut pools: DmaPools<RtTransport, RtMemory> = DmaPools::new(mm.clone(), RtMemory);
        let Ok(pool) = pools.dma_pool_create("demo-desc", 96, 32, 4096) else {
            r.check("dma_pool_create", false);
            return;
        };
        let blocks: Vec<_> = (0..100)
            .filter_map(|_| pools.dma_pool_alloc(pool).ok())
            .collect();
        let shaped = blocks
            .iter()
            .all(|b| b.vaddr % 32 == 0 && b.bus % 32 == 0 && b.bus / 4096 == (b.bus + 95) / 4096);
        let at = blocks.iter().all(|b| at_bus(mm, b.vaddr, b.bus));
        let chunks = pools.stats().chunks_in_pools;
        rt::println!(
            "dma: a pool of 96-byte descriptors (align 32, no 4 KiB crossing): 100 blocks from {chunks} chunks, aligned and within bounds {shaped}, each at its bus address {at}"
        );
        r.check("pool blocks", blocks.len() == 100 && shaped && at);
        let freed = blocks
            .iter()
            .all(|b| pools.dma_pool_free(pool, b.vaddr, b.bus).is_ok());
        r.check(
            "pool freed and destroyed",
            freed && pools.dma_pool_destroy(pool).is_ok(),
        );
    }

    fn finish(r: &Report) -> ! {
        if r.failed == 0 {
            rt::println!("demo: all {} checks passed", r.checks);
            rt::println!("TEST_PASS demo");
            rt::debug_halt(0)
        } else {
            rt::println!("TEST_FAIL demo: {} of {} checks failed", r.failed, r.checks);
            rt::debug_halt(1)
        }
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
