//! Unit tests, one group per area of the allocator.
//!
//! Each test builds a small machine, exercises one behaviour and checks the
//! invariants; refused operations are compared with a clone taken before.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::memory::{AccessError, ArenaMemory, MemoryAccess};

fn one_zone(mib: u64) -> FrameAllocator {
    let a = FrameAllocator::new(FrameConfig::default(), &[r(0, mib * MIB)]).unwrap();
    check(&a);
    a
}

fn total_allocated(a: &FrameAllocator) -> u64 {
    ZoneType::ALL
        .iter()
        .map(|&z| a.zone_stats(z).allocated)
        .sum()
}

// ---- construction -----------------------------------------------------------

#[test]
fn new_splits_zones_and_rounds_ranges() {
    let a = FrameAllocator::new(
        config(8),
        &[
            r(12 * MIB, 16 * MIB - 100),
            r(100, 4 * MIB),
            r(4 * MIB, 6 * MIB),
        ],
    )
    .unwrap();
    check(&a);
    let d = a.zone_stats(ZoneType::Dma32);
    let n = a.zone_stats(ZoneType::Normal);
    // 100 rounds up to a page: [1, 1536) frames.
    assert_eq!(d.present, 6 * 256 - 1);
    assert_eq!(d.start_pfn, pfn_at(4096));
    assert_eq!(n.present, 4 * 256 - 1);
    assert_eq!(n.free, n.present);
    assert_eq!(a.nr_free_pages(), d.present + n.present);
    assert_eq!(a.zone_of(pfn_at(0)), None);
    assert_eq!(a.zone_of(pfn_at(4096)), Some(ZoneType::Dma32));
    assert_eq!(a.zone_of(pfn_at(12 * MIB)), Some(ZoneType::Normal));
    assert_eq!(a.zone_of(pfn_at(7 * MIB)), None);
}

#[test]
fn new_rejects_bad_input() {
    let e = FrameAllocator::new(
        FrameConfig::default(),
        &[r(0, 8 * MIB), r(4 * MIB, 12 * MIB)],
    );
    assert_eq!(e.unwrap_err(), FrameError::InvalidConfig);
    let rev = PhysAddr(RAM + MIB)..PhysAddr(RAM);
    assert_eq!(
        FrameAllocator::new(FrameConfig::default(), &[rev]).unwrap_err(),
        FrameError::InvalidConfig
    );
    for bad in [
        FrameConfig {
            nr_cpus: 0,
            ..FrameConfig::default()
        },
        FrameConfig {
            nr_cpus: 256,
            ..FrameConfig::default()
        },
        FrameConfig {
            dma32_end: PhysAddr(RAM + 1),
            ..FrameConfig::default()
        },
        FrameConfig {
            pcp_batch: Some(0),
            ..FrameConfig::default()
        },
        FrameConfig {
            watermark_scale_factor: 0,
            ..FrameConfig::default()
        },
    ] {
        assert_eq!(
            FrameAllocator::new(bad, &[r(0, MIB)]).unwrap_err(),
            FrameError::InvalidConfig
        );
    }
    // A span too large for u32 indices.
    let huge = [
        PhysAddr(0)..PhysAddr(4096),
        PhysAddr(1 << 46)..PhysAddr((1 << 46) + 4096),
    ];
    let cfg = FrameConfig {
        dma32_end: PhysAddr(0),
        ..FrameConfig::default()
    };
    assert_eq!(
        FrameAllocator::new(cfg, &huge).unwrap_err(),
        FrameError::InvalidConfig
    );
    // Nothing at all is fine: every allocation fails.
    let mut empty = FrameAllocator::new(FrameConfig::default(), &[]).unwrap();
    check(&empty);
    assert_eq!(
        empty.alloc_pages(0, GfpFlags::KERNEL),
        Err(FrameError::NoMemory)
    );
}

#[test]
fn initial_blocks_are_maximal() {
    let a = one_zone(64);
    let mut expect = [0; NR_ORDERS];
    expect[MAX_ORDER as usize] = 16;
    assert_eq!(a.buddyinfo(ZoneType::Dma32), expect);
    assert_eq!(a.buddyinfo(ZoneType::Normal), [0; NR_ORDERS]);
    let mut s = String::new();
    a.write_buddyinfo(&mut s).unwrap();
    assert_eq!(
        s,
        "Node 0, zone    DMA32      0      0      0      0      0      0      0      0      0      0     16\n"
    );
}

// ---- alloc / free -------------------------------------------------------------

#[test]
fn alloc_every_order_and_free_back() {
    let mut a = one_zone(64);
    let before = a.buddyinfo(ZoneType::Dma32);
    let mut got = Vec::new();
    for order in 0..=MAX_ORDER {
        let p = a.alloc_pages(order, GfpFlags::KERNEL).unwrap();
        assert_eq!(p.0 % (1 << order), 0, "aligned to its order");
        got.push((p, order));
        check(&a);
    }
    assert_eq!(total_allocated(&a), (1 << (MAX_ORDER + 1)) - 1);
    for (p, order) in got {
        a.free_pages(p, order).unwrap();
        check(&a);
    }
    a.drain_all_pages();
    check(&a);
    assert_eq!(a.buddyinfo(ZoneType::Dma32), before);
    assert_eq!(total_allocated(&a), 0);
}

