//! The typed calls and the RAII handles against the mock server.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use mm_core::addr::PAGE_SIZE;
use mm_core::memory::MemoryAccess;

use crate::handles::{PagesKind, VmKind};
use crate::mm::Mm;
use crate::mock::{MOCK_CLIENT, MockMm};
use crate::protocol::{Align, Gfp};
use crate::protocol::{
    LABEL_ERROR, LABEL_MALFORMED, LABEL_OK, List, MAX_PFNS, MAX_WORDS, MapFlags, MmError, Prot,
    Reply, Request, VmallocKind, encode,
};
use crate::transport::{CallError, Error};

const RW: Prot = Prot::READ_WRITE;
const NONE: MapFlags = MapFlags(0);

type Call = Box<dyn Fn(&Mm<MockMm>)>;

/// A call whose result (and handle) is discarded without releasing anything.
fn call<R>(f: impl Fn(&Mm<MockMm>) -> R + 'static) -> Call {
    Box::new(move |mm| core::mem::forget(f(mm)))
}

#[test]
fn every_call_sends_its_request() {
    let s = MockMm::new();
    let mm = s.mm();
    let pfns = vec![0x40000u64, 0x40001];
    let list = List::from_slice(&pfns).unwrap();
    let cases: Vec<(Request, Call)> = vec![
        (
            Request::Map {
                addr: 0x2000_0000,
                len: 8192,
                prot: RW,
                flags: MapFlags::POPULATE,
                align: Align::PAGE,
            },
            call(|mm| mm.mmap(0x2000_0000, 8192, RW, MapFlags::POPULATE)),
        ),
        (
            Request::Map {
                addr: 0,
                len: 8 << 20,
                prot: RW,
                flags: MapFlags::default(),
                align: Align::LARGE,
            },
            call(|mm| mm.mmap_aligned(0, 8 << 20, RW, MapFlags::default(), Align::LARGE)),
        ),
        (
            Request::Discard {
                addr: 0x5000,
                len: 4096,
            },
            call(|mm| mm.madvise_dontneed(0x5000, 4096)),
        ),
        (
            Request::Unmap {
                addr: 0x5000,
                len: 4096,
            },
            call(|mm| mm.munmap(0x5000, 4096)),
        ),
        (
            Request::Protect {
                addr: 0x5000,
                len: 4096,
                prot: Prot::READ,
            },
            call(|mm| mm.mprotect(0x5000, 4096, Prot::READ)),
        ),
        (
            Request::Populate {
                addr: 0x5000,
                len: 4096,
            },
            call(|mm| mm.mm_populate(0x5000, 4096)),
        ),
        (
            Request::AllocPages {
                order: 3,
                gfp: Gfp::ZERO,
            },
            call(|mm| mm.alloc_pages(3, Gfp::ZERO)),
        ),
        (
            Request::FreePages {
                addr: 0x7000,
                order: 3,
            },
            call(|mm| mm.free_pages(0x7000, 3)),
        ),
        (
            Request::AllocPagesExact {
                count: 3,
                gfp: Gfp::DMA32,
            },
            call(|mm| mm.alloc_pages_exact(2 * PAGE_SIZE + 1, Gfp::DMA32)),
        ),
        (
            Request::FreePagesExact {
                addr: 0x7000,
                count: 2,
            },
            call(|mm| mm.free_pages_exact(0x7000, 2 * PAGE_SIZE)),
        ),
        (
            Request::AllocContigRange {
                start_pfn: 0x100,
                end_pfn: 0x108,
            },
            call(|mm| mm.alloc_contig_range(0x100, 0x108)),
        ),
        (
            Request::FreeContigRange {
                addr: 0x7000,
                count: 8,
            },
            call(|mm| mm.free_contig_range(0x7000, 8)),
        ),
        (
            Request::Vmalloc {
                size: 10_000,
                kind: VmallocKind::Plain,
            },
            call(|mm| mm.vmalloc(10_000)),
        ),
        (
            Request::Vmalloc {
                size: 10_000,
                kind: VmallocKind::Zeroed,
            },
            call(|mm| mm.vzalloc(10_000)),
        ),
        (
            Request::Vmalloc {
                size: 10_000,
                kind: VmallocKind::User,
            },
            call(|mm| mm.vmalloc_user(10_000)),
        ),
        (
            Request::Vmalloc {
                size: 10_000,
                kind: VmallocKind::Dma32,
            },
            call(|mm| mm.vmalloc_32(10_000)),
        ),
        (Request::Vfree { addr: 0x9000 }, call(|mm| mm.vfree(0x9000))),
        (
            Request::Vmap {
                pfns: list.clone(),
                prot: Prot::READ,
            },
            call(move |mm| mm.vmap(&[0x40000, 0x40001], Prot::READ)),
        ),
        (
            Request::Vunmap { addr: 0x9000 },
            call(|mm| mm.vunmap(0x9000)),
        ),
        (
            Request::VmMapRam { pfns: list },
            call(move |mm| mm.vm_map_ram(&[0x40000, 0x40001])),
        ),
        (
            Request::VmUnmapRam {
                addr: 0x9000,
                count: 2,
            },
            call(|mm| mm.vm_unmap_ram(0x9000, 2)),
        ),
        (
            Request::VmInsertPage {
                addr: 0x9000,
                pfn: 7,
            },
            call(|mm| mm.vm_insert_page(0x9000, 7)),
        ),
        (
            Request::VmInsertPfn {
                addr: 0x9000,
                pfn: 7,
            },
            call(|mm| mm.vm_insert_pfn(0x9000, 7)),
        ),
        (
            Request::VmInsertPfnProt {
                addr: 0x9000,
                pfn: 7,
                prot: Prot::READ,
            },
            call(|mm| mm.vm_insert_pfn_prot(0x9000, 7, Prot::READ)),
        ),
        (
            Request::RemapPfnRange {
                addr: 0x9000,
                pfn: 7,
                size: 8192,
                prot: RW,
            },
            call(|mm| mm.remap_pfn_range(0x9000, 7, 8192, RW)),
        ),
        (
            Request::VmIomapMemory {
                addr: 0x9000,
                phys: 0x900_0000,
                len: 4096,
            },
            call(|mm| mm.vm_iomap_memory(0x9000, 0x900_0000, 4096)),
        ),
        (
            Request::ZapVmaPtes {
                addr: 0x9000,
                len: 4096,
            },
            call(|mm| mm.zap_vma_ptes(0x9000, 4096)),
        ),
        (
            Request::UnmapMappingRange {
                handle: 4,
                first: 1,
                count: 2,
            },
            call(|mm| mm.unmap_mapping_range(4, 1, 2)),
        ),
        (
            Request::FollowPfn { addr: 0x9000 },
            call(|mm| mm.follow_pfn(0x9000)),
        ),
        (
            Request::ShmCreate { size: 5000 },
            call(|mm| mm.shm_create(5000)),
        ),
        (
            Request::ShmGrant {
                handle: 4,
                to: 9,
                prot: Prot::READ,
            },
            call(|mm| mm.shm_grant(4, 9, Prot::READ)),
        ),
        (
            Request::ShmMap {
                handle: 4,
                addr: 0,
                prot: RW,
            },
            call(|mm| mm.shm_map(4, 0, RW)),
        ),
        (
            Request::ShmDestroy { handle: 4 },
            call(|mm| mm.shm_destroy(4)),
        ),
        (
            Request::CopyToUser {
                client: 2,
                dst: 0x10,
                src: 0x20,
                len: 30,
            },
            call(|mm| mm.copy_to_user(2, 0x10, 0x20, 30)),
        ),
        (
            Request::CopyFromUser {
                client: 2,
                dst: 0x10,
                src: 0x20,
                len: 30,
            },
            call(|mm| mm.copy_from_user(2, 0x10, 0x20, 30)),
        ),
        (
            Request::ClearUser {
                client: 2,
                addr: 0x10,
                len: 30,
            },
            call(|mm| mm.clear_user(2, 0x10, 30)),
        ),
        (
            Request::MemdupUser {
                client: 2,
                src: 0x20,
                len: 30,
            },
            call(|mm| mm.memdup_user(2, 0x20, 30)),
        ),
        (
            Request::GetUserPagesFast {
                addr: 0x9000,
                count: 3,
                write: true,
            },
            call(|mm| mm.get_user_pages_fast(0x9000, 3, true)),
        ),
        (
            Request::PutUserPages {
                addr: 0x9000,
                count: 3,
            },
            call(|mm| mm.put_user_pages(0x9000, 3)),
        ),
        (
            Request::DmaAllocCoherent {
                size: 6000,
                align: Align::PAGE,
            },
            call(|mm| mm.dma_alloc_coherent(6000)),
        ),
        (
            Request::DmaAllocCoherent {
                size: 6000,
                align: Align(16),
            },
            call(|mm| mm.dma_alloc_coherent_aligned(6000, Align(16))),
        ),
        (
            Request::DmaFreeCoherent {
                addr: 0x9000,
                size: 6000,
            },
            call(|mm| mm.dma_free_coherent(0x9000, 6000)),
        ),
        (Request::ZoneStats, call(|mm| mm.zone_stats())),
        (Request::ClientStats, call(|mm| mm.client_stats())),
        (Request::MemInfo, call(|mm| mm.mem_info())),
        (
            Request::ClientDied { client: 5 },
            call(|mm| mm.client_died(5)),
        ),
        (Request::Exit, call(|mm| mm.exit())),
    ];
    for (expected, make_call) in cases {
        let before = s.requests();
        make_call(&mm);
        let log = s.server().requests_since(before).to_vec();
        assert_eq!(log, vec![expected]);
    }
}

