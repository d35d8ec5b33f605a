//! Tests of the DMA pools: unit tests of every rule, and property tests against a model.

use std::collections::{BTreeMap, BTreeSet};
use std::string::String;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::geometry::Geometry;
use super::*;
use crate::addr::PAGE_SIZE;
use crate::memory::ArenaMemory;

/// Where the test source's virtual addresses start.
const VBASE: u64 = 0x4000_0000;
/// The virtual window's size (backed by an [`ArenaMemory`]).
const VLEN: u64 = 8 << 20;
/// Where the test source's bus addresses start.
const BUS_BASE: u64 = 0x8000_0000;

/// A chunk source over a virtual window and a bus window of its own, that
/// checks every call and counts chunks out.
///
/// Chunks are aligned to exactly the alignment asked (an odd multiple of
/// it, virtual and bus alike), so no test passes by luck of a better
/// alignment, and each chunk's `bus - vaddr` differs from the last. It can
/// be told to fail, to hand out a misaligned chunk, or a chunk it already
/// handed out.
struct TestSource {
    vnext: u64,
    bnext: u64,
    /// Freed chunks by (size, align), reused first.
    free: BTreeMap<(u64, u64), Vec<DmaChunk>>,
    /// Chunks out: vaddr → (bus, size).
    out: BTreeMap<u64, (u64, u64)>,
    /// Calls to `alloc_chunk` that returned a chunk.
    allocs: u64,
    /// Chunk allocations left before every further one fails (`None`: no limit).
    budget: Option<u64>,
    /// Hand out the next chunk misaligned.
    misalign_next: bool,
    /// Hand out, next, a chunk already out.
    duplicate_next: bool,
    /// Every chunk given back, in order.
    returned: Vec<DmaChunk>,
}

impl TestSource {
    fn new() -> Self {
        TestSource {
            vnext: VBASE,
            bnext: BUS_BASE,
            free: BTreeMap::new(),
            out: BTreeMap::new(),
            allocs: 0,
            budget: None,
            misalign_next: false,
            duplicate_next: false,
            returned: Vec::new(),
        }
    }

    /// The next odd multiple of `align` at or after `at`.
    fn odd_multiple(at: u64, align: u64) -> u64 {
        let a = at.next_multiple_of(align);
        if (a / align).is_multiple_of(2) {
            a + align
        } else {
            a
        }
    }

    /// The chunk out that holds `vaddr`: (vaddr, bus, size).
    fn chunk_holding(&self, vaddr: u64) -> Option<(u64, u64, u64)> {
        let (&v, &(b, s)) = self.out.range(..=vaddr).next_back()?;
        (vaddr < v + s).then_some((v, b, s))
    }

    fn bytes_out(&self) -> u64 {
        self.out.values().map(|&(_, s)| s).sum()
    }
}

impl DmaChunkSource for TestSource {
    fn alloc_chunk(&mut self, size: u64, align: u64) -> Option<DmaChunk> {
        assert!(
            size > 0 && size.is_multiple_of(PAGE_SIZE),
            "chunk size {size:#x}"
        );
        assert!(
            align.is_power_of_two() && align >= PAGE_SIZE,
            "align {align:#x}"
        );
        if let Some(b) = self.budget.as_mut() {
            if *b == 0 {
                return None;
            }
            *b -= 1;
        }
        if self.duplicate_next {
            self.duplicate_next = false;
            let (&v, &(b, _)) = self.out.iter().next()?;
            return Some(DmaChunk { vaddr: v, bus: b });
        }
        let chunk = match self.free.get_mut(&(size, align)).and_then(|l| l.pop()) {
            Some(c) => c,
            None => {
                let v = Self::odd_multiple(self.vnext, align);
                if v + size > VBASE + VLEN {
                    return None;
                }
                self.vnext = v + size;
                // A gap of a varying number of alignment units: each chunk
                // gets another bus - vaddr offset.
                let b = Self::odd_multiple(self.bnext + (self.allocs % 3) * align, align);
                self.bnext = b + size;
                DmaChunk { vaddr: v, bus: b }
            }
        };
        let chunk = if self.misalign_next {
            self.misalign_next = false;
            self.free.entry((size, align)).or_default().push(chunk);
            DmaChunk {
                vaddr: chunk.vaddr + 16,
                bus: chunk.bus,
            }
        } else {
            assert!(
                self.out.insert(chunk.vaddr, (chunk.bus, size)).is_none(),
                "source: {:#x} handed out twice",
                chunk.vaddr
            );
            chunk
        };
        self.allocs += 1;
        Some(chunk)
    }

    fn free_chunk(&mut self, chunk: DmaChunk, size: u64) {
        self.returned.push(chunk);
        if !chunk.vaddr.is_multiple_of(PAGE_SIZE) {
            // The misaligned chunk it was told to hand out: it is not out.
            return;
        }
        assert_eq!(
            self.out.remove(&chunk.vaddr),
            Some((chunk.bus, size)),
            "source: bad free of {:#x}",
            chunk.vaddr
        );
        let align = 1u64 << chunk.vaddr.trailing_zeros().min(chunk.bus.trailing_zeros());
        let align = align.min(1 << 30);
        self.free.entry((size, align)).or_default().push(chunk);
    }
}

type Pools = DmaPools<TestSource>;

fn setup(checking: bool) -> (Pools, ArenaMemory) {
    let pools = if checking {
        DmaPools::new_checking(TestSource::new())
    } else {
        DmaPools::new(TestSource::new())
    };
    (pools, ArenaMemory::new(VBASE, VLEN as usize))
}

/// Invariants, poison, and chunk conservation against the source.
fn check(pools: &Pools, mem: &ArenaMemory) {
    if let Err(v) = pools.check_invariants() {
        panic!("invariant: {v}");
    }
    pools.check_poison(mem).unwrap();
    let st = pools.stats();
    let held = st.chunks_in_pools + st.chunks_quarantined;
    assert_eq!(st.chunks_obtained - st.chunks_returned, held);
    assert_eq!(pools.source().out.len() as u64, held);
    assert_eq!(
        pools.source().bytes_out(),
        st.bytes_in_pools + st.bytes_quarantined
    );
}

fn read(mem: &ArenaMemory, addr: u64, len: u64) -> Vec<u8> {
    let mut buf = vec![0; len as usize];
    mem.read(addr, &mut buf).unwrap();
    buf
}

/// Whether `[addr, addr + len)` lies in one window of `boundary` bytes
/// (any range does when `boundary` is 0).
fn in_one_window(addr: u64, len: u64, boundary: u64) -> bool {
    addr.checked_div(boundary) == (addr + len - 1).checked_div(boundary)
}

/// Linux's `pool_initialise_page` (6.3+), written out independently: the
/// chunk offsets of the blocks of a pool created with these parameters.
fn linux_offsets(size: u64, align: u64, boundary: u64) -> Vec<u64> {
    let align = align.max(1);
    let size = size.next_multiple_of(align).max(16);
    let allocation = size.max(PAGE_SIZE);
    let boundary = if boundary == 0 { allocation } else { boundary }.min(allocation);
    let mut out = Vec::new();
    let (mut offset, mut next_boundary) = (0, boundary);
    while offset + size <= allocation {
        if offset + size > next_boundary {
            offset = next_boundary;
            next_boundary += boundary;
            continue;
        }
        out.push(offset);
        offset += size;
    }
    out
}

