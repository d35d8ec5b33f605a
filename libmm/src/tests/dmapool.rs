//! DMA pools over the mock server: chunks by request, blocks without IPC, managed pools, leaks, checking mode.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use mm_core::addr::PAGE_SIZE;
use mm_core::memory::MemoryAccess;
use proptest::prelude::*;

use crate::dmapool::{
    CLIENT_OWNER, DestroyError, DmaBlock, DmaError, DmaPoolError, DmaPools, OwnerId, PoolId,
    PoolOptions,
};
use crate::mock::{MockMm, RegionKind};
use crate::protocol::{Align, MmError, Request};
use crate::transport::Error;

fn pools() -> (MockMm, DmaPools<MockMm, MockMm>) {
    let s = MockMm::new();
    let p = DmaPools::new(s.mm(), s.clone());
    (s, p)
}

/// Bytes of DMA areas the mock holds for the client.
fn dma_bytes(s: &MockMm) -> u64 {
    s.server()
        .regions()
        .filter(|(_, r)| r.kind == RegionKind::Dma)
        .map(|(_, r)| r.len)
        .sum()
}

/// The DMA area holding `vaddr`: `(start, bus of start)`, from the mock's
/// own bookkeeping and the chunk's first block.
fn chunk_of(s: &MockMm, vaddr: u64) -> u64 {
    let (start, r) = s.server().region_at(vaddr).expect("in a region");
    assert_eq!(r.kind, RegionKind::Dma);
    start
}

/// Checks one block of a pool with `size`, `align`, `boundary`.
fn check_block(b: DmaBlock, size: u64, align: u64, boundary: u64) {
    let align = align.max(1);
    assert_eq!(b.vaddr % align, 0, "{b:?}");
    assert_eq!(b.bus % align, 0, "{b:?}");
    // No boundary (0): nothing to check.
    let last = size.max(1) - 1;
    let window = |a: u64| a.checked_div(boundary);
    assert_eq!(window(b.vaddr), window(b.vaddr + last), "{b:x?}");
    assert_eq!(window(b.bus), window(b.bus + last), "{b:x?}");
}

#[test]
fn blocks_come_without_ipc_from_aligned_chunks() {
    let shapes = [
        (16, 0, 0),
        (64, 64, 4096),
        (200, 8, 1024),
        (100, 32, 128),
        (3000, 512, 8192),
        (4096, 4096, 0),
        (5000, 0, 0),
        (8192, 8192, 0),
        (64, 1 << 16, 0),
    ];
    for (size, align, boundary) in shapes {
        let (s, mut p) = pools();
        let pool = p.dma_pool_create("shape", size, align, boundary).unwrap();
        let stats = p.pool_stats(pool).unwrap();
        let n = 3 * stats.blocks_per_chunk + 1;
        let before = s.requests();
        let blocks: Vec<DmaBlock> = (0..n).map(|_| p.dma_pool_alloc(pool).unwrap()).collect();
        // One request per chunk, nothing per block.
        let asked = s.requests() - before;
        assert_eq!(asked as u64, p.pool_stats(pool).unwrap().chunks);
        assert_eq!(asked, 4);
        for r in s.server().requests_since(before) {
            assert_eq!(
                *r,
                Request::DmaAllocCoherent {
                    size: stats.chunk_size,
                    align: Align::from_bytes(stats.chunk_align).unwrap(),
                }
            );
        }
        // Alignment, boundaries, and the bus offset of each block's chunk.
        let mut offsets: BTreeMap<u64, u64> = BTreeMap::new();
        for &b in &blocks {
            check_block(b, size, align, boundary);
            let start = chunk_of(&s, b.vaddr);
            let off = b.bus.wrapping_sub(b.vaddr);
            assert_eq!(*offsets.entry(start).or_insert(off), off);
            assert!(b.vaddr + stats.block_size <= start + stats.chunk_size);
        }
        let mut sorted: Vec<u64> = blocks.iter().map(|b| b.vaddr).collect();
        sorted.sort();
        assert!(sorted.windows(2).all(|w| w[1] - w[0] >= stats.block_size));
        let before = s.requests();
        for b in blocks {
            p.dma_pool_free(pool, b.vaddr, b.bus).unwrap();
        }
        assert_eq!(s.requests(), before, "frees make no request");
        p.check().unwrap();
        p.dma_pool_destroy(pool).unwrap();
        assert_eq!(dma_bytes(&s), 0);
        assert_eq!(p.chunks().stats().held, 0);
    }
}