#[test]
fn common_requests_use_the_register_path_and_big_ones_the_buffer() {
    let s = MockMm::new();
    let mm = s.mm();
    let m = mm.mmap(0, 1 << 20, RW, NONE).unwrap();
    mm.mprotect(m.addr(), 4096, Prot::READ).unwrap();
    let p = mm.alloc_pages(0, Gfp::default()).unwrap();
    drop(p);
    drop(m);
    assert_eq!(s.server().buffer_calls, 0);
    assert_eq!(s.server().register_calls, 5);
    // A vmap of 90 frames does not fit four words; its reply does.
    let pages = mm
        .alloc_pages_exact(MAX_PFNS as u64 * PAGE_SIZE, Gfp::default())
        .unwrap();
    let pfns: Vec<u64> = (0..MAX_PFNS as u64).map(|i| pages.pfn() + i).collect();
    let area = mm.vmap(&pfns, RW).unwrap();
    assert_eq!(area.size(), MAX_PFNS as u64 * PAGE_SIZE);
    assert_eq!(s.server().buffer_calls, 1);
    // A reply of 90 frames comes back whole.
    let anon = mm.mmap(0, MAX_PFNS as u64 * PAGE_SIZE, RW, NONE).unwrap();
    let pins = mm
        .get_user_pages_fast(anon.addr(), MAX_PFNS as u32, true)
        .unwrap();
    assert_eq!(pins.pfns().len(), MAX_PFNS);
}