/// What `dma_pool_create` must say about these parameters (Linux's checks).
fn expected_create(size: u64, align: u64, boundary: u64) -> Result<u64, DmaPoolError> {
    if size == 0 {
        return Err(DmaPoolError::ZeroSize);
    }
    if align != 0 && !align.is_power_of_two() {
        return Err(DmaPoolError::BadAlign { align });
    }
    let block = size
        .checked_next_multiple_of(align.max(1))
        .map(|b| b.max(16));
    let Some(block) = block.filter(|&b| b <= DMA_POOL_MAX_BLOCK) else {
        return Err(DmaPoolError::TooLarge { size });
    };
    if boundary != 0 && !boundary.is_power_of_two() {
        return Err(DmaPoolError::BadBoundary { boundary });
    }
    if boundary != 0 && boundary < block {
        return Err(DmaPoolError::BoundaryTooSmall { boundary, block });
    }
    Ok(block)
}

// ----- creation -----

#[test]
fn create_rejects_bad_parameters() {
    let (mut p, _) = setup(false);
    let cases = [
        (0, 8, 0, DmaPoolError::ZeroSize),
        (0, 0, 0, DmaPoolError::ZeroSize),
        (64, 3, 0, DmaPoolError::BadAlign { align: 3 }),
        (64, 48, 0, DmaPoolError::BadAlign { align: 48 }),
        (64, 0, 100, DmaPoolError::BadBoundary { boundary: 100 }),
        (64, 0, 3, DmaPoolError::BadBoundary { boundary: 3 }),
        (
            64,
            0,
            32,
            DmaPoolError::BoundaryTooSmall {
                boundary: 32,
                block: 64,
            },
        ),
        // The check is against the rounded size: 20 rounded to 32 > 16.
        (
            20,
            32,
            16,
            DmaPoolError::BoundaryTooSmall {
                boundary: 16,
                block: 32,
            },
        ),
        // Even the minimum block: 1 byte is a 16-byte block.
        (
            1,
            0,
            8,
            DmaPoolError::BoundaryTooSmall {
                boundary: 8,
                block: 16,
            },
        ),
        (
            DMA_POOL_MAX_BLOCK + 1,
            0,
            0,
            DmaPoolError::TooLarge {
                size: DMA_POOL_MAX_BLOCK + 1,
            },
        ),
        (u64::MAX, 8, 0, DmaPoolError::TooLarge { size: u64::MAX }),
        (8, 1 << 63, 0, DmaPoolError::TooLarge { size: 8 }),
    ];
    for (size, align, boundary, err) in cases {
        assert_eq!(
            p.dma_pool_create("bad", size, align, boundary),
            Err(err),
            "size {size} align {align} boundary {boundary}"
        );
        assert_eq!(expected_create(size, align, boundary), Err(err));
    }
    assert_eq!(p.stats().pools, 0);
    check(&p, &ArenaMemory::new(VBASE, 0));
}

#[test]
fn size_is_rounded_to_alignment_and_minimum() {
    let (mut p, _) = setup(false);
    let cases = [
        // (size, align, block, chunk)
        (1, 0, 16, PAGE_SIZE),
        (1, 1, 16, PAGE_SIZE),
        (17, 0, 17, PAGE_SIZE),
        (24, 8, 24, PAGE_SIZE),
        (20, 32, 32, PAGE_SIZE),
        (68, 32, 96, PAGE_SIZE),
        (100, 64, 128, PAGE_SIZE),
        (4096, 4096, 4096, PAGE_SIZE),
        (4097, 0, 4097, 2 * PAGE_SIZE),
        (5000, 0, 5000, 2 * PAGE_SIZE),
        (12288, 0, 12288, 3 * PAGE_SIZE),
        (16, 8192, 8192, 2 * PAGE_SIZE),
        (
            DMA_POOL_MAX_BLOCK,
            0,
            DMA_POOL_MAX_BLOCK,
            DMA_POOL_MAX_BLOCK,
        ),
    ];
    for (size, align, block, chunk) in cases {
        let id = p.dma_pool_create("r", size, align, 0).unwrap();
        let st = p.pool_stats(id).unwrap();
        assert_eq!(
            (st.block_size, st.chunk_size),
            (block, chunk),
            "size {size}"
        );
        assert_eq!(st.align, align.max(1));
        assert_eq!(st.size, size);
        assert_eq!(st.chunks, 0, "creation obtains no chunk");
        assert_eq!(expected_create(size, align, 0), Ok(block));
    }
}