#[test]
fn a_client_without_dma_is_refused_clearly() {
    let (s, mut p) = pools();
    s.server().grant_dma = false;
    let pool = p.dma_pool_create("nope", 64, 0, 0).unwrap();
    assert_eq!(p.dma_pool_alloc(pool), Err(DmaError::NotGranted));
    assert_eq!(p.dma_pool_zalloc(pool), Err(DmaError::NotGranted));
    assert_eq!(p.chunks().stats().refused, 2);
    // Other refusals say what the server said.
    s.server().grant_dma = true;
    s.server().fail_next(
        |r| matches!(r, Request::DmaAllocCoherent { .. }),
        MmError::QuotaExceeded,
        1,
    );
    assert_eq!(
        p.dma_pool_alloc(pool),
        Err(DmaError::Server(Error::Mm(MmError::QuotaExceeded)))
    );
    // And then it works.
    let b = p.dma_pool_alloc(pool).unwrap();
    p.dma_pool_free(pool, b.vaddr, b.bus).unwrap();
    p.check().unwrap();
}

#[test]
fn create_errors_are_linuxs() {
    let (s, mut p) = pools();
    let refused = |e| Err(DmaError::Pool(e));
    assert_eq!(
        p.dma_pool_create("z", 0, 0, 0),
        refused(DmaPoolError::ZeroSize)
    );
    assert_eq!(
        p.dma_pool_create("a", 64, 24, 0),
        refused(DmaPoolError::BadAlign { align: 24 })
    );
    assert_eq!(
        p.dma_pool_create("b", 64, 0, 100),
        refused(DmaPoolError::BadBoundary { boundary: 100 })
    );
    assert_eq!(
        p.dma_pool_create("c", 64, 64, 32),
        refused(DmaPoolError::BoundaryTooSmall {
            boundary: 32,
            block: 64
        })
    );
    assert_eq!(
        p.dma_pool_create("d", (4 << 20) + 1, 0, 0),
        refused(DmaPoolError::TooLarge {
            size: (4 << 20) + 1
        })
    );
    assert_eq!(s.requests(), 0, "creating never asks the server");
}

#[test]
fn frees_of_anything_but_a_live_block_are_refused() {
    let (_s, mut p) = pools();
    let a = p.dma_pool_create("a", 64, 64, 0).unwrap();
    let other = p.dma_pool_create("b", 64, 64, 0).unwrap();
    let x = p.dma_pool_alloc(a).unwrap();
    let y = p.dma_pool_alloc(other).unwrap();
    let pool_err = |e| Err(DmaError::Pool(e));
    assert_eq!(
        p.dma_pool_free(a, x.vaddr, x.bus + 64),
        pool_err(DmaPoolError::BusMismatch {
            vaddr: x.vaddr,
            bus: x.bus + 64,
            expected: x.bus
        })
    );
    assert_eq!(
        p.dma_pool_free(a, x.vaddr + 8, x.bus + 8),
        pool_err(DmaPoolError::Interior {
            vaddr: x.vaddr + 8,
            block: x.vaddr
        })
    );
    assert!(matches!(
        p.dma_pool_free(a, y.vaddr, y.bus),
        Err(DmaError::Pool(DmaPoolError::WrongPool { .. }))
    ));
    assert_eq!(
        p.dma_pool_free(a, 0x1000, 0x1000),
        pool_err(DmaPoolError::NotInPool { vaddr: 0x1000 })
    );
    p.dma_pool_free(a, x.vaddr, x.bus).unwrap();
    // A double free is caught even outside checking mode.
    assert_eq!(
        p.dma_pool_free(a, x.vaddr, x.bus),
        pool_err(DmaPoolError::DoubleFree { vaddr: x.vaddr })
    );
    p.dma_pool_free(other, y.vaddr, y.bus).unwrap();
    p.check().unwrap();
}

