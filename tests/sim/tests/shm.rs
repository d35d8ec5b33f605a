//! Shared memory between clients: create, grant, map, destroy; unmap_mapping_range; pfnmap regions and device memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use libmm::protocol::{MapFlags, MmError, Prot, Request};
use mm_server::Grants;
use sim_scenarios::*;

/// Spins (yielding) until `cell` holds a non-zero value, and returns it.
fn wait_for(cell: &AtomicU64) -> u64 {
    loop {
        let v = cell.load(Ordering::SeqCst);
        if v != 0 {
            return v;
        }
        rt::yield_now();
    }
}

#[test]
fn two_clients_share_memory() {
    let handle = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let (h1, d1) = (handle.clone(), done.clone());
    let (h2, d2) = (handle.clone(), done.clone());
    let w = Scenario::new()
        .client("owner", Grants::default(), 4096, move |mm| {
            let h = mm.shm_create(3 * PAGE).unwrap();
            assert_eq!(mm.stats().resident_pages, 3);
            assert_eq!(mm.shm_create(0), Err(MmError::InvalidArgument));
            assert_eq!(
                mm.done(&Request::ShmGrant {
                    handle: h + 100,
                    to: badge(1),
                    prot: Prot::READ
                }),
                Err(MmError::NoSuchHandle)
            );
            assert_eq!(
                mm.done(&Request::ShmGrant {
                    handle: h,
                    to: 0x9999,
                    prot: Prot::READ
                }),
                Err(MmError::NoSuchHandle)
            );
            mm.done(&Request::ShmGrant {
                handle: h,
                to: badge(1),
                prot: Prot::READ_WRITE,
            })
            .unwrap();
            let a = mm
                .mapped(&Request::ShmMap {
                    handle: h,
                    addr: 0,
                    prot: Prot::READ_WRITE,
                })
                .unwrap();
            poke(a + 2 * PAGE + 8, 0xfeed);
            h1.store(h, Ordering::SeqCst);
            // The reader writes back through its own mapping.
            assert_eq!(wait_for(&d1), 1);
            assert_eq!(peek(a + 16), 0xbeef);
            // unmap_mapping_range: pages fault back in, same contents.
            mm.done(&Request::UnmapMappingRange {
                handle: h,
                first: 0,
                count: 0,
            })
            .unwrap();
            assert_eq!(mm.follow_pfn(a), Err(MmError::NotMapped));
            assert_eq!(peek(a + 16), 0xbeef);
            assert_eq!(
                mm.done(&Request::UnmapMappingRange {
                    handle: h,
                    first: 3,
                    count: 1
                }),
                Err(MmError::InvalidArgument)
            );
            // Destroy: the object lives while mapped.
            mm.done(&Request::ShmDestroy { handle: h }).unwrap();
            assert_eq!(
                mm.done(&Request::ShmDestroy { handle: h }),
                Err(MmError::NoSuchHandle)
            );
            assert_eq!(peek(a + 2 * PAGE + 8), 0xfeed);
            d1.store(2, Ordering::SeqCst);
            mm.unmap(a, 3 * PAGE).unwrap();
            while d1.load(Ordering::SeqCst) != 3 {
                rt::yield_now();
            }
            assert_eq!(mm.stats().resident_pages, 0);
        })
        .client("reader", Grants::default(), 4096, move |mm| {
            let h = wait_for(&h2);
            // Not the creator: no grants of its own, no destroy.
            assert_eq!(
                mm.done(&Request::ShmGrant {
                    handle: h,
                    to: badge(0),
                    prot: Prot::READ
                }),
                Err(MmError::PermissionDenied)
            );
            assert_eq!(
                mm.done(&Request::ShmDestroy { handle: h }),
                Err(MmError::PermissionDenied)
            );
            assert_eq!(
                mm.mapped(&Request::ShmMap {
                    handle: h,
                    addr: 0,
                    prot: Prot(7)
                }),
                Err(MmError::PermissionDenied)
            );
            let b = mm
                .mapped(&Request::ShmMap {
                    handle: h,
                    addr: 0,
                    prot: Prot::READ_WRITE,
                })
                .unwrap();
            assert_eq!(peek(b + 2 * PAGE + 8), 0xfeed);
            poke(b + 16, 0xbeef);
            assert_eq!(
                mm.stats().resident_pages,
                0,
                "shared pages are the creator's"
            );
            assert_eq!(mm.protect(b, PAGE, Prot(7)), Err(MmError::PermissionDenied));
            d2.store(1, Ordering::SeqCst);
            while d2.load(Ordering::SeqCst) != 2 {
                rt::yield_now();
            }
            // Destroyed but still mapped here: still readable.
            assert_eq!(peek(b + 16), 0xbeef);
            mm.unmap(b, 3 * PAGE).unwrap();
            d2.store(3, Ordering::SeqCst);
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn shared_object_outlives_its_dead_creator() {
    let handle = Arc::new(AtomicU64::new(0));
    let mapped = Arc::new(AtomicU64::new(0));
    let (h1, m1) = (handle.clone(), mapped.clone());
    let w = Scenario::new()
        .client("creator", Grants::default(), 4096, move |mm| {
            let h = mm.shm_create(2 * PAGE).unwrap();
            mm.done(&Request::ShmGrant {
                handle: h,
                to: badge(1),
                prot: Prot::READ,
            })
            .unwrap();
            let a = mm
                .mapped(&Request::ShmMap {
                    handle: h,
                    addr: 0,
                    prot: Prot::READ_WRITE,
                })
                .unwrap();
            poke(a, 42);
            h1.store(h, Ordering::SeqCst);
            wait_for(&m1);
            // Ends without unmapping or destroying: the supervisor reports it.
        })
        .client("user", Grants::default(), 4096, move |mm| {
            let h = wait_for(&handle);
            let b = mm
                .mapped(&Request::ShmMap {
                    handle: h,
                    addr: 0,
                    prot: Prot::READ,
                })
                .unwrap();
            mapped.store(1, Ordering::SeqCst);
            // Let the creator end and be reclaimed.
            for _ in 0..50 {
                rt::yield_now();
            }
            assert_eq!(peek(b), 42);
            mm.unmap(b, 2 * PAGE).unwrap();
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn pfnmap_regions_take_inserted_frames_and_device_memory() {
    const DEV: u64 = 0x0a00_0000;
    let w = Scenario::new()
        .device(DEV, 8 * PAGE)
        .client(
            "drv",
            Grants {
                pages: true,
                devices: vec![(DEV, 4 * PAGE)],
                ..Grants::default()
            },
            4096,
            |mm| {
                let region = mm.map(0, 16 * PAGE, RW, MapFlags::PFNMAP).unwrap();
                assert_eq!(mm.follow_pfn(region), Err(MmError::NotMapped));
                let (blk, pfn) = mm.alloc_pages(1, libmm::protocol::Gfp(0)).unwrap();
                poke(blk, 0x77);
                mm.done(&Request::VmInsertPage { addr: region, pfn })
                    .unwrap();
                assert_eq!(peek(region), 0x77);
                assert_eq!(
                    mm.done(&Request::VmInsertPage { addr: region, pfn }),
                    Err(MmError::AlreadyMapped)
                );
                assert_eq!(
                    mm.done(&Request::VmInsertPage {
                        addr: region + 1,
                        pfn
                    }),
                    Err(MmError::Unaligned)
                );
                // Not its frame, not in a PFNMAP region.
                let anon = mm.map(0, PAGE, RW, MapFlags::POPULATE).unwrap();
                let apfn = mm.follow_pfn(anon).unwrap();
                assert_eq!(
                    mm.done(&Request::VmInsertPage {
                        addr: region + PAGE,
                        pfn: apfn
                    }),
                    Err(MmError::NotOwner)
                );
                assert_eq!(
                    mm.done(&Request::VmInsertPage { addr: anon, pfn }),
                    Err(MmError::InvalidArgument)
                );
                // Device memory: only the granted part.
                mm.done(&Request::VmInsertPfnProt {
                    addr: region + 2 * PAGE,
                    pfn: DEV / PAGE,
                    prot: Prot::READ_WRITE,
                })
                .unwrap();
                poke(region + 2 * PAGE + 8, 0x5a5a);
                assert_eq!(peek(region + 2 * PAGE + 8), 0x5a5a);
                assert_eq!(
                    mm.done(&Request::VmInsertPfn {
                        addr: region + 3 * PAGE,
                        pfn: DEV / PAGE + 5
                    }),
                    Err(MmError::PermissionDenied)
                );
                assert_eq!(
                    mm.done(&Request::VmInsertPage {
                        addr: region + 3 * PAGE,
                        pfn: DEV / PAGE
                    }),
                    Err(MmError::NotOwner)
                );
                assert_eq!(
                    mm.done(&Request::VmInsertPfn {
                        addr: region + 3 * PAGE,
                        pfn: 0x10
                    }),
                    Err(MmError::InvalidArgument)
                );
                // remap_pfn_range of the device range; the same frame mapped twice.
                mm.done(&Request::RemapPfnRange {
                    addr: region + 4 * PAGE,
                    pfn: DEV / PAGE,
                    size: 4 * PAGE,
                    prot: Prot::READ,
                })
                .unwrap();
                assert_eq!(peek(region + 4 * PAGE + 8), 0x5a5a);
                assert_eq!(mm.follow_pfn(region + 5 * PAGE), Ok(DEV / PAGE + 1));
                assert_eq!(
                    mm.done(&Request::RemapPfnRange {
                        addr: region + 8 * PAGE,
                        pfn: DEV / PAGE,
                        size: 8 * PAGE,
                        prot: Prot::READ,
                    }),
                    Err(MmError::PermissionDenied)
                );
                // While inserted elsewhere, the block cannot be freed.
                assert_eq!(
                    mm.done(&Request::FreePages {
                        addr: blk,
                        order: 1
                    }),
                    Err(MmError::Busy)
                );
                // zap_vma_ptes only on PFNMAP regions.
                assert_eq!(
                    mm.done(&Request::ZapVmaPtes {
                        addr: anon,
                        len: PAGE
                    }),
                    Err(MmError::InvalidArgument)
                );
                mm.done(&Request::ZapVmaPtes {
                    addr: region,
                    len: 16 * PAGE,
                })
                .unwrap();
                assert_eq!(mm.follow_pfn(region + 4 * PAGE), Err(MmError::NotMapped));
                // vm_iomap_memory over a whole (small) PFNMAP region.
                let io = mm.map(0, 2 * PAGE, RW, MapFlags::PFNMAP).unwrap();
                assert_eq!(
                    mm.done(&Request::VmIomapMemory {
                        addr: io,
                        phys: DEV,
                        len: PAGE
                    }),
                    Err(MmError::InvalidArgument)
                );
                mm.done(&Request::VmIomapMemory {
                    addr: io,
                    phys: DEV,
                    len: 4 * PAGE,
                })
                .unwrap();
                assert_eq!(peek(io + 8), 0x5a5a);
                mm.unmap(io, 2 * PAGE).unwrap();
                mm.done(&Request::FreePages {
                    addr: blk,
                    order: 1,
                })
                .unwrap();
                mm.unmap(region, 16 * PAGE).unwrap();
                mm.unmap(anon, PAGE).unwrap();
            },
        )
        .daemon_client("bad", Grants::default(), 4096, |mm| {
            let region = mm.map(0, 4 * PAGE, RW, MapFlags::PFNMAP).unwrap();
            assert_eq!(
                mm.done(&Request::VmInsertPfn {
                    addr: region,
                    pfn: DEV / PAGE
                }),
                Err(MmError::PermissionDenied)
            );
            // Touching a PFNMAP page with nothing inserted is fatal.
            let _ = peek(region);
            unreachable!();
        })
        .build();
    w.run_ok();
    assert!(
        w.server_console().contains("0x101 killed"),
        "{}",
        w.server_console()
    );
    w.assert_all_returned();
}