#[test]
fn free_takes_addresses_too() {
    let mut a = one_zone(8);
    let p = a.alloc_pages(2, GfpFlags::KERNEL).unwrap();
    assert_eq!(
        a.free_pages(PhysAddr(p.addr().0 + 8), 2),
        Err(FrameError::Misaligned)
    );
    a.free_pages(p.addr(), 2).unwrap();
    check(&a);
}

#[test]
fn bad_frees_change_nothing() {
    let mut a = one_zone(16);
    let big = a.alloc_pages(3, GfpFlags::KERNEL).unwrap();
    let small = a.alloc_pages(0, GfpFlags::KERNEL).unwrap();
    let freed = a.alloc_pages(0, GfpFlags::KERNEL).unwrap();
    a.free_pages(freed, 0).unwrap();
    let freed_big = a.alloc_pages(4, GfpFlags::KERNEL).unwrap();
    a.free_pages(freed_big, 4).unwrap();
    let before = a.clone();
    let cases: Vec<(Pfn, u32, FrameError)> = vec![
        (big, 2, FrameError::OrderMismatch),
        (big, 4, FrameError::OrderMismatch),
        (Pfn(big.0 + 1), 0, FrameError::OrderMismatch),
        (Pfn(big.0 + 4), 2, FrameError::OrderMismatch),
        (small, 11, FrameError::InvalidOrder),
        (small, 1, FrameError::OrderMismatch),
        (freed, 0, FrameError::AlreadyFree),
        (freed_big, 4, FrameError::AlreadyFree),
        (Pfn(freed_big.0 + 3), 0, FrameError::AlreadyFree),
        (pfn_at(64 * MIB), 0, FrameError::NotManaged),
        (Pfn(0), 0, FrameError::NotManaged),
        (Pfn(u64::MAX), 0, FrameError::NotManaged),
    ];
    for (p, order, want) in cases {
        assert_eq!(
            a.free_pages(p, order),
            Err(want),
            "free {p:?} order {order}"
        );
        assert_eq!(a, before, "a refused free changed the allocator");
    }
    a.free_pages(big, 3).unwrap();
    assert_eq!(
        a.free_pages(big, 3),
        Err(FrameError::AlreadyFree),
        "double free"
    );
    assert_eq!(a.free_pages(small, 0), Ok(()));
    assert_eq!(
        a.free_pages(small, 0),
        Err(FrameError::AlreadyFree),
        "double free via pcp"
    );
    check(&a);
}

#[test]
fn invalid_order_is_refused() {
    let mut a = one_zone(8);
    assert_eq!(
        a.alloc_pages(MAX_ORDER + 1, GfpFlags::KERNEL),
        Err(FrameError::InvalidOrder)
    );
    assert_eq!(
        a.alloc_pages(u32::MAX, GfpFlags::KERNEL),
        Err(FrameError::InvalidOrder)
    );
    check(&a);
}

#[test]
fn exhaustion_then_recovery() {
    let cfg = FrameConfig {
        min_free_kbytes: Some(0),
        ..FrameConfig::default()
    };
    let mut a = FrameAllocator::new(cfg, &[r(0, 4 * MIB)]).unwrap();
    let mut got = Vec::new();
    while let Ok(p) = a.alloc_pages(0, GfpFlags::MEMALLOC) {
        got.push(p);
    }
    assert_eq!(got.len(), 1024);
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 1024, "no frame handed out twice");
    check(&a);
    for p in got {
        a.free_pages(p, 0).unwrap();
    }
    a.drain_all_pages();
    assert_eq!(
        a.alloc_pages(MAX_ORDER, GfpFlags::MEMALLOC)
            .map(|p| p.0 % 1024),
        Ok(0)
    );
    check(&a);
}

// ---- zones ------------------------------------------------------------------

#[test]
fn dma32_allocations_stay_in_dma32() {
    let mut a = FrameAllocator::new(config(4), &[r(0, 8 * MIB)]).unwrap();
    let mut n = 0;
    while let Ok(p) = a.alloc_pages(0, GfpFlags::DMA32.with_priority(Priority::Reserve)) {
        assert_eq!(a.zone_of(p), Some(ZoneType::Dma32));
        n += 1;
    }
    assert_eq!(n, 1024);
    assert_eq!(a.zone_stats(ZoneType::Normal).allocated, 0);
    // Normal allocations still work.
    let p = a.alloc_pages(0, GfpFlags::KERNEL).unwrap();
    assert_eq!(a.zone_of(p), Some(ZoneType::Normal));
    check(&a);
}

#[test]
fn normal_prefers_normal_then_falls_back_to_dma32() {
    let cfg = FrameConfig {
        min_free_kbytes: Some(0),
        lowmem_reserve_ratio: 0,
        ..config(4)
    };
    let mut a = FrameAllocator::new(cfg, &[r(0, 8 * MIB)]).unwrap();
    let (low_d, low_n) = (
        a.watermarks(ZoneType::Dma32).low,
        a.watermarks(ZoneType::Normal).low,
    );
    assert_eq!((low_d, low_n), (1, 1), "the scale factor's share");
    let mut zones = Vec::new();
    while let Ok(p) = a.alloc_pages(0, GfpFlags::KERNEL) {
        zones.push(a.zone_of(p).unwrap());
    }
    let in_normal = (1024 - low_n) as usize;
    assert_eq!(zones.len(), in_normal + (1024 - low_d) as usize);
    assert!(zones[..in_normal].iter().all(|&z| z == ZoneType::Normal));
    assert!(zones[in_normal..].iter().all(|&z| z == ZoneType::Dma32));
    check(&a);
}