#[test]
fn arguments_refused_before_sending() {
    let s = MockMm::new();
    let mm = s.mm();
    let invalid = Err(Error::Mm(MmError::InvalidArgument));
    assert_eq!(
        mm.alloc_pages_exact(0, Gfp::default()).map(|p| p.leak()),
        invalid
    );
    assert_eq!(
        mm.alloc_pages_exact(1025 * PAGE_SIZE, Gfp::default())
            .map(|p| p.leak()),
        invalid
    );
    assert_eq!(mm.free_pages_exact(0x1000, u64::MAX).map(|()| 0), invalid);
    assert_eq!(mm.vmap(&[], RW).map(|v| v.leak()), invalid);
    assert_eq!(mm.vm_map_ram(&[1; MAX_PFNS + 1]).map(|v| v.leak()), invalid);
    assert_eq!(s.requests(), 0);
}

#[test]
fn replies_and_errors_are_mapped() {
    let s = MockMm::new();
    let mm = s.mm();
    // A domain error.
    s.server().fail_next(
        |r| matches!(r, Request::Map { .. }),
        MmError::QuotaExceeded,
        1,
    );
    assert_eq!(
        mm.mmap(0, 4096, RW, NONE).map(|m| m.leak()),
        Err(Error::Mm(MmError::QuotaExceeded))
    );
    // The failure was injected once only.
    assert!(mm.mmap(0, 4096, RW, NONE).is_ok());
    // A reply of the wrong kind.
    let mut words = [0; MAX_WORDS];
    let n = encode(&Reply::Done, &mut words);
    s.server().reply_raw(LABEL_OK, &words[..n]);
    assert_eq!(mm.follow_pfn(0x1000), Err(Error::Call(CallError::BadReply)));
    let n = encode(&Reply::Pfn { pfn: 3 }, &mut words);
    s.server().reply_raw(LABEL_OK, &words[..n]);
    assert_eq!(
        mm.munmap(0x1000, 4096),
        Err(Error::Call(CallError::BadReply))
    );
    s.server().reply_raw(LABEL_OK, &[u64::MAX; 3]);
    assert_eq!(mm.zone_stats(), Err(Error::Call(CallError::BadReply)));
    // Transport-level answers.
    s.server().reply_raw(LABEL_MALFORMED, &[]);
    assert_eq!(mm.exit(), Err(Error::Call(CallError::Malformed)));
    s.server().reply_raw(LABEL_ERROR, &[4242]);
    assert_eq!(
        mm.exit(),
        Err(Error::Call(CallError::UnknownErrorCode(4242)))
    );
    s.server().reply_raw(3, &[]);
    assert_eq!(mm.exit(), Err(Error::Call(CallError::UnexpectedLabel(3))));
    // Every error code comes back as itself.
    for code in 1..=13 {
        let e = MmError::from_code(code).unwrap();
        s.server().reply_raw(LABEL_ERROR, &[code]);
        assert_eq!(mm.munmap(0x1000, 4096), Err(Error::Mm(e)));
    }
}

