//! Recycling: frames never carry one client's data to another, page tables grow on demand, exhaustion changes nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use libmm::protocol::{Gfp, MapFlags, MmError, Prot};
use mm_server::Grants;
use sim_scenarios::*;

/// Whether every word of `[a, a + len)` is zero (read page by page).
fn all_zero(a: u64, len: u64) -> bool {
    let mut buf = vec![0u8; PAGE as usize];
    (0..len / PAGE).all(|i| {
        rt::mem::read_bytes(a + i * PAGE, &mut buf).unwrap();
        buf.iter().all(|&b| b == 0)
    })
}

#[test]
fn recycled_frames_never_leak_data() {
    let stage = Arc::new(AtomicU64::new(0));
    let s2 = stage.clone();
    // 32 MiB: the reader must take most of the frames the writer dirtied.
    let w = Scenario::new()
        .ram(32 << 20)
        .config(|c| c.zero_pool = [16, 64, 0])
        .client("writer", Grants::all(), 16000, move |mm| {
            // Dirty as many frames as possible, through every family.
            let a = mm.mmap_raw(0, 2000 * PAGE, RW, MapFlags::POPULATE).unwrap();
            let h = mm
                .mmap_raw(0, 4 * MIB2, RW, MapFlags::POPULATE.union(MapFlags::HUGE))
                .unwrap();
            let (p, _, _) = mm.alloc_pages(6, Gfp(0)).unwrap().into_raw();
            let v = mm.vmalloc(100 * PAGE).unwrap().leak();
            let fill = vec![0xa5u8; PAGE as usize];
            for (base, n) in [(a, 2000), (h, 2048), (p, 64), (v, 100)] {
                for i in 0..n {
                    rt::mem::write_bytes(base + i * PAGE, &fill).unwrap();
                }
            }
            mm.munmap(a, 2000 * PAGE).unwrap();
            mm.munmap(h, 4 * MIB2).unwrap();
            mm.free_pages(p, 6).unwrap();
            mm.vfree(v).unwrap();
            s2.store(1, Ordering::SeqCst);
        })
        .client("reader", Grants::all(), 16000, move |mm| {
            while stage.load(Ordering::SeqCst) == 0 {
                rt::yield_now();
            }
            // Whatever it gets — demand faults, populate, blocks, page
            // blocks, vmalloc, shared objects, DMA — reads as zero.
            let a = mm.mmap_raw(0, 3000 * PAGE, RW, NOFLAGS).unwrap();
            for i in (0..3000).step_by(7) {
                assert_eq!(peek(a + i * PAGE + 24), 0);
            }
            mm.mm_populate(a, 3000 * PAGE).unwrap();
            assert!(all_zero(a, 3000 * PAGE));
            let h = mm
                .mmap_raw(0, 4 * MIB2, RW, MapFlags::POPULATE.union(MapFlags::HUGE))
                .unwrap();
            assert!(all_zero(h, 4 * MIB2));
            let (p, _, _) = mm.alloc_pages(6, Gfp(0)).unwrap().into_raw();
            assert!(all_zero(p, 64 * PAGE));
            let v = mm.vmalloc(100 * PAGE).unwrap().leak();
            assert!(all_zero(v, 100 * PAGE));
            let s = mm.shm_create(50 * PAGE).unwrap().leak();
            let sa = mm.shm_map(s, 0, RW).map(|m| m.leak()).unwrap();
            assert!(all_zero(sa, 50 * PAGE));
            let addr = mm.dma_alloc_coherent(32 * PAGE).unwrap().leak();
            assert!(all_zero(addr, 32 * PAGE));
        })
        .build();
    w.run_ok();
    let c = w.phys_counters();
    // Some came back through the server's zeroing (others through chunk
    // conversions, which retype them: the kernel zeroes those).
    assert!(c.zeroed > 500, "recycled frames were zeroed: {c:?}");
    w.assert_all_returned();
}

#[test]
fn page_tables_grow_on_demand() {
    let w = Scenario::new()
        .client("sparse", Grants::default(), 4096, |mm| {
            // One page in each of 700 separate 2 MiB ranges: 700 level-3
            // tables, more than the start-up pool holds.
            let a = mm.mmap_raw(0, 700 * MIB2, RW, NOFLAGS).unwrap();
            for i in 0..700 {
                poke(a + i * MIB2 + 8, i);
            }
            for i in (0..700).step_by(50) {
                assert_eq!(peek(a + i * MIB2 + 8), i);
            }
            assert_eq!(mm.resident(), 700);
            mm.munmap(a, 700 * MIB2).unwrap();
        })
        .build();
    w.run_ok();
    let first = w.first();
    let grown = w
        .log
        .lock()
        .unwrap()
        .census
        .iter()
        .map(|c| c.mem.page_tables)
        .max()
        .unwrap();
    assert!(grown > first.mem.page_tables, "{grown} vs {first:?}");
    w.assert_all_returned();
}