#[test]
fn lowmem_reserve_protects_dma32_from_normal_allocations() {
    let cfg = FrameConfig {
        min_free_kbytes: Some(0),
        lowmem_reserve_ratio: 8,
        ..config(4)
    };
    let mut a = FrameAllocator::new(cfg, &[r(0, 12 * MIB)]).unwrap();
    let reserve = a.zone_stats(ZoneType::Dma32).lowmem_reserve[ZoneType::Normal.index()];
    assert_eq!(reserve, 2048 / 8);
    let mut in_dma = 0;
    while let Ok(p) = a.alloc_pages(0, GfpFlags::KERNEL) {
        in_dma += (a.zone_of(p) == Some(ZoneType::Dma32)) as u64;
    }
    // Normal allocations left `reserve` pages of DMA32 (watermarks are 0 but
    // low is at least the scale factor's share).
    let d = a.zone_stats(ZoneType::Dma32);
    assert!(
        d.free >= reserve && d.free <= reserve + d.watermarks.low + 1,
        "{d:?}"
    );
    assert_eq!(in_dma + d.free, 1024);
    // ... which DMA32 allocations may still use.
    assert!(a.alloc_pages(0, GfpFlags::DMA32).is_ok());
    check(&a);
}

// ---- watermarks ---------------------------------------------------------------

#[test]
fn watermarks_follow_linux_formulas() {
    let mut a = FrameAllocator::new(config(1024), &[r(0, 2048 * MIB)]).unwrap();
    // Two 1 GiB zones: lowmem 2 GiB, sqrt(2097152 * 16) = 5792 KiB = 1448 pages.
    assert_eq!(a.min_free_kbytes(), 5792);
    let w = a.watermarks(ZoneType::Dma32);
    assert_eq!(w.min, 724);
    // max(724 / 4, 262144 * 10 / 10000) = 262.
    assert_eq!(w.low, 724 + 262);
    assert_eq!(w.high, 724 + 2 * 262);
    assert_eq!(a.watermarks(ZoneType::Normal), w);
    assert_eq!(a.nr_free_zone_pages(ZoneType::Dma32), 262_144 - w.high);
    assert_eq!(a.nr_free_pagecache_pages(), 2 * (262_144 - w.high));
    let s = a.zone_stats(ZoneType::Dma32);
    assert_eq!((s.pcp_batch, s.pcp_high), (63, 378));
    assert_eq!(s.lowmem_reserve, [0, 1024]);

    // Proportional split.
    a.set_min_free_kbytes(Some(4096));
    assert_eq!(a.watermarks(ZoneType::Dma32).min, 512);
    a.set_dma_reserve(131_072);
    assert_eq!(a.dma_reserve(), 131_072);
    let d = a.watermarks(ZoneType::Dma32);
    let n = a.watermarks(ZoneType::Normal);
    assert_eq!(d.min, 1024 * 131_072 / 393_216);
    assert_eq!(n.min, 1024 * 262_144 / 393_216);
    assert!(a.zone_stats(ZoneType::Dma32).pcp_batch <= 63);
    assert_eq!(
        a.set_watermark_scale_factor(0),
        Err(FrameError::InvalidConfig)
    );
    a.set_watermark_scale_factor(1000).unwrap();
    assert_eq!(
        a.watermarks(ZoneType::Normal).low - a.watermarks(ZoneType::Normal).min,
        26_214
    );
    check(&a);
}

/// Allocates order-0 frames at `prio` until refused; returns how many.
fn fill(a: &mut FrameAllocator, prio: Priority) -> u64 {
    let mut n = 0;
    while a
        .alloc_pages(0, GfpFlags::KERNEL.with_priority(prio))
        .is_ok()
    {
        n += 1;
    }
    n
}

#[test]
fn each_priority_stops_at_its_watermark() {
    let cfg = FrameConfig {
        min_free_kbytes: Some(1024),
        ..FrameConfig::default()
    };
    let mut a = FrameAllocator::new(cfg, &[r(0, 16 * MIB)]).unwrap();
    let w = a.watermarks(ZoneType::Dma32);
    assert_eq!(w.min, 256);
    fill(&mut a, Priority::Normal);
    assert_eq!(a.zone_stats(ZoneType::Dma32).free, w.low);
    fill(&mut a, Priority::Atomic);
    assert_eq!(a.zone_stats(ZoneType::Dma32).free, w.min);
    // Freeing one above low lets a normal allocation through again.
    fill(&mut a, Priority::Reserve);
    assert_eq!(a.zone_stats(ZoneType::Dma32).free, 0);
    check(&a);
    // Higher orders respect the watermark with their whole size.
    let mut b = FrameAllocator::new(cfg, &[r(0, 16 * MIB)]).unwrap();
    let mut n = 0;
    while b.alloc_pages(4, GfpFlags::KERNEL).is_ok() {
        n += 16;
    }
    let free = b.zone_stats(ZoneType::Dma32).free;
    assert!(free >= w.low && free < w.low + 16, "free {free}");
    assert_eq!(n + free, 4096);
}