#[test]
fn anonymous_mappings() {
    let s = MockMm::new();
    let mut mem = s.clone();
    let mm = s.mm();
    let m = mm.mmap(0, 4 * PAGE_SIZE, RW, NONE).unwrap();
    assert_eq!(m.len(), 4 * PAGE_SIZE);
    assert!(m.contains(m.addr() + 100) && !m.contains(m.addr() + m.len()));
    mem.write(m.addr(), b"hello").unwrap();
    m.mprotect(Prot::READ).unwrap();
    assert!(mem.write(m.addr(), b"x").is_err(), "read-only now");
    m.populate().unwrap();
    assert!(s.server().is_resident(m.addr() + 3 * PAGE_SIZE));
    // FIXED_NOREPLACE over it is refused, FIXED replaces it.
    assert_eq!(
        mm.mmap(m.addr(), PAGE_SIZE, RW, MapFlags::FIXED_NOREPLACE)
            .map(|x| x.leak()),
        Err(Error::Mm(MmError::AlreadyMapped))
    );
    // A hole cannot be protected.
    assert_eq!(
        mm.mprotect(m.addr(), 5 * PAGE_SIZE, RW),
        Err(Error::Mm(MmError::NotMapped))
    );
    let (addr, len) = (m.addr(), m.len());
    drop(m);
    assert_eq!(s.last_request(), Some(Request::Unmap { addr, len }));
    assert!(s.server().region_at(addr).is_none());
    assert_eq!(s.server().mapped_bytes(), 0);
}