#[test]
fn page_table_chunks_go_back_when_their_client_goes() {
    let w = Scenario::new()
        .client("sparse", Grants::default(), 8192, |mm| {
            // One page in each of 1600 separate 2 MiB ranges: 1600
            // level-3 tables, four chunks of them at least.
            let a = mm.mmap_raw(0, 1600 * MIB2, RW, NOFLAGS).unwrap();
            for i in 0..1600 {
                poke(a + i * MIB2 + 8, i);
            }
            assert_eq!(mm.resident(), 1600);
        })
        .build();
    w.run_ok();
    let census = w.log.lock().unwrap().census.clone();
    let grown = census.iter().map(|c| c.mem.page_tables).max().unwrap();
    let first = w.first();
    let last = w.last();
    assert!(grown >= 1600, "{grown} vs {first:?}");
    // The client's exit frees its tables; whole free chunks go back to the
    // allocator down to the pool's size at start (its reserve), keeping one
    // chunk's worth of spare tables (plus the partly used chunks).
    assert!(
        last.mem.page_tables + 1024 <= grown,
        "{grown} -> {:?}",
        last.mem
    );
    assert!(
        last.mem.page_tables <= first.mem.page_tables + 2 * 512
            && last.mem.page_tables >= first.mem.page_tables,
        "{first:?} -> {last:?}"
    );
    w.assert_all_returned();
}

#[test]
fn exhaustion_is_refused_and_changes_nothing() {
    let w = Scenario::new()
        .ram(24 << 20)
        .client("greedy", Grants::all(), 1 << 20, |mm| {
            let before = mm.client_stats().unwrap();
            assert_eq!(
                mm.mmap_raw(0, 8000 * PAGE, RW, MapFlags::POPULATE),
                refused(MmError::NoMemory)
            );
            let a = mm.mmap_raw(0, 8000 * PAGE, RW, NOFLAGS).unwrap();
            assert_eq!(mm.mm_populate(a, 8000 * PAGE), refused(MmError::NoMemory));
            assert_eq!(mm.resident(), before.resident_pages);
            assert_eq!(refusal(mm.shm_create(8000 * PAGE)), MmError::NoMemory);
            assert_eq!(refusal(mm.vmalloc(8000 * PAGE)), MmError::NoMemory);
            assert_eq!(mm.resident(), 0);
            // Take what there is, then fault past the end: fatal, and all comes back.
            let mut got = 0;
            while mm.mm_populate(a + got * PAGE, 256 * PAGE).is_ok() {
                got += 256;
            }
            assert!(got > 2000, "{got}");
            mm.munmap(a, 8000 * PAGE).unwrap();
            assert_eq!(mm.resident(), 0);
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn whole_blocks_change_protection_and_fixed_maps_split_them() {
    let w = Scenario::new()
        .daemon_client("c", Grants::default(), 8192, |mm| {
            let h = mm
                .mmap_raw(0, 4 * MIB2, RW, MapFlags::POPULATE.union(MapFlags::HUGE))
                .unwrap();
            poke(h + 8, 1);
            poke(h + MIB2 + 8, 2);
            // A FIXED map over the middle of the second block splits it.
            let f = mm
                .mmap_raw(h + MIB2 + 4 * PAGE, PAGE, RW, MapFlags::FIXED)
                .unwrap();
            assert_eq!(peek(f), 0);
            assert_eq!(peek(h + MIB2 + 8), 2);
            assert_eq!(mm.follow_pfn(h + MIB2 + 8 * PAGE).map(|_| ()), Ok(()));
            // A whole block, read-only then read-write again (no split).
            let pfn = mm.follow_pfn(h).unwrap();
            mm.mprotect(h, MIB2, Prot::READ).unwrap();
            assert_eq!(mm.follow_pfn(h), Ok(pfn));
            assert_eq!(peek(h + 8), 1);
            mm.mprotect(h, MIB2, RW).unwrap();
            poke(h + 16, 3);
            mm.mprotect(h, MIB2, Prot::READ).unwrap();
            poke(h + 24, 4);
            unreachable!();
        })
        .build();
    w.run_ok();
    assert!(
        w.server_console().contains("access not allowed"),
        "{}",
        w.server_console()
    );
    w.assert_all_returned();
}