#[test]
fn zalloc_zeroes_the_block() {
    let (s, mut p) = pools();
    let mut mem = s.clone();
    let pool = p.dma_pool_create("z", 100, 16, 0).unwrap();
    let b = p.dma_pool_alloc(pool).unwrap();
    mem.fill(b.vaddr, 112, 0xee).unwrap();
    p.dma_pool_free(pool, b.vaddr, b.bus).unwrap();
    let z = p.dma_pool_zalloc(pool).unwrap();
    assert_eq!(z, b, "last freed, first handed out");
    let mut buf = [1u8; 112];
    mem.read(z.vaddr, &mut buf).unwrap();
    assert!(buf.iter().all(|&x| x == 0));
    p.dma_pool_free(pool, z.vaddr, z.bus).unwrap();
}

#[test]
fn checking_mode_catches_double_frees_and_writes_after_free() {
    let s = MockMm::new();
    let mut mem = s.clone();
    let mut p = DmaPools::new_checking(s.mm(), s.clone());
    let pool = p.dma_pool_create("chk", 48, 16, 0).unwrap();
    let b = p.dma_pool_alloc(pool).unwrap();
    p.dma_pool_free(pool, b.vaddr, b.bus).unwrap();
    assert_eq!(
        p.dma_pool_free(pool, b.vaddr, b.bus),
        Err(DmaError::Pool(DmaPoolError::DoubleFree { vaddr: b.vaddr }))
    );
    p.check_poison().unwrap();
    // A write after free: seen by the poison check, and when handed out.
    mem.write(b.vaddr + 5, &[0]).unwrap();
    assert!(matches!(
        p.check_poison(),
        Err(DmaError::Pool(DmaPoolError::Corrupted(c))) if c.addr == b.vaddr + 5
    ));
    assert!(matches!(
        p.dma_pool_alloc(pool),
        Err(DmaError::Pool(DmaPoolError::Corrupted(c))) if c.block == b.vaddr
    ));
    // The block is quarantined; the next allocation gets another.
    let c = p.dma_pool_alloc(pool).unwrap();
    assert_ne!(c.vaddr, b.vaddr);
    p.dma_pool_free(pool, c.vaddr, c.bus).unwrap();
    assert_eq!(p.pool_stats(pool).unwrap().blocks_quarantined, 1);
    // A per-pool checking option works without the global mode too.
    let (_s2, mut q) = pools();
    let opts = PoolOptions {
        owner: None,
        checking: true,
    };
    let qp = q.create_pool("one", 32, 0, 0, opts).unwrap();
    assert!(q.pool_stats(qp).unwrap().checking);
    p.check().unwrap();
}

#[test]
fn destroying_with_leaks_quarantines_the_chunks_that_hold_them() {
    let (s, mut p) = pools();
    let pool = p.dma_pool_create("leaky", 1024, 1024, 0).unwrap();
    // Four blocks per 4 KiB chunk: two chunks, a block kept in the second.
    let blocks: Vec<DmaBlock> = (0..8).map(|_| p.dma_pool_alloc(pool).unwrap()).collect();
    assert_eq!(dma_bytes(&s), 2 * PAGE_SIZE);
    for b in &blocks[..7] {
        p.dma_pool_free(pool, b.vaddr, b.bus).unwrap();
    }
    let leaked = blocks[7];
    match p.dma_pool_destroy(pool) {
        Err(DestroyError::Leaked(r)) => {
            assert_eq!(r.leaked, [leaked]);
            assert_eq!((r.quarantined_chunks, r.quarantined_bytes), (1, PAGE_SIZE));
        }
        other => panic!("{other:?}"),
    }
    // The free chunk went back; the leaked one stays with the client.
    assert_eq!(dma_bytes(&s), PAGE_SIZE);
    assert_eq!(p.stats().chunks_quarantined, 1);
    assert_eq!(p.leaked_blocks(), [leaked]);
    p.check().unwrap();
    // The pool is gone: its id is refused; its memory is not handed out.
    assert!(matches!(
        p.dma_pool_alloc(pool),
        Err(DmaError::Pool(DmaPoolError::NoSuchPool))
    ));
    let again = p.dma_pool_create("again", 1024, 1024, 0).unwrap();
    let fresh: Vec<DmaBlock> = (0..4).map(|_| p.dma_pool_alloc(again).unwrap()).collect();
    assert!(
        fresh
            .iter()
            .all(|b| chunk_of(&s, b.vaddr) != chunk_of(&s, leaked.vaddr))
    );
    // Releasing the leaked block gives its chunk back.
    assert_eq!(p.release_leaked(leaked.vaddr, leaked.bus), Ok(true));
    assert_eq!(p.stats().chunks_quarantined, 0);
    for b in fresh {
        p.dma_pool_free(again, b.vaddr, b.bus).unwrap();
    }
    p.dma_pool_destroy(again).unwrap();
    assert_eq!(dma_bytes(&s), 0);
    p.check().unwrap();
}