// ---- exact and contiguous ------------------------------------------------------

#[test]
fn alloc_pages_exact_gives_back_the_tail() {
    let mut a = one_zone(16);
    let p = a.alloc_pages_exact(5, GfpFlags::KERNEL).unwrap();
    check(&a);
    assert_eq!(total_allocated(&a), 5);
    // The tail [5, 8) is free again.
    assert!(a.alloc_contig_range(Pfn(p.0 + 5), Pfn(p.0 + 8)).is_ok());
    a.free_contig_range(Pfn(p.0 + 5), 3).unwrap();
    // Part of the run can go back alone, the rest after.
    a.free_pages_exact(Pfn(p.0 + 1), 2).unwrap();
    check(&a);
    assert_eq!(a.free_pages_exact(p, 5), Err(FrameError::AlreadyFree));
    a.free_pages_exact(p, 1).unwrap();
    a.free_pages_exact(Pfn(p.0 + 3), 2).unwrap();
    check(&a);
    assert_eq!(total_allocated(&a), 0);
    a.drain_all_pages();
    assert_eq!(
        a.buddyinfo(ZoneType::Dma32)[MAX_ORDER as usize],
        4,
        "all merged back"
    );
    assert_eq!(
        a.alloc_pages_exact(0, GfpFlags::KERNEL),
        Err(FrameError::InvalidCount)
    );
    assert_eq!(
        a.alloc_pages_exact(1025, GfpFlags::KERNEL),
        Err(FrameError::InvalidCount)
    );
    let q = a.alloc_pages_exact(1024, GfpFlags::KERNEL).unwrap();
    a.free_pages_exact(q.addr(), 1024).unwrap();
    check(&a);
}

#[test]
fn free_pages_exact_refuses_blocks_and_changes_nothing() {
    let mut a = one_zone(16);
    let blk = a.alloc_pages(2, GfpFlags::KERNEL).unwrap();
    let run = a.alloc_pages_exact(3, GfpFlags::KERNEL).unwrap();
    let before = a.clone();
    assert_eq!(a.free_pages_exact(blk, 4), Err(FrameError::OrderMismatch));
    assert_eq!(a.free_pages_exact(run, 4), Err(FrameError::AlreadyFree));
    assert_eq!(a.free_pages_exact(run, 0), Err(FrameError::InvalidRange));
    assert_eq!(
        a.free_pages_exact(Pfn(u64::MAX), 2),
        Err(FrameError::InvalidRange)
    );
    assert_eq!(
        a.free_pages_exact(run, u64::MAX),
        Err(FrameError::InvalidRange)
    );
    assert_eq!(a, before);
    // Freeing a run's order-0 frame with free_pages works too.
    a.free_pages(Pfn(run.0 + 2), 0).unwrap();
    assert_eq!(a.free_pages(run, 1), Err(FrameError::OrderMismatch));
    check(&a);
}

#[test]
fn contig_range_takes_exactly_the_range() {
    let mut a = one_zone(16);
    let s = pfn_at(MIB + 4096 * 3);
    let e = Pfn(s.0 + 700);
    a.alloc_contig_range(s, e).unwrap();
    check(&a);
    assert_eq!(total_allocated(&a), 700);
    for p in [Pfn(s.0 - 1), e] {
        // Neighbours are still free: take them one by one.
        a.alloc_contig_range(p, Pfn(p.0 + 1)).unwrap();
        a.free_contig_range(p, 1).unwrap();
    }
    let before = a.clone();
    assert_eq!(
        a.alloc_contig_range(Pfn(s.0 - 5), Pfn(s.0 + 1)),
        Err(FrameError::Busy)
    );
    assert_eq!(
        a.alloc_contig_range(Pfn(e.0 - 1), Pfn(e.0 + 10)),
        Err(FrameError::Busy)
    );
    assert_eq!(a.alloc_contig_range(e, e), Err(FrameError::InvalidRange));
    assert_eq!(a.alloc_contig_range(e, s), Err(FrameError::InvalidRange));
    assert_eq!(
        a.alloc_contig_range(pfn_at(15 * MIB), pfn_at(17 * MIB)),
        Err(FrameError::NotManaged)
    );
    assert_eq!(a, before, "failed contig allocations change nothing");
    a.free_contig_range(s, 700).unwrap();
    a.drain_all_pages();
    assert_eq!(a.buddyinfo(ZoneType::Dma32)[MAX_ORDER as usize], 4);
    check(&a);
}

