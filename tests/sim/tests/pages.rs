//! The page allocator for clients (alloc_pages, exact, contig), vmalloc, vmap / vm_map_ram, DMA coherent memory, statistics.

use libmm::handles::VmKind;
use libmm::protocol::{Align, Gfp, MapFlags, MmError, Prot};
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
            let p = mm.alloc_pages(3, Gfp::ZERO).unwrap();
            let (a, pfn) = (p.addr(), p.pfn());
            assert_eq!(pfn % 8, 0, "an order-3 block is aligned");
            assert_eq!(p.count(), 8);
            for i in 0..8 {
                assert_eq!(mm.follow_pfn(a + i * PAGE).unwrap(), pfn + i);
                assert_eq!(peek(a + i * PAGE), 0);
                poke(a + i * PAGE, i);
            }
            assert_eq!(mm.resident(), 8);
            assert_eq!(
                refusal(mm.alloc_pages(11, Gfp(0))),
                MmError::InvalidArgument
            );
            assert_eq!(
                refusal(mm.alloc_pages(0, Gfp(0x80))),
                MmError::InvalidArgument
            );
            // Areas are freed only by their own call, whole.
            assert_eq!(mm.munmap(a, PAGE), refused(MmError::Busy));
            assert_eq!(mm.madvise_dontneed(a, PAGE), refused(MmError::Busy));
            assert_eq!(mm.free_pages(a, 2), refused(MmError::NotOwner));
            assert_eq!(mm.free_pages(a + PAGE, 3), refused(MmError::NotOwner));
            // The handle frees it (once).
            p.free().unwrap();
            assert_eq!(mm.free_pages(a, 3), refused(MmError::NotOwner));
            // Exact: not rounded up to a power of two.
            let e = mm.alloc_pages_exact(5 * PAGE, Gfp(0)).unwrap();
            let (ea, epfn) = (e.addr(), e.pfn());
            assert_eq!(e.count(), 5);
            assert_eq!(mm.follow_pfn(ea + 4 * PAGE).unwrap(), epfn + 4);
            assert_eq!(mm.resident(), 5);
            assert_eq!(
                refusal(mm.alloc_pages_exact(0, Gfp(0))),
                MmError::InvalidArgument
            );
            assert_eq!(
                mm.free_pages_exact(ea, 4 * PAGE),
                refused(MmError::InvalidArgument)
            );
            // Dropping the handle frees it.
            drop(e);
            assert_eq!(mm.resident(), 0);
            assert_eq!(
                mm.free_pages_exact(ea, 5 * PAGE),
                refused(MmError::NotOwner)
            );
            // Contig: the same frames again, exactly; busy frames refused.
            let c = mm.alloc_contig_range(epfn, epfn + 3).unwrap();
            assert_eq!((c.pfn(), c.count()), (epfn, 3));
            assert_eq!(mm.follow_pfn(c.addr() + 2 * PAGE).unwrap(), epfn + 2);
            assert_eq!(
                refusal(mm.alloc_contig_range(epfn + 2, epfn + 4)),
                MmError::Busy
            );
            assert_eq!(
                refusal(mm.alloc_contig_range(5, 6)),
                MmError::InvalidArgument
            );
            assert_eq!(
                refusal(mm.alloc_contig_range(9, 6)),
                MmError::InvalidArgument
            );
            let (ca, _, _) = c.into_raw();
            assert_eq!(
                mm.free_contig_range(ca, 2),
                refused(MmError::InvalidArgument)
            );
            mm.free_contig_range(ca, 3).unwrap();
            assert_eq!(mm.resident(), 0);
            // Quota: 1024 pages fit in 4096.
            let big = mm.alloc_pages_exact(1024 * PAGE, Gfp(0)).unwrap();
            assert_eq!(mm.resident(), 1024);
            // A handle given up stays until the client ends.
            big.leak();
        })
        .client("nogrant", Grants::default(), 4096, |mm| {
            assert_eq!(
                refusal(mm.alloc_pages(0, Gfp(0))),
                MmError::PermissionDenied
            );
            assert_eq!(
                refusal(mm.alloc_pages_exact(PAGE, Gfp(0))),
                MmError::PermissionDenied
            );
        })
        .client("small", pages_grant(), 4, |mm| {
            assert_eq!(refusal(mm.alloc_pages(3, Gfp(0))), MmError::QuotaExceeded);
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
            let v = mm.vmalloc(40 * PAGE + 1).unwrap();
            assert_eq!((v.size(), v.kind()), (40 * PAGE + 1, VmKind::Vmalloc));
            let va = v.addr();
            for i in 0..41 {
                assert_eq!(peek(va + i * PAGE), 0, "vmalloc memory is zeroed");
                poke(va + i * PAGE, i);
            }
            assert_eq!(mm.resident(), 41);
            // vmalloc_32 takes DMA32 frames.
            let v32 = mm.vmalloc_32(8 * PAGE).unwrap();
            for i in 0..8 {
                let pfn = mm.follow_pfn(v32.addr() + i * PAGE).unwrap();
                assert!(pfn < (0x4000_0000 + (32 << 20)) / PAGE, "{pfn:#x}");
            }
            let z = mm.vzalloc(PAGE).unwrap();
            assert_eq!(peek(z.addr()), 0);
            let u = mm.vmalloc_user(PAGE).unwrap();
            assert_eq!(peek(u.addr()), 0);
            assert_eq!(refusal(mm.vzalloc(0)), MmError::InvalidArgument);
            assert_eq!(mm.munmap(va, PAGE), refused(MmError::Busy));
            // Guard gaps around vmalloc areas.
            assert_eq!(mm.follow_pfn(va + 41 * PAGE), refused(MmError::NotMapped));
            // vmap: frames the caller owns, mapped again elsewhere.
            let p = mm.alloc_pages(2, Gfp(0)).unwrap();
            let (a, pfn) = (p.addr(), p.pfn());
            poke(a + PAGE, 0x1234);
            let m = mm.vmap(&[pfn + 1, pfn, pfn + 1], Prot::READ_WRITE).unwrap();
            assert_eq!(m.kind(), VmKind::Vmap);
            assert_eq!(peek(m.addr()), 0x1234);
            assert_eq!(peek(m.addr() + 2 * PAGE), 0x1234);
            poke(m.addr() + PAGE + 16, 77);
            assert_eq!(peek(a + 16), 77);
            // While vmapped, the block cannot be freed.
            assert_eq!(mm.free_pages(a, 2), refused(MmError::Busy));
            // Frames not the caller's.
            assert_eq!(refusal(mm.vmap(&[1], Prot::READ)), MmError::NotOwner);
            let anon = mm.mmap(0, PAGE, RW, MapFlags::POPULATE).unwrap();
            let apfn = mm.follow_pfn(anon.addr()).unwrap();
            assert_eq!(refusal(mm.vmap(&[apfn], Prot::READ)), MmError::NotOwner);
            // Refused before sending: no frames, too many.
            assert_eq!(refusal(mm.vmap(&[], Prot::READ)), MmError::InvalidArgument);
            assert_eq!(
                refusal(mm.vmap(&[pfn; 91], Prot::READ)),
                MmError::InvalidArgument
            );
            assert_eq!(
                refusal(mm.vmap(&[pfn], Prot::NONE)),
                MmError::InvalidArgument
            );
            assert_eq!(mm.vunmap(a), refused(MmError::NotOwner));
            m.free().unwrap();
            // vm_map_ram / vm_unmap_ram.
            let r = mm.vm_map_ram(&[pfn + 3]).unwrap();
            poke(r.addr(), 9);
            assert_eq!(peek(a + 3 * PAGE), 9);
            assert_eq!(
                mm.vm_unmap_ram(r.addr(), 2),
                refused(MmError::InvalidArgument)
            );
            drop(r);
            p.free().unwrap();
            let (vaddr, _, _) = v.into_raw();
            mm.vfree(vaddr).unwrap();
            assert_eq!(mm.vfree(vaddr), refused(MmError::NotOwner));
            drop((v32, z, u, anon));
            assert_eq!(mm.resident(), 0);
            assert_eq!(mm.client_stats().unwrap().regions, 0);
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn dma_coherent_memory() {
    let dma32_end = 0x4000_0000 + (32 << 20);
    let w = Scenario::new()
        .config(|c| c.dma32_end = Some(dma32_end))
        .client("drv", Grants::all(), 4096, move |mm| {
            let d = mm.dma_alloc_coherent(3 * PAGE + 5).unwrap();
            let (addr, bus) = (d.addr(), d.bus());
            assert!(bus < dma32_end, "a DMA32 bus address");
            assert_eq!(mm.follow_pfn(addr).unwrap() * PAGE, bus);
            assert_eq!(
                mm.follow_pfn(addr + 3 * PAGE).unwrap() * PAGE,
                bus + 3 * PAGE
            );
            assert_eq!(peek(addr + 3 * PAGE), 0);
            poke(addr, 5);
            // DMA pages may not be mapped cacheable elsewhere.
            assert_eq!(
                refusal(mm.vmap(&[bus / PAGE], Prot::READ)),
                MmError::NotOwner
            );
            assert_eq!(
                mm.dma_free_coherent(addr, PAGE),
                refused(MmError::InvalidArgument)
            );
            assert_eq!(mm.munmap(addr, PAGE), refused(MmError::Busy));
            assert_eq!(mm.madvise_dontneed(addr, PAGE), refused(MmError::Busy));
            d.free().unwrap();
            assert_eq!(
                mm.dma_free_coherent(addr, 3 * PAGE + 5),
                refused(MmError::NotOwner)
            );
            // Aligned: both addresses multiples of the alignment, the run
            // contiguous, the tail beyond the size given back.
            let before: u64 = free_pages(&mm);
            for log2 in [12u8, 16, 20, 22] {
                let d = mm.dma_alloc_coherent_aligned(PAGE, Align(log2)).unwrap();
                assert_eq!(d.addr() % (1 << log2), 0, "2^{log2}");
                assert_eq!(d.bus() % (1 << log2), 0, "2^{log2}");
                assert_eq!(mm.follow_pfn(d.addr()).unwrap() * PAGE, d.bus());
                assert!(d.bus() < dma32_end);
                assert_eq!(free_pages(&mm), before - 1, "one frame taken");
                assert_eq!(mm.resident(), 1);
            }
            let d = mm.dma_alloc_coherent_aligned(5 * PAGE, Align(16)).unwrap();
            assert_eq!((d.addr() % (1 << 16), d.bus() % (1 << 16)), (0, 0));
            for i in 0..5 {
                assert_eq!(
                    mm.follow_pfn(d.addr() + i * PAGE).unwrap() * PAGE,
                    d.bus() + i * PAGE
                );
            }
            assert_eq!(
                refusal(mm.dma_alloc_coherent_aligned(PAGE, Align(23))),
                MmError::InvalidArgument
            );
            assert_eq!(refusal(mm.dma_alloc_coherent(0)), MmError::InvalidArgument);
            assert_eq!(
                refusal(mm.dma_alloc_coherent((4 << 20) + 1)),
                MmError::InvalidArgument
            );
            drop(d);
            assert_eq!(free_pages(&mm), before);
        })
        .client("plain", Grants::default(), 4096, |mm| {
            assert_eq!(
                refusal(mm.dma_alloc_coherent(PAGE)),
                MmError::PermissionDenied
            );
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

/// Free frames in every zone.
fn free_pages(mm: &Client) -> u64 {
    mm.zone_stats()
        .unwrap()
        .as_slice()
        .iter()
        .map(|z| z.free)
        .sum()
}

#[test]
fn statistics_follow_allocations() {
    let w = Scenario::new()
        .client("c", pages_grant(), 4096, |mm| {
            let zones = mm.zone_stats().unwrap();
            let before = free_pages(&mm);
            let managed: u64 = zones.as_slice().iter().map(|z| z.managed).sum();
            assert!(before > 10_000 && before <= managed);
            let p = mm.alloc_pages(8, Gfp(0)).unwrap();
            let after = free_pages(&mm);
            assert_eq!(before - after, 256);
            let z = mm.zone_stats().unwrap();
            let blocks: u64 = z
                .as_slice()
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
            let s = mm.client_stats().unwrap();
            assert_eq!((s.resident_pages, s.regions), (256, 1));
            p.free().unwrap();
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}
