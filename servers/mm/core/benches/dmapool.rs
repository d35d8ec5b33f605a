//! Benchmarks of the DMA pools' block fast paths, side by side with a naive free list.
//!
//! Figures (criterion groups, read by `cargo xtask bench`):
//! - `dmapool.alloc_free.{16,64,256,4096}.ns`: one `dma_pool_alloc` and its
//!   `dma_pool_free`, in steady state, for pools created as Linux's
//!   `mm/dmapool_test.c` creates them (size = align, no boundary). Anchor:
//!   Linux 6.3+ dmapool, 30.5 / 32.5 / 41 / 59 ns.
//!
//! The peer `naive_freelist` is the straightforward baseline: a `Vec` of
//! free (vaddr, bus) pairs, pop to allocate, push to free, no validation of
//! what is freed. Ours checks every free (the block's chunk, its start, its
//! bus address, that it is live) with its metadata out of band.
//!
//! The pool never touches the memory it hands out outside checking mode,
//! so the bench needs no memory behind the addresses.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mm_core::dmapool::{DmaChunk, DmaChunkSource, DmaPools};
use mm_core::memory::{AccessError, MemoryAccess};

/// Where the bench's chunks start (virtual).
const VBASE: u64 = 0x10_0000_0000;
/// Where the bench's chunks start (bus).
const BUS_BASE: u64 = 0x8000_0000;

/// A chunk source: a bump pointer over unbacked addresses, the bus address
/// a fixed offset away.
struct BenchChunks {
    next: u64,
}

impl DmaChunkSource for BenchChunks {
    fn alloc_chunk(&mut self, size: u64, align: u64) -> Option<DmaChunk> {
        let vaddr = self.next.next_multiple_of(align);
        self.next = vaddr + size;
        Some(DmaChunk {
            vaddr,
            bus: vaddr - VBASE + BUS_BASE,
        })
    }
    fn free_chunk(&mut self, _: DmaChunk, _: u64) {}
}

/// Memory access for a bench that must never touch memory.
struct NoMemory;

impl MemoryAccess for NoMemory {
    fn read(&self, addr: u64, _: &mut [u8]) -> Result<(), AccessError> {
        Err(AccessError { addr })
    }
    fn write(&mut self, addr: u64, _: &[u8]) -> Result<(), AccessError> {
        Err(AccessError { addr })
    }
    fn fill(&mut self, addr: u64, _: u64, _: u8) -> Result<(), AccessError> {
        Err(AccessError { addr })
    }
}

/// The naive peer: a free list of (vaddr, bus) pairs over page chunks.
struct NaiveFreeList {
    source: BenchChunks,
    size: u64,
    free: Vec<(u64, u64)>,
}

impl NaiveFreeList {
    fn alloc(&mut self) -> Option<(u64, u64)> {
        if self.free.is_empty() {
            let chunk_size = self.size.max(4096);
            let c = self.source.alloc_chunk(chunk_size, 4096)?;
            for i in (0..chunk_size / self.size).rev() {
                self.free
                    .push((c.vaddr + i * self.size, c.bus + i * self.size));
            }
        }
        self.free.pop()
    }
    fn free(&mut self, block: (u64, u64)) {
        self.free.push(block);
    }
}

fn alloc_free(c: &mut Criterion) {
    for size in [16u64, 64, 256, 4096] {
        let mut g = c.benchmark_group(format!("dmapool.alloc_free.{size}.ns"));
        g.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(2))
            .sample_size(40);
        let mut pools = DmaPools::new(BenchChunks { next: VBASE });
        let mut mem = NoMemory;
        let id = pools
            .dma_pool_create("bench", size, size, 0)
            .expect("create");
        // Some blocks held, as a driver holds its descriptors.
        let held: Vec<_> = (0..8)
            .map(|_| pools.dma_pool_alloc(&mut mem, id).expect("alloc"))
            .collect();
        g.bench_function("ours", |b| {
            b.iter(|| {
                let blk = pools
                    .dma_pool_alloc(&mut mem, black_box(id))
                    .expect("alloc");
                pools
                    .dma_pool_free(&mut mem, black_box(id), black_box(blk.vaddr), blk.bus)
                    .expect("free");
            })
        });
        for blk in held {
            pools
                .dma_pool_free(&mut mem, id, blk.vaddr, blk.bus)
                .expect("free");
        }
        let mut naive = NaiveFreeList {
            source: BenchChunks { next: VBASE },
            size,
            free: Vec::new(),
        };
        let held: Vec<_> = (0..8).map(|_| naive.alloc().expect("alloc")).collect();
        g.bench_function("peer:naive_freelist", |b| {
            b.iter(|| {
                let blk = naive.alloc().expect("alloc");
                naive.free(black_box(blk));
            })
        });
        drop(held);
        g.finish();
    }
}

criterion_group!(benches, alloc_free);
criterion_main!(benches);