#[test]
fn contig_range_takes_pcp_and_pooled_frames() {
    let mut a = one_zone(8);
    let mut mem = ArenaMemory::new(RAM, 8 * MIB as usize);
    let got: Vec<Pfn> = (0..10)
        .map(|_| a.alloc_pages(0, GfpFlags::KERNEL).unwrap())
        .collect();
    for &p in &got {
        a.free_pages(p, 0).unwrap();
    }
    a.refill_zeroed(&mut mem, 4).unwrap();
    assert!(a.zone_stats(ZoneType::Dma32).pcp > 0);
    assert!(a.zone_stats(ZoneType::Dma32).zeroed > 0);
    a.alloc_contig_range(pfn_at(0), pfn_at(8 * MIB)).unwrap();
    check(&a);
    let s = a.zone_stats(ZoneType::Dma32);
    assert_eq!((s.free, s.pcp, s.zeroed, s.allocated), (0, 0, 0, 2048));
    a.free_contig_range(pfn_at(0), 2048).unwrap();
    check(&a);
    assert_eq!(a.buddyinfo(ZoneType::Dma32)[MAX_ORDER as usize], 2);
}

#[test]
fn contig_range_must_stay_in_one_zone() {
    let mut a = FrameAllocator::new(config(4), &[r(0, 8 * MIB)]).unwrap();
    assert_eq!(
        a.alloc_contig_range(pfn_at(3 * MIB), pfn_at(5 * MIB)),
        Err(FrameError::InvalidRange)
    );
    a.alloc_contig_range(pfn_at(3 * MIB), pfn_at(4 * MIB))
        .unwrap();
    a.alloc_contig_range(pfn_at(4 * MIB), pfn_at(5 * MIB))
        .unwrap();
    check(&a);
}

#[test]
fn reserved_ranges_leave_managed_memory() {
    let mut a = one_zone(16);
    let w0 = a.watermarks(ZoneType::Dma32);
    a.reserve_range(pfn_at(0), pfn_at(8 * MIB)).unwrap();
    check(&a);
    let s = a.zone_stats(ZoneType::Dma32);
    assert_eq!((s.present, s.managed, s.reserved), (4096, 2048, 2048));
    assert!(a.watermarks(ZoneType::Dma32).min < w0.min || w0.min == 32);
    assert_eq!(a.free_pages(pfn_at(0), 0), Err(FrameError::Reserved));
    assert_eq!(a.free_pages_exact(pfn_at(0), 1), Err(FrameError::Reserved));
    assert_eq!(
        a.alloc_contig_range(pfn_at(0), pfn_at(4096)),
        Err(FrameError::Busy)
    );
    let p = a.alloc_pages(0, GfpFlags::KERNEL).unwrap();
    assert!(p >= pfn_at(8 * MIB));
    let before = a.clone();
    assert_eq!(
        a.free_reserved_range(pfn_at(0), Pfn(p.0 + 1)),
        Err(FrameError::OrderMismatch)
    );
    assert_eq!(a, before);
    a.free_reserved_range(pfn_at(4 * MIB), pfn_at(8 * MIB))
        .unwrap();
    a.free_reserved_range(pfn_at(0), pfn_at(4 * MIB)).unwrap();
    assert_eq!(
        a.free_reserved_range(pfn_at(0), pfn_at(4096)),
        Err(FrameError::AlreadyFree)
    );
    assert_eq!(a.zone_stats(ZoneType::Dma32).managed, 4096);
    assert_eq!(a.watermarks(ZoneType::Dma32), w0);
    check(&a);
}

// ---- pageblocks and fragmentation -----------------------------------------------------

#[test]
fn pageblock_flags_get_and_set() {
    let mut a = one_zone(8);
    let p = pfn_at(2 * MIB + 4096 * 7);
    assert_eq!(a.get_pageblock_migratetype(p), Ok(MigrateType::Movable));
    assert_eq!(a.get_pfnblock_flags_mask(p, PB_ALL_FLAGS), Ok(1));
    a.set_pfnblock_flags_mask(p, PB_MIGRATE_SKIP, PB_MIGRATE_SKIP)
        .unwrap();
    assert_eq!(
        a.get_pfnblock_flags_mask(p, PB_ALL_FLAGS),
        Ok(PB_MIGRATE_SKIP | 1)
    );
    assert_eq!(a.get_pageblock_migratetype(p), Ok(MigrateType::Movable));
    // Changing the type moves the free pages of that block only.
    a.set_pageblock_migratetype(p, MigrateType::Reclaimable)
        .unwrap();
    check(&a);
    let info = a.pagetypeinfo(ZoneType::Dma32);
    assert_eq!(
        info[MigrateType::Reclaimable as usize][PAGEBLOCK_ORDER as usize],
        1
    );
    assert_eq!(
        info[MigrateType::Movable as usize][PAGEBLOCK_ORDER as usize],
        1
    );
    assert_eq!(info[MigrateType::Movable as usize][MAX_ORDER as usize], 1);
    assert_eq!(
        a.get_pfnblock_flags_mask(p, PB_MIGRATE_SKIP),
        Ok(PB_MIGRATE_SKIP)
    );
    assert_eq!(a.pageblock_counts(ZoneType::Dma32), [0, 3, 1, 0]);
    let before = a.clone();
    assert_eq!(
        a.set_pfnblock_flags_mask(p, 7, PB_MIGRATETYPE_MASK),
        Err(FrameError::InvalidFlags)
    );
    assert_eq!(
        a.set_pfnblock_flags_mask(pfn_at(64 * MIB), 0, 0xff),
        Err(FrameError::NotManaged)
    );
    assert_eq!(
        a.get_pfnblock_flags_mask(Pfn(3), 0xff),
        Err(FrameError::NotManaged)
    );
    assert_eq!(a, before);
    // Back to movable: the block merges with its buddy again.
    a.set_pageblock_migratetype(p, MigrateType::Movable)
        .unwrap();
    check(&a);
    assert_eq!(a.buddyinfo(ZoneType::Dma32)[MAX_ORDER as usize], 2);
}

