//! User memory access: copy_to_user / copy_from_user with partial copies, clear_user, memdup_user, get_user_pages_fast.

use libmm::protocol::{MapFlags, MmError, Prot};
use mm_server::Grants;
use sim_scenarios::*;

#[test]
fn copies_within_a_client_and_partial_copies() {
    let w = Scenario::new()
        .client("c", Grants::default(), 4096, |mm| {
            let me = mm.badge;
            let a = mm.mmap_raw(0, 4 * PAGE, RW, NOFLAGS).unwrap();
            let mut bytes = Vec::new();
            for i in 0..2048u64 {
                bytes.extend_from_slice(&(i * 3).to_le_bytes());
            }
            rt::mem::write_bytes(a, &bytes).unwrap();
            let b = mm.mmap_raw(0, 4 * PAGE, RW, NOFLAGS).unwrap();
            // Across page boundaries on both sides, into untouched pages.
            assert_eq!(mm.copy_to_user(me, b + 100, a + 8, 3 * PAGE), Ok(0));
            for i in 0..10 {
                assert_eq!(peek(b + 100 + i * 8), (i + 1) * 3);
            }
            // A partial copy: the destination ends after 4 pages.
            assert_eq!(mm.copy_to_user(me, b + 3 * PAGE, a, 2 * PAGE), Ok(PAGE));
            // A source in a guard gap: nothing copied.
            assert_eq!(mm.copy_from_user(me, b, a + 4 * PAGE, 16), Ok(16));
            // Read-only destination: nothing written there.
            mm.mprotect(b, PAGE, Prot::READ).unwrap();
            assert_eq!(mm.copy_to_user(me, b, a, 8), Ok(8));
            assert_eq!(mm.copy_to_user(me, b + PAGE - 8, a, 16), Ok(16));
            mm.mprotect(b, PAGE, RW).unwrap();
            // Zero length, too long, unknown client.
            assert_eq!(mm.copy_to_user(me, b, a, 0), Ok(0));
            assert_eq!(
                mm.copy_to_user(me, b, a, mm_server::MAX_COPY + 1),
                refused(MmError::InvalidArgument)
            );
            assert_eq!(
                mm.copy_to_user(0x4444, b, a, 8),
                refused(MmError::NoSuchHandle)
            );
            // Wrapping addresses stop the copy, not the server.
            assert_eq!(mm.copy_to_user(me, u64::MAX - 3, a, 8), Ok(8));
            // clear_user.
            assert_eq!(mm.clear_user(me, a + 8, 2 * PAGE), Ok(0));
            assert_eq!(peek(a), 0);
            assert_eq!(peek(a + 8), 0);
            assert_eq!(peek(a + 2 * PAGE), 0);
            assert_eq!(peek(a + 2 * PAGE + 8), (PAGE / 8 * 2 + 1) * 3);
            assert_eq!(mm.clear_user(me, a + 3 * PAGE, 2 * PAGE), Ok(PAGE));
            // memdup_user: a mapping of the copy, as long as the server says.
            poke(b, 0x1111);
            let d = mm.memdup_user(me, b, 12).unwrap();
            assert_eq!(d.len(), PAGE);
            assert_eq!(peek(d.addr()), 0x1111);
            assert_eq!(
                refusal(mm.memdup_user(me, b + 3 * PAGE, 2 * PAGE)),
                MmError::Fault
            );
            d.munmap().unwrap();
            mm.munmap(a, 4 * PAGE).unwrap();
            mm.munmap(b, 4 * PAGE).unwrap();
            assert_eq!(mm.resident(), 0);
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn copies_between_clients_need_the_grant() {
    let w = Scenario::new()
        .client(
            "server",
            Grants {
                user_access: true,
                ..Grants::default()
            },
            4096,
            |mm| {
                let buf = mm.mmap_raw(0, PAGE, RW, MapFlags::POPULATE).unwrap();
                poke(buf, 0xabcd);
                // The other client's memory, by its regions and page map.
                let target = mm.mmap_raw(0, PAGE, RW, NOFLAGS).unwrap();
                let _ = target;
                // Its address space is its own: find its region by asking it
                // to be written at an address it mapped (0x5000_0000).
                loop {
                    match mm.copy_to_user(badge(1), 0x5000_0000, buf, 8) {
                        Ok(0) => break,
                        Ok(8) => rt::yield_now(),
                        r => panic!("{r:?}"),
                    }
                }
                assert_eq!(mm.copy_from_user(badge(1), buf + 8, 0x5000_0008, 8), Ok(0));
                assert_eq!(peek(buf + 8), 0x7777);
            },
        )
        .client("user", Grants::default(), 4096, |mm| {
            let a = mm.mmap_raw(0x5000_0000, PAGE, RW, MapFlags::FIXED).unwrap();
            poke(a + 8, 0x7777);
            // Without the grant, another client's memory is out of reach.
            assert_eq!(
                mm.copy_to_user(badge(0), 0x1000, a, 8),
                refused(MmError::PermissionDenied)
            );
            while peek(a) != 0xabcd {
                rt::yield_now();
            }
            for _ in 0..20 {
                rt::yield_now();
            }
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn pinned_pages_stay_until_put() {
    let w = Scenario::new()
        .client("c", Grants::default(), 4096, |mm| {
            let a = mm.mmap_raw(0, 8 * PAGE, RW, NOFLAGS).unwrap();
            let pins = mm.get_user_pages_fast(a + PAGE, 3, true).unwrap();
            assert_eq!(pins.pfns().len(), 3);
            assert_eq!(mm.follow_pfn(a + 2 * PAGE), Ok(pins.pfns()[1]));
            assert_eq!(mm.resident(), 3);
            assert_eq!(mm.munmap(a, 8 * PAGE), refused(MmError::Busy));
            assert_eq!(mm.munmap(a + 3 * PAGE, PAGE), refused(MmError::Busy));
            assert_eq!(mm.munmap(a + 4 * PAGE, PAGE), Ok(()));
            // Errors change nothing: a count of 0, past the region, misaligned.
            for (addr, count) in [(a, 0), (a + 6 * PAGE, 4), (a + 1, 1), (a, 91)] {
                assert!(matches!(
                    mm.get_user_pages_fast(addr, count, false),
                    Err(Error::Mm(_))
                ));
            }
            assert_eq!(mm.resident(), 3);
            assert_eq!(mm.put_user_pages(a, 2), refused(MmError::InvalidArgument));
            // Dropping the handle puts them.
            drop(pins);
            assert_eq!(mm.munmap(a, 8 * PAGE), Ok(()));
            // Read-only pages cannot be pinned for writing.
            let r = mm.mmap_raw(0, PAGE, Prot::READ, NOFLAGS).unwrap();
            assert_eq!(refusal(mm.get_user_pages_fast(r, 1, true)), MmError::Fault);
            // Pinning a page of a 2 MiB block splits it first; the frame stays put.
            let h = mm
                .mmap_raw(0, MIB2, RW, MapFlags::HUGE.union(MapFlags::POPULATE))
                .unwrap();
            poke(h + 5 * PAGE, 99);
            let pinned = mm.get_user_pages_fast(h + 5 * PAGE, 1, false).unwrap();
            mm.mprotect(h, PAGE, Prot::READ).unwrap();
            assert_eq!(mm.follow_pfn(h + 5 * PAGE), Ok(pinned.pfns()[0]));
            assert_eq!(peek(h + 5 * PAGE), 99);
            // Still pinned at the end: the server takes the pins back too.
            pinned.leak();
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}