#[test]
fn handles_release_on_drop_and_only_once() {
    let s = MockMm::new();
    let mm = s.mm();
    // Pages of each kind free themselves with the matching request.
    let p = mm.alloc_pages(2, Gfp::default()).unwrap();
    assert_eq!(
        (p.count(), p.bytes(), p.kind()),
        (4, 4 * PAGE_SIZE, PagesKind::Order(2))
    );
    let addr = p.addr();
    drop(p);
    assert_eq!(
        s.last_request(),
        Some(Request::FreePages { addr, order: 2 })
    );
    let p = mm.alloc_pages_exact(3 * PAGE_SIZE, Gfp::default()).unwrap();
    let addr = p.addr();
    drop(p);
    assert_eq!(
        s.last_request(),
        Some(Request::FreePagesExact { addr, count: 3 })
    );
    let p = mm.alloc_contig_range(0x200, 0x204).unwrap();
    assert_eq!(p.pfn(), 0x200);
    assert_eq!(
        mm.alloc_contig_range(0x203, 0x205).map(|p| p.leak()),
        Err(Error::Mm(MmError::Busy))
    );
    let addr = p.addr();
    p.free().unwrap();
    assert_eq!(
        s.last_request(),
        Some(Request::FreeContigRange { addr, count: 4 })
    );

    // vmalloc areas vfree, vmap areas vunmap, vm_map_ram areas vm_unmap_ram.
    let v = mm.vzalloc(3 * PAGE_SIZE).unwrap();
    assert_eq!(v.kind(), VmKind::Vmalloc);
    let addr = v.addr();
    drop(v);
    assert_eq!(s.last_request(), Some(Request::Vfree { addr }));
    let pages = mm.alloc_pages(1, Gfp::default()).unwrap();
    let pfns = [pages.pfn(), pages.pfn() + 1];
    let v = mm.vmap(&pfns, Prot::READ).unwrap();
    let addr = v.addr();
    drop(v);
    assert_eq!(s.last_request(), Some(Request::Vunmap { addr }));
    let v = mm.vm_map_ram(&pfns).unwrap();
    let addr = v.addr();
    drop(v);
    assert_eq!(
        s.last_request(),
        Some(Request::VmUnmapRam { addr, count: 2 })
    );
    // Frames not owned cannot be vmapped.
    assert_eq!(
        mm.vmap(&[0x1234_5678], RW).map(|v| v.leak()),
        Err(Error::Mm(MmError::NotOwner))
    );

    // DMA buffers free themselves.
    let d = mm.dma_alloc_coherent(5000).unwrap();
    assert!(d.bus() != 0 && d.size() == 5000);
    let addr = d.addr();
    drop(d);
    assert_eq!(
        s.last_request(),
        Some(Request::DmaFreeCoherent { addr, size: 5000 })
    );
    s.server().grant_dma = false;
    assert_eq!(
        mm.dma_alloc_coherent(4096).map(|d| d.leak()),
        Err(Error::Mm(MmError::PermissionDenied))
    );

    // An explicit release reports a refusal, and Drop does not retry it.
    let m = mm.mmap(0, PAGE_SIZE, RW, NONE).unwrap();
    s.server()
        .fail_next(|r| matches!(r, Request::Unmap { .. }), MmError::Busy, 1);
    let before = s.requests();
    assert_eq!(m.munmap(), Err(Error::Mm(MmError::Busy)));
    assert_eq!(s.requests(), before + 1);
}

#[test]
fn escape_hatches_send_nothing() {
    let s = MockMm::new();
    let mm = s.mm();
    let m = mm.mmap(0, PAGE_SIZE, RW, NONE).unwrap();
    let p = mm.alloc_pages(0, Gfp::default()).unwrap();
    let v = mm.vmalloc(PAGE_SIZE).unwrap();
    let o = mm.shm_create(PAGE_SIZE).unwrap();
    let d = mm.dma_alloc_coherent(PAGE_SIZE).unwrap();
    let before = s.requests();
    let (addr, len) = m.into_raw();
    let (paddr, pfn, kind) = p.into_raw();
    let vaddr = v.leak();
    let (handle, size) = o.into_raw();
    let _ = d.leak();
    assert_eq!(s.requests(), before);
    assert!(pfn >= crate::mock::MOCK_FIRST_PFN && kind == PagesKind::Order(0));
    assert_eq!(size, PAGE_SIZE);
    // The raw parts release through the raw calls, or a new handle.
    mm.munmap(addr, len).unwrap();
    crate::handles::Pages::from_raw(mm.clone(), paddr, pfn, kind)
        .free()
        .unwrap();
    mm.vfree(vaddr).unwrap();
    mm.shm_destroy(handle).unwrap();
    assert_eq!(
        mm.shm_destroy(handle),
        Err(Error::Mm(MmError::NoSuchHandle))
    );
}