/// A small deterministic generator for the fragmentation tests.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn unmovable_churn_is_grouped_in_few_pageblocks() {
    let cfg = FrameConfig {
        min_free_kbytes: Some(128),
        ..FrameConfig::default()
    };
    let mut a = FrameAllocator::new(cfg, &[r(0, 64 * MIB)]).unwrap();
    let mut rng = Lcg(7);
    let mut unmovable = Vec::new();
    let mut movable = Vec::new();
    for step in 0..40_000 {
        match rng.next() % 4 {
            0 => unmovable.push(a.alloc_pages(0, GfpFlags::KERNEL).unwrap()),
            1 if !unmovable.is_empty() && unmovable.len() > 1000 => {
                let i = rng.next() as usize % unmovable.len();
                a.free_pages(unmovable.swap_remove(i), 0).unwrap();
            }
            _ if movable.len() < 8000 => {
                movable.push(a.alloc_pages(0, GfpFlags::USER_MOVABLE).unwrap())
            }
            _ => {
                let i = rng.next() as usize % movable.len();
                a.free_pages(movable.swap_remove(i), 0).unwrap();
            }
        }
        if step % 10_000 == 0 {
            check(&a);
        }
    }
    check(&a);
    let mut blocks_with_unmovable: Vec<u64> =
        unmovable.iter().map(|p| p.0 >> PAGEBLOCK_ORDER).collect();
    blocks_with_unmovable.sort();
    blocks_with_unmovable.dedup();
    let needed = (unmovable.len() as u64).div_ceil(PAGEBLOCK_NR_PAGES);
    assert!(
        blocks_with_unmovable.len() as u64 <= needed + 2,
        "{} unmovable pages spread over {} pageblocks",
        unmovable.len(),
        blocks_with_unmovable.len()
    );
    // Once the movable pages are gone, every pageblock without unmovable
    // pages is a free 2 MiB block again.
    for p in movable.drain(..) {
        a.free_pages(p, 0).unwrap();
    }
    a.drain_all_pages();
    let mut big = 0;
    while a
        .alloc_pages(PAGEBLOCK_ORDER, GfpFlags::USER_MOVABLE)
        .is_ok()
    {
        big += 1;
    }
    assert!(
        big as usize >= 32 - blocks_with_unmovable.len() - 1,
        "only {big} 2 MiB blocks"
    );
    check(&a);
}

#[test]
fn movable_steals_small_blocks_without_claiming() {
    let cfg = FrameConfig {
        min_free_kbytes: Some(0),
        ..FrameConfig::default()
    };
    let mut a = FrameAllocator::new(cfg, &[r(0, 4 * MIB)]).unwrap();
    // Everything becomes unmovable: each pageblock is claimed in turn.
    let all: Vec<Pfn> = (0..1024)
        .map(|_| a.alloc_pages(0, GfpFlags::MEMALLOC).unwrap())
        .collect();
    assert_eq!(a.pageblock_counts(ZoneType::Dma32), [2, 0, 0, 0]);
    a.free_pages(all[100], 0).unwrap();
    a.drain_all_pages();
    let p = a
        .alloc_pages(0, GfpFlags::MEMALLOC.with_mobility(Mobility::Movable))
        .unwrap();
    assert_eq!(p, all[100]);
    assert_eq!(
        a.pageblock_counts(ZoneType::Dma32),
        [2, 0, 0, 0],
        "a lone page does not claim the block"
    );
    check(&a);
}

#[test]
fn atomic_high_order_allocations_reserve_a_pageblock() {
    let cfg = FrameConfig {
        min_free_kbytes: Some(2048),
        ..FrameConfig::default()
    };
    let mut a = FrameAllocator::new(cfg, &[r(0, 32 * MIB)]).unwrap();
    // Push the zone below low with ordinary allocations.
    let mut held = Vec::new();
    while let Ok(p) = a.alloc_pages(3, GfpFlags::KERNEL) {
        held.push(p);
    }
    // An atomic order-3 allocation now takes the slow path and reserves its block.
    let p = a.alloc_pages(3, GfpFlags::ATOMIC).unwrap();
    check(&a);
    assert_eq!(
        a.zone_stats(ZoneType::Dma32).reserved_highatomic,
        PAGEBLOCK_NR_PAGES
    );
    assert_eq!(a.get_pageblock_migratetype(p), Ok(MigrateType::HighAtomic));
    // Later atomic allocations come from the reserve first.
    let q = a.alloc_pages(3, GfpFlags::ATOMIC).unwrap();
    assert_eq!(q.0 >> PAGEBLOCK_ORDER, p.0 >> PAGEBLOCK_ORDER);
    a.free_pages(q, 3).unwrap();
    a.free_pages(p, 3).unwrap();
    // Ordinary allocations do not count the reserve's free pages.
    for h in held.drain(..) {
        a.free_pages(h, 3).unwrap();
    }
    check(&a);
    // When ordinary allocations run out, the last reserve block is
    // released (forced) before they fail.
    let mut n = 0;
    while a.alloc_pages(0, GfpFlags::KERNEL).is_ok() {
        n += 1;
    }
    assert_eq!(a.zone_stats(ZoneType::Dma32).reserved_highatomic, 0);
    while a.alloc_pages(0, GfpFlags::MEMALLOC).is_ok() {
        n += 1;
    }
    assert_eq!(n, 8192);
    check(&a);
}