#[test]
fn managed_pools_go_with_their_owner_and_on_drop() {
    let (s, mut p) = pools();
    let mine = p.dmam_pool_create("mine", 64, 64, 0).unwrap();
    let dev = OwnerId(7);
    let devs = p.dmam_pool_create_for(dev, "dev", 256, 0, 0).unwrap();
    let plain = p.dma_pool_create("plain", 32, 0, 0).unwrap();
    for pool in [mine, devs, plain] {
        let b = p.dma_pool_alloc(pool).unwrap();
        p.dma_pool_free(pool, b.vaddr, b.bus).unwrap();
    }
    assert_eq!(p.pool_stats(mine).unwrap().owner, Some(CLIENT_OWNER));
    // Managed pools refuse the unmanaged destroy, and vice versa.
    assert!(matches!(
        p.dma_pool_destroy(mine),
        Err(DestroyError::Refused(DmaPoolError::Managed { .. }))
    ));
    assert_eq!(
        p.dmam_pool_destroy(plain),
        Err(DestroyError::Refused(DmaPoolError::NotOwner))
    );
    // The device goes: its pool with it.
    assert_eq!(p.release_owner(dev), Ok(1));
    assert!(p.pool_stats(devs).is_err());
    assert_eq!(dma_bytes(&s), 2 * PAGE_SIZE);
    // A block left in the client's managed pool at exit is reported.
    let kept = p.dma_pool_alloc(mine).unwrap();
    match p.release_managed() {
        Err(reports) => assert_eq!(reports[0].leaked, [kept]),
        other => panic!("{other:?}"),
    }
    p.release_leaked(kept.vaddr, kept.bus).unwrap();
    let again = p.dmam_pool_create("again", 64, 64, 0).unwrap();
    let b = p.dma_pool_alloc(again).unwrap();
    p.dma_pool_free(again, b.vaddr, b.bus).unwrap();
    p.dma_pool_destroy(plain).unwrap();
    assert_eq!(dma_bytes(&s), PAGE_SIZE);
    // Dropping the pools destroys the managed ones.
    drop(p);
    assert_eq!(dma_bytes(&s), 0);
}

#[test]
fn a_refused_chunk_free_is_counted_and_the_chunk_never_reused() {
    let (s, mut p) = pools();
    let pool = p.dma_pool_create("a", 64, 0, 0).unwrap();
    let b = p.dma_pool_alloc(pool).unwrap();
    p.dma_pool_free(pool, b.vaddr, b.bus).unwrap();
    s.server().fail_next(
        |r| matches!(r, Request::DmaFreeCoherent { .. }),
        MmError::Busy,
        1,
    );
    p.dma_pool_destroy(pool).unwrap();
    let c = p.chunks().stats();
    assert_eq!((c.free_failures, c.held), (1, 1));
    p.check().unwrap();
    assert_eq!(dma_bytes(&s), PAGE_SIZE);
}

#[test]
fn the_bench_loop_allocates_and_frees() {
    let (s, mut p) = pools();
    let pool = p.dma_pool_create("bench", 64, 64, 0).unwrap();
    p.alloc_free_pairs(pool, 1000).unwrap();
    assert_eq!(s.requests(), 1);
    let st = p.pool_stats(pool).unwrap();
    assert_eq!((st.blocks_in_use, st.chunks), (0, 1));
}

