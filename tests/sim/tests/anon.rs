//! Anonymous memory: map, demand faults, populate, protect, unmap, guard regions, 2 MiB blocks, quota.

use libmm::protocol::{MapFlags, MmError, Prot};
use mm_server::Grants;
use sim_scenarios::*;

#[test]
fn start_up_conserves_every_frame() {
    let w = Scenario::new()
        .client("c", Grants::default(), 1000, |mm| {
            let zones = mm.zones();
            assert_eq!(zones.len(), 2);
            let s = mm.stats();
            assert_eq!((s.id, s.resident_pages, s.quota_pages), (badge(0), 0, 1000));
        })
        .build();
    w.run_ok();
    let c = w.first();
    assert!(c.conserved(), "{c:?}");
    // 60 MiB of RAM handed out, some of it the server's CNodes and page tables.
    assert!(c.total >= 15000 && c.total <= 15360, "{c:?}");
    assert!(c.reserved > 0 && c.page_tables >= 512, "{c:?}");
    w.assert_all_returned();
}

#[test]
fn demand_faults_zero_fill_and_unmap_frees() {
    let w = Scenario::new()
        .client("c", Grants::default(), 4096, |mm| {
            let a = mm.map(0, 64 * PAGE, RW, NOFLAGS).unwrap();
            assert_eq!(mm.stats().resident_pages, 0);
            // First touch: a zeroed page appears.
            assert_eq!(peek(a), 0);
            poke(a + 8, 0xdead_beef);
            assert_eq!(peek(a + 8), 0xdead_beef);
            poke(a + 63 * PAGE, 7);
            let s = mm.stats();
            assert_eq!((s.resident_pages, s.faults), (2, 2));
            mm.unmap(a, 64 * PAGE).unwrap();
            assert_eq!(mm.stats().resident_pages, 0);
            // Recycled frames come back zeroed.
            let b = mm.map(0, 64 * PAGE, RW, MapFlags::POPULATE).unwrap();
            for i in 0..64 {
                assert_eq!(peek(b + i * PAGE + 8), 0);
            }
            assert_eq!(mm.stats().resident_pages, 64);
            mm.unmap(b, 64 * PAGE).unwrap();
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn map_arguments_are_validated() {
    let w = Scenario::new()
        .client("c", Grants::default(), 4096, |mm| {
            assert_eq!(mm.map(0, 0, RW, NOFLAGS), Err(MmError::InvalidArgument));
            assert_eq!(mm.map(0, 100, RW, NOFLAGS), Err(MmError::Unaligned));
            assert_eq!(
                mm.map(0, PAGE, Prot(8), NOFLAGS),
                Err(MmError::InvalidArgument)
            );
            assert_eq!(
                mm.map(0, PAGE, RW, MapFlags(1 << 12)),
                Err(MmError::InvalidArgument)
            );
            assert_eq!(
                mm.map(0x2000_0001, PAGE, RW, MapFlags::FIXED),
                Err(MmError::Unaligned)
            );
            assert_eq!(
                mm.map(
                    0,
                    PAGE,
                    RW,
                    MapFlags::FIXED.union(MapFlags::FIXED_NOREPLACE)
                ),
                Err(MmError::InvalidArgument)
            );
            assert_eq!(
                mm.map(u64::MAX - PAGE + 1, 2 * PAGE, RW, MapFlags::FIXED),
                Err(MmError::Overflow)
            );
            assert_eq!(
                mm.map(0x1000, PAGE, RW, MapFlags::FIXED),
                Err(MmError::Overflow)
            );
            assert_eq!(
                mm.map(0, PAGE, RW, MapFlags::GUARD),
                Err(MmError::InvalidArgument)
            );
            // FIXED_NOREPLACE over something: AlreadyMapped; FIXED replaces.
            let a = mm
                .map(0x3000_0000, 4 * PAGE, RW, MapFlags::FIXED_NOREPLACE)
                .unwrap();
            assert_eq!(a, 0x3000_0000);
            poke(a, 1);
            assert_eq!(
                mm.map(a + PAGE, PAGE, RW, MapFlags::FIXED_NOREPLACE),
                Err(MmError::AlreadyMapped)
            );
            assert_eq!(mm.map(a + PAGE, PAGE, RW, MapFlags::FIXED), Ok(a + PAGE));
            assert_eq!(peek(a), 1);
            // A hint is honoured when free.
            let h = mm.map(0x4000_0000, PAGE, RW, NOFLAGS).unwrap();
            assert_eq!(h, 0x4000_0000);
            // Quota: more than the quota cannot be populated.
            assert_eq!(
                mm.map(0, 5000 * PAGE, RW, MapFlags::POPULATE),
                Err(MmError::QuotaExceeded)
            );
            // Unmap arguments.
            assert_eq!(mm.unmap(a, 0), Err(MmError::InvalidArgument));
            assert_eq!(mm.unmap(a + 1, PAGE), Err(MmError::Unaligned));
            assert_eq!(mm.unmap(0, PAGE), Err(MmError::Overflow));
            // Unmapping nothing succeeds.
            assert_eq!(mm.unmap(0x5000_0000, PAGE), Ok(()));
            mm.unmap(a, 4 * PAGE).unwrap();
            mm.unmap(h, PAGE).unwrap();
            assert_eq!(mm.stats().resident_pages, 0);
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn protect_changes_rights_and_populate_backs() {
    let w = Scenario::new()
        .daemon_client("c", Grants::default(), 4096, |mm| {
            let a = mm.map(0, 8 * PAGE, RW, NOFLAGS).unwrap();
            assert_eq!(mm.populate(a, 8 * PAGE), Ok(()));
            assert_eq!(mm.stats().resident_pages, 8);
            assert_eq!(mm.populate(a, 8 * PAGE), Ok(()));
            assert_eq!(mm.stats().faults, 0);
            poke(a + 3 * PAGE, 33);
            assert_eq!(mm.populate(a + 8 * PAGE, PAGE), Err(MmError::NotMapped));
            assert_eq!(
                mm.protect(a, 8 * PAGE, Prot(9)),
                Err(MmError::InvalidArgument)
            );
            assert_eq!(
                mm.protect(a, 16 * PAGE, Prot::READ),
                Err(MmError::NotMapped)
            );
            mm.protect(a + 2 * PAGE, 2 * PAGE, Prot::READ).unwrap();
            assert_eq!(peek(a + 3 * PAGE), 33);
            mm.protect(a, 8 * PAGE, Prot::NONE).unwrap();
            mm.protect(a, 8 * PAGE, RW).unwrap();
            assert_eq!(peek(a + 3 * PAGE), 33);
            poke(a + 3 * PAGE, 34);
            mm.protect(a, 8 * PAGE, Prot::READ).unwrap();
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
            let g = mm.map(0, 4 * PAGE, Prot::NONE, MapFlags::GUARD).unwrap();
            assert_eq!(mm.protect(g, PAGE, RW), Err(MmError::InvalidArgument));
            assert_eq!(mm.populate(g, PAGE), Err(MmError::InvalidArgument));
            let _ = peek(g + PAGE);
            unreachable!();
        })
        .daemon_client("gap", Grants::default(), 4096, |mm| {
            let a = mm.map(0, 4 * PAGE, RW, NOFLAGS).unwrap();
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
                .map(0, len, RW, MapFlags::HUGE.union(MapFlags::POPULATE))
                .unwrap();
            assert_eq!(a % MIB2, 0);
            assert_eq!(mm.stats().resident_pages, 4096);
            // Physically contiguous 2 MiB blocks.
            let p0 = mm.follow_pfn(a).unwrap();
            assert_eq!(p0 % 512, 0);
            assert_eq!(mm.follow_pfn(a + 511 * PAGE).unwrap(), p0 + 511);
            for i in 0..8 {
                poke(a + i * MIB2 + 40, i + 1);
            }
            // Unmapping part of a block splits it, keeping the rest's data.
            mm.unmap(a + PAGE, PAGE).unwrap();
            assert_eq!(peek(a + 40), 1);
            assert_eq!(mm.stats().resident_pages, 4095);
            // Protecting part of another splits it too.
            mm.protect(a + MIB2 + 4 * PAGE, PAGE, Prot::READ).unwrap();
            assert_eq!(peek(a + MIB2 + 40), 2);
            // A demand fault in a HUGE region maps a whole block.
            let b = mm.map(0, 4 * MIB2, RW, MapFlags::HUGE).unwrap();
            poke(b + MIB2 + 123 * 8, 5);
            assert_eq!(mm.stats().resident_pages, 4095 + 512);
            mm.unmap(b, 4 * MIB2).unwrap();
            mm.unmap(a, len).unwrap();
            assert_eq!(mm.stats().resident_pages, 0);
            // Blocks again, from converted chunks.
            let c = mm
                .map(0, 4 * MIB2, RW, MapFlags::HUGE.union(MapFlags::POPULATE))
                .unwrap();
            for i in 0..4 {
                assert_eq!(peek(c + i * MIB2 + 40), 0);
            }
            mm.unmap(c, 4 * MIB2).unwrap();
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn quota_is_enforced_on_faults() {
    let w = Scenario::new()
        .daemon_client("c", Grants::default(), 16, |mm| {
            let a = mm.map(0, 64 * PAGE, RW, NOFLAGS).unwrap();
            for i in 0..16 {
                poke(a + i * PAGE, i);
            }
            assert_eq!(mm.populate(a, 64 * PAGE), Err(MmError::QuotaExceeded));
            assert_eq!(mm.stats().resident_pages, 16);
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
            let (info, words) = raw_call(mm.ep, libmm::protocol::LABEL_REQUEST, &[u64::MAX; 3]);
            assert_eq!(info.label(), libmm::protocol::LABEL_MALFORMED);
            assert!(words.is_empty());
            let (info, _) = raw_call(mm.ep, 0x1234_5678, &[1, 2]);
            assert_eq!(info.label(), libmm::protocol::LABEL_MALFORMED);
            // Only the supervisor may report deaths.
            assert_eq!(
                mm.done(&libmm::protocol::Request::ClientDied { client: badge(1) }),
                Err(MmError::PermissionDenied)
            );
            let a = mm.map(0, 4 * PAGE, RW, MapFlags::POPULATE).unwrap();
            poke(a, 1);
            mm.exit();
            // After Exit the server serves it no more.
            assert_eq!(mm.map(0, PAGE, RW, NOFLAGS), Err(MmError::PermissionDenied));
            assert_eq!(
                mm.done(&libmm::protocol::Request::Exit),
                Err(MmError::PermissionDenied)
            );
        })
        .client("other", Grants::default(), 4096, |mm| {
            let a = mm.map(0, 4 * PAGE, RW, MapFlags::POPULATE).unwrap();
            poke(a, 2);
            assert_eq!(peek(a), 2);
        })
        .build();
    w.run_ok();
    assert_eq!(w.stats().malformed, 2);
    w.assert_all_returned();
}