// ---- per-CPU lists ------------------------------------------------------------------

#[test]
fn pcp_lists_cache_and_drain() {
    let cfg = FrameConfig {
        nr_cpus: 2,
        pcp_batch: Some(8),
        pcp_high: Some(32),
        ..FrameConfig::default()
    };
    let mut a = FrameAllocator::new(cfg, &[r(0, 16 * MIB)]).unwrap();
    let p = a.alloc_pages(0, GfpFlags::KERNEL).unwrap();
    assert_eq!(
        a.zone_stats(ZoneType::Dma32).pcp,
        7,
        "a refill brings a batch"
    );
    a.free_pages(p, 0).unwrap();
    assert_eq!(
        a.alloc_pages(0, GfpFlags::KERNEL),
        Ok(p),
        "hot frame reused first"
    );
    let got: Vec<Pfn> = (0..100)
        .map(|_| a.alloc_pages(0, GfpFlags::KERNEL).unwrap())
        .collect();
    for &q in &got {
        a.free_pages(q, 0).unwrap();
        assert!(a.zone_stats(ZoneType::Dma32).pcp < 32);
        check(&a);
    }
    assert_eq!(a.set_cpu(2), Err(FrameError::InvalidCpu));
    assert_eq!(a.drain_pages(5), Err(FrameError::InvalidCpu));
    a.set_cpu(1).unwrap();
    assert_eq!(a.cpu(), 1);
    a.free_pages(p, 0).unwrap();
    let before = a.zone_stats(ZoneType::Dma32).pcp;
    a.drain_pages(0).unwrap();
    assert_eq!(
        a.zone_stats(ZoneType::Dma32).pcp,
        1,
        "cpu 1 keeps its frame ({before} before)"
    );
    check(&a);
    a.drain_pages(1).unwrap();
    assert_eq!(a.zone_stats(ZoneType::Dma32).pcp, 0);
    assert_eq!(a.buddyinfo(ZoneType::Dma32)[MAX_ORDER as usize], 4);
    check(&a);
}

// ---- zeroing ----------------------------------------------------------------------------

/// A memory that refuses every access.
struct Refuse;
impl MemoryAccess for Refuse {
    fn read(&self, addr: u64, _: &mut [u8]) -> Result<(), AccessError> {
        Err(AccessError { addr })
    }
    fn write(&mut self, addr: u64, _: &[u8]) -> Result<(), AccessError> {
        Err(AccessError { addr })
    }
    fn fill(&mut self, addr: u64, _: u64, _: u8) -> Result<(), AccessError> {
        Err(AccessError { addr })
    }
}

fn is_zero(mem: &ArenaMemory, pfn: Pfn, pages: u64) -> bool {
    let mut buf = vec![0xffu8; (pages * 4096) as usize];
    mem.read(pfn.addr().0, &mut buf).unwrap();
    buf.iter().all(|&b| b == 0)
}

#[test]
fn zero_pool_takes_the_cpu_list_first_then_buddy_batches() {
    let cfg = FrameConfig {
        zero_pool_high: [0, 40, 0],
        ..FrameConfig::default()
    };
    let mut a = FrameAllocator::new(cfg, &[r(0, 4 * MIB)]).unwrap();
    let mut mem = ArenaMemory::new(RAM, 4 * MIB as usize);
    mem.fill(RAM, 4 * MIB, 0xaa).unwrap();
    let p = a.alloc_pages(0, GfpFlags::USER_MOVABLE).unwrap();
    a.free_pages(p, 0).unwrap();
    let pcp = a.zone_stats(ZoneType::Dma32).pcp;
    assert!(pcp > 0);
    // One frame: off the CPU's list, not split from a buddy block.
    let free = a.zone_stats(ZoneType::Dma32).free;
    assert_eq!(a.refill_zeroed(&mut mem, 1), Ok(1));
    let s = a.zone_stats(ZoneType::Dma32);
    assert_eq!((s.pcp, s.free, s.zeroed), (pcp - 1, free, 1));
    check(&a);
    // The rest in batches, never past the pool's size; every frame zero.
    a.drain_all_pages();
    assert_eq!(a.refill_zeroed(&mut mem, 100), Ok(39));
    assert_eq!(a.refill_zeroed(&mut mem, 100), Ok(0));
    check(&a);
    for _ in 0..40 {
        let z = a
            .alloc_zeroed(0, GfpFlags::USER_MOVABLE, &mut Refuse)
            .unwrap();
        assert!(is_zero(&mem, z, 1));
    }
    assert_eq!(a.zone_stats(ZoneType::Dma32).zeroed, 0);
    check(&a);
}