#[test]
fn pfnmap_regions() {
    let s = MockMm::new();
    let mm = s.mm();
    let region = mm.mmap(0, 8 * PAGE_SIZE, RW, MapFlags::PFNMAP).unwrap();
    let pages = mm.alloc_pages(0, Gfp::default()).unwrap();
    let at = region.addr();
    mm.vm_insert_page(at, pages.pfn()).unwrap();
    assert_eq!(mm.follow_pfn(at), Ok(pages.pfn()));
    assert_eq!(
        mm.vm_insert_page(at, pages.pfn()),
        Err(Error::Mm(MmError::AlreadyMapped))
    );
    assert_eq!(
        mm.vm_insert_page(at + PAGE_SIZE, 0x9000),
        Err(Error::Mm(MmError::NotOwner)),
        "device frames are not pages the client owns"
    );
    mm.vm_insert_pfn(at + PAGE_SIZE, 0x9000).unwrap();
    assert_eq!(
        mm.vm_insert_pfn_prot(at + 2 * PAGE_SIZE, 0x7777, Prot::READ),
        Err(Error::Mm(MmError::PermissionDenied))
    );
    mm.remap_pfn_range(at + 2 * PAGE_SIZE, 0x9001, 2 * PAGE_SIZE, RW)
        .unwrap();
    assert_eq!(mm.follow_pfn(at + 3 * PAGE_SIZE + 5), Ok(0x9002));
    mm.vm_iomap_memory(at + 4 * PAGE_SIZE, 0x9004 * PAGE_SIZE, PAGE_SIZE)
        .unwrap();
    mm.zap_vma_ptes(at, 8 * PAGE_SIZE).unwrap();
    assert_eq!(mm.follow_pfn(at), Err(Error::Mm(MmError::NotMapped)));
    // Outside a PFNMAP region.
    let anon = mm.mmap(0, PAGE_SIZE, RW, NONE).unwrap();
    assert_eq!(
        mm.vm_insert_page(anon.addr(), pages.pfn()),
        Err(Error::Mm(MmError::NotMapped))
    );
}

#[test]
fn shared_objects() {
    let s = MockMm::new();
    let mm = s.mm();
    let obj = mm.shm_create(10_000).unwrap();
    obj.grant(7, Prot::READ).unwrap();
    let m = obj.map(0, RW).unwrap();
    assert_eq!(m.len(), 3 * PAGE_SIZE);
    let mut mem = s.clone();
    mem.write(m.addr() + PAGE_SIZE, b"page one").unwrap();
    assert!(s.server().is_resident(m.addr() + PAGE_SIZE));
    obj.unmap_mapping_range(1, 1).unwrap();
    assert!(!s.server().is_resident(m.addr() + PAGE_SIZE));
    let (handle, addr, len) = (obj.handle(), m.addr(), m.len());
    drop(m);
    assert_eq!(s.last_request(), Some(Request::Unmap { addr, len }));
    drop(obj);
    assert_eq!(s.last_request(), Some(Request::ShmDestroy { handle }));
    assert_eq!(
        mm.shm_map(handle, 0, RW).map(|m| m.leak()),
        Err(Error::Mm(MmError::NoSuchHandle))
    );
}

