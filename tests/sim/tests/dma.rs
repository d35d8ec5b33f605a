//! DMA pools through the real server: shapes, bus addresses, checking mode, leaks, managed pools, refusal, client death.
//!
//! Each client drives libmm's `DmaPools` over the real transport: chunks
//! are the server's coherent DMA areas (contiguous DMA32 frames mapped
//! non-cacheable, aligned as the pool asks), blocks are carved in the
//! client. The server checks every invariant and frame conservation after
//! each message. Bus addresses are checked against the server's page map
//! (`follow_pfn`) while the client runs, and against simulated physical
//! memory (`Sim::read_phys`) after the run, for a client that keeps its
//! blocks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use libmm::DmaPools;
use libmm::RtTransport;
use libmm::dmapool::{DestroyError, DmaBlock, DmaError, DmaPoolError, OwnerId, POOL_POISON_FREED};
use libmm::memory::RtMemory;
use libmm::protocol::{Align, MmError};
use mm_server::Grants;
use sim_scenarios::*;

/// The end of the DMA32 zone: the first 32 MiB of RAM.
const DMA32_END: u64 = 0x4000_0000 + (32 << 20);

type Pools = DmaPools<RtTransport, RtMemory>;

fn dma_machine() -> Scenario {
    Scenario::new().config(|c| c.dma32_end = Some(DMA32_END))
}

fn pools(mm: &Client) -> Pools {
    DmaPools::new(mm.mm.clone(), RtMemory)
}

/// Pools as Linux's `dmapool_test.c` and drivers create them: (size,
/// align, boundary).
const SHAPES: [(u64, u64, u64); 8] = [
    (16, 0, 0),
    (64, 64, 4096),
    (100, 32, 128),
    (200, 8, 1024),
    (1500, 512, 2048),
    (4096, 4096, 0),
    (6000, 0, 0),
    (64, 1 << 16, 0),
];

/// Checks a block's alignment and boundary in both address spaces.
fn check_shape(b: DmaBlock, size: u64, align: u64, boundary: u64) {
    let align = align.max(1);
    assert_eq!((b.vaddr % align, b.bus % align), (0, 0), "{b:x?}");
    // No boundary (0): nothing to check.
    let last = size - 1;
    let window = |a: u64| a.checked_div(boundary);
    assert_eq!(window(b.vaddr), window(b.vaddr + last), "{b:x?}");
    assert_eq!(window(b.bus), window(b.bus + last), "{b:x?}");
    assert!(b.bus + size <= DMA32_END, "a DMA32 bus address: {b:x?}");
}

/// Checks, page by page, that every byte of these blocks has the bus
/// address the server's page map gives it: (frame of the page) * 4096 +
/// offset. One `follow_pfn` per page touched.
fn check_bus_addresses(mm: &Client, blocks: &[DmaBlock], len: u64) {
    let mut pages: BTreeMap<u64, u64> = BTreeMap::new();
    for b in blocks {
        for at in [0, len - 1] {
            let va = b.vaddr + at;
            let page = va & !(PAGE - 1);
            let bus_page = b.bus + at - (va - page);
            assert_eq!(*pages.entry(page).or_insert(bus_page), bus_page);
        }
    }
    for (page, bus) in pages {
        assert_eq!(mm.follow_pfn(page).unwrap() * PAGE, bus, "page {page:#x}");
    }
}