#[test]
fn zero_pool_refills_and_serves_zeroed_allocations() {
    let cfg = FrameConfig {
        zero_pool_high: [4, 8, 0],
        ..FrameConfig::default()
    };
    let mut a = FrameAllocator::new(cfg, &[r(0, 4 * MIB)]).unwrap();
    let mut mem = ArenaMemory::new(RAM, 4 * MIB as usize);
    mem.fill(RAM, 4 * MIB, 0xaa).unwrap();
    // Pooling needs unmovable pageblocks for the unmovable list: there are none yet.
    assert_eq!(a.refill_zeroed(&mut mem, 100), Ok(8));
    assert_eq!(a.refill_zeroed(&mut mem, 100), Ok(0), "pool full");
    check(&a);
    let s = a.zone_stats(ZoneType::Dma32);
    assert_eq!((s.zeroed, s.free), (8, 1024));
    let p = a
        .alloc_zeroed(0, GfpFlags::USER_MOVABLE, &mut Refuse)
        .unwrap();
    assert!(is_zero(&mem, p, 1));
    assert_eq!(a.zone_stats(ZoneType::Dma32).zeroed, 7);
    // An unmovable zeroed allocation does not take a movable pooled frame
    // (that would put an unmovable page in a movable pageblock): it is
    // zeroed through the accessor.
    assert_eq!(
        a.alloc_zeroed(0, GfpFlags::KERNEL, &mut Refuse),
        Err(FrameError::AccessFailed)
    );
    check(&a);
    let q = a.alloc_zeroed(0, GfpFlags::KERNEL, &mut mem).unwrap();
    assert!(is_zero(&mem, q, 1));
    assert_eq!(a.zone_stats(ZoneType::Dma32).zeroed, 7);
    // Now there is an unmovable pageblock to fill that pool list from.
    assert_eq!(a.refill_zeroed(&mut mem, 100), Ok(5));
    assert_eq!(a.refill_zeroed(&mut mem, 100), Ok(0));
    for _ in 0..4 {
        let z = a.alloc_zeroed(0, GfpFlags::KERNEL, &mut Refuse).unwrap();
        assert!(is_zero(&mem, z, 1));
    }
    // Ordinary allocations leave the pool alone.
    let r0 = a.alloc_pages(0, GfpFlags::USER_MOVABLE).unwrap();
    assert_eq!(a.zone_stats(ZoneType::Dma32).zeroed, 8);
    assert!(!is_zero(&mem, r0, 1));
    // Higher orders are zeroed through the accessor.
    let big = a.alloc_zeroed(3, GfpFlags::KERNEL, &mut mem).unwrap();
    assert!(is_zero(&mem, big, 8));
    let before = a.clone();
    assert_eq!(
        a.alloc_zeroed(2, GfpFlags::KERNEL, &mut Refuse),
        Err(FrameError::AccessFailed)
    );
    assert_eq!(
        a.alloc_pages_exact_zeroed(3, GfpFlags::KERNEL, &mut Refuse),
        Err(FrameError::AccessFailed)
    );
    check(&a);
    assert_eq!(
        a.zone_stats(ZoneType::Dma32),
        before.zone_stats(ZoneType::Dma32)
    );
    let ex = a
        .alloc_pages_exact_zeroed(3, GfpFlags::KERNEL, &mut mem)
        .unwrap();
    assert!(is_zero(&mem, ex, 3));
    assert_eq!(
        a.refill_zeroed(&mut Refuse, 5),
        Err(FrameError::AccessFailed)
    );
    check(&a);
    a.drain_zeroed();
    assert_eq!(a.zone_stats(ZoneType::Dma32).zeroed, 0);
    check(&a);
}

// ---- page source ----------------------------------------------------------------------------

#[test]
fn page_source_feeds_slabs() {
    let mut a = FrameAllocator::new(config(4), &[r(0, 8 * MIB)]).unwrap();
    let addr = PageSource::alloc_pages(&mut a, 1).unwrap();
    assert_eq!(addr % (2 * 4096), 0);
    PageSource::free_pages(&mut a, addr, 1);
    PageSource::free_pages(&mut a, addr, 1);
    assert_eq!(a.page_source_errors(), 1);
    let mut src = a.source(GfpFlags::DMA32);
    let d = src.alloc_pages(0).unwrap();
    src.free_pages(d, 0);
    assert!(d < RAM + 4 * MIB);
    assert_eq!(a.zone_of(PhysAddr(d).pfn()), Some(ZoneType::Dma32));
    check(&a);
}

#[test]
fn errors_never_use_zero() {
    for e in [
        FrameError::NoMemory,
        FrameError::InvalidOrder,
        FrameError::InvalidCount,
        FrameError::Misaligned,
        FrameError::NotManaged,
        FrameError::AlreadyFree,
        FrameError::OrderMismatch,
        FrameError::Reserved,
        FrameError::Busy,
        FrameError::InvalidRange,
        FrameError::InvalidCpu,
        FrameError::InvalidFlags,
        FrameError::InvalidConfig,
        FrameError::AccessFailed,
    ] {
        assert_ne!(e.code(), 0);
        assert!(!alloc::format!("{e}").is_empty());
    }
}