#[test]
fn user_memory_access() {
    let s = MockMm::new();
    let mut mem = s.clone();
    let mm = s.mm();
    let a = mm.mmap(0, 2 * PAGE_SIZE, RW, NONE).unwrap();
    let b = mm.mmap(0, PAGE_SIZE, RW, NONE).unwrap();
    mem.write(a.addr(), b"0123456789").unwrap();
    assert_eq!(mm.copy_to_user(MOCK_CLIENT, b.addr(), a.addr(), 10), Ok(0));
    let mut buf = [0u8; 10];
    mem.read(b.addr(), &mut buf).unwrap();
    assert_eq!(&buf, b"0123456789");
    // A copy running off the end of the destination reports what is left.
    assert_eq!(
        mm.copy_from_user(MOCK_CLIENT, b.addr() + PAGE_SIZE - 4, a.addr(), 10),
        Ok(6)
    );
    assert_eq!(mm.clear_user(MOCK_CLIENT, b.addr(), 4), Ok(0));
    mem.read(b.addr(), &mut buf).unwrap();
    assert_eq!(&buf, &[0, 0, 0, 0, b'4', b'5', b'6', b'7', b'8', b'9']);
    assert_eq!(
        mm.copy_to_user(42, b.addr(), a.addr(), 1),
        Err(Error::Mm(MmError::PermissionDenied))
    );
    let dup = mm.memdup_user(MOCK_CLIENT, a.addr(), 10).unwrap();
    assert_eq!(dup.len(), PAGE_SIZE);
    mem.read(dup.addr(), &mut buf).unwrap();
    assert_eq!(&buf, b"0123456789");
    assert_eq!(
        mm.memdup_user(MOCK_CLIENT, b.addr() + PAGE_SIZE - 1, 2)
            .map(|m| m.leak()),
        Err(Error::Mm(MmError::Fault))
    );

    // Pinning: frames per page, unpinned on drop.
    let pins = mm.get_user_pages_fast(a.addr(), 2, true).unwrap();
    assert_eq!(pins.pfns().len(), 2);
    assert_eq!(mm.follow_pfn(a.addr()), Ok(pins.pfns()[0]));
    drop(pins);
    assert_eq!(
        s.last_request(),
        Some(Request::PutUserPages {
            addr: a.addr(),
            count: 2
        })
    );
    b.mprotect(Prot::READ).unwrap();
    assert_eq!(
        mm.get_user_pages_fast(b.addr(), 1, true).map(|p| p.leak()),
        Err(Error::Mm(MmError::Fault))
    );
}

#[test]
fn statistics_and_lifecycle() {
    let s = MockMm::new();
    let mm = s.mm();
    let p = mm.alloc_pages(3, Gfp::default()).unwrap();
    let zones = mm.zone_stats().unwrap();
    assert_eq!(zones.as_slice().len(), 2);
    assert_eq!(zones.as_slice()[1].managed - zones.as_slice()[1].free, 8);
    let me = mm.client_stats().unwrap();
    assert_eq!((me.id, me.resident_pages, me.regions), (MOCK_CLIENT, 8, 1));
    assert_eq!(mm.client_died(3), Err(Error::Mm(MmError::PermissionDenied)));
    s.server().supervisor = true;
    mm.client_died(3).unwrap();
    mm.exit().unwrap();
    assert_eq!(mm.client_stats().unwrap().resident_pages, 0);
    // After exit, a handle's release is refused — and ignored by Drop.
    let addr = p.addr();
    drop(p);
    assert_eq!(
        s.last_request(),
        Some(Request::FreePages { addr, order: 3 })
    );
}

#[test]
fn aligned_mappings_take_one_request() {
    let s = MockMm::new();
    let mm = s.mm();
    // Something first, so that the next free place is not aligned.
    let small = mm.mmap(0, PAGE_SIZE, RW, NONE).unwrap();
    let before = s.requests();
    let m = mm
        .mmap_aligned(0, 3 * PAGE_SIZE, RW, NONE, Align(24))
        .unwrap();
    assert_eq!(s.requests(), before + 1);
    assert_eq!((m.addr() % (16 << 20), m.len()), (0, 3 * PAGE_SIZE));
    // A fixed address must be aligned; too large an alignment is refused.
    assert_eq!(
        mm.mmap_aligned_raw(0x2001_0000, PAGE_SIZE, RW, MapFlags::FIXED, Align(20)),
        Err(Error::Mm(MmError::Unaligned))
    );
    assert_eq!(
        mm.mmap_aligned_raw(0, PAGE_SIZE, RW, NONE, Align(31)),
        Err(Error::Mm(MmError::InvalidArgument))
    );
    // A coherent buffer aligned in both address spaces.
    let d = mm.dma_alloc_coherent_aligned(PAGE_SIZE, Align(20)).unwrap();
    assert_eq!((d.addr() % (1 << 20), d.bus() % (1 << 20)), (0, 0));
    assert_eq!(
        mm.dma_alloc_coherent_raw(PAGE_SIZE, Align(23)),
        Err(Error::Mm(MmError::InvalidArgument))
    );
    drop((small, m, d));
    assert_eq!(s.server().mapped_bytes(), 0);
}

