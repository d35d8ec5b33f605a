//! Anonymous memory: map (aligned or not), demand faults, populate, protect, discard, unmap, guard regions, 2 MiB blocks, quota.

use libmm::protocol::{Align, MapFlags, MmError, Prot};
use mm_server::Grants;
use sim_scenarios::*;

#[test]
fn start_up_conserves_every_frame() {
    let w = Scenario::new()
        .client("c", Grants::default(), 1000, |mm| {
            let zones = mm.zone_stats().unwrap();
            assert_eq!(zones.as_slice().len(), 2);
            let s = mm.client_stats().unwrap();
            assert_eq!((s.id, s.resident_pages, s.quota_pages), (badge(0), 0, 1000));
        })
        .build();
    w.run_ok();
    let c = w.first();
    assert!(c.conserved(), "{c:?}");
    // 60 MiB of RAM handed out, some of it the server's CNodes and page tables.
    assert!(c.mem.total >= 15000 && c.mem.total <= 15360, "{c:?}");
    assert!(c.mem.reserved > 0 && c.mem.page_tables >= 512, "{c:?}");
    w.assert_all_returned();
}

#[test]
fn demand_faults_zero_fill_and_unmap_frees() {
    let w = Scenario::new()
        .client("c", Grants::default(), 4096, |mm| {
            let a = mm.mmap_raw(0, 64 * PAGE, RW, NOFLAGS).unwrap();
            assert_eq!(mm.resident(), 0);
            // First touch: a zeroed page appears.
            assert_eq!(peek(a), 0);
            poke(a + 8, 0xdead_beef);
            assert_eq!(peek(a + 8), 0xdead_beef);
            poke(a + 63 * PAGE, 7);
            let s = mm.client_stats().unwrap();
            assert_eq!((s.resident_pages, s.faults), (2, 2));
            mm.munmap(a, 64 * PAGE).unwrap();
            assert_eq!(mm.resident(), 0);
            // Recycled frames come back zeroed.
            let b = mm.mmap_raw(0, 64 * PAGE, RW, MapFlags::POPULATE).unwrap();
            for i in 0..64 {
                assert_eq!(peek(b + i * PAGE + 8), 0);
            }
            assert_eq!(mm.resident(), 64);
            mm.munmap(b, 64 * PAGE).unwrap();
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn map_arguments_are_validated() {
    let w = Scenario::new()
        .client("c", Grants::default(), 4096, |mm| {
            assert_eq!(
                mm.mmap_raw(0, 0, RW, NOFLAGS),
                refused(MmError::InvalidArgument)
            );
            assert_eq!(
                mm.mmap_raw(0, 100, RW, NOFLAGS),
                refused(MmError::Unaligned)
            );
            assert_eq!(
                mm.mmap_raw(0, PAGE, Prot(8), NOFLAGS),
                refused(MmError::InvalidArgument)
            );
            assert_eq!(
                mm.mmap_raw(0, PAGE, RW, MapFlags(1 << 12)),
                refused(MmError::InvalidArgument)
            );
            assert_eq!(
                mm.mmap_raw(0x2000_0001, PAGE, RW, MapFlags::FIXED),
                refused(MmError::Unaligned)
            );
            assert_eq!(
                mm.mmap_raw(
                    0,
                    PAGE,
                    RW,
                    MapFlags::FIXED.union(MapFlags::FIXED_NOREPLACE)
                ),
                refused(MmError::InvalidArgument)
            );
            assert_eq!(
                mm.mmap_raw(u64::MAX - PAGE + 1, 2 * PAGE, RW, MapFlags::FIXED),
                refused(MmError::Overflow)
            );
            assert_eq!(
                mm.mmap_raw(0x1000, PAGE, RW, MapFlags::FIXED),
                refused(MmError::Overflow)
            );
            assert_eq!(
                mm.mmap_raw(0, PAGE, RW, MapFlags::GUARD),
                refused(MmError::InvalidArgument)
            );
            // FIXED_NOREPLACE over something: AlreadyMapped; FIXED replaces.
            let a = mm
                .mmap_raw(0x3000_0000, 4 * PAGE, RW, MapFlags::FIXED_NOREPLACE)
                .unwrap();
            assert_eq!(a, 0x3000_0000);
            poke(a, 1);
            assert_eq!(
                mm.mmap_raw(a + PAGE, PAGE, RW, MapFlags::FIXED_NOREPLACE),
                refused(MmError::AlreadyMapped)
            );
            assert_eq!(
                mm.mmap_raw(a + PAGE, PAGE, RW, MapFlags::FIXED),
                Ok(a + PAGE)
            );
            assert_eq!(peek(a), 1);
            // A hint is honoured when free.
            let h = mm.mmap_raw(0x4000_0000, PAGE, RW, NOFLAGS).unwrap();
            assert_eq!(h, 0x4000_0000);
            // Quota: more than the quota cannot be populated.
            assert_eq!(
                mm.mmap_raw(0, 5000 * PAGE, RW, MapFlags::POPULATE),
                refused(MmError::QuotaExceeded)
            );
            // Unmap arguments.
            assert_eq!(mm.munmap(a, 0), refused(MmError::InvalidArgument));
            assert_eq!(mm.munmap(a + 1, PAGE), refused(MmError::Unaligned));
            assert_eq!(mm.munmap(0, PAGE), refused(MmError::Overflow));
            // Unmapping nothing succeeds.
            assert_eq!(mm.munmap(0x5000_0000, PAGE), Ok(()));
            mm.munmap(a, 4 * PAGE).unwrap();
            mm.munmap(h, PAGE).unwrap();
            assert_eq!(mm.resident(), 0);
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn protect_changes_rights_and_populate_backs() {
    let w = Scenario::new()
        .daemon_client("c", Grants::default(), 4096, |mm| {
            let a = mm.mmap_raw(0, 8 * PAGE, RW, NOFLAGS).unwrap();
            assert_eq!(mm.mm_populate(a, 8 * PAGE), Ok(()));
            assert_eq!(mm.resident(), 8);
            assert_eq!(mm.mm_populate(a, 8 * PAGE), Ok(()));
            assert_eq!(mm.client_stats().unwrap().faults, 0);
            poke(a + 3 * PAGE, 33);
            assert_eq!(
                mm.mm_populate(a + 8 * PAGE, PAGE),
                refused(MmError::NotMapped)
            );
            assert_eq!(
                mm.mprotect(a, 8 * PAGE, Prot(9)),
                refused(MmError::InvalidArgument)
            );
            assert_eq!(
                mm.mprotect(a, 16 * PAGE, Prot::READ),
                refused(MmError::NotMapped)
            );
            mm.mprotect(a + 2 * PAGE, 2 * PAGE, Prot::READ).unwrap();
            assert_eq!(peek(a + 3 * PAGE), 33);
            mm.mprotect(a, 8 * PAGE, Prot::NONE).unwrap();
            mm.mprotect(a, 8 * PAGE, RW).unwrap();
            assert_eq!(peek(a + 3 * PAGE), 33);
            poke(a + 3 * PAGE, 34);
            mm.mprotect(a, 8 * PAGE, Prot::READ).unwrap();
            assert_eq!(peek(a + 3 * PAGE), 34);
            // A write to read-only memory is fatal.
            poke(a + 3 * PAGE, 35);
            unreachable!("the write must not complete");
        })
        .build();
    w.run_ok();
    assert!(
        w.server_console().contains("killed: access not allowed"),
        "{}",
        w.server_console()
    );
    assert_eq!(w.stats().fatal_faults, 1);
    w.assert_all_returned();
}

#[test]
fn guard_regions_and_gaps_are_fatal() {
    let w = Scenario::new()
        .daemon_client("guard", Grants::default(), 4096, |mm| {
            let g = mm
                .mmap_raw(0, 4 * PAGE, Prot::NONE, MapFlags::GUARD)
                .unwrap();
            assert_eq!(mm.mprotect(g, PAGE, RW), refused(MmError::InvalidArgument));
            assert_eq!(mm.mm_populate(g, PAGE), refused(MmError::InvalidArgument));
            let _ = peek(g + PAGE);
            unreachable!();
        })
        .daemon_client("gap", Grants::default(), 4096, |mm| {
            let a = mm.mmap_raw(0, 4 * PAGE, RW, NOFLAGS).unwrap();
            poke(a, 1);
            // The page past the region is a guard gap.
            poke(a + 4 * PAGE, 1);
            unreachable!();
        })
        .daemon_client("null", Grants::default(), 4096, |_mm| {
            let _ = peek(0x10);
            unreachable!();
        })
        .build();
    w.run_ok();
    let con = w.server_console();
    assert!(
        con.contains("0x100 killed: access to a guard region"),
        "{con}"
    );
    assert!(
        con.contains("0x101 killed: access outside any region"),
        "{con}"
    );
    assert!(
        con.contains("0x102 killed: access outside any region"),
        "{con}"
    );
    assert_eq!(w.stats().fatal_faults, 3);
    w.assert_all_returned();
}

#[test]
fn huge_regions_use_2mib_blocks_and_split() {
    let w = Scenario::new()
        .client("c", Grants::default(), 8192, |mm| {
            let len = 8 * MIB2;
            let a = mm
                .mmap_raw(0, len, RW, MapFlags::HUGE.union(MapFlags::POPULATE))
                .unwrap();
            assert_eq!(a % MIB2, 0);
            assert_eq!(mm.resident(), 4096);
            // Physically contiguous 2 MiB blocks.
            let p0 = mm.follow_pfn(a).unwrap();
            assert_eq!(p0 % 512, 0);
            assert_eq!(mm.follow_pfn(a + 511 * PAGE).unwrap(), p0 + 511);
            for i in 0..8 {
                poke(a + i * MIB2 + 40, i + 1);
            }
            // Unmapping part of a block splits it, keeping the rest's data.
            mm.munmap(a + PAGE, PAGE).unwrap();
            assert_eq!(peek(a + 40), 1);
            assert_eq!(mm.resident(), 4095);
            // Protecting part of another splits it too.
            mm.mprotect(a + MIB2 + 4 * PAGE, PAGE, Prot::READ).unwrap();
            assert_eq!(peek(a + MIB2 + 40), 2);
            // A demand fault in a HUGE region maps a whole block.
            let b = mm.mmap_raw(0, 4 * MIB2, RW, MapFlags::HUGE).unwrap();
            poke(b + MIB2 + 123 * 8, 5);
            assert_eq!(mm.resident(), 4095 + 512);
            mm.munmap(b, 4 * MIB2).unwrap();
            mm.munmap(a, len).unwrap();
            assert_eq!(mm.resident(), 0);
            // Blocks again, from converted chunks.
            let c = mm
                .mmap_raw(0, 4 * MIB2, RW, MapFlags::HUGE.union(MapFlags::POPULATE))
                .unwrap();
            for i in 0..4 {
                assert_eq!(peek(c + i * MIB2 + 40), 0);
            }
            mm.munmap(c, 4 * MIB2).unwrap();
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn quota_is_enforced_on_faults() {
    let w = Scenario::new()
        .daemon_client("c", Grants::default(), 16, |mm| {
            let a = mm.mmap_raw(0, 64 * PAGE, RW, NOFLAGS).unwrap();
            for i in 0..16 {
                poke(a + i * PAGE, i);
            }
            assert_eq!(
                mm.mm_populate(a, 64 * PAGE),
                refused(MmError::QuotaExceeded)
            );
            assert_eq!(mm.resident(), 16);
            poke(a + 16 * PAGE, 1);
            unreachable!();
        })
        .build();
    w.run_ok();
    assert!(
        w.server_console().contains("out of quota"),
        "{}",
        w.server_console()
    );
    w.assert_all_returned();
}

#[test]
fn lifecycle_and_malformed_messages() {
    let w = Scenario::new()
        .client("c", Grants::default(), 4096, |mm| {
            // Undecodable requests and unknown labels: LABEL_MALFORMED, nothing changed.
            let (info, words) = raw_call(mm.ep(), libmm::protocol::LABEL_REQUEST, &[u64::MAX; 3]);
            assert_eq!(info.label(), libmm::protocol::LABEL_MALFORMED);
            assert!(words.is_empty());
            let (info, _) = raw_call(mm.ep(), 0x1234_5678, &[1, 2]);
            assert_eq!(info.label(), libmm::protocol::LABEL_MALFORMED);
            // Only the supervisor may report deaths.
            assert_eq!(mm.client_died(badge(1)), refused(MmError::PermissionDenied));
            let a = mm.mmap_raw(0, 4 * PAGE, RW, MapFlags::POPULATE).unwrap();
            poke(a, 1);
            mm.exit().unwrap();
            // After Exit the server serves it no more.
            assert_eq!(
                mm.mmap_raw(0, PAGE, RW, NOFLAGS),
                refused(MmError::PermissionDenied)
            );
            assert_eq!(mm.exit(), refused(MmError::PermissionDenied));
        })
        .client("other", Grants::default(), 4096, |mm| {
            let a = mm.mmap_raw(0, 4 * PAGE, RW, MapFlags::POPULATE).unwrap();
            poke(a, 2);
            assert_eq!(peek(a), 2);
        })
        .build();
    w.run_ok();
    assert_eq!(w.stats().malformed, 2);
    w.assert_all_returned();
}

#[test]
fn aligned_maps_are_placed_as_asked() {
    let w = Scenario::new()
        .client("c", Grants::default(), 4096, |mm| {
            // Something small first, so that the next free place is not aligned.
            let small = mm.mmap(0, PAGE, RW, NOFLAGS).unwrap();
            for log2 in [16u8, 22, 24, 30] {
                let m = mm
                    .mmap_aligned(0, 3 * PAGE, RW, MapFlags::POPULATE, Align(log2))
                    .unwrap();
                assert_eq!(m.addr() % (1 << log2), 0, "align 2^{log2}");
                assert_eq!(m.len(), 3 * PAGE);
                poke(m.addr() + 2 * PAGE, 1);
            }
            // An unaligned hint is not taken; an aligned free one is.
            let h = mm
                .mmap_aligned_raw(0x4000_1000, PAGE, RW, NOFLAGS, Align(20))
                .unwrap();
            assert_eq!(h % (1 << 20), 0);
            assert_eq!(
                mm.mmap_aligned_raw(0x4010_0000, PAGE, RW, NOFLAGS, Align(20)),
                Ok(0x4010_0000)
            );
            // A FIXED address must be aligned; at most 1 GiB.
            assert_eq!(
                mm.mmap_aligned_raw(0x5001_0000, PAGE, RW, MapFlags::FIXED, Align(20)),
                refused(MmError::Unaligned)
            );
            assert_eq!(
                mm.mmap_aligned_raw(0x5010_0000, PAGE, RW, MapFlags::FIXED, Align(20)),
                Ok(0x5010_0000)
            );
            assert_eq!(
                mm.mmap_aligned_raw(0, PAGE, RW, NOFLAGS, Align(31)),
                refused(MmError::InvalidArgument)
            );
            // HUGE keeps its 2 MiB alignment when asked for less.
            let huge = mm
                .mmap_aligned(0, MIB2, RW, MapFlags::HUGE, Align(16))
                .unwrap();
            assert_eq!(huge.addr() % MIB2, 0);
            drop(small);
            drop(huge);
            for a in [h, 0x4010_0000, 0x5010_0000] {
                mm.munmap(a, PAGE).unwrap();
            }
            let s = mm.client_stats().unwrap();
            assert_eq!((s.resident_pages, s.regions), (0, 0));
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn discard_drops_pages_and_keeps_the_regions() {
    let w = Scenario::new()
        .client("c", Grants::default(), 4096, |mm| {
            // Anonymous: the pages go, the region stays, they read as zero.
            let a = mm.mmap_raw(0, 16 * PAGE, RW, MapFlags::POPULATE).unwrap();
            for i in 0..16 {
                poke(a + i * PAGE, i + 1);
            }
            let regions = mm.client_stats().unwrap().regions;
            mm.madvise_dontneed(a + 4 * PAGE, 8 * PAGE).unwrap();
            assert_eq!(mm.resident(), 8);
            assert_eq!(mm.client_stats().unwrap().regions, regions);
            assert_eq!(mm.follow_pfn(a + 4 * PAGE), refused(MmError::NotMapped));
            assert_eq!(peek(a + 3 * PAGE), 4);
            assert_eq!(peek(a + 4 * PAGE), 0, "a fresh zero page");
            assert_eq!(peek(a + 12 * PAGE), 13);
            assert_eq!(mm.resident(), 9);
            // Idempotent; the whole region too.
            mm.madvise_dontneed(a, 16 * PAGE).unwrap();
            mm.madvise_dontneed(a, 16 * PAGE).unwrap();
            assert_eq!(mm.resident(), 0);
            assert_eq!(peek(a + 15 * PAGE), 0);
            // A 2 MiB block: discarding a page splits it, the rest kept.
            let h = mm
                .mmap_raw(0, 2 * MIB2, RW, MapFlags::HUGE.union(MapFlags::POPULATE))
                .unwrap();
            poke(h + 8, 7);
            poke(h + MIB2 + 8, 8);
            mm.madvise_dontneed(h + 5 * PAGE, PAGE).unwrap();
            assert_eq!(mm.resident(), 1 + 1024 - 1);
            assert_eq!(peek(h + 8), 7);
            mm.madvise_dontneed(h + MIB2, MIB2).unwrap();
            // A fault in the discarded block maps a whole zeroed block.
            assert_eq!(peek(h + MIB2 + 8), 0);
            assert_eq!(mm.resident(), 1 + 1024 - 1);
            // PROT_NONE: the frames it kept go too.
            let n = mm.mmap_raw(0, 4 * PAGE, RW, MapFlags::POPULATE).unwrap();
            poke(n, 5);
            mm.mprotect(n, 4 * PAGE, Prot::NONE).unwrap();
            let before = mm.resident();
            mm.madvise_dontneed(n, 4 * PAGE).unwrap();
            assert_eq!(mm.resident(), before - 4);
            mm.mprotect(n, 4 * PAGE, RW).unwrap();
            assert_eq!(peek(n), 0);
            // A shared object: unmapped here, contents kept, faults back in.
            let obj = mm.shm_create(2 * PAGE).unwrap();
            let s = obj.map(0, RW).unwrap();
            poke(s.addr() + PAGE, 0x5ba5);
            s.discard().unwrap();
            assert_eq!(mm.follow_pfn(s.addr() + PAGE), refused(MmError::NotMapped));
            assert_eq!(peek(s.addr() + PAGE), 0x5ba5);
            // Guard regions are accepted (nothing to drop).
            let g = mm.mmap(0, 2 * PAGE, Prot::NONE, MapFlags::GUARD).unwrap();
            g.discard().unwrap();
            // Refusals change nothing.
            let before = mm.resident();
            assert_eq!(
                mm.madvise_dontneed(a, 17 * PAGE),
                refused(MmError::NotMapped)
            );
            assert_eq!(mm.madvise_dontneed(a, 0), refused(MmError::InvalidArgument));
            assert_eq!(
                mm.madvise_dontneed(a + 1, PAGE),
                refused(MmError::Unaligned)
            );
            assert_eq!(
                mm.madvise_dontneed(u64::MAX - PAGE + 1, 2 * PAGE),
                refused(MmError::Overflow)
            );
            let v = mm.vmalloc(2 * PAGE).unwrap();
            assert_eq!(mm.madvise_dontneed(v.addr(), PAGE), refused(MmError::Busy));
            let pf = mm.mmap(0, 2 * PAGE, RW, MapFlags::PFNMAP).unwrap();
            assert_eq!(
                mm.madvise_dontneed(pf.addr(), PAGE),
                refused(MmError::InvalidArgument)
            );
            poke(a, 1);
            let pins = mm.get_user_pages_fast(a, 1, true).unwrap();
            assert_eq!(mm.madvise_dontneed(a, PAGE), refused(MmError::Busy));
            assert_eq!(peek(a), 1);
            drop(pins);
            assert_eq!(mm.resident(), before + 2 + 1);
            mm.madvise_dontneed(a, PAGE).unwrap();
            assert_eq!(mm.resident(), before + 2);
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}