#[test]
fn pools_of_every_shape_through_the_server() {
    let w = dma_machine()
        .client("drv", Grants::all(), 4096, |mm| {
            let mut p = pools(&mm);
            for (k, &(size, align, boundary)) in SHAPES.iter().enumerate() {
                let pool = p.dma_pool_create("shape", size, align, boundary).unwrap();
                let st = p.pool_stats(pool).unwrap();
                let n = 2 * st.blocks_per_chunk + 1;
                let r0 = mm.requests_made();
                let blocks: Vec<DmaBlock> = (0..n)
                    .map(|i| {
                        if i % 3 == 0 {
                            p.dma_pool_zalloc(pool).unwrap()
                        } else {
                            p.dma_pool_alloc(pool).unwrap()
                        }
                    })
                    .collect();
                // One request per chunk: none per block.
                assert_eq!(mm.requests_made() - r0, 3, "shape {k}");
                assert_eq!(p.pool_stats(pool).unwrap().chunks, 3);
                for &b in &blocks {
                    check_shape(b, size, align, boundary);
                }
                check_bus_addresses(&mm, &blocks, size);
                // Zeroed memory, and blocks that never overlap: a word at
                // each end of each block, read back after all are written.
                for (i, b) in blocks.iter().enumerate() {
                    if i % 3 == 0 {
                        assert_eq!(peek(b.vaddr), 0);
                    }
                    let tag = (k as u64) << 32 | i as u64;
                    poke(b.vaddr, tag);
                    poke(b.vaddr + st.block_size - 8, !tag);
                }
                for (i, b) in blocks.iter().enumerate() {
                    let tag = (k as u64) << 32 | i as u64;
                    assert_eq!(peek(b.vaddr), tag);
                    assert_eq!(peek(b.vaddr + st.block_size - 8), !tag);
                }
                let r1 = mm.requests_made();
                for b in blocks {
                    p.dma_pool_free(pool, b.vaddr, b.bus).unwrap();
                }
                // Blocks freed and allocated again: still no request.
                p.alloc_free_pairs(pool, 1000).unwrap();
                assert_eq!(mm.requests_made(), r1);
                p.check().unwrap();
                // Resident: the pool's chunks, charged to the client.
                assert_eq!(mm.resident(), 3 * st.chunk_size / PAGE);
                let r2 = mm.requests_made();
                p.dma_pool_destroy(pool).unwrap();
                assert_eq!(mm.requests_made() - r2, 3, "a free per chunk");
                assert_eq!(mm.resident(), 0);
            }
            let c = p.chunks().stats();
            assert_eq!((c.allocated, c.freed, c.held), (24, 24, 0));
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn bus_addresses_reach_the_frames_the_client_writes() {
    // The client writes through its virtual addresses, keeps its blocks
    // and parks; the harness then reads physical memory at the bus
    // addresses.
    let seen: Arc<Mutex<Vec<(u64, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let w = dma_machine()
        .daemon_client("drv", Grants::all(), 4096, move |mm| {
            let mut p = pools(&mm);
            for (k, &(size, align, boundary)) in SHAPES.iter().enumerate() {
                let pool = p.dma_pool_create("kept", size, align, boundary).unwrap();
                let block = p.pool_stats(pool).unwrap().block_size;
                for i in 0..20u64 {
                    let b = p.dma_pool_alloc(pool).unwrap();
                    let tag = 0xd0_0000_0000 | (k as u64) << 16 | i;
                    poke(b.vaddr, tag);
                    poke(b.vaddr + block - 8, !tag);
                    let mut seen = s2.lock().unwrap();
                    seen.push((b.bus, tag));
                    seen.push((b.bus + block - 8, !tag));
                }
            }
            park();
        })
        .build();
    w.run_ok();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2 * 20 * SHAPES.len());
    for &(bus, tag) in seen.iter() {
        let mut word = [0u8; 8];
        assert!(w.sim.read_phys(bus, &mut word), "{bus:#x} is RAM");
        assert_eq!(u64::from_le_bytes(word), tag, "at bus address {bus:#x}");
    }
    // The chunks are the client's DMA areas, charged to it.
    let last = w.last();
    assert!(last.conserved());
    assert!(last.mem.clients > 0);
}

#[test]
fn checking_mode_catches_double_frees_and_writes_after_free() {
    let w = dma_machine()
        .client("drv", Grants::all(), 4096, |mm| {
            let mut p = DmaPools::new_checking(mm.mm.clone(), RtMemory);
            let pool = p.dma_pool_create("chk", 48, 16, 0).unwrap();
            let a = p.dma_pool_alloc(pool).unwrap();
            let b = p.dma_pool_alloc(pool).unwrap();
            p.dma_pool_free(pool, a.vaddr, a.bus).unwrap();
            // The poison is really in the (non-cacheable) memory.
            let mut bytes = [0u8; 48];
            rt::mem::read_bytes(a.vaddr, &mut bytes).unwrap();
            assert!(bytes.iter().all(|&x| x == POOL_POISON_FREED));
            assert_eq!(
                p.dma_pool_free(pool, a.vaddr, a.bus),
                Err(DmaError::Pool(DmaPoolError::DoubleFree { vaddr: a.vaddr }))
            );
            assert_eq!(
                p.dma_pool_free(pool, b.vaddr, b.bus + 16),
                Err(DmaError::Pool(DmaPoolError::BusMismatch {
                    vaddr: b.vaddr,
                    bus: b.bus + 16,
                    expected: b.bus
                }))
            );
            assert_eq!(
                p.dma_pool_free(pool, b.vaddr + 8, b.bus + 8),
                Err(DmaError::Pool(DmaPoolError::Interior {
                    vaddr: b.vaddr + 8,
                    block: b.vaddr
                }))
            );
            p.check_poison().unwrap();
            // A write after free is found, and the block never handed out.
            poke(a.vaddr + 16, 0);
            assert!(matches!(
                p.check_poison(),
                Err(DmaError::Pool(DmaPoolError::Corrupted(c))) if c.addr == a.vaddr + 16
            ));
            assert!(matches!(
                p.dma_pool_alloc(pool),
                Err(DmaError::Pool(DmaPoolError::Corrupted(c))) if c.block == a.vaddr
            ));
            let c = p.dma_pool_alloc(pool).unwrap();
            assert_ne!(c.vaddr, a.vaddr);
            for x in [b, c] {
                p.dma_pool_free(pool, x.vaddr, x.bus).unwrap();
            }
            assert_eq!(p.pool_stats(pool).unwrap().blocks_quarantined, 1);
            p.check().unwrap();
            p.dma_pool_destroy(pool).unwrap();
            assert_eq!(mm.resident(), 0);
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn a_client_not_granted_dma_is_refused() {
    let w = dma_machine()
        .client("plain", Grants::default(), 4096, |mm| {
            let mut p = pools(&mm);
            // Creating allocates nothing (Linux 6.3+): the refusal comes
            // with the first chunk, and says why.
            let pool = p.dma_pool_create("nope", 64, 64, 0).unwrap();
            let managed = p.dmam_pool_create("nope2", 512, 0, 0).unwrap();
            assert_eq!(p.dma_pool_alloc(pool), Err(DmaError::NotGranted));
            assert_eq!(p.dma_pool_zalloc(managed), Err(DmaError::NotGranted));
            assert_eq!(
                refusal(mm.dma_alloc_coherent_aligned(PAGE, Align::PAGE)),
                MmError::PermissionDenied
            );
            assert_eq!(p.chunks().stats().refused, 2);
            p.dma_pool_destroy(pool).unwrap();
            assert_eq!(mm.resident(), 0);
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn leaked_blocks_keep_their_chunks_charged_until_the_client_ends() {
    let w = dma_machine()
        .client("drv", Grants::all(), 4096, |mm| {
            let mut p = pools(&mm);
            let pool = p.dma_pool_create("leaky", 1024, 1024, 0).unwrap();
            let blocks: Vec<DmaBlock> = (0..8).map(|_| p.dma_pool_alloc(pool).unwrap()).collect();
            assert_eq!(mm.resident(), 2);
            for b in &blocks[..7] {
                p.dma_pool_free(pool, b.vaddr, b.bus).unwrap();
            }
            let leaked = blocks[7];
            poke(leaked.vaddr, 0x1eaf);
            match p.dma_pool_destroy(pool) {
                Err(DestroyError::Leaked(r)) => {
                    assert_eq!(r.leaked, [leaked]);
                    assert_eq!(r.quarantined_chunks, 1);
                }
                other => panic!("{other:?}"),
            }
            // The free chunk went back to the server; the leaked one is
            // still the client's, charged, mapped (a device may still
            // write it), and never handed out again.
            assert_eq!(mm.resident(), 1);
            assert_eq!(peek(leaked.vaddr), 0x1eaf);
            assert_eq!(
                mm.follow_pfn(leaked.vaddr).unwrap() * PAGE + leaked.vaddr % PAGE,
                leaked.bus
            );
            let again = p.dma_pool_create("again", 1024, 1024, 0).unwrap();
            let fresh: Vec<DmaBlock> = (0..8).map(|_| p.dma_pool_alloc(again).unwrap()).collect();
            let leaked_page = leaked.vaddr & !(PAGE - 1);
            assert!(fresh.iter().all(|b| b.vaddr & !(PAGE - 1) != leaked_page));
            assert_eq!(mm.resident(), 3);
            p.check().unwrap();
            // The client ends holding the quarantined chunk: the server
            // takes it back with the rest.
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

#[test]
fn managed_pools_die_with_their_owner() {
    let w = dma_machine()
        .client("drv", Grants::all(), 4096, |mm| {
            let mut p = pools(&mm);
            let mine = p.dmam_pool_create("mine", 64, 64, 0).unwrap();
            let dev = p
                .dmam_pool_create_for(OwnerId(3), "dev", 256, 256, 0)
                .unwrap();
            let plain = p.dma_pool_create("plain", 32, 0, 0).unwrap();
            for pool in [mine, dev, plain] {
                let b = p.dma_pool_alloc(pool).unwrap();
                p.dma_pool_free(pool, b.vaddr, b.bus).unwrap();
            }
            assert_eq!(mm.resident(), 3);
            // The device goes: its pool with it, one DmaFreeCoherent.
            let r0 = mm.requests_made();
            assert_eq!(p.release_owner(OwnerId(3)), Ok(1));
            assert_eq!(mm.requests_made() - r0, 1);
            assert_eq!(mm.resident(), 2);
            p.dma_pool_destroy(plain).unwrap();
            // Dropping the pools destroys the client's managed pool.
            drop(p);
            let st = mm.client_stats().unwrap();
            assert_eq!((st.resident_pages, st.regions), (0, 0));
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}

/// A driver's life with pools: a managed pool and short-lived ones, blocks
/// written, one pool destroyed with a block live (its chunk quarantined),
/// a coherent buffer given up. `exit`: whether it ends with
/// `DmaPools::exit` or by dropping its pools (the supervisor then reports
/// the end). Killed at any syscall, it leaves the server to clean up.
fn driver(mm: Client, exit: bool) {
    let mut p = pools(&mm);
    let desc = p.dmam_pool_create("desc", 64, 64, 4096).unwrap();
    let mut held = Vec::new();
    for i in 0..200u64 {
        let b = p.dma_pool_alloc(desc).unwrap();
        poke(b.vaddr, i);
        held.push(b);
    }
    for b in held.drain(..100) {
        p.dma_pool_free(desc, b.vaddr, b.bus).unwrap();
    }
    for round in 0..3 {
        let bufs = p.dma_pool_create("bufs", 2048, 2048, 0).unwrap();
        let big = p.dma_pool_create("big", 6000, 0, 0).unwrap();
        let xs: Vec<DmaBlock> = (0..6).map(|_| p.dma_pool_zalloc(bufs).unwrap()).collect();
        let z = p.dma_pool_alloc(big).unwrap();
        poke(z.vaddr + 5000, 7);
        for x in &xs[1..] {
            p.dma_pool_free(bufs, x.vaddr, x.bus).unwrap();
        }
        if round == 1 {
            // A pool destroyed with a block live: its chunk stays
            // quarantined.
            assert!(matches!(
                p.dma_pool_destroy(bufs),
                Err(DestroyError::Leaked(_))
            ));
        } else {
            p.dma_pool_free(bufs, xs[0].vaddr, xs[0].bus).unwrap();
            p.dma_pool_destroy(bufs).unwrap();
        }
        p.dma_pool_free(big, z.vaddr, z.bus).unwrap();
        p.dma_pool_destroy(big).unwrap();
        assert!(mm.resident() >= 2);
    }
    // A coherent buffer of its own, aligned.
    mm.dma_alloc_coherent_aligned(3 * PAGE, Align(16))
        .unwrap()
        .leak();
    if exit {
        // The managed pool goes (the 100 descriptors still held are
        // reported and their chunks kept), then Exit: the server takes
        // back the rest, the quarantined chunks included.
        let reports = p.exit().unwrap();
        assert_eq!(reports.len(), 1);
        let mut leaked = reports[0].leaked.clone();
        leaked.sort();
        held.sort();
        assert_eq!(leaked, held);
    } else {
        // Without an exit the managed pool goes with the pools; the rest
        // goes when the supervisor reports the end.
        drop(p);
    }
}

fn driver_machine(seed: u64, kill_at: Option<u64>, exit: bool) -> World {
    let w = dma_machine()
        .ram(32 << 20)
        .seeded(seed)
        .client("drv", Grants::all(), 4096, move |mm| driver(mm, exit))
        .client("bystander", Grants::all(), 4096, |mm| {
            let mut p = pools(&mm);
            let pool = p.dma_pool_create("own", 128, 128, 0).unwrap();
            let b = p.dma_pool_alloc(pool).unwrap();
            poke(b.vaddr, 0xb1);
            for _ in 0..40 {
                rt::yield_now();
            }
            assert_eq!(peek(b.vaddr), 0xb1);
            p.dma_pool_free(pool, b.vaddr, b.bus).unwrap();
            p.dma_pool_destroy(pool).unwrap();
        })
        .build();
    if let Some(n) = kill_at {
        w.sim.kill_at_syscall(w.clients[0].0, n).unwrap();
    }
    w
}

#[test]
fn a_driver_that_exits_or_just_ends_returns_everything() {
    for exit in [true, false] {
        let w = driver_machine(3, None, exit);
        w.run_ok();
        w.assert_all_returned();
    }
}

#[test]
fn drivers_killed_at_random_syscalls_return_everything() {
    // How many syscalls the driver makes, with and without its exit.
    let totals = [false, true].map(|exit| {
        let w = driver_machine(5, None, exit);
        w.run_ok();
        w.first_client_syscalls()
    });
    assert!(totals[0] >= 30, "{totals:?}");
    for seed in 0..40 {
        let exit = seed % 2 == 0;
        let n = kill_point(seed, totals[exit as usize]);
        // Conservation is checked after every message, and at the end
        // every frame must be back.
        driver_machine(seed, Some(n), exit).run_killed(n, seed);
    }
}

#[test]
fn coherent_requests_with_bad_alignments_are_refused() {
    let w = dma_machine()
        .client("drv", Grants::all(), 4096, |mm| {
            assert_eq!(
                refusal(mm.dma_alloc_coherent_aligned(PAGE, Align(23))),
                MmError::InvalidArgument
            );
            assert_eq!(
                refusal(mm.dma_alloc_coherent_aligned(PAGE, Align(200))),
                MmError::InvalidArgument
            );
            // A pool whose chunks would need more than the server gives.
            let mut p = pools(&mm);
            assert!(matches!(
                p.dma_pool_create("huge", (4 << 20) + 1, 0, 0),
                Err(DmaError::Pool(DmaPoolError::TooLarge { .. }))
            ));
            // The largest: a 4 MiB block in a 4 MiB chunk aligned to 4 MiB.
            let pool = p.dma_pool_create("max", 4 << 20, 4 << 20, 0).unwrap();
            let b = p.dma_pool_alloc(pool).unwrap();
            assert_eq!((b.vaddr % (4 << 20), b.bus % (4 << 20)), (0, 0));
            assert_eq!(mm.resident(), 1024);
            p.dma_pool_free(pool, b.vaddr, b.bus).unwrap();
            p.dma_pool_destroy(pool).unwrap();
        })
        .build();
    w.run_ok();
    w.assert_all_returned();
}
