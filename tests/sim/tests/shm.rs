//! Shared memory between clients: create, grant, map, destroy; unmap_mapping_range; pfnmap regions and device memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use libmm::protocol::{MapFlags, MmError, Prot};
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
            let h = mm.shm_create(3 * PAGE).unwrap().leak();
            assert_eq!(mm.resident(), 3);
            assert_eq!(refusal(mm.shm_create(0)), MmError::InvalidArgument);
            assert_eq!(
                mm.shm_grant(h + 100, badge(1), Prot::READ),
                refused(MmError::NoSuchHandle)
            );
            assert_eq!(
                mm.shm_grant(h, 0x9999, Prot::READ),
                refused(MmError::NoSuchHandle)
            );
            mm.shm_grant(h, badge(1), Prot::READ_WRITE).unwrap();
            let a = mm
                .shm_map(h, 0, Prot::READ_WRITE)
                .map(|m| m.leak())
                .unwrap();
            poke(a + 2 * PAGE + 8, 0xfeed);
            h1.store(h, Ordering::SeqCst);
            // The reader writes back through its own mapping.
            assert_eq!(wait_for(&d1), 1);
            assert_eq!(peek(a + 16), 0xbeef);
            // unmap_mapping_range: pages fault back in, same contents.
            mm.unmap_mapping_range(h, 0, 0).unwrap();
            assert_eq!(mm.follow_pfn(a), refused(MmError::NotMapped));
            assert_eq!(peek(a + 16), 0xbeef);
            assert_eq!(
                mm.unmap_mapping_range(h, 3, 1),
                refused(MmError::InvalidArgument)
            );
            // Destroy: the object lives while mapped.
            mm.shm_destroy(h).unwrap();
            assert_eq!(mm.shm_destroy(h), refused(MmError::NoSuchHandle));
            assert_eq!(peek(a + 2 * PAGE + 8), 0xfeed);
            d1.store(2, Ordering::SeqCst);
            mm.munmap(a, 3 * PAGE).unwrap();
            while d1.load(Ordering::SeqCst) != 3 {
                rt::yield_now();
            }
            assert_eq!(mm.resident(), 0);
        })
        .client("reader", Grants::default(), 4096, move |mm| {
            let h = wait_for(&h2);
            // Not the creator: no grants of its own, no destroy.
            assert_eq!(
                mm.shm_grant(h, badge(0), Prot::READ),
                refused(MmError::PermissionDenied)
            );
            assert_eq!(mm.shm_destroy(h), refused(MmError::PermissionDenied));
            assert_eq!(
                mm.shm_map(h, 0, Prot(7)).map(|m| m.leak()),
                refused(MmError::PermissionDenied)
            );
            let b = mm
                .shm_map(h, 0, Prot::READ_WRITE)
                .map(|m| m.leak())
                .unwrap();
            assert_eq!(peek(b + 2 * PAGE + 8), 0xfeed);
            poke(b + 16, 0xbeef);
            assert_eq!(mm.resident(), 0, "shared pages are the creator's");
            assert_eq!(
                mm.mprotect(b, PAGE, Prot(7)),
                refused(MmError::PermissionDenied)
            );
            d2.store(1, Ordering::SeqCst);
            while d2.load(Ordering::SeqCst) != 2 {
                rt::yield_now();
            }
            // Destroyed but still mapped here: still readable.
            assert_eq!(peek(b + 16), 0xbeef);
            mm.munmap(b, 3 * PAGE).unwrap();
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
            let h = mm.shm_create(2 * PAGE).unwrap().leak();
            mm.shm_grant(h, badge(1), Prot::READ).unwrap();
            let a = mm
                .shm_map(h, 0, Prot::READ_WRITE)
                .map(|m| m.leak())
                .unwrap();
            poke(a, 42);
            h1.store(h, Ordering::SeqCst);
            wait_for(&m1);
            // Ends without unmapping or destroying: the supervisor reports it.
        })
        .client("user", Grants::default(), 4096, move |mm| {
            let h = wait_for(&handle);
            let b = mm.shm_map(h, 0, Prot::READ).map(|m| m.leak()).unwrap();
            mapped.store(1, Ordering::SeqCst);
            // Let the creator end and be reclaimed.
            for _ in 0..50 {
                rt::yield_now();
            }
            assert_eq!(peek(b), 42);
            mm.munmap(b, 2 * PAGE).unwrap();
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
                let region = mm.mmap_raw(0, 16 * PAGE, RW, MapFlags::PFNMAP).unwrap();
                assert_eq!(mm.follow_pfn(region), refused(MmError::NotMapped));
                let (blk, pfn, _) = mm
                    .alloc_pages(1, libmm::protocol::Gfp(0))
                    .unwrap()
                    .into_raw();
                poke(blk, 0x77);
                mm.vm_insert_page(region, pfn).unwrap();
                assert_eq!(peek(region), 0x77);
                assert_eq!(
                    mm.vm_insert_page(region, pfn),
                    refused(MmError::AlreadyMapped)
                );
                assert_eq!(
                    mm.vm_insert_page(region + 1, pfn),
                    refused(MmError::Unaligned)
                );
                // Not its frame, not in a PFNMAP region.
                let anon = mm.mmap_raw(0, PAGE, RW, MapFlags::POPULATE).unwrap();
                let apfn = mm.follow_pfn(anon).unwrap();
                assert_eq!(
                    mm.vm_insert_page(region + PAGE, apfn),
                    refused(MmError::NotOwner)
                );
                assert_eq!(
                    mm.vm_insert_page(anon, pfn),
                    refused(MmError::InvalidArgument)
                );
                // Device memory: only the granted part.
                mm.vm_insert_pfn_prot(region + 2 * PAGE, DEV / PAGE, Prot::READ_WRITE)
                    .unwrap();
                poke(region + 2 * PAGE + 8, 0x5a5a);
                assert_eq!(peek(region + 2 * PAGE + 8), 0x5a5a);
                assert_eq!(
                    mm.vm_insert_pfn(region + 3 * PAGE, DEV / PAGE + 5),
                    refused(MmError::PermissionDenied)
                );
                assert_eq!(
                    mm.vm_insert_page(region + 3 * PAGE, DEV / PAGE),
                    refused(MmError::NotOwner)
                );
                assert_eq!(
                    mm.vm_insert_pfn(region + 3 * PAGE, 0x10),
                    refused(MmError::InvalidArgument)
                );
                // remap_pfn_range of the device range; the same frame mapped twice.
                mm.remap_pfn_range(region + 4 * PAGE, DEV / PAGE, 4 * PAGE, Prot::READ)
                    .unwrap();
                assert_eq!(peek(region + 4 * PAGE + 8), 0x5a5a);
                assert_eq!(mm.follow_pfn(region + 5 * PAGE), Ok(DEV / PAGE + 1));
                assert_eq!(
                    mm.remap_pfn_range(region + 8 * PAGE, DEV / PAGE, 8 * PAGE, Prot::READ),
                    refused(MmError::PermissionDenied)
                );
                // While inserted elsewhere, the block cannot be freed.
                assert_eq!(mm.free_pages(blk, 1), refused(MmError::Busy));
                // zap_vma_ptes only on PFNMAP regions.
                assert_eq!(
                    mm.zap_vma_ptes(anon, PAGE),
                    refused(MmError::InvalidArgument)
                );
                mm.zap_vma_ptes(region, 16 * PAGE).unwrap();
                assert_eq!(
                    mm.follow_pfn(region + 4 * PAGE),
                    refused(MmError::NotMapped)
                );
                // vm_iomap_memory over a whole (small) PFNMAP region.
                let io = mm.mmap_raw(0, 2 * PAGE, RW, MapFlags::PFNMAP).unwrap();
                assert_eq!(
                    mm.vm_iomap_memory(io, DEV, PAGE),
                    refused(MmError::InvalidArgument)
                );
                mm.vm_iomap_memory(io, DEV, 4 * PAGE).unwrap();
                assert_eq!(peek(io + 8), 0x5a5a);
                mm.munmap(io, 2 * PAGE).unwrap();
                mm.free_pages(blk, 1).unwrap();
                mm.munmap(region, 16 * PAGE).unwrap();
                mm.munmap(anon, PAGE).unwrap();
            },
        )
        .daemon_client("bad", Grants::default(), 4096, |mm| {
            let region = mm.mmap_raw(0, 4 * PAGE, RW, MapFlags::PFNMAP).unwrap();
            assert_eq!(
                mm.vm_insert_pfn(region, DEV / PAGE),
                refused(MmError::PermissionDenied)
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
