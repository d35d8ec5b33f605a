//! The page allocator for clients (alloc_pages, exact, contig), vmalloc, vmap / vm_map_ram, DMA coherent memory, statistics.

use libmm::protocol::{Gfp, MapFlags, MmError, Prot, Request, VmallocKind};
use mm_server::Grants;
use sim_scenarios::*;

fn pages_grant() -> Grants {
    Grants {
        pages: true,
        ..Grants::default()
    }
}

#[test]
fn alloc_pages_family() {
    let w = Scenario::new()
        .client("c", pages_grant(), 4096, |mm| {
            let (a, pfn) = mm.alloc_pages(3, Gfp::ZERO).unwrap();
            assert_eq!(pfn % 8, 0, "an order-3 block is aligned");
            for i in 0..8 {
                assert_eq!(mm.follow_pfn(a + i * PAGE).unwrap(), pfn + i);
                assert_eq!(peek(a + i * PAGE), 0);
                poke(a + i * PAGE, i);
            }
            assert_eq!(mm.stats().resident_pages, 8);
            assert_eq!(mm.alloc_pages(11, Gfp(0)), Err(MmError::InvalidArgument));
            assert_eq!(mm.alloc_pages(0, Gfp(0x80)), Err(MmError::InvalidArgument));
            // Areas are freed only by their own call, whole.
            assert_eq!(mm.unmap(a, PAGE), Err(MmError::Busy));
            assert_eq!(
                mm.done(&Request::FreePages { addr: a, order: 2 }),
                Err(MmError::NotOwner)
            );
            assert_eq!(
                mm.done(&Request::FreePages {
                    addr: a + PAGE,
                    order: 3
                }),
                Err(MmError::NotOwner)
            );
            mm.done(&Request::FreePages { addr: a, order: 3 }).unwrap();
            assert_eq!(
                mm.done(&Request::FreePages { addr: a, order: 3 }),
                Err(MmError::NotOwner)
            );
            // Exact.
            let (e, epfn) = mm
                .pages(&Request::AllocPagesExact {
                    count: 5,
                    gfp: Gfp(0),
                })
                .unwrap();
            assert_eq!(mm.follow_pfn(e + 4 * PAGE).unwrap(), epfn + 4);
            assert_eq!(
                mm.pages(&Request::AllocPagesExact {
                    count: 0,
                    gfp: Gfp(0)
                }),
                Err(MmError::InvalidArgument)
            );
            assert_eq!(
                mm.done(&Request::FreePagesExact { addr: e, count: 4 }),
                Err(MmError::InvalidArgument)
            );
            mm.done(&Request::FreePagesExact { addr: e, count: 5 })
                .unwrap();
            // Contig: the same frames again, exactly; busy frames refused.
            let (c, cpfn) = mm
                .pages(&Request::AllocContigRange {
                    start_pfn: epfn,
                    end_pfn: epfn + 3,
                })
                .unwrap();
            assert_eq!(cpfn, epfn);
            assert_eq!(mm.follow_pfn(c + 2 * PAGE).unwrap(), epfn + 2);
            assert_eq!(
                mm.pages(&Request::AllocContigRange {
                    start_pfn: epfn + 2,
                    end_pfn: epfn + 4,
                }),
                Err(MmError::Busy)
            );
            assert_eq!(
                mm.pages(&Request::AllocContigRange {
                    start_pfn: 5,
                    end_pfn: 6,
                }),
                Err(MmError::InvalidArgument)
            );
            assert_eq!(
                mm.pages(&Request::AllocContigRange {
                    start_pfn: 9,
                    end_pfn: 6,
                }),
                Err(MmError::InvalidArgument)
            );
            mm.done(&Request::FreeContigRange { addr: c, count: 3 })
                .unwrap();
            assert_eq!(mm.stats().resident_pages, 0);
            // Quota.
            assert_eq!(
                mm.pages(&Request::AllocPagesExact {
                    count: 1024,
                    gfp: Gfp(0)
                })
                .map(|_| ()),
                Ok(())
            );
        })
        .client("nogrant", Grants::default(), 4096, |mm| {
            assert_eq!(mm.alloc_pages(0, Gfp(0)), Err(MmError::PermissionDenied));
            assert_eq!(
                mm.pages(&Request::AllocPagesExact {
                    count: 1,
                    gfp: Gfp(0)
                }),
                Err(MmError::PermissionDenied)
            );
        })
        .client("small", pages_grant(), 4, |mm| {
            assert_eq!(mm.alloc_pages(3, Gfp(0)), Err(MmError::QuotaExceeded));
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn vmalloc_family_and_vmap() {
    let w = Scenario::new()
        .config(|c| c.dma32_end = Some(0x4000_0000 + (32 << 20)))
        .client("c", pages_grant(), 8192, |mm| {
            let v = mm.vmalloc(40 * PAGE + 1, VmallocKind::Plain).unwrap();
            for i in 0..41 {
                assert_eq!(peek(v + i * PAGE), 0, "vmalloc memory is zeroed");
                poke(v + i * PAGE, i);
            }
            assert_eq!(mm.stats().resident_pages, 41);
            // vmalloc_32 takes DMA32 frames.
            let v32 = mm.vmalloc(8 * PAGE, VmallocKind::Dma32).unwrap();
            for i in 0..8 {
                let pfn = mm.follow_pfn(v32 + i * PAGE).unwrap();
                assert!(pfn < (0x4000_0000 + (32 << 20)) / PAGE, "{pfn:#x}");
            }
            assert_eq!(
                mm.vmalloc(0, VmallocKind::Zeroed),
                Err(MmError::InvalidArgument)
            );
            assert_eq!(mm.unmap(v, PAGE), Err(MmError::Busy));
            // Guard gaps around vmalloc areas.
            assert_eq!(mm.follow_pfn(v + 41 * PAGE), Err(MmError::NotMapped));
            // vmap: frames the caller owns, mapped again elsewhere.
            let (a, pfn) = mm.alloc_pages(2, Gfp(0)).unwrap();
            poke(a + PAGE, 0x1234);
            let m = mm.vmap(&[pfn + 1, pfn, pfn + 1], Prot::READ_WRITE).unwrap();
            assert_eq!(peek(m), 0x1234);
            assert_eq!(peek(m + 2 * PAGE), 0x1234);
            poke(m + PAGE + 16, 77);
            assert_eq!(peek(a + 16), 77);
            // While vmapped, the block cannot be freed.
            assert_eq!(
                mm.done(&Request::FreePages { addr: a, order: 2 }),
                Err(MmError::Busy)
            );
            // Frames not the caller's.
            assert_eq!(mm.vmap(&[1], Prot::READ), Err(MmError::NotOwner));
            let anon = mm.map(0, PAGE, RW, MapFlags::POPULATE).unwrap();
            let apfn = mm.follow_pfn(anon).unwrap();
            assert_eq!(mm.vmap(&[apfn], Prot::READ), Err(MmError::NotOwner));
            assert_eq!(mm.vmap(&[], Prot::READ), Err(MmError::InvalidArgument));
            assert_eq!(mm.vmap(&[pfn], Prot::NONE), Err(MmError::InvalidArgument));
            assert_eq!(
                mm.done(&Request::Vunmap { addr: a }),
                Err(MmError::NotOwner)
            );
            mm.done(&Request::Vunmap { addr: m }).unwrap();
            // vm_map_ram / vm_unmap_ram.
            let r = mm
                .mapped(&Request::VmMapRam {
                    pfns: libmm::protocol::List::from_slice(&[pfn + 3]).unwrap(),
                })
                .unwrap();
            poke(r, 9);
            assert_eq!(peek(a + 3 * PAGE), 9);
            assert_eq!(
                mm.done(&Request::VmUnmapRam { addr: r, count: 2 }),
                Err(MmError::InvalidArgument)
            );
            mm.done(&Request::VmUnmapRam { addr: r, count: 1 }).unwrap();
            mm.done(&Request::FreePages { addr: a, order: 2 }).unwrap();
            mm.done(&Request::Vfree { addr: v }).unwrap();
            assert_eq!(mm.done(&Request::Vfree { addr: v }), Err(MmError::NotOwner));
            mm.done(&Request::Vfree { addr: v32 }).unwrap();
            mm.unmap(anon, PAGE).unwrap();
            assert_eq!(mm.stats().resident_pages, 0);
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn dma_coherent_memory() {
    let w = Scenario::new()
        .config(|c| c.dma32_end = Some(0x4000_0000 + (32 << 20)))
        .client("drv", Grants::all(), 4096, |mm| {
            let r = mm.call(&Request::DmaAllocCoherent { size: 3 * PAGE + 5 });
            let Answer::Ok(libmm::protocol::Reply::Dma { addr, bus }) = r else {
                panic!("{r:?}")
            };
            assert!(bus < 0x4000_0000 + (32 << 20), "a DMA32 bus address");
            assert_eq!(mm.follow_pfn(addr).unwrap() * PAGE, bus);
            assert_eq!(
                mm.follow_pfn(addr + 3 * PAGE).unwrap() * PAGE,
                bus + 3 * PAGE
            );
            assert_eq!(peek(addr + 3 * PAGE), 0);
            poke(addr, 5);
            // DMA pages may not be mapped cacheable elsewhere.
            assert_eq!(mm.vmap(&[bus / PAGE], Prot::READ), Err(MmError::NotOwner));
            assert_eq!(
                mm.done(&Request::DmaFreeCoherent { addr, size: PAGE }),
                Err(MmError::InvalidArgument)
            );
            assert_eq!(mm.unmap(addr, PAGE), Err(MmError::Busy));
            mm.done(&Request::DmaFreeCoherent {
                addr,
                size: 3 * PAGE + 5,
            })
            .unwrap();
            assert_eq!(
                mm.done(&Request::DmaFreeCoherent {
                    addr,
                    size: 3 * PAGE + 5
                }),
                Err(MmError::NotOwner)
            );
        })
        .client("plain", Grants::default(), 4096, |mm| {
            assert_eq!(
                mm.call(&Request::DmaAllocCoherent { size: PAGE }),
                Answer::Err(MmError::PermissionDenied)
            );
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn statistics_follow_allocations() {
    let w = Scenario::new()
        .client("c", pages_grant(), 4096, |mm| {
            let before: u64 = mm.zones().iter().map(|z| z.free).sum();
            let managed: u64 = mm.zones().iter().map(|z| z.managed).sum();
            assert!(before > 10_000 && before <= managed);
            let (a, _) = mm.alloc_pages(8, Gfp(0)).unwrap();
            let after: u64 = mm.zones().iter().map(|z| z.free).sum();
            assert_eq!(before - after, 256);
            let z = mm.zones();
            let blocks: u64 = z
                .iter()
                .map(|z| {
                    z.free_blocks
                        .iter()
                        .enumerate()
                        .map(|(o, &n)| (n as u64) << o)
                        .sum::<u64>()
                })
                .sum();
            assert!(blocks <= after);
            let s = mm.stats();
            assert_eq!((s.resident_pages, s.regions), (256, 1));
            mm.done(&Request::FreePages { addr: a, order: 8 }).unwrap();
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}