/// A step of the property test.
#[derive(Clone, Debug)]
enum Op {
    Create(usize),
    Alloc(prop::sample::Index),
    Free(prop::sample::Index),
    Destroy(prop::sample::Index),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..4usize).prop_map(Op::Create),
        8 => any::<prop::sample::Index>().prop_map(Op::Alloc),
        6 => any::<prop::sample::Index>().prop_map(Op::Free),
        1 => any::<prop::sample::Index>().prop_map(Op::Destroy),
    ]
}

const SHAPES: [(u64, u64, u64); 4] = [(16, 0, 0), (96, 32, 256), (1500, 512, 2048), (6000, 0, 0)];

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random pool operations against a model of the live blocks: after
    /// every step the pools check out, every live block is aligned, keeps
    /// its boundary and lies in a DMA area of the mock, live blocks never
    /// overlap, and the mock's DMA areas are exactly the chunks held.
    #[test]
    fn random_operations_keep_the_accounting(ops in prop::collection::vec(op(), 1..120)) {
        let (s, mut p) = pools();
        let mut live: Vec<(PoolId, usize, Vec<DmaBlock>)> = Vec::new();
        for o in ops {
            match o {
                Op::Create(shape) => {
                    let (size, align, boundary) = SHAPES[shape];
                    let id = p.dma_pool_create("prop", size, align, boundary).unwrap();
                    live.push((id, shape, Vec::new()));
                }
                Op::Alloc(i) if !live.is_empty() => {
                    let at = i.index(live.len());
                    let (id, shape, blocks) = &mut live[at];
                    let (size, align, boundary) = SHAPES[*shape];
                    let b = p.dma_pool_alloc(*id).unwrap();
                    check_block(b, size, align, boundary);
                    chunk_of(&s, b.vaddr);
                    blocks.push(b);
                }
                Op::Free(i) if !live.is_empty() => {
                    let at = i.index(live.len());
                    let (id, _, blocks) = &mut live[at];
                    if !blocks.is_empty() {
                        let b = blocks.swap_remove(i.index(blocks.len()));
                        p.dma_pool_free(*id, b.vaddr, b.bus).unwrap();
                    }
                }
                Op::Destroy(i) if !live.is_empty() => {
                    let (id, _, blocks) = live.swap_remove(i.index(live.len()));
                    match p.dma_pool_destroy(id) {
                        Ok(()) => prop_assert!(blocks.is_empty()),
                        Err(DestroyError::Leaked(r)) => {
                            let mut want = blocks.clone();
                            want.sort();
                            let mut got = r.leaked.clone();
                            got.sort();
                            prop_assert_eq!(got, want);
                            for b in blocks {
                                p.release_leaked(b.vaddr, b.bus).unwrap();
                            }
                        }
                        Err(e) => prop_assert!(false, "{e:?}"),
                    }
                }
                _ => {}
            }
            prop_assert_eq!(p.check(), Ok(()));
            let st = p.stats();
            prop_assert_eq!(dma_bytes(&s), st.bytes_in_pools + st.bytes_quarantined);
            let mut all: Vec<(u64, u64)> = live
                .iter()
                .flat_map(|(id, _, bs)| {
                    let len = p.pool_stats(*id).unwrap().block_size;
                    bs.iter().map(move |b| (b.vaddr, len))
                })
                .collect();
            all.sort();
            prop_assert!(all.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0));
        }
        for (id, _, blocks) in live {
            for b in blocks {
                p.dma_pool_free(id, b.vaddr, b.bus).unwrap();
            }
            p.dma_pool_destroy(id).unwrap();
        }
        prop_assert_eq!(dma_bytes(&s), 0);
    }
}

#[test]
fn exit_releases_managed_pools_then_tells_the_server() {
    let (s, mut p) = pools();
    let mine = p.dmam_pool_create("mine", 64, 64, 0).unwrap();
    let plain = p.dma_pool_create("plain", 64, 64, 0).unwrap();
    let kept = p.dma_pool_alloc(mine).unwrap();
    let b = p.dma_pool_alloc(plain).unwrap();
    let _ = b;
    let before = s.requests();
    let reports = p.exit().unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].leaked, [kept]);
    // No chunk freed (the managed pool's only chunk holds a live block),
    // then Exit: the server takes everything back.
    assert_eq!(s.server().requests_since(before), [Request::Exit]);
    assert_eq!(dma_bytes(&s), 0);
}