/// The layout equals Linux's, exhaustively over sizes, alignments and
/// boundaries, and no block crosses its boundary window.
#[test]
fn geometry_matches_linux_layout_exhaustively() {
    let aligns = [
        0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
    ];
    let mut sizes: Vec<u64> = (1..=1200).collect();
    sizes.extend((1201..=9000).step_by(37));
    sizes.extend([
        2048, 4095, 4096, 4097, 8191, 8192, 8193, 12288, 16384, 65536,
    ]);
    let mut checked = 0;
    for &size in &sizes {
        for &align in &aligns {
            for boundary in (0..=15).map(|k| if k == 0 { 0 } else { 1u64 << (k + 2) }) {
                let expected = expected_create(size, align, boundary);
                let geo = Geometry::new(size, align, boundary);
                assert_eq!(geo.map(|g| g.block), expected, "{size}/{align}/{boundary}");
                let Ok(g) = geo else { continue };
                let offs: Vec<u64> = (0..g.blocks).map(|i| g.offset(i)).collect();
                assert_eq!(
                    offs,
                    linux_offsets(size, align, boundary),
                    "{size}/{align}/{boundary}"
                );
                for (i, &off) in offs.iter().enumerate() {
                    assert!(in_one_window(off, g.block, boundary));
                    assert_eq!(g.block_at(off), Some(i as u32));
                }
                // Every other offset of a sampled chunk is refused by the
                // fast arithmetic and classified by the slow one.
                if checked % 97 == 0 {
                    for off in 0..g.chunk_size {
                        let place = g.place(off);
                        match offs.binary_search(&off) {
                            Ok(i) => assert_eq!(place, Place::Block(i as u32)),
                            Err(_) => {
                                assert_eq!(g.block_at(off), None);
                                match place {
                                    Place::Interior { start } => {
                                        assert!(offs.contains(&start));
                                        assert!(start < off && off < start + g.block);
                                    }
                                    Place::Gap => {
                                        assert!(offs.iter().all(|&s| off < s || off >= s + g.block))
                                    }
                                    Place::Block(_) => panic!("{off} is no block start"),
                                }
                            }
                        }
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 100_000, "{checked}");
}

// ----- blocks -----

/// Allocates every block of `chunks` chunks of pools with awkward
/// parameters (including size == boundary, blocks that would straddle a
/// boundary, boundaries larger than the chunk), and checks each block
/// against the real bus and virtual addresses.
#[test]
fn no_block_crosses_a_boundary_or_misaligns() {
    let params = [
        (16, 16, 0),
        (16, 0, 16),
        (64, 0, 64),
        (48, 16, 64),
        (100, 4, 256),
        (24, 8, 32),
        (68, 32, 4096),
        (1000, 8, 1024),
        (1500, 0, 2048),
        (2048, 0, 2048),
        (3000, 0, 4096),
        (4096, 4096, 4096),
        (5000, 0, 8192),
        (5000, 0, 1 << 20),
        (12288, 0, 16384),
        (12288, 0, 1 << 15),
        (12000, 4096, 1 << 32),
        (200, 8, 512),
        (33, 1, 64),
        (16, 8192, 0),
    ];
    for (size, align, boundary) in params {
        let (mut p, mut mem) = setup(false);
        let id = p.dma_pool_create("b", size, align, boundary).unwrap();
        let st = p.pool_stats(id).unwrap();
        let (block, per_chunk) = (st.block_size, st.blocks_per_chunk);
        let linux = linux_offsets(size, align, boundary);
        assert_eq!(per_chunk, linux.len() as u64);
        let mut blocks = Vec::new();
        for _ in 0..3 * per_chunk {
            blocks.push(p.dma_pool_alloc(&mut mem, id).unwrap());
        }
        assert_eq!(p.pool_stats(id).unwrap().chunks, 3);
        for b in &blocks {
            let a = align.max(1);
            assert_eq!(b.vaddr % a, 0, "{size}/{align}/{boundary}: {b:x?}");
            assert_eq!(b.bus % a, 0, "{size}/{align}/{boundary}: {b:x?}");
            assert!(in_one_window(b.bus, block, boundary), "{b:x?}");
            assert!(in_one_window(b.vaddr, block, boundary), "{b:x?}");
            let (cv, cb, cs) = p.source().chunk_holding(b.vaddr).unwrap();
            assert!(b.vaddr + block <= cv + cs);
            assert_eq!(b.bus - b.vaddr, cb.wrapping_sub(cv), "offset of the chunk");
        }
        // Each chunk's blocks are Linux's offsets, handed out in address order.
        for chunk in blocks.chunks(per_chunk as usize) {
            let base = chunk[0].vaddr;
            let offs: Vec<u64> = chunk.iter().map(|b| b.vaddr - base).collect();
            assert_eq!(offs, linux, "{size}/{align}/{boundary}");
        }
        let mut sorted = blocks.clone();
        sorted.sort();
        for w in sorted.windows(2) {
            assert!(w[0].vaddr + block <= w[1].vaddr, "overlap");
        }
        check(&p, &mem);
        for b in blocks {
            p.dma_pool_free(&mut mem, id, b.vaddr, b.bus).unwrap();
        }
        p.dma_pool_destroy(id).unwrap();
        check(&p, &mem);
        assert!(p.source().out.is_empty());
    }
}

#[test]
fn bus_and_virtual_addresses_differ_by_the_chunk_offset() {
    let (mut p, mut mem) = setup(false);
    let id = p.dma_pool_create("off", 512, 64, 0).unwrap();
    let blocks: Vec<DmaBlock> = (0..40)
        .map(|_| p.dma_pool_alloc(&mut mem, id).unwrap())
        .collect();
    let mut deltas = BTreeSet::new();
    for b in &blocks {
        let (cv, cb, _) = p.source().chunk_holding(b.vaddr).unwrap();
        assert_eq!(b.bus.wrapping_sub(b.vaddr), cb.wrapping_sub(cv));
        assert_eq!(b.bus - cb, b.vaddr - cv);
        deltas.insert(cb.wrapping_sub(cv));
    }
    assert!(deltas.len() > 1, "the source varies the offset per chunk");
}

#[test]
fn blocks_come_from_chunks_without_a_call_per_block() {
    let (mut p, mut mem) = setup(false);
    let id = p.dma_pool_create("few calls", 16, 16, 0).unwrap();
    let mut blocks = Vec::new();
    for _ in 0..256 {
        blocks.push(p.dma_pool_alloc(&mut mem, id).unwrap());
    }
    assert_eq!(p.source().allocs, 1, "256 16-byte blocks fit one page");
    for _ in 0..1000 {
        let b = blocks.pop().unwrap();
        p.dma_pool_free(&mut mem, id, b.vaddr, b.bus).unwrap();
        blocks.push(p.dma_pool_alloc(&mut mem, id).unwrap());
    }
    assert_eq!(p.source().allocs, 1);
    blocks.push(p.dma_pool_alloc(&mut mem, id).unwrap());
    assert_eq!(p.source().allocs, 2);
    assert_eq!(p.pool_stats(id).unwrap().blocks_in_use, 257);
    check(&p, &mem);
}

#[test]
fn freed_blocks_are_reused_last_freed_first() {
    let (mut p, mut mem) = setup(false);
    let id = p.dma_pool_create("lifo", 64, 0, 0).unwrap();
    let a = p.dma_pool_alloc(&mut mem, id).unwrap();
    let b = p.dma_pool_alloc(&mut mem, id).unwrap();
    assert_eq!(
        b.vaddr,
        a.vaddr + 64,
        "a new chunk goes out in address order"
    );
    p.dma_pool_free(&mut mem, id, a.vaddr, a.bus).unwrap();
    p.dma_pool_free(&mut mem, id, b.vaddr, b.bus).unwrap();
    assert_eq!(p.dma_pool_alloc(&mut mem, id).unwrap(), b);
    assert_eq!(p.dma_pool_alloc(&mut mem, id).unwrap(), a);
}

#[test]
fn zalloc_zeroes_the_whole_block() {
    for checking in [false, true] {
        let (mut p, mut mem) = setup(checking);
        mem.fill(VBASE, VLEN, 0xff).unwrap();
        let id = p.dma_pool_create("z", 60, 32, 0).unwrap();
        let a = p.dma_pool_zalloc(&mut mem, id).unwrap();
        assert_eq!(read(&mem, a.vaddr, 64), vec![0; 64]);
        // Dirty it, free it, and get it zeroed again.
        mem.fill(a.vaddr, 64, 0x5a).unwrap();
        p.dma_pool_free(&mut mem, id, a.vaddr, a.bus).unwrap();
        let b = p.dma_pool_zalloc(&mut mem, id).unwrap();
        assert_eq!(b, a);
        assert_eq!(read(&mem, b.vaddr, 64), vec![0; 64]);
        check(&p, &mem);
    }
}

#[test]
fn zalloc_that_cannot_write_leaves_the_block_free() {
    let (mut p, mut mem) = setup(false);
    let id = p.dma_pool_create("z", 64, 0, 0).unwrap();
    let a = p.dma_pool_alloc(&mut mem, id).unwrap();
    p.dma_pool_free(&mut mem, id, a.vaddr, a.bus).unwrap();
    let before = p.pool_stats(id).unwrap();
    let mut nowhere = ArenaMemory::new(0, 0);
    assert!(matches!(
        p.dma_pool_zalloc(&mut nowhere, id),
        Err(DmaPoolError::Access(_))
    ));
    assert_eq!(p.pool_stats(id).unwrap(), before);
    assert_eq!(p.dma_pool_alloc(&mut mem, id).unwrap(), a);
    check(&p, &mem);
}

#[test]
fn large_blocks_get_their_own_chunks() {
    let (mut p, mut mem) = setup(false);
    let id = p.dma_pool_create("big", 12288, 0, 1 << 14).unwrap();
    let st = p.pool_stats(id).unwrap();
    assert_eq!(
        (st.chunk_size, st.chunk_align, st.blocks_per_chunk),
        (12288, 16384, 1)
    );
    let a = p.dma_pool_alloc(&mut mem, id).unwrap();
    let b = p.dma_pool_alloc(&mut mem, id).unwrap();
    assert_eq!(p.source().allocs, 2);
    for x in [a, b] {
        assert_eq!(x.bus >> 14, (x.bus + 12287) >> 14);
        assert_eq!(x.bus % 16384, 0);
    }
    // Interior addresses in the second and third page are found.
    assert_eq!(
        p.dma_pool_free(&mut mem, id, a.vaddr + 8192 + 5, a.bus + 8192 + 5),
        Err(DmaPoolError::Interior {
            vaddr: a.vaddr + 8192 + 5,
            block: a.vaddr
        })
    );
    check(&p, &mem);
}

// ----- bogus frees -----

/// Every kind of bogus free is refused with its own error and changes
/// nothing, in both modes.
#[test]
fn bogus_frees_are_refused_and_change_nothing() {
    for checking in [false, true] {
        let (mut p, mut mem) = setup(checking);
        let id = p.dma_pool_create("a", 48, 16, 64).unwrap();
        let other = p.dma_pool_create("b", 64, 0, 0).unwrap();
        let doomed = p.dma_pool_create("c", 64, 0, 0).unwrap();
        let a = p.dma_pool_alloc(&mut mem, id).unwrap();
        let b = p.dma_pool_alloc(&mut mem, id).unwrap();
        let freed = p.dma_pool_alloc(&mut mem, id).unwrap();
        p.dma_pool_free(&mut mem, id, freed.vaddr, freed.bus)
            .unwrap();
        let o = p.dma_pool_alloc(&mut mem, other).unwrap();
        let d = p.dma_pool_alloc(&mut mem, doomed).unwrap();
        assert!(matches!(
            p.dma_pool_destroy(doomed),
            Err(DestroyError::Leaked(_))
        ));
        // Blocks of 48 in windows of 64: block 1 starts at 64, [48, 64) is a gap.
        assert_eq!(b.vaddr, a.vaddr + 64);
        let never = DmaBlock {
            vaddr: a.vaddr + 3 * 64,
            bus: a.bus + 3 * 64,
        };
        let cases = [
            (
                id,
                a.vaddr + 8,
                a.bus + 8,
                DmaPoolError::Interior {
                    vaddr: a.vaddr + 8,
                    block: a.vaddr,
                },
            ),
            (
                id,
                a.vaddr + 48,
                a.bus + 48,
                DmaPoolError::Gap {
                    vaddr: a.vaddr + 48,
                },
            ),
            (
                id,
                a.vaddr,
                a.bus + 64,
                DmaPoolError::BusMismatch {
                    vaddr: a.vaddr,
                    bus: a.bus + 64,
                    expected: a.bus,
                },
            ),
            (
                id,
                never.vaddr,
                never.bus,
                DmaPoolError::NeverAllocated { vaddr: never.vaddr },
            ),
            (
                id,
                freed.vaddr,
                freed.bus,
                DmaPoolError::DoubleFree { vaddr: freed.vaddr },
            ),
            (
                id,
                o.vaddr,
                o.bus,
                DmaPoolError::WrongPool {
                    vaddr: o.vaddr,
                    pool: other,
                },
            ),
            (
                other,
                a.vaddr,
                a.bus,
                DmaPoolError::WrongPool {
                    vaddr: a.vaddr,
                    pool: id,
                },
            ),
            (
                id,
                d.vaddr,
                d.bus,
                DmaPoolError::DestroyedPool { vaddr: d.vaddr },
            ),
            (id, 0, 0, DmaPoolError::NotInPool { vaddr: 0 }),
            (id, u64::MAX, 0, DmaPoolError::NotInPool { vaddr: u64::MAX }),
            (
                id,
                VBASE + VLEN - 16,
                0,
                DmaPoolError::NotInPool {
                    vaddr: VBASE + VLEN - 16,
                },
            ),
            (doomed, d.vaddr, d.bus, DmaPoolError::NoSuchPool),
        ];
        let snapshot = |p: &Pools| {
            (
                p.stats(),
                p.pool_stats(id).unwrap(),
                p.pool_stats(other).unwrap(),
                p.live_blocks(id).unwrap(),
                p.leaked_blocks(),
            )
        };
        let before = snapshot(&p);
        let mem_before = read(&mem, a.vaddr, 4 * 64);
        for (pool, vaddr, bus, err) in cases {
            assert_eq!(
                p.dma_pool_free(&mut mem, pool, vaddr, bus),
                Err(err),
                "checking {checking}"
            );
            assert_eq!(snapshot(&p), before);
            assert_eq!(read(&mem, a.vaddr, 4 * 64), mem_before);
            check(&p, &mem);
        }
        // And the real frees still work.
        p.dma_pool_free(&mut mem, id, a.vaddr, a.bus).unwrap();
        p.dma_pool_free(&mut mem, id, b.vaddr, b.bus).unwrap();
        assert_eq!(
            p.dma_pool_free(&mut mem, id, a.vaddr, a.bus),
            Err(DmaPoolError::DoubleFree { vaddr: a.vaddr })
        );
        check(&p, &mem);
    }
}

// ----- checking mode -----

#[test]
fn checking_mode_poisons_freed_and_allocated_blocks() {
    let (mut p, mut mem) = setup(false);
    let options = PoolOptions {
        owner: None,
        checking: true,
    };
    let id = p.create_pool("poison", 64, 0, 0, options).unwrap();
    assert!(p.pool_stats(id).unwrap().checking);
    let a = p.dma_pool_alloc(&mut mem, id).unwrap();
    assert_eq!(read(&mem, a.vaddr, 64), vec![POOL_POISON_ALLOCATED; 64]);
    // The rest of the new chunk is poisoned free.
    assert_eq!(read(&mem, a.vaddr + 64, 64), vec![POOL_POISON_FREED; 64]);
    p.dma_pool_free(&mut mem, id, a.vaddr, a.bus).unwrap();
    assert_eq!(read(&mem, a.vaddr, 64), vec![POOL_POISON_FREED; 64]);
    // A pool without checking touches no memory.
    let plain = p.dma_pool_create("plain", 64, 0, 0).unwrap();
    let mut nowhere = ArenaMemory::new(0, 0);
    let b = p.dma_pool_alloc(&mut nowhere, plain).unwrap();
    p.dma_pool_free(&mut nowhere, plain, b.vaddr, b.bus)
        .unwrap();
    check(&p, &mem);
}

#[test]
fn checking_mode_catches_a_write_after_free() {
    let (mut p, mut mem) = setup(true);
    let id = p.dma_pool_create("uaf", 32, 0, 0).unwrap();
    let a = p.dma_pool_alloc(&mut mem, id).unwrap();
    p.dma_pool_free(&mut mem, id, a.vaddr, a.bus).unwrap();
    mem.write(a.vaddr + 5, &[0x42]).unwrap();
    let corruption = Corruption {
        block: a.vaddr,
        addr: a.vaddr + 5,
        expected: POOL_POISON_FREED,
        found: 0x42,
    };
    assert_eq!(
        p.check_poison(&mem),
        Err(DmaPoolError::Corrupted(corruption))
    );
    assert_eq!(
        p.dma_pool_alloc(&mut mem, id),
        Err(DmaPoolError::Corrupted(corruption))
    );
    // Quarantined: never handed out again, and not freeable.
    let st = p.pool_stats(id).unwrap();
    assert_eq!((st.blocks_quarantined, st.blocks_in_use), (1, 0));
    let b = p.dma_pool_alloc(&mut mem, id).unwrap();
    assert_ne!(b, a);
    assert_eq!(
        p.dma_pool_free(&mut mem, id, a.vaddr, a.bus),
        Err(DmaPoolError::Quarantined { vaddr: a.vaddr })
    );
    p.check_poison(&mem).unwrap();
    check(&p, &mem);
    // A quarantined block holds no chunk at destroy.
    p.dma_pool_free(&mut mem, id, b.vaddr, b.bus).unwrap();
    p.dma_pool_destroy(id).unwrap();
    assert!(p.source().out.is_empty());
    check(&p, &mem);
}

#[test]
fn checking_mode_free_that_cannot_write_changes_nothing() {
    let (mut p, mut mem) = setup(true);
    let id = p.dma_pool_create("w", 64, 0, 0).unwrap();
    let a = p.dma_pool_alloc(&mut mem, id).unwrap();
    let mut nowhere = ArenaMemory::new(0, 0);
    assert!(matches!(
        p.dma_pool_free(&mut nowhere, id, a.vaddr, a.bus),
        Err(DmaPoolError::Access(_))
    ));
    assert_eq!(p.live_blocks(id).unwrap(), vec![a]);
    assert!(matches!(
        p.dma_pool_alloc(&mut nowhere, id),
        Err(DmaPoolError::Access(_))
    ));
    p.dma_pool_free(&mut mem, id, a.vaddr, a.bus).unwrap();
    check(&p, &mem);
}

// ----- destruction and leaks -----

#[test]
fn destroy_reports_each_leaked_block_and_quarantines_its_chunk() {
    let (mut p, mut mem) = setup(false);
    let id = p.dma_pool_create("leaky", 1024, 0, 0).unwrap();
    // Three chunks of four blocks; leak two blocks of the first, none of
    // the second, one of the third.
    let blocks: Vec<DmaBlock> = (0..12)
        .map(|_| p.dma_pool_alloc(&mut mem, id).unwrap())
        .collect();
    for (i, b) in blocks.iter().enumerate() {
        if ![1, 3, 9].contains(&i) {
            p.dma_pool_free(&mut mem, id, b.vaddr, b.bus).unwrap();
        }
    }
    let leaked = vec![blocks[1], blocks[3], blocks[9]];
    assert_eq!(p.live_blocks(id).unwrap(), leaked);
    let report = match p.dma_pool_destroy(id) {
        Err(DestroyError::Leaked(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(report.pool, id);
    assert_eq!(report.name, "leaky");
    assert_eq!(report.leaked, leaked);
    assert_eq!(
        (report.quarantined_chunks, report.quarantined_bytes),
        (2, 2 * PAGE_SIZE)
    );
    // The leak-free chunk went back; the other two are held, accounted.
    assert_eq!(p.source().returned.len(), 1);
    let st = p.stats();
    assert_eq!(
        (
            st.pools,
            st.quarantined_pools,
            st.chunks_quarantined,
            st.blocks_leaked
        ),
        (0, 1, 2, 3)
    );
    assert_eq!(p.leaked_blocks(), leaked);
    check(&p, &mem);
    // The pool is gone.
    assert_eq!(
        p.dma_pool_alloc(&mut mem, id),
        Err(DmaPoolError::NoSuchPool)
    );
    assert_eq!(
        p.dma_pool_destroy(id),
        Err(DestroyError::Refused(DmaPoolError::NoSuchPool))
    );
    // The quarantined memory is never handed out again, even to a pool of
    // the same geometry.
    let again = p.dma_pool_create("again", 1024, 0, 0).unwrap();
    assert_ne!(again.index, id.index, "the slot is still quarantined");
    let fresh: Vec<DmaBlock> = (0..12)
        .map(|_| p.dma_pool_alloc(&mut mem, again).unwrap())
        .collect();
    for f in &fresh {
        for l in &leaked {
            assert!(p.source().chunk_holding(f.vaddr) != p.source().chunk_holding(l.vaddr));
        }
    }
    check(&p, &mem);
    // Releasing the leaked blocks gives the chunks back as they empty.
    assert_eq!(
        p.release_leaked(leaked[0].vaddr + 1, leaked[0].bus + 1),
        Err(DmaPoolError::NotLeaked {
            vaddr: leaked[0].vaddr + 1
        })
    );
    assert_eq!(
        p.release_leaked(fresh[0].vaddr, fresh[0].bus),
        Err(DmaPoolError::NotLeaked {
            vaddr: fresh[0].vaddr
        })
    );
    assert_eq!(
        p.release_leaked(leaked[0].vaddr, leaked[0].bus + 1),
        Err(DmaPoolError::BusMismatch {
            vaddr: leaked[0].vaddr,
            bus: leaked[0].bus + 1,
            expected: leaked[0].bus
        })
    );
    assert_eq!(p.release_leaked(leaked[0].vaddr, leaked[0].bus), Ok(false));
    assert_eq!(
        p.release_leaked(leaked[0].vaddr, leaked[0].bus),
        Err(DmaPoolError::NotLeaked {
            vaddr: leaked[0].vaddr
        })
    );
    check(&p, &mem);
    assert_eq!(p.release_leaked(leaked[1].vaddr, leaked[1].bus), Ok(true));
    check(&p, &mem);
    assert_eq!(p.stats().quarantined_pools, 1);
    assert_eq!(p.release_leaked(leaked[2].vaddr, leaked[2].bus), Ok(true));
    let st = p.stats();
    assert_eq!((st.quarantined_pools, st.chunks_quarantined), (0, 0));
    check(&p, &mem);
    // The slot is reused, and the old id stays stale.
    let third = p.dma_pool_create("third", 64, 0, 0).unwrap();
    assert_eq!(third.index, id.index);
    assert_eq!(
        p.dma_pool_alloc(&mut mem, id),
        Err(DmaPoolError::NoSuchPool)
    );
    for f in fresh {
        p.dma_pool_free(&mut mem, again, f.vaddr, f.bus).unwrap();
    }
    p.dma_pool_destroy(again).unwrap();
    p.dma_pool_destroy(third).unwrap();
    assert!(p.source().out.is_empty());
    check(&p, &mem);
}

#[test]
fn clean_destroy_returns_every_chunk() {
    let (mut p, mut mem) = setup(false);
    let id = p.dma_pool_create("clean", 700, 0, 0).unwrap();
    let blocks: Vec<DmaBlock> = (0..30)
        .map(|_| p.dma_pool_alloc(&mut mem, id).unwrap())
        .collect();
    let chunks = p.pool_stats(id).unwrap().chunks;
    for b in blocks {
        p.dma_pool_free(&mut mem, id, b.vaddr, b.bus).unwrap();
    }
    assert_eq!(p.dma_pool_destroy(id), Ok(()));
    assert_eq!(p.source().returned.len() as u64, chunks);
    assert!(p.source().out.is_empty());
    assert_eq!(p.stats().pools, 0);
    check(&p, &mem);
}

// ----- managed pools -----

#[test]
fn managed_pools_die_with_their_owner() {
    let (mut p, mut mem) = setup(false);
    let (alice, bob) = (OwnerId(1), OwnerId(2));
    let a1 = p.dmam_pool_create(alice, "a1", 64, 0, 0).unwrap();
    let a2 = p.dmam_pool_create(alice, "a2", 256, 0, 4096).unwrap();
    let b1 = p.dmam_pool_create(bob, "b1", 64, 0, 0).unwrap();
    let plain = p.dma_pool_create("plain", 64, 0, 0).unwrap();
    assert_eq!(p.pools_of(alice), vec![a1, a2]);
    let x = p.dma_pool_alloc(&mut mem, a1).unwrap();
    let y = p.dma_pool_alloc(&mut mem, a2).unwrap();
    p.dma_pool_free(&mut mem, a2, y.vaddr, y.bus).unwrap();
    let z = p.dma_pool_alloc(&mut mem, b1).unwrap();
    // Managed pools are destroyed by their owner only.
    assert_eq!(
        p.dma_pool_destroy(a1),
        Err(DestroyError::Refused(DmaPoolError::Managed {
            owner: alice
        }))
    );
    assert_eq!(
        p.dmam_pool_destroy(bob, a1),
        Err(DestroyError::Refused(DmaPoolError::NotOwner))
    );
    assert_eq!(
        p.dmam_pool_destroy(alice, plain),
        Err(DestroyError::Refused(DmaPoolError::NotOwner))
    );
    check(&p, &mem);
    // Alice goes: both her pools die, the leak in a1 is reported.
    let reports = p.destroy_owner(alice).unwrap_err();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].pool, a1);
    assert_eq!(reports[0].owner, Some(alice));
    assert_eq!(reports[0].leaked, vec![x]);
    for id in [a1, a2] {
        assert_eq!(p.pool_stats(id), Err(DmaPoolError::NoSuchPool));
    }
    assert!(p.pools_of(alice).is_empty());
    assert_eq!(p.destroy_owner(alice), Ok(0));
    // Bob's pool and the plain one live on.
    assert_eq!(p.pool_stats(b1).unwrap().blocks_in_use, 1);
    assert_eq!(p.pools_of(bob), vec![b1]);
    check(&p, &mem);
    p.dma_pool_free(&mut mem, b1, z.vaddr, z.bus).unwrap();
    assert_eq!(p.destroy_owner(bob), Ok(1));
    assert_eq!(p.dmam_pool_create(bob, "b2", 64, 0, 0).map(|_| ()), Ok(()));
    let b2 = p.pools_of(bob)[0];
    assert_eq!(p.dmam_pool_destroy(bob, b2), Ok(()));
    p.dma_pool_destroy(plain).unwrap();
    assert_eq!(p.release_leaked(x.vaddr, x.bus), Ok(true));
    assert!(p.source().out.is_empty());
    check(&p, &mem);
}

// ----- the chunk source -----

#[test]
fn exhausted_source_fails_cleanly() {
    let (mut p, mut mem) = setup(false);
    let id = p.dma_pool_create("oom", 2048, 0, 0).unwrap();
    p.source_mut().budget = Some(1);
    let a = p.dma_pool_alloc(&mut mem, id).unwrap();
    let b = p.dma_pool_alloc(&mut mem, id).unwrap();
    let before = p.pool_stats(id).unwrap();
    assert_eq!(
        p.dma_pool_alloc(&mut mem, id),
        Err(DmaPoolError::OutOfMemory)
    );
    assert_eq!(
        p.dma_pool_zalloc(&mut mem, id),
        Err(DmaPoolError::OutOfMemory)
    );
    assert_eq!(p.pool_stats(id).unwrap(), before);
    check(&p, &mem);
    p.dma_pool_free(&mut mem, id, a.vaddr, a.bus).unwrap();
    assert_eq!(p.dma_pool_alloc(&mut mem, id).unwrap(), a);
    let _ = b;
}

#[test]
fn misbehaving_source_is_caught() {
    let (mut p, mut mem) = setup(false);
    let id = p.dma_pool_create("m", 64, 0, 0).unwrap();
    p.source_mut().misalign_next = true;
    let err = p.dma_pool_alloc(&mut mem, id).unwrap_err();
    assert!(matches!(err, DmaPoolError::ChunkRejected { .. }), "{err:?}");
    assert_eq!(p.source().returned.len(), 1, "the bad chunk went back");
    check(&p, &mem);
    let a = p.dma_pool_alloc(&mut mem, id).unwrap();
    // A second pool handed the first pool's chunk.
    let other = p.dma_pool_create("o", 64, 0, 0).unwrap();
    p.source_mut().duplicate_next = true;
    assert_eq!(
        p.dma_pool_alloc(&mut mem, other),
        Err(DmaPoolError::ChunkConflict {
            vaddr: a.vaddr - (a.vaddr % PAGE_SIZE)
        })
    );
    assert_eq!(
        p.source().returned.len(),
        1,
        "a conflicting chunk is not freed"
    );
    assert_eq!(p.pool_stats(other).unwrap().chunks, 0);
    check(&p, &mem);
}

#[test]
fn stale_and_unknown_ids_are_refused() {
    let (mut p, mut mem) = setup(false);
    let id = p.dma_pool_create("s", 64, 0, 0).unwrap();
    p.dma_pool_destroy(id).unwrap();
    let reused = p.dma_pool_create("t", 64, 0, 0).unwrap();
    assert_eq!(reused.index, id.index);
    let bogus = PoolId {
        index: 77,
        generation: 0,
    };
    assert_eq!(PoolId::from_raw(reused.to_raw()), reused);
    let forged = PoolId::from_raw(reused.to_raw() + (1 << 32));
    for bad in [id, bogus, forged] {
        assert_eq!(
            p.dma_pool_alloc(&mut mem, bad),
            Err(DmaPoolError::NoSuchPool)
        );
        assert_eq!(
            p.dma_pool_zalloc(&mut mem, bad),
            Err(DmaPoolError::NoSuchPool)
        );
        assert_eq!(
            p.dma_pool_free(&mut mem, bad, VBASE, BUS_BASE),
            Err(DmaPoolError::NoSuchPool)
        );
        assert_eq!(p.pool_stats(bad), Err(DmaPoolError::NoSuchPool));
        assert_eq!(p.live_blocks(bad), Err(DmaPoolError::NoSuchPool));
    }
    assert!(p.dma_pool_alloc(&mut mem, reused).is_ok());
    check(&p, &mem);
}

#[test]
fn errors_display() {
    let e = DmaPoolError::Interior {
        vaddr: 0x1008,
        block: 0x1000,
    };
    assert_eq!(std::format!("{e}"), "0x1008 is inside block 0x1000");
    let d = DestroyError::Leaked(LeakReport {
        pool: PoolId {
            index: 0,
            generation: 0,
        },
        name: String::from("p"),
        owner: None,
        leaked: vec![DmaBlock { vaddr: 1, bus: 2 }],
        quarantined_chunks: 1,
        quarantined_bytes: 4096,
    });
    assert_eq!(
        std::format!("{d}"),
        "dma_pool_destroy p: 1 blocks busy, 1 chunks quarantined"
    );
}

// ----- property tests against a model -----

/// A live block in the model.
#[derive(Clone, Copy, Debug)]
struct Live {
    bus: u64,
    pool: PoolId,
    block: u64,
    align: u64,
    boundary: u64,
    /// The byte the test wrote over the whole block.
    fill: u8,
}

/// A pool in the model.
#[derive(Clone, Copy, Debug)]
struct ModelPool {
    id: PoolId,
    owner: Option<OwnerId>,
    block: u64,
    align: u64,
    boundary: u64,
}

#[derive(Clone, Debug)]
enum Op {
    /// Create with (size, align, boundary choice, owner, checking).
    Create(u64, u64, u8, Option<u8>, bool),
    Alloc(usize),
    Zalloc(usize),
    Burst(usize, u8),
    Free(usize),
    /// Free a live block through another pool.
    FreeWrongPool(usize, usize),
    /// Free a live block's interior address.
    FreeInterior(usize, u64),
    /// Free a live block with a wrong bus address.
    FreeBadBus(usize, u64),
    /// Free a block freed earlier (and not handed out since) again.
    DoubleFree(usize),
    /// Free an arbitrary address through a pool.
    FreeGarbage(usize, u64),
    /// Free through a destroyed pool's id.
    FreeStale(usize),
    Destroy(usize),
    DestroyOwner(u8),
    ReleaseLeaked(usize),
    /// Limit the source to this many more chunks (`None`: no limit).
    Budget(Option<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![
        6 => 1u64..600,
        2 => 600u64..5000,
        1 => 5000u64..20000,
    ];
    let align = prop_oneof![
        Just(0u64),
        (0u32..9).prop_map(|k| 1u64 << k),
        Just(4096u64),
        Just(24u64),
    ];
    prop_oneof![
        3 => (size, align, 0u8..8, proptest::option::of(0u8..3), any::<bool>())
            .prop_map(|(s, a, b, o, c)| Op::Create(s, a, b, o, c)),
        10 => any::<usize>().prop_map(Op::Alloc),
        3 => any::<usize>().prop_map(Op::Zalloc),
        2 => (any::<usize>(), 1u8..40).prop_map(|(p, n)| Op::Burst(p, n)),
        12 => any::<usize>().prop_map(Op::Free),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::FreeWrongPool(a, b)),
        2 => (any::<usize>(), 1u64..64).prop_map(|(a, o)| Op::FreeInterior(a, o)),
        2 => (any::<usize>(), 1u64..1 << 20).prop_map(|(a, o)| Op::FreeBadBus(a, o)),
        2 => any::<usize>().prop_map(Op::DoubleFree),
        2 => (any::<usize>(), VBASE - 4096..VBASE + (1 << 20))
            .prop_map(|(a, o)| Op::FreeGarbage(a, o)),
        1 => any::<usize>().prop_map(Op::FreeStale),
        2 => any::<usize>().prop_map(Op::Destroy),
        1 => (0u8..3).prop_map(Op::DestroyOwner),
        2 => any::<usize>().prop_map(Op::ReleaseLeaked),
        1 => proptest::option::of(0u8..4).prop_map(Op::Budget),
    ]
}

struct Model {
    p: Pools,
    mem: ArenaMemory,
    pools: Vec<ModelPool>,
    stale: Vec<PoolId>,
    live: BTreeMap<u64, Live>,
    /// Blocks freed and not handed out since: (pool, block).
    freed: Vec<(PoolId, DmaBlock)>,
    /// Leaked blocks of destroyed pools: vaddr → bus.
    leaked: BTreeMap<u64, u64>,
    next_fill: u8,
}

impl Model {
    fn new(checking: bool) -> Self {
        let (p, mem) = setup(checking);
        Model {
            p,
            mem,
            pools: Vec::new(),
            stale: Vec::new(),
            live: BTreeMap::new(),
            freed: Vec::new(),
            leaked: BTreeMap::new(),
            next_fill: 1,
        }
    }

    fn pick_pool(&self, i: usize) -> Option<ModelPool> {
        (!self.pools.is_empty()).then(|| self.pools[i % self.pools.len()])
    }

    fn pick_live(&self, i: usize) -> Option<(u64, Live)> {
        if self.live.is_empty() {
            return None;
        }
        self.live
            .iter()
            .nth(i % self.live.len())
            .map(|(&v, &l)| (v, l))
    }

    /// Records a block just handed out by `pool` (zeroed or not), checks
    /// what can be checked at once and writes a pattern over it.
    fn got(&mut self, pool: ModelPool, b: DmaBlock, zeroed: bool) {
        if zeroed {
            assert_eq!(
                read(&self.mem, b.vaddr, pool.block),
                vec![0; pool.block as usize]
            );
        }
        let fill = self.next_fill;
        self.next_fill = self.next_fill.wrapping_add(1).max(1);
        self.mem.fill(b.vaddr, pool.block, fill).unwrap();
        self.freed.retain(|(_, f)| f.vaddr != b.vaddr);
        let old = self.live.insert(
            b.vaddr,
            Live {
                bus: b.bus,
                pool: pool.id,
                block: pool.block,
                align: pool.align,
                boundary: pool.boundary,
                fill,
            },
        );
        assert!(old.is_none(), "{:#x} handed out twice", b.vaddr);
    }

    fn alloc(&mut self, pool: ModelPool, zero: bool) {
        let r = if zero {
            self.p.dma_pool_zalloc(&mut self.mem, pool.id)
        } else {
            self.p.dma_pool_alloc(&mut self.mem, pool.id)
        };
        match r {
            Ok(b) => self.got(pool, b, zero),
            Err(DmaPoolError::OutOfMemory) => {
                let st = self.p.pool_stats(pool.id).unwrap();
                assert_eq!(st.blocks_free, 0, "out of memory with free blocks");
            }
            Err(e) => panic!("alloc: {e}"),
        }
    }

    /// A bogus free must fail with `expected` (if given) and change nothing.
    fn refused(&mut self, pool: PoolId, vaddr: u64, bus: u64, expected: Option<DmaPoolError>) {
        let before = self.p.stats();
        let r = self.p.dma_pool_free(&mut self.mem, pool, vaddr, bus);
        match (r, expected) {
            (Ok(()), _) => panic!("bogus free of {vaddr:#x} accepted"),
            (Err(e), Some(x)) => assert_eq!(e, x),
            (Err(_), None) => {}
        }
        assert_eq!(self.p.stats(), before);
    }

    fn destroyed(&mut self, id: PoolId, result: Result<(), DestroyError>) {
        let mine: Vec<(u64, u64)> = self
            .live
            .iter()
            .filter(|(_, l)| l.pool == id)
            .map(|(&v, l)| (v, l.bus))
            .collect();
        match result {
            Ok(()) => assert!(mine.is_empty(), "leaks not reported"),
            Err(DestroyError::Leaked(r)) => self.leaks(id, &mine, &r),
            Err(DestroyError::Refused(e)) => panic!("destroy refused: {e}"),
        }
        self.forget(id, &mine);
    }

    fn leaks(&mut self, id: PoolId, mine: &[(u64, u64)], r: &LeakReport) {
        assert_eq!(r.pool, id);
        let mut got: Vec<(u64, u64)> = r.leaked.iter().map(|b| (b.vaddr, b.bus)).collect();
        got.sort();
        assert_eq!(got, mine, "leak report");
        assert!(r.quarantined_chunks > 0);
    }

    fn forget(&mut self, id: PoolId, mine: &[(u64, u64)]) {
        for &(v, b) in mine {
            self.live.remove(&v);
            self.leaked.insert(v, b);
        }
        self.freed.retain(|(p, _)| *p != id);
        self.pools.retain(|m| m.id != id);
        self.stale.push(id);
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Create(size, align, bsel, owner, checking) => {
                let block = expected_create(size, align, 0);
                let boundary = match (bsel, block) {
                    (0, _) | (_, Err(_)) => 0,
                    (7, Ok(b)) => b.next_power_of_two() / 2, // often too small
                    (k, Ok(b)) => b.next_power_of_two() << (k - 1),
                };
                let expected = expected_create(size, align, boundary);
                let options = PoolOptions {
                    owner: owner.map(|o| OwnerId(o as u64)),
                    checking,
                };
                let r = self.p.create_pool("prop", size, align, boundary, options);
                match (r, expected) {
                    (Ok(id), Ok(block)) => {
                        let st = self.p.pool_stats(id).unwrap();
                        assert_eq!(st.block_size, block);
                        self.pools.push(ModelPool {
                            id,
                            owner: options.owner,
                            block,
                            align: align.max(1),
                            boundary,
                        });
                    }
                    (Err(e), Err(x)) => assert_eq!(e, x),
                    (r, x) => panic!("create {size}/{align}/{boundary}: {r:?}, expected {x:?}"),
                }
            }
            Op::Alloc(i) | Op::Zalloc(i) => {
                if let Some(pool) = self.pick_pool(i) {
                    self.alloc(pool, matches!(op, Op::Zalloc(_)));
                }
            }
            Op::Burst(i, n) => {
                if let Some(pool) = self.pick_pool(i) {
                    for _ in 0..n {
                        self.alloc(pool, false);
                    }
                }
            }
            Op::Free(i) => {
                if let Some((v, l)) = self.pick_live(i) {
                    let contents = read(&self.mem, v, l.block);
                    assert!(contents.iter().all(|&b| b == l.fill), "{v:#x} changed");
                    self.p
                        .dma_pool_free(&mut self.mem, l.pool, v, l.bus)
                        .unwrap();
                    self.live.remove(&v);
                    self.freed.push((
                        l.pool,
                        DmaBlock {
                            vaddr: v,
                            bus: l.bus,
                        },
                    ));
                }
            }
            Op::FreeWrongPool(i, j) => {
                if let (Some((v, l)), Some(other)) = (self.pick_live(i), self.pick_pool(j))
                    && other.id != l.pool
                {
                    let x = DmaPoolError::WrongPool {
                        vaddr: v,
                        pool: l.pool,
                    };
                    self.refused(other.id, v, l.bus, Some(x));
                }
            }
            Op::FreeInterior(i, o) => {
                if let Some((v, l)) = self.pick_live(i) {
                    let o = o % l.block;
                    if o != 0 {
                        let x = DmaPoolError::Interior {
                            vaddr: v + o,
                            block: v,
                        };
                        self.refused(l.pool, v + o, l.bus + o, Some(x));
                    }
                }
            }
            Op::FreeBadBus(i, o) => {
                if let Some((v, l)) = self.pick_live(i) {
                    let x = DmaPoolError::BusMismatch {
                        vaddr: v,
                        bus: l.bus + o,
                        expected: l.bus,
                    };
                    self.refused(l.pool, v, l.bus + o, Some(x));
                }
            }
            Op::DoubleFree(i) => {
                if !self.freed.is_empty() {
                    let (pool, b) = self.freed[i % self.freed.len()];
                    let x = DmaPoolError::DoubleFree { vaddr: b.vaddr };
                    self.refused(pool, b.vaddr, b.bus, Some(x));
                }
            }
            Op::FreeGarbage(i, addr) => {
                if let Some(pool) = self.pick_pool(i)
                    && !self.live.contains_key(&addr)
                {
                    self.refused(pool.id, addr, addr, None);
                }
            }
            Op::FreeStale(i) => {
                if !self.stale.is_empty() {
                    let id = self.stale[i % self.stale.len()];
                    self.refused(id, VBASE, BUS_BASE, Some(DmaPoolError::NoSuchPool));
                }
            }
            Op::Destroy(i) => {
                if let Some(pool) = self.pick_pool(i) {
                    let r = match pool.owner {
                        None => self.p.dma_pool_destroy(pool.id),
                        Some(o) => {
                            assert_eq!(
                                self.p.dma_pool_destroy(pool.id),
                                Err(DestroyError::Refused(DmaPoolError::Managed { owner: o }))
                            );
                            self.p.dmam_pool_destroy(o, pool.id)
                        }
                    };
                    self.destroyed(pool.id, r);
                }
            }
            Op::DestroyOwner(o) => {
                let owner = OwnerId(o as u64);
                let victims: Vec<ModelPool> = self
                    .pools
                    .iter()
                    .filter(|m| m.owner == Some(owner))
                    .copied()
                    .collect();
                let reports = match self.p.destroy_owner(owner) {
                    Ok(n) => {
                        assert_eq!(n, victims.len());
                        Vec::new()
                    }
                    Err(reports) => reports,
                };
                for v in victims {
                    let mine: Vec<(u64, u64)> = self
                        .live
                        .iter()
                        .filter(|(_, l)| l.pool == v.id)
                        .map(|(&a, l)| (a, l.bus))
                        .collect();
                    let report = reports.iter().find(|r| r.pool == v.id);
                    match report {
                        Some(r) => self.leaks(v.id, &mine, r),
                        None => assert!(mine.is_empty(), "leak not reported"),
                    }
                    self.forget(v.id, &mine);
                }
                assert!(self.p.pools_of(owner).is_empty());
            }
            Op::ReleaseLeaked(i) => {
                if !self.leaked.is_empty() {
                    let (&v, &b) = self.leaked.iter().nth(i % self.leaked.len()).unwrap();
                    let out = self.p.source().out.len();
                    let returned = self.p.release_leaked(v, b).unwrap();
                    self.leaked.remove(&v);
                    // A chunk goes back exactly when no leaked block is left in it.
                    let still = self.p.source().chunk_holding(v);
                    assert_eq!(returned, still.is_none());
                    assert_eq!(self.p.source().out.len() + returned as usize, out);
                    if let Some((cv, _, cs)) = still {
                        assert!(self.leaked.range(cv..cv + cs).count() > 0);
                    }
                }
            }
            Op::Budget(b) => self.p.source_mut().budget = b.map(u64::from),
        }
    }

    /// Everything checked after every step.
    fn check(&self) {
        check(&self.p, &self.mem);
        let src = self.p.source();
        // Live blocks: aligned, inside one boundary window, inside a chunk
        // that is out, at the chunk's bus offset, not overlapping, intact.
        let mut vend = 0;
        let mut buses = Vec::new();
        for (&v, l) in &self.live {
            assert!(v >= vend, "{v:#x} overlaps the previous block");
            vend = v + l.block;
            assert_eq!(v % l.align, 0, "{v:#x} misaligned");
            assert_eq!(l.bus % l.align, 0, "bus {:#x} misaligned", l.bus);
            assert!(in_one_window(l.bus, l.block, l.boundary), "{v:#x} crosses");
            assert!(in_one_window(v, l.block, l.boundary), "{v:#x} crosses");
            let (cv, cb, cs) = src.chunk_holding(v).expect("block outside every chunk");
            assert!(v + l.block <= cv + cs, "block leaves its chunk");
            assert_eq!(l.bus.wrapping_sub(v), cb.wrapping_sub(cv), "bus offset");
            buses.push((l.bus, l.block));
            let ends = [v, v + l.block - 1, v + l.block / 2];
            for a in ends {
                assert_eq!(read(&self.mem, a, 1)[0], l.fill, "contents of {v:#x}");
            }
        }
        buses.sort();
        for w in buses.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "bus ranges overlap");
        }
        // Counters per pool and leaked blocks.
        for m in &self.pools {
            let n = self.live.values().filter(|l| l.pool == m.id).count() as u64;
            let st = self.p.pool_stats(m.id).unwrap();
            assert_eq!(st.blocks_in_use, n);
            assert_eq!(
                st.blocks_free + st.blocks_in_use + st.blocks_quarantined,
                st.blocks_total
            );
        }
        let mut leaked: Vec<(u64, u64)> = self
            .p
            .leaked_blocks()
            .iter()
            .map(|b| (b.vaddr, b.bus))
            .collect();
        leaked.sort();
        let expected: Vec<(u64, u64)> = self.leaked.iter().map(|(&v, &b)| (v, b)).collect();
        assert_eq!(leaked, expected);
        let st = self.p.stats();
        assert_eq!(st.blocks_in_use, self.live.len() as u64);
        assert_eq!(st.blocks_leaked, self.leaked.len() as u64);
        assert_eq!(st.pools, self.pools.len() as u64);
    }
}

fn run(ops: Vec<Op>, checking: bool) {
    let mut m = Model::new(checking);
    for op in ops {
        m.apply(op);
        m.check();
    }
    // Free everything, destroy every pool, release every leak: every chunk
    // goes back.
    let live: Vec<(u64, Live)> = m.live.iter().map(|(&v, &l)| (v, l)).collect();
    for (v, l) in live {
        m.p.dma_pool_free(&mut m.mem, l.pool, v, l.bus).unwrap();
        m.live.remove(&v);
    }
    for pool in m.pools.clone() {
        let r = match pool.owner {
            None => m.p.dma_pool_destroy(pool.id),
            Some(o) => m.p.dmam_pool_destroy(o, pool.id),
        };
        assert_eq!(r, Ok(()));
        m.forget(pool.id, &[]);
        m.check();
    }
    for (v, b) in core::mem::take(&mut m.leaked) {
        m.p.release_leaked(v, b).unwrap();
    }
    m.check();
    assert!(m.p.source().out.is_empty());
    assert_eq!(m.p.stats().quarantined_pools, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_against_model(ops in proptest::collection::vec(op(), 1..150)) {
        run(ops, false);
    }

    #[test]
    fn prop_against_model_checking(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops, true);
    }
}