#[test]
fn discard_drops_pages_and_keeps_the_region() {
    let s = MockMm::new();
    let mut mem = s.clone();
    let mm = s.mm();
    let m = mm.mmap(0, 4 * PAGE_SIZE, RW, MapFlags::POPULATE).unwrap();
    mem.fill(m.addr(), 4 * PAGE_SIZE, 0x5a).unwrap();
    assert_eq!(s.server().resident_pages(), 4);
    mm.madvise_dontneed(m.addr() + PAGE_SIZE, 2 * PAGE_SIZE)
        .unwrap();
    assert_eq!(s.server().resident_pages(), 2);
    // One region still, the discarded pages read as zero, the rest kept.
    assert_eq!(s.server().regions().count(), 1);
    let mut b = [0xffu8; 2];
    mem.read(m.addr() + 2 * PAGE_SIZE - 1, &mut b).unwrap();
    assert_eq!(b, [0, 0]);
    mem.read(m.addr() + 4 * PAGE_SIZE - 1, &mut b[..1]).unwrap();
    assert_eq!(b[0], 0x5a);
    // Errors: a hole, an area, a PFNMAP region, a pinned page.
    assert_eq!(
        mm.madvise_dontneed(m.addr() + 4 * PAGE_SIZE, PAGE_SIZE),
        Err(Error::Mm(MmError::NotMapped))
    );
    let p = mm.alloc_pages(0, Gfp::default()).unwrap();
    assert_eq!(
        mm.madvise_dontneed(p.addr(), PAGE_SIZE),
        Err(Error::Mm(MmError::Busy))
    );
    let pf = mm.mmap(0, PAGE_SIZE, RW, MapFlags::PFNMAP).unwrap();
    assert_eq!(
        mm.madvise_dontneed(pf.addr(), PAGE_SIZE),
        Err(Error::Mm(MmError::InvalidArgument))
    );
    let pins = mm.get_user_pages_fast(m.addr(), 1, true).unwrap();
    assert_eq!(m.discard(), Err(Error::Mm(MmError::Busy)));
    drop(pins);
    m.discard().unwrap();
    assert_eq!(s.server().resident_pages(), 1, "the page block only");
}

#[test]
fn map_replies_carry_the_length() {
    let s = MockMm::new();
    let mm = s.mm();
    let obj = mm.shm_create(3 * PAGE_SIZE + 1).unwrap();
    // A client told only the handle learns the size from the reply.
    let m = mm.shm_map(obj.handle(), 0, RW).unwrap();
    assert_eq!(m.len(), 4 * PAGE_SIZE);
    let src = mm.mmap(0, PAGE_SIZE, RW, NONE).unwrap();
    let d = mm.memdup_user(MOCK_CLIENT, src.addr(), 10).unwrap();
    assert_eq!(d.len(), PAGE_SIZE);
}

#[test]
fn mem_info_reads_as_its_classes_adding_up() {
    use alloc::format;
    let m = crate::protocol::MemInfo {
        total: 100,
        free: 50,
        zero_pool: 10,
        clients: 20,
        shared: 5,
        page_tables: 10,
        reserved: 5,
    };
    assert!(m.conserved());
    assert_eq!(
        format!("{m}"),
        "100 frames = 50 free + 10 pre-zeroed + 20 clients' + 5 shared + 10 page tables + 5 the server's objects"
    );
}
